package agent

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata/config"
	"github.com/theupdateframework/go-tuf/v2/metadata/updater"

	"github.com/opensphere/sphere"
	"github.com/opensphere/sphere/attest"
	"github.com/opensphere/sphere/image"
	"github.com/opensphere/sphere/rot"
	"github.com/opensphere/sphere/store"
	"github.com/opensphere/sphere/updates"
)

// pack makes a signed app image package with a payload of its own.
func pack(t testing.TB, signer *ecdsa.PrivateKey, component, version string, payload []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	md := image.Metadata{Kind: image.KindApp, ComponentID: component, Name: "blinky", Version: version, SecurityVersion: 1,
		BuildTime: time.Now(), AppManifest: &image.AppManifest{SchemaVersion: 1, Name: "blinky", ComponentId: component, EntryPoint: "/bin/blinky"}}
	if _, err := image.Pack(&buf, md, bytes.NewReader(payload), signer); err != nil {
		t.Fatalf("image.Pack: %v", err)
	}
	return buf.Bytes()
}

// tufClient is a device's go-tuf updater over the device API with mutual
// TLS, pinned to a root; it keeps trusted metadata in dir between updates.
func tufClient(t *testing.T, svc *service, d *device, root []byte, dir string, rt http.RoundTripper) (*updater.Updater, error) {
	t.Helper()
	cfg, err := config.New(svc.url+"/device/v1/tuf/", root)
	if err != nil {
		t.Fatal(err)
	}
	cfg.RemoteTargetsURL = svc.url + "/device/v1/targets/"
	cfg.LocalMetadataDir = filepath.Join(dir, "metadata")
	cfg.LocalTargetsDir = filepath.Join(dir, "targets")
	os.MkdirAll(cfg.LocalMetadataDir, 0o700)
	os.MkdirAll(cfg.LocalTargetsDir, 0o700)
	client := d.agent.Client()
	if rt != nil {
		client = &http.Client{Transport: rt}
	}
	if err := cfg.SetDefaultFetcherHTTPClient(client); err != nil {
		t.Fatal(err)
	}
	return updater.New(cfg)
}

// TestUpdateEndToEnd packs, uploads and deploys an app, then lets the real
// go-tuf updater fetch and verify the metadata and the image over the
// device API; then it tries the attacks TUF exists for.
func TestUpdateEndToEnd(t *testing.T) {
	svc := startService(t)
	ctx := context.Background()
	dir := t.TempDir()
	d := svc.newDevice(t, roots[0].open(t, dir), dir)
	svc.enroll(t, d, "Field Test")
	if err := d.agent.Measure(); err != nil {
		t.Fatal(err)
	}
	if _, err := d.agent.Attest(ctx); err != nil {
		t.Fatal(err)
	}
	tenant := svc.tenant.ID()

	// A publisher key, registered; and one that is not.
	publisher, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	stranger, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	pubDER, _ := x509.MarshalPKIXPublicKey(&publisher.PublicKey)
	if _, err := svc.upd.AddPublisherKey(ctx, tenant, "CI", pubDER); err != nil {
		t.Fatal(err)
	}
	component := "6f0e2b1c-3d4a-4b5c-8d9e-0a1b2c3d4e5f"
	payload := bytes.Repeat([]byte("firmware "), 50000)

	// Upload signed by an unknown key: refused, nothing stored.
	_, err := svc.upd.AddImage(ctx, tenant, "alice", bytes.NewReader(pack(t, stranger, component, "1.0.0", payload)))
	if sphere.ErrorCode(err) != sphere.EInvalid || !strings.Contains(err.Error(), "not a registered publisher key") {
		t.Fatalf("upload signed by an unknown key: %v", err)
	}
	if imgs, _ := svc.tenant.ListImages(ctx, store.ImageFilter{}, store.PageRequest{}); len(imgs.Items) != 0 {
		t.Fatalf("a refused upload was stored: %+v", imgs.Items)
	}
	if left, _ := filepath.Glob(filepath.Join(svc.blobDir, "*", "*")); len(left) != 0 {
		if !(len(left) == 1 && strings.HasSuffix(filepath.Dir(left[0]), "tmp")) {
			t.Errorf("a refused upload left blobs behind: %v", left)
		}
	}
	// A corrupted package: refused.
	pkg := pack(t, publisher, component, "1.0.0", payload)
	bad := append([]byte(nil), pkg...)
	bad[len(bad)-10] ^= 0xff
	if _, err := svc.upd.AddImage(ctx, tenant, "alice", bytes.NewReader(bad)); sphere.ErrorCode(err) != sphere.EInvalid {
		t.Fatalf("corrupted upload: %v", err)
	}

	im, err := svc.upd.AddImage(ctx, tenant, "alice", bytes.NewReader(pkg))
	if err != nil {
		t.Fatal(err)
	}
	group := svc.groups["Field Test"]
	dep, err := svc.upd.CreateDeployment(ctx, tenant, group.ID, []string{im.ID}, updates.RolloutOptions{Waves: []int{100}}, "alice")
	if err != nil {
		t.Fatal(err)
	}

	// The device checks and is offered the image.
	var check updates.CheckResult
	if err := d.agent.call(ctx, d.agent.Client(), "POST", "/device/v1/updates/check", updates.Report{}, &check); err != nil {
		t.Fatal(err)
	}
	if check.DeploymentID != dep.ID || len(check.Targets) != 1 || check.Targets[0].ImageID != im.ID {
		t.Fatalf("check = %+v", check)
	}

	// Chunks by hash: each chunk of the offered package, checked against
	// its hash; a chunk of nothing the group may fetch is not found.
	hdr, err := image.ReadHeader(bytes.NewReader(pkg))
	if err != nil {
		t.Fatal(err)
	}
	getChunk := func(sha string) (int, []byte) {
		t.Helper()
		resp, err := d.agent.Client().Get(svc.url + "/device/v1/chunks/" + sha)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		data, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, data
	}
	for _, c := range []image.Chunk{hdr.Metadata.Chunks[0], hdr.Metadata.Chunks[len(hdr.Metadata.Chunks)-1]} {
		status, data := getChunk(c.SHA256)
		if sum := sha256.Sum256(data); status != 200 || hex.EncodeToString(sum[:]) != c.SHA256 || int64(len(data)) != c.Size {
			t.Fatalf("chunk %s: HTTP %d, %d bytes", c.SHA256, status, len(data))
		}
	}
	for _, sha := range []string{strings.Repeat("0", 64), strings.ToUpper(hdr.Metadata.Chunks[0].SHA256), strings.Repeat("zz", 32)} {
		if status, _ := getChunk(sha); status != 404 {
			t.Fatalf("chunk %s (nothing offered, or not lowercase hex): HTTP %d", sha, status)
		}
	}

	// The device fetches the TUF metadata and the image with go-tuf.
	root, err := svc.upd.TUF().TrustedRoot(ctx, tenant)
	if err != nil {
		t.Fatal(err)
	}
	cdir := t.TempDir()
	up, err := tufClient(t, svc, d, root, cdir, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := up.Refresh(); err != nil {
		t.Fatalf("updater refresh: %v", err)
	}
	info, err := up.GetTargetInfo(check.Targets[0].Path)
	if err != nil {
		t.Fatalf("GetTargetInfo(%s): %v", check.Targets[0].Path, err)
	}
	path, data, err := up.DownloadTarget(info, "", "")
	if err != nil {
		t.Fatalf("DownloadTarget: %v", err)
	}
	h, err := image.ReadHeader(bytes.NewReader(data))
	if err != nil || h.ImageID() != im.ID {
		t.Fatalf("downloaded %s: %v, image %v", path, err, h)
	}
	svcKey, _ := svc.upd.ServicePublicKey(ctx, tenant)
	pub, _, _ := sphere.ParsePublicKey("k", []byte(svcKey.PublicKey))
	if err := h.VerifySignature(pub.(*ecdsa.PublicKey)); err != nil {
		t.Errorf("the delivered package is not signed with the tenant's service key: %v", err)
	}

	// Targets are served with HTTP Range, so that a download resumes.
	req, _ := http.NewRequest("GET", svc.url+"/device/v1/targets/"+strings.TrimSuffix(check.Targets[0].Path, im.ID+".pkg")+im.BlobSHA256+"."+im.ID+".pkg", nil)
	req.Header.Set("Range", "bytes=8-15")
	resp, err := d.agent.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	part, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusPartialContent || !bytes.Equal(part, data[8:16]) {
		t.Errorf("Range request: HTTP %d, %q; want 206 and bytes 8-15 %q", resp.StatusCode, part, data[8:16])
	}

	// Once the device measures the installed image, a healthy
	// attestation marks it verified in the rollout; an image the service
	// never deployed is refused.
	d.rot.Extend(rot.Event{Type: attest.EventAppImage, Name: "blinky", Digest: im.ID})
	if _, err := d.agent.Attest(ctx); err != nil {
		t.Fatalf("attest with the new image measured: %v", err)
	}
	if u, err := svc.st.DeviceUpdate(ctx, d.agent.DeviceID(), dep.ID); err != nil || u.State != sphere.UpdateVerified {
		t.Errorf("device state after attesting the new image: %+v, %v; want verified", u, err)
	}
	d.rot.Extend(rot.Event{Type: attest.EventAppImage, Name: "rogue", Digest: strings.Repeat("ab", 32)})
	if res, err := d.agent.Attest(ctx); err == nil || res.Reason != attest.ReasonUnknownSoftware {
		t.Errorf("attest with an image nobody deployed: %+v, %v; want %s", res, err, attest.ReasonUnknownSoftware)
	}
	if err := d.agent.Measure(); err != nil {
		t.Fatal(err)
	}

	// A tampered blob is rejected by the client.
	blobPath := filepath.Join(svc.blobDir, im.BlobSHA256[:2], im.BlobSHA256)
	orig, _ := os.ReadFile(blobPath)
	tampered := append([]byte(nil), orig...)
	tampered[len(tampered)/2] ^= 1
	os.WriteFile(blobPath, tampered, 0o600)
	os.RemoveAll(filepath.Join(cdir, "targets"))
	os.MkdirAll(filepath.Join(cdir, "targets"), 0o700)
	if _, _, err := up.DownloadTarget(info, filepath.Join(cdir, "targets", "x"), ""); err == nil {
		t.Error("the updater accepted a tampered image")
	}
	os.WriteFile(blobPath, orig, 0o600)

	// Rollback: a network attacker replays the previous timestamp; the
	// client, having seen a newer one, refuses it.
	if err := svc.upd.TUF().RotateKey(ctx, tenant, "timestamp"); err != nil {
		t.Fatal(err)
	}
	up, _ = tufClient(t, svc, d, root, cdir, nil)
	if err := up.Refresh(); err != nil {
		t.Fatalf("refresh after a new deployment: %v", err)
	}
	old, err := svc.st.TUFMetadataVersion(ctx, tenant, "timestamp", 1)
	if err != nil {
		t.Fatal(err)
	}
	replay := replayTransport{base: d.agent.Client().Transport, file: "timestamp.json", body: old.JSON}
	up, _ = tufClient(t, svc, d, root, cdir, replay)
	if err := up.Refresh(); err == nil {
		t.Error("the updater accepted an older timestamp (rollback attack)")
	}

	// Freeze: metadata whose timestamp has expired (a service frozen in
	// the past) is refused.
	svc.clock.Advance(-3 * 24 * time.Hour)
	im2, err := svc.upd.AddImage(ctx, tenant, "alice", bytes.NewReader(pack(t, publisher, component, "1.0.1", append(payload, 'x'))))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := svc.upd.CreateDeployment(ctx, tenant, group.ID, []string{im2.ID}, updates.RolloutOptions{Waves: []int{100}}, "alice"); err != nil {
		t.Fatal(err)
	}
	svc.clock.Advance(3 * 24 * time.Hour)
	up, _ = tufClient(t, svc, d, root, cdir, nil)
	err = up.Refresh()
	if err == nil || !strings.Contains(strings.ToLower(err.Error()), "expired") {
		t.Errorf("the updater accepted an expired timestamp (freeze attack): %v", err)
	}
	// Refresh re-signs it and the device updates again.
	if _, err := svc.upd.TUF().Refresh(ctx, tenant); err != nil {
		t.Fatal(err)
	}
	up, _ = tufClient(t, svc, d, root, cdir, nil)
	if err := up.Refresh(); err != nil {
		t.Errorf("refresh after the service re-signed: %v", err)
	}

	// Another tenant's device reaches neither this tenant's metadata nor
	// its blobs.
	other := svc.otherTenantDevice(t)
	resp, err = other.agent.Client().Get(svc.url + "/device/v1/targets/groups/" + group.ID + "/" + im.BlobSHA256 + "." + im.ID + ".pkg")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("another tenant's device fetched the image: HTTP %d", resp.StatusCode)
	}
	otherRoot, _ := svc.upd.TUF().TrustedRoot(ctx, other.tenant)
	oup, _ := tufClient(t, svc, other.device, otherRoot, t.TempDir(), nil)
	if err := oup.Refresh(); err != nil {
		t.Fatalf("the other tenant's own metadata: %v", err)
	}
	if _, err := oup.GetTargetInfo(check.Targets[0].Path); err == nil {
		t.Error("the other tenant's metadata lists this tenant's image")
	}
	// A device pinned to tenant A's root rejects tenant B's metadata.
	aup, _ := tufClient(t, svc, other.device, root, t.TempDir(), nil)
	if err := aup.Refresh(); err == nil {
		t.Error("a client pinned to tenant A's root accepted tenant B's metadata")
	}
}

// replayTransport answers one metadata file with old bytes.
type replayTransport struct {
	base http.RoundTripper
	file string
	body []byte
}

func (r replayTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if strings.HasSuffix(req.URL.Path, "/"+r.file) {
		return &http.Response{StatusCode: 200, Header: http.Header{"Content-Type": {"application/json"}},
			Body: io.NopCloser(bytes.NewReader(r.body)), ContentLength: int64(len(r.body)), Request: req}, nil
	}
	return r.base.RoundTrip(req)
}

// otherTenant is an attested device of a second tenant.
type otherTenant struct {
	tenant string
	device *device
	agent  *Agent
}

func (svc *service) otherTenantDevice(t *testing.T) otherTenant {
	ctx := context.Background()
	tn, err := svc.st.CreateTenant(ctx, "Other", "")
	if err != nil {
		t.Fatal(err)
	}
	ts := svc.st.Tenant(tn.ID)
	p, _ := ts.CreateProduct(ctx, "Kettle", "")
	gs, _ := ts.ListDeviceGroups(ctx, store.DeviceGroupFilter{Product: p.ID, Name: "Field Test"}, store.PageRequest{})
	dir := t.TempDir()
	d := svc.newDevice(t, roots[0].open(t, dir), dir)
	rec, _ := IdentityRecord(d.rot)
	svc.st.RegisterDevice(ctx, store.Registration{IdentityPublicKey: []byte(rec.IdentityPublicKey), AttestationPublicKey: []byte(rec.AttestationPublicKey), RoT: rec.RoT})
	ts.ClaimDevice(ctx, rec.DeviceID, gs.Items[0].ID)
	events, _ := d.agent.Measurements()
	for _, e := range events {
		ts.AllowMeasurement(ctx, e.Type, e.Digest, e.Name, "")
	}
	d.agent.Measure()
	if _, err := d.agent.Attest(ctx); err != nil {
		t.Fatal(err)
	}
	if err := svc.upd.SyncGroup(ctx, tn.ID, gs.Items[0].ID); err != nil {
		t.Fatal(err)
	}
	return otherTenant{tenant: tn.ID, device: d, agent: d.agent}
}
