package updates

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/opensphere/sphere"
	"github.com/opensphere/sphere/api"
	"github.com/opensphere/sphere/store"
	"github.com/opensphere/sphere/tufrepo"
)

// RolloutOptions are a deployment's rollout settings; zero fields take the
// defaults.
type RolloutOptions struct {
	Waves           []int
	Dwell           time.Duration
	FailurePermille int
	MinSample       int
	// CrashRatioPercent: see sphere.Deployment; negative turns the crash
	// comparison off.
	CrashRatioPercent int
}

// CreateDeployment deploys images of the tenant to a device group, rolled
// out in waves, and publishes the group's new targets.
func (s *Service) CreateDeployment(ctx context.Context, tenantID, groupID string, imageIDs []string, o RolloutOptions, actor string) (sphere.Deployment, error) {
	if o.Waves == nil {
		o.Waves = DefaultWaves
	}
	if o.Dwell == 0 {
		o.Dwell = DefaultDwell
	}
	if o.FailurePermille == 0 {
		o.FailurePermille = DefaultFailurePermille
	}
	if o.MinSample == 0 {
		o.MinSample = DefaultMinSample
	}
	if err := ValidateRollout(o.Waves, o.Dwell, o.FailurePermille, o.MinSample); err != nil {
		return sphere.Deployment{}, err
	}
	switch {
	case o.CrashRatioPercent == 0:
		o.CrashRatioPercent = DefaultCrashRatioPercent
	case o.CrashRatioPercent < 0:
		o.CrashRatioPercent = 0
	case o.CrashRatioPercent < 100 || o.CrashRatioPercent > 100000:
		return sphere.Deployment{}, sphere.Errorf(sphere.EInvalid, "the crash ratio must be between 100 and 100000 percent of the previous deployment's crash rate (200: twice as often), or negative to turn it off")
	}
	ts := s.st.Tenant(tenantID)
	seen := map[string]string{}
	for _, id := range imageIDs {
		im, err := ts.GetImage(ctx, id)
		if err != nil {
			return sphere.Deployment{}, err
		}
		if other, dup := seen[im.ComponentID]; dup {
			return sphere.Deployment{}, sphere.Errorf(sphere.EInvalid, "images %s and %s are both component %s; deploy one version of a component", other, id, im.ComponentID)
		}
		seen[im.ComponentID] = id
	}
	d, err := ts.CreateDeployment(ctx, sphere.Deployment{DeviceGroupID: groupID, ImageIDs: imageIDs, Waves: o.Waves,
		DwellSeconds: int64(o.Dwell / time.Second), FailurePermille: o.FailurePermille, MinSample: o.MinSample, CrashRatioPercent: o.CrashRatioPercent, CreatedBy: actor})
	if err != nil {
		return d, err
	}
	return d, s.SyncGroup(ctx, tenantID, groupID)
}

// Advance moves a deployment's rollout on (next wave, or halt) if its
// time has come, and returns it as it now is.
func (s *Service) Advance(ctx context.Context, tenantID string, d sphere.Deployment) (sphere.Deployment, error) {
	if d.State != sphere.DeploymentActive {
		return d, nil
	}
	counts, err := s.st.UpdateCounts(ctx, d.ID, time.Time{})
	if err != nil {
		return d, err
	}
	st := NextStep(d, counts, s.now())
	if !st.Changed {
		return d, nil
	}
	ts := s.st.Tenant(tenantID)
	if _, err := ts.UpdateRollout(ctx, d.ID, d.State, st.State, st.Reason, st.Wave, st.WaveStarted); err != nil {
		return d, err
	}
	s.views.forget(tenantID, d.DeviceGroupID)
	if st.State == sphere.DeploymentHalted {
		s.log.Warn("rollout halted", "tenant", tenantID, "deployment", d.ID, "reason", st.Reason)
	}
	return ts.GetDeployment(ctx, d.ID)
}

var done = map[string]string{"pause": "paused", "resume": "resumed", "halt": "halted"}

// SetState pauses, resumes or halts a deployment by an operator's hand.
func (s *Service) SetState(ctx context.Context, tenantID, deploymentID, action, reason, actor string) (sphere.Deployment, error) {
	ts := s.st.Tenant(tenantID)
	d, err := ts.GetDeployment(ctx, deploymentID)
	if err != nil {
		return d, err
	}
	var from []string
	var to string
	switch action {
	case "pause":
		from, to = []string{sphere.DeploymentActive}, sphere.DeploymentPaused
	case "resume":
		from, to = []string{sphere.DeploymentPaused, sphere.DeploymentHalted}, sphere.DeploymentActive
	case "halt":
		from, to = []string{sphere.DeploymentActive, sphere.DeploymentPaused}, sphere.DeploymentHalted
	default:
		return d, sphere.Errorf(sphere.EInvalid, "action %q is not pause, resume or halt", action)
	}
	ok := false
	for _, f := range from {
		ok = ok || d.State == f
	}
	if !ok {
		return d, sphere.Errorf(sphere.EPrecondition, "deployment %s is %s; it cannot be %s", d.ID, d.State, done[action])
	}
	why := fmt.Sprintf("%s by %s", done[action], actor)
	if reason != "" {
		why += ": " + reason
	}
	if to == sphere.DeploymentActive {
		why = ""
	}
	// Resuming restarts the dwell of the current wave.
	changed, err := ts.UpdateRollout(ctx, d.ID, d.State, to, why, d.CurrentWave, s.now())
	if err != nil {
		return d, err
	}
	s.views.forget(tenantID, d.DeviceGroupID)
	if !changed {
		return d, sphere.Errorf(sphere.EConflict, "deployment %s changed meanwhile; look at it again", d.ID)
	}
	return ts.GetDeployment(ctx, d.ID)
}

// The wire types of a device's update check live in package api, which
// the agent links without this package's store.
type (
	Component   = api.UpdateCheckComponent
	Report      = api.UpdateCheckReport
	CheckResult = api.UpdateCheckResult
	Target      = api.UpdateCheckTarget
)

// CheckRecordInterval is how old a device's stored last-check time may get
// before a check that reports nothing new writes it again: an unchanged
// check, the common one, only reads the database.
const CheckRecordInterval = time.Hour

// Check answers a device's update check: it records the report (when it
// changed, or the check-now flag was set, or the stored check time is older
// than CheckRecordInterval), moves the rollout on, and returns the targets
// the device should run now.
func (s *Service) Check(ctx context.Context, dev sphere.Device, rep Report) (CheckResult, error) {
	st, err := s.st.DeviceUpdateStatus(ctx, dev.ID)
	if err != nil {
		return CheckResult{}, err
	}
	return s.CheckAfter(ctx, dev, st, rep)
}

// CheckAfter is Check for a caller that has just read the device's update
// status (st, from store.GetDeviceCaller), as the device API does when it
// authenticates the device: the common, unchanged check then reads the
// device's row once.
func (s *Service) CheckAfter(ctx context.Context, dev sphere.Device, st store.UpdateStatus, rep Report) (CheckResult, error) {
	if len(rep.Components) > 256 {
		return CheckResult{}, sphere.Errorf(sphere.EInvalid, "at most 256 components")
	}
	raw, _ := json.Marshal(rep.Components)
	if _, err := s.st.RecordUpdateCheck(ctx, dev.ID, &st, raw, rep.LastError, CheckRecordInterval); err != nil {
		return CheckResult{}, err
	}
	if dev.TenantID == "" || dev.DeviceGroupID == "" {
		return CheckResult{Targets: []Target{}, Reasons: []string{"the device is not in a device group"}}, nil
	}
	v, err := s.groupView(ctx, dev.TenantID, dev.DeviceGroupID)
	if err != nil {
		return CheckResult{}, err
	}
	g, targets, dep := v.group, v.targets, v.dep
	res := CheckResult{Targets: []Target{}}
	if dep != nil {
		res.DeploymentID = dep.ID
		state, err := s.recordProgress(ctx, dev, *dep, rep)
		if err != nil {
			return CheckResult{}, err
		}
		if state == sphere.UpdateFailed || state == sphere.UpdateRolledBack {
			// A failure may halt the rollout: decide now, not when the
			// cached view of the group expires.
			d, err := s.Advance(ctx, dev.TenantID, *dep)
			if err != nil {
				return CheckResult{}, err
			}
			dep = &d
			s.views.forget(dev.TenantID, dev.DeviceGroupID)
		}
	}
	reached := dep != nil && InRollout(*dep, dev.ID)
	for _, t := range targets {
		switch {
		case g.UpdatePolicy == sphere.PolicyNoUpdates:
			continue
		case t.OSRelease:
			res.Targets = append(res.Targets, t)
		case g.UpdatePolicy == sphere.PolicyNo3rdPartyAppUpdates && t.Kind == "app":
			continue
		case dep == nil:
		case dep.State == sphere.DeploymentActive && reached:
			res.Targets = append(res.Targets, t)
		case dep.State != sphere.DeploymentActive:
		}
	}
	res.Reasons = s.reasons(g, dep, reached, len(targets) > 0)
	sort.Slice(res.Targets, func(i, j int) bool { return res.Targets[i].Path < res.Targets[j].Path })
	return res, nil
}

// recordProgress turns a device's report into its state in the rollout. It
// returns the state it wrote, or "" when nothing changed.
func (s *Service) recordProgress(ctx context.Context, dev sphere.Device, d sphere.Deployment, rep Report) (string, error) {
	have := map[string]bool{}
	for _, c := range rep.Components {
		have[c.ImageID] = true
	}
	all := len(d.ImageIDs) > 0
	for _, id := range d.ImageIDs {
		all = all && have[id]
	}
	state, reason := "", ""
	switch {
	case rep.DeploymentID == d.ID && rep.LastUpdate == sphere.UpdateFailed:
		state, reason = sphere.UpdateFailed, rep.LastError
	case rep.DeploymentID == d.ID && rep.LastUpdate == sphere.UpdateRolledBack:
		state, reason = sphere.UpdateRolledBack, rep.LastError
	case rep.DeploymentID == d.ID && rep.LastUpdate == sphere.UpdateDownloading && !all:
		state = sphere.UpdateDownloading
	case all:
		state = sphere.UpdateInstalled
	case InRollout(d, dev.ID) && d.State == sphere.DeploymentActive:
		state = sphere.UpdatePending
	default:
		return "", nil
	}
	cur, err := s.st.DeviceUpdate(ctx, dev.ID, d.ID)
	if err == nil && (cur.State == state || cur.State == sphere.UpdateVerified && state == sphere.UpdateInstalled) {
		return "", nil
	}
	return state, s.st.SetDeviceUpdate(ctx, sphere.DeviceUpdate{DeviceID: dev.ID, DeploymentID: d.ID, State: state, Reason: reason})
}

// reasons explains, in words for people, why a group's device gets what it
// gets.
func (s *Service) reasons(g sphere.DeviceGroup, dep *sphere.Deployment, reached, any bool) []string {
	var out []string
	switch g.UpdatePolicy {
	case sphere.PolicyNoUpdates:
		out = append(out, fmt.Sprintf("device group %q has update policy NoUpdates: no updates at all", g.Name))
	case sphere.PolicyNo3rdPartyAppUpdates:
		out = append(out, fmt.Sprintf("device group %q has update policy No3rdPartyAppUpdates: OS updates only, apps are not updated from the cloud (development mode keeps side-loaded apps)", g.Name))
	}
	switch {
	case dep == nil:
		out = append(out, fmt.Sprintf("device group %q has no deployment", g.Name))
	case dep.State == sphere.DeploymentPaused:
		out = append(out, fmt.Sprintf("deployment %s is paused: %s", dep.ID, dep.StateReason))
	case dep.State == sphere.DeploymentHalted:
		out = append(out, fmt.Sprintf("deployment %s is halted: %s", dep.ID, dep.StateReason))
	case !reached:
		next := dep.WaveStartedAt.Add(time.Duration(dep.DwellSeconds) * time.Second)
		out = append(out, fmt.Sprintf("deployment %s has reached %d %% of the group (wave %d of %d); this device is in a later wave, the next starts after %s",
			dep.ID, dep.Waves[dep.CurrentWave], dep.CurrentWave+1, len(dep.Waves), next.UTC().Format(time.RFC3339)))
	}
	if !any && dep == nil {
		out = append(out, fmt.Sprintf("no OS release on the %s feed yet", g.OSFeed))
	}
	return out
}

// Explanation answers "why is my device not updating?".
type Explanation struct {
	DeviceID     string              `json:"device_id"`
	DeviceGroup  string              `json:"device_group,omitempty"`
	UpdatePolicy sphere.UpdatePolicy `json:"update_policy,omitempty"`
	OSFeed       sphere.OSFeed       `json:"os_feed,omitempty"`
	Deployment   *sphere.Deployment  `json:"deployment,omitempty"`
	InRollout    bool                `json:"in_rollout"`
	State        string              `json:"state,omitempty"` // the device's state in the deployment
	StateReason  string              `json:"state_reason,omitempty"`
	Offered      []Target            `json:"offered"`
	Reasons      []string            `json:"reasons"`
	// LastCheck is coarse: a check that reports nothing new is recorded
	// only when the stored time is older than CheckRecordInterval (1 h).
	LastCheck *time.Time      `json:"last_check,omitempty"`
	LastError string          `json:"last_error,omitempty"`
	Reported  json.RawMessage `json:"reported,omitempty"`
	CheckNow  bool            `json:"check_now"`
}

// Explain says what the service would offer a device now and why.
func (s *Service) Explain(ctx context.Context, dev sphere.Device) (Explanation, error) {
	ex := Explanation{DeviceID: dev.ID, Offered: []Target{}, Reasons: []string{}}
	st, err := s.st.DeviceUpdateStatus(ctx, dev.ID)
	if err != nil {
		return ex, err
	}
	ex.LastCheck, ex.LastError, ex.CheckNow = st.CheckedAt, st.LastError, st.CheckNow
	if len(st.Reported) > 0 && json.Valid(st.Reported) {
		ex.Reported = st.Reported
	}
	if ex.LastCheck == nil {
		ex.Reasons = append(ex.Reasons, "the device has never checked for updates")
	}
	if dev.DeviceGroupID == "" {
		ex.Reasons = append(ex.Reasons, "the device is in no device group")
		return ex, nil
	}
	ts := s.st.Tenant(dev.TenantID)
	g, err := ts.GetDeviceGroup(ctx, dev.DeviceGroupID)
	if err != nil {
		return ex, err
	}
	ex.DeviceGroup, ex.UpdatePolicy, ex.OSFeed = g.Name, g.UpdatePolicy, g.OSFeed
	targets, dep, err := s.groupTargets(ctx, dev.TenantID, g)
	if err != nil {
		return ex, err
	}
	if dep != nil {
		d, err := s.Advance(ctx, dev.TenantID, *dep)
		if err != nil {
			return ex, err
		}
		dep = &d
		ex.Deployment, ex.InRollout = dep, InRollout(d, dev.ID)
		if u, err := s.st.DeviceUpdate(ctx, dev.ID, d.ID); err == nil {
			ex.State, ex.StateReason = u.State, u.Reason
		}
	}
	for _, t := range targets {
		if g.UpdatePolicy == sphere.PolicyNoUpdates || (g.UpdatePolicy == sphere.PolicyNo3rdPartyAppUpdates && t.Kind == "app" && !t.OSRelease) {
			continue
		}
		if t.OSRelease || (dep != nil && dep.State == sphere.DeploymentActive && ex.InRollout) {
			ex.Offered = append(ex.Offered, t)
		}
	}
	ex.Reasons = append(ex.Reasons, s.reasons(g, dep, ex.InRollout, len(targets) > 0)...)
	if ex.LastError != "" {
		ex.Reasons = append(ex.Reasons, "the device's last update failed: "+ex.LastError)
	}
	return ex, nil
}

// Maintain runs the periodic work of every tenant: rollouts move on (or
// halt when their devices crash more than before), OS
// releases reach the Retail feed, and TUF timestamps stay fresh.
func (s *Service) Maintain(ctx context.Context) error {
	// One tenant's failure must not stop the others' rollouts and, above
	// all, their timestamp refreshes (devices refuse metadata a day old).
	var errs []error
	err := s.st.EachTenant(ctx, store.TenantFilter{}, func(t sphere.Tenant) error {
		if err := s.maintainTenant(ctx, t.ID); err != nil {
			errs = append(errs, fmt.Errorf("tenant %s: %w", t.ID, err))
		}
		return ctx.Err()
	})
	return errors.Join(append(errs, err)...)
}

func (s *Service) maintainTenant(ctx context.Context, tenantID string) error {
	ts := s.st.Tenant(tenantID)
	err := store.Each(func(p store.PageRequest) (sphere.Page[sphere.Deployment], error) {
		return ts.ListDeployments(ctx, "", p)
	},
		func(d sphere.Deployment) error {
			d, err := s.Advance(ctx, tenantID, d)
			if err != nil || d.State != sphere.DeploymentActive {
				return err
			}
			_, err = s.CheckCrashes(ctx, tenantID, d.DeviceGroupID)
			return err
		})
	if err != nil {
		return err
	}
	if err := s.syncTenant(ctx, tenantID, ""); err != nil {
		return err
	}
	// A tenant without device groups has no TUF repository yet: nothing
	// to refresh.
	if _, err := s.tuf.Refresh(ctx, tenantID); err != nil && !errors.Is(err, tufrepo.ErrNotFound) {
		return err
	}
	return nil
}

// ImageAllowed implements verifier.ImageJudge: a device may run an app or
// OS image of its group's current or previous deployment (a rollout not
// yet at the device), of the deployment it last verified (its last
// known-good software, which it keeps after refusing or rolling back
// later ones), or a published OS release.
func (s *Service) ImageAllowed(ctx context.Context, dev sphere.Device, kind, imageID string) (bool, error) {
	if kind == "os" {
		if rel, err := s.st.GetOSRelease(ctx, imageID); err == nil && rel.RetractedAt == nil {
			return true, nil
		} else if err != nil && sphere.ErrorCode(err) != sphere.ENotFound {
			return false, err
		}
	}
	if dev.TenantID == "" || dev.DeviceGroupID == "" {
		return false, nil
	}
	ts := s.st.Tenant(dev.TenantID)
	cur, err := ts.CurrentDeployment(ctx, dev.DeviceGroupID)
	if sphere.ErrorCode(err) == sphere.ENotFound {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	deps := []sphere.Deployment{cur}
	if prev, err := ts.PreviousDeployment(ctx, dev.DeviceGroupID, cur.ID); err == nil {
		deps = append(deps, prev)
	} else if sphere.ErrorCode(err) != sphere.ENotFound {
		return false, err
	}
	for _, d := range deps {
		for _, id := range d.ImageIDs {
			if id == imageID {
				im, err := ts.GetImage(ctx, id)
				return err == nil && im.Kind == kind, err
			}
		}
	}
	// The device's last known-good image: it keeps running it when newer
	// deployments fail their health check or are refused as rollbacks,
	// and must not lose its certificate for that.
	if ok, err := s.st.LastVerifiedHas(ctx, dev.ID, imageID); err != nil || !ok {
		return false, err
	}
	im, err := ts.GetImage(ctx, imageID)
	return err == nil && im.Kind == kind, err
}

// Verified implements verifier.ImageJudge: a device whose healthy
// attestation measured every image of its group's current deployment has
// verifiably installed it.
func (s *Service) Verified(ctx context.Context, dev sphere.Device, imageIDs []string) error {
	if dev.TenantID == "" || dev.DeviceGroupID == "" || len(imageIDs) == 0 {
		return nil
	}
	cur, err := s.st.Tenant(dev.TenantID).CurrentDeployment(ctx, dev.DeviceGroupID)
	if sphere.ErrorCode(err) == sphere.ENotFound {
		return nil
	}
	if err != nil {
		return err
	}
	have := map[string]bool{}
	for _, id := range imageIDs {
		have[id] = true
	}
	for _, id := range cur.ImageIDs {
		if !have[id] {
			return nil
		}
	}
	return s.st.SetDeviceUpdate(ctx, sphere.DeviceUpdate{DeviceID: dev.ID, DeploymentID: cur.ID, State: sphere.UpdateVerified})
}
