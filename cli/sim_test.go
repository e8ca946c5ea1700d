//go:build !agentonly

package cli

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/opensphere/sphere"
	"github.com/opensphere/sphere/sim"
)

// TestSimSmall runs the simulator against `sphere serve` with a few hundred
// devices and checks correctness only: every device enrolled and
// certified, zero errors. No test asserts a speed.
func TestSimSmall(t *testing.T) {
	// Idle connections are parked after 200 ms: the idle scenario's
	// second round finds every connection parked and wakes it.
	admin := loggedIn(t, t.TempDir(), "--park-idle-after", "200ms")
	const checkWrites = "update-check --check-writes"
	for _, name := range []string{sim.ScenarioStorm, sim.ScenarioUpdateCheck, checkWrites, sim.ScenarioIdle} {
		t.Run(name, func(t *testing.T) {
			sc, _, _ := strings.Cut(name, " ")
			args := []string{"sim", "--devices", "200", "--scenario", sc, "--concurrency", "16", "--dir", t.TempDir(),
				"--server-pid", strconv.Itoa(os.Getpid()), "--source-addrs", "127.0.0.1-127.0.0.3"}
			if sc == sim.ScenarioIdle {
				args = append(args, "--duration", "1s") // the hold; elsewhere it would repeat the round
			}
			if name == checkWrites {
				args = append(args, "--check-writes") // every check recorded by the service
			}
			var rep sim.Report
			admin.runJSON(&rep, args...)
			if rep.Certified != 200 {
				t.Errorf("%d of 200 devices certified", rep.Certified)
			}
			for _, o := range rep.Ops {
				if o.Errors != 0 || o.Count != 200 {
					t.Errorf("%s: %d ok, %d errors %v; want 200 and none", o.Name, o.Count, o.Errors, o.ErrorKinds)
				}
			}
			if rep.SourceAddrs != 3 || rep.Server == nil || rep.Server.After.RSS == 0 {
				t.Errorf("report: %d source addresses, service use %+v", rep.SourceAddrs, rep.Server)
			}
			if sc == sim.ScenarioIdle && (rep.Idle == nil || rep.Idle.Kept != 200 || rep.Idle.At100k == 0) {
				t.Errorf("idle: %+v; want 200 connections kept open", rep.Idle)
			}
		})
	}
	// One device assembles version 2 of an image from version 1's chunks:
	// it fetches something, and less than the whole package.
	var rep sim.Report
	admin.runJSON(&rep, "sim", "--scenario", "delta", "--delta-mib", "4", "--delta-places", "4", "--dir", t.TempDir())
	if d := rep.Delta; d == nil || d.Transferred <= 0 || d.Transferred >= d.PackageBytes || rep.Certified != 1 {
		t.Errorf("delta: %+v, %d certified", rep.Delta, rep.Certified)
	}
	for _, o := range rep.Ops {
		if o.Errors != 0 || o.Count != 1 {
			t.Errorf("delta %s: %d ok, %d errors %v", o.Name, o.Count, o.Errors, o.ErrorKinds)
		}
	}

	// Failure-report ingest: every queued event is stored, once.
	rep = sim.Report{}
	admin.runJSON(&rep, "sim", "--scenario", "reports", "--devices", "20", "--report-events", "60", "--dir", t.TempDir())
	if r := rep.Reports; r == nil || r.Events != 1200 || r.Accepted != 1200 || r.Duplicates != 0 {
		t.Errorf("reports: %+v; want 1200 events stored once", rep.Reports)
	}
	for _, o := range rep.Ops {
		if o.Errors != 0 || o.Count != 20 {
			t.Errorf("reports %s: %d ok, %d errors %v", o.Name, o.Count, o.Errors, o.ErrorKinds)
		}
	}
	var list []sphere.FailureReport
	admin.runJSON(&list, "error-report", "list", "--format", "json")
	if len(list) < 1200 {
		t.Errorf("error-report list shows %d reports; want the 1200 uploaded", len(list))
	}
}

func TestParseSourceAddrs(t *testing.T) {
	for in, want := range map[string]int{"127.0.0.1": 1, "127.0.0.1-127.0.0.20": 20, "127.0.0.1, 127.0.1.1": 2, "127.0.0.250-127.0.1.5": 12} {
		if got, err := sim.ParseSourceAddrs(in); err != nil || len(got) != want {
			t.Errorf("ParseSourceAddrs(%q) = %v, %v; want %d addresses", in, got, err, want)
		}
	}
	for _, in := range []string{"", "10.0.0.1", "::1", "127.0.0.9-127.0.0.1", "127.0.0.1-10.0.0.1", "localhost", "127.0.0.0-127.0.2.0"} {
		if _, err := sim.ParseSourceAddrs(in); err == nil {
			t.Errorf("ParseSourceAddrs(%q) accepted it", in)
		}
	}
}

// loggedIn starts `sphere serve` with its data in dir and returns the CLI
// logged in as its first operator.
func loggedIn(t *testing.T, dir string, serveFlags ...string) cli {
	svc := startService(t, filepath.Join(dir, "sphere-data"), serveFlags...)
	admin := cli{t: t, config: filepath.Join(dir, "admin.json")}
	admin.run("login", "--server", svc.url, "--ca-file", svc.caFile, "--token", svc.token)
	return admin
}
