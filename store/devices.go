package store

import (
	"context"
	"crypto/x509"
	"database/sql"
	"encoding/pem"
	"errors"
	"fmt"
	"time"

	"github.com/opensphere/sphere"
)

// Registration is what a device's manufacturer records: its public keys.
type Registration struct {
	IdentityPublicKey    []byte // PEM or SubjectPublicKeyInfo DER
	AttestationPublicKey []byte // PEM or SubjectPublicKeyInfo DER
	EKCertificate        []byte // optional TPM endorsement key certificate, PEM or DER
	// RoT is the kind of root of trust: "tpm" (the default when empty) or
	// "soft". The manufacturer vouches for it by registering the device.
	RoT string
}

// ParseRegistration validates a registration and returns the device it
// describes, with keys in canonical PEM and the id derived from the
// identity key.
func ParseRegistration(r Registration) (sphere.Device, error) {
	_, idDER, err := sphere.ParsePublicKey("identity public key", r.IdentityPublicKey)
	if err != nil {
		return sphere.Device{}, err
	}
	_, akDER, err := sphere.ParsePublicKey("attestation public key", r.AttestationPublicKey)
	if err != nil {
		return sphere.Device{}, err
	}
	d := sphere.Device{
		ID:                   sphere.DeviceID(idDER),
		IdentityPublicKey:    sphere.PublicKeyPEM(idDER),
		AttestationPublicKey: sphere.PublicKeyPEM(akDER),
		RoT:                  r.RoT,
	}
	switch d.RoT {
	case "":
		d.RoT = "tpm"
	case "tpm", "soft":
	default:
		return d, sphere.Errorf(sphere.EInvalid, "root of trust %q is not tpm or soft", r.RoT)
	}
	if len(r.EKCertificate) > 0 {
		der := r.EKCertificate
		if block, _ := pem.Decode(r.EKCertificate); block != nil {
			if block.Type != "CERTIFICATE" {
				return d, sphere.Errorf(sphere.EInvalid, "EK certificate: PEM block is %q; want \"CERTIFICATE\"", block.Type)
			}
			der = block.Bytes
		}
		if _, err := x509.ParseCertificate(der); err != nil {
			return d, sphere.Errorf(sphere.EInvalid, "EK certificate is not a valid X.509 certificate: %v", err)
		}
		d.EKCertificate = string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
	}
	return d, nil
}

// RegisterDevice records a device at manufacture. Registering the same keys
// again is a no-op that returns the device; the same identity key with a
// different attestation key is refused.
func (s *Store) RegisterDevice(ctx context.Context, r Registration) (sphere.Device, error) {
	d, err := ParseRegistration(r)
	if err != nil {
		return d, err
	}
	now := s.nowMicro()
	if err := s.tx(ctx, func(q *querier) error { return register(ctx, q, d, now) }); err != nil {
		return d, fmt.Errorf("store.RegisterDevice: %w", err)
	}
	return s.getDevice(ctx, false, "", d.ID)
}

// register inserts a parsed registration; the same one again is a no-op.
func register(ctx context.Context, q *querier, d sphere.Device, now int64) error {
	var ak, kind string
	err := q.queryRow(ctx, "SELECT attestation_key, rot_kind FROM devices WHERE id = ?", d.ID).Scan(&ak, &kind)
	switch {
	case err == nil && ak == d.AttestationPublicKey && kind == d.RoT:
		return nil
	case err == nil && ak == d.AttestationPublicKey:
		return sphere.Errorf(sphere.EConflict, "device %s is already registered with root of trust %q, not %q", d.ID, kind, d.RoT)
	case err == nil:
		return sphere.Errorf(sphere.EConflict, "device %s is already registered with a different attestation key", d.ID)
	case !errors.Is(err, sql.ErrNoRows):
		return err
	}
	_, err = q.exec(ctx, "INSERT INTO devices (id, identity_key, attestation_key, ek_cert, rot_kind, registered_at) VALUES (?, ?, ?, ?, ?, ?)",
		d.ID, d.IdentityPublicKey, d.AttestationPublicKey, d.EKCertificate, d.RoT, now)
	return err
}

// MaxBatch bounds the devices of one bulk registration or claim.
const MaxBatch = 10_000

// RegisterDevices registers up to MaxBatch devices in one transaction: all
// of them, or (on the first bad or conflicting record, which the error
// names by its index) none. Registering a device again with the same keys
// is a no-op, as for RegisterDevice. With audit set, the same transaction
// appends a copy of it for each device (Target set to the device id). It
// returns the devices' ids in order.
func (s *Store) RegisterDevices(ctx context.Context, rs []Registration, audit *sphere.AuditEntry) ([]string, error) {
	if len(rs) == 0 || len(rs) > MaxBatch {
		return nil, sphere.Errorf(sphere.EInvalid, "devices: give 1 to %d registrations, not %d", MaxBatch, len(rs))
	}
	ds := make([]sphere.Device, len(rs))
	ids := make([]string, len(rs))
	seen := make(map[string]int, len(rs))
	for i, r := range rs {
		d, err := ParseRegistration(r)
		if err != nil {
			return nil, atIndex("devices", i, err)
		}
		if j, dup := seen[d.ID]; dup {
			return nil, sphere.Errorf(sphere.EInvalid, "devices[%d]: the same device as devices[%d]", i, j)
		}
		seen[d.ID], ds[i], ids[i] = i, d, d.ID
	}
	now := s.nowMicro()
	err := s.txAlone(ctx, func(q *querier) error {
		for i, d := range ds {
			if err := register(ctx, q, d, now); err != nil {
				return atIndex("devices", i, err)
			}
		}
		return auditEach(ctx, q, audit, ids, s.now())
	})
	if err != nil {
		return nil, fmt.Errorf("store.RegisterDevices: %w", err)
	}
	return ids, nil
}

// atIndex puts the index of a batch item in front of its error's message,
// keeping the code.
func atIndex(field string, i int, err error) error {
	var e *sphere.Error
	if errors.As(err, &e) {
		return sphere.Errorf(e.Code, "%s[%d]: %s", field, i, e.Message)
	}
	return fmt.Errorf("%s[%d]: %w", field, i, err)
}

const deviceColumns = "d.id, d.identity_key, d.attestation_key, d.ek_cert, d.rot_kind, d.tenant_id, d.device_group_id, g.product_id, d.registered_at, d.claimed_at, " +
	"d.revoked_at, d.revoked_reason, d.last_attest_at, d.last_attest_result, d.last_attest_reason, d.last_attest_detail, d.cert_not_after"
const deviceFrom = " FROM devices d LEFT JOIN device_groups g ON g.id = d.device_group_id "

func scanDevice(row interface{ Scan(...any) error }) (sphere.Device, error) {
	return scanDeviceAnd(row)
}

// scanDeviceAnd scans deviceColumns, then into more for the columns a
// query selects after them.
func scanDeviceAnd(row interface{ Scan(...any) error }, more ...any) (sphere.Device, error) {
	var d sphere.Device
	var tenant, group, product sql.NullString
	var reg int64
	var claimed, revoked, attestAt, certNotAfter sql.NullInt64
	var result, reason, detail string
	err := row.Scan(append([]any{&d.ID, &d.IdentityPublicKey, &d.AttestationPublicKey, &d.EKCertificate, &d.RoT, &tenant, &group, &product, &reg, &claimed,
		&revoked, &d.RevokedReason, &attestAt, &result, &reason, &detail, &certNotAfter}, more...)...)
	d.TenantID, d.DeviceGroupID, d.ProductID = tenant.String, group.String, product.String
	d.RegisteredAt, d.ClaimedAt, d.RevokedAt, d.CertNotAfter = fromMicro(reg), fromMicroPtr(claimed), fromMicroPtr(revoked), fromMicroPtr(certNotAfter)
	if attestAt.Valid {
		d.LastAttestation = &sphere.Attestation{At: fromMicro(attestAt.Int64), Result: result, Reason: reason, Detail: detail}
	}
	return d, err
}

// getDevice reads a device; scoped restricts it to tenant (even an empty
// tenant id, which then matches nothing).
func (s *Store) getDevice(ctx context.Context, scoped bool, tenant, id string) (sphere.Device, error) {
	if err := sphere.ValidateDeviceID(id); err != nil {
		return sphere.Device{}, err
	}
	q := "SELECT " + deviceColumns + deviceFrom + "WHERE d.id = ?"
	args := []any{id}
	if scoped {
		q += " AND d.tenant_id = ?"
		args = append(args, tenant)
	}
	d, err := scanDevice(s.queryRow(ctx, q, args...))
	if errors.Is(err, sql.ErrNoRows) {
		if scoped {
			return d, sphere.Errorf(sphere.ENotFound, "device %s is not claimed by this tenant", id)
		}
		return d, sphere.Errorf(sphere.ENotFound, "device %s is not registered", id)
	}
	if err != nil {
		return d, fmt.Errorf("store.GetDevice: %w", err)
	}
	return d, nil
}

// GetDevice returns any registered device; for operators and for the
// device-facing API, which authenticates the device itself.
func (s *Store) GetDevice(ctx context.Context, id string) (sphere.Device, error) {
	return s.getDevice(ctx, false, "", id)
}

// Attestee is what attestation reads of a device, in one query: the
// device, its group's root-of-trust policy, and whether an operator asked
// it to check for updates at its next contact.
type Attestee struct {
	Device sphere.Device
	// GroupName and RequireHardwareRoT describe the device's group (empty
	// and false when it is in none). The devices table's foreign key keeps
	// the group in the device's tenant.
	GroupName          string
	RequireHardwareRoT bool
	CheckNow           bool
}

// GetAttestee reads a registered device for attestation.
func (s *Store) GetAttestee(ctx context.Context, id string) (Attestee, error) {
	var a Attestee
	if err := sphere.ValidateDeviceID(id); err != nil {
		return a, err
	}
	var groupName sql.NullString
	var hw sql.NullBool
	d, err := scanDeviceAnd(s.queryRow(quick(ctx), "SELECT "+deviceColumns+", g.name, g.require_hw_rot, d.check_now"+deviceFrom+"WHERE d.id = ?", id),
		&groupName, &hw, &a.CheckNow)
	if errors.Is(err, sql.ErrNoRows) {
		return a, sphere.Errorf(sphere.ENotFound, "device %s is not registered", id)
	}
	if err != nil {
		return a, fmt.Errorf("store.GetAttestee: %w", err)
	}
	a.Device, a.GroupName, a.RequireHardwareRoT = d, groupName.String, hw.Bool
	return a, nil
}

// DeviceCaller is what the device-facing API needs of a device that calls
// it over mutual TLS: who it belongs to now, whether it was revoked, and
// its update status. One narrow read of the device's row, for every call
// of a fleet (GetDevice also reads the keys, EK certificate and the last
// attestation's detail, which these routes never use).
type DeviceCaller struct {
	// Device holds ID, TenantID, DeviceGroupID, ProductID, RevokedAt and
	// RevokedReason; its other fields are empty.
	Device sphere.Device
	Update UpdateStatus
}

// GetDeviceCaller reads a registered device for the device-facing API.
func (s *Store) GetDeviceCaller(ctx context.Context, id string) (DeviceCaller, error) {
	var dc DeviceCaller
	if err := sphere.ValidateDeviceID(id); err != nil {
		return dc, err
	}
	var tenant, group, product sql.NullString
	var revoked, checked sql.NullInt64
	var reported string
	err := s.queryRow(quick(ctx), "SELECT d.id, d.tenant_id, d.device_group_id, g.product_id, d.revoked_at, d.revoked_reason, "+
		"d.update_checked_at, d.reported, d.update_error, d.check_now"+deviceFrom+"WHERE d.id = ?", id).
		Scan(&dc.Device.ID, &tenant, &group, &product, &revoked, &dc.Device.RevokedReason,
			&checked, &reported, &dc.Update.LastError, &dc.Update.CheckNow)
	if errors.Is(err, sql.ErrNoRows) {
		return dc, sphere.Errorf(sphere.ENotFound, "device %s is not registered", id)
	}
	if err != nil {
		return dc, fmt.Errorf("store.GetDeviceCaller: %w", err)
	}
	dc.Device.TenantID, dc.Device.DeviceGroupID, dc.Device.ProductID = tenant.String, group.String, product.String
	dc.Device.RevokedAt = fromMicroPtr(revoked)
	dc.Update.CheckedAt, dc.Update.Reported = fromMicroPtr(checked), []byte(reported)
	return dc, nil
}

// GetDevice returns a device claimed by the tenant.
func (t *TenantStore) GetDevice(ctx context.Context, id string) (sphere.Device, error) {
	return t.s.getDevice(ctx, true, t.id, id)
}

// ClaimDevice claims a registered, unclaimed device into the tenant and,
// if group is set, puts it in that device group. A device belongs to one
// tenant at a time: claiming one that another tenant holds is refused
// without saying which tenant.
func (t *TenantStore) ClaimDevice(ctx context.Context, id, group string) (sphere.Device, error) {
	if err := sphere.ValidateDeviceID(id); err != nil {
		return sphere.Device{}, err
	}
	var groupID sql.NullString
	if group != "" {
		g, err := t.GetDeviceGroup(ctx, group)
		if err != nil {
			return sphere.Device{}, err
		}
		groupID = sql.NullString{String: g.ID, Valid: true}
	}
	now := t.s.nowMicro()
	if err := t.s.tx(ctx, func(q *querier) error { return t.claim(ctx, q, id, groupID, now) }); err != nil {
		return sphere.Device{}, fmt.Errorf("store.ClaimDevice: %w", err)
	}
	return t.GetDevice(ctx, id)
}

// claim claims a registered, unclaimed device into the tenant.
func (t *TenantStore) claim(ctx context.Context, q *querier, id string, groupID sql.NullString, now int64) error {
	var owner sql.NullString
	err := q.queryRow(ctx, "SELECT tenant_id FROM devices WHERE id = ?", id).Scan(&owner)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return sphere.Errorf(sphere.ENotFound, "device %s is not registered; its manufacturer registers it first", id)
	case err != nil:
		return err
	case owner.Valid && owner.String == t.id:
		return sphere.Errorf(sphere.EConflict, "device %s is already claimed by this tenant", id)
	case owner.Valid:
		return sphere.Errorf(sphere.EConflict, "device %s is claimed by another tenant; its owner must release it first", id)
	}
	res, err := q.exec(ctx, "UPDATE devices SET tenant_id = ?, device_group_id = ?, claimed_at = ? WHERE id = ? AND tenant_id IS NULL",
		t.id, groupID, now, id)
	if err != nil {
		return err
	}
	if n, _ := res.RowsAffected(); n != 1 {
		return sphere.Errorf(sphere.EConflict, "device %s was claimed by another tenant meanwhile", id)
	}
	return nil
}

// ClaimDevices claims up to MaxBatch registered devices into the tenant and
// its device group (id or name; empty leaves them unassigned) in one
// transaction: all of them, or (on the first device that is not
// registered or already claimed, which the error names by its index) none.
// With audit set, the same transaction appends a copy of it for each device
// (Target set to the device id, the tenant to this one).
func (t *TenantStore) ClaimDevices(ctx context.Context, ids []string, group string, audit *sphere.AuditEntry) error {
	if len(ids) == 0 || len(ids) > MaxBatch {
		return sphere.Errorf(sphere.EInvalid, "device_ids: give 1 to %d devices, not %d", MaxBatch, len(ids))
	}
	seen := make(map[string]int, len(ids))
	for i, id := range ids {
		if err := sphere.ValidateDeviceID(id); err != nil {
			return atIndex("device_ids", i, err)
		}
		if j, dup := seen[id]; dup {
			return sphere.Errorf(sphere.EInvalid, "device_ids[%d]: the same device as device_ids[%d]", i, j)
		}
		seen[id] = i
	}
	var groupID sql.NullString
	if group != "" {
		g, err := t.GetDeviceGroup(ctx, group)
		if err != nil {
			return err
		}
		groupID = sql.NullString{String: g.ID, Valid: true}
	}
	now := t.s.nowMicro()
	err := t.s.txAlone(ctx, func(q *querier) error {
		for i, id := range ids {
			if err := t.claim(ctx, q, id, groupID, now); err != nil {
				return atIndex("device_ids", i, err)
			}
		}
		if audit != nil {
			audit.TenantID = t.id
		}
		return auditEach(ctx, q, audit, ids, t.s.now())
	})
	if err != nil {
		return fmt.Errorf("store.ClaimDevices: %w", err)
	}
	return nil
}

// MoveDevice puts a claimed device into another device group of the tenant.
func (t *TenantStore) MoveDevice(ctx context.Context, id, group string) (sphere.Device, error) {
	if _, err := t.GetDevice(ctx, id); err != nil {
		return sphere.Device{}, err
	}
	if group == "" {
		return sphere.Device{}, sphere.Errorf(sphere.EInvalid, "device_group_id is required")
	}
	g, err := t.GetDeviceGroup(ctx, group)
	if err != nil {
		return sphere.Device{}, err
	}
	if _, err := t.s.exec(ctx, "UPDATE devices SET device_group_id = ? WHERE tenant_id = ? AND id = ?", g.ID, t.id, id); err != nil {
		return sphere.Device{}, fmt.Errorf("store.MoveDevice: %w", err)
	}
	return t.GetDevice(ctx, id)
}

// ReleaseDevice gives up the tenant's claim: the device stays registered and
// any tenant can claim it again.
func (t *TenantStore) ReleaseDevice(ctx context.Context, id string) (sphere.Device, error) {
	if _, err := t.GetDevice(ctx, id); err != nil {
		return sphere.Device{}, err
	}
	if _, err := t.s.exec(ctx, "UPDATE devices SET tenant_id = NULL, device_group_id = NULL, claimed_at = NULL WHERE tenant_id = ? AND id = ?", t.id, id); err != nil {
		return sphere.Device{}, fmt.Errorf("store.ReleaseDevice: %w", err)
	}
	return t.s.GetDevice(ctx, id)
}

// DeviceFilter narrows ListDevices.
type DeviceFilter struct {
	Product     string // product id or name
	DeviceGroup string // device group id
	Unassigned  bool   // only devices in no group
}

// ListDevices lists the tenant's devices ordered by id.
func (t *TenantStore) ListDevices(ctx context.Context, f DeviceFilter, p PageRequest) (sphere.Page[sphere.Device], error) {
	size, after, err := p.cursor("devices")
	if err != nil {
		return sphere.Page[sphere.Device]{}, err
	}
	q := "SELECT " + deviceColumns + deviceFrom + "WHERE d.tenant_id = ? AND d.id > ?"
	args := []any{t.id, after}
	if f.Product != "" {
		prod, err := t.GetProduct(ctx, f.Product)
		if err != nil {
			return sphere.Page[sphere.Device]{}, err
		}
		q += " AND g.product_id = ?"
		args = append(args, prod.ID)
	}
	if f.DeviceGroup != "" {
		if _, err := t.GetDeviceGroup(ctx, f.DeviceGroup); err != nil {
			return sphere.Page[sphere.Device]{}, err
		}
		q += " AND d.device_group_id = ?"
		args = append(args, f.DeviceGroup)
	}
	if f.Unassigned {
		q += " AND d.device_group_id IS NULL"
	}
	q += " ORDER BY d.id LIMIT ?"
	items, err := collect(ctx, t.s, q, append(args, size+1), scanDevice)
	if err != nil {
		return sphere.Page[sphere.Device]{}, fmt.Errorf("store.ListDevices: %w", err)
	}
	return finishPage(items, size, "devices", func(d sphere.Device) string { return d.ID }), nil
}

// ListAllDevices lists every registered device (operators only), optionally
// only the unclaimed ones.
func (s *Store) ListAllDevices(ctx context.Context, unclaimed bool, p PageRequest) (sphere.Page[sphere.Device], error) {
	size, after, err := p.cursor("all-devices")
	if err != nil {
		return sphere.Page[sphere.Device]{}, err
	}
	q := "SELECT " + deviceColumns + deviceFrom + "WHERE d.id > ?"
	if unclaimed {
		q += " AND d.tenant_id IS NULL"
	}
	items, err := collect(ctx, s, q+" ORDER BY d.id LIMIT ?", []any{after, size + 1}, scanDevice)
	if err != nil {
		return sphere.Page[sphere.Device]{}, fmt.Errorf("store.ListAllDevices: %w", err)
	}
	return finishPage(items, size, "all-devices", func(d sphere.Device) string { return d.ID }), nil
}

// RevokeDevice revokes a device of the tenant: from now on its attestation
// is refused with reason, so it gets no new certificate and its current one
// (at most 24 hours old) is refused by the device API at once.
func (t *TenantStore) RevokeDevice(ctx context.Context, id, reason string) (sphere.Device, error) {
	if err := sphere.ValidateText("reason", reason, sphere.MaxDescriptionLen); err != nil {
		return sphere.Device{}, err
	}
	if reason == "" {
		return sphere.Device{}, sphere.Errorf(sphere.EInvalid, "a reason is required to revoke a device")
	}
	if _, err := t.GetDevice(ctx, id); err != nil {
		return sphere.Device{}, err
	}
	if _, err := t.s.exec(ctx, "UPDATE devices SET revoked_at = ?, revoked_reason = ? WHERE tenant_id = ? AND id = ?", t.s.nowMicro(), reason, t.id, id); err != nil {
		return sphere.Device{}, fmt.Errorf("store.RevokeDevice: %w", err)
	}
	return t.GetDevice(ctx, id)
}

// UnrevokeDevice lifts a revocation.
func (t *TenantStore) UnrevokeDevice(ctx context.Context, id string) (sphere.Device, error) {
	d, err := t.GetDevice(ctx, id)
	if err != nil {
		return d, err
	}
	if d.RevokedAt == nil {
		return d, sphere.Errorf(sphere.EPrecondition, "device %s is not revoked", id)
	}
	if _, err := t.s.exec(ctx, "UPDATE devices SET revoked_at = NULL, revoked_reason = '' WHERE tenant_id = ? AND id = ?", t.id, id); err != nil {
		return sphere.Device{}, fmt.Errorf("store.UnrevokeDevice: %w", err)
	}
	return t.GetDevice(ctx, id)
}

// RecordAttestation stores the outcome of a device's attestation and, when
// it was healthy, the certificate issued, in one transaction.
func (s *Store) RecordAttestation(ctx context.Context, deviceID string, a sphere.Attestation, cert *IssuedCert) error {
	_, err := s.RecordAnswer(ctx, nil, deviceID, a, cert)
	return err
}

// Nonce is a used attestation challenge: its hash, kept until it expires.
type Nonce struct {
	Hash    string
	Expires time.Time
}

// RecordAnswer is RecordAttestation for the answer to a challenge: in the
// same transaction (one commit) it marks the challenge n used. If n was
// already used it writes nothing and reports false; the caller then refuses
// the answer as a replay. A nil n records like RecordAttestation. Its
// writes are blind (txBlind): the used nonce's primary key, not a read,
// refuses a replay, even of two answers at once.
func (s *Store) RecordAnswer(ctx context.Context, n *Nonce, deviceID string, a sphere.Attestation, cert *IssuedCert) (fresh bool, err error) {
	err = s.txBlind(ctx, func(q *querier) error {
		fresh = true
		if n != nil {
			res, err := q.exec(ctx, "INSERT INTO used_nonces (nonce_hash, expires_at) VALUES (?, ?) ON CONFLICT DO NOTHING", n.Hash, n.Expires.UTC().UnixMicro())
			if err != nil {
				return err
			}
			if k, err := res.RowsAffected(); err != nil || k == 0 {
				fresh = false
				return err
			}
		}
		if cert == nil {
			_, err := q.exec(ctx, "UPDATE devices SET last_attest_at = ?, last_attest_result = ?, last_attest_reason = ?, last_attest_detail = ? WHERE id = ?",
				a.At.UTC().UnixMicro(), a.Result, a.Reason, truncate(a.Detail, 512), deviceID)
			return err
		}
		if _, err := q.exec(ctx, "INSERT INTO device_certs (serial, tenant_id, device_id, ca_id, not_before, not_after, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
			cert.Serial, cert.TenantID, deviceID, cert.CAID, cert.NotBefore.UnixMicro(), cert.NotAfter.UnixMicro(), s.nowMicro()); err != nil {
			return err
		}
		_, err := q.exec(ctx, "UPDATE devices SET last_attest_at = ?, last_attest_result = ?, last_attest_reason = ?, last_attest_detail = ?, cert_not_after = ? WHERE id = ?",
			a.At.UTC().UnixMicro(), a.Result, a.Reason, truncate(a.Detail, 512), cert.NotAfter.UnixMicro(), deviceID)
		return err
	})
	if err != nil {
		return false, fmt.Errorf("store.RecordAnswer: %w", err)
	}
	return fresh, nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}
