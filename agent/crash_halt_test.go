package agent

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"strings"
	"testing"
	"time"

	"github.com/opensphere/sphere"
	"github.com/opensphere/sphere/report"
	"github.com/opensphere/sphere/updates"
)

// TestCrashingVersionHaltsRollout: half of a group took version 2 of an
// app; two of them crash and upload their failure reports. The upload
// itself halts the rollout, whose reason gives the crash rates, and the
// devices still on version 1 are offered nothing more.
func TestCrashingVersionHaltsRollout(t *testing.T) {
	svc := startService(t)
	ctx := context.Background()
	tenant, group := svc.tenant.ID(), svc.groups["Field Test"]
	publisher, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, _ := x509.MarshalPKIXPublicKey(&publisher.PublicKey)
	if _, err := svc.upd.AddPublisherKey(ctx, tenant, "CI", der); err != nil {
		t.Fatal(err)
	}
	component := "7a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d"
	var images []sphere.Image
	for _, v := range []string{"1.0.0", "2.0.0"} {
		im, err := svc.upd.AddImage(ctx, tenant, "alice", bytes.NewReader(pack(t, publisher, component, v, []byte("app "+v))))
		if err != nil {
			t.Fatal(err)
		}
		images = append(images, im)
	}
	v1, v2 := images[0], images[1]
	opts := updates.RolloutOptions{Waves: []int{100}, MinSample: 3}
	if _, err := svc.upd.CreateDeployment(ctx, tenant, group.ID, []string{v1.ID}, opts, "alice"); err != nil {
		t.Fatal(err)
	}
	dep, err := svc.upd.CreateDeployment(ctx, tenant, group.ID, []string{v2.ID}, opts, "alice")
	if err != nil {
		t.Fatal(err)
	}

	var devs []*device
	for i := range 6 {
		d := svc.softDevice(t, "Field Test")
		if _, err := d.agent.Attest(ctx); err != nil {
			t.Fatal(err)
		}
		im := v1
		if i < 3 {
			im = v2
		}
		var res updates.CheckResult
		rep := updates.Report{Components: []updates.Component{{ComponentID: component, Kind: "app", ImageID: im.ID, Version: im.Version}}}
		if err := d.agent.Post(ctx, "/device/v1/updates/check", rep, &res); err != nil {
			t.Fatal(err)
		}
		devs = append(devs, d)
	}
	if d, _ := svc.tenant.GetDeployment(ctx, dep.ID); d.State != sphere.DeploymentActive {
		t.Fatalf("deployment is %s before any crash", d.State)
	}

	for _, d := range devs[:2] {
		svc.clock.Advance(time.Minute) // past the service's spacing of crash checks
		now := svc.clock.Now().UTC()
		ev := sphere.FailureEvent{ID: report.NewEventID(), Class: "app", Category: sphere.FailureAppCrash, Description: "killed by SIGSEGV",
			ComponentID: component, ImageID: v2.ID, Version: v2.Version, Signal: "SIGSEGV", Count: 5, FirstTime: now.Add(-time.Minute), LastTime: now}
		if err := d.agent.Post(ctx, report.UploadPath, map[string]any{"events": []sphere.FailureEvent{ev}}, nil); err != nil {
			t.Fatal(err)
		}
	}
	d, _ := svc.tenant.GetDeployment(ctx, dep.ID)
	if d.State != sphere.DeploymentHalted || !strings.Contains(d.StateReason, "2 of 3 devices on this deployment crashed") {
		t.Fatalf("deployment is %s (%q); want halted by the crash rate", d.State, d.StateReason)
	}
	var res updates.CheckResult
	if err := devs[5].agent.Post(ctx, "/device/v1/updates/check", updates.Report{}, &res); err != nil || len(res.Targets) != 0 {
		t.Errorf("a device on version 1 is offered %+v, %v after the halt", res.Targets, err)
	}
}
