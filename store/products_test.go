package store

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/opensphere/sphere"
)

func TestCreateProduct(t *testing.T) {
	clock := newTestClock()
	eachStoreWith(t, Config{Now: clock.Now}, func(t *testing.T, s *Store) {
		ctx := context.Background()
		a := s.Tenant(mustTenant(t, s, "Contoso").ID)
		b := s.Tenant(mustTenant(t, s, "Fabrikam").ID)
		mustProduct(t, a, "Coffee Maker")
		tests := []struct {
			name        string
			ts          *TenantStore
			product     string
			description string
			wantCode    string
		}{
			{"ok", a, "Toaster", "Makes toast.", ""},
			{"ok/empty description", a, "Kettle", "", ""},
			{"ok/256 character description", a, "Fridge", strings.Repeat("d", 256), ""},
			{"ok/same name in another tenant", b, "Coffee Maker", "", ""},
			{"error/duplicate name", a, "Coffee Maker", "", sphere.EConflict},
			{"error/duplicate name in another letter case", a, "coffee MAKER", "", sphere.EConflict},
			{"error/empty name", a, "", "", sphere.EInvalid},
			{"error/51 character name", a, strings.Repeat("p", 51), "", sphere.EInvalid},
			{"error/punctuation", a, "Coffee-Maker", "", sphere.EInvalid},
			{"error/leading space", a, " Blender", "", sphere.EInvalid},
			{"error/257 character description", a, "Blender", strings.Repeat("d", 257), sphere.EInvalid},
			{"error/control character in description", a, "Blender", "line\nbreak", sphere.EInvalid},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				before := dumpTables(t, s)
				p, err := tt.ts.CreateProduct(ctx, tt.product, tt.description)
				checkCode(t, err, tt.wantCode)
				if err != nil {
					if after := dumpTables(t, s); after != before {
						t.Fatalf("a refused CreateProduct changed rows:\nbefore:\n%s\nafter:\n%s", before, after)
					}
					return
				}
				want := sphere.Product{ID: p.ID, TenantID: tt.ts.ID(), Name: tt.product, Description: tt.description,
					CreatedAt: clock.Now(), UpdatedAt: clock.Now()}
				if p != want || !isUUID(p.ID) {
					t.Fatalf("got %+v, want %+v", p, want)
				}
				if got, err := tt.ts.GetProduct(ctx, p.ID); err != nil || got != want {
					t.Fatalf("GetProduct: got %+v, %v; want %+v", got, err, want)
				}
				checkDefaultGroups(t, tt.ts, p)
			})
		}
	})
}

// checkDefaultGroups checks that p has exactly the default device groups.
func checkDefaultGroups(t *testing.T, ts *TenantStore, p sphere.Product) {
	t.Helper()
	page, err := ts.ListDeviceGroups(context.Background(), DeviceGroupFilter{Product: p.ID}, PageRequest{})
	if err != nil {
		t.Fatal(err)
	}
	var got []sphere.DeviceGroup
	for _, g := range page.Items {
		if !isUUID(g.ID) {
			t.Errorf("group %q has id %q, want a UUID", g.Name, g.ID)
		}
		g.ID = ""
		got = append(got, g)
	}
	var want []sphere.DeviceGroup
	for _, d := range sphere.DefaultDeviceGroups {
		want = append(want, sphere.DeviceGroup{
			TenantID: ts.ID(), ProductID: p.ID, Name: d.Name, Description: d.Description,
			OSFeed: d.OSFeed, UpdatePolicy: d.UpdatePolicy, RequireHardwareRoT: d.RequireHardwareRoT,
			CreatedAt: p.CreatedAt, UpdatedAt: p.CreatedAt,
		})
	}
	if !slices.Equal(got, want) {
		t.Fatalf("device groups of a new product:\ngot  %+v\nwant %+v", got, want)
	}
	// Spelled out, so that a change to DefaultDeviceGroups is a decision.
	wantTable := []string{
		"Development Retail No3rdPartyAppUpdates false",
		"Field Test Retail UpdateAll false",
		"Field Test OS Evaluation RetailEval UpdateAll false",
		"Production Retail UpdateAll true",
		"Production OS Evaluation RetailEval UpdateAll true",
	}
	var gotTable []string
	for _, g := range got {
		gotTable = append(gotTable, strings.Join([]string{g.Name, string(g.OSFeed), string(g.UpdatePolicy), map[bool]string{true: "true", false: "false"}[g.RequireHardwareRoT]}, " "))
	}
	if !slices.Equal(gotTable, wantTable) {
		t.Fatalf("default groups:\ngot  %q\nwant %q", gotTable, wantTable)
	}
}

func TestGetProduct(t *testing.T) {
	eachStore(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		a := s.Tenant(mustTenant(t, s, "Contoso").ID)
		p := mustProduct(t, a, "Coffee Maker")
		mustProduct(t, a, "Toaster")
		tests := []struct {
			name     string
			idOrName string
			wantCode string
		}{
			{"ok/by id", p.ID, ""},
			{"ok/by name", "Coffee Maker", ""},
			{"ok/by name in another letter case", "COFFEE maker", ""},
			{"error/unknown id", newID(), sphere.ENotFound},
			{"error/unknown name", "Kettle", sphere.ENotFound},
			{"error/empty", "", sphere.ENotFound},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				got, err := a.GetProduct(ctx, tt.idOrName)
				checkCode(t, err, tt.wantCode)
				if err == nil && got != p {
					t.Fatalf("got %+v, want %+v", got, p)
				}
			})
		}
	})
}

func TestUpdateProduct(t *testing.T) {
	clock := newTestClock()
	eachStoreWith(t, Config{Now: clock.Now}, func(t *testing.T, s *Store) {
		ctx := context.Background()
		a := s.Tenant(mustTenant(t, s, "Contoso").ID)
		p := mustProduct(t, a, "Coffee Maker")
		mustProduct(t, a, "Toaster")
		tests := []struct {
			name     string
			product  string
			update   ProductUpdate
			want     sphere.Product // ID, TenantID and CreatedAt are p's; UpdatedAt is now
			wantCode string
		}{
			{"ok/name", p.ID, ProductUpdate{Name: ptr("Espresso Machine")}, sphere.Product{Name: "Espresso Machine", Description: p.Description}, ""},
			{"ok/description by name", "espresso machine", ProductUpdate{Description: ptr("Pulls shots.")}, sphere.Product{Name: "Espresso Machine", Description: "Pulls shots."}, ""},
			{"ok/both", p.ID, ProductUpdate{Name: ptr("Coffee Maker"), Description: ptr("")}, sphere.Product{Name: "Coffee Maker", Description: ""}, ""},
			{"ok/nothing", p.ID, ProductUpdate{}, sphere.Product{Name: "Coffee Maker", Description: ""}, ""},
			{"ok/letter case of own name", p.ID, ProductUpdate{Name: ptr("COFFEE MAKER")}, sphere.Product{Name: "COFFEE MAKER", Description: ""}, ""},
			{"error/duplicate name", p.ID, ProductUpdate{Name: ptr("toaster")}, sphere.Product{}, sphere.EConflict},
			{"error/invalid name", p.ID, ProductUpdate{Name: ptr("Coffee/Maker")}, sphere.Product{}, sphere.EInvalid},
			{"error/empty name", p.ID, ProductUpdate{Name: ptr("")}, sphere.Product{}, sphere.EInvalid},
			{"error/invalid description", p.ID, ProductUpdate{Description: ptr(strings.Repeat("d", 257))}, sphere.Product{}, sphere.EInvalid},
			{"error/unknown product", newID(), ProductUpdate{Name: ptr("Kettle")}, sphere.Product{}, sphere.ENotFound},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				clock.Advance(time.Second)
				before := dumpTables(t, s)
				got, err := a.UpdateProduct(ctx, tt.product, tt.update)
				checkCode(t, err, tt.wantCode)
				if err != nil {
					if after := dumpTables(t, s); after != before {
						t.Fatalf("a refused UpdateProduct changed rows:\nbefore:\n%s\nafter:\n%s", before, after)
					}
					return
				}
				want := tt.want
				want.ID, want.TenantID, want.CreatedAt, want.UpdatedAt = p.ID, p.TenantID, p.CreatedAt, clock.Now()
				if got != want {
					t.Fatalf("got %+v, want %+v", got, want)
				}
				if read, err := a.GetProduct(ctx, want.Name); err != nil || read != want {
					t.Fatalf("GetProduct(%q): got %+v, %v; want %+v", want.Name, read, err, want)
				}
			})
		}
		if _, err := a.GetProduct(ctx, "Espresso Machine"); codeOf(err) != sphere.ENotFound {
			t.Fatalf("GetProduct(old name): got %v, want %s", err, sphere.ENotFound)
		}
	})
}

func TestDeleteProduct(t *testing.T) {
	eachStore(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		a := s.Tenant(mustTenant(t, s, "Contoso").ID)
		p := mustProduct(t, a, "Coffee Maker")
		other := mustProduct(t, a, "Toaster")
		prod := groupNamed(t, a, p.ID, "Production")
		d := mustClaimedDevice(t, s, a, prod.ID)
		loose := mustClaimedDevice(t, s, a, "")

		before := dumpTables(t, s)
		checkCode(t, a.DeleteProduct(ctx, p.ID), sphere.EPrecondition)
		if after := dumpTables(t, s); after != before {
			t.Fatalf("a refused DeleteProduct changed rows:\nbefore:\n%s\nafter:\n%s", before, after)
		}

		if _, err := a.MoveDevice(ctx, d.ID, groupNamed(t, a, other.ID, "Development").ID); err != nil {
			t.Fatal(err)
		}
		tests := []struct {
			name     string
			product  string
			wantCode string
		}{
			{"ok/by name", "coffee maker", ""},
			{"error/already deleted", p.ID, sphere.ENotFound},
			{"error/unknown", newID(), sphere.ENotFound},
			{"error/device in a group", other.ID, sphere.EPrecondition},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				checkCode(t, a.DeleteProduct(ctx, tt.product), tt.wantCode)
			})
		}
		if _, err := a.GetProduct(ctx, p.ID); codeOf(err) != sphere.ENotFound {
			t.Fatalf("GetProduct(deleted): got %v, want %s", err, sphere.ENotFound)
		}
		if _, err := a.GetDeviceGroup(ctx, prod.ID); codeOf(err) != sphere.ENotFound {
			t.Fatalf("GetDeviceGroup(group of deleted product): got %v, want %s", err, sphere.ENotFound)
		}
		if n := countRows(t, s, "device_groups", "product_id = ?", p.ID); n != 0 {
			t.Fatalf("device groups of the deleted product: got %d rows, want 0", n)
		}
		if n := countRows(t, s, "device_groups", "product_id = ?", other.ID); n != len(sphere.DefaultDeviceGroups) {
			t.Fatalf("device groups of the other product: got %d rows, want %d", n, len(sphere.DefaultDeviceGroups))
		}
		for _, dev := range []sphere.Device{d, loose} {
			if _, err := a.GetDevice(ctx, dev.ID); err != nil {
				t.Fatalf("GetDevice(%s) after deleting a product: %v", dev.ID, err)
			}
		}
		// The name is free again.
		mustProduct(t, a, "Coffee Maker")
	})
}

func TestListProducts(t *testing.T) {
	eachStore(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		a := s.Tenant(mustTenant(t, s, "Contoso").ID)
		b := s.Tenant(mustTenant(t, s, "Fabrikam").ID)
		coffee := mustProduct(t, a, "Coffee Maker")
		toaster := mustProduct(t, a, "Toaster")
		grinder := mustProduct(t, a, "Coffee Grinder")
		mustProduct(t, b, "Coffee Roaster")
		tests := []struct {
			name   string
			filter ProductFilter
			want   []sphere.Product
		}{
			{"ok/all in creation order", ProductFilter{}, []sphere.Product{coffee, toaster, grinder}},
			{"ok/name contains", ProductFilter{NameContains: "COFFEE"}, []sphere.Product{coffee, grinder}},
			{"ok/no match", ProductFilter{NameContains: "roaster"}, []sphere.Product{}},
			{"ok/percent matched literally", ProductFilter{NameContains: "%"}, []sphere.Product{}},
			{"ok/underscore matched literally", ProductFilter{NameContains: "coffee_maker"}, []sphere.Product{}},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				got, err := a.ListProducts(ctx, tt.filter, PageRequest{})
				if err != nil {
					t.Fatal(err)
				}
				if !slices.Equal(got.Items, tt.want) {
					t.Fatalf("got %v, want %v", ids(got.Items, productID), ids(tt.want, productID))
				}
			})
		}
	})
}
