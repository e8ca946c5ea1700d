package agent

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/opensphere/sphere"
	"github.com/opensphere/sphere/image"
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
}
