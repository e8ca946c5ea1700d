package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/opensphere/sphere"
)

// ---- signing keys ----

const signingKeyColumns = "id, tenant_id, key_id, role, name, public_der, created_at, revoked_at"

func scanSigningKey(row interface{ Scan(...any) error }) (sphere.SigningKey, error) {
	var k sphere.SigningKey
	var tenant sql.NullString
	var der []byte
	var c int64
	var rev sql.NullInt64
	err := row.Scan(&k.ID, &tenant, &k.KeyID, &k.Role, &k.Name, &der, &c, &rev)
	k.TenantID, k.PublicKey, k.CreatedAt, k.RevokedAt = tenant.String, sphere.PublicKeyPEM(der), fromMicro(c), fromMicroPtr(rev)
	return k, err
}

// AddSigningKey stores a signing key of the tenant ("" for the platform).
// sealed is the private key sealed with the KEK for the service's own key,
// nil for a publisher key (the service only ever sees its public half).
func (s *Store) AddSigningKey(ctx context.Context, tenantID, role, name string, publicDER, sealed []byte) (sphere.SigningKey, error) {
	if role != sphere.KeyPublisher && role != sphere.KeyService {
		return sphere.SigningKey{}, sphere.Errorf(sphere.EInvalid, "signing key role %q is not publisher or service", role)
	}
	if err := sphere.ValidateText("name", name, 100); err != nil {
		return sphere.SigningKey{}, err
	}
	_, der, err := sphere.ParsePublicKey("signing key", publicDER)
	if err != nil {
		return sphere.SigningKey{}, err
	}
	keyID := sphere.DeviceID(der) // the same SHA-256 of the SPKI
	id := newID()
	err = s.tx(ctx, func(q *querier) error {
		var n int
		if err := q.queryRow(ctx, "SELECT COUNT(*) FROM signing_keys WHERE "+tenantIs(tenantID)+" AND key_id = ? AND revoked_at IS NULL",
			tenantArgs(tenantID, keyID)...).Scan(&n); err != nil {
			return err
		}
		if n > 0 {
			return sphere.Errorf(sphere.EConflict, "signing key %s is already registered", keyID)
		}
		_, err := q.exec(ctx, "INSERT INTO signing_keys ("+signingKeyColumns+", key_sealed) VALUES (?, ?, ?, ?, ?, ?, ?, NULL, ?)",
			id, nullString(tenantID), keyID, role, name, der, s.nowMicro(), sealed)
		return err
	})
	if err != nil {
		return sphere.SigningKey{}, fmt.Errorf("store.AddSigningKey: %w", err)
	}
	return s.getSigningKey(ctx, tenantID, id)
}

// tenantIs is the condition for a tenant-or-platform column: the platform
// is NULL, which = does not match.
func tenantIs(tenantID string) string {
	if tenantID == "" {
		return "tenant_id IS NULL"
	}
	return "tenant_id = ?"
}

func tenantArgs(tenantID string, rest ...any) []any {
	if tenantID == "" {
		return rest
	}
	return append([]any{tenantID}, rest...)
}

func (s *Store) getSigningKey(ctx context.Context, tenantID, id string) (sphere.SigningKey, error) {
	k, err := scanSigningKey(s.queryRow(ctx, "SELECT "+signingKeyColumns+" FROM signing_keys WHERE "+tenantIs(tenantID)+" AND id = ?", tenantArgs(tenantID, id)...))
	if errors.Is(err, sql.ErrNoRows) {
		return k, sphere.Errorf(sphere.ENotFound, "signing key %q not found", id)
	}
	if err != nil {
		return k, fmt.Errorf("store.GetSigningKey: %w", err)
	}
	return k, nil
}

// SigningKeys lists the tenant's ("" for the platform) signing keys with
// role ("" for all), including revoked ones.
func (s *Store) SigningKeys(ctx context.Context, tenantID, role string) ([]sphere.SigningKey, error) {
	q := "SELECT " + signingKeyColumns + " FROM signing_keys WHERE " + tenantIs(tenantID)
	args := tenantArgs(tenantID)
	if role != "" {
		q += " AND role = ?"
		args = append(args, role)
	}
	out, err := collect(ctx, s, q+" ORDER BY id", args, scanSigningKey)
	if err != nil {
		return nil, fmt.Errorf("store.SigningKeys: %w", err)
	}
	return out, nil
}

// ServiceKeySealed returns the sealed private key and id of the tenant's
// ("" for the platform) active service signing key, or ENotFound.
func (s *Store) ServiceKeySealed(ctx context.Context, tenantID string) (id string, sealed []byte, err error) {
	err = s.queryRow(ctx, "SELECT id, key_sealed FROM signing_keys WHERE "+tenantIs(tenantID)+" AND role = ? AND revoked_at IS NULL ORDER BY id DESC LIMIT 1",
		tenantArgs(tenantID, sphere.KeyService)...).Scan(&id, &sealed)
	if errors.Is(err, sql.ErrNoRows) {
		return "", nil, sphere.Errorf(sphere.ENotFound, "no service signing key")
	}
	if err != nil {
		return "", nil, fmt.Errorf("store.ServiceKeySealed: %w", err)
	}
	return id, sealed, nil
}

// RevokeSigningKey stops accepting uploads signed by a publisher key.
func (s *Store) RevokeSigningKey(ctx context.Context, tenantID, id string) error {
	res, err := s.exec(ctx, "UPDATE signing_keys SET revoked_at = ? WHERE "+tenantIs(tenantID)+" AND id = ? AND revoked_at IS NULL",
		append([]any{s.nowMicro()}, tenantArgs(tenantID, id)...)...)
	if err != nil {
		return fmt.Errorf("store.RevokeSigningKey: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return sphere.Errorf(sphere.ENotFound, "no active signing key %q", id)
	}
	return nil
}

// ---- images ----

const imageColumns = "tenant_id, id, kind, component_id, name, version, security_version, build_time, metadata, blob_sha256, blob_size, signer_key_id, uploaded_by, created_at"

func scanImage(row interface{ Scan(...any) error }) (sphere.Image, error) {
	var im sphere.Image
	var bt, c int64
	var sv int64
	err := row.Scan(&im.TenantID, &im.ID, &im.Kind, &im.ComponentID, &im.Name, &im.Version, &sv, &bt, &im.Metadata, &im.BlobSHA256, &im.Size, &im.SignerKeyID, &im.UploadedBy, &c)
	im.SecurityVersion, im.BuildTime, im.CreatedAt = uint32(sv), fromMicro(bt), fromMicro(c)
	return im, err
}

// AddImage stores an image of the tenant. Adding the same image again
// returns the stored one.
func (t *TenantStore) AddImage(ctx context.Context, im sphere.Image) (sphere.Image, error) {
	err := t.s.tx(ctx, func(q *querier) error {
		var n int
		if err := q.queryRow(ctx, "SELECT COUNT(*) FROM images WHERE tenant_id = ? AND id = ?", t.id, im.ID).Scan(&n); err != nil || n > 0 {
			return err
		}
		_, err := q.exec(ctx, "INSERT INTO images ("+imageColumns+") VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
			t.id, im.ID, im.Kind, im.ComponentID, im.Name, im.Version, int64(im.SecurityVersion), im.BuildTime.UnixMicro(),
			im.Metadata, im.BlobSHA256, im.Size, im.SignerKeyID, im.UploadedBy, t.s.nowMicro())
		return err
	})
	if err != nil {
		return sphere.Image{}, fmt.Errorf("store.AddImage: %w", err)
	}
	return t.GetImage(ctx, im.ID)
}

// GetImage returns one of the tenant's images.
func (t *TenantStore) GetImage(ctx context.Context, id string) (sphere.Image, error) {
	im, err := scanImage(t.s.queryRow(ctx, "SELECT "+imageColumns+" FROM images WHERE tenant_id = ? AND id = ?", t.id, id))
	if errors.Is(err, sql.ErrNoRows) {
		return im, sphere.Errorf(sphere.ENotFound, "image %q not found in this tenant", id)
	}
	if err != nil {
		return im, fmt.Errorf("store.GetImage: %w", err)
	}
	return im, nil
}

// ImageFilter narrows ListImages.
type ImageFilter struct {
	ComponentID string
	Kind        string
}

// ListImages lists the tenant's images by id (image ids are content hashes,
// so the order is stable but not by time).
func (t *TenantStore) ListImages(ctx context.Context, f ImageFilter, p PageRequest) (sphere.Page[sphere.Image], error) {
	size, after, err := p.cursor("images")
	if err != nil {
		return sphere.Page[sphere.Image]{}, err
	}
	q := "SELECT " + imageColumns + " FROM images WHERE tenant_id = ? AND id > ?"
	args := []any{t.id, after}
	if f.ComponentID != "" {
		q += " AND component_id = ?"
		args = append(args, f.ComponentID)
	}
	if f.Kind != "" {
		q += " AND kind = ?"
		args = append(args, f.Kind)
	}
	items, err := collect(ctx, t.s, q+" ORDER BY id LIMIT ?", append(args, size+1), scanImage)
	if err != nil {
		return sphere.Page[sphere.Image]{}, fmt.Errorf("store.ListImages: %w", err)
	}
	return finishPage(items, size, "images", func(im sphere.Image) string { return im.ID }), nil
}

// ---- OS releases ----

const osColumns = "id, component_id, name, version, security_version, build_time, metadata, blob_sha256, blob_size, signer_key_id, eval_at, retail_at, retracted_at, created_at"

func scanOSRelease(row interface{ Scan(...any) error }) (sphere.OSRelease, error) {
	var r sphere.OSRelease
	var sv, bt, ev, rt, c int64
	var retracted sql.NullInt64
	err := row.Scan(&r.ID, &r.ComponentID, &r.Name, &r.Version, &sv, &bt, &r.Metadata, &r.BlobSHA256, &r.Size, &r.SignerKeyID, &ev, &rt, &retracted, &c)
	r.Kind, r.SecurityVersion, r.BuildTime, r.EvalAt, r.RetailAt, r.RetractedAt, r.CreatedAt =
		"os", uint32(sv), fromMicro(bt), fromMicro(ev), fromMicro(rt), fromMicroPtr(retracted), fromMicro(c)
	return r, err
}

// PublishOSRelease records an OS release of the platform.
func (s *Store) PublishOSRelease(ctx context.Context, r sphere.OSRelease) (sphere.OSRelease, error) {
	_, err := s.exec(ctx, "INSERT INTO os_releases ("+osColumns+") VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, NULL, ?)",
		r.ID, r.ComponentID, r.Name, r.Version, int64(r.SecurityVersion), r.BuildTime.UnixMicro(), r.Metadata, r.BlobSHA256, r.Size,
		r.SignerKeyID, r.EvalAt.UnixMicro(), r.RetailAt.UnixMicro(), s.nowMicro())
	if isUniqueViolation(err) {
		return r, sphere.Errorf(sphere.EConflict, "OS release %s is already published", r.ID)
	}
	if err != nil {
		return r, fmt.Errorf("store.PublishOSRelease: %w", err)
	}
	return s.GetOSRelease(ctx, r.ID)
}

// GetOSRelease returns an OS release.
func (s *Store) GetOSRelease(ctx context.Context, id string) (sphere.OSRelease, error) {
	r, err := scanOSRelease(s.queryRow(ctx, "SELECT "+osColumns+" FROM os_releases WHERE id = ?", id))
	if errors.Is(err, sql.ErrNoRows) {
		return r, sphere.Errorf(sphere.ENotFound, "OS release %q not found", id)
	}
	if err != nil {
		return r, fmt.Errorf("store.GetOSRelease: %w", err)
	}
	return r, nil
}

// ListOSReleases lists the OS releases, newest first (all of them: a
// platform has few).
func (s *Store) ListOSReleases(ctx context.Context) ([]sphere.OSRelease, error) {
	out, err := collect(ctx, s, "SELECT "+osColumns+" FROM os_releases ORDER BY eval_at DESC, id", nil, scanOSRelease)
	if err != nil {
		return nil, fmt.Errorf("store.ListOSReleases: %w", err)
	}
	return out, nil
}

// LatestOSRelease returns the newest unretracted OS release that a group
// on feed may have at now, or ENotFound.
func (s *Store) LatestOSRelease(ctx context.Context, feed sphere.OSFeed, now time.Time) (sphere.OSRelease, error) {
	col := "retail_at"
	if feed == sphere.FeedRetailEval {
		col = "eval_at"
	}
	r, err := scanOSRelease(s.queryRow(ctx, "SELECT "+osColumns+" FROM os_releases WHERE retracted_at IS NULL AND "+col+" <= ? ORDER BY "+col+" DESC, id DESC LIMIT 1", now.UnixMicro()))
	if errors.Is(err, sql.ErrNoRows) {
		return r, sphere.Errorf(sphere.ENotFound, "no OS release on the %s feed yet", feed)
	}
	if err != nil {
		return r, fmt.Errorf("store.LatestOSRelease: %w", err)
	}
	return r, nil
}
