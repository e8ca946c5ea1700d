package cli

import (
	"path/filepath"
	"testing"

	"github.com/opensphere/sphere/sim"
)

// TestSimSmall runs the simulator against `sphere serve` with a few hundred
// devices and checks correctness only: every device enrolled and
// certified, zero errors. No test asserts a speed.
func TestSimSmall(t *testing.T) {
	dir := t.TempDir()
	svc := startService(t, filepath.Join(dir, "sphere-data"))
	admin := cli{t: t, config: filepath.Join(dir, "admin.json")}
	admin.run("login", "--server", svc.url, "--ca-file", svc.caFile, "--token", svc.token)
	for _, sc := range []string{sim.ScenarioStorm, sim.ScenarioUpdateCheck} {
		t.Run(sc, func(t *testing.T) {
			var rep sim.Report
			admin.runJSON(&rep, "sim", "--devices", "200", "--scenario", sc, "--concurrency", "16", "--dir", t.TempDir())
			if rep.Certified != 200 {
				t.Errorf("%d of 200 devices certified", rep.Certified)
			}
			for _, o := range rep.Ops {
				if o.Errors != 0 || o.Count != 200 {
					t.Errorf("%s: %d ok, %d errors %v; want 200 and none", o.Name, o.Count, o.Errors, o.ErrorKinds)
				}
			}
		})
	}
}
