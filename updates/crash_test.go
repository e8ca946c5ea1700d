package updates

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"strings"
	"testing"
	"time"

	"github.com/opensphere/sphere"
	"github.com/opensphere/sphere/image"
)

// TestCrashingRolloutHalts deploys version 2 over version 1 and lets the
// devices that took it report crashes; the rollout halts by itself when
// they crash clearly more often than the devices still on version 1, and
// not when they crash as often.
func TestCrashingRolloutHalts(t *testing.T) {
	for name, c := range map[string]struct {
		crashNew, crashOld func(devices int) int // how many crash of so many
		halt               bool
	}{
		"new version crashes":      {crashNew: percent(40), crashOld: percent(5), halt: true},
		"both crash alike":         {crashNew: percent(30), crashOld: percent(30), halt: false},
		"one crash is not a trend": {crashNew: func(int) int { return 1 }, crashOld: percent(0), halt: false},
	} {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			f := newFixture(t, 40, "Field Test")
			v1, v2 := f.image(t, image.KindApp, "1.0.0"), f.image(t, image.KindApp, "2.0.0")
			report := func(dev sphere.Device, im sphere.Image) {
				rep := Report{Components: []Component{{ComponentID: im.ComponentID, ImageID: im.ID, Kind: "app", Version: im.Version}}}
				if _, err := f.svc.Check(ctx, dev, rep); err != nil {
					t.Fatal(err)
				}
			}
			opts := RolloutOptions{Waves: []int{50, 100}, Dwell: time.Hour, MinSample: 5}
			if _, err := f.svc.CreateDeployment(ctx, f.ts.ID(), f.group.ID, []string{v1.ID}, opts, "alice"); err != nil {
				t.Fatal(err)
			}
			f.clk.Advance(2 * time.Hour)
			d2, err := f.svc.CreateDeployment(ctx, f.ts.ID(), f.group.ID, []string{v2.ID}, opts, "alice")
			if err != nil || d2.CrashRatioPercent != DefaultCrashRatioPercent {
				t.Fatalf("deployment = %+v, %v; want the default crash ratio", d2, err)
			}
			f.clk.Advance(time.Minute)
			var onNew, onOld []sphere.Device
			for _, dev := range f.devices {
				if InRollout(d2, dev.ID) {
					report(dev, v2)
					onNew = append(onNew, dev)
				} else {
					report(dev, v1)
					onOld = append(onOld, dev)
				}
			}
			if len(onNew) < 5 || len(onOld) < 5 {
				t.Fatalf("the rollout reached %d of 40 devices; the test needs more on each side", len(onNew))
			}
			crash := func(devs []sphere.Device, im sphere.Image) {
				for _, dev := range devs {
					id := make([]byte, 16)
					rand.Read(id)
					now := f.clk.Now()
					ev := sphere.FailureEvent{ID: hex.EncodeToString(id), Class: "app", Category: sphere.FailureAppCrash, Description: "signal SIGSEGV",
						ImageID: im.ID, Version: im.Version, Count: 3, FirstTime: now, LastTime: now}
					if _, err := f.st.AddFailureReports(ctx, dev, []sphere.FailureEvent{ev}); err != nil {
						t.Fatal(err)
					}
				}
			}
			crash(onNew[:c.crashNew(len(onNew))], v2)
			crash(onOld[:c.crashOld(len(onOld))], v1)
			if err := f.svc.Maintain(ctx); err != nil {
				t.Fatal(err)
			}
			dep, _ := f.ts.GetDeployment(ctx, d2.ID)
			halted := dep.State == sphere.DeploymentHalted
			if halted != c.halt {
				t.Fatalf("deployment is %s (%q); want halted %v", dep.State, dep.StateReason, c.halt)
			}
			if halted && !strings.Contains(dep.StateReason, "crashed") {
				t.Errorf("halt reason %q does not say the devices crashed", dep.StateReason)
			}
			if halted {
				if res, _ := f.svc.Check(ctx, onOld[0], Report{}); len(res.Targets) != 0 {
					t.Errorf("a halted rollout still offers version 2")
				}
			}
		})
	}
}

// percent returns a function that gives p % of n, rounded up.
func percent(p int) func(n int) int { return func(n int) int { return (n*p + 99) / 100 } }

func TestCrashRatioSetting(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, 1, "Field Test")
	im := f.image(t, image.KindApp, "1.0.0")
	if _, err := f.svc.CreateDeployment(ctx, f.ts.ID(), f.group.ID, []string{im.ID}, RolloutOptions{CrashRatioPercent: 50}, "alice"); sphere.ErrorCode(err) != sphere.EInvalid {
		t.Errorf("a crash ratio of 50 %%: %v; want invalid", err)
	}
	d, err := f.svc.CreateDeployment(ctx, f.ts.ID(), f.group.ID, []string{im.ID}, RolloutOptions{CrashRatioPercent: -1}, "alice")
	if err != nil || d.CrashRatioPercent != 0 {
		t.Errorf("turned off: %+v, %v", d, err)
	}
}
