package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"

	"github.com/opensphere/sphere"
)

// TenantFilter narrows ListTenants.
type TenantFilter struct {
	// MemberID, when set, lists only tenants where that user holds a role.
	MemberID string
	// NameContains matches names case-insensitively.
	NameContains string
}

// CreateTenant creates a tenant. If adminID is set, that user becomes its
// Administrator in the same transaction.
func (s *Store) CreateTenant(ctx context.Context, name, adminID string) (sphere.Tenant, error) {
	if err := sphere.ValidateName("tenant name", name); err != nil {
		return sphere.Tenant{}, err
	}
	now := s.nowMicro()
	t := sphere.Tenant{ID: newID(), Name: name, CreatedAt: fromMicro(now), UpdatedAt: fromMicro(now)}
	err := s.tx(ctx, func(q *querier) error {
		if _, err := q.exec(ctx, "INSERT INTO tenants (id, name, name_key, created_at, updated_at) VALUES (?, ?, ?, ?, ?)",
			t.ID, name, strings.ToLower(name), now, now); err != nil {
			if isUniqueViolation(err) {
				return sphere.Errorf(sphere.EConflict, "a tenant named %q already exists", name)
			}
			return err
		}
		if adminID != "" {
			if _, err := q.exec(ctx, "INSERT INTO roles (tenant_id, user_id, role, created_at) VALUES (?, ?, ?, ?)",
				t.ID, adminID, sphere.RoleAdministrator, now); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return sphere.Tenant{}, fmt.Errorf("store.CreateTenant: %w", err)
	}
	return t, nil
}

const tenantColumns = "id, name, created_at, updated_at"

func scanTenant(row interface{ Scan(...any) error }) (sphere.Tenant, error) {
	var t sphere.Tenant
	var c, u int64
	if err := row.Scan(&t.ID, &t.Name, &c, &u); err != nil {
		return t, err
	}
	t.CreatedAt, t.UpdatedAt = fromMicro(c), fromMicro(u)
	return t, nil
}

// GetTenant returns a tenant by id or by name (names cannot look like ids).
func (s *Store) GetTenant(ctx context.Context, idOrName string) (sphere.Tenant, error) {
	col, key := "id", idOrName
	if !isUUID(idOrName) {
		col, key = "name_key", strings.ToLower(idOrName)
	}
	t, err := scanTenant(s.queryRow(ctx, "SELECT "+tenantColumns+" FROM tenants WHERE "+col+" = ?", key))
	if errors.Is(err, sql.ErrNoRows) {
		return t, sphere.Errorf(sphere.ENotFound, "tenant %q not found", idOrName)
	}
	if err != nil {
		return t, fmt.Errorf("store.GetTenant: %w", err)
	}
	return t, nil
}

// ListTenants lists tenants in creation order.
func (s *Store) ListTenants(ctx context.Context, f TenantFilter, p PageRequest) (sphere.Page[sphere.Tenant], error) {
	size, after, err := p.cursor("tenants")
	if err != nil {
		return sphere.Page[sphere.Tenant]{}, err
	}
	q := "SELECT " + tenantColumns + " FROM tenants WHERE id > ?"
	args := []any{after}
	if f.MemberID != "" {
		q += " AND id IN (SELECT tenant_id FROM roles WHERE user_id = ?)"
		args = append(args, f.MemberID)
	}
	if f.NameContains != "" {
		q += " AND name_key LIKE ? ESCAPE '\\'"
		args = append(args, likePattern(f.NameContains))
	}
	q += " ORDER BY id LIMIT ?"
	args = append(args, size+1)
	items, err := collect(ctx, s, q, args, scanTenant)
	if err != nil {
		return sphere.Page[sphere.Tenant]{}, fmt.Errorf("store.ListTenants: %w", err)
	}
	return finishPage(items, size, "tenants", func(t sphere.Tenant) string { return t.ID }), nil
}

// RenameTenant changes a tenant's name.
func (s *Store) RenameTenant(ctx context.Context, id, name string) (sphere.Tenant, error) {
	if err := sphere.ValidateName("tenant name", name); err != nil {
		return sphere.Tenant{}, err
	}
	res, err := s.exec(ctx, "UPDATE tenants SET name = ?, name_key = ?, updated_at = ? WHERE id = ?",
		name, strings.ToLower(name), s.nowMicro(), id)
	if isUniqueViolation(err) {
		return sphere.Tenant{}, sphere.Errorf(sphere.EConflict, "a tenant named %q already exists", name)
	}
	if err != nil {
		return sphere.Tenant{}, fmt.Errorf("store.RenameTenant: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return sphere.Tenant{}, sphere.Errorf(sphere.ENotFound, "tenant %q not found", id)
	}
	return s.GetTenant(ctx, id)
}

// likePattern makes a case-insensitive LIKE pattern matching s anywhere.
func likePattern(s string) string {
	r := strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`)
	return "%" + r.Replace(strings.ToLower(s)) + "%"
}

// collect runs a query outside a transaction and scans every row.
func collect[T any](ctx context.Context, s *Store, q string, args []any, scan func(interface{ Scan(...any) error }) (T, error)) ([]T, error) {
	rows, err := s.query(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []T
	for rows.Next() {
		v, err := scan(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, rows.Err()
}
