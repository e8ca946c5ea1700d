package updates

import (
	"strings"
	"testing"
	"time"

	"github.com/opensphere/sphere"
)

func TestBucketSpreads(t *testing.T) {
	// A thousand devices: about 1 % in the first wave, 10 % by the second.
	d := sphere.Deployment{ID: "dep-1", Waves: []int{1, 10, 50, 100}}
	in := make([]int, len(d.Waves))
	for i := 0; i < 10000; i++ {
		id := strings.Repeat("0", 56) + time.Duration(i).String()
		for w := range d.Waves {
			d.CurrentWave = w
			if InRollout(d, id) {
				in[w]++
			}
		}
	}
	for w, want := range []int{100, 1000, 5000, 10000} {
		if lo, hi := want*8/10, want*12/10; in[w] < lo || in[w] > hi {
			t.Errorf("wave %d reaches %d of 10000 devices; want about %d", w, in[w], want)
		}
	}
	if in[3] != 10000 {
		t.Errorf("the last wave reaches %d of 10000", in[3])
	}
}

func TestNextStep(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	d := sphere.Deployment{ID: "d", State: sphere.DeploymentActive, Waves: []int{1, 10, 100}, DwellSeconds: 3600,
		FailurePermille: 100, MinSample: 5, WaveStartedAt: t0}
	cases := []struct {
		name      string
		d         func(sphere.Deployment) sphere.Deployment
		counts    map[string]int
		now       time.Time
		wantState string
		wantWave  int
	}{
		{"waits while the wave dwells", nil, nil, t0.Add(59 * time.Minute), sphere.DeploymentActive, 0},
		{"advances after the dwell", nil, map[string]int{sphere.UpdateVerified: 3}, t0.Add(time.Hour), sphere.DeploymentActive, 1},
		{"stays on the last wave", func(d sphere.Deployment) sphere.Deployment { d.CurrentWave = 2; return d }, nil, t0.Add(99 * time.Hour), sphere.DeploymentActive, 2},
		{"too few finished to judge", nil, map[string]int{sphere.UpdateFailed: 4}, t0.Add(time.Minute), sphere.DeploymentActive, 0},
		{"halts over the threshold", nil, map[string]int{sphere.UpdateFailed: 1, sphere.UpdateRolledBack: 1, sphere.UpdateVerified: 8}, t0.Add(2 * time.Hour), sphere.DeploymentHalted, 0},
		{"at the threshold goes on", nil, map[string]int{sphere.UpdateRolledBack: 1, sphere.UpdateInstalled: 9}, t0.Add(2 * time.Hour), sphere.DeploymentActive, 1},
		{"paused does not move", func(d sphere.Deployment) sphere.Deployment { d.State = sphere.DeploymentPaused; return d }, nil, t0.Add(9 * time.Hour), sphere.DeploymentPaused, 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dd := d
			if c.d != nil {
				dd = c.d(dd)
			}
			st := NextStep(dd, c.counts, c.now)
			if st.State != c.wantState || st.Wave != c.wantWave {
				t.Fatalf("got %s wave %d (%s); want %s wave %d", st.State, st.Wave, st.Reason, c.wantState, c.wantWave)
			}
			if st.State == sphere.DeploymentHalted && !strings.Contains(st.Reason, "2 of 10 devices") {
				t.Errorf("halt reason %q does not say why", st.Reason)
			}
		})
	}
}

func TestValidateRollout(t *testing.T) {
	for _, w := range [][]int{{100}, {1, 10, 50, 100}} {
		if err := ValidateRollout(w, time.Hour, 50, 5); err != nil {
			t.Errorf("%v: %v", w, err)
		}
	}
	for _, w := range [][]int{{}, {50}, {10, 5, 100}, {0, 100}, {10, 10, 100}, {50, 101}} {
		if err := ValidateRollout(w, time.Hour, 50, 5); sphere.ErrorCode(err) != sphere.EInvalid {
			t.Errorf("%v: %v; want invalid", w, err)
		}
	}
}
