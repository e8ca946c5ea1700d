package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"

	"github.com/opensphere/sphere"
)

// TenantStore is the store as seen from inside one tenant. Every query it
// runs is restricted to that tenant: a resource of another tenant is simply
// not found. Callers get one from Store.Tenant after checking the caller's
// role; handlers never see an unscoped store for tenant data.
type TenantStore struct {
	s  *Store
	id string
}

// Tenant returns the store scoped to tenant id. It does not check that the
// tenant exists; the API's tenant middleware does that before calling it.
func (s *Store) Tenant(id string) *TenantStore { return &TenantStore{s: s, id: id} }

// ID returns the tenant this store is scoped to.
func (t *TenantStore) ID() string { return t.id }

// ---- products ----

const productColumns = "id, tenant_id, name, description, created_at, updated_at"

func scanProduct(row interface{ Scan(...any) error }) (sphere.Product, error) {
	var p sphere.Product
	var c, u int64
	err := row.Scan(&p.ID, &p.TenantID, &p.Name, &p.Description, &c, &u)
	p.CreatedAt, p.UpdatedAt = fromMicro(c), fromMicro(u)
	return p, err
}

// CreateProduct creates a product and its five default device groups in one
// transaction.
func (t *TenantStore) CreateProduct(ctx context.Context, name, description string) (sphere.Product, error) {
	if err := sphere.ValidateName("product name", name); err != nil {
		return sphere.Product{}, err
	}
	if err := sphere.ValidateDescription(description); err != nil {
		return sphere.Product{}, err
	}
	now := t.s.nowMicro()
	p := sphere.Product{ID: newID(), TenantID: t.id, Name: name, Description: description, CreatedAt: fromMicro(now), UpdatedAt: fromMicro(now)}
	err := t.s.tx(ctx, func(q *querier) error {
		if _, err := q.exec(ctx, "INSERT INTO products (id, tenant_id, name, name_key, description, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
			p.ID, t.id, name, strings.ToLower(name), description, now, now); err != nil {
			if isUniqueViolation(err) {
				return sphere.Errorf(sphere.EConflict, "a product named %q already exists in this tenant", name)
			}
			return err
		}
		for _, g := range sphere.DefaultDeviceGroups {
			if err := insertGroup(ctx, q, sphere.DeviceGroup{
				ID: newID(), TenantID: t.id, ProductID: p.ID, Name: g.Name, Description: g.Description,
				OSFeed: g.OSFeed, UpdatePolicy: g.UpdatePolicy, RequireHardwareRoT: g.RequireHardwareRoT,
			}, now); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return sphere.Product{}, fmt.Errorf("store.CreateProduct: %w", err)
	}
	return p, nil
}

// GetProduct returns a product by id or by name.
func (t *TenantStore) GetProduct(ctx context.Context, idOrName string) (sphere.Product, error) {
	col, key := "id", idOrName
	if !isUUID(idOrName) {
		col, key = "name_key", strings.ToLower(idOrName)
	}
	p, err := scanProduct(t.s.queryRow(ctx, "SELECT "+productColumns+" FROM products WHERE tenant_id = ? AND "+col+" = ?", t.id, key))
	if errors.Is(err, sql.ErrNoRows) {
		return p, sphere.Errorf(sphere.ENotFound, "product %q not found in this tenant", idOrName)
	}
	if err != nil {
		return p, fmt.Errorf("store.GetProduct: %w", err)
	}
	return p, nil
}

// ProductFilter narrows ListProducts.
type ProductFilter struct {
	NameContains string
}

// ListProducts lists the tenant's products in creation order.
func (t *TenantStore) ListProducts(ctx context.Context, f ProductFilter, p PageRequest) (sphere.Page[sphere.Product], error) {
	size, after, err := p.cursor("products")
	if err != nil {
		return sphere.Page[sphere.Product]{}, err
	}
	q := "SELECT " + productColumns + " FROM products WHERE tenant_id = ? AND id > ?"
	args := []any{t.id, after}
	if f.NameContains != "" {
		q += " AND name_key LIKE ? ESCAPE '\\'"
		args = append(args, likePattern(f.NameContains))
	}
	q += " ORDER BY id LIMIT ?"
	items, err := collect(ctx, t.s, q, append(args, size+1), scanProduct)
	if err != nil {
		return sphere.Page[sphere.Product]{}, fmt.Errorf("store.ListProducts: %w", err)
	}
	return finishPage(items, size, "products", func(p sphere.Product) string { return p.ID }), nil
}

// ProductUpdate holds the fields to change; nil fields stay as they are.
type ProductUpdate struct {
	Name        *string
	Description *string
}

// UpdateProduct changes a product's name or description.
func (t *TenantStore) UpdateProduct(ctx context.Context, idOrName string, u ProductUpdate) (sphere.Product, error) {
	cur, err := t.GetProduct(ctx, idOrName)
	if err != nil {
		return cur, err
	}
	if u.Name != nil {
		if err := sphere.ValidateName("product name", *u.Name); err != nil {
			return cur, err
		}
		cur.Name = *u.Name
	}
	if u.Description != nil {
		if err := sphere.ValidateDescription(*u.Description); err != nil {
			return cur, err
		}
		cur.Description = *u.Description
	}
	now := t.s.nowMicro()
	_, err = t.s.exec(ctx, "UPDATE products SET name = ?, name_key = ?, description = ?, updated_at = ? WHERE tenant_id = ? AND id = ?",
		cur.Name, strings.ToLower(cur.Name), cur.Description, now, t.id, cur.ID)
	if isUniqueViolation(err) {
		return cur, sphere.Errorf(sphere.EConflict, "a product named %q already exists in this tenant", cur.Name)
	}
	if err != nil {
		return cur, fmt.Errorf("store.UpdateProduct: %w", err)
	}
	cur.UpdatedAt = fromMicro(now)
	return cur, nil
}

// DeleteProduct deletes a product and its device groups. It refuses while
// any device is in one of those groups.
func (t *TenantStore) DeleteProduct(ctx context.Context, idOrName string) error {
	p, err := t.GetProduct(ctx, idOrName)
	if err != nil {
		return err
	}
	err = t.s.tx(ctx, func(q *querier) error {
		var n int
		if err := q.queryRow(ctx, "SELECT COUNT(*) FROM devices d JOIN device_groups g ON g.id = d.device_group_id WHERE g.tenant_id = ? AND g.product_id = ?",
			t.id, p.ID).Scan(&n); err != nil {
			return err
		}
		if n > 0 {
			return sphere.Errorf(sphere.EPrecondition, "product %q still has %d device(s) in its device groups; move them to another product's group or release them first", p.Name, n)
		}
		if err := deleteDeployments(ctx, q, t.id, "device_group_id IN (SELECT id FROM device_groups WHERE tenant_id = ? AND product_id = ?)", t.id, p.ID); err != nil {
			return err
		}
		if _, err := q.exec(ctx, "DELETE FROM device_groups WHERE tenant_id = ? AND product_id = ?", t.id, p.ID); err != nil {
			return err
		}
		_, err := q.exec(ctx, "DELETE FROM products WHERE tenant_id = ? AND id = ?", t.id, p.ID)
		return err
	})
	if err != nil {
		return fmt.Errorf("store.DeleteProduct: %w", err)
	}
	return nil
}

// ---- device groups ----

const groupColumns = "id, tenant_id, product_id, name, description, os_feed, update_policy, require_hw_rot, created_at, updated_at"

func scanGroup(row interface{ Scan(...any) error }) (sphere.DeviceGroup, error) {
	var g sphere.DeviceGroup
	var c, u int64
	err := row.Scan(&g.ID, &g.TenantID, &g.ProductID, &g.Name, &g.Description, &g.OSFeed, &g.UpdatePolicy, &g.RequireHardwareRoT, &c, &u)
	g.CreatedAt, g.UpdatedAt = fromMicro(c), fromMicro(u)
	return g, err
}

func insertGroup(ctx context.Context, q *querier, g sphere.DeviceGroup, now int64) error {
	_, err := q.exec(ctx, "INSERT INTO device_groups ("+groupColumns+", name_key) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
		g.ID, g.TenantID, g.ProductID, g.Name, g.Description, g.OSFeed, g.UpdatePolicy, boolInt(g.RequireHardwareRoT), now, now, strings.ToLower(g.Name))
	if isUniqueViolation(err) {
		return sphere.Errorf(sphere.EConflict, "the product already has a device group named %q", g.Name)
	}
	return err
}

// DeviceGroupSpec describes a new device group. Empty OSFeed means Retail,
// empty UpdatePolicy means UpdateAll.
type DeviceGroupSpec struct {
	Product            string // product id or name
	Name               string
	Description        string
	OSFeed             string
	UpdatePolicy       string
	RequireHardwareRoT bool
}

// CreateDeviceGroup creates a device group in one of the tenant's products.
func (t *TenantStore) CreateDeviceGroup(ctx context.Context, spec DeviceGroupSpec) (sphere.DeviceGroup, error) {
	if spec.Product == "" {
		return sphere.DeviceGroup{}, sphere.Errorf(sphere.EInvalid, "product is required")
	}
	if err := sphere.ValidateName("device group name", spec.Name); err != nil {
		return sphere.DeviceGroup{}, err
	}
	if err := sphere.ValidateDescription(spec.Description); err != nil {
		return sphere.DeviceGroup{}, err
	}
	g := sphere.DeviceGroup{ID: newID(), TenantID: t.id, Name: spec.Name, Description: spec.Description,
		OSFeed: sphere.FeedRetail, UpdatePolicy: sphere.PolicyUpdateAll, RequireHardwareRoT: spec.RequireHardwareRoT}
	var err error
	if spec.OSFeed != "" {
		if g.OSFeed, err = sphere.ParseOSFeed(spec.OSFeed); err != nil {
			return g, err
		}
	}
	if spec.UpdatePolicy != "" {
		if g.UpdatePolicy, err = sphere.ParseUpdatePolicy(spec.UpdatePolicy); err != nil {
			return g, err
		}
	}
	p, err := t.GetProduct(ctx, spec.Product)
	if err != nil {
		return g, err
	}
	g.ProductID = p.ID
	now := t.s.nowMicro()
	g.CreatedAt, g.UpdatedAt = fromMicro(now), fromMicro(now)
	if err := t.s.tx(ctx, func(q *querier) error { return insertGroup(ctx, q, g, now) }); err != nil {
		return g, fmt.Errorf("store.CreateDeviceGroup: %w", err)
	}
	return g, nil
}

// GetDeviceGroup returns a device group by id.
func (t *TenantStore) GetDeviceGroup(ctx context.Context, id string) (sphere.DeviceGroup, error) {
	g, err := scanGroup(t.s.queryRow(ctx, "SELECT "+groupColumns+" FROM device_groups WHERE tenant_id = ? AND id = ?", t.id, id))
	if errors.Is(err, sql.ErrNoRows) {
		return g, sphere.Errorf(sphere.ENotFound, "device group %q not found in this tenant", id)
	}
	if err != nil {
		return g, fmt.Errorf("store.GetDeviceGroup: %w", err)
	}
	return g, nil
}

// DeviceGroupFilter narrows ListDeviceGroups.
type DeviceGroupFilter struct {
	Product string // product id or name
	Name    string // exact name, any letter case
}

// ListDeviceGroups lists the tenant's device groups in creation order.
func (t *TenantStore) ListDeviceGroups(ctx context.Context, f DeviceGroupFilter, p PageRequest) (sphere.Page[sphere.DeviceGroup], error) {
	size, after, err := p.cursor("device-groups")
	if err != nil {
		return sphere.Page[sphere.DeviceGroup]{}, err
	}
	q := "SELECT " + groupColumns + " FROM device_groups WHERE tenant_id = ? AND id > ?"
	args := []any{t.id, after}
	if f.Product != "" {
		prod, err := t.GetProduct(ctx, f.Product)
		if err != nil {
			return sphere.Page[sphere.DeviceGroup]{}, err
		}
		q += " AND product_id = ?"
		args = append(args, prod.ID)
	}
	if f.Name != "" {
		q += " AND name_key = ?"
		args = append(args, strings.ToLower(f.Name))
	}
	q += " ORDER BY id LIMIT ?"
	items, err := collect(ctx, t.s, q, append(args, size+1), scanGroup)
	if err != nil {
		return sphere.Page[sphere.DeviceGroup]{}, fmt.Errorf("store.ListDeviceGroups: %w", err)
	}
	return finishPage(items, size, "device-groups", func(g sphere.DeviceGroup) string { return g.ID }), nil
}

// DeviceGroupUpdate holds the fields to change; nil fields stay as they are.
type DeviceGroupUpdate struct {
	Name               *string
	Description        *string
	OSFeed             *string
	UpdatePolicy       *string
	RequireHardwareRoT *bool
}

// UpdateDeviceGroup changes a device group's settings.
func (t *TenantStore) UpdateDeviceGroup(ctx context.Context, id string, u DeviceGroupUpdate) (sphere.DeviceGroup, error) {
	g, err := t.GetDeviceGroup(ctx, id)
	if err != nil {
		return g, err
	}
	if u.Name != nil {
		if err := sphere.ValidateName("device group name", *u.Name); err != nil {
			return g, err
		}
		g.Name = *u.Name
	}
	if u.Description != nil {
		if err := sphere.ValidateDescription(*u.Description); err != nil {
			return g, err
		}
		g.Description = *u.Description
	}
	if u.OSFeed != nil {
		if g.OSFeed, err = sphere.ParseOSFeed(*u.OSFeed); err != nil {
			return g, err
		}
	}
	if u.UpdatePolicy != nil {
		if g.UpdatePolicy, err = sphere.ParseUpdatePolicy(*u.UpdatePolicy); err != nil {
			return g, err
		}
	}
	if u.RequireHardwareRoT != nil {
		g.RequireHardwareRoT = *u.RequireHardwareRoT
	}
	now := t.s.nowMicro()
	_, err = t.s.exec(ctx, "UPDATE device_groups SET name = ?, name_key = ?, description = ?, os_feed = ?, update_policy = ?, require_hw_rot = ?, updated_at = ? WHERE tenant_id = ? AND id = ?",
		g.Name, strings.ToLower(g.Name), g.Description, g.OSFeed, g.UpdatePolicy, boolInt(g.RequireHardwareRoT), now, t.id, g.ID)
	if isUniqueViolation(err) {
		return g, sphere.Errorf(sphere.EConflict, "the product already has a device group named %q", g.Name)
	}
	if err != nil {
		return g, fmt.Errorf("store.UpdateDeviceGroup: %w", err)
	}
	g.UpdatedAt = fromMicro(now)
	return g, nil
}

// DeleteDeviceGroup deletes an empty device group.
func (t *TenantStore) DeleteDeviceGroup(ctx context.Context, id string) error {
	g, err := t.GetDeviceGroup(ctx, id)
	if err != nil {
		return err
	}
	err = t.s.tx(ctx, func(q *querier) error {
		var n int
		if err := q.queryRow(ctx, "SELECT COUNT(*) FROM devices WHERE tenant_id = ? AND device_group_id = ?", t.id, g.ID).Scan(&n); err != nil {
			return err
		}
		if n > 0 {
			return sphere.Errorf(sphere.EPrecondition, "device group %q still has %d device(s); move them to another group first", g.Name, n)
		}
		if err := deleteDeployments(ctx, q, t.id, "device_group_id = ?", g.ID); err != nil {
			return err
		}
		_, err := q.exec(ctx, "DELETE FROM device_groups WHERE tenant_id = ? AND id = ?", t.id, g.ID)
		return err
	})
	if err != nil {
		return fmt.Errorf("store.DeleteDeviceGroup: %w", err)
	}
	return nil
}

// deleteDeployments removes the tenant's deployments matching where (with
// args), and what hangs off them, inside a transaction: a device group
// that goes takes its rollout history with it.
func deleteDeployments(ctx context.Context, q *querier, tenantID, where string, args ...any) error {
	sel := "SELECT id FROM deployments WHERE tenant_id = ? AND " + where
	all := append([]any{tenantID}, args...)
	for _, table := range []string{"device_updates", "deployment_images"} {
		if _, err := q.exec(ctx, "DELETE FROM "+table+" WHERE deployment_id IN ("+sel+")", all...); err != nil {
			return err
		}
	}
	_, err := q.exec(ctx, "DELETE FROM deployments WHERE tenant_id = ? AND "+where, all...)
	return err
}
