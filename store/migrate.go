package store

import (
	"context"
	"embed"
	"fmt"
	"io/fs"
	"sort"
	"strconv"
	"strings"
)

//go:embed migrations/*.sql
var migrationFS embed.FS

// migration is one numbered schema change.
type migration struct {
	version int
	name    string
	sql     string
}

func loadMigrations() ([]migration, error) {
	entries, err := fs.ReadDir(migrationFS, "migrations")
	if err != nil {
		return nil, err
	}
	var ms []migration
	for _, e := range entries {
		num, _, ok := strings.Cut(e.Name(), "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil || v <= 0 {
			return nil, fmt.Errorf("migration file %q is not named NNNN_name.sql", e.Name())
		}
		b, err := migrationFS.ReadFile("migrations/" + e.Name())
		if err != nil {
			return nil, err
		}
		ms = append(ms, migration{version: v, name: e.Name(), sql: string(b)})
	}
	sort.Slice(ms, func(i, j int) bool { return ms[i].version < ms[j].version })
	for i, m := range ms {
		if m.version != i+1 {
			return nil, fmt.Errorf("migrations are not numbered 1..n: %q is number %d", m.name, i+1)
		}
	}
	return ms, nil
}

// Migrate applies the embedded migrations that the database lacks, each in
// its own transaction together with its row in schema_migrations, so that a
// crash leaves either all of a migration or none of it. Applying them again
// changes nothing. On PostgreSQL an advisory lock keeps replicas that start
// together from racing. It returns how many migrations it applied.
func (s *Store) Migrate(ctx context.Context) (int, error) {
	return s.migrate(ctx, 0)
}

// migrate is Migrate up to schema version upTo (0: the newest).
func (s *Store) migrate(ctx context.Context, upTo int) (int, error) {
	ms, err := loadMigrations()
	if err != nil {
		return 0, fmt.Errorf("store.Migrate: %w", err)
	}
	if upTo > 0 && upTo < len(ms) {
		ms = ms[:upTo]
	}
	conn, err := s.db.Conn(ctx)
	if err != nil {
		return 0, fmt.Errorf("store.Migrate: %w", err)
	}
	defer conn.Close()
	if s.d.name == "postgres" {
		// An arbitrary, fixed lock id shared by every sphere replica.
		if _, err := conn.ExecContext(ctx, "SELECT pg_advisory_lock(357911553362)"); err != nil {
			return 0, fmt.Errorf("store.Migrate: lock: %w", err)
		}
		defer conn.ExecContext(context.WithoutCancel(ctx), "SELECT pg_advisory_unlock(357911553362)")
	}
	if _, err := conn.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at BIGINT NOT NULL)`); err != nil {
		return 0, fmt.Errorf("store.Migrate: %w", err)
	}
	var current int
	if err := conn.QueryRowContext(ctx, "SELECT COALESCE(MAX(version), 0) FROM schema_migrations").Scan(&current); err != nil {
		return 0, fmt.Errorf("store.Migrate: %w", err)
	}
	if current > len(ms) {
		return 0, fmt.Errorf("store.Migrate: the database has schema version %d but this sphere knows only %d: run a newer sphere", current, len(ms))
	}
	applied := 0
	for _, m := range ms[current:] {
		tx, err := conn.BeginTx(ctx, nil)
		if err != nil {
			return applied, fmt.Errorf("store.Migrate: %w", err)
		}
		body := strings.NewReplacer("{{serial}}", s.d.serial, "{{blob}}", s.d.blob).Replace(m.sql)
		for _, stmt := range splitStatements(body) {
			if _, err := tx.ExecContext(ctx, stmt); err != nil {
				tx.Rollback()
				return applied, fmt.Errorf("store.Migrate: %s: %w", m.name, err)
			}
		}
		if _, err := tx.ExecContext(ctx, s.d.rebind("INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)"),
			m.version, m.name, s.nowMicro()); err != nil {
			tx.Rollback()
			return applied, fmt.Errorf("store.Migrate: %s: %w", m.name, err)
		}
		if err := tx.Commit(); err != nil {
			return applied, fmt.Errorf("store.Migrate: %s: %w", m.name, err)
		}
		s.log.Info("applied migration", "version", m.version, "name", m.name, "db", s.d.name)
		applied++
	}
	return applied, nil
}

// SchemaVersion returns the newest applied migration.
func (s *Store) SchemaVersion(ctx context.Context) (int, error) {
	var v int
	err := s.queryRow(ctx, "SELECT COALESCE(MAX(version), 0) FROM schema_migrations").Scan(&v)
	return v, err
}

// splitStatements splits a migration on semicolons at line ends and drops
// comment-only pieces. Migrations keep one statement per ;-terminated block
// and put no semicolon at a line end inside a statement.
func splitStatements(body string) []string {
	var out []string
	var cur strings.Builder
	for _, line := range strings.Split(body, "\n") {
		trimmed := strings.TrimSpace(line)
		if strings.HasPrefix(trimmed, "--") {
			continue
		}
		cur.WriteString(line)
		cur.WriteByte('\n')
		if strings.HasSuffix(trimmed, ";") {
			if stmt := strings.TrimSpace(cur.String()); stmt != ";" {
				out = append(out, stmt)
			}
			cur.Reset()
		}
	}
	if stmt := strings.TrimSpace(cur.String()); stmt != "" {
		out = append(out, stmt)
	}
	return out
}
