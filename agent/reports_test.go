package agent

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/opensphere/sphere"
	"github.com/opensphere/sphere/api"
	"github.com/opensphere/sphere/report"
	"github.com/opensphere/sphere/store"
)

// newReportingDevice is newDevice with a failure-report queue in its state
// dir.
func (svc *service) newReportingDevice(t *testing.T, dir string) (*device, *report.Queue) {
	t.Helper()
	q, err := report.OpenQueue(report.QueueConfig{Dir: filepath.Join(dir, "failure-reports"), Now: svc.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { q.Close() })
	r := roots[0].open(t, dir)
	a, err := New(Config{Server: svc.url, StateDir: dir, RoT: r, ServerRoots: svc.roots, Now: svc.clock.Now,
		Logger: slog.New(slog.NewTextHandler(testWriter{t}, nil)), Reports: q})
	if err != nil {
		t.Fatal(err)
	}
	return &device{rot: r, agent: a, dir: dir}, q
}

// reportsOf lists every failure report the service holds for a device.
func (svc *service) reportsOf(t *testing.T, deviceID string) []sphere.FailureReport {
	t.Helper()
	var out []sphere.FailureReport
	err := store.Each(func(p store.PageRequest) (sphere.Page[sphere.FailureReport], error) {
		return svc.tenant.ListFailureReports(context.Background(), store.FailureFilter{DeviceID: deviceID}, p)
	}, func(r sphere.FailureReport) error { out = append(out, r); return nil })
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestFailureReportsEndToEnd: an app crash and exit, an unclean shutdown
// found at start and a refused attestation are recorded on the device,
// uploaded over mutual TLS by the uploader, and stored by the service in
// the device's group, visible in the list and the summary.
func TestFailureReportsEndToEnd(t *testing.T) {
	svc := startService(t)
	dir := t.TempDir()
	d, q := svc.newReportingDevice(t, dir)
	svc.enroll(t, d, "Field Test")
	ctx := context.Background()

	// A refused attestation: the measurements are not allowed yet.
	ms, _ := svc.tenant.ListMeasurements(ctx, storePage())
	for _, m := range ms.Items {
		if err := svc.tenant.RemoveMeasurement(ctx, m.ID); err != nil {
			t.Fatal(err)
		}
	}
	d.agent.Measure()
	_, err := d.agent.Attest(ctx)
	var ae *AttestError
	if !errors.As(err, &ae) || ae.Result.Result != sphere.AttestRefused {
		t.Fatalf("attest with unknown software: %v; want refused", err)
	}
	svc.allow(t, d, sphere.MeasurementAllowed)
	if _, err := d.agent.Attest(ctx); err != nil {
		t.Fatal(err)
	}

	// The last run of the agent did not stop cleanly.
	os.WriteFile(filepath.Join(dir, runningMarker), []byte("then"), 0o600)
	rep, err := d.agent.StartReports(ctx, ReportOptions{Interval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	code := 3
	for range 3 { // coalesced into one event of count 3
		d.agent.RecordFailure(sphere.FailureEvent{Category: sphere.FailureAppCrash, Description: "killed by SIGSEGV", ComponentID: "blinky", ImageID: "img-2", Version: "2.0", Signal: "SIGSEGV"})
	}
	d.agent.RecordFailure(sphere.FailureEvent{Category: sphere.FailureAppExit, Description: "exit code 3", ComponentID: "blinky", ImageID: "img-2", Version: "2.0", ExitCode: &code})
	rep.Flush()
	deadline := time.Now().Add(30 * time.Second)
	for q.Stats().Events > 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if st := q.Stats(); st.Events > 0 {
		t.Fatalf("the queue still holds %d events after a flush", st.Events)
	}
	rep.Stop()
	if _, err := os.Stat(filepath.Join(dir, runningMarker)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a clean stop left the running mark: %v", err)
	}

	got := map[string]sphere.FailureReport{}
	for _, r := range svc.reportsOf(t, d.agent.DeviceID()) {
		got[r.Category] = r
		if r.DeviceGroupID != svc.groups["Field Test"].ID || r.TenantID != svc.tenant.ID() {
			t.Errorf("report %+v is not in the device's tenant and group", r)
		}
	}
	if len(got) != 4 {
		t.Fatalf("the service holds %v; want a crash, an exit, an unclean shutdown and a refusal", keys(got))
	}
	if c := got[sphere.FailureAppCrash]; c.Count != 3 || c.Signal != "SIGSEGV" || c.Class != sphere.FailureClassApp || c.ImageID != "img-2" {
		t.Errorf("crash = %+v; want 3 SIGSEGVs of img-2", c)
	}
	if e := got[sphere.FailureAppExit]; e.ExitCode == nil || *e.ExitCode != 3 {
		t.Errorf("exit = %+v; want exit code 3", e)
	}
	if r := got[sphere.FailureAttestRefused]; !strings.Contains(r.Description, "unknown_software") || r.Class != sphere.FailureClassOS {
		t.Errorf("refusal = %+v; want the reason", r)
	}
	rows, _, err := svc.tenant.SummarizeFailureReports(ctx, store.FailureFilter{Class: sphere.FailureClassApp}, []string{"category", "version"}, 10)
	if err != nil || len(rows) != 2 || rows[0].Key[0] != sphere.FailureAppCrash || rows[0].Failures != 3 || rows[0].Devices != 1 {
		t.Errorf("summary = %+v, %v; want the crash (3) first, then the exit", rows, err)
	}

	// A new run after a clean stop records no unclean shutdown.
	rep, _ = d.agent.StartReports(ctx, ReportOptions{Interval: time.Hour})
	defer rep.Stop()
	if n := q.Stats().Events; n != 0 {
		t.Errorf("a start after a clean stop recorded %d events", n)
	}
}

func keys[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

// lossyPoster delivers the batch to the service and then loses the
// answer, as a dropped connection would.
type lossyPoster struct{ a *Agent }

func (p lossyPoster) Post(ctx context.Context, path string, in, out any) error {
	if err := p.a.Post(ctx, path, in, out); err != nil {
		return err
	}
	return errors.New("connection reset by peer (the answer was lost)")
}

// TestFailureUploadIdempotent: a batch whose answer was lost stays queued
// and is sent again with the same event ids; the service counts it once.
// The same batch posted twice is accepted once and reported as
// duplicates the second time.
func TestFailureUploadIdempotent(t *testing.T) {
	svc := startService(t)
	d, q := svc.newReportingDevice(t, t.TempDir())
	svc.enroll(t, d, "Field Test")
	ctx := context.Background()
	d.agent.Measure()
	if _, err := d.agent.Attest(ctx); err != nil {
		t.Fatal(err)
	}
	for i := range 30 {
		d.agent.RecordFailure(sphere.FailureEvent{Category: sphere.FailureAppExit, Description: "exit code " + string(rune('a'+i%26)) + strings.Repeat("!", i/26)})
	}
	lossy, err := report.NewUploader(report.UploaderConfig{Queue: q, Poster: lossyPoster{d.agent}, BatchSize: 20})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := lossy.Upload(ctx); err == nil {
		t.Fatal("an upload whose answer was lost succeeded")
	}
	if n := q.Stats().Events; n != 30 {
		t.Fatalf("after a lost answer the queue holds %d events; want all 30", n)
	}
	if n := len(svc.reportsOf(t, d.agent.DeviceID())); n != 20 {
		t.Fatalf("the service holds %d reports; want the first batch of 20", n)
	}
	up, _ := report.NewUploader(report.UploaderConfig{Queue: q, Poster: d.agent, BatchSize: 20})
	res, err := up.Upload(ctx)
	if err != nil || res.Accepted != 10 || res.Duplicates != 20 {
		t.Fatalf("upload again = %+v, %v; want 10 new and 20 duplicates", res, err)
	}
	reps := svc.reportsOf(t, d.agent.DeviceID())
	var total int64
	for _, r := range reps {
		total += r.Count
	}
	if len(reps) != 30 || total != 30 {
		t.Fatalf("the service holds %d reports of %d failures; want 30 of 30", len(reps), total)
	}

	// The same batch twice, straight.
	ev := sphere.FailureEvent{ID: report.NewEventID(), Class: "os", Category: sphere.FailureUpdateFailed, Description: "no space left",
		Count: 1, FirstTime: svc.clock.Now().UTC(), LastTime: svc.clock.Now().UTC()}
	for i, want := range []api.FailureUploadResult{{Accepted: 1}, {Duplicates: 1}} {
		var got api.FailureUploadResult
		if err := d.agent.Post(ctx, report.UploadPath, api.FailureUpload{Events: []sphere.FailureEvent{ev}}, &got); err != nil || got != want {
			t.Errorf("post %d = %+v, %v; want %+v", i+1, got, err, want)
		}
	}
	if n := len(svc.reportsOf(t, d.agent.DeviceID())); n != 31 {
		t.Errorf("the service holds %d reports; want 31", n)
	}
}

// TestFailureUploadRefused: a batch with one bad event is refused with a
// clear error and nothing of it is stored; a device without a certificate
// is refused too.
func TestFailureUploadRefused(t *testing.T) {
	svc := startService(t)
	d, _ := svc.newReportingDevice(t, t.TempDir())
	svc.enroll(t, d, "Field Test")
	ctx := context.Background()
	now := svc.clock.Now().UTC()
	good := sphere.FailureEvent{ID: report.NewEventID(), Class: "app", Category: sphere.FailureAppCrash, Description: "SIGABRT", Count: 1, FirstTime: now, LastTime: now}
	var se *ServiceError
	if err := d.agent.Post(ctx, report.UploadPath, api.FailureUpload{Events: []sphere.FailureEvent{good}}, nil); !errors.As(err, &se) || se.Status != 401 {
		t.Errorf("upload before attesting: %v; want 401", err)
	}
	d.agent.Measure()
	if _, err := d.agent.Attest(ctx); err != nil {
		t.Fatal(err)
	}
	bad := good
	bad.ID, bad.Category = report.NewEventID(), "meltdown"
	future := good
	future.ID, future.LastTime = report.NewEventID(), now.Add(72*time.Hour)
	for name, c := range map[string]struct {
		events []sphere.FailureEvent
		want   string
	}{
		"unknown category": {[]sphere.FailureEvent{good, bad}, "category"},
		"in the future":    {[]sphere.FailureEvent{good, future}, "not in the future"},
		"given twice":      {[]sphere.FailureEvent{good, good}, "given twice"},
	} {
		err := d.agent.Post(ctx, report.UploadPath, api.FailureUpload{Events: c.events}, nil)
		if !errors.As(err, &se) || se.Status != 400 || !strings.Contains(se.Message, c.want) {
			t.Errorf("%s: %v; want 400 saying %q", name, err, c.want)
		}
	}
	if n := len(svc.reportsOf(t, d.agent.DeviceID())); n != 0 {
		t.Errorf("refused uploads stored %d reports", n)
	}
}

// TestRecordPanic: a panic is recorded, on disk, before it goes on.
func TestRecordPanic(t *testing.T) {
	svc := startService(t)
	d, q := svc.newReportingDevice(t, t.TempDir())
	func() {
		defer func() {
			if r := recover(); r != "boom" {
				t.Errorf("recovered %v; want the panic to go on", r)
			}
		}()
		defer d.agent.RecordPanic()
		panic("boom")
	}()
	b, _ := q.Pending(10)
	if len(b.Events) != 1 || b.Events[0].Category != sphere.FailureAgentPanic || !strings.Contains(b.Events[0].Description, "panic: boom") {
		t.Errorf("queue = %+v; want the panic", b.Events)
	}
}

// TestUploadWhenHalfFull: the uploader does not wait for its daily round
// when the queue passes half full.
func TestUploadWhenHalfFull(t *testing.T) {
	svc := startService(t)
	dir := t.TempDir()
	q, err := report.OpenQueue(report.QueueConfig{Dir: filepath.Join(dir, "failure-reports"), MaxEvents: 4})
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	d := svc.newDevice(t, roots[0].open(t, dir), dir)
	d.agent.cfg.Reports = q
	svc.enroll(t, d, "Field Test")
	d.agent.Measure()
	ctx := context.Background()
	if _, err := d.agent.Attest(ctx); err != nil {
		t.Fatal(err)
	}
	rep, err := d.agent.StartReports(ctx, ReportOptions{Interval: 24 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer rep.Stop()
	d.agent.RecordFailure(sphere.FailureEvent{Category: sphere.FailureUpdateFailed, Description: "no space left on device"})
	time.Sleep(100 * time.Millisecond) // a quarter full: no upload
	if n := len(svc.reportsOf(t, d.agent.DeviceID())); n != 0 {
		t.Fatalf("a quarter-full queue was uploaded (%d reports)", n)
	}
	d.agent.RecordFailure(sphere.FailureEvent{Category: sphere.FailureUpdateRolledBack, Description: "health check failed"})
	deadline := time.Now().Add(30 * time.Second)
	for len(svc.reportsOf(t, d.agent.DeviceID())) < 2 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if n := len(svc.reportsOf(t, d.agent.DeviceID())); n != 2 {
		t.Fatalf("the service holds %d reports after the queue passed half full; want 2", n)
	}
}
