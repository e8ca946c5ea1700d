package store

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// eachStore runs fn once against a fresh SQLite store and, when
// SPHERE_TEST_POSTGRES names a PostgreSQL database, once against a fresh
// schema there, so every store test covers both dialects.
func eachStore(t *testing.T, fn func(t *testing.T, s *Store)) {
	t.Helper()
	t.Run("sqlite", func(t *testing.T) {
		fn(t, openSQLite(t, filepath.Join(t.TempDir(), "sphere.db")))
	})
	t.Run("postgres", func(t *testing.T) {
		dsn := os.Getenv("SPHERE_TEST_POSTGRES")
		if dsn == "" {
			t.Skip("SPHERE_TEST_POSTGRES is not set (e.g. postgres://postgres@127.0.0.1:5432/test?sslmode=disable); skipping the PostgreSQL run")
		}
		fn(t, openPostgres(t, dsn))
	})
}

func openSQLite(t *testing.T, path string) *Store {
	t.Helper()
	s, err := Open(context.Background(), Config{DSN: path})
	if err != nil {
		t.Fatalf("open sqlite: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// openPostgres creates a schema of its own, so parallel and repeated runs
// never see each other's rows, and drops it when the test ends.
func openPostgres(t *testing.T, dsn string) *Store {
	t.Helper()
	ctx := context.Background()
	schema := fmt.Sprintf("sphere_test_%d_%s", time.Now().UnixNano(), strings.ToLower(strings.ReplaceAll(t.Name(), "/", "_")))
	if len(schema) > 63 {
		schema = schema[:63]
	}
	admin, err := Open(ctx, Config{DSN: PostgresSchemaDSN(dsn, "public")})
	if err != nil {
		t.Fatalf("open postgres: %v", err)
	}
	if _, err := admin.db.ExecContext(ctx, `CREATE SCHEMA "`+schema+`"`); err != nil {
		t.Fatalf("create schema: %v", err)
	}
	t.Cleanup(func() {
		admin.db.ExecContext(context.Background(), `DROP SCHEMA "`+schema+`" CASCADE`)
		admin.Close()
	})
	s, err := Open(ctx, Config{DSN: PostgresSchemaDSN(dsn, schema)})
	if err != nil {
		t.Fatalf("open postgres schema %s: %v", schema, err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}
