package updates

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/opensphere/sphere"
	"github.com/opensphere/sphere/blob"
	"github.com/opensphere/sphere/ca"
	"github.com/opensphere/sphere/image"
	"github.com/opensphere/sphere/store"
)

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time          { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Advance(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

type fixture struct {
	st      *store.Store
	svc     *Service
	clk     *clock
	ts      *store.TenantStore
	group   sphere.DeviceGroup
	devices []sphere.Device
	signer  *ecdsa.PrivateKey
}

func newFixture(t *testing.T, devices int, groupName string) *fixture {
	t.Helper()
	return newFixtureTTL(t, devices, groupName, 0)
}

// newFixtureTTL is newFixture with the service's group cache on for ttl.
func newFixtureTTL(t *testing.T, devices int, groupName string, ttl time.Duration) *fixture {
	t.Helper()
	ctx := context.Background()
	clk := &clock{t: time.Now().UTC()}
	dir := t.TempDir()
	st, err := store.Open(ctx, store.Config{DSN: filepath.Join(dir, "s.db"), Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	blobs, _ := blob.NewFS(filepath.Join(dir, "blobs"))
	kek, _ := ca.NewKEK(bytes.Repeat([]byte{5}, 32))
	svc, err := New(Config{Store: st, Blobs: blobs, KEK: kek, Now: clk.Now, GroupCacheTTL: ttl})
	if err != nil {
		t.Fatal(err)
	}
	tn, _ := st.CreateTenant(ctx, "Acme", "")
	ts := st.Tenant(tn.ID)
	p, _ := ts.CreateProduct(ctx, "Oven", "")
	gs, _ := ts.ListDeviceGroups(ctx, store.DeviceGroupFilter{Product: p.ID, Name: groupName}, store.PageRequest{})
	f := &fixture{st: st, svc: svc, clk: clk, ts: ts, group: gs.Items[0]}
	for i := 0; i < devices; i++ {
		k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		der, _ := x509.MarshalPKIXPublicKey(&k.PublicKey)
		d, err := st.RegisterDevice(ctx, store.Registration{IdentityPublicKey: der, AttestationPublicKey: der})
		if err != nil {
			t.Fatal(err)
		}
		if d, err = ts.ClaimDevice(ctx, d.ID, f.group.ID); err != nil {
			t.Fatal(err)
		}
		f.devices = append(f.devices, d)
	}
	f.signer, _ = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, _ := x509.MarshalPKIXPublicKey(&f.signer.PublicKey)
	if _, err := svc.AddPublisherKey(ctx, tn.ID, "CI", der); err != nil {
		t.Fatal(err)
	}
	return f
}

func (f *fixture) image(t *testing.T, kind image.Kind, version string) sphere.Image {
	t.Helper()
	component := "0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d"
	md := image.Metadata{Kind: kind, ComponentID: component, Name: "oven", Version: version, SecurityVersion: 1, BuildTime: f.clk.Now()}
	if kind == image.KindApp {
		md.AppManifest = &image.AppManifest{SchemaVersion: 1, Name: "oven", ComponentId: component, EntryPoint: "/bin/oven"}
	}
	var buf bytes.Buffer
	if _, err := image.Pack(&buf, md, bytes.NewReader([]byte("payload "+version)), f.signer); err != nil {
		t.Fatal(err)
	}
	im, err := f.svc.AddImage(context.Background(), f.ts.ID(), "alice", &buf)
	if err != nil {
		t.Fatal(err)
	}
	return im
}

// TestRollout walks a deployment through its waves with an injected clock
// and halts it when the failure ratio crosses the threshold; the reason is
// on the deployment and in every device's explanation.
// TestRollout runs with the group cache off and on: the rollout moves and
// halts the same either way.
func TestRollout(t *testing.T) {
	for _, ttl := range []time.Duration{0, time.Second} {
		t.Run(fmt.Sprint("cache ", ttl), func(t *testing.T) { testRollout(t, newFixtureTTL(t, 200, "Field Test", ttl)) })
	}
}

func testRollout(t *testing.T, f *fixture) {
	ctx := context.Background()
	im := f.image(t, image.KindApp, "2.0.0")
	d, err := f.svc.CreateDeployment(ctx, f.ts.ID(), f.group.ID, []string{im.ID},
		RolloutOptions{Waves: []int{10, 50, 100}, Dwell: time.Hour, FailurePermille: 200, MinSample: 10}, "alice")
	if err != nil {
		t.Fatal(err)
	}
	offered := func() (n int) {
		for _, dev := range f.devices {
			res, err := f.svc.Check(ctx, dev, Report{})
			if err != nil {
				t.Fatal(err)
			}
			if len(res.Targets) > 0 {
				n++
			}
		}
		return n
	}
	// Wave 1: about 10 % of 200.
	if n := offered(); n < 8 || n > 35 {
		t.Fatalf("wave 1 offers the update to %d of 200 devices; want about 20", n)
	}
	f.clk.Advance(59 * time.Minute)
	if n := offered(); n > 35 {
		t.Fatalf("the next wave started before the dwell: %d devices", n)
	}
	f.clk.Advance(time.Minute)
	if n := offered(); n < 70 || n > 130 {
		t.Fatalf("wave 2 offers the update to %d of 200; want about 100", n)
	}
	dep, _ := f.ts.GetDeployment(ctx, d.ID)
	if dep.CurrentWave != 1 {
		t.Fatalf("current wave = %d; want 1 (the second)", dep.CurrentWave)
	}

	// The reached devices report: most install, more than 20 % roll back.
	var reached []sphere.Device
	for _, dev := range f.devices {
		if InRollout(dep, dev.ID) {
			reached = append(reached, dev)
		}
	}
	for i, dev := range reached {
		rep := Report{Components: []Component{{ComponentID: im.ComponentID, ImageID: im.ID, Kind: "app", Version: "2.0.0"}}}
		if i%3 == 0 {
			rep = Report{LastUpdate: sphere.UpdateRolledBack, LastError: "health check failed: app exited 3 times", DeploymentID: d.ID}
		}
		if _, err := f.svc.Check(ctx, dev, rep); err != nil {
			t.Fatal(err)
		}
	}
	f.clk.Advance(time.Minute)
	dep, err = f.svc.Advance(ctx, f.ts.ID(), dep)
	if err != nil {
		t.Fatal(err)
	}
	if dep.State != sphere.DeploymentHalted || !strings.Contains(dep.StateReason, "halted by itself in wave 2") || !strings.Contains(dep.StateReason, "threshold 200‰") {
		t.Fatalf("deployment %s (%q); want halted by itself with the reason", dep.State, dep.StateReason)
	}
	if n := offered(); n != 0 {
		t.Errorf("a halted rollout still offers the update to %d devices", n)
	}
	f.clk.Advance(10 * time.Hour)
	if dep, _ = f.svc.Advance(ctx, f.ts.ID(), dep); dep.State != sphere.DeploymentHalted || dep.CurrentWave != 1 {
		t.Errorf("a halted rollout moved on: %s wave %d", dep.State, dep.CurrentWave)
	}
	ex, err := f.svc.Explain(ctx, f.devices[0])
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(strings.Join(ex.Reasons, "\n"), "is halted: halted by itself") {
		t.Errorf("explanation does not say the rollout halted: %v", ex.Reasons)
	}
	counts, _ := f.st.UpdateCounts(ctx, d.ID, time.Time{})
	if counts[sphere.UpdateRolledBack] == 0 || counts[sphere.UpdateInstalled] == 0 {
		t.Errorf("device states = %v", counts)
	}

	// An operator resumes; the dwell starts again.
	if dep, err = f.svc.SetState(ctx, f.ts.ID(), d.ID, "resume", "fixed in 2.0.1", "bob"); err != nil || dep.State != sphere.DeploymentActive {
		t.Fatalf("resume: %+v %v", dep, err)
	}
	if _, err := f.svc.SetState(ctx, f.ts.ID(), d.ID, "resume", "", "bob"); sphere.ErrorCode(err) != sphere.EPrecondition {
		t.Errorf("resuming an active rollout: %v", err)
	}
}

// TestGroupCache: with the group cache on, changes made through the
// Service are seen at the next check, and changes made elsewhere (another
// replica, the store) once the TTL has passed.
func TestGroupCache(t *testing.T) {
	ctx := context.Background()
	f := newFixtureTTL(t, 1, "Field Test", time.Minute)
	dev := f.devices[0]
	check := func() CheckResult {
		t.Helper()
		res, err := f.svc.Check(ctx, dev, Report{})
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	if res := check(); res.DeploymentID != "" || len(res.Targets) != 0 {
		t.Fatalf("first check = %+v", res)
	}
	// Through the Service: seen at once.
	im := f.image(t, image.KindApp, "2.0.0")
	d, err := f.svc.CreateDeployment(ctx, f.ts.ID(), f.group.ID, []string{im.ID}, RolloutOptions{Waves: []int{100}}, "alice")
	if err != nil {
		t.Fatal(err)
	}
	if res := check(); res.DeploymentID != d.ID || len(res.Targets) != 1 {
		t.Fatalf("check after the deployment = %+v", res)
	}
	if _, err := f.svc.SetState(ctx, f.ts.ID(), d.ID, "pause", "", "alice"); err != nil {
		t.Fatal(err)
	}
	if res := check(); len(res.Targets) != 0 {
		t.Fatalf("a paused deployment is still offered: %+v", res)
	}
	// In the store directly (as another replica would): seen after the TTL.
	policy := string(sphere.PolicyNoUpdates)
	if _, err := f.ts.UpdateDeviceGroup(ctx, f.group.ID, store.DeviceGroupUpdate{UpdatePolicy: &policy}); err != nil {
		t.Fatal(err)
	}
	if res := check(); strings.Contains(strings.Join(res.Reasons, " "), "NoUpdates") {
		t.Fatalf("the policy was seen before the TTL; is the cache on? %v", res.Reasons)
	}
	f.clk.Advance(time.Minute)
	if res := check(); !strings.Contains(strings.Join(res.Reasons, " "), "NoUpdates") {
		t.Errorf("the policy is not seen after the TTL: %v", res.Reasons)
	}
}

// TestExplain covers the answers to "why is my device not updating?".
func TestExplain(t *testing.T) {
	ctx := context.Background()
	for _, c := range []struct {
		group string
		setup func(f *fixture)
		want  string
	}{
		{"Field Test", func(f *fixture) {}, "has no deployment"},
		{"Field Test", func(f *fixture) {}, "never checked for updates"},
		{"Development", func(f *fixture) {}, "No3rdPartyAppUpdates"},
		{"Field Test", func(f *fixture) {
			no := string(sphere.PolicyNoUpdates)
			f.ts.UpdateDeviceGroup(ctx, f.group.ID, store.DeviceGroupUpdate{UpdatePolicy: &no})
		}, "NoUpdates"},
		{"Field Test", func(f *fixture) {
			im := f.image(t, image.KindApp, "1.0.0")
			d, _ := f.svc.CreateDeployment(ctx, f.ts.ID(), f.group.ID, []string{im.ID}, RolloutOptions{Waves: []int{100}}, "alice")
			f.svc.SetState(ctx, f.ts.ID(), d.ID, "pause", "waiting for QA", "alice")
		}, "is paused: paused by alice: waiting for QA"},
		{"Field Test", func(f *fixture) {
			im := f.image(t, image.KindApp, "1.0.0")
			f.svc.CreateDeployment(ctx, f.ts.ID(), f.group.ID, []string{im.ID}, RolloutOptions{Waves: []int{1, 100}}, "alice")
		}, "this device is in a later wave"},
		{"Field Test", func(f *fixture) {
			f.svc.Check(ctx, f.devices[0], Report{LastError: "not enough space on /data"})
		}, "last update failed: not enough space"},
	} {
		t.Run(c.want, func(t *testing.T) {
			f := newFixture(t, 1, c.group)
			// A device in no wave of a 1 % rollout: find one by its bucket.
			c.setup(f)
			ex, err := f.svc.Explain(ctx, f.devices[0])
			if err != nil {
				t.Fatal(err)
			}
			all := strings.Join(ex.Reasons, "\n")
			if c.want == "this device is in a later wave" {
				if ex.Deployment != nil && InRollout(*ex.Deployment, f.devices[0].ID) {
					t.Skip(fmt.Sprintf("the device landed in the first 1 %% (bucket %d)", Bucket(ex.Deployment.ID, f.devices[0].ID)))
				}
			}
			if !strings.Contains(all, c.want) {
				t.Errorf("reasons %q lack %q", all, c.want)
			}
		})
	}
}

// TestMaintainTenantWithoutRepository: a tenant with no device groups has
// no TUF repository yet; maintenance skips it instead of failing, and
// goes on with the other tenants.
func TestMaintainTenantWithoutRepository(t *testing.T) {
	f := newFixture(t, 1, "Field Test")
	ctx := context.Background()
	if _, err := f.st.CreateTenant(ctx, "Empty", ""); err != nil {
		t.Fatal(err)
	}
	if err := f.svc.Maintain(ctx); err != nil {
		t.Fatalf("Maintain with a tenant that has no repository yet: %v", err)
	}
}
