package tufrepo

// End-to-end tests: the real go-tuf v2 updater, as the agent runs it,
// against Repo.Metadata served over HTTP on 127.0.0.1.

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/theupdateframework/go-tuf/v2/metadata"
)

func TestUpdaterDownloadsGroupTarget(t *testing.T) {
	e := newEnv(t)
	tenant := e.newTenant()
	group, other := uuid.NewString(), uuid.NewString()
	e.publish(tenant, group, "img-1.pkg", []byte("image one"))
	e.publish(tenant, other, "img-2.pkg", []byte("image two"))

	d := e.enroll(tenant)
	data, info, err := d.fetch(group, "img-1.pkg")
	if err != nil {
		t.Fatalf("fetch: %v", err)
	}
	if string(data) != "image one" {
		t.Errorf("got %q, want %q", data, "image one")
	}
	var got, want any
	if info.Custom == nil || json.Unmarshal(*info.Custom, &got) != nil || json.Unmarshal([]byte(testCustom), &want) != nil ||
		!reflect.DeepEqual(got, want) {
		t.Errorf("custom = %s, want %s", derefRaw(info.Custom), testCustom)
	}
	d.mustFetch(other, "img-2.pkg", []byte("image two"))

	// The group's role answers only for its own path: the other group's
	// image is not found under this group's path.
	if _, _, err := d.fetch(group, "img-2.pkg"); err == nil {
		t.Error("found group B's image under group A's path")
	}

	// A new deployment replaces the list; the device follows.
	e.publish(tenant, group, "img-3.pkg", []byte("image three"))
	d.mustFetch(group, "img-3.pkg", []byte("image three"))
	if _, _, err := d.fetch(group, "img-1.pkg"); err == nil {
		t.Error("the replaced target is still listed")
	}
}

func TestUpdaterRejectsTamperedTarget(t *testing.T) {
	e := newEnv(t)
	tenant := e.newTenant()
	group := uuid.NewString()
	tg := e.publish(tenant, group, "img.pkg", []byte("genuine image"))
	e.mu.Lock()
	e.blobs["groups/"+group+"/"+tg.SHA256+".img.pkg"] = []byte("evil!! image")
	e.mu.Unlock()

	_, _, err := e.enroll(tenant).fetch(group, "img.pkg")
	if !errors.Is(err, &metadata.ErrLengthOrHashMismatch{}) {
		t.Fatalf("err = %v, want a hash mismatch", err)
	}
}

func TestUpdaterRejectsFrozenMetadata(t *testing.T) {
	e := newEnv(t)
	tenant := e.newTenant()
	group := uuid.NewString()
	e.publish(tenant, group, "img.pkg", []byte("image"))
	d := e.enroll(tenant)
	d.mustFetch(group, "img.pkg", []byte("image"))

	// Nobody re-signs the timestamp (the service is down, or an attacker
	// replays what it had): a day later devices refuse it.
	e.clock.Advance(25 * time.Hour)
	_, _, err := d.fetch(group, "img.pkg")
	if !errors.Is(err, &metadata.ErrExpiredMetadata{}) {
		t.Fatalf("err = %v, want expired metadata", err)
	}

	changed, err := e.repo.Refresh(e.ctx, tenant)
	if err != nil || !changed {
		t.Fatalf("Refresh = %v, %v; want true, nil", changed, err)
	}
	d.mustFetch(group, "img.pkg", []byte("image"))
}

func TestUpdaterRejectsRollback(t *testing.T) {
	e := newEnv(t)
	tenant := e.newTenant()
	group := uuid.NewString()
	e.publish(tenant, group, "v1.pkg", []byte("version one"))
	oldTimestamp := mustMeta(t, e, tenant, "timestamp.json")
	oldSnapshot := mustMeta(t, e, tenant, "snapshot.json")
	oldGroup := mustMeta(t, e, tenant, "group-"+group+".json")

	e.publish(tenant, group, "v2.pkg", []byte("version two (security fix)"))
	seen := e.enroll(tenant)
	seen.mustFetch(group, "v2.pkg", []byte("version two (security fix)"))
	snapV := e.latestVersion(tenant, metadata.SNAPSHOT)
	groupV := e.latestVersion(tenant, GroupRole(group))

	isAny := func(targets ...error) func(error) bool {
		return func(err error) bool {
			for _, t := range targets {
				if errors.Is(err, t) {
					return true
				}
			}
			return false
		}
	}
	cases := []struct {
		name   string
		device *device // nil: a newly enrolled device
		file   string
		data   []byte
		check  func(error) bool
	}{
		{"error/timestamp older than the device has seen", seen, "timestamp.json", oldTimestamp,
			isAny(&metadata.ErrBadVersionNumber{})},
		// The timestamp pins the snapshot's length and hash.
		{"error/older snapshot under the current name", nil, itoa(snapV) + ".snapshot.json", oldSnapshot,
			isAny(&metadata.ErrLengthOrHashMismatch{}, &metadata.ErrDownloadLengthMismatch{})},
		// The snapshot pins each group role's version.
		{"error/older group role under the current name", nil, itoa(groupV) + ".group-" + group + ".json", oldGroup,
			isAny(&metadata.ErrBadVersionNumber{})},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			d := c.device
			if d == nil {
				d = e.enroll(tenant)
			}
			e.serveInstead(tenant, c.file, c.data)
			defer e.serveNormally(tenant, c.file)
			if _, _, err := d.fetch(group, "v2.pkg"); !c.check(err) {
				t.Fatalf("err = %v", err)
			}
		})
	}
	// Served honestly again, the device updates.
	seen.mustFetch(group, "v2.pkg", []byte("version two (security fix)"))
}

func TestUpdaterFollowsKeyRotations(t *testing.T) {
	e := newEnv(t)
	tenant := e.newTenant()
	group := uuid.NewString()
	e.publish(tenant, group, "img.pkg", []byte("image"))
	pinned, _ := e.repo.TrustedRoot(e.ctx, tenant)
	updating := e.enroll(tenant) // checks after every step
	updating.mustFetch(group, "img.pkg", []byte("image"))

	keysBefore, _ := e.st.Keys(e.ctx, tenant)
	steps := []func() error{
		func() error { return e.repo.RotateKey(e.ctx, tenant, metadata.TIMESTAMP) },
		func() error { return e.repo.RotateKey(e.ctx, tenant, metadata.SNAPSHOT) },
		func() error { return e.repo.RotateKey(e.ctx, tenant, metadata.TARGETS) },
		func() error { return e.repo.RotateRootKey(e.ctx, tenant) },
	}
	for i, step := range steps {
		if err := step(); err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
		updating.mustFetch(group, "img.pkg", []byte("image"))
	}
	if got := updating.rootVersion(); got != 5 {
		t.Errorf("device root version = %d, want 5", got)
	}

	// A device that slept through all of it walks from its pinned root.
	sleeper := e.deviceWithRoot(tenant, pinned)
	sleeper.mustFetch(group, "img.pkg", []byte("image"))
	if got := sleeper.rootVersion(); got != 5 {
		t.Errorf("sleeping device root version = %d, want 5", got)
	}

	// Every key from before is retired and its private part gone.
	keysAfter, _ := e.st.Keys(e.ctx, tenant)
	retired := map[string]StoredKey{}
	for _, k := range keysAfter {
		retired[k.KeyID] = k
	}
	for _, k := range keysBefore {
		if a := retired[k.KeyID]; !a.Retired || a.Sealed != nil {
			t.Errorf("old %s key: retired=%v, private part kept=%v", k.Role, a.Retired, a.Sealed != nil)
		}
	}
	if len(keysAfter) != 8 {
		t.Errorf("%d keys stored, want 8", len(keysAfter))
	}
}

func TestOfflineRootFlow(t *testing.T) {
	e := newEnv(t)
	tenant := e.newTenant()
	group := uuid.NewString()
	e.publish(tenant, group, "img.pkg", []byte("image"))
	d := e.enroll(tenant)
	d.mustFetch(group, "img.pkg", []byte("image"))

	keyPEM, err := e.repo.ExportRootKey(e.ctx, tenant)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(keyPEM), "-----BEGIN PRIVATE KEY-----") {
		t.Fatalf("exported key is not a PKCS#8 PEM: %.40q", keyPEM)
	}
	if err := e.repo.RemoveRootKey(e.ctx, tenant); err != nil {
		t.Fatal(err)
	}
	if _, err := e.repo.ExportRootKey(e.ctx, tenant); err == nil {
		t.Error("ExportRootKey works after RemoveRootKey")
	}
	if st, _ := e.repo.Status(e.ctx, tenant); st.RootKeyOnline {
		t.Error("Status says the root key is online")
	}
	for _, k := range mustKeys(t, e, tenant) {
		if k.Role == metadata.ROOT && k.Sealed != nil {
			t.Error("the storage still has the root private key")
		}
	}

	// Rotating an online key needs a new root: it waits for the operator.
	err = e.repo.RotateKey(e.ctx, tenant, metadata.TIMESTAMP)
	if !errors.Is(err, ErrRootOffline) {
		t.Fatalf("RotateKey = %v, want ErrRootOffline", err)
	}
	if !strings.Contains(err.Error(), "sphere tuf sign-root") {
		t.Errorf("error %q does not say what to do", err)
	}
	pending, err := e.repo.PendingRoot(e.ctx, tenant)
	if err != nil {
		t.Fatal(err)
	}
	p, _ := metadata.Root().FromBytes(pending)
	if p.Signed.Version != 2 || len(p.Signatures) != 0 {
		t.Fatalf("pending root: version %d with %d signatures, want 2 unsigned", p.Signed.Version, len(p.Signatures))
	}
	if st, _ := e.repo.Status(e.ctx, tenant); !st.PendingRoot {
		t.Error("Status does not show the pending root")
	}

	// Meanwhile the old timestamp key keeps the repository alive.
	e.clock.Advance(20 * time.Hour)
	if _, err := e.repo.Refresh(e.ctx, tenant); err != nil {
		t.Fatal(err)
	}
	d.mustFetch(group, "img.pkg", []byte("image"))

	// The operator signs on their machine; the service imports it.
	signed, err := SignRoot(pending, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.repo.ImportSignedRoot(e.ctx, tenant, signed); err != nil {
		t.Fatal(err)
	}
	if _, err := e.repo.PendingRoot(e.ctx, tenant); !errors.Is(err, ErrNotFound) {
		t.Errorf("PendingRoot after import = %v, want ErrNotFound", err)
	}
	d.mustFetch(group, "img.pkg", []byte("image"))
	if d.rootVersion() != 2 {
		t.Errorf("device root version = %d, want 2", d.rootVersion())
	}
	// The timestamp is signed by the new key, which root 2 lists.
	ts, _ := metadata.Timestamp().FromBytes(mustMeta(t, e, tenant, "timestamp.json"))
	root2, _ := metadata.Root().FromBytes(signed)
	if got, want := ts.Signatures[0].KeyID, root2.Signed.Roles[metadata.TIMESTAMP].KeyIDs[0]; got != want {
		t.Errorf("timestamp signed by %s, want the new key %s", got, want)
	}

	// Rotating the offline root key itself: the operator puts a new key
	// in the next root and signs it with both.
	if err := e.repo.RotateRootKey(e.ctx, tenant); !errors.Is(err, ErrRootOffline) {
		t.Fatalf("RotateRootKey = %v, want ErrRootOffline", err)
	}
	pending, err = e.repo.PendingRoot(e.ctx, tenant)
	if err != nil {
		t.Fatal(err)
	}
	newKeyPEM := newRootKeyPEM(t)
	pending, err = ReplaceRootKey(pending, newKeyPEM)
	if err != nil {
		t.Fatal(err)
	}
	onlyNew, _ := SignRoot(pending, newKeyPEM)
	if err := e.repo.ImportSignedRoot(e.ctx, tenant, onlyNew); sphereCode(err) != "invalid_argument" {
		t.Fatalf("import of a root the old key did not sign = %v, want invalid_argument", err)
	}
	signed, _ = SignRoot(onlyNew, keyPEM)
	if err := e.repo.ImportSignedRoot(e.ctx, tenant, signed); err != nil {
		t.Fatal(err)
	}
	d.mustFetch(group, "img.pkg", []byte("image"))
	if d.rootVersion() != 3 {
		t.Errorf("device root version = %d, want 3", d.rootVersion())
	}
	// The old key no longer signs a root.
	next, _ := e.repo.PrepareRoot(e.ctx, tenant)
	withOld, _ := SignRoot(next, keyPEM)
	if err := e.repo.ImportSignedRoot(e.ctx, tenant, withOld); err == nil {
		t.Error("a root signed by the replaced root key was imported")
	}
	withNew, _ := SignRoot(next, newKeyPEM)
	if err := e.repo.ImportSignedRoot(e.ctx, tenant, withNew); err != nil {
		t.Fatal(err)
	}
	d.mustFetch(group, "img.pkg", []byte("image"))
}

func TestTenantsAreIndependent(t *testing.T) {
	e := newEnv(t)
	a, b := e.newTenant(), e.newTenant()
	group := uuid.NewString()
	e.publish(a, group, "a.pkg", []byte("tenant A image"))
	e.publish(b, group, "a.pkg", []byte("tenant B image"))

	// A device pinned to A's root, pointed at B's repository (a DNS or
	// configuration mix-up, or a malicious tenant) trusts nothing there.
	rootA, _ := e.repo.TrustedRoot(e.ctx, a)
	confused := e.deviceWithRoot(b, rootA)
	if _, _, err := confused.fetch(group, "a.pkg"); !errors.Is(err, &metadata.ErrUnsignedMetadata{}) {
		t.Fatalf("err = %v, want unsigned metadata (B's keys are not A's)", err)
	}
	e.enroll(a).mustFetch(group, "a.pkg", []byte("tenant A image"))
	e.enroll(b).mustFetch(group, "a.pkg", []byte("tenant B image"))

	// B's rotations do not touch A.
	before := e.latestVersion(a, metadata.ROOT)
	if err := e.repo.RotateRootKey(e.ctx, b); err != nil {
		t.Fatal(err)
	}
	if got := e.latestVersion(a, metadata.ROOT); got != before {
		t.Errorf("A's root version moved from %d to %d", before, got)
	}
}

func derefRaw(p *json.RawMessage) string {
	if p == nil {
		return "<nil>"
	}
	return string(*p)
}
