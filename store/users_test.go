package store

import (
	"context"
	"database/sql"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/opensphere/sphere"
)

func TestBootstrap(t *testing.T) {
	eachStore(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		secret, err := s.Bootstrap(ctx, "admin@example.com", "Default")
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(secret, TokenPrefix) {
			t.Fatalf("got secret %q, want one starting with %q", secret, TokenPrefix)
		}
		u, err := s.Authenticate(ctx, secret)
		if err != nil {
			t.Fatal(err)
		}
		if u.Name != "admin@example.com" || !u.Operator || !isUUID(u.ID) {
			t.Fatalf("got user %+v, want operator admin@example.com", u)
		}
		tn, err := s.GetTenant(ctx, "default")
		if err != nil {
			t.Fatal(err)
		}
		if role, err := s.RoleIn(ctx, u.ID, tn.ID); err != nil || role != sphere.RoleAdministrator {
			t.Fatalf("RoleIn: got %q, %v; want Administrator", role, err)
		}
		toks, err := s.ListTokens(ctx, u.ID, PageRequest{})
		if err != nil || len(toks.Items) != 1 || toks.Items[0].Name != "bootstrap" || toks.Items[0].ExpiresAt != nil {
			t.Fatalf("ListTokens: got %+v, %v; want one non-expiring token named bootstrap", toks.Items, err)
		}
		for table, want := range map[string]int{"users": 1, "tenants": 1, "roles": 1, "tokens": 1} {
			if got := countRows(t, s, table, ""); got != want {
				t.Errorf("%s rows: got %d, want %d", table, got, want)
			}
		}

		before := dumpTables(t, s)
		for _, args := range [][2]string{{"admin@example.com", "Default"}, {"someone", "Other"}} {
			again, err := s.Bootstrap(ctx, args[0], args[1])
			if err != nil || again != "" {
				t.Fatalf("Bootstrap%q again: got %q, %v; want \"\", nil", args, again, err)
			}
		}
		if after := dumpTables(t, s); after != before {
			t.Fatalf("a second Bootstrap wrote rows:\nbefore:\n%s\nafter:\n%s", before, after)
		}
	})
}

func TestBootstrapInvalid(t *testing.T) {
	eachStore(t, func(t *testing.T, s *Store) {
		tests := []struct {
			name, admin, tenant string
		}{
			{"error/empty admin", "", "Default"},
			{"error/admin with space", "the admin", "Default"},
			{"error/admin not ASCII", "adminé", "Default"},
			{"error/empty tenant", "admin", ""},
			{"error/tenant with punctuation", "admin", "Default!"},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				secret, err := s.Bootstrap(context.Background(), tt.admin, tt.tenant)
				checkCode(t, err, sphere.EInvalid)
				if secret != "" || countRows(t, s, "users", "") != 0 || countRows(t, s, "tenants", "") != 0 {
					t.Fatalf("a refused Bootstrap returned %q or wrote rows", secret)
				}
			})
		}
	})
}

func TestRecoverOperator(t *testing.T) {
	eachStore(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		first, err := s.Bootstrap(ctx, "admin", "Default")
		if err != nil {
			t.Fatal(err)
		}
		tn, err := s.GetTenant(ctx, "Default")
		if err != nil {
			t.Fatal(err)
		}
		// A tenant user that is not (yet) an operator.
		if _, _, err := s.Tenant(tn.ID).AddRole(ctx, "carol", sphere.RoleReader); err != nil {
			t.Fatal(err)
		}
		tests := []struct {
			name     string
			user     string
			wantCode string
		}{
			{"ok/existing operator", "admin", ""},
			{"ok/new operator", "dave", ""},
			{"ok/existing user becomes operator", "carol", ""},
			{"error/invalid name", "not valid", sphere.EInvalid},
			{"error/empty name", "", sphere.EInvalid},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				users := countRows(t, s, "users", "")
				var existingID string
				if err := s.queryRow(ctx, "SELECT id FROM users WHERE name = ?", tt.user).Scan(&existingID); err != nil && !errors.Is(err, sql.ErrNoRows) {
					t.Fatal(err)
				}
				secret, err := s.RecoverOperator(ctx, tt.user)
				checkCode(t, err, tt.wantCode)
				if err != nil {
					if secret != "" || countRows(t, s, "users", "") != users {
						t.Fatalf("a refused RecoverOperator returned %q or wrote a user", secret)
					}
					return
				}
				u, err := s.Authenticate(ctx, secret)
				if err != nil {
					t.Fatalf("the recovered token does not authenticate: %v", err)
				}
				if u.Name != tt.user || !u.Operator {
					t.Fatalf("got user %+v, want operator %q", u, tt.user)
				}
				if existingID != "" && u.ID != existingID {
					t.Fatalf("got user id %s, want the existing %s", u.ID, existingID)
				}
			})
		}
		if _, err := s.Authenticate(ctx, first); err != nil {
			t.Fatalf("recovery revoked the earlier token: %v", err)
		}
	})
}

func TestAuthenticate(t *testing.T) {
	clock := newTestClock()
	eachStoreWith(t, Config{Now: clock.Now}, func(t *testing.T, s *Store) {
		ctx := context.Background()
		u, good := mustUser(t, s, "alice")
		expires := clock.Now().Add(time.Hour)
		tok, expiring, err := s.CreateToken(ctx, u.ID, "ci", &expires)
		if err != nil {
			t.Fatal(err)
		}
		if tok.ExpiresAt == nil || !tok.ExpiresAt.Equal(expires) || tok.UserID != u.ID || tok.Name != "ci" {
			t.Fatalf("got token %+v, want ci for %s expiring %s", tok, u.ID, expires)
		}
		tests := []struct {
			name     string
			secret   string
			advance  time.Duration // clock offset from the token's creation
			wantCode string
		}{
			{"ok", good, 0, ""},
			{"ok/expiring token before expiry", expiring, time.Hour - time.Microsecond, ""},
			{"ok/non-expiring token much later", good, 24 * 365 * time.Hour, ""},
			{"error/expiring token at expiry", expiring, time.Hour, sphere.EUnauthenticated},
			{"error/expiring token after expiry", expiring, 2 * time.Hour, sphere.EUnauthenticated},
			{"error/unknown token", newTokenSecret(), 0, sphere.EUnauthenticated},
			{"error/empty", "", 0, sphere.EUnauthenticated},
			{"error/missing prefix", strings.TrimPrefix(good, TokenPrefix), 0, sphere.EUnauthenticated},
			{"error/bearer scheme included", "Bearer " + good, 0, sphere.EUnauthenticated},
			{"error/truncated", good[:len(good)-1], 0, sphere.EUnauthenticated},
			{"error/too long", good + strings.Repeat("A", 200), 0, sphere.EUnauthenticated},
			{"error/hash instead of secret", TokenPrefix + hashToken(good), 0, sphere.EUnauthenticated},
		}
		start := clock.Now()
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				clock.Set(start.Add(tt.advance))
				got, err := s.Authenticate(ctx, tt.secret)
				checkCode(t, err, tt.wantCode)
				if err == nil && got != u {
					t.Fatalf("got user %+v, want %+v", got, u)
				}
			})
		}
	})
}

func TestCreateToken(t *testing.T) {
	clock := newTestClock()
	eachStoreWith(t, Config{Now: clock.Now}, func(t *testing.T, s *Store) {
		ctx := context.Background()
		u, _ := mustUser(t, s, "alice")
		past := clock.Now().Add(-time.Second)
		now := clock.Now()
		future := clock.Now().Add(time.Minute)
		tests := []struct {
			name     string
			tokName  string
			expires  *time.Time
			wantCode string
		}{
			{"ok/no expiry", "laptop", nil, ""},
			{"ok/expiry", "ci job", &future, ""},
			{"ok/100 characters", strings.Repeat("n", 100), nil, ""},
			{"error/empty name", "", nil, sphere.EInvalid},
			{"error/101 characters", strings.Repeat("n", 101), nil, sphere.EInvalid},
			{"error/control character", "lap\ttop", nil, sphere.EInvalid},
			{"error/expiry in the past", "old", &past, sphere.EInvalid},
			{"error/expiry now", "now", &now, sphere.EInvalid},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				before := countRows(t, s, "tokens", "")
				tok, secret, err := s.CreateToken(ctx, u.ID, tt.tokName, tt.expires)
				checkCode(t, err, tt.wantCode)
				if err != nil {
					if got := countRows(t, s, "tokens", ""); got != before || secret != "" {
						t.Fatalf("a refused CreateToken wrote a row (%d -> %d) or returned a secret", before, got)
					}
					return
				}
				if got, err := s.Authenticate(ctx, secret); err != nil || got.ID != u.ID {
					t.Fatalf("Authenticate(new token): got %+v, %v", got, err)
				}
				page, err := s.ListTokens(ctx, u.ID, PageRequest{})
				if err != nil {
					t.Fatal(err)
				}
				var listed *sphere.Token
				for i := range page.Items {
					if page.Items[i].ID == tok.ID {
						listed = &page.Items[i]
					}
				}
				if listed == nil || listed.Name != tt.tokName || listed.UserID != u.ID || !listed.CreatedAt.Equal(clock.Now()) ||
					(tt.expires == nil) != (listed.ExpiresAt == nil) || (tt.expires != nil && !listed.ExpiresAt.Equal(*tt.expires)) {
					t.Fatalf("ListTokens: got %+v, want token %+v", page.Items, tok)
				}
			})
		}
	})
}

func TestDeleteToken(t *testing.T) {
	eachStore(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		alice, _ := mustUser(t, s, "alice")
		bob, bobSecret := mustUser(t, s, "bob")
		tok, secret, err := s.CreateToken(ctx, alice.ID, "laptop", nil)
		if err != nil {
			t.Fatal(err)
		}
		bobToks, err := s.ListTokens(ctx, bob.ID, PageRequest{})
		if err != nil || len(bobToks.Items) != 1 {
			t.Fatalf("ListTokens(bob): got %v, %v; want one token", bobToks.Items, err)
		}
		tests := []struct {
			name     string
			userID   string
			tokenID  string
			wantCode string
		}{
			{"error/another user's token", alice.ID, bobToks.Items[0].ID, sphere.ENotFound},
			{"error/unknown token", alice.ID, newID(), sphere.ENotFound},
			{"ok", alice.ID, tok.ID, ""},
			{"error/already deleted", alice.ID, tok.ID, sphere.ENotFound},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				checkCode(t, s.DeleteToken(ctx, tt.userID, tt.tokenID), tt.wantCode)
			})
		}
		if _, err := s.Authenticate(ctx, secret); codeOf(err) != sphere.EUnauthenticated {
			t.Fatalf("Authenticate(revoked token): got %v, want %s", err, sphere.EUnauthenticated)
		}
		if _, err := s.Authenticate(ctx, bobSecret); err != nil {
			t.Fatalf("Authenticate(bob's token) after alice tried to delete it: %v", err)
		}
	})
}

func TestRoleIn(t *testing.T) {
	eachStore(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		alice, _ := mustUser(t, s, "alice")
		a, err := s.CreateTenant(ctx, "Contoso", alice.ID)
		if err != nil {
			t.Fatal(err)
		}
		b := mustTenant(t, s, "Fabrikam")
		if got, err := s.RoleIn(ctx, alice.ID, a.ID); err != nil || got != sphere.RoleAdministrator {
			t.Fatalf("RoleIn(own tenant): got %q, %v; want Administrator", got, err)
		}
		if got, err := s.RoleIn(ctx, alice.ID, b.ID); err != nil || got != "" {
			t.Fatalf("RoleIn(other tenant): got %q, %v; want \"\"", got, err)
		}
	})
}
