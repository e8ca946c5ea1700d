package store

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/opensphere/sphere"
)

func TestCreateTenant(t *testing.T) {
	eachStore(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		mustTenant(t, s, "Contoso")
		tests := []struct {
			name     string
			tenant   string
			wantCode string
		}{
			{"ok", "Fabrikam", ""},
			{"ok/letters digits and inner spaces", "Café Zürich 2", ""},
			{"ok/50 characters", strings.Repeat("x", 50), ""},
			{"ok/50 non-ASCII characters", strings.Repeat("é", 50), ""},
			{"error/duplicate name", "Contoso", sphere.EConflict},
			{"error/duplicate name in another letter case", "cONTOSO", sphere.EConflict},
			{"error/empty", "", sphere.EInvalid},
			{"error/51 characters", strings.Repeat("y", 51), sphere.EInvalid},
			{"error/punctuation", "Contoso, Ltd.", sphere.EInvalid},
			{"error/percent", "Contoso%", sphere.EInvalid},
			{"error/underscore", "Contoso_2", sphere.EInvalid},
			{"error/leading space", " Northwind", sphere.EInvalid},
			{"error/trailing space", "Northwind ", sphere.EInvalid},
			{"error/newline", "North\nwind", sphere.EInvalid},
			{"error/invalid UTF-8", "North\xffwind", sphere.EInvalid},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				before := countRows(t, s, "tenants", "")
				got, err := s.CreateTenant(ctx, tt.tenant, "")
				checkCode(t, err, tt.wantCode)
				after := countRows(t, s, "tenants", "")
				if tt.wantCode != "" {
					if after != before {
						t.Fatalf("tenant rows: got %d, want %d (a refused create writes nothing)", after, before)
					}
					return
				}
				if after != before+1 {
					t.Fatalf("tenant rows: got %d, want %d", after, before+1)
				}
				if got.Name != tt.tenant || !isUUID(got.ID) || got.CreatedAt.IsZero() || !got.UpdatedAt.Equal(got.CreatedAt) {
					t.Fatalf("got tenant %+v, want name %q, a UUID id and created_at = updated_at", got, tt.tenant)
				}
				read, err := s.GetTenant(ctx, got.ID)
				if err != nil || read != got {
					t.Fatalf("GetTenant(%s): got %+v, %v; want %+v", got.ID, read, err, got)
				}
			})
		}
	})
}

func TestCreateTenantWithAdministrator(t *testing.T) {
	eachStore(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		u, _ := mustUser(t, s, "alice")
		tn, err := s.CreateTenant(ctx, "Contoso", u.ID)
		if err != nil {
			t.Fatal(err)
		}
		if got, err := s.RoleIn(ctx, u.ID, tn.ID); err != nil || got != sphere.RoleAdministrator {
			t.Fatalf("RoleIn: got %q, %v; want Administrator", got, err)
		}
		// A conflicting create must not leave a role row behind either.
		_, err = s.CreateTenant(ctx, "contoso", u.ID)
		checkCode(t, err, sphere.EConflict)
		if got, want := countRows(t, s, "roles", ""), 1; got != want {
			t.Fatalf("role rows: got %d, want %d", got, want)
		}
	})
}

func TestGetTenant(t *testing.T) {
	eachStore(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		contoso := mustTenant(t, s, "Contoso Ltd")
		mustTenant(t, s, "Fabrikam")
		tests := []struct {
			name     string
			idOrName string
			wantCode string
		}{
			{"ok/by id", contoso.ID, ""},
			{"ok/by name", "Contoso Ltd", ""},
			{"ok/by name in another letter case", "CONTOSO ltd", ""},
			{"error/unknown name", "Northwind", sphere.ENotFound},
			{"error/unknown id", newID(), sphere.ENotFound},
			{"error/empty", "", sphere.ENotFound},
			{"error/name prefix", "Contoso", sphere.ENotFound},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				got, err := s.GetTenant(ctx, tt.idOrName)
				checkCode(t, err, tt.wantCode)
				if err == nil && got != contoso {
					t.Fatalf("got %+v, want %+v", got, contoso)
				}
			})
		}
	})
}

func TestRenameTenant(t *testing.T) {
	clock := newTestClock()
	eachStoreWith(t, Config{Now: clock.Now}, func(t *testing.T, s *Store) {
		ctx := context.Background()
		contoso := mustTenant(t, s, "Contoso")
		mustTenant(t, s, "Fabrikam")
		tests := []struct {
			name     string
			id       string
			newName  string
			wantCode string
		}{
			{"ok", contoso.ID, "Contoso Ltd", ""},
			{"ok/letter case only", contoso.ID, "CONTOSO LTD", ""},
			{"error/duplicate name", contoso.ID, "fabrikam", sphere.EConflict},
			{"error/invalid name", contoso.ID, "Contoso!", sphere.EInvalid},
			{"error/empty name", contoso.ID, "", sphere.EInvalid},
			{"error/unknown id", newID(), "Northwind", sphere.ENotFound},
			{"error/not an id", "Contoso", "Northwind", sphere.ENotFound},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				clock.Advance(time.Minute)
				before := dumpTables(t, s)
				got, err := s.RenameTenant(ctx, tt.id, tt.newName)
				checkCode(t, err, tt.wantCode)
				if err != nil {
					if after := dumpTables(t, s); after != before {
						t.Fatalf("a refused rename changed rows:\nbefore:\n%s\nafter:\n%s", before, after)
					}
					return
				}
				want := sphere.Tenant{ID: tt.id, Name: tt.newName, CreatedAt: contoso.CreatedAt, UpdatedAt: clock.Now()}
				if got != want {
					t.Fatalf("got %+v, want %+v", got, want)
				}
				if byName, err := s.GetTenant(ctx, tt.newName); err != nil || byName != want {
					t.Fatalf("GetTenant(%q): got %+v, %v; want %+v", tt.newName, byName, err, want)
				}
			})
		}
		if _, err := s.GetTenant(ctx, "Contoso"); codeOf(err) != sphere.ENotFound {
			t.Fatalf("GetTenant(old name): got %v, want %s", err, sphere.ENotFound)
		}
	})
}

func TestListTenants(t *testing.T) {
	eachStore(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		alice, _ := mustUser(t, s, "alice")
		bob, _ := mustUser(t, s, "bob")
		var all []sphere.Tenant
		for _, c := range []struct{ name, admin string }{
			{"Alpha", alice.ID}, {"Beta", ""}, {"Alphabet", bob.ID}, {"Gamma", alice.ID}, {"École", ""},
		} {
			tn, err := s.CreateTenant(ctx, c.name, c.admin)
			if err != nil {
				t.Fatal(err)
			}
			all = append(all, tn)
		}
		alpha, beta, alphabet, gamma, ecole := all[0], all[1], all[2], all[3], all[4]
		tests := []struct {
			name   string
			filter TenantFilter
			want   []sphere.Tenant
		}{
			{"ok/no filter lists all in creation order", TenantFilter{}, all},
			{"ok/member", TenantFilter{MemberID: alice.ID}, []sphere.Tenant{alpha, gamma}},
			{"ok/other member", TenantFilter{MemberID: bob.ID}, []sphere.Tenant{alphabet}},
			{"ok/unknown member", TenantFilter{MemberID: newID()}, nil},
			{"ok/name contains", TenantFilter{NameContains: "alpha"}, []sphere.Tenant{alpha, alphabet}},
			{"ok/name contains ignores case", TenantFilter{NameContains: "ALPHA"}, []sphere.Tenant{alpha, alphabet}},
			{"ok/name contains inner part", TenantFilter{NameContains: "ph"}, []sphere.Tenant{alpha, alphabet}},
			{"ok/name contains one letter", TenantFilter{NameContains: "a"}, []sphere.Tenant{alpha, beta, alphabet, gamma}},
			{"ok/name contains non-ASCII in another case", TenantFilter{NameContains: "ÉCO"}, []sphere.Tenant{ecole}},
			{"ok/name contains no match", TenantFilter{NameContains: "delta"}, nil},
			{"ok/percent matched literally", TenantFilter{NameContains: "%"}, nil},
			{"ok/underscore matched literally", TenantFilter{NameContains: "_"}, nil},
			{"ok/percent between letters matched literally", TenantFilter{NameContains: "al%a"}, nil},
			{"ok/underscore between letters matched literally", TenantFilter{NameContains: "alph_"}, nil},
			{"ok/backslash matched literally", TenantFilter{NameContains: `\`}, nil},
			{"ok/quote matched literally", TenantFilter{NameContains: `'`}, nil},
			{"ok/member and name", TenantFilter{MemberID: alice.ID, NameContains: "alpha"}, []sphere.Tenant{alpha}},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				got, err := s.ListTenants(ctx, tt.filter, PageRequest{})
				if err != nil {
					t.Fatal(err)
				}
				if tt.want == nil {
					tt.want = []sphere.Tenant{}
				}
				if !slices.Equal(got.Items, tt.want) || got.NextPageToken != "" {
					t.Fatalf("got %v (next %q), want %v", ids(got.Items, tenantID), got.NextPageToken, ids(tt.want, tenantID))
				}
			})
		}
	})
}
