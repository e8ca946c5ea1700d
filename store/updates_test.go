package store

import (
	"context"
	"crypto/elliptic"
	"strings"
	"testing"
	"time"

	"github.com/opensphere/sphere"
)

func testImage(id, component string) sphere.Image {
	return sphere.Image{ID: id, Kind: "app", ComponentID: component, Name: "Blinky", Version: "1.0.0", SecurityVersion: 3,
		BuildTime: time.Date(2026, 5, 1, 0, 0, 0, 0, time.UTC), Metadata: []byte(`{"kind":"app"}`), BlobSHA256: strings.Repeat("b", 64),
		Size: 1234, SignerKeyID: strings.Repeat("c", 64), UploadedBy: "alice"}
}

func TestImagesAndDeployments(t *testing.T) {
	eachStore(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		a, b := s.Tenant(mustTenant(t, s, "A").ID), s.Tenant(mustTenant(t, s, "B").ID)
		p := mustProduct(t, a, "Lamp")
		g := groupNamed(t, a, p.ID, "Field Test")
		pb := mustProduct(t, b, "Lamp")
		gb := groupNamed(t, b, pb.ID, "Field Test")

		im1, im2 := strings.Repeat("1", 64), strings.Repeat("2", 64)
		got, err := a.AddImage(ctx, testImage(im1, "c1"))
		if err != nil || got.SecurityVersion != 3 || got.TenantID != a.ID() || string(got.Metadata) != `{"kind":"app"}` {
			t.Fatalf("AddImage = %+v, %v", got, err)
		}
		if _, err := a.AddImage(ctx, testImage(im1, "c1")); err != nil {
			t.Fatalf("adding the same image again: %v", err)
		}
		a.AddImage(ctx, testImage(im2, "c1"))
		if _, err := b.GetImage(ctx, im1); codeOf(err) != sphere.ENotFound {
			t.Errorf("tenant B sees A's image: %v", err)
		}
		page, err := a.ListImages(ctx, ImageFilter{ComponentID: "c1"}, PageRequest{Size: 1})
		if err != nil || len(page.Items) != 1 || page.NextPageToken == "" {
			t.Fatalf("ListImages = %+v, %v", page, err)
		}

		mk := func(ts *TenantStore, group string, imgs ...string) (sphere.Deployment, error) {
			return ts.CreateDeployment(ctx, sphere.Deployment{DeviceGroupID: group, ImageIDs: imgs, Waves: []int{10, 100},
				DwellSeconds: 60, FailurePermille: 50, MinSample: 5, CreatedBy: "alice"})
		}
		d1, err := mk(a, g.ID, im1)
		if err != nil || d1.State != sphere.DeploymentActive || len(d1.ImageIDs) != 1 || d1.Waves[0] != 10 {
			t.Fatalf("CreateDeployment = %+v, %v", d1, err)
		}
		// Errors change nothing.
		for name, try := range map[string]func() error{
			"another tenant's image": func() error { _, err := mk(a, g.ID, im1, "zz"); return err },
			"another tenant's group": func() error { _, err := mk(a, gb.ID, im1); return err },
			"B deploys A's image":    func() error { _, err := mk(b, gb.ID, im1); return err },
			"no images":              func() error { _, err := mk(a, g.ID); return err },
		} {
			if err := try(); codeOf(err) != sphere.ENotFound && codeOf(err) != sphere.EInvalid {
				t.Errorf("%s: %v", name, err)
			}
		}
		if cur, err := a.CurrentDeployment(ctx, g.ID); err != nil || cur.ID != d1.ID {
			t.Fatalf("a failed deployment changed the current one: %+v, %v", cur, err)
		}
		d2, err := mk(a, g.ID, im1, im2)
		if err != nil {
			t.Fatal(err)
		}
		old, _ := a.GetDeployment(ctx, d1.ID)
		if old.State != sphere.DeploymentSuperseded {
			t.Errorf("earlier deployment is %s; want superseded", old.State)
		}
		if prev, err := a.PreviousDeployment(ctx, g.ID, d2.ID); err != nil || prev.ID != d1.ID {
			t.Errorf("PreviousDeployment = %+v, %v", prev, err)
		}
		if _, err := b.GetDeployment(ctx, d2.ID); codeOf(err) != sphere.ENotFound {
			t.Errorf("tenant B sees A's deployment: %v", err)
		}

		// Rollout state changes apply once.
		now := time.Now()
		if ok, err := a.UpdateRollout(ctx, d2.ID, sphere.DeploymentActive, sphere.DeploymentActive, "", 1, now); !ok || err != nil {
			t.Fatalf("advance: %v %v", ok, err)
		}
		if ok, _ := a.UpdateRollout(ctx, d2.ID, sphere.DeploymentPaused, sphere.DeploymentActive, "", 1, now); ok {
			t.Error("UpdateRollout from the wrong state applied")
		}
		if ok, _ := b.UpdateRollout(ctx, d2.ID, sphere.DeploymentActive, sphere.DeploymentHalted, "x", 1, now); ok {
			t.Error("tenant B changed A's rollout")
		}

		// Device states and counts.
		dev := mustClaimedDevice(t, s, a, g.ID)
		// The last verified deployment: the device's known-good images.
		if ok, err := s.LastVerifiedHas(ctx, dev.ID, im1); ok || err != nil {
			t.Errorf("LastVerifiedHas before any verification = %v, %v", ok, err)
		}
		if err := s.SetDeviceUpdate(ctx, sphere.DeviceUpdate{DeviceID: dev.ID, DeploymentID: d1.ID, State: sphere.UpdateVerified}); err != nil {
			t.Fatal(err)
		}
		if ok, err := s.LastVerifiedHas(ctx, dev.ID, im1); !ok || err != nil {
			t.Errorf("LastVerifiedHas(im1) after verifying d1 = %v, %v", ok, err)
		}
		if ok, _ := s.LastVerifiedHas(ctx, dev.ID, "0000000000000000000000000000000000000000000000000000000000000000"); ok {
			t.Error("LastVerifiedHas of an image not in the deployment")
		}
		for _, st := range []string{sphere.UpdatePending, sphere.UpdateInstalled} {
			if err := s.SetDeviceUpdate(ctx, sphere.DeviceUpdate{DeviceID: dev.ID, DeploymentID: d2.ID, State: st}); err != nil {
				t.Fatal(err)
			}
		}
		counts, err := s.UpdateCounts(ctx, d2.ID, time.Time{})
		if err != nil || counts[sphere.UpdateInstalled] != 1 || len(counts) != 1 {
			t.Errorf("UpdateCounts = %v, %v", counts, err)
		}
		ups, err := a.DeviceUpdates(ctx, d2.ID, PageRequest{})
		if err != nil || len(ups.Items) != 1 || ups.Items[0].State != sphere.UpdateInstalled {
			t.Errorf("DeviceUpdates = %+v, %v", ups, err)
		}
		if ups, _ := b.DeviceUpdates(ctx, d2.ID, PageRequest{}); len(ups.Items) != 0 {
			t.Error("tenant B sees A's device updates")
		}
		if err := a.SetCheckNow(ctx, dev.ID); err != nil {
			t.Fatal(err)
		}
		if err := b.SetCheckNow(ctx, dev.ID); codeOf(err) != sphere.ENotFound {
			t.Errorf("tenant B flagged A's device: %v", err)
		}
		st, _ := s.DeviceUpdateStatus(ctx, dev.ID)
		if !st.CheckNow || st.CheckedAt != nil {
			t.Errorf("status before a check: %+v", st)
		}
		s.RecordUpdateCheck(ctx, dev.ID, nil, []byte(`[{"component_id":"c1"}]`), "disk full", 0)
		st, _ = s.DeviceUpdateStatus(ctx, dev.ID)
		if st.CheckNow || st.CheckedAt == nil || st.LastError != "disk full" || string(st.Reported) == "" {
			t.Errorf("status after a check: %+v", st)
		}
	})
}

// TestRecordUpdateCheckCoarse: an unchanged check writes nothing until the
// stored time is older than the interval; a new report, a new error or the
// check-now flag write at once.
func TestRecordUpdateCheckCoarse(t *testing.T) {
	clock := newTestClock()
	eachStoreWith(t, Config{Now: clock.Now}, func(t *testing.T, s *Store) {
		ctx := context.Background()
		a := s.Tenant(mustTenant(t, s, "A").ID)
		g := groupNamed(t, a, mustProduct(t, a, "Lamp").ID, "Field Test")
		start := clock.Now()
		rep := []byte(`[{"component_id":"c1"}]`)
		steps := []struct {
			name       string
			advance    time.Duration
			checkNow   bool
			rep, error string
			wrote      bool
		}{
			{"first check", 0, false, string(rep), "", true},
			{"same report a minute later", time.Minute, false, string(rep), "", false},
			{"check-now set", time.Minute, true, string(rep), "", true},
			{"new report", time.Minute, false, `[]`, "", true},
			{"new error", time.Minute, false, `[]`, "disk full", true},
			{"same again", time.Minute, false, `[]`, "disk full", false},
			{"an hour on", time.Hour, false, `[]`, "disk full", true},
		}
		// Both ways of reading the status it compares against: alone
		// (DeviceUpdateStatus), or with the device as the device API
		// does (GetDeviceCaller).
		for _, viaCaller := range []bool{false, true} {
			dev := mustClaimedDevice(t, s, a, g.ID)
			for _, st := range steps {
				clock.Advance(st.advance)
				if st.checkNow {
					if err := a.SetCheckNow(ctx, dev.ID); err != nil {
						t.Fatal(err)
					}
				}
				var wrote bool
				var err error
				if viaCaller {
					dc, cerr := s.GetDeviceCaller(ctx, dev.ID)
					if cerr != nil {
						t.Fatal(cerr)
					}
					wrote, err = s.RecordUpdateCheck(ctx, dev.ID, &dc.Update, []byte(st.rep), st.error, time.Hour)
				} else {
					prev, serr := s.DeviceUpdateStatus(ctx, dev.ID)
					if serr != nil {
						t.Fatal(serr)
					}
					wrote, err = s.RecordUpdateCheck(ctx, dev.ID, &prev, []byte(st.rep), st.error, time.Hour)
				}
				if err != nil || wrote != st.wrote {
					t.Errorf("%s (via caller %v): wrote %v, %v; want %v", st.name, viaCaller, wrote, err, st.wrote)
				}
				got, _ := s.DeviceUpdateStatus(ctx, dev.ID)
				if got.CheckNow || got.CheckedAt == nil || string(got.Reported) != st.rep || got.LastError != st.error {
					t.Errorf("%s: status %+v", st.name, got)
				}
				if wrote && !got.CheckedAt.Equal(clock.Now()) {
					t.Errorf("%s: checked at %v, want %v", st.name, got.CheckedAt, clock.Now())
				}
			}
		}
		clock.Set(start)
	})
}

// TestGetDeviceCaller: the device API's narrow read agrees with GetDevice
// on everything it returns, and sees a revocation and an unknown device.
func TestGetDeviceCaller(t *testing.T) {
	eachStore(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		a := s.Tenant(mustTenant(t, s, "A").ID)
		g := groupNamed(t, a, mustProduct(t, a, "Lamp").ID, "Field Test")
		dev := mustClaimedDevice(t, s, a, g.ID)
		full, err := s.GetDevice(ctx, dev.ID)
		if err != nil {
			t.Fatal(err)
		}
		dc, err := s.GetDeviceCaller(ctx, dev.ID)
		if err != nil {
			t.Fatal(err)
		}
		d := dc.Device
		if d.ID != full.ID || d.TenantID != full.TenantID || d.DeviceGroupID != full.DeviceGroupID || d.ProductID != full.ProductID ||
			d.RevokedAt != nil || d.ProductID == "" || dc.Update.CheckedAt != nil || dc.Update.CheckNow {
			t.Errorf("caller %+v; full device %+v", dc, full)
		}
		if err := a.SetCheckNow(ctx, dev.ID); err != nil {
			t.Fatal(err)
		}
		if _, err := a.RevokeDevice(ctx, dev.ID, "stolen"); err != nil {
			t.Fatal(err)
		}
		dc, err = s.GetDeviceCaller(ctx, dev.ID)
		if err != nil || dc.Device.RevokedAt == nil || dc.Device.RevokedReason != "stolen" || !dc.Update.CheckNow {
			t.Errorf("after revoking: %+v, %v", dc, err)
		}
		if _, err := s.GetDeviceCaller(ctx, strings.Repeat("ab", 32)); codeOf(err) != sphere.ENotFound {
			t.Errorf("unknown device: %v", err)
		}
		if _, err := s.GetDeviceCaller(ctx, "x"); codeOf(err) != sphere.EInvalid {
			t.Errorf("malformed id: %v", err)
		}
	})
}

func TestSigningKeysAndOSReleases(t *testing.T) {
	eachStore(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		a := s.Tenant(mustTenant(t, s, "A").ID)
		der := spkiDER(t, &newECKey(t, elliptic.P256()).PublicKey)
		k, err := s.AddSigningKey(ctx, a.ID(), sphere.KeyPublisher, "CI key", der, nil)
		if err != nil || k.KeyID != sphere.DeviceID(der) || !strings.Contains(k.PublicKey, "PUBLIC KEY") {
			t.Fatalf("AddSigningKey = %+v, %v", k, err)
		}
		if _, err := s.AddSigningKey(ctx, a.ID(), sphere.KeyPublisher, "again", der, nil); codeOf(err) != sphere.EConflict {
			t.Errorf("same key twice: %v", err)
		}
		if _, err := s.AddSigningKey(ctx, "", sphere.KeyPublisher, "platform", der, nil); err != nil {
			t.Errorf("the platform may hold the same key as a tenant: %v", err)
		}
		if _, err := s.AddSigningKey(ctx, a.ID(), "owner", "x", der, nil); codeOf(err) != sphere.EInvalid {
			t.Errorf("bad role: %v", err)
		}
		if ks, _ := s.SigningKeys(ctx, a.ID(), sphere.KeyPublisher); len(ks) != 1 {
			t.Errorf("tenant keys = %d", len(ks))
		}
		if ks, _ := s.SigningKeys(ctx, "", ""); len(ks) != 1 {
			t.Errorf("platform keys = %d", len(ks))
		}
		svcDER := spkiDER(t, &newECKey(t, elliptic.P256()).PublicKey)
		s.AddSigningKey(ctx, a.ID(), sphere.KeyService, "service", svcDER, []byte("sealed"))
		if id, sealed, err := s.ServiceKeySealed(ctx, a.ID()); err != nil || string(sealed) != "sealed" || id == "" {
			t.Errorf("ServiceKeySealed = %s %q %v", id, sealed, err)
		}
		if err := s.RevokeSigningKey(ctx, a.ID(), k.ID); err != nil {
			t.Fatal(err)
		}
		if err := s.RevokeSigningKey(ctx, "", k.ID); codeOf(err) != sphere.ENotFound {
			t.Errorf("revoking a tenant's key as the platform: %v", err)
		}

		t0 := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
		rel := func(id string, eval time.Time) sphere.OSRelease {
			im := testImage(id, "os")
			im.Kind = "os"
			return sphere.OSRelease{Image: im, EvalAt: eval, RetailAt: eval.Add(14 * 24 * time.Hour)}
		}
		if _, err := s.PublishOSRelease(ctx, rel(strings.Repeat("7", 64), t0)); err != nil {
			t.Fatal(err)
		}
		if _, err := s.PublishOSRelease(ctx, rel(strings.Repeat("7", 64), t0)); codeOf(err) != sphere.EConflict {
			t.Errorf("publishing twice: %v", err)
		}
		s.PublishOSRelease(ctx, rel(strings.Repeat("8", 64), t0.Add(7*24*time.Hour)))
		at := t0.Add(10 * 24 * time.Hour)
		if r, err := s.LatestOSRelease(ctx, sphere.FeedRetailEval, at); err != nil || r.ID != strings.Repeat("8", 64) {
			t.Errorf("RetailEval at day 10: %s %v; want the second release", r.ID, err)
		}
		if _, err := s.LatestOSRelease(ctx, sphere.FeedRetail, at); codeOf(err) != sphere.ENotFound {
			t.Errorf("Retail at day 10 has a release: %v", err)
		}
		if r, err := s.LatestOSRelease(ctx, sphere.FeedRetail, t0.Add(15*24*time.Hour)); err != nil || r.ID != strings.Repeat("7", 64) {
			t.Errorf("Retail at day 15: %s %v; want the first release", r.ID, err)
		}
	})
}

func TestTUFRows(t *testing.T) {
	eachStore(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		a, b := mustTenant(t, s, "A").ID, mustTenant(t, s, "B").ID
		if err := s.PutTUFKey(ctx, a, TUFKey{Role: "root", KeyID: "k1", PublicJSON: []byte("{}"), Sealed: []byte("s")}); err != nil {
			t.Fatal(err)
		}
		if err := s.PutTUFKey(ctx, a, TUFKey{Role: "root", KeyID: "k1", PublicJSON: []byte("{}")}); codeOf(err) != sphere.EConflict {
			t.Errorf("same key twice: %v", err)
		}
		s.DropTUFPrivateKey(ctx, a, "k1")
		s.RetireTUFKey(ctx, a, "k1")
		ks, _ := s.TUFKeys(ctx, a)
		if len(ks) != 1 || ks[0].Sealed != nil || !ks[0].Retired {
			t.Errorf("keys = %+v", ks)
		}
		if ks, _ := s.TUFKeys(ctx, b); len(ks) != 0 {
			t.Error("tenant B sees A's keys")
		}
		exp := time.Now().Add(time.Hour).UTC().Truncate(time.Microsecond)
		files := []TUFMetadata{{Role: "snapshot", Version: 1, JSON: []byte("s1"), Expires: exp}, {Role: "timestamp", Version: 1, JSON: []byte("t1"), Expires: exp}}
		if err := s.PutTUFMetadata(ctx, a, files); err != nil {
			t.Fatal(err)
		}
		// All or nothing: a batch with one existing version writes none.
		err := s.PutTUFMetadata(ctx, a, []TUFMetadata{{Role: "snapshot", Version: 2, JSON: []byte("s2"), Expires: exp}, {Role: "timestamp", Version: 1, JSON: []byte("t1b"), Expires: exp}})
		if codeOf(err) != sphere.EConflict {
			t.Errorf("republishing a version: %v", err)
		}
		if m, _ := s.LatestTUFMetadata(ctx, a, "snapshot"); m.Version != 1 {
			t.Errorf("a failed batch left snapshot version %d", m.Version)
		}
		if m, err := s.TUFMetadataVersion(ctx, a, "timestamp", 1); err != nil || string(m.JSON) != "t1" || !m.Expires.Equal(exp) {
			t.Errorf("TUFMetadataVersion = %+v, %v", m, err)
		}
		if _, err := s.LatestTUFMetadata(ctx, b, "timestamp"); codeOf(err) != sphere.ENotFound {
			t.Errorf("tenant B sees A's metadata: %v", err)
		}
	})
}

// TestDeleteGroupWithDeployments: a device group (or product) that had
// deployments can be deleted once it holds no devices; its rollout history
// goes with it.
func TestDeleteGroupWithDeployments(t *testing.T) {
	eachStore(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		a := s.Tenant(mustTenant(t, s, "A").ID)
		p := mustProduct(t, a, "Lamp")
		g := groupNamed(t, a, p.ID, "Field Test")
		im := strings.Repeat("3", 64)
		a.AddImage(ctx, testImage(im, "c"))
		mk := func() sphere.Deployment {
			d, err := a.CreateDeployment(ctx, sphere.Deployment{DeviceGroupID: g.ID, ImageIDs: []string{im}, Waves: []int{100}, MinSample: 1})
			if err != nil {
				t.Fatal(err)
			}
			return d
		}
		mk()
		d := mk()
		dev := mustClaimedDevice(t, s, a, g.ID)
		s.SetDeviceUpdate(ctx, sphere.DeviceUpdate{DeviceID: dev.ID, DeploymentID: d.ID, State: sphere.UpdatePending})
		if err := a.DeleteDeviceGroup(ctx, g.ID); codeOf(err) != sphere.EPrecondition {
			t.Fatalf("deleting a group with a device: %v", err)
		}
		if _, err := a.ReleaseDevice(ctx, dev.ID); err != nil {
			t.Fatal(err)
		}
		if err := a.DeleteDeviceGroup(ctx, g.ID); err != nil {
			t.Fatalf("deleting an empty group with deployments: %v", err)
		}
		if n := countRows(t, s, "deployments", "device_group_id = ?", g.ID); n != 0 {
			t.Errorf("%d deployments left", n)
		}
		g2 := groupNamed(t, a, p.ID, "Production")
		if _, err := a.CreateDeployment(ctx, sphere.Deployment{DeviceGroupID: g2.ID, ImageIDs: []string{im}, Waves: []int{100}, MinSample: 1}); err != nil {
			t.Fatal(err)
		}
		if err := a.DeleteProduct(ctx, p.ID); err != nil {
			t.Fatalf("deleting a product whose group has a deployment: %v", err)
		}
	})
}
