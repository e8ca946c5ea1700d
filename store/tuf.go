package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/opensphere/sphere"
)

// TUFKey is a key of a tenant's TUF repository. Sealed is the private key
// sealed with the KEK, nil once it was taken offline.
type TUFKey struct {
	Role       string
	KeyID      string
	PublicJSON []byte
	Sealed     []byte
	Retired    bool
}

// PutTUFKey stores a key of the tenant's TUF repository.
func (s *Store) PutTUFKey(ctx context.Context, tenantID string, k TUFKey) error {
	_, err := s.exec(ctx, "INSERT INTO tuf_keys (tenant_id, key_id, role, public_json, key_sealed, retired, created_at) VALUES (?, ?, ?, ?, ?, 0, ?)",
		tenantID, k.KeyID, k.Role, k.PublicJSON, k.Sealed, s.nowMicro())
	if isUniqueViolation(err) {
		return sphere.Errorf(sphere.EConflict, "TUF key %s already exists", k.KeyID)
	}
	if err != nil {
		return fmt.Errorf("store.PutTUFKey: %w", err)
	}
	return nil
}

// TUFKeys lists the tenant's TUF keys, oldest first.
func (s *Store) TUFKeys(ctx context.Context, tenantID string) ([]TUFKey, error) {
	out, err := collect(ctx, s, "SELECT role, key_id, public_json, key_sealed, retired FROM tuf_keys WHERE tenant_id = ? ORDER BY created_at, key_id",
		[]any{tenantID}, func(row interface{ Scan(...any) error }) (TUFKey, error) {
			var k TUFKey
			err := row.Scan(&k.Role, &k.KeyID, &k.PublicJSON, &k.Sealed, &k.Retired)
			return k, err
		})
	if err != nil {
		return nil, fmt.Errorf("store.TUFKeys: %w", err)
	}
	return out, nil
}

// RetireTUFKey marks a key no longer in use.
func (s *Store) RetireTUFKey(ctx context.Context, tenantID, keyID string) error {
	return s.updateTUFKey(ctx, "UPDATE tuf_keys SET retired = 1 WHERE tenant_id = ? AND key_id = ?", tenantID, keyID)
}

// DropTUFPrivateKey forgets a key's private half (the root key taken
// offline).
func (s *Store) DropTUFPrivateKey(ctx context.Context, tenantID, keyID string) error {
	return s.updateTUFKey(ctx, "UPDATE tuf_keys SET key_sealed = NULL WHERE tenant_id = ? AND key_id = ?", tenantID, keyID)
}

func (s *Store) updateTUFKey(ctx context.Context, q, tenantID, keyID string) error {
	res, err := s.exec(ctx, q, tenantID, keyID)
	if err != nil {
		return fmt.Errorf("store: TUF key: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return sphere.Errorf(sphere.ENotFound, "TUF key %s not found", keyID)
	}
	return nil
}

// TUFMetadata is one version of one role's signed metadata.
type TUFMetadata struct {
	Role    string
	Version int64
	JSON    []byte
	Expires time.Time
}

// PutTUFMetadata publishes metadata files in one transaction, so that no
// one ever reads a snapshot naming a version that is not there. A version
// that exists already is refused: published metadata is never changed.
func (s *Store) PutTUFMetadata(ctx context.Context, tenantID string, files []TUFMetadata) error {
	err := s.tx(ctx, func(q *querier) error {
		for _, f := range files {
			if _, err := q.exec(ctx, "INSERT INTO tuf_metadata (tenant_id, role, version, body, expires, created_at) VALUES (?, ?, ?, ?, ?, ?)",
				tenantID, f.Role, f.Version, f.JSON, f.Expires.UnixMicro(), s.nowMicro()); err != nil {
				if isUniqueViolation(err) {
					return sphere.Errorf(sphere.EConflict, "TUF %s version %d is already published", f.Role, f.Version)
				}
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("store.PutTUFMetadata: %w", err)
	}
	return nil
}

func scanTUFMetadata(row interface{ Scan(...any) error }) (TUFMetadata, error) {
	var m TUFMetadata
	var exp int64
	err := row.Scan(&m.Role, &m.Version, &m.JSON, &exp)
	m.Expires = fromMicro(exp)
	return m, err
}

// LatestTUFMetadata returns the newest version of a role, or ENotFound.
func (s *Store) LatestTUFMetadata(ctx context.Context, tenantID, role string) (TUFMetadata, error) {
	m, err := scanTUFMetadata(s.queryRow(ctx, "SELECT role, version, body, expires FROM tuf_metadata WHERE tenant_id = ? AND role = ? ORDER BY version DESC LIMIT 1", tenantID, role))
	if errors.Is(err, sql.ErrNoRows) {
		return m, sphere.Errorf(sphere.ENotFound, "no TUF %s metadata", role)
	}
	if err != nil {
		return m, fmt.Errorf("store.LatestTUFMetadata: %w", err)
	}
	return m, nil
}

// TUFMetadataVersion returns one version of a role, or ENotFound.
func (s *Store) TUFMetadataVersion(ctx context.Context, tenantID, role string, version int64) (TUFMetadata, error) {
	m, err := scanTUFMetadata(s.queryRow(ctx, "SELECT role, version, body, expires FROM tuf_metadata WHERE tenant_id = ? AND role = ? AND version = ?", tenantID, role, version))
	if errors.Is(err, sql.ErrNoRows) {
		return m, sphere.Errorf(sphere.ENotFound, "no TUF %s metadata version %d", role, version)
	}
	if err != nil {
		return m, fmt.Errorf("store.TUFMetadataVersion: %w", err)
	}
	return m, nil
}
