//go:build !agentonly

package cli

import (
	"context"
	"crypto/x509"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/opensphere/sphere"
	"github.com/opensphere/sphere/agent"
	"github.com/opensphere/sphere/api"
	"github.com/opensphere/sphere/report"
	"github.com/opensphere/sphere/rot"
)

// TestErrorReportWalkthrough: `sphere agent` reports the unclean end of its
// last run; then the device records an app crash in its queue and uploads
// it, with 2,000 more events, over mutual TLS to `sphere serve`; `sphere
// error-report list` shows the crash and pages through all 2,002 reports,
// `summary` counts them, and `export` streams them as CSV and JSON.
func TestErrorReportWalkthrough(t *testing.T) {
	dir := t.TempDir()
	svc := startService(t, filepath.Join(dir, "sphere-data"), "--failure-report-retention", "720h")
	admin := cli{t: t, config: filepath.Join(dir, "admin.json")}
	admin.run("login", "--server", svc.url, "--ca-file", svc.caFile, "--token", svc.token)
	admin.run("product", "create", "--name", "Thermostat")

	d, stateDir, agentFlags := admin.enrollDevice(svc, dir, "Thermostat/Field Test")

	// `sphere agent` finds that its last run did not stop cleanly, records
	// it, and uploads it on its schedule; a clean stop removes its mark.
	marker := filepath.Join(stateDir, "running")
	os.WriteFile(marker, []byte("then"), 0o600)
	agentCtx, stopAgent := context.WithCancel(context.Background())
	agentDone := make(chan error, 1)
	go func() {
		agentDone <- Run(agentCtx, append([]string{"agent", "--report-interval", "1s", "--admin-socket", "", "--app-socket", ""}, agentFlags...), strings.NewReader(""), io.Discard, io.Discard)
	}()
	var unclean []sphere.FailureReport
	for deadline := time.Now().Add(30 * time.Second); len(unclean) == 0 && time.Now().Before(deadline); {
		time.Sleep(50 * time.Millisecond)
		admin.runJSON(&unclean, "error-report", "list", "--category", "unclean_shutdown", "--device", d.ID)
	}
	stopAgent()
	if err := <-agentDone; err != nil {
		t.Fatalf("sphere agent: %v", err)
	}
	if len(unclean) != 1 || unclean[0].Class != "os" {
		t.Fatalf("unclean shutdowns reported: %+v; want one", unclean)
	}
	if _, err := os.Stat(marker); !os.IsNotExist(err) {
		t.Errorf("sphere agent stopped cleanly but left its running mark: %v", err)
	}

	// The device: its certificate from the attestation, and a queue.
	r, err := rot.OpenSoft(stateDir)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	pemData, _ := os.ReadFile(svc.caFile)
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pemData)
	q, err := report.OpenQueue(report.QueueConfig{Dir: filepath.Join(stateDir, "failure-reports")})
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	ag, err := agent.New(agent.Config{Server: svc.url, StateDir: stateDir, RoT: r, ServerRoots: pool, Reports: q})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	ag.RecordFailure(sphere.FailureEvent{Category: sphere.FailureAppCrash, Description: "killed by SIGSEGV", ComponentID: "blinky", ImageID: "img-7", Version: "7.0", Signal: "SIGSEGV"})
	up, _ := report.NewUploader(report.UploaderConfig{Queue: q, Poster: ag})
	if res, err := up.Upload(ctx); err != nil || res.Accepted != 1 {
		t.Fatalf("upload = %+v, %v", res, err)
	}
	// 2,000 more, in two batches of the largest size.
	now := time.Now().UTC().Add(-time.Minute)
	for b := range 2 {
		var batch api.FailureUpload
		for i := range api.MaxFailureBatch {
			code := 1 + i%2
			batch.Events = append(batch.Events, sphere.FailureEvent{ID: report.NewEventID(), Class: "app", Category: sphere.FailureAppExit,
				Description: fmt.Sprintf("exit code %d", code), ExitCode: &code, Version: "7.0", Count: 1, FirstTime: now, LastTime: now.Add(time.Duration(b) * time.Second)})
		}
		var res api.FailureUploadResult
		if err := ag.Post(ctx, report.UploadPath, batch, &res); err != nil || res.Accepted != api.MaxFailureBatch {
			t.Fatalf("bulk upload = %+v, %v", res, err)
		}
	}

	mustContain(t, "error-report list", admin.run("error-report", "list", "--category", "app_crash", "--device-group", "Thermostat/Field Test"),
		"LAST SEEN", d.ID, "app_crash", "killed by SIGSEGV", "7.0")
	var all []sphere.FailureReport
	admin.runJSON(&all, "error-report", "list", "--since", "1h")
	if len(all) != 2002 {
		t.Fatalf("error-report list shows %d reports; want all 2002", len(all))
	}
	if out := admin.run("error-report", "list", "--until", "2020-01-01T00:00:00Z"); strings.Count(out, "\n") != 1 {
		t.Errorf("a list before any report shows more than the header:\n%s", out)
	}
	summary := admin.run("error-report", "summary", "--by", "category,description")
	mustContain(t, "error-report summary", summary, "CATEGORY", "FAILURES", "app_exit", "exit code 1", "1000", "app_crash", "killed by SIGSEGV")
	var s api.FailureSummary
	admin.runJSON(&s, "error-report", "summary", "--by", "category", "--class", "app")
	if len(s.Rows) != 2 || s.Rows[0].Key["category"] != sphere.FailureAppExit || s.Rows[0].Failures != 2000 || s.Rows[0].Devices != 1 {
		t.Errorf("summary = %+v; want app_exit 2000 first", s.Rows)
	}

	csvFile := filepath.Join(dir, "failures.csv")
	admin.run("error-report", "export", "--destination", csvFile)
	f, _ := os.Open(csvFile)
	rows, err := csv.NewReader(f).ReadAll()
	f.Close()
	if err != nil || len(rows) != 2003 || rows[0][0] != "seq" || rows[1][6] != "unclean_shutdown" || rows[2][6] != "app_crash" || rows[2][12] != "SIGSEGV" {
		t.Fatalf("CSV export: %d rows, %v; first %v", len(rows), err, rows[:min(2, len(rows))])
	}
	var exported []sphere.FailureReport
	if err := json.Unmarshal([]byte(admin.run("error-report", "export", "--format", "json", "--category", "app_exit")), &exported); err != nil || len(exported) != 2000 {
		t.Fatalf("JSON export: %d reports, %v", len(exported), err)
	}
	if out, err := admin.try("error-report", "list", "--category", "meltdown"); err == nil || !strings.Contains(out, "not a failure category") {
		t.Errorf("an unknown category: %v\n%s", err, out)
	}
	if out, err := admin.try("error-report", "export", "--format", "table"); err == nil || !strings.Contains(out, "csv, json") {
		t.Errorf("export as a table: %v\n%s", err, out)
	}
}

// enrollDevice makes a device with a soft root of trust in dir/device,
// registers it, claims it into group ("Product/Group"), allows what it
// measures and attests it, all through the CLI. It returns the device, its
// state dir and the flags that point `sphere agent` at it.
func (c cli) enrollDevice(svc *service, dir, group string) (d sphere.Device, stateDir string, agentFlags []string) {
	c.t.Helper()
	stateDir = filepath.Join(dir, "device")
	record := filepath.Join(dir, "record.json")
	os.WriteFile(record, []byte(c.run("agent", "identity", "--rot", "soft", "--state-dir", stateDir)), 0o644)
	c.runJSON(&d, "device", "register", "--file", record)
	c.run("device", "claim", "--device", d.ID, "--device-group", group)
	agentFlags = []string{"--server", svc.url, "--ca-file", svc.caFile, "--rot", "soft", "--state-dir", stateDir, "--log-level", "error"}
	var events []rot.Event
	c.runJSON(&events, append([]string{"agent", "measurements"}, agentFlags...)...)
	for _, e := range events {
		c.run("measurement", "allow", "--type", e.Type, "--digest", e.Digest, "--name", e.Name)
	}
	c.run(append([]string{"agent", "attest"}, agentFlags...)...)
	return d, stateDir, agentFlags
}
