package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/opensphere/sphere"
)

// CARecord is a stored certificate authority: its certificate, its private
// key sealed with the key-encryption key, and its schedule. Package ca owns
// what these mean; the store only keeps them.
type CARecord struct {
	ID          string
	TenantID    string // empty for the service root CA
	CertDER     []byte
	KeySealed   []byte
	Thumbprint  string
	NotBefore   time.Time
	NotAfter    time.Time
	ActivatesAt time.Time
	RevokedAt   *time.Time
	CreatedAt   time.Time
}

// serviceCAID is the one row of service_ca.
const serviceCAID = "root"

// ServiceCA returns the service root CA, or an ENotFound error before the
// first start made it.
func (s *Store) ServiceCA(ctx context.Context) (CARecord, error) {
	var r CARecord
	var c int64
	err := s.queryRow(ctx, "SELECT id, cert_der, key_sealed, created_at FROM service_ca WHERE id = ?", serviceCAID).
		Scan(&r.ID, &r.CertDER, &r.KeySealed, &c)
	if errors.Is(err, sql.ErrNoRows) {
		return r, sphere.Errorf(sphere.ENotFound, "no service root CA yet")
	}
	if err != nil {
		return r, fmt.Errorf("store.ServiceCA: %w", err)
	}
	r.CreatedAt = fromMicro(c)
	return r, nil
}

// CreateServiceCA stores the root CA unless another replica stored one
// first; either way it returns the root CA that is now in the database.
func (s *Store) CreateServiceCA(ctx context.Context, certDER, keySealed []byte) (CARecord, error) {
	_, err := s.exec(ctx, "INSERT INTO service_ca (id, cert_der, key_sealed, created_at) VALUES (?, ?, ?, ?)",
		serviceCAID, certDER, keySealed, s.nowMicro())
	if err != nil && !isUniqueViolation(err) {
		return CARecord{}, fmt.Errorf("store.CreateServiceCA: %w", err)
	}
	return s.ServiceCA(ctx)
}

const caColumns = "id, tenant_id, cert_der, key_sealed, thumbprint, not_before, not_after, activates_at, revoked_at, created_at"

func scanCA(row interface{ Scan(...any) error }) (CARecord, error) {
	var r CARecord
	var nb, na, act, c int64
	var rev sql.NullInt64
	err := row.Scan(&r.ID, &r.TenantID, &r.CertDER, &r.KeySealed, &r.Thumbprint, &nb, &na, &act, &rev, &c)
	r.NotBefore, r.NotAfter, r.ActivatesAt, r.CreatedAt = fromMicro(nb), fromMicro(na), fromMicro(act), fromMicro(c)
	r.RevokedAt = fromMicroPtr(rev)
	return r, err
}

// TenantCAs lists a tenant's CAs, oldest first.
func (s *Store) TenantCAs(ctx context.Context, tenantID string) ([]CARecord, error) {
	out, err := collect(ctx, s, "SELECT "+caColumns+" FROM tenant_cas WHERE tenant_id = ? ORDER BY activates_at, created_at", []any{tenantID}, scanCA)
	if err != nil {
		return nil, fmt.Errorf("store.TenantCAs: %w", err)
	}
	return out, nil
}

// AddTenantCA stores a new tenant CA if, seen inside the same serializable
// transaction, need(existing) is still true: two replicas that decide to
// rotate at once add one CA between them, not two.
func (s *Store) AddTenantCA(ctx context.Context, r CARecord, need func(existing []CARecord) bool) (added bool, err error) {
	err = s.tx(ctx, func(q *querier) error {
		rows, err := q.query(ctx, "SELECT "+caColumns+" FROM tenant_cas WHERE tenant_id = ? ORDER BY activates_at, created_at", r.TenantID)
		if err != nil {
			return err
		}
		var existing []CARecord
		for rows.Next() {
			c, err := scanCA(rows)
			if err != nil {
				rows.Close()
				return err
			}
			existing = append(existing, c)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		if !need(existing) {
			added = false
			return nil
		}
		_, err = q.exec(ctx, "INSERT INTO tenant_cas ("+caColumns+") VALUES (?, ?, ?, ?, ?, ?, ?, ?, NULL, ?)",
			r.ID, r.TenantID, r.CertDER, r.KeySealed, r.Thumbprint, r.NotBefore.UnixMicro(), r.NotAfter.UnixMicro(), r.ActivatesAt.UnixMicro(), s.nowMicro())
		added = err == nil
		return err
	})
	if err != nil {
		return false, fmt.Errorf("store.AddTenantCA: %w", err)
	}
	return added, nil
}

// RevokeTenantCA marks a tenant CA revoked.
func (s *Store) RevokeTenantCA(ctx context.Context, tenantID, id string) error {
	res, err := s.exec(ctx, "UPDATE tenant_cas SET revoked_at = ? WHERE tenant_id = ? AND id = ? AND revoked_at IS NULL", s.nowMicro(), tenantID, id)
	if err != nil {
		return fmt.Errorf("store.RevokeTenantCA: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return sphere.Errorf(sphere.ENotFound, "no unrevoked CA %q in this tenant", id)
	}
	return nil
}

// IssuedCert records a device certificate the service issued.
type IssuedCert struct {
	Serial    string
	TenantID  string
	CAID      string
	NotBefore time.Time
	NotAfter  time.Time
}
