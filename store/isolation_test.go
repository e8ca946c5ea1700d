package store

import (
	"context"
	"fmt"
	"reflect"
	"testing"

	"github.com/opensphere/sphere"
)

// tenantView is everything one tenant can read about itself.
type tenantView struct {
	Products []sphere.Product
	Groups   []sphere.DeviceGroup
	Devices  []sphere.Device
	Roles    []sphere.RoleAssignment
	Audit    []sphere.AuditEntry
}

func viewOf(t *testing.T, ts *TenantStore) tenantView {
	t.Helper()
	ctx := context.Background()
	var v tenantView
	var err error
	p, err := ts.ListProducts(ctx, ProductFilter{}, PageRequest{Size: MaxPageSize})
	if err != nil {
		t.Fatal(err)
	}
	v.Products = p.Items
	g, err := ts.ListDeviceGroups(ctx, DeviceGroupFilter{}, PageRequest{Size: MaxPageSize})
	if err != nil {
		t.Fatal(err)
	}
	v.Groups = g.Items
	d, err := ts.ListDevices(ctx, DeviceFilter{}, PageRequest{Size: MaxPageSize})
	if err != nil {
		t.Fatal(err)
	}
	v.Devices = d.Items
	r, err := ts.ListRoles(ctx, PageRequest{Size: MaxPageSize})
	if err != nil {
		t.Fatal(err)
	}
	v.Roles = r.Items
	a, err := ts.ListAudit(ctx, AuditFilter{}, PageRequest{Size: MaxPageSize})
	if err != nil {
		t.Fatal(err)
	}
	v.Audit = a.Items
	return v
}

// TestTenantIsolation hands every TenantStore method the ids of another
// tenant's resources and checks that they are not found and not changed.
func TestTenantIsolation(t *testing.T) {
	eachStore(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		admin, _ := mustUser(t, s, "admin")
		contoso, err := s.CreateTenant(ctx, "Contoso", admin.ID)
		if err != nil {
			t.Fatal(err)
		}
		fabrikam := mustTenant(t, s, "Fabrikam")
		a, b := s.Tenant(contoso.ID), s.Tenant(fabrikam.ID)
		if _, _, err := b.AddRole(ctx, "bob", sphere.RoleAdministrator); err != nil {
			t.Fatal(err)
		}

		aProduct := mustProduct(t, a, "Coffee Maker")
		aGroup := groupNamed(t, a, aProduct.ID, "Production")
		aDevice := mustClaimedDevice(t, s, a, aGroup.ID)

		// B's product is named differently, so lookups by name cannot
		// succeed by accident in A.
		bProduct := mustProduct(t, b, "Kettle")
		bEmptyProduct := mustProduct(t, b, "Toaster")
		bGroup := groupNamed(t, b, bProduct.ID, "Production")
		bEmptyGroup := groupNamed(t, b, bProduct.ID, "Development")
		bDevice := mustClaimedDevice(t, s, b, bGroup.ID)
		bLoose := mustClaimedDevice(t, s, b, "")
		free := mustDevice(t, s)
		if err := s.AppendAudit(ctx, sphere.AuditEntry{TenantID: b.ID(), Actor: "bob", Action: "product.create", Target: bProduct.ID, Result: "ok", Status: 201}); err != nil {
			t.Fatal(err)
		}

		tests := []struct {
			name     string
			op       func() error
			wantCode string
		}{
			{"GetProduct/by id", func() error { _, err := a.GetProduct(ctx, bProduct.ID); return err }, sphere.ENotFound},
			{"GetProduct/by name", func() error { _, err := a.GetProduct(ctx, bProduct.Name); return err }, sphere.ENotFound},
			{"UpdateProduct/by id", func() error {
				_, err := a.UpdateProduct(ctx, bProduct.ID, ProductUpdate{Name: ptr("Stolen"), Description: ptr("x")})
				return err
			}, sphere.ENotFound},
			{"UpdateProduct/by name", func() error {
				_, err := a.UpdateProduct(ctx, bProduct.Name, ProductUpdate{Description: ptr("x")})
				return err
			}, sphere.ENotFound},
			{"DeleteProduct/with devices", func() error { return a.DeleteProduct(ctx, bProduct.ID) }, sphere.ENotFound},
			{"DeleteProduct/empty", func() error { return a.DeleteProduct(ctx, bEmptyProduct.ID) }, sphere.ENotFound},
			{"DeleteProduct/by name", func() error { return a.DeleteProduct(ctx, bEmptyProduct.Name) }, sphere.ENotFound},
			{"ListProducts/sees none of B", func() error {
				page, err := a.ListProducts(ctx, ProductFilter{NameContains: "e"}, PageRequest{})
				return foreignRows(a.ID(), page, err, func(p sphere.Product) string { return p.TenantID })
			}, ""},
			{"CreateDeviceGroup/in B's product", func() error {
				_, err := a.CreateDeviceGroup(ctx, DeviceGroupSpec{Product: bProduct.ID, Name: "Injected"})
				return err
			}, sphere.ENotFound},
			{"CreateDeviceGroup/in B's product by name", func() error {
				_, err := a.CreateDeviceGroup(ctx, DeviceGroupSpec{Product: bProduct.Name, Name: "Injected"})
				return err
			}, sphere.ENotFound},
			{"GetDeviceGroup", func() error { _, err := a.GetDeviceGroup(ctx, bGroup.ID); return err }, sphere.ENotFound},
			{"UpdateDeviceGroup", func() error {
				_, err := a.UpdateDeviceGroup(ctx, bGroup.ID, DeviceGroupUpdate{Name: ptr("Stolen"), RequireHardwareRoT: ptr(false)})
				return err
			}, sphere.ENotFound},
			{"DeleteDeviceGroup/empty", func() error { return a.DeleteDeviceGroup(ctx, bEmptyGroup.ID) }, sphere.ENotFound},
			{"DeleteDeviceGroup/with devices", func() error { return a.DeleteDeviceGroup(ctx, bGroup.ID) }, sphere.ENotFound},
			{"ListDeviceGroups/B's product", func() error {
				_, err := a.ListDeviceGroups(ctx, DeviceGroupFilter{Product: bProduct.ID}, PageRequest{})
				return err
			}, sphere.ENotFound},
			{"ListDeviceGroups/by name sees none of B", func() error {
				page, err := a.ListDeviceGroups(ctx, DeviceGroupFilter{Name: "Development"}, PageRequest{})
				return foreignRows(a.ID(), page, err, func(g sphere.DeviceGroup) string { return g.TenantID })
			}, ""},
			{"GetDevice/in a group", func() error { _, err := a.GetDevice(ctx, bDevice.ID); return err }, sphere.ENotFound},
			{"GetDevice/unassigned", func() error { _, err := a.GetDevice(ctx, bLoose.ID); return err }, sphere.ENotFound},
			{"ClaimDevice/unclaimed into B's group", func() error { _, err := a.ClaimDevice(ctx, free.ID, bGroup.ID); return err }, sphere.ENotFound},
			{"ClaimDevice/B's device", func() error { _, err := a.ClaimDevice(ctx, bDevice.ID, aGroup.ID); return err }, sphere.EConflict},
			{"MoveDevice/B's device into A's group", func() error { _, err := a.MoveDevice(ctx, bDevice.ID, aGroup.ID); return err }, sphere.ENotFound},
			{"MoveDevice/B's device into B's group", func() error { _, err := a.MoveDevice(ctx, bLoose.ID, bGroup.ID); return err }, sphere.ENotFound},
			{"MoveDevice/A's device into B's group", func() error { _, err := a.MoveDevice(ctx, aDevice.ID, bGroup.ID); return err }, sphere.ENotFound},
			{"ReleaseDevice", func() error { _, err := a.ReleaseDevice(ctx, bDevice.ID); return err }, sphere.ENotFound},
			{"ListDevices/B's product", func() error {
				_, err := a.ListDevices(ctx, DeviceFilter{Product: bProduct.ID}, PageRequest{})
				return err
			}, sphere.ENotFound},
			{"ListDevices/B's group", func() error {
				_, err := a.ListDevices(ctx, DeviceFilter{DeviceGroup: bGroup.ID}, PageRequest{})
				return err
			}, sphere.ENotFound},
			{"ListDevices/sees none of B", func() error {
				page, err := a.ListDevices(ctx, DeviceFilter{}, PageRequest{})
				return foreignRows(a.ID(), page, err, func(d sphere.Device) string { return d.TenantID })
			}, ""},
			{"ListDevices/unassigned sees none of B", func() error {
				page, err := a.ListDevices(ctx, DeviceFilter{Unassigned: true}, PageRequest{})
				if err == nil && len(page.Items) != 0 {
					return fmt.Errorf("listed %d unassigned devices; A has none", len(page.Items))
				}
				return err
			}, ""},
			{"RemoveRole/B's user", func() error { return a.RemoveRole(ctx, "bob") }, sphere.ENotFound},
			{"ListRoles/sees none of B", func() error {
				page, err := a.ListRoles(ctx, PageRequest{})
				if err == nil && (len(page.Items) != 1 || page.Items[0].UserName != "admin") {
					return fmt.Errorf("got %+v, want only admin", page.Items)
				}
				return err
			}, ""},
			{"ListAudit/sees none of B", func() error {
				page, err := a.ListAudit(ctx, AuditFilter{}, PageRequest{})
				if err == nil && len(page.Items) != 0 {
					return fmt.Errorf("listed %d audit entries; A has none", len(page.Items))
				}
				return err
			}, ""},
		}
		bBefore := viewOf(t, b)
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				before := dumpTables(t, s)
				checkCode(t, tt.op(), tt.wantCode)
				if after := dumpTables(t, s); after != before {
					t.Fatalf("the call changed rows:\nbefore:\n%s\nafter:\n%s", before, after)
				}
				if bAfter := viewOf(t, b); !reflect.DeepEqual(bAfter, bBefore) {
					t.Fatalf("B's view changed:\nbefore %+v\nafter  %+v", bBefore, bAfter)
				}
			})
		}
	})
}

// foreignRows returns an error naming the first listed row that belongs to
// a tenant other than want.
func foreignRows[T any](want string, page sphere.Page[T], err error, tenantOf func(T) string) error {
	if err != nil {
		return err
	}
	for _, it := range page.Items {
		if got := tenantOf(it); got != want {
			return fmt.Errorf("listed a row of tenant %q: %+v", got, it)
		}
	}
	return nil
}

// TestEmptyTenantSeesNothing checks that a TenantStore for tenant "" (which
// only a caller's bug can make) fails closed: it sees no tenant's rows,
// rather than every tenant's.
func TestEmptyTenantSeesNothing(t *testing.T) {
	eachStore(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		a := s.Tenant(mustTenant(t, s, "Contoso").ID)
		p := mustProduct(t, a, "Coffee Maker")
		g := groupNamed(t, a, p.ID, "Production")
		d := mustClaimedDevice(t, s, a, g.ID)
		if err := s.AppendAudit(ctx, sphere.AuditEntry{TenantID: a.ID(), Actor: "alice", Action: "device.claim", Target: d.ID, Result: "ok", Status: 200}); err != nil {
			t.Fatal(err)
		}
		z := s.Tenant("")
		tests := []struct {
			name     string
			op       func() error
			wantCode string
		}{
			{"GetProduct", func() error { _, err := z.GetProduct(ctx, p.ID); return err }, sphere.ENotFound},
			{"GetDeviceGroup", func() error { _, err := z.GetDeviceGroup(ctx, g.ID); return err }, sphere.ENotFound},
			{"GetDevice", func() error { _, err := z.GetDevice(ctx, d.ID); return err }, sphere.ENotFound},
			{"ReleaseDevice", func() error { _, err := z.ReleaseDevice(ctx, d.ID); return err }, sphere.ENotFound},
			{"ListProducts", func() error {
				page, err := z.ListProducts(ctx, ProductFilter{}, PageRequest{})
				return foreignRows("", page, err, func(p sphere.Product) string { return p.TenantID })
			}, ""},
			{"ListDevices", func() error {
				page, err := z.ListDevices(ctx, DeviceFilter{}, PageRequest{})
				return foreignRows("", page, err, func(d sphere.Device) string { return d.TenantID })
			}, ""},
			{"ListAudit", func() error {
				page, err := z.ListAudit(ctx, AuditFilter{}, PageRequest{})
				return foreignRows("", page, err, func(e sphere.AuditEntry) string { return e.TenantID })
			}, ""},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				before := dumpTables(t, s)
				checkCode(t, tt.op(), tt.wantCode)
				if after := dumpTables(t, s); after != before {
					t.Fatalf("the call changed rows:\nbefore:\n%s\nafter:\n%s", before, after)
				}
			})
		}
	})
}
