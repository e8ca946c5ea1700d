package tufrepo

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/theupdateframework/go-tuf/v2/metadata"
)

func TestNewChecksConfig(t *testing.T) {
	kek, st := testKEK(t), newMemStorage()
	cases := []struct {
		name string
		cfg  Config
		ok   bool
	}{
		{"ok/defaults", Config{}, true},
		{"ok/short timestamp", Config{TimestampExpiry: time.Hour}, true},
		{"error/timestamp over a day", Config{TimestampExpiry: 25 * time.Hour}, false},
		{"ok/short snapshot", Config{SnapshotExpiry: 12 * time.Hour}, true},
		{"error/lifetime under a minute", Config{TimestampExpiry: time.Second}, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			c.cfg.Storage, c.cfg.KEK = st, kek
			if _, err := New(c.cfg); (err == nil) != c.ok {
				t.Fatalf("New: err = %v, want ok=%v", err, c.ok)
			}
		})
	}
	if _, err := New(Config{KEK: kek}); err == nil {
		t.Error("New without Storage succeeded")
	}
}

func TestInitIsIdempotentAndSealsKeys(t *testing.T) {
	e := newEnv(t)
	tenant := e.newTenant()
	root1, _ := e.repo.TrustedRoot(e.ctx, tenant)
	if err := e.repo.Init(e.ctx, tenant); err != nil {
		t.Fatal(err)
	}
	// Another replica's Init is a no-op too.
	if err := e.newReplica(Config{}).Init(e.ctx, tenant); err != nil {
		t.Fatal(err)
	}
	if root2, _ := e.repo.TrustedRoot(e.ctx, tenant); !bytes.Equal(root1, root2) {
		t.Error("a second Init changed the root")
	}
	for role, want := range map[string]int64{"root": 1, "targets": 1, "snapshot": 1, "timestamp": 1} {
		if got := e.latestVersion(tenant, role); got != want {
			t.Errorf("%s version = %d, want %d", role, got, want)
		}
	}

	keys := mustKeys(t, e, tenant)
	if len(keys) != 4 {
		t.Fatalf("%d keys, want 4", len(keys))
	}
	other := uuid.NewString()
	for _, k := range keys {
		if len(k.Sealed) == 0 {
			t.Fatalf("%s key has no sealed private part", k.Role)
		}
		der, err := testKEK(t).Open(k.Sealed, keyLabel(tenant, k.Role, k.KeyID))
		if err != nil {
			t.Fatalf("%s key does not open with its label: %v", k.Role, err)
		}
		if _, err := x509.ParsePKCS8PrivateKey(der); err != nil {
			t.Errorf("%s key is not PKCS#8: %v", k.Role, err)
		}
		if bytes.Contains(k.Sealed, der[len(der)-32:]) {
			t.Errorf("%s key is stored in the clear", k.Role)
		}
		// Bound to tenant and role: copied elsewhere it does not open.
		if _, err := testKEK(t).Open(k.Sealed, keyLabel(other, k.Role, k.KeyID)); err == nil {
			t.Errorf("%s key opens under another tenant's label", k.Role)
		}
		if _, err := testKEK(t).Open(k.Sealed, keyLabel(tenant, "timestamp-not", k.KeyID)); err == nil {
			t.Errorf("%s key opens under another role's label", k.Role)
		}
	}
}

func TestRefreshSchedule(t *testing.T) {
	e := newEnv(t)
	tenant := e.newTenant()
	group := uuid.NewString()
	e.publish(tenant, group, "img.pkg", []byte("image"))
	d := e.enroll(tenant)
	d.mustFetch(group, "img.pkg", []byte("image"))
	versions := func() map[string]int64 {
		out := map[string]int64{}
		for _, r := range []string{"root", "targets", "snapshot", "timestamp", GroupRole(group)} {
			out[r] = e.latestVersion(tenant, r)
		}
		return out
	}

	// Each step advances the clock, running Refresh every few hours (the
	// service does hourly), and says which roles must have been re-signed
	// at least once.
	const step = 3 * time.Hour
	steps := []struct {
		name    string
		advance time.Duration
		resign  []string
	}{
		{"ok/an hour: nothing due", time.Hour, nil},
		{"ok/a day: timestamp", 24 * time.Hour, []string{"timestamp"}},
		{"ok/a week: snapshot", 7 * 24 * time.Hour, []string{"snapshot", "timestamp"}},
		{"ok/90 days: targets and group", 90 * 24 * time.Hour, []string{"targets", GroupRole(group), "snapshot", "timestamp"}},
		{"ok/a year: root", 365 * 24 * time.Hour, []string{"root", "targets", GroupRole(group), "snapshot", "timestamp"}},
	}
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			before := versions()
			for elapsed := time.Duration(0); elapsed < s.advance; elapsed += step {
				e.clock.Advance(step)
				if _, err := e.repo.Refresh(e.ctx, tenant); err != nil {
					t.Fatal(err)
				}
			}
			after := versions()
			for role, v := range after {
				resigned := v > before[role]
				if want := contains(s.resign, role); resigned != want {
					t.Errorf("%s: version %d -> %d, want re-signed=%v", role, before[role], v, want)
				}
			}
			d.mustFetch(group, "img.pkg", []byte("image"))
		})
	}

	// Nothing is due right after a Refresh: a second one is free.
	puts := e.st.putCount()
	if changed, err := e.repo.Refresh(e.ctx, tenant); err != nil || changed {
		t.Fatalf("second Refresh = %v, %v; want false, nil", changed, err)
	}
	if e.st.putCount() != puts {
		t.Error("a Refresh with nothing due wrote metadata")
	}
}

func TestRefreshAfterLongOutage(t *testing.T) {
	e := newEnv(t)
	tenant := e.newTenant()
	group := uuid.NewString()
	e.publish(tenant, group, "img.pkg", []byte("image"))
	d := e.enroll(tenant)
	d.mustFetch(group, "img.pkg", []byte("image"))

	// Everything, root included, expired while the service was down.
	e.clock.Advance(400 * 24 * time.Hour)
	if _, _, err := d.fetch(group, "img.pkg"); err == nil {
		t.Fatal("device accepted expired metadata")
	}
	changed, err := e.repo.Refresh(e.ctx, tenant)
	if err != nil || !changed {
		t.Fatalf("Refresh = %v, %v", changed, err)
	}
	d.mustFetch(group, "img.pkg", []byte("image"))
	if d.rootVersion() != 2 {
		t.Errorf("root version %d, want 2", d.rootVersion())
	}
}

func TestRefreshWithOfflineRootLeavesPendingRoot(t *testing.T) {
	e := newEnvWith(t, shortLives)
	tenant := e.newTenant()
	keyPEM, _ := e.repo.ExportRootKey(e.ctx, tenant)
	if err := e.repo.RemoveRootKey(e.ctx, tenant); err != nil {
		t.Fatal(err)
	}
	if _, err := e.repo.PendingRoot(e.ctx, tenant); !errors.Is(err, ErrNotFound) {
		t.Fatalf("PendingRoot = %v, want ErrNotFound", err)
	}
	// Into the root's last quarter (18 days, due in the last 4.5),
	// refreshing every few hours.
	group := uuid.NewString()
	e.publish(tenant, group, "a.pkg", []byte("A"))
	d := e.enroll(tenant)
	puts := 0
	for range 15 * 8 {
		e.clock.Advance(3 * time.Hour)
		if _, err := e.repo.Refresh(e.ctx, tenant); err != nil {
			t.Fatal(err)
		}
		if e.clock.Now().Hour() < 3 { // a device checks daily
			d.mustFetch(group, "a.pkg", []byte("A"))
		}
		puts = e.st.putCount()
	}
	pending, err := e.repo.PendingRoot(e.ctx, tenant)
	if err != nil {
		t.Fatalf("no pending root with the root 3 days from expiry: %v", err)
	}
	p, _ := metadata.Root().FromBytes(pending)
	if want := e.clock.Now().Add(14 * 24 * time.Hour); p.Signed.Expires.Before(want) {
		t.Errorf("pending root expires %v, want a root lifetime from when it was made", p.Signed.Expires)
	}
	// The pending root is made once, not at every Refresh.
	for range 10 {
		if _, err := e.repo.Refresh(e.ctx, tenant); err != nil {
			t.Fatal(err)
		}
	}
	if e.st.putCount() != puts {
		t.Error("Refresh keeps writing while the root waits for its offline key")
	}
	signed, _ := SignRoot(pending, keyPEM)
	if err := e.repo.ImportSignedRoot(e.ctx, tenant, signed); err != nil {
		t.Fatal(err)
	}
	if v := e.latestVersion(tenant, metadata.ROOT); v != 2 {
		t.Errorf("root version %d, want 2", v)
	}
}

func TestRemoveGroup(t *testing.T) {
	e := newEnv(t)
	tenant := e.newTenant()
	a, b := uuid.NewString(), uuid.NewString()
	e.publish(tenant, a, "a.pkg", []byte("A"))
	e.publish(tenant, b, "b.pkg", []byte("B"))
	d := e.enroll(tenant)
	d.mustFetch(a, "a.pkg", []byte("A"))
	aVersion := e.latestVersion(tenant, GroupRole(a))

	if err := e.repo.RemoveGroup(e.ctx, tenant, a); err != nil {
		t.Fatal(err)
	}
	if err := e.repo.RemoveGroup(e.ctx, tenant, a); err != nil {
		t.Fatalf("second RemoveGroup: %v", err)
	}
	// The device that cached a snapshot listing group A still updates
	// (the entry stays), finds nothing for A, and B's file as before.
	if _, _, err := d.fetch(a, "a.pkg"); err == nil || !strings.Contains(err.Error(), "not found") {
		t.Errorf("removed group's target: err = %v, want not found", err)
	}
	d.mustFetch(b, "b.pkg", []byte("B"))
	if _, err := e.repo.GroupTargets(e.ctx, tenant, a); !errors.Is(err, ErrNotFound) {
		t.Errorf("GroupTargets of a removed group = %v, want ErrNotFound", err)
	}
	if groups, _ := e.repo.Groups(e.ctx, tenant); len(groups) != 1 || groups[0] != b {
		t.Errorf("Groups = %v, want [%s]", groups, b)
	}

	// Added back, its role continues from the old version.
	e.publish(tenant, a, "a2.pkg", []byte("A2"))
	if got := e.latestVersion(tenant, GroupRole(a)); got != aVersion+1 {
		t.Errorf("re-added group role version %d, want %d", got, aVersion+1)
	}
	d.mustFetch(a, "a2.pkg", []byte("A2"))
}

func TestSetGroupTargets(t *testing.T) {
	e := newEnv(t)
	tenant := e.newTenant()
	group := uuid.NewString()
	sum := strings.Repeat("ab", 32)
	good := Target{Name: "0196c1a2-img.pkg", Length: 10, SHA256: sum, Custom: json.RawMessage(` { "security_version" : 4 } `)}

	cases := []struct {
		name    string
		group   string
		targets []Target
		wantErr string // "" for ok
	}{
		{"ok/one target", group, []Target{good}, ""},
		{"ok/empty list", uuid.NewString(), nil, ""},
		{"ok/no custom", uuid.NewString(), []Target{{Name: "a.pkg", Length: 0, SHA256: strings.ToUpper(sum)}}, ""},
		{"error/group not a uuid", "../../etc", []Target{good}, "not a UUID"},
		{"error/group uppercase uuid", strings.ToUpper(uuid.NewString()), []Target{good}, "not a UUID"},
		{"error/name with slash", group, []Target{{Name: "a/b.pkg", SHA256: sum}}, "target name"},
		{"error/name dot-dot", group, []Target{{Name: "..", SHA256: sum}}, "target name"},
		{"error/name hidden", group, []Target{{Name: ".pkg", SHA256: sum}}, "target name"},
		{"error/name empty", group, []Target{{Name: "", SHA256: sum}}, "target name"},
		{"error/name glob", group, []Target{{Name: "*.pkg", SHA256: sum}}, "target name"},
		{"error/duplicate", group, []Target{good, good}, "twice"},
		{"error/negative length", group, []Target{{Name: "a.pkg", Length: -1, SHA256: sum}}, "negative"},
		{"error/short hash", group, []Target{{Name: "a.pkg", SHA256: "abcd"}}, "64 hex"},
		{"error/custom not object", group, []Target{{Name: "a.pkg", SHA256: sum, Custom: json.RawMessage(`[1]`)}}, "JSON object"},
		{"error/custom float", group, []Target{{Name: "a.pkg", SHA256: sum, Custom: json.RawMessage(`{"v":1.5}`)}}, "integer"},
		{"error/custom exponent", group, []Target{{Name: "a.pkg", SHA256: sum, Custom: json.RawMessage(`{"v":1e3}`)}}, "integer"},
		{"error/custom invalid", group, []Target{{Name: "a.pkg", SHA256: sum, Custom: json.RawMessage(`{"v":`)}}, "valid JSON"},
		{"error/custom trailing", group, []Target{{Name: "a.pkg", SHA256: sum, Custom: json.RawMessage(`{} {}`)}}, "after"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := e.repo.SetGroupTargets(e.ctx, tenant, c.group, c.targets)
			if c.wantErr == "" {
				if err != nil {
					t.Fatalf("err = %v", err)
				}
				return
			}
			if sphereCode(err) != "invalid_argument" || !strings.Contains(err.Error(), c.wantErr) {
				t.Fatalf("err = %v, want invalid_argument mentioning %q", err, c.wantErr)
			}
		})
	}

	got, err := e.repo.GroupTargets(e.ctx, tenant, group)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].Name != good.Name || got[0].SHA256 != sum || string(got[0].Custom) != `{"security_version":4}` {
		t.Errorf("GroupTargets = %+v", got)
	}

	// The same list again publishes nothing.
	puts := e.st.putCount()
	if err := e.repo.SetGroupTargets(e.ctx, tenant, group, []Target{good}); err != nil {
		t.Fatal(err)
	}
	if e.st.putCount() != puts {
		t.Error("setting the same targets published a new version")
	}
	if err := e.repo.SetGroupTargets(e.ctx, uuid.NewString(), group, nil); !errors.Is(err, ErrNotFound) {
		t.Errorf("SetGroupTargets on a tenant without repository = %v, want ErrNotFound", err)
	}
}

func TestPublishIsOneWrite(t *testing.T) {
	e := newEnv(t)
	tenant := e.newTenant()
	group := uuid.NewString()
	e.publish(tenant, group, "a.pkg", []byte("A"))
	got := e.st.lastPut()
	want := map[string]int64{"targets": 2, GroupRole(group): 1, "snapshot": 2, "timestamp": 2}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("new group published %v, want %v in one PutMetadata", got, want)
	}
	e.publish(tenant, group, "b.pkg", []byte("B"))
	want = map[string]int64{GroupRole(group): 2, "snapshot": 3, "timestamp": 3}
	if got := e.st.lastPut(); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("changed group published %v, want %v", got, want)
	}
	if err := e.repo.RotateKey(e.ctx, tenant, metadata.TARGETS); err != nil {
		t.Fatal(err)
	}
	want = map[string]int64{"root": 2, "targets": 3, GroupRole(group): 3, "snapshot": 4, "timestamp": 4}
	if got := e.st.lastPut(); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("targets key rotation published %v, want %v", got, want)
	}

	// A failed write leaves what devices see as it was.
	d := e.enroll(tenant)
	d.mustFetch(group, "b.pkg", []byte("B"))
	e.st.mu.Lock()
	e.st.fail = func(string, []MetadataFile) error { return errors.New("disk full") }
	e.st.mu.Unlock()
	if err := e.repo.SetGroupTargets(e.ctx, tenant, group, nil); err == nil {
		t.Fatal("SetGroupTargets succeeded with a failing storage")
	}
	e.st.mu.Lock()
	e.st.fail = nil
	e.st.mu.Unlock()
	if v := e.latestVersion(tenant, metadata.SNAPSHOT); v != 4 {
		t.Errorf("snapshot version %d after a failed publish, want 4", v)
	}
	d.mustFetch(group, "b.pkg", []byte("B"))
}

func TestReplicasPublishConcurrently(t *testing.T) {
	e := newEnv(t)
	tenant := e.newTenant()
	replicas := []*Repo{e.repo, e.newReplica(Config{}), e.newReplica(Config{})}
	var groups []string
	for range 9 {
		groups = append(groups, uuid.NewString())
	}
	for _, g := range groups {
		e.blobs["groups/"+g+"/"+sha256Hex(g)+".img.pkg"] = []byte(g)
	}
	var wg sync.WaitGroup
	errs := make(chan error, len(groups)*2)
	for i, g := range groups {
		r := replicas[i%len(replicas)]
		wg.Go(func() {
			errs <- r.SetGroupTargets(e.ctx, tenant, g, []Target{{Name: "img.pkg", Length: int64(len(g)), SHA256: sha256Hex(g)}})
			_, err := r.Refresh(e.ctx, tenant)
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	d := e.enroll(tenant)
	for _, g := range groups {
		d.mustFetch(g, "img.pkg", []byte(g))
	}
	// Every publication took the next versions, none was lost.
	if v := e.latestVersion(tenant, metadata.TIMESTAMP); v != int64(1+len(groups)) {
		t.Errorf("timestamp version %d, want %d", v, 1+len(groups))
	}
}

func TestImportSignedRootRefuses(t *testing.T) {
	e := newEnv(t)
	tenant := e.newTenant()
	keyPEM, _ := e.repo.ExportRootKey(e.ctx, tenant)
	if err := e.repo.RemoveRootKey(e.ctx, tenant); err != nil {
		t.Fatal(err)
	}
	pending, err := e.repo.PrepareRoot(e.ctx, tenant)
	if err != nil {
		t.Fatal(err)
	}
	wrongKey := newRootKeyPEM(t)
	edit := func(f func(*metadata.RootType)) []byte {
		p, _ := metadata.Root().FromBytes(pending)
		f(&p.Signed)
		out, _ := p.ToBytes(true)
		signed, _ := SignRoot(out, keyPEM)
		return signed
	}
	outsider := mustKey(StoredKey{PublicJSON: func() []byte {
		pub, _ := parsePublicKeyPEM(wrongKey)
		k, _ := metadata.KeyFromPublicKey(pub)
		b, _ := json.Marshal(k)
		return b
	}()})
	signedByWrong, _ := SignRoot(pending, wrongKey)
	twoAhead := edit(func(r *metadata.RootType) { r.Version++ })
	notConsistent := edit(func(r *metadata.RootType) { r.ConsistentSnapshot = false })
	expiresSoon := edit(func(r *metadata.RootType) { r.Expires = e.clock.Now().Add(time.Hour) })
	foreignTimestampKey := edit(func(r *metadata.RootType) { replaceRoleKey(r, metadata.TIMESTAMP, outsider) })
	noSnapshotRole := edit(func(r *metadata.RootType) { delete(r.Roles, metadata.SNAPSHOT) })
	replacedNotSignedByNew, _ := ReplaceRootKey(pending, wrongKey)
	replacedNotSignedByNew, _ = SignRoot(replacedNotSignedByNew, keyPEM)
	targetsJSON := mustMeta(t, e, tenant, "targets.json")

	cases := []struct {
		name   string
		signed []byte
		want   string
	}{
		{"error/signed by a wrong key", signedByWrong, "current root key"},
		{"error/unsigned", pending, "current root key"},
		{"error/version skips one", twoAhead, "version 3"},
		{"error/consistent snapshots off", notConsistent, "consistent_snapshot"},
		{"error/expires too soon", expiresSoon, "too soon"},
		{"error/online key the service lacks", foreignTimestampKey, "does not hold"},
		{"error/role missing", noSnapshotRole, "roles"},
		{"error/new root key did not sign", replacedNotSignedByNew, "own root key"},
		{"error/not root metadata", targetsJSON, "not TUF root"},
		{"error/garbage", []byte("{"), "not TUF root"},
		{"error/too large", bytes.Repeat([]byte(" "), maxRootBytes+1), "bytes"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := e.repo.ImportSignedRoot(e.ctx, tenant, c.signed)
			if sphereCode(err) != "invalid_argument" || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err = %v, want invalid_argument mentioning %q", err, c.want)
			}
			if v := e.latestVersion(tenant, metadata.ROOT); v != 1 {
				t.Fatalf("root version %d after a refused import", v)
			}
		})
	}
	signed, _ := SignRoot(pending, keyPEM)
	if err := e.repo.ImportSignedRoot(e.ctx, tenant, signed); err != nil {
		t.Fatalf("the genuine root: %v", err)
	}
	if err := e.repo.ImportSignedRoot(e.ctx, tenant, signed); sphereCode(err) != "invalid_argument" {
		t.Errorf("importing the same root twice = %v, want invalid_argument", err)
	}
}

func TestRotateKeyChecksRole(t *testing.T) {
	e := newEnv(t)
	tenant := e.newTenant()
	for _, role := range []string{"root", "group-" + uuid.NewString(), "", "TARGETS"} {
		if err := e.repo.RotateKey(e.ctx, tenant, role); sphereCode(err) != "invalid_argument" {
			t.Errorf("RotateKey(%q) = %v, want invalid_argument", role, err)
		}
	}
	if n := len(mustKeys(t, e, tenant)); n != 4 {
		t.Errorf("%d keys after refused rotations, want 4", n)
	}
}

func TestSignRootInput(t *testing.T) {
	e := newEnv(t)
	tenant := e.newTenant()
	root, _ := e.repo.TrustedRoot(e.ctx, tenant)
	cases := []struct {
		name string
		root []byte
		key  []byte
	}{
		{"error/no PEM", root, []byte("not a key")},
		{"error/public key", root, []byte("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n")},
		{"error/not root", mustMeta(t, e, tenant, "timestamp.json"), newRootKeyPEM(t)},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if _, err := SignRoot(c.root, c.key); err == nil {
				t.Fatal("SignRoot succeeded")
			}
		})
	}
	// Signing twice with one key keeps one signature.
	k := newRootKeyPEM(t)
	once, _ := SignRoot(root, k)
	twice, err := SignRoot(once, k)
	if err != nil {
		t.Fatal(err)
	}
	m, _ := metadata.Root().FromBytes(twice)
	if len(m.Signatures) != 2 { // the service's and this one
		t.Errorf("%d signatures, want 2", len(m.Signatures))
	}
}

func TestStatus(t *testing.T) {
	e := newEnv(t)
	tenant := e.newTenant()
	e.publish(tenant, uuid.NewString(), "a.pkg", []byte("A"))
	st, err := e.repo.Status(e.ctx, tenant)
	if err != nil {
		t.Fatal(err)
	}
	if !st.RootKeyOnline || st.PendingRoot || st.Groups != 1 || len(st.Roles) != 4 || st.Roles[3].Version != 2 {
		t.Errorf("Status = %+v", st)
	}
	if _, err := e.repo.Status(context.Background(), uuid.NewString()); !errors.Is(err, ErrNotFound) {
		t.Errorf("Status of a tenant without repository = %v, want ErrNotFound", err)
	}
	none := uuid.NewString()
	if _, err := e.repo.Refresh(context.Background(), none); !errors.Is(err, ErrNotFound) {
		t.Errorf("Refresh of a tenant without repository = %v, want ErrNotFound", err)
	}
	if err := e.repo.RotateKey(context.Background(), none, metadata.TIMESTAMP); !errors.Is(err, ErrNotFound) {
		t.Errorf("RotateKey of a tenant without repository = %v, want ErrNotFound", err)
	}
	if keys, _ := e.st.Keys(e.ctx, none); len(keys) != 0 {
		t.Errorf("RotateKey stored %d keys for a tenant without repository", len(keys))
	}
	if _, err := e.repo.Metadata(context.Background(), none, "timestamp.json"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Metadata of a tenant without repository = %v, want ErrNotFound", err)
	}
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// Regression: Refresh once looked at the other roles only when the
// timestamp was due, and every publication renews the timestamp, so a
// tenant deploying more often than daily let targets, the other groups'
// roles and the root expire.
func TestRefreshWithFrequentDeployments(t *testing.T) {
	e := newEnvWith(t, shortLives)
	tenant := e.newTenant()
	busy, quiet := uuid.NewString(), uuid.NewString()
	e.publish(tenant, quiet, "q.pkg", []byte("quiet"))
	for i := range 2 * 20 { // a deployment every 12 hours, past the root's life
		e.clock.Advance(6 * time.Hour)
		if _, err := e.repo.Refresh(e.ctx, tenant); err != nil {
			t.Fatal(err)
		}
		e.clock.Advance(6 * time.Hour)
		if _, err := e.repo.Refresh(e.ctx, tenant); err != nil {
			t.Fatal(err)
		}
		e.publish(tenant, busy, "b.pkg", []byte(fmt.Sprint("busy ", i)))
	}
	e.enroll(tenant).mustFetch(quiet, "q.pkg", []byte("quiet"))
	if v := e.latestVersion(tenant, metadata.ROOT); v < 2 {
		t.Errorf("root version %d after 20 days, want it renewed", v)
	}
}
