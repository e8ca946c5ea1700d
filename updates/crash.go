package updates

import (
	"context"
	"fmt"

	"github.com/opensphere/sphere"
)

// DefaultCrashRatioPercent halts a rollout whose devices crash more than
// twice as often as those still on the previous deployment.
const DefaultCrashRatioPercent = 200

// minCrashingDevices is the fewest crashing devices on a new deployment
// that can halt it: one device's crash is not a trend.
const minCrashingDevices = 2

// CheckCrashes halts a group's current rollout by itself when its devices
// crash clearly more often than the devices still on the previous
// deployment, in the same window (since the rollout started). A crash is a
// failure report of a crash category (sphere.CrashCategories) on an image
// that only one of the two deployments has. The comparison waits until at
// least the deployment's MinSample devices run it and two of them crashed.
// It returns whether it halted the rollout.
func (s *Service) CheckCrashes(ctx context.Context, tenantID, groupID string) (bool, error) {
	ts := s.st.Tenant(tenantID)
	cur, err := ts.CurrentDeployment(ctx, groupID)
	if sphere.ErrorCode(err) == sphere.ENotFound {
		return false, nil
	}
	if err != nil || cur.State != sphere.DeploymentActive || cur.CrashRatioPercent <= 0 {
		return false, err
	}
	prev, err := ts.PreviousDeployment(ctx, groupID, cur.ID)
	if sphere.ErrorCode(err) == sphere.ENotFound {
		return false, nil // nothing to compare with
	}
	if err != nil {
		return false, err
	}
	newOnly, oldOnly := difference(cur.ImageIDs, prev.ImageIDs), difference(prev.ImageIDs, cur.ImageIDs)
	if len(newOnly) == 0 {
		return false, nil
	}
	counts, err := s.st.UpdateCounts(ctx, cur.ID, cur.CreatedAt)
	if err != nil {
		return false, err
	}
	onNew := counts[sphere.UpdateInstalled] + counts[sphere.UpdateVerified]
	total, err := ts.GroupDeviceCount(ctx, groupID)
	if err != nil {
		return false, err
	}
	onOld := max(total-onNew, 1)
	if onNew < cur.MinSample {
		return false, nil
	}
	crashNew, err := ts.CrashingDevices(ctx, groupID, newOnly, cur.CreatedAt)
	if err != nil || crashNew < minCrashingDevices {
		return false, err
	}
	crashOld, err := ts.CrashingDevices(ctx, groupID, oldOnly, cur.CreatedAt)
	if err != nil {
		return false, err
	}
	// rateNew > ratio × rateOld, in integers: crashNew/onNew > r/100 × crashOld/onOld.
	if int64(crashNew)*int64(onOld)*100 <= int64(cur.CrashRatioPercent)*int64(crashOld)*int64(onNew) {
		return false, nil
	}
	reason := fmt.Sprintf("halted by itself in wave %d (%d %%): %d of %d devices on this deployment crashed (%d %%) against %d of %d on the previous one (%d %%); threshold %d.%02dx the previous rate",
		cur.CurrentWave+1, cur.Waves[cur.CurrentWave], crashNew, onNew, crashNew*100/onNew, crashOld, onOld, crashOld*100/onOld,
		cur.CrashRatioPercent/100, cur.CrashRatioPercent%100)
	changed, err := ts.UpdateRollout(ctx, cur.ID, sphere.DeploymentActive, sphere.DeploymentHalted, reason, cur.CurrentWave, cur.WaveStartedAt)
	if err != nil || !changed {
		return false, err
	}
	s.log.Warn("rollout halted", "tenant", tenantID, "deployment", cur.ID, "reason", reason)
	return true, nil
}

// difference returns the ids in a that are not in b.
func difference(a, b []string) []string {
	in := map[string]bool{}
	for _, id := range b {
		in[id] = true
	}
	var out []string
	for _, id := range a {
		if !in[id] {
			out = append(out, id)
		}
	}
	return out
}
