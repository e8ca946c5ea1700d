package store

import (
	"context"
	"sort"
	"testing"

	"github.com/opensphere/sphere"
)

func TestAddRole(t *testing.T) {
	eachStore(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		if _, err := s.Bootstrap(ctx, "admin", "Contoso"); err != nil {
			t.Fatal(err)
		}
		contoso, err := s.GetTenant(ctx, "Contoso")
		if err != nil {
			t.Fatal(err)
		}
		a := s.Tenant(contoso.ID)
		b := s.Tenant(mustTenant(t, s, "Fabrikam").ID)
		if _, _, err := b.AddRole(ctx, "bob", sphere.RoleAdministrator); err != nil {
			t.Fatal(err)
		}
		tests := []struct {
			name       string
			user       string
			role       sphere.Role
			wantCode   string
			wantSecret bool
		}{
			{"ok/new user gets a token", "alice@example.com", sphere.RoleContributor, "", true},
			{"ok/existing user changes role", "alice@example.com", sphere.RoleReader, "", false},
			{"ok/existing user promoted", "alice@example.com", sphere.RoleAdministrator, "", false},
			{"ok/demote one of two Administrators", "alice@example.com", sphere.RoleContributor, "", false},
			{"ok/user of another tenant gets no token", "bob", sphere.RoleReader, "", false},
			{"ok/same role again", "bob", sphere.RoleReader, "", false},
			{"error/demote the last Administrator", "admin", sphere.RoleContributor, sphere.EPrecondition, false},
			{"error/unknown role", "carol", sphere.Role("Owner"), sphere.EInvalid, false},
			{"error/role in wrong letter case", "carol", sphere.Role("reader"), sphere.EInvalid, false},
			{"error/empty role", "carol", "", sphere.EInvalid, false},
			{"error/invalid user name", "carol smith", sphere.RoleReader, sphere.EInvalid, false},
			{"error/empty user name", "", sphere.RoleReader, sphere.EInvalid, false},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				before := dumpTables(t, s)
				ra, secret, err := a.AddRole(ctx, tt.user, tt.role)
				checkCode(t, err, tt.wantCode)
				if err != nil {
					if after := dumpTables(t, s); after != before || secret != "" {
						t.Fatalf("a refused AddRole returned %q or changed rows:\nbefore:\n%s\nafter:\n%s", secret, before, after)
					}
					return
				}
				if ra.TenantID != a.ID() || ra.UserName != tt.user || ra.Role != tt.role || !isUUID(ra.UserID) {
					t.Fatalf("got %+v, want %s as %s in %s", ra, tt.user, tt.role, a.ID())
				}
				if (secret != "") != tt.wantSecret {
					t.Fatalf("got secret %q, want one: %v", secret, tt.wantSecret)
				}
				if secret != "" {
					u, err := s.Authenticate(ctx, secret)
					if err != nil || u.ID != ra.UserID || u.Name != tt.user || u.Operator {
						t.Fatalf("Authenticate(new user's token): got %+v, %v; want non-operator %s", u, err, tt.user)
					}
				}
				if got, err := s.RoleIn(ctx, ra.UserID, a.ID()); err != nil || got != tt.role {
					t.Fatalf("RoleIn: got %q, %v; want %s", got, err, tt.role)
				}
			})
		}
		// bob's role in his own tenant is untouched.
		bob, err := b.ListRoles(ctx, PageRequest{})
		if err != nil || len(bob.Items) != 1 || bob.Items[0].Role != sphere.RoleAdministrator {
			t.Fatalf("Fabrikam's roles: got %+v, %v; want bob as Administrator", bob.Items, err)
		}
	})
}

func TestRemoveRole(t *testing.T) {
	eachStore(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		a := s.Tenant(mustTenant(t, s, "Contoso").ID)
		b := s.Tenant(mustTenant(t, s, "Fabrikam").ID)
		for _, r := range []struct {
			ts   *TenantStore
			user string
			role sphere.Role
		}{
			{a, "admin", sphere.RoleAdministrator},
			{a, "alice", sphere.RoleContributor},
			{a, "second", sphere.RoleAdministrator},
			{b, "bob", sphere.RoleAdministrator},
		} {
			if _, _, err := r.ts.AddRole(ctx, r.user, r.role); err != nil {
				t.Fatal(err)
			}
		}
		tests := []struct {
			name     string
			user     string
			wantCode string
		}{
			{"ok/contributor", "alice", ""},
			{"error/already removed", "alice", sphere.ENotFound},
			{"ok/one of two Administrators", "second", ""},
			{"error/the last Administrator", "admin", sphere.EPrecondition},
			{"error/user of another tenant", "bob", sphere.ENotFound},
			{"error/unknown user", "nobody", sphere.ENotFound},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				before := dumpTables(t, s)
				err := a.RemoveRole(ctx, tt.user)
				checkCode(t, err, tt.wantCode)
				if err != nil {
					if after := dumpTables(t, s); after != before {
						t.Fatalf("a refused RemoveRole changed rows:\nbefore:\n%s\nafter:\n%s", before, after)
					}
					return
				}
				page, err := a.ListRoles(ctx, PageRequest{})
				if err != nil {
					t.Fatal(err)
				}
				for _, r := range page.Items {
					if r.UserName == tt.user {
						t.Fatalf("%s still holds %s", tt.user, r.Role)
					}
				}
			})
		}
		// A removed user keeps its account and can be given a role again.
		if n := countRows(t, s, "users", "name = ?", "alice"); n != 1 {
			t.Fatalf("users named alice: got %d, want 1", n)
		}
		if _, secret, err := a.AddRole(ctx, "alice", sphere.RoleReader); err != nil || secret != "" {
			t.Fatalf("AddRole(alice) again: got %q, %v; want \"\", nil", secret, err)
		}
	})
}

func TestListRoles(t *testing.T) {
	eachStore(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		a := s.Tenant(mustTenant(t, s, "Contoso").ID)
		b := s.Tenant(mustTenant(t, s, "Fabrikam").ID)
		want := map[string]sphere.Role{"admin": sphere.RoleAdministrator, "alice": sphere.RoleContributor, "carol": sphere.RoleReader}
		for user, role := range want {
			if _, _, err := a.AddRole(ctx, user, role); err != nil {
				t.Fatal(err)
			}
		}
		if _, _, err := b.AddRole(ctx, "bob", sphere.RoleAdministrator); err != nil {
			t.Fatal(err)
		}
		if _, _, err := b.AddRole(ctx, "alice", sphere.RoleReader); err != nil {
			t.Fatal(err)
		}
		page, err := a.ListRoles(ctx, PageRequest{})
		if err != nil {
			t.Fatal(err)
		}
		got := map[string]sphere.Role{}
		for _, r := range page.Items {
			if r.TenantID != a.ID() || !isUUID(r.UserID) || r.CreatedAt.IsZero() {
				t.Errorf("bad assignment %+v", r)
			}
			got[r.UserName] = r.Role
		}
		if len(got) != len(want) || len(page.Items) != len(want) {
			t.Fatalf("got %v, want %v", got, want)
		}
		for user, role := range want {
			if got[user] != role {
				t.Fatalf("got %v, want %v", got, want)
			}
		}
		userIDs := ids(page.Items, roleUserID)
		if !sort.StringsAreSorted(userIDs) {
			t.Fatalf("roles are not in user id order: %v", userIDs)
		}
	})
}
