package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"

	"github.com/opensphere/sphere"
)

// MeasurementTypes are the kinds of measurement a tenant allowlist holds.
var MeasurementTypes = []string{"agent", "config"}

const measurementColumns = "id, tenant_id, type, digest, name, status, created_at"

func scanMeasurement(row interface{ Scan(...any) error }) (sphere.AllowedMeasurement, error) {
	var m sphere.AllowedMeasurement
	var c int64
	err := row.Scan(&m.ID, &m.TenantID, &m.Type, &m.Digest, &m.Name, &m.Status, &c)
	m.CreatedAt = fromMicro(c)
	return m, err
}

// AllowMeasurement adds a measurement to the tenant's allowlist, or changes
// the status and name of one already there.
func (t *TenantStore) AllowMeasurement(ctx context.Context, typ, digest, name, status string) (sphere.AllowedMeasurement, error) {
	m := sphere.AllowedMeasurement{TenantID: t.id, Type: typ, Digest: strings.ToLower(digest), Name: name, Status: status}
	known := false
	for _, k := range MeasurementTypes {
		known = known || k == typ
	}
	if !known {
		return m, sphere.Errorf(sphere.EInvalid, "measurement type %q is not one of %s", typ, strings.Join(MeasurementTypes, ", "))
	}
	if err := sphere.ValidateDeviceID(m.Digest); err != nil { // same shape: 64 lowercase hex
		return m, sphere.Errorf(sphere.EInvalid, "digest must be the 64-hex-character SHA-256 of the measured content")
	}
	if status == "" {
		m.Status = sphere.MeasurementAllowed
	}
	if m.Status != sphere.MeasurementAllowed && m.Status != sphere.MeasurementDeprecated {
		return m, sphere.Errorf(sphere.EInvalid, "status %q is not allowed or deprecated", status)
	}
	if err := sphere.ValidateText("name", name, sphere.MaxDescriptionLen); err != nil {
		return m, err
	}
	now := t.s.nowMicro()
	err := t.s.tx(ctx, func(q *querier) error {
		err := q.queryRow(ctx, "SELECT id FROM allowed_measurements WHERE tenant_id = ? AND type = ? AND digest = ?", t.id, typ, m.Digest).Scan(&m.ID)
		switch {
		case errors.Is(err, sql.ErrNoRows):
			m.ID = newID()
			_, err = q.exec(ctx, "INSERT INTO allowed_measurements ("+measurementColumns+") VALUES (?, ?, ?, ?, ?, ?, ?)",
				m.ID, t.id, typ, m.Digest, name, m.Status, now)
			return err
		case err != nil:
			return err
		}
		_, err = q.exec(ctx, "UPDATE allowed_measurements SET name = ?, status = ? WHERE tenant_id = ? AND id = ?", name, m.Status, t.id, m.ID)
		return err
	})
	if err != nil {
		return m, fmt.Errorf("store.AllowMeasurement: %w", err)
	}
	return t.s.getMeasurement(ctx, t.id, m.ID)
}

func (s *Store) getMeasurement(ctx context.Context, tenant, id string) (sphere.AllowedMeasurement, error) {
	m, err := scanMeasurement(s.queryRow(ctx, "SELECT "+measurementColumns+" FROM allowed_measurements WHERE tenant_id = ? AND id = ?", tenant, id))
	if errors.Is(err, sql.ErrNoRows) {
		return m, sphere.Errorf(sphere.ENotFound, "measurement %q not found in this tenant", id)
	}
	if err != nil {
		return m, fmt.Errorf("store.GetMeasurement: %w", err)
	}
	return m, nil
}

// MeasurementKey names an allowlist entry: a measured item's type and
// SHA-256.
type MeasurementKey struct{ Type, Digest string }

// lookupChunk bounds the pairs of one LookupMeasurements query (two
// parameters each, well under either database's limit).
const lookupChunk = 200

// LookupMeasurements finds the allowlist entries of many measured items at
// once, in one query for an event log of up to 200 items; an item with no
// entry is absent from the map.
func (t *TenantStore) LookupMeasurements(ctx context.Context, keys []MeasurementKey) (map[MeasurementKey]sphere.AllowedMeasurement, error) {
	out := make(map[MeasurementKey]sphere.AllowedMeasurement, len(keys))
	seen := make(map[MeasurementKey]bool, len(keys))
	var uniq []MeasurementKey
	for _, k := range keys {
		if !seen[k] {
			seen[k] = true
			uniq = append(uniq, k)
		}
	}
	for len(uniq) > 0 {
		n := min(len(uniq), lookupChunk)
		part := uniq[:n]
		uniq = uniq[n:]
		args := make([]any, 0, 1+2*n)
		args = append(args, t.id)
		for _, k := range part {
			args = append(args, k.Type, k.Digest)
		}
		q := "SELECT " + measurementColumns + " FROM allowed_measurements WHERE tenant_id = ? AND (type, digest) IN (VALUES " +
			strings.TrimSuffix(strings.Repeat("(?, ?), ", n), ", ") + ")"
		found, err := collect(quick(ctx), t.s, q, args, scanMeasurement)
		if err != nil {
			return nil, fmt.Errorf("store.LookupMeasurements: %w", err)
		}
		for _, m := range found {
			out[MeasurementKey{m.Type, m.Digest}] = m
		}
	}
	return out, nil
}

// ListMeasurements lists the tenant's allowlist in creation order.
func (t *TenantStore) ListMeasurements(ctx context.Context, p PageRequest) (sphere.Page[sphere.AllowedMeasurement], error) {
	size, after, err := p.cursor("measurements")
	if err != nil {
		return sphere.Page[sphere.AllowedMeasurement]{}, err
	}
	items, err := collect(ctx, t.s, "SELECT "+measurementColumns+" FROM allowed_measurements WHERE tenant_id = ? AND id > ? ORDER BY id LIMIT ?",
		[]any{t.id, after, size + 1}, scanMeasurement)
	if err != nil {
		return sphere.Page[sphere.AllowedMeasurement]{}, fmt.Errorf("store.ListMeasurements: %w", err)
	}
	return finishPage(items, size, "measurements", func(m sphere.AllowedMeasurement) string { return m.ID }), nil
}

// RemoveMeasurement takes an entry off the allowlist.
func (t *TenantStore) RemoveMeasurement(ctx context.Context, id string) error {
	res, err := t.s.exec(ctx, "DELETE FROM allowed_measurements WHERE tenant_id = ? AND id = ?", t.id, id)
	if err != nil {
		return fmt.Errorf("store.RemoveMeasurement: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return sphere.Errorf(sphere.ENotFound, "measurement %q not found in this tenant", id)
	}
	return nil
}
