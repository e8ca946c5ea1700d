package store

import (
	"context"
	"database/sql"
	"sync"
	"testing"
	"time"

	"github.com/opensphere/sphere"
)

// rowLock holds PostgreSQL locks in a transaction of its own. A store
// transaction that reads and then writes stops at the write until release,
// so a test can line two of them up after their reads: the interleaving that
// a busy server produces by chance, made certain.
type rowLock struct {
	t  *testing.T
	s  *Store
	tx *sql.Tx
}

// lockRows runs stmt, a statement that takes locks (SELECT ... FOR UPDATE,
// LOCK TABLE ...), and keeps them until the test releases them or ends.
func lockRows(t *testing.T, s *Store, stmt string, args ...any) *rowLock {
	t.Helper()
	tx, err := s.db.BeginTx(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(s.d.rebind(stmt), args...); err != nil {
		tx.Rollback()
		t.Fatal(err)
	}
	l := &rowLock{t: t, s: s, tx: tx}
	t.Cleanup(l.release)
	return l
}

// waitBlocked waits until n sessions wait, directly or behind another
// waiter, for the locks held by l. It asks from outside l's transaction,
// because PostgreSQL shows a transaction one unchanging snapshot of
// pg_stat_activity.
func (l *rowLock) waitBlocked(n int) {
	l.t.Helper()
	var pid int
	if err := l.tx.QueryRow("SELECT pg_backend_pid()").Scan(&pid); err != nil {
		l.t.Fatal(err)
	}
	const q = `WITH RECURSIVE blocked(pid) AS (
		SELECT pid FROM pg_stat_activity WHERE $1::int = ANY(pg_blocking_pids(pid))
		UNION
		SELECT a.pid FROM pg_stat_activity a JOIN blocked b ON b.pid = ANY(pg_blocking_pids(a.pid))
	) SELECT COUNT(*) FROM blocked`
	deadline := time.Now().Add(10 * time.Second)
	for {
		var got int
		if err := l.s.db.QueryRow(q, pid).Scan(&got); err != nil {
			l.t.Fatal(err)
		}
		if got >= n {
			return
		}
		if time.Now().After(deadline) {
			l.t.Fatalf("%d of %d sessions blocked after 10s", got, n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func (l *rowLock) release() { l.tx.Rollback() }

// runTogether runs fns at once. On PostgreSQL it first takes the row locks
// that lock selects and releases them once every fn waits on them; SQLite
// needs no help, as its writers take the database lock when they begin.
func runTogether(t *testing.T, s *Store, lock func() *rowLock, fns ...func() error) []error {
	t.Helper()
	var l *rowLock
	if s.Dialect() == "postgres" {
		l = lock()
	}
	errs := make([]error, len(fns))
	var wg sync.WaitGroup
	for i, fn := range fns {
		wg.Go(func() { errs[i] = fn() })
	}
	if l != nil {
		l.waitBlocked(len(fns))
		l.release()
	}
	wg.Wait()
	return errs
}

// TestLastAdministratorRace has the only two Administrators of a tenant
// demote or remove each other at the same moment: one must win and the
// other be refused, so that the tenant keeps an Administrator.
func TestLastAdministratorRace(t *testing.T) {
	type op func(ctx context.Context, ts *TenantStore, user string) error
	demote := func(ctx context.Context, ts *TenantStore, user string) error {
		_, _, err := ts.AddRole(ctx, user, sphere.RoleReader)
		return err
	}
	remove := func(ctx context.Context, ts *TenantStore, user string) error { return ts.RemoveRole(ctx, user) }
	tests := []struct {
		name   string
		first  op
		second op
	}{
		{"demote and demote", demote, demote},
		{"remove and remove", remove, remove},
		{"demote and remove", demote, remove},
	}
	eachStore(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		for i, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				ts := s.Tenant(mustTenant(t, s, "Tenant "+string(rune('A'+i))).ID)
				for _, u := range []string{"alice", "bob"} {
					if _, _, err := ts.AddRole(ctx, u, sphere.RoleAdministrator); err != nil {
						t.Fatal(err)
					}
				}
				errs := runTogether(t, s,
					func() *rowLock {
						return lockRows(t, s, "SELECT role FROM roles WHERE tenant_id = ? FOR UPDATE", ts.ID())
					},
					func() error { return tt.first(ctx, ts, "alice") },
					func() error { return tt.second(ctx, ts, "bob") },
				)
				admins := countRows(t, s, "roles", "tenant_id = ? AND role = ?", ts.ID(), sphere.RoleAdministrator)
				codes := []string{codeOf(errs[0]), codeOf(errs[1])}
				if admins != 1 || !(codes[0] == "" && codes[1] == sphere.EPrecondition || codes[0] == sphere.EPrecondition && codes[1] == "") {
					t.Fatalf("got codes %q and %d Administrators left; want one success, one %s and 1 Administrator", codes, admins, sphere.EPrecondition)
				}
			})
		}
	})
}

// TestClaimRace has two tenants claim the same device at the same moment:
// one gets it, the other is told that it is claimed.
func TestClaimRace(t *testing.T) {
	eachStore(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		a := s.Tenant(mustTenant(t, s, "Contoso").ID)
		b := s.Tenant(mustTenant(t, s, "Fabrikam").ID)
		d := mustDevice(t, s)
		errs := runTogether(t, s,
			func() *rowLock { return lockRows(t, s, "SELECT id FROM devices WHERE id = ? FOR UPDATE", d.ID) },
			func() error { _, err := a.ClaimDevice(ctx, d.ID, ""); return err },
			func() error { _, err := b.ClaimDevice(ctx, d.ID, ""); return err },
		)
		codes := []string{codeOf(errs[0]), codeOf(errs[1])}
		if !(codes[0] == "" && codes[1] == sphere.EConflict || codes[0] == sphere.EConflict && codes[1] == "") {
			t.Fatalf("got codes %q (%v), want one success and one %s", codes, errs, sphere.EConflict)
		}
		got, err := s.GetDevice(ctx, d.ID)
		if winner := map[bool]string{true: a.ID(), false: b.ID()}[errs[0] == nil]; err != nil || got.TenantID != winner {
			t.Fatalf("device held by %q (%v), want the winner %q", got.TenantID, err, winner)
		}
	})
}

// TestRegisterRace registers the same device twice at the same moment, as a
// factory line that retries a slow request does: registration is
// idempotent, so both succeed.
func TestRegisterRace(t *testing.T) {
	eachStore(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		reg := newRegistration(t)
		errs := runTogether(t, s,
			// Inserts wait for the table lock; the reads before them do not.
			func() *rowLock { return lockRows(t, s, "LOCK TABLE devices IN SHARE MODE") },
			func() error { _, err := s.RegisterDevice(ctx, reg); return err },
			func() error { _, err := s.RegisterDevice(ctx, reg); return err },
		)
		for i, err := range errs {
			if err != nil {
				t.Errorf("RegisterDevice %d: got %v (code %q), want success", i, err, codeOf(err))
			}
		}
		if n := countRows(t, s, "devices", ""); n != 1 {
			t.Fatalf("devices: got %d rows, want 1", n)
		}
	})
}

// TestAddRoleNewUserRace gives one new user a role in two tenants at the
// same moment: both assignments succeed and the user is created once.
func TestAddRoleNewUserRace(t *testing.T) {
	eachStore(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		a := s.Tenant(mustTenant(t, s, "Contoso").ID)
		b := s.Tenant(mustTenant(t, s, "Fabrikam").ID)
		secrets := make([]string, 2)
		errs := runTogether(t, s,
			func() *rowLock { return lockRows(t, s, "LOCK TABLE users IN SHARE MODE") },
			func() (err error) { _, secrets[0], err = a.AddRole(ctx, "alice", sphere.RoleReader); return err },
			func() (err error) { _, secrets[1], err = b.AddRole(ctx, "alice", sphere.RoleReader); return err },
		)
		for i, err := range errs {
			if err != nil {
				t.Errorf("AddRole %d: got %v (code %q), want success", i, err, codeOf(err))
			}
		}
		if n := countRows(t, s, "users", "name = ?", "alice"); n != 1 {
			t.Fatalf("users named alice: got %d, want 1", n)
		}
		if n := countRows(t, s, "roles", ""); n != 2 {
			t.Fatalf("roles: got %d, want 2", n)
		}
		if (secrets[0] == "") == (secrets[1] == "") {
			t.Fatalf("got secrets %q; want exactly one, from the call that created the user", secrets)
		}
	})
}
