package store

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// eachStore runs fn once against a fresh SQLite store and, when
// SPHERE_TEST_POSTGRES names a PostgreSQL database, once against a fresh
// schema there, so every store test covers both dialects.
func eachStore(t *testing.T, fn func(t *testing.T, s *Store)) {
	t.Helper()
	eachStoreWith(t, Config{}, fn)
}

// eachStoreWith is eachStore for stores opened with cfg's clock and logger;
// cfg.DSN is ignored.
func eachStoreWith(t *testing.T, cfg Config, fn func(t *testing.T, s *Store)) {
	t.Helper()
	t.Run("sqlite", func(t *testing.T) {
		fn(t, openSQLiteWith(t, filepath.Join(t.TempDir(), "sphere.db"), cfg))
	})
	t.Run("postgres", func(t *testing.T) {
		dsn := os.Getenv("SPHERE_TEST_POSTGRES")
		if dsn == "" {
			t.Skip("SPHERE_TEST_POSTGRES is not set (e.g. postgres://postgres@127.0.0.1:5432/test?sslmode=disable); skipping the PostgreSQL run")
		}
		fn(t, openPostgresWith(t, dsn, cfg))
	})
}

func openSQLite(t *testing.T, path string) *Store {
	t.Helper()
	return openSQLiteWith(t, path, Config{})
}

func openSQLiteWith(t *testing.T, path string, cfg Config) *Store {
	t.Helper()
	cfg.DSN = path
	s, err := Open(context.Background(), cfg)
	if err != nil {
		t.Fatalf("open sqlite: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func openPostgres(t *testing.T, dsn string) *Store {
	t.Helper()
	return openPostgresWith(t, dsn, Config{})
}

// openPostgresWith creates a schema of its own, so parallel and repeated
// runs never see each other's rows, and drops it when the test ends.
func openPostgresWith(t *testing.T, dsn string, cfg Config) *Store {
	t.Helper()
	cfg.DSN = newPostgresSchema(t, dsn)
	s, err := Open(context.Background(), cfg)
	if err != nil {
		t.Fatalf("open postgres schema: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// newPostgresSchema creates an empty schema of the test's own in the
// database at dsn, dropped when the test ends, and returns the DSN that
// opens it.
func newPostgresSchema(t *testing.T, dsn string) string {
	t.Helper()
	ctx := context.Background()
	schema := fmt.Sprintf("sphere_test_%d_%s", time.Now().UnixNano(), strings.ToLower(strings.ReplaceAll(t.Name(), "/", "_")))
	if len(schema) > 63 {
		schema = schema[:63]
	}
	// A plain connection, not a Store: opening a Store migrates, and the
	// public schema may hold another checkout's newer schema.
	admin, err := sql.Open("pgx", dsn)
	if err != nil {
		t.Fatalf("open postgres: %v", err)
	}
	if _, err := admin.ExecContext(ctx, `CREATE SCHEMA "`+schema+`"`); err != nil {
		admin.Close()
		t.Fatalf("create schema: %v", err)
	}
	t.Cleanup(func() {
		admin.ExecContext(context.Background(), `DROP SCHEMA "`+schema+`" CASCADE`)
		admin.Close()
	})
	return PostgresSchemaDSN(dsn, schema)
}

// testClock is a settable clock for Config.Now, safe for concurrent use.
type testClock struct {
	mu  sync.Mutex
	now time.Time
}

// newTestClock returns a clock stopped at a fixed, microsecond-aligned
// instant, so that times survive the store's microsecond columns unchanged.
func newTestClock() *testClock {
	return &testClock{now: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)}
}

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *testClock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = t
}

func (c *testClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}
