package updates

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"time"

	"github.com/opensphere/sphere"
)

// Rollout defaults: waves of 1 %, 10 %, 50 % and 100 % of the group, a day
// between waves, and a halt when more than 5 % of the devices that finished
// failed or rolled back, once at least 5 finished.
var (
	DefaultWaves           = []int{1, 10, 50, 100}
	DefaultDwell           = 24 * time.Hour
	DefaultFailurePermille = 50
	DefaultMinSample       = 5
)

// ValidateRollout checks rollout settings.
func ValidateRollout(waves []int, dwell time.Duration, failurePermille, minSample int) error {
	if len(waves) == 0 || len(waves) > 20 {
		return sphere.Errorf(sphere.EInvalid, "waves must list 1 to 20 cumulative percentages ending at 100, e.g. 1,10,50,100")
	}
	prev := 0
	for _, w := range waves {
		if w <= prev || w > 100 {
			return sphere.Errorf(sphere.EInvalid, "waves must rise strictly from above 0 to 100, got %v", waves)
		}
		prev = w
	}
	if prev != 100 {
		return sphere.Errorf(sphere.EInvalid, "the last wave must be 100 %%, got %v", waves)
	}
	if dwell < 0 || dwell > 90*24*time.Hour {
		return sphere.Errorf(sphere.EInvalid, "dwell must be between 0 and 90 days")
	}
	if failurePermille < 0 || failurePermille > 1000 {
		return sphere.Errorf(sphere.EInvalid, "failure threshold must be between 0 and 1000 per mille")
	}
	if minSample < 1 || minSample > 1000000 {
		return sphere.Errorf(sphere.EInvalid, "minimum sample must be at least 1")
	}
	return nil
}

// Bucket places a device in a deployment's rollout: 0 to 9999, from a hash
// of both ids, so that each deployment reaches a different 1 % first and a
// device keeps its place for the life of a deployment.
func Bucket(deploymentID, deviceID string) int {
	h := sha256.Sum256([]byte(deploymentID + "\x00" + deviceID))
	return int(binary.BigEndian.Uint64(h[:8]) % 10000)
}

// InRollout reports whether the waves released so far reach the device.
func InRollout(d sphere.Deployment, deviceID string) bool {
	if d.CurrentWave < 0 || d.CurrentWave >= len(d.Waves) {
		return false
	}
	return Bucket(d.ID, deviceID) < d.Waves[d.CurrentWave]*100
}

// Step is the next state of a rollout, given how its devices fared and the
// time: it halts by itself when the failure ratio crosses the threshold,
// and releases the next wave once the current one has dwelt long enough.
type Step struct {
	Changed     bool
	State       string
	Reason      string
	Wave        int
	WaveStarted time.Time
}

// NextStep computes a deployment's next step. counts are its devices by
// update state.
func NextStep(d sphere.Deployment, counts map[string]int, now time.Time) Step {
	st := Step{State: d.State, Reason: d.StateReason, Wave: d.CurrentWave, WaveStarted: d.WaveStartedAt}
	if d.State != sphere.DeploymentActive {
		return st
	}
	failed := counts[sphere.UpdateFailed] + counts[sphere.UpdateRolledBack]
	finished := failed + counts[sphere.UpdateInstalled] + counts[sphere.UpdateVerified]
	if finished >= d.MinSample && failed*1000 > d.FailurePermille*finished {
		st.Changed, st.State = true, sphere.DeploymentHalted
		st.Reason = fmt.Sprintf("halted by itself in wave %d (%d %%): %d of %d devices that finished failed or rolled back (%d‰, threshold %d‰)",
			d.CurrentWave+1, d.Waves[d.CurrentWave], failed, finished, failed*1000/finished, d.FailurePermille)
		return st
	}
	if d.CurrentWave < len(d.Waves)-1 && !now.Before(d.WaveStartedAt.Add(time.Duration(d.DwellSeconds)*time.Second)) {
		st.Changed, st.Wave, st.WaveStarted = true, d.CurrentWave+1, now
	}
	return st
}
