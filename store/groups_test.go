package store

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/opensphere/sphere"
)

func TestCreateDeviceGroup(t *testing.T) {
	clock := newTestClock()
	eachStoreWith(t, Config{Now: clock.Now}, func(t *testing.T, s *Store) {
		ctx := context.Background()
		a := s.Tenant(mustTenant(t, s, "Contoso").ID)
		coffee := mustProduct(t, a, "Coffee Maker")
		toaster := mustProduct(t, a, "Toaster")
		tests := []struct {
			name     string
			spec     DeviceGroupSpec
			want     sphere.DeviceGroup // ID, TenantID and times are filled in
			wantCode string
		}{
			{"ok/defaults", DeviceGroupSpec{Product: coffee.ID, Name: "Lab"},
				sphere.DeviceGroup{ProductID: coffee.ID, Name: "Lab", OSFeed: sphere.FeedRetail, UpdatePolicy: sphere.PolicyUpdateAll}, ""},
			{"ok/feed policy and RoT in any letter case", DeviceGroupSpec{Product: coffee.ID, Name: "Kiosk", Description: "Shop floor.", OSFeed: "retaileval", UpdatePolicy: "NOUPDATES", RequireHardwareRoT: true},
				sphere.DeviceGroup{ProductID: coffee.ID, Name: "Kiosk", Description: "Shop floor.", OSFeed: sphere.FeedRetailEval, UpdatePolicy: sphere.PolicyNoUpdates, RequireHardwareRoT: true}, ""},
			{"ok/policy only", DeviceGroupSpec{Product: coffee.ID, Name: "Vendor Apps Off", UpdatePolicy: "No3rdPartyAppUpdates"},
				sphere.DeviceGroup{ProductID: coffee.ID, Name: "Vendor Apps Off", OSFeed: sphere.FeedRetail, UpdatePolicy: sphere.PolicyNo3rdPartyAppUpdates}, ""},
			{"ok/product by name", DeviceGroupSpec{Product: "toaster", Name: "Lab"},
				sphere.DeviceGroup{ProductID: toaster.ID, Name: "Lab", OSFeed: sphere.FeedRetail, UpdatePolicy: sphere.PolicyUpdateAll}, ""},
			{"error/duplicate name in product", DeviceGroupSpec{Product: coffee.ID, Name: "lab"}, sphere.DeviceGroup{}, sphere.EConflict},
			{"error/default group name in product", DeviceGroupSpec{Product: coffee.ID, Name: "PRODUCTION"}, sphere.DeviceGroup{}, sphere.EConflict},
			{"error/bad feed", DeviceGroupSpec{Product: coffee.ID, Name: "Beta", OSFeed: "Beta"}, sphere.DeviceGroup{}, sphere.EInvalid},
			{"error/bad policy", DeviceGroupSpec{Product: coffee.ID, Name: "Beta", UpdatePolicy: "Sometimes"}, sphere.DeviceGroup{}, sphere.EInvalid},
			{"error/invalid name", DeviceGroupSpec{Product: coffee.ID, Name: "Beta!"}, sphere.DeviceGroup{}, sphere.EInvalid},
			{"error/empty name", DeviceGroupSpec{Product: coffee.ID}, sphere.DeviceGroup{}, sphere.EInvalid},
			{"error/invalid description", DeviceGroupSpec{Product: coffee.ID, Name: "Beta", Description: strings.Repeat("d", 257)}, sphere.DeviceGroup{}, sphere.EInvalid},
			{"error/no product", DeviceGroupSpec{Name: "Beta"}, sphere.DeviceGroup{}, sphere.EInvalid},
			{"error/unknown product", DeviceGroupSpec{Product: newID(), Name: "Beta"}, sphere.DeviceGroup{}, sphere.ENotFound},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				clock.Advance(time.Second)
				before := dumpTables(t, s)
				got, err := a.CreateDeviceGroup(ctx, tt.spec)
				checkCode(t, err, tt.wantCode)
				if err != nil {
					if after := dumpTables(t, s); after != before {
						t.Fatalf("a refused CreateDeviceGroup changed rows:\nbefore:\n%s\nafter:\n%s", before, after)
					}
					return
				}
				want := tt.want
				want.ID, want.TenantID, want.CreatedAt, want.UpdatedAt = got.ID, a.ID(), clock.Now(), clock.Now()
				if got != want || !isUUID(got.ID) {
					t.Fatalf("got  %+v\nwant %+v", got, want)
				}
				if read, err := a.GetDeviceGroup(ctx, got.ID); err != nil || read != want {
					t.Fatalf("GetDeviceGroup: got %+v, %v; want %+v", read, err, want)
				}
			})
		}
	})
}

func TestUpdateDeviceGroup(t *testing.T) {
	clock := newTestClock()
	eachStoreWith(t, Config{Now: clock.Now}, func(t *testing.T, s *Store) {
		ctx := context.Background()
		a := s.Tenant(mustTenant(t, s, "Contoso").ID)
		coffee := mustProduct(t, a, "Coffee Maker")
		g := groupNamed(t, a, coffee.ID, "Field Test")
		// Each case changes the group as left by the one before.
		tests := []struct {
			name     string
			id       string
			update   DeviceGroupUpdate
			change   func(g *sphere.DeviceGroup)
			wantCode string
		}{
			{"ok/name", g.ID, DeviceGroupUpdate{Name: ptr("Beta Testers")}, func(g *sphere.DeviceGroup) { g.Name = "Beta Testers" }, ""},
			{"ok/description", g.ID, DeviceGroupUpdate{Description: ptr("Friends and family.")}, func(g *sphere.DeviceGroup) { g.Description = "Friends and family." }, ""},
			{"ok/feed", g.ID, DeviceGroupUpdate{OSFeed: ptr("RetailEval")}, func(g *sphere.DeviceGroup) { g.OSFeed = sphere.FeedRetailEval }, ""},
			{"ok/policy", g.ID, DeviceGroupUpdate{UpdatePolicy: ptr("noupdates")}, func(g *sphere.DeviceGroup) { g.UpdatePolicy = sphere.PolicyNoUpdates }, ""},
			{"ok/require hardware RoT", g.ID, DeviceGroupUpdate{RequireHardwareRoT: ptr(true)}, func(g *sphere.DeviceGroup) { g.RequireHardwareRoT = true }, ""},
			{"ok/clear require hardware RoT", g.ID, DeviceGroupUpdate{RequireHardwareRoT: ptr(false)}, func(g *sphere.DeviceGroup) { g.RequireHardwareRoT = false }, ""},
			{"ok/everything", g.ID, DeviceGroupUpdate{Name: ptr("Field Test"), Description: ptr(""), OSFeed: ptr("retail"), UpdatePolicy: ptr("UpdateAll"), RequireHardwareRoT: ptr(true)},
				func(g *sphere.DeviceGroup) {
					g.Name, g.Description, g.OSFeed, g.UpdatePolicy, g.RequireHardwareRoT = "Field Test", "", sphere.FeedRetail, sphere.PolicyUpdateAll, true
				}, ""},
			{"ok/nothing", g.ID, DeviceGroupUpdate{}, func(*sphere.DeviceGroup) {}, ""},
			{"error/duplicate name", g.ID, DeviceGroupUpdate{Name: ptr("development")}, nil, sphere.EConflict},
			{"error/invalid name", g.ID, DeviceGroupUpdate{Name: ptr("Field.Test")}, nil, sphere.EInvalid},
			{"error/invalid description", g.ID, DeviceGroupUpdate{Description: ptr("tab\there")}, nil, sphere.EInvalid},
			{"error/bad feed", g.ID, DeviceGroupUpdate{OSFeed: ptr("Nightly")}, nil, sphere.EInvalid},
			{"error/empty feed", g.ID, DeviceGroupUpdate{OSFeed: ptr("")}, nil, sphere.EInvalid},
			{"error/bad policy", g.ID, DeviceGroupUpdate{UpdatePolicy: ptr("UpdateSome")}, nil, sphere.EInvalid},
			{"error/unknown group", newID(), DeviceGroupUpdate{Name: ptr("Lab")}, nil, sphere.ENotFound},
		}
		cur := g
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				clock.Advance(time.Second)
				before := dumpTables(t, s)
				got, err := a.UpdateDeviceGroup(ctx, tt.id, tt.update)
				checkCode(t, err, tt.wantCode)
				if err != nil {
					if after := dumpTables(t, s); after != before {
						t.Fatalf("a refused UpdateDeviceGroup changed rows:\nbefore:\n%s\nafter:\n%s", before, after)
					}
					return
				}
				tt.change(&cur)
				cur.UpdatedAt = clock.Now()
				if got != cur {
					t.Fatalf("got  %+v\nwant %+v", got, cur)
				}
				if read, err := a.GetDeviceGroup(ctx, g.ID); err != nil || read != cur {
					t.Fatalf("GetDeviceGroup: got %+v, %v; want %+v", read, err, cur)
				}
			})
		}
	})
}

func TestDeleteDeviceGroup(t *testing.T) {
	eachStore(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		a := s.Tenant(mustTenant(t, s, "Contoso").ID)
		coffee := mustProduct(t, a, "Coffee Maker")
		full := groupNamed(t, a, coffee.ID, "Production")
		empty := groupNamed(t, a, coffee.ID, "Development")
		d := mustClaimedDevice(t, s, a, full.ID)

		before := dumpTables(t, s)
		checkCode(t, a.DeleteDeviceGroup(ctx, full.ID), sphere.EPrecondition)
		if after := dumpTables(t, s); after != before {
			t.Fatalf("a refused DeleteDeviceGroup changed rows:\nbefore:\n%s\nafter:\n%s", before, after)
		}
		tests := []struct {
			name     string
			id       string
			wantCode string
		}{
			{"ok/empty group", empty.ID, ""},
			{"error/already deleted", empty.ID, sphere.ENotFound},
			{"error/unknown", newID(), sphere.ENotFound},
			{"error/not an id", "Production", sphere.ENotFound},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				checkCode(t, a.DeleteDeviceGroup(ctx, tt.id), tt.wantCode)
			})
		}
		if _, err := a.GetDeviceGroup(ctx, empty.ID); codeOf(err) != sphere.ENotFound {
			t.Fatalf("GetDeviceGroup(deleted): got %v, want %s", err, sphere.ENotFound)
		}
		// Emptied, the full group can go.
		if _, err := a.MoveDevice(ctx, d.ID, groupNamed(t, a, coffee.ID, "Field Test").ID); err != nil {
			t.Fatal(err)
		}
		if err := a.DeleteDeviceGroup(ctx, full.ID); err != nil {
			t.Fatalf("DeleteDeviceGroup(emptied group): %v", err)
		}
	})
}

func TestListDeviceGroups(t *testing.T) {
	eachStore(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		a := s.Tenant(mustTenant(t, s, "Contoso").ID)
		coffee := mustProduct(t, a, "Coffee Maker")
		toaster := mustProduct(t, a, "Toaster")
		all, err := a.ListDeviceGroups(ctx, DeviceGroupFilter{}, PageRequest{})
		if err != nil {
			t.Fatal(err)
		}
		if got, want := len(all.Items), 2*len(sphere.DefaultDeviceGroups); got != want {
			t.Fatalf("got %d groups, want %d", got, want)
		}
		coffeeGroups, toasterGroups := all.Items[:5], all.Items[5:]
		tests := []struct {
			name     string
			filter   DeviceGroupFilter
			want     []sphere.DeviceGroup
			wantCode string
		}{
			{"ok/product by id", DeviceGroupFilter{Product: toaster.ID}, toasterGroups, ""},
			{"ok/product by name", DeviceGroupFilter{Product: "COFFEE MAKER"}, coffeeGroups, ""},
			{"ok/name", DeviceGroupFilter{Name: "production"}, []sphere.DeviceGroup{coffeeGroups[3], toasterGroups[3]}, ""},
			{"ok/product and name", DeviceGroupFilter{Product: coffee.ID, Name: "Production"}, []sphere.DeviceGroup{coffeeGroups[3]}, ""},
			{"ok/name matches exactly", DeviceGroupFilter{Name: "Product"}, []sphere.DeviceGroup{}, ""},
			{"error/unknown product", DeviceGroupFilter{Product: "Kettle"}, nil, sphere.ENotFound},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				got, err := a.ListDeviceGroups(ctx, tt.filter, PageRequest{})
				checkCode(t, err, tt.wantCode)
				if err == nil && !slices.Equal(got.Items, tt.want) {
					t.Fatalf("got %v, want %v", ids(got.Items, groupID), ids(tt.want, groupID))
				}
			})
		}
	})
}
