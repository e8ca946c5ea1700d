package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/opensphere/sphere"
)

const deploymentColumns = "id, tenant_id, device_group_id, state, state_reason, waves, dwell_seconds, failure_permille, min_sample, crash_ratio_percent, current_wave, wave_started_at, created_by, created_at, updated_at"

func scanDeployment(row interface{ Scan(...any) error }) (sphere.Deployment, error) {
	var d sphere.Deployment
	var waves string
	var ws, c, u int64
	err := row.Scan(&d.ID, &d.TenantID, &d.DeviceGroupID, &d.State, &d.StateReason, &waves, &d.DwellSeconds, &d.FailurePermille,
		&d.MinSample, &d.CrashRatioPercent, &d.CurrentWave, &ws, &d.CreatedBy, &c, &u)
	if err != nil {
		return d, err
	}
	d.WaveStartedAt, d.CreatedAt, d.UpdatedAt = fromMicro(ws), fromMicro(c), fromMicro(u)
	return d, json.Unmarshal([]byte(waves), &d.Waves)
}

// CreateDeployment stores a deployment of images to a device group of the
// tenant; the group's earlier deployments that are not yet superseded
// become superseded in the same transaction. The caller has validated the
// rollout settings and that the images belong to the tenant.
func (t *TenantStore) CreateDeployment(ctx context.Context, d sphere.Deployment) (sphere.Deployment, error) {
	if len(d.ImageIDs) == 0 {
		return d, sphere.Errorf(sphere.EInvalid, "a deployment needs at least one image")
	}
	waves, _ := json.Marshal(d.Waves)
	now := t.s.nowMicro()
	d.ID, d.TenantID = newID(), t.id
	err := t.s.tx(ctx, func(q *querier) error {
		if _, err := q.exec(ctx, "UPDATE deployments SET state = ?, state_reason = ?, updated_at = ? WHERE tenant_id = ? AND device_group_id = ? AND state <> ?",
			sphere.DeploymentSuperseded, "replaced by deployment "+d.ID, now, t.id, d.DeviceGroupID, sphere.DeploymentSuperseded); err != nil {
			return err
		}
		if _, err := q.exec(ctx, "INSERT INTO deployments ("+deploymentColumns+") VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
			d.ID, t.id, d.DeviceGroupID, sphere.DeploymentActive, "", string(waves), d.DwellSeconds, d.FailurePermille, d.MinSample,
			d.CrashRatioPercent, 0, now, d.CreatedBy, now, now); err != nil {
			if isForeignKeyViolation(err) {
				return sphere.Errorf(sphere.ENotFound, "device group %q not found in this tenant", d.DeviceGroupID)
			}
			return err
		}
		for _, im := range d.ImageIDs {
			if _, err := q.exec(ctx, "INSERT INTO deployment_images (deployment_id, tenant_id, image_id) VALUES (?, ?, ?)", d.ID, t.id, im); err != nil {
				if isForeignKeyViolation(err) {
					return sphere.Errorf(sphere.ENotFound, "image %q not found in this tenant", im)
				}
				if isUniqueViolation(err) {
					return sphere.Errorf(sphere.EInvalid, "image %q is given twice", im)
				}
				return err
			}
		}
		return nil
	})
	if err != nil {
		return d, fmt.Errorf("store.CreateDeployment: %w", err)
	}
	return t.GetDeployment(ctx, d.ID)
}

func (t *TenantStore) deploymentImages(ctx context.Context, d *sphere.Deployment) error {
	ids, err := collect(ctx, t.s, "SELECT image_id FROM deployment_images WHERE deployment_id = ? ORDER BY image_id", []any{d.ID},
		func(row interface{ Scan(...any) error }) (string, error) {
			var s string
			return s, row.Scan(&s)
		})
	d.ImageIDs = ids
	return err
}

// GetDeployment returns one of the tenant's deployments.
func (t *TenantStore) GetDeployment(ctx context.Context, id string) (sphere.Deployment, error) {
	d, err := scanDeployment(t.s.queryRow(ctx, "SELECT "+deploymentColumns+" FROM deployments WHERE tenant_id = ? AND id = ?", t.id, id))
	if errors.Is(err, sql.ErrNoRows) {
		return d, sphere.Errorf(sphere.ENotFound, "deployment %q not found in this tenant", id)
	}
	if err != nil {
		return d, fmt.Errorf("store.GetDeployment: %w", err)
	}
	return d, t.deploymentImages(ctx, &d)
}

// CurrentDeployment returns the group's deployment that is not superseded
// (active, paused or halted), or ENotFound.
func (t *TenantStore) CurrentDeployment(ctx context.Context, groupID string) (sphere.Deployment, error) {
	d, err := scanDeployment(t.s.queryRow(ctx, "SELECT "+deploymentColumns+" FROM deployments WHERE tenant_id = ? AND device_group_id = ? AND state <> ? ORDER BY created_at DESC, id DESC LIMIT 1",
		t.id, groupID, sphere.DeploymentSuperseded))
	if errors.Is(err, sql.ErrNoRows) {
		return d, sphere.Errorf(sphere.ENotFound, "the device group has no deployment")
	}
	if err != nil {
		return d, fmt.Errorf("store.CurrentDeployment: %w", err)
	}
	return d, t.deploymentImages(ctx, &d)
}

// PreviousDeployment returns the deployment the current one of a group
// superseded, or ENotFound: during a rollout, devices not yet reached may
// still run it.
func (t *TenantStore) PreviousDeployment(ctx context.Context, groupID, currentID string) (sphere.Deployment, error) {
	d, err := scanDeployment(t.s.queryRow(ctx, "SELECT "+deploymentColumns+" FROM deployments WHERE tenant_id = ? AND device_group_id = ? AND id <> ? AND state = ? ORDER BY created_at DESC, id DESC LIMIT 1",
		t.id, groupID, currentID, sphere.DeploymentSuperseded))
	if errors.Is(err, sql.ErrNoRows) {
		return d, sphere.Errorf(sphere.ENotFound, "no previous deployment")
	}
	if err != nil {
		return d, fmt.Errorf("store.PreviousDeployment: %w", err)
	}
	return d, t.deploymentImages(ctx, &d)
}

// ListDeployments lists the tenant's deployments, optionally of one group.
func (t *TenantStore) ListDeployments(ctx context.Context, groupID string, p PageRequest) (sphere.Page[sphere.Deployment], error) {
	size, after, err := p.cursor("deployments")
	if err != nil {
		return sphere.Page[sphere.Deployment]{}, err
	}
	q := "SELECT " + deploymentColumns + " FROM deployments WHERE tenant_id = ? AND id > ?"
	args := []any{t.id, after}
	if groupID != "" {
		q += " AND device_group_id = ?"
		args = append(args, groupID)
	}
	items, err := collect(ctx, t.s, q+" ORDER BY id LIMIT ?", append(args, size+1), scanDeployment)
	if err != nil {
		return sphere.Page[sphere.Deployment]{}, fmt.Errorf("store.ListDeployments: %w", err)
	}
	for i := range items {
		if err := t.deploymentImages(ctx, &items[i]); err != nil {
			return sphere.Page[sphere.Deployment]{}, err
		}
	}
	return finishPage(items, size, "deployments", func(d sphere.Deployment) string { return d.ID }), nil
}

// UpdateRollout writes a deployment's state and wave, but only if it is
// still in state from: two replicas advancing or halting the same rollout
// at once apply one change, not two. It reports whether it changed.
func (t *TenantStore) UpdateRollout(ctx context.Context, id, from, state, reason string, wave int, waveStarted time.Time) (bool, error) {
	res, err := t.s.exec(ctx, "UPDATE deployments SET state = ?, state_reason = ?, current_wave = ?, wave_started_at = ?, updated_at = ? WHERE tenant_id = ? AND id = ? AND state = ?",
		state, reason, wave, waveStarted.UnixMicro(), t.s.nowMicro(), t.id, id, from)
	if err != nil {
		return false, fmt.Errorf("store.UpdateRollout: %w", err)
	}
	n, _ := res.RowsAffected()
	return n == 1, nil
}

// SetDeviceUpdate records how far a device got with a deployment.
func (s *Store) SetDeviceUpdate(ctx context.Context, u sphere.DeviceUpdate) error {
	now := s.nowMicro()
	err := s.tx(ctx, func(q *querier) error {
		res, err := q.exec(ctx, "UPDATE device_updates SET state = ?, reason = ?, updated_at = ? WHERE device_id = ? AND deployment_id = ?",
			u.State, truncate(u.Reason, 512), now, u.DeviceID, u.DeploymentID)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 1 {
			return nil
		}
		_, err = q.exec(ctx, "INSERT INTO device_updates (device_id, deployment_id, state, reason, updated_at) VALUES (?, ?, ?, ?, ?)",
			u.DeviceID, u.DeploymentID, u.State, truncate(u.Reason, 512), now)
		return err
	})
	if err != nil {
		return fmt.Errorf("store.SetDeviceUpdate: %w", err)
	}
	return nil
}

// DeviceUpdates lists the per-device states of a deployment of the tenant.
func (t *TenantStore) DeviceUpdates(ctx context.Context, deploymentID string, p PageRequest) (sphere.Page[sphere.DeviceUpdate], error) {
	size, after, err := p.cursor("device-updates")
	if err != nil {
		return sphere.Page[sphere.DeviceUpdate]{}, err
	}
	items, err := collect(ctx, t.s, "SELECT u.device_id, u.deployment_id, u.state, u.reason, u.updated_at FROM device_updates u JOIN deployments d ON d.id = u.deployment_id WHERE d.tenant_id = ? AND u.deployment_id = ? AND u.device_id > ? ORDER BY u.device_id LIMIT ?",
		[]any{t.id, deploymentID, after, size + 1}, scanDeviceUpdate)
	if err != nil {
		return sphere.Page[sphere.DeviceUpdate]{}, fmt.Errorf("store.DeviceUpdates: %w", err)
	}
	return finishPage(items, size, "device-updates", func(u sphere.DeviceUpdate) string { return u.DeviceID }), nil
}

func scanDeviceUpdate(row interface{ Scan(...any) error }) (sphere.DeviceUpdate, error) {
	var u sphere.DeviceUpdate
	var at int64
	err := row.Scan(&u.DeviceID, &u.DeploymentID, &u.State, &u.Reason, &at)
	u.UpdatedAt = fromMicro(at)
	return u, err
}

// DeviceUpdate returns a device's state in a deployment, or ENotFound.
func (s *Store) DeviceUpdate(ctx context.Context, deviceID, deploymentID string) (sphere.DeviceUpdate, error) {
	u, err := scanDeviceUpdate(s.queryRow(quick(ctx), "SELECT device_id, deployment_id, state, reason, updated_at FROM device_updates WHERE device_id = ? AND deployment_id = ?", deviceID, deploymentID))
	if errors.Is(err, sql.ErrNoRows) {
		return u, sphere.Errorf(sphere.ENotFound, "no update state")
	}
	if err != nil {
		return u, fmt.Errorf("store.DeviceUpdate: %w", err)
	}
	return u, nil
}

// LastVerifiedHas reports whether the deployment a device most recently
// verified (a healthy attestation measured all its images) holds imageID:
// the device's last known-good software, which it keeps running when a
// later deployment fails its health check or is refused as a rollback.
func (s *Store) LastVerifiedHas(ctx context.Context, deviceID, imageID string) (bool, error) {
	var depID string
	err := s.queryRow(ctx, "SELECT deployment_id FROM device_updates WHERE device_id = ? AND state = ? ORDER BY updated_at DESC LIMIT 1",
		deviceID, sphere.UpdateVerified).Scan(&depID)
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("store.LastVerifiedHas: %w", err)
	}
	var n int
	if err := s.queryRow(ctx, "SELECT COUNT(*) FROM deployment_images WHERE deployment_id = ? AND image_id = ?", depID, imageID).Scan(&n); err != nil {
		return false, fmt.Errorf("store.LastVerifiedHas: %w", err)
	}
	return n > 0, nil
}

// UpdateCounts counts a deployment's devices by state since a time (the
// start of the current wave), for the rollout's failure ratio.
func (s *Store) UpdateCounts(ctx context.Context, deploymentID string, since time.Time) (map[string]int, error) {
	rows, err := s.query(ctx, "SELECT state, COUNT(*) FROM device_updates WHERE deployment_id = ? AND updated_at >= ? GROUP BY state", deploymentID, since.UnixMicro())
	if err != nil {
		return nil, fmt.Errorf("store.UpdateCounts: %w", err)
	}
	defer rows.Close()
	out := map[string]int{}
	for rows.Next() {
		var st string
		var n int
		if err := rows.Scan(&st, &n); err != nil {
			return nil, err
		}
		out[st] = n
	}
	return out, rows.Err()
}

// RecordUpdateCheck notes that a device checked for updates: when, the
// components it reported running (JSON) and its last update error, and
// clears its check-now flag. To keep the common check read-only it writes
// only when something changed against prev, the device's update status as
// the caller just read it (GetDeviceCaller or DeviceUpdateStatus): the
// report or error differ, the check-now flag is set, or the stored check
// time is older than coarse. A nil prev or a zero coarse writes every time;
// the stored check time is therefore up to coarse old. It reports whether
// it wrote.
func (s *Store) RecordUpdateCheck(ctx context.Context, deviceID string, prev *UpdateStatus, reported []byte, lastError string, coarse time.Duration) (bool, error) {
	lastError = truncate(lastError, 512)
	now := s.now()
	if coarse > 0 && prev != nil {
		st := *prev
		if !st.CheckNow && st.CheckedAt != nil && now.Sub(*st.CheckedAt) < coarse && !now.Before(*st.CheckedAt) &&
			string(st.Reported) == string(reported) && st.LastError == lastError {
			return false, nil
		}
	}
	// A blind write: on SQLite the checks of a fleet that writes here (each
	// device checks less often than coarse) share their commits (group.go).
	_, err := s.execBlind(ctx, "UPDATE devices SET update_checked_at = ?, reported = ?, update_error = ?, check_now = 0 WHERE id = ?",
		now.UTC().UnixMicro(), string(reported), lastError, deviceID)
	if err != nil {
		return false, fmt.Errorf("store.RecordUpdateCheck: %w", err)
	}
	return true, nil
}

// UpdateStatus is what the service knows of a device's updates.
type UpdateStatus struct {
	CheckedAt *time.Time
	Reported  []byte
	LastError string
	CheckNow  bool
}

// DeviceUpdateStatus reads a device's update status.
func (s *Store) DeviceUpdateStatus(ctx context.Context, deviceID string) (UpdateStatus, error) {
	var st UpdateStatus
	var at sql.NullInt64
	var reported string
	err := s.queryRow(quick(ctx), "SELECT update_checked_at, reported, update_error, check_now FROM devices WHERE id = ?", deviceID).
		Scan(&at, &reported, &st.LastError, &st.CheckNow)
	if errors.Is(err, sql.ErrNoRows) {
		return st, sphere.Errorf(sphere.ENotFound, "device %s is not registered", deviceID)
	}
	st.CheckedAt, st.Reported = fromMicroPtr(at), []byte(reported)
	return st, err
}

// SetCheckNow asks a device of the tenant to check for updates at its next
// contact.
func (t *TenantStore) SetCheckNow(ctx context.Context, deviceID string) error {
	res, err := t.s.exec(ctx, "UPDATE devices SET check_now = 1 WHERE tenant_id = ? AND id = ?", t.id, deviceID)
	if err != nil {
		return fmt.Errorf("store.SetCheckNow: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return sphere.Errorf(sphere.ENotFound, "device %s is not claimed by this tenant", deviceID)
	}
	return nil
}

// GroupDeviceCount counts the devices in a group of the tenant.
func (t *TenantStore) GroupDeviceCount(ctx context.Context, groupID string) (int, error) {
	var n int
	err := t.s.queryRow(ctx, "SELECT COUNT(*) FROM devices WHERE tenant_id = ? AND device_group_id = ?", t.id, groupID).Scan(&n)
	return n, err
}
