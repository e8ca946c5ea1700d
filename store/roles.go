package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/opensphere/sphere"
)

// AddRole gives user name a role in the tenant, replacing any role it held
// there. A user that does not exist yet is created with a first API token,
// whose secret is returned (shown once); for an existing user the secret is
// "", because a tenant Administrator must not mint tokens for a user who may
// hold roles in other tenants.
func (t *TenantStore) AddRole(ctx context.Context, userName string, role sphere.Role) (ra sphere.RoleAssignment, secret string, err error) {
	if err := sphere.ValidateUserName(userName); err != nil {
		return ra, "", err
	}
	if role.Rank() == 0 {
		return ra, "", sphere.Errorf(sphere.EInvalid, "role %q is not one of Administrator, Contributor, Reader", role)
	}
	now := t.s.nowMicro()
	err = t.s.tx(ctx, func(q *querier) error {
		var userID string
		err := q.queryRow(ctx, "SELECT id FROM users WHERE name = ?", userName).Scan(&userID)
		switch {
		case errors.Is(err, sql.ErrNoRows):
			userID = newID()
			if _, err := q.exec(ctx, "INSERT INTO users (id, name, operator, created_at) VALUES (?, ?, 0, ?)", userID, userName, now); err != nil {
				return err
			}
			if secret, err = insertToken(ctx, q, userID, "initial", nil, now); err != nil {
				return err
			}
		case err != nil:
			return err
		}
		var cur string
		err = q.queryRow(ctx, "SELECT role FROM roles WHERE tenant_id = ? AND user_id = ?", t.id, userID).Scan(&cur)
		switch {
		case errors.Is(err, sql.ErrNoRows):
			_, err = q.exec(ctx, "INSERT INTO roles (tenant_id, user_id, role, created_at) VALUES (?, ?, ?, ?)", t.id, userID, role, now)
		case err != nil:
		default:
			if sphere.Role(cur) == sphere.RoleAdministrator && role != sphere.RoleAdministrator {
				if err := t.checkNotLastAdmin(ctx, q, userID); err != nil {
					return err
				}
			}
			_, err = q.exec(ctx, "UPDATE roles SET role = ? WHERE tenant_id = ? AND user_id = ?", role, t.id, userID)
		}
		if err != nil {
			return err
		}
		ra = sphere.RoleAssignment{TenantID: t.id, UserID: userID, UserName: userName, Role: role, CreatedAt: fromMicro(now)}
		return nil
	})
	if err != nil {
		return sphere.RoleAssignment{}, "", fmt.Errorf("store.AddRole: %w", err)
	}
	return ra, secret, nil
}

func (t *TenantStore) checkNotLastAdmin(ctx context.Context, q *querier, userID string) error {
	var n int
	if err := q.queryRow(ctx, "SELECT COUNT(*) FROM roles WHERE tenant_id = ? AND role = ? AND user_id <> ?",
		t.id, sphere.RoleAdministrator, userID).Scan(&n); err != nil {
		return err
	}
	if n == 0 {
		return sphere.Errorf(sphere.EPrecondition, "that would leave the tenant without an Administrator; add another Administrator first")
	}
	return nil
}

// RemoveRole takes away a user's role in the tenant. The last Administrator
// cannot be removed.
func (t *TenantStore) RemoveRole(ctx context.Context, userName string) error {
	err := t.s.tx(ctx, func(q *querier) error {
		var userID, role string
		err := q.queryRow(ctx, "SELECT u.id, r.role FROM roles r JOIN users u ON u.id = r.user_id WHERE r.tenant_id = ? AND u.name = ?",
			t.id, userName).Scan(&userID, &role)
		if errors.Is(err, sql.ErrNoRows) {
			return sphere.Errorf(sphere.ENotFound, "user %q holds no role in this tenant", userName)
		}
		if err != nil {
			return err
		}
		if sphere.Role(role) == sphere.RoleAdministrator {
			if err := t.checkNotLastAdmin(ctx, q, userID); err != nil {
				return err
			}
		}
		_, err = q.exec(ctx, "DELETE FROM roles WHERE tenant_id = ? AND user_id = ?", t.id, userID)
		return err
	})
	if err != nil {
		return fmt.Errorf("store.RemoveRole: %w", err)
	}
	return nil
}

// ListRoles lists the tenant's role assignments.
func (t *TenantStore) ListRoles(ctx context.Context, p PageRequest) (sphere.Page[sphere.RoleAssignment], error) {
	size, after, err := p.cursor("roles")
	if err != nil {
		return sphere.Page[sphere.RoleAssignment]{}, err
	}
	items, err := collect(ctx, t.s, "SELECT r.tenant_id, r.user_id, u.name, r.role, r.created_at FROM roles r JOIN users u ON u.id = r.user_id WHERE r.tenant_id = ? AND r.user_id > ? ORDER BY r.user_id LIMIT ?",
		[]any{t.id, after, size + 1}, func(row interface{ Scan(...any) error }) (sphere.RoleAssignment, error) {
			var ra sphere.RoleAssignment
			var c int64
			err := row.Scan(&ra.TenantID, &ra.UserID, &ra.UserName, &ra.Role, &c)
			ra.CreatedAt = fromMicro(c)
			return ra, err
		})
	if err != nil {
		return sphere.Page[sphere.RoleAssignment]{}, fmt.Errorf("store.ListRoles: %w", err)
	}
	return finishPage(items, size, "roles", func(r sphere.RoleAssignment) string { return r.UserID }), nil
}
