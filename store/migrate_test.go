package store

import (
	"context"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/opensphere/sphere"
)

type migrationRow struct {
	Version   int
	Name      string
	AppliedAt int64
}

func migrationRows(t *testing.T, s *Store) []migrationRow {
	t.Helper()
	rows, err := s.query(context.Background(), "SELECT version, name, applied_at FROM schema_migrations ORDER BY version")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []migrationRow
	for rows.Next() {
		var r migrationRow
		if err := rows.Scan(&r.Version, &r.Name, &r.AppliedAt); err != nil {
			t.Fatal(err)
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestMigrate(t *testing.T) {
	ms, err := loadMigrations()
	if err != nil {
		t.Fatal(err)
	}
	eachStore(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		before := migrationRows(t, s)
		if len(before) != len(ms) {
			t.Fatalf("schema_migrations: got %d rows, want %d", len(before), len(ms))
		}
		for i, r := range before {
			if r.Version != i+1 || r.Name != ms[i].name || r.AppliedAt == 0 {
				t.Fatalf("schema_migrations row %d: got %+v, want version %d named %s", i, r, i+1, ms[i].name)
			}
		}
		if v, err := s.SchemaVersion(ctx); err != nil || v != len(ms) {
			t.Fatalf("SchemaVersion: got %d, %v; want %d", v, err, len(ms))
		}
		for range 2 {
			n, err := s.Migrate(ctx)
			if err != nil || n != 0 {
				t.Fatalf("Migrate again: got %d, %v; want 0, nil", n, err)
			}
		}
		if after := migrationRows(t, s); !reflect.DeepEqual(after, before) {
			t.Fatalf("schema_migrations changed:\nbefore %+v\nafter  %+v", before, after)
		}
	})
}

func TestMigrateRefusesNewerSchema(t *testing.T) {
	eachStore(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		v, err := s.SchemaVersion(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.exec(ctx, "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, 'from_the_future.sql', 1)", v+1); err != nil {
			t.Fatal(err)
		}
		n, err := s.Migrate(ctx)
		if err == nil || n != 0 || !strings.Contains(err.Error(), "newer sphere") {
			t.Fatalf("Migrate: got %d, %v; want an error asking for a newer sphere", n, err)
		}
	})
}

// TestRestartKeepsData closes a SQLite store full of rows and opens the file
// again, as a restarted service would.
func TestRestartKeepsData(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "data", "sphere.db")
	s := openSQLite(t, path)
	secret, err := s.Bootstrap(ctx, "admin", "Contoso")
	if err != nil {
		t.Fatal(err)
	}
	tn, err := s.GetTenant(ctx, "Contoso")
	if err != nil {
		t.Fatal(err)
	}
	a := s.Tenant(tn.ID)
	p := mustProduct(t, a, "Coffee Maker")
	g := groupNamed(t, a, p.ID, "Production")
	d := mustClaimedDevice(t, s, a, g.ID)
	mustDevice(t, s)
	if _, _, err := a.AddRole(ctx, "alice", sphere.RoleReader); err != nil {
		t.Fatal(err)
	}
	if err := s.AppendAudit(ctx, sphere.AuditEntry{TenantID: tn.ID, Actor: "admin", Action: "product.create", Target: p.ID, Result: "ok", Status: 201}); err != nil {
		t.Fatal(err)
	}
	before := dumpTables(t, s)
	for _, table := range []string{"tenants", "users", "tokens", "roles", "products", "device_groups", "devices", "audit_log"} {
		if countRows(t, s, table, "") == 0 {
			t.Fatalf("test setup: table %s is empty", table)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s = openSQLite(t, path)
	if after := dumpTables(t, s); after != before {
		t.Fatalf("rows changed across a restart:\nbefore:\n%s\nafter:\n%s", before, after)
	}
	if u, err := s.Authenticate(ctx, secret); err != nil || u.Name != "admin" {
		t.Fatalf("Authenticate after restart: got %+v, %v", u, err)
	}
	if got, err := s.Tenant(tn.ID).GetDevice(ctx, d.ID); err != nil || got.DeviceGroupID != g.ID {
		t.Fatalf("GetDevice after restart: got %+v, %v", got, err)
	}
	// And the store still writes.
	mustProduct(t, s.Tenant(tn.ID), "Toaster")
}

func TestLoadMigrations(t *testing.T) {
	ms, err := loadMigrations()
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) == 0 {
		t.Fatal("no migrations embedded")
	}
	for i, m := range ms {
		if m.version != i+1 || !strings.HasSuffix(m.name, ".sql") || len(splitStatements(m.sql)) == 0 {
			t.Errorf("migration %d: got version %d name %q with %d statements", i, m.version, m.name, len(splitStatements(m.sql)))
		}
	}
}

func TestSplitStatements(t *testing.T) {
	tests := []struct {
		name string
		body string
		want []string
	}{
		{"ok/empty", "", nil},
		{"ok/comments only", "-- one\n  -- two\n", nil},
		{"ok/one statement", "CREATE TABLE a (x INT);\n", []string{"CREATE TABLE a (x INT);"}},
		{"ok/several statements over several lines", "CREATE TABLE a (\n  x INT\n);\nCREATE INDEX ai ON a(x);\n",
			[]string{"CREATE TABLE a (\n  x INT\n);", "CREATE INDEX ai ON a(x);"}},
		{"ok/comment lines inside a statement dropped", "CREATE TABLE a (\n  -- the x\n  x INT\n);",
			[]string{"CREATE TABLE a (\n  x INT\n);"}},
		{"ok/last statement without semicolon", "SELECT 1;\nSELECT 2", []string{"SELECT 1;", "SELECT 2"}},
		{"ok/semicolon inside a line is not a split", "INSERT INTO a VALUES (';'), (2);\n", []string{"INSERT INTO a VALUES (';'), (2);"}},
		{"ok/lone semicolon dropped", "SELECT 1;\n;\n", []string{"SELECT 1;"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := splitStatements(tt.body); !slices.Equal(got, tt.want) {
				t.Fatalf("got %q, want %q", got, tt.want)
			}
		})
	}
}
