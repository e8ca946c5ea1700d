package agent

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/opensphere/sphere"
	"github.com/opensphere/sphere/bootloader"
	"github.com/opensphere/sphere/image"
	"github.com/opensphere/sphere/localapi"
	"github.com/opensphere/sphere/report"
	"github.com/opensphere/sphere/rot"
	"github.com/opensphere/sphere/supervisor"
	"github.com/opensphere/sphere/updates"
)

const testApp = "6f0e2b1c-3d4a-4b5c-8d9e-0a1b2c3d4e5f"

// appTar is an app payload: bin/app, a shell script with body.
func appTar(t testing.TB, body string) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	script := "#!/bin/sh\n" + body + "\n"
	for _, h := range []*tar.Header{
		{Name: "bin/", Typeflag: tar.TypeDir, Mode: 0o755, Format: tar.FormatPAX},
		{Name: "bin/app", Typeflag: tar.TypeReg, Mode: 0o755, Size: int64(len(script)), Format: tar.FormatPAX},
	} {
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if h.Typeflag == tar.TypeReg {
			tw.Write([]byte(script))
		}
	}
	tw.Close()
	return buf.Bytes()
}

// packApp makes a signed app package.
func packApp(t testing.TB, signer *ecdsa.PrivateKey, version string, secver uint32, body string, deferral bool) []byte {
	t.Helper()
	var buf bytes.Buffer
	m := &image.AppManifest{SchemaVersion: 1, Name: "blinky", ComponentId: testApp, EntryPoint: "/bin/app"}
	m.Capabilities.SoftwareUpdateDeferral = deferral
	md := image.Metadata{Kind: image.KindApp, ComponentID: testApp, Name: "blinky", Version: version, SecurityVersion: secver,
		BuildTime: time.Now(), AppManifest: m}
	if _, err := image.Pack(&buf, md, bytes.NewReader(appTar(t, body)), signer); err != nil {
		t.Fatalf("image.Pack: %v", err)
	}
	return buf.Bytes()
}

// publisher registers a new publisher key with the test tenant.
func (svc *service) publisher(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, _ := x509.MarshalPKIXPublicKey(&k.PublicKey)
	if _, err := svc.upd.AddPublisherKey(context.Background(), svc.tenant.ID(), "CI", der); err != nil {
		t.Fatal(err)
	}
	return k
}

// deploy uploads a package and deploys it to the whole group.
func (svc *service) deploy(t testing.TB, group string, pkg []byte) (sphere.Image, sphere.Deployment) {
	t.Helper()
	ctx := context.Background()
	im, err := svc.upd.AddImage(ctx, svc.tenant.ID(), "alice", bytes.NewReader(pkg))
	if err != nil {
		t.Fatal(err)
	}
	dep, err := svc.upd.CreateDeployment(ctx, svc.tenant.ID(), svc.groups[group].ID, []string{im.ID}, updates.RolloutOptions{Waves: []int{100}}, "alice")
	if err != nil {
		t.Fatal(err)
	}
	return im, dep
}

// TestUpdateEngineApps is the end-to-end test: a real service over
// HTTPS, an agent on the TPM simulator (the soft root without cgo), apps
// under the real supervisor. v1 installs and runs; v2 replaces it; a v3
// whose app exits at once fails its health check and rolls back by itself,
// and the deployment says so with the reason; a validly signed image with a
// lower security version is refused.
func TestUpdateEngineApps(t *testing.T) {
	root := roots[len(roots)-1]
	t.Logf("root of trust: %s", root.name)
	svc := startService(t)
	ctx := context.Background()
	dir := t.TempDir()
	d := svc.newDevice(t, root.open(t, dir), dir)
	svc.enroll(t, d, "Field Test")
	log := slog.New(slog.NewTextHandler(testWriter{t}, nil))
	queue, err := report.OpenQueue(report.QueueConfig{Dir: filepath.Join(dir, "failure-reports")})
	if err != nil {
		t.Fatal(err)
	}
	defer queue.Close()
	d.agent.cfg.Reports = queue
	// failures lists the failure reports of one category waiting for upload.
	failures := func(category string) []sphere.FailureEvent {
		t.Helper()
		b, err := queue.Pending(1000)
		if err != nil {
			t.Fatal(err)
		}
		var out []sphere.FailureEvent
		for _, e := range b.Events {
			if e.Category == category {
				out = append(out, e)
			}
		}
		return out
	}
	sup := supervisor.New(supervisor.Config{Logger: log, BackoffMin: 50 * time.Millisecond})
	defer sup.Close()
	u, err := NewUpdater(d.agent, UpdateConfig{Apps: sup, HealthWindow: 400 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if err := d.agent.Measure(); err != nil {
		t.Fatal(err)
	}
	if _, err := d.agent.Attest(ctx); err != nil {
		t.Fatal(err)
	}
	pub := svc.publisher(t)
	devID := d.agent.DeviceID()
	running := func() supervisor.AppStatus {
		t.Helper()
		for _, s := range sup.Status() {
			if s.App.ComponentID == testApp {
				return s
			}
		}
		t.Fatal("the app is not supervised")
		return supervisor.AppStatus{}
	}
	state := func(dep sphere.Deployment) sphere.DeviceUpdate {
		t.Helper()
		st, err := svc.st.DeviceUpdate(ctx, devID, dep.ID)
		if err != nil {
			t.Fatalf("device state in %s: %v", dep.ID, err)
		}
		return st
	}

	// v1: installed, running, and verified by attestation.
	v1, dep1 := svc.deploy(t, "Field Test", packApp(t, pub, "1.0.0", 1, "exec sleep 600", true))
	if err := u.Check(ctx); err != nil {
		t.Fatalf("check for v1: %v", err)
	}
	if s := running(); s.App.ImageID != v1.ID || s.State != supervisor.StateRunning {
		t.Fatalf("after v1: %+v", s)
	}
	if st := state(dep1); st.State != sphere.UpdateVerified {
		t.Errorf("deployment 1 state %q, want %q", st.State, sphere.UpdateVerified)
	}
	v1Dir := filepath.Join(dir, "update", "apps", testApp, v1.ID)

	// v2: switched, v1's slot removed once v2 is healthy.
	v2, dep2 := svc.deploy(t, "Field Test", packApp(t, pub, "2.0.0", 2, "exec sleep 600", true))
	if err := u.Check(ctx); err != nil {
		t.Fatalf("check for v2: %v", err)
	}
	if s := running(); s.App.ImageID != v2.ID || s.State != supervisor.StateRunning {
		t.Fatalf("after v2: %+v", s)
	}
	if _, err := os.Stat(v1Dir); !os.IsNotExist(err) {
		t.Errorf("v1's slot is still there after v2 was committed: %v", err)
	}
	if st := state(dep2); st.State != sphere.UpdateVerified {
		t.Errorf("deployment 2 state %q, want %q", st.State, sphere.UpdateVerified)
	}

	// v3 exits at once: rolled back to v2 by itself, with the reason.
	v3, dep3 := svc.deploy(t, "Field Test", packApp(t, pub, "3.0.0", 3, "exit 3", true))
	if err := u.Check(ctx); err != nil {
		t.Fatalf("check for v3: %v", err)
	}
	if s := running(); s.App.ImageID != v2.ID {
		t.Fatalf("after the failed v3 the supervisor runs %s, want v2 %s", s.App.ImageID, v2.ID)
	}
	st := state(dep3)
	if st.State != sphere.UpdateRolledBack || !strings.Contains(st.Reason, "health check") || !strings.Contains(st.Reason, "exited with code 3") {
		t.Errorf("deployment 3 state %q (%q), want rolled_back with the exit in the reason", st.State, st.Reason)
	}
	if _, err := os.Stat(filepath.Join(dir, "update", "apps", testApp, v3.ID)); !os.IsNotExist(err) {
		t.Errorf("v3's slot is still there after the rollback: %v", err)
	}
	if rb := failures(sphere.FailureUpdateRolledBack); len(rb) != 1 || rb[0].ImageID != v3.ID || rb[0].Class != sphere.FailureClassApp ||
		!strings.Contains(rb[0].Description, "exited with code 3") {
		t.Errorf("failure reports of the rollback: %+v", rb)
	}
	// Not tried again for the same deployment.
	if err := u.Check(ctx); err != nil {
		t.Fatal(err)
	}
	if s := running(); s.App.ImageID != v2.ID {
		t.Errorf("a second check installed the failed v3 again")
	}

	// "Check now" reaches the agent at its next attestation (v2 is in
	// the previous deployment, so it attests healthy).
	checks := make(chan struct{}, 1)
	d.agent.OnCheckNow(func() { checks <- struct{}{} })
	if err := svc.tenant.SetCheckNow(ctx, devID); err != nil {
		t.Fatal(err)
	}
	if _, err := d.agent.Attest(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case <-checks:
	default:
		t.Error("the attestation did not pass on the service's check-now")
	}

	// A validly signed image with security version 1 < 2: refused.
	_, dep4 := svc.deploy(t, "Field Test", packApp(t, pub, "1.0.1", 1, "exec sleep 600", true))
	if err := u.Check(ctx); err != nil {
		t.Fatal(err)
	}
	if s := running(); s.App.ImageID != v2.ID {
		t.Fatalf("the rollback attack replaced v2 with %s", s.App.ImageID)
	}
	if st := state(dep4); st.State != sphere.UpdateFailed || !strings.Contains(st.Reason, "security version 1 is below 2") {
		t.Errorf("deployment 4 state %q (%q), want failed for the security version", st.State, st.Reason)
	}
	if f := failures(sphere.FailureUpdateFailed); len(f) != 1 || !strings.Contains(f[0].Description, "security version 1 is below 2") {
		t.Errorf("failure reports of the refused rollback attack: %+v", f)
	}
	// v2, the device's last verified image, is in neither the current
	// deployment (4) nor the previous one (3): the device keeps its
	// certificate all the same.
	if err := d.agent.Measure(); err != nil {
		t.Fatal(err)
	}
	if res, err := d.agent.Attest(ctx); err != nil {
		t.Errorf("attesting on the last verified v2 after the refused rollback attack: %v (%+v)", err, res)
	}

	// An install interrupted before its switch (here v3, as if a restart
	// cut its download) is dropped once the service no longer offers it.
	u.j.Txn = &txn{DeploymentID: dep3.ID, Step: stepDownloading,
		Target: updates.Target{Path: updates.TargetPath(svc.groups["Field Test"].ID, v3.ID), ImageID: v3.ID, Kind: "app", ComponentID: testApp}}
	if err := u.save(); err != nil {
		t.Fatal(err)
	}
	if err := u.Check(ctx); err != nil {
		t.Fatal(err)
	}
	if u.j.Txn != nil || running().App.ImageID != v2.ID {
		t.Errorf("an install the service no longer offers went on: %+v", u.j.Txn)
	}
}

// osDevice is an enrolled device with the file bootloader and two slot
// files, in this process: "reboot" is making a new Updater after Boot.
type osDevice struct {
	*device
	bl      *bootloader.File
	slots   map[bootloader.Slot]string
	reboots int
}

// newOSDevice makes one on the soft root of trust, or on open's.
func newOSDevice(t testing.TB, svc *service, open func(dir string) rot.RootOfTrust) *osDevice {
	dir := t.TempDir()
	var r rot.RootOfTrust
	if open != nil {
		r = open(dir)
	} else {
		soft, err := rot.OpenSoft(dir)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { soft.Close() })
		r = soft
	}
	d := svc.newDevice(t, r, dir)
	svc.enroll(t, d, "Field Test")
	bl, err := bootloader.NewFile(bootloader.Config{StateFile: filepath.Join(dir, "boot.json")})
	if err != nil {
		t.Fatal(err)
	}
	o := &osDevice{device: d, bl: bl, slots: map[bootloader.Slot]string{bootloader.SlotA: filepath.Join(dir, "slot-a"), bootloader.SlotB: filepath.Join(dir, "slot-b")}}
	o.boot(t)
	return o
}

// boot powers the device on: the bootloader picks a slot, the agent
// measures and attests, and the update engine starts.
func (o *osDevice) boot(t testing.TB) *Updater {
	t.Helper()
	if _, err := o.bl.Boot(); err != nil {
		t.Fatal(err)
	}
	u, err := NewUpdater(o.agent, UpdateConfig{Bootloader: o.bl, Slots: o.slots, HealthWindow: time.Millisecond,
		Reboot: func() error { o.reboots++; return nil }})
	if err != nil {
		t.Fatal(err)
	}
	if err := o.agent.Measure(); err != nil {
		t.Fatal(err)
	}
	o.agent.Attest(context.Background())
	return u
}

// TestUpdateEngineOSRollback, on each root of trust: an OS whose trial
// boot fails its health check (attestation refused) is rolled back by the
// agent; one that never comes up far enough is rolled back by the
// bootloader, and the agent reports it; an OS image below the root of
// trust's anti-rollback counter is refused even when the agent's own
// journal was reset.
func TestUpdateEngineOSRollback(t *testing.T) {
	for _, root := range roots {
		t.Run(root.name, func(t *testing.T) {
			testOSRollback(t, func(dir string) rot.RootOfTrust { return root.open(t, dir) })
		})
	}
}

func testOSRollback(t *testing.T, open func(dir string) rot.RootOfTrust) {
	svc := startService(t)
	ctx := context.Background()
	pub := svc.publisher(t)
	o := newOSDevice(t, svc, open)
	base := bytes.Repeat([]byte("os image "), 200000)
	v1, _ := svc.deploy(t, "Field Test", packOS(t, pub, 1, base))
	u := o.boot(t)
	for range 3 { // check, reboot into the trial, commit
		if err := u.Check(ctx); err != nil && !errors.Is(err, ErrReboot) {
			t.Fatal(err)
		}
		u = o.boot(t)
	}
	if st, _ := o.bl.State(); st.Booted != bootloader.SlotB || st.Trial || u.j.Components[testOS].ImageID != v1.ID {
		t.Fatalf("v1 not committed in slot b: %+v, %+v", st, u.j.Components)
	}

	// v2 is armed; before its trial boot two newer deployments supersede
	// it, so attesting it is refused: the agent rolls back to v1.
	svc.deploy(t, "Field Test", packOS(t, pub, 2, append(base, "v2"...)))
	if err := u.Check(ctx); !errors.Is(err, ErrReboot) {
		t.Fatalf("check for v2: %v, want a reboot", err)
	}
	svc.deploy(t, "Field Test", packApp(t, pub, "1.0.0", 1, "exec sleep 1", false))
	svc.deploy(t, "Field Test", packApp(t, pub, "1.0.1", 1, "exec sleep 1", false))
	u = o.boot(t)
	if st, _ := o.bl.State(); st.Booted != bootloader.SlotA || !st.Trial {
		t.Fatalf("not on the trial of v2 in slot a: %+v", st)
	}
	if err := u.Check(ctx); !errors.Is(err, ErrReboot) {
		t.Fatalf("health check of v2: %v, want a reboot to roll back", err)
	}
	u = o.boot(t)
	if st, _ := o.bl.State(); st.Booted != bootloader.SlotB || st.Trial {
		t.Fatalf("after the rollback: %+v, want slot b committed", st)
	}
	if err := u.Check(ctx); err != nil {
		t.Fatal(err)
	}
	if u.j.Components[testOS].ImageID != v1.ID || u.j.LastUpdate != "rolled_back" || !strings.Contains(u.j.LastError, "attestation") {
		t.Errorf("after the rollback of v2: %+v, last %s %q", u.j.Components[testOS], u.j.LastUpdate, u.j.LastError)
	}

	// v3 never comes up: the bootloader falls back after its boot limit.
	_, dep3 := svc.deploy(t, "Field Test", packOS(t, pub, 3, append(base, "v3"...)))
	if err := u.Check(ctx); !errors.Is(err, ErrReboot) {
		t.Fatalf("check for v3: %v", err)
	}
	for range bootloader.DefaultBootLimit + 1 {
		o.bl.Boot() // the new OS hangs before the agent starts
	}
	u = o.boot(t)
	if err := u.Check(ctx); err != nil {
		t.Fatal(err)
	}
	if u.j.Components[testOS].ImageID != v1.ID {
		t.Errorf("after the fallback the journal says %s runs", u.j.Components[testOS].ImageID)
	}
	st, err := svc.st.DeviceUpdate(ctx, o.agent.DeviceID(), dep3.ID)
	if err != nil || st.State != sphere.UpdateRolledBack || !strings.Contains(st.Reason, "did not come up") {
		t.Errorf("deployment 3: %+v, %v; want rolled_back because the OS did not come up", st, err)
	}

	// The counter stayed at v1's security version: rollbacks never raise
	// it. With the agent's journal floors gone (its state reset by an
	// attacker with root), the counter alone refuses a validly signed
	// older OS.
	if c, err := o.rot.Counter(); err != nil || c != 1 {
		t.Fatalf("anti-rollback counter %d, %v; want 1", c, err)
	}
	u.j.Floors = map[string]uint32{}
	_, dep0 := svc.deploy(t, "Field Test", packOS(t, pub, 0, append(base, "v0"...)))
	if err := u.Check(ctx); err != nil {
		t.Fatal(err)
	}
	st, err = svc.st.DeviceUpdate(ctx, o.agent.DeviceID(), dep0.ID)
	if err != nil || st.State != sphere.UpdateFailed || !strings.Contains(st.Reason, "below the anti-rollback counter 1") {
		t.Errorf("an OS below the counter: %+v, %v; want failed, refused by the counter", st, err)
	}
}

// TestUpdateDeferral: an app with SoftwareUpdateDeferral defers installs
// through its local API (a Unix socket, the caller known by its uid),
// bounded by the maximum of each kind; an app without it gets 403, and so
// does a caller that is no app.
func TestUpdateDeferral(t *testing.T) {
	svc := startService(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	dir := t.TempDir()
	d := svc.newDevice(t, roots[0].open(t, dir), dir)
	svc.enroll(t, d, "Field Test")
	sup := supervisor.New(supervisor.Config{})
	defer sup.Close()
	u, err := NewUpdater(d.agent, UpdateConfig{Apps: sup, HealthWindow: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	d.agent.Measure()
	if _, err := d.agent.Attest(ctx); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(t.TempDir(), "app.sock")
	l, err := localapi.Listen(sock, 0o666)
	if err != nil {
		t.Fatal(err)
	}
	// This test's uid stands for the app's own (the sandbox gives each app
	// one).
	me := os.Getuid()
	api := &localapi.AppAPI{Tenant: func() string { return "" }, AppByUID: func(uid int) (supervisor.App, bool) {
		for _, s := range sup.Status() {
			if s.App.ComponentID == testApp && uid == me {
				return s.App, true
			}
		}
		return supervisor.App{}, false
	}}
	u.AppRoutes(api)
	go localapi.Serve(ctx, l, api.Handler())
	client := localapi.Client(sock)
	call := func(method, path, body string, want int) map[string]any {
		t.Helper()
		req, _ := http.NewRequest(method, "http://agent"+path, strings.NewReader(body))
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out map[string]any
		json.NewDecoder(resp.Body).Decode(&out)
		if resp.StatusCode != want {
			t.Fatalf("%s %s: HTTP %d %v, want %d", method, path, resp.StatusCode, out, want)
		}
		return out
	}
	call("GET", "/v1/updates", "", http.StatusForbidden) // no app installed yet
	pub := svc.publisher(t)
	svc.deploy(t, "Field Test", packApp(t, pub, "1.0.0", 1, "exec sleep 600", false))
	if err := u.Check(ctx); err != nil {
		t.Fatal(err)
	}
	if out := call("GET", "/v1/updates", "", http.StatusForbidden); !strings.Contains(fmt.Sprint(out), "SoftwareUpdateDeferral") {
		t.Errorf("refusal without the capability: %v", out)
	}
	v2, _ := svc.deploy(t, "Field Test", packApp(t, pub, "2.0.0", 2, "exec sleep 600", true))
	if err := u.Check(ctx); err != nil {
		t.Fatal(err)
	}
	call("POST", "/v1/updates/defer", `{"minutes": 0}`, http.StatusBadRequest)
	call("POST", "/v1/updates/defer", `{"minutes": "soon"}`, http.StatusBadRequest)
	now := svc.clock.Now()
	out := call("POST", "/v1/updates/defer", `{"minutes": 100000}`, http.StatusOK)
	until := out["deferred_until"].(map[string]any)
	for kind, max := range map[string]time.Duration{"os": 24 * time.Hour, "app": 168 * time.Hour} {
		got, _ := time.Parse(time.RFC3339Nano, until[kind].(string))
		if got.Sub(now) > max+time.Minute || got.Sub(now) < max-time.Minute {
			t.Errorf("%s deferred until %s, want about %s from now", kind, got, max)
		}
	}
	svc.deploy(t, "Field Test", packApp(t, pub, "3.0.0", 3, "exec sleep 600", true))
	if err := u.Check(ctx); err != nil {
		t.Fatal(err)
	}
	if got := u.j.Components[testApp].ImageID; got != v2.ID {
		t.Errorf("a deferred install happened: runs %s", got)
	}
	pending := call("GET", "/v1/updates", "", http.StatusOK)["pending"].([]any)
	if len(pending) != 1 || pending[0].(map[string]any)["version"] != "3.0.0" {
		t.Errorf("pending = %v, want v3.0.0 deferred", pending)
	}
}
