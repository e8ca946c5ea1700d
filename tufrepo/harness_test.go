package tufrepo

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/theupdateframework/go-tuf/v2/metadata"
	"github.com/theupdateframework/go-tuf/v2/metadata/config"
	"github.com/theupdateframework/go-tuf/v2/metadata/updater"

	"github.com/opensphere/sphere"
	"github.com/opensphere/sphere/ca"
)

// testClock is the injected clock; devices use it as their reference time.
type testClock struct {
	mu  sync.Mutex
	now time.Time
}

func newClock() *testClock {
	return &testClock{now: time.Date(2031, 3, 1, 12, 0, 0, 0, time.UTC)}
}

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *testClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

func testKEK(t testing.TB) *ca.KEK {
	t.Helper()
	k, err := ca.NewKEK(bytes.Repeat([]byte{7}, 32))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// env is one service (one or more Repo replicas over one Storage) with a
// real HTTP server in front of it.
type env struct {
	t     *testing.T
	ctx   context.Context
	clock *testClock
	st    *memStorage
	repo  *Repo
	srv   *httptest.Server

	mu       sync.Mutex
	blobs    map[string][]byte            // "groups/<g>/<sha256>.<name>" -> bytes
	override map[string]map[string][]byte // tenant -> metadata file name -> bytes served instead
}

func newEnv(t *testing.T) *env { return newEnvWith(t, Config{}) }

// shortLives are lifetimes 1/20 of the defaults (the timestamp's stays a
// day), for tests that simulate months.
var shortLives = Config{RootExpiry: 18 * 24 * time.Hour, TargetsExpiry: 5 * 24 * time.Hour, SnapshotExpiry: 2 * 24 * time.Hour}

// newEnvWith is newEnv with cfg's lifetimes.
func newEnvWith(t *testing.T, cfg Config) *env {
	t.Helper()
	e := &env{t: t, ctx: context.Background(), clock: newClock(), st: newMemStorage(),
		blobs: map[string][]byte{}, override: map[string]map[string][]byte{}}
	e.repo = e.newReplica(cfg)
	e.srv = httptest.NewServer(http.HandlerFunc(e.serve))
	t.Cleanup(e.srv.Close)
	return e
}

// newReplica returns another Repo over the same Storage, as a second
// `sphere serve` would be.
func (e *env) newReplica(cfg Config) *Repo {
	e.t.Helper()
	cfg.Storage, cfg.KEK, cfg.Now = e.st, testKEK(e.t), e.clock.Now
	r, err := New(cfg)
	if err != nil {
		e.t.Fatal(err)
	}
	return r
}

// serve answers /<tenant>/metadata/<file> from Repo.Metadata and
// /<tenant>/targets/<path> from the blob map, as the service will.
func (e *env) serve(w http.ResponseWriter, req *http.Request) {
	parts := strings.SplitN(strings.TrimPrefix(req.URL.Path, "/"), "/", 3)
	if len(parts) != 3 {
		http.NotFound(w, req)
		return
	}
	tenant, kind, name := parts[0], parts[1], parts[2]
	switch kind {
	case "metadata":
		e.mu.Lock()
		data, ok := e.override[tenant][name]
		e.mu.Unlock()
		if !ok {
			var err error
			data, err = e.repo.Metadata(req.Context(), tenant, name)
			if errors.Is(err, ErrNotFound) {
				http.NotFound(w, req)
				return
			}
			if err != nil {
				http.Error(w, err.Error(), http.StatusInternalServerError)
				return
			}
		}
		w.Write(data)
	case "targets":
		if _, _, _, err := ParseTargetFile(name); err != nil {
			http.NotFound(w, req)
			return
		}
		e.mu.Lock()
		data, ok := e.blobs[name]
		e.mu.Unlock()
		if !ok {
			http.NotFound(w, req)
			return
		}
		w.Write(data)
	default:
		http.NotFound(w, req)
	}
}

// serveInstead makes the server answer name with data (an attacker, or a
// stale mirror) for tenant.
func (e *env) serveInstead(tenant, name string, data []byte) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.override[tenant] == nil {
		e.override[tenant] = map[string][]byte{}
	}
	e.override[tenant][name] = data
}

// serveNormally undoes serveInstead.
func (e *env) serveNormally(tenant, name string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	delete(e.override[tenant], name)
}

// newTenant makes a tenant id and initializes its repository.
func (e *env) newTenant() string {
	e.t.Helper()
	tenant := uuid.NewString()
	if err := e.repo.Init(e.ctx, tenant); err != nil {
		e.t.Fatal(err)
	}
	return tenant
}

// publish makes a blob and lists it as the group's only target.
func (e *env) publish(tenant, group, name string, content []byte) Target {
	e.t.Helper()
	sum := sha256.Sum256(content)
	tg := Target{Name: name, Length: int64(len(content)), SHA256: hex.EncodeToString(sum[:]), Custom: json.RawMessage(testCustom)}
	e.mu.Lock()
	e.blobs["groups/"+group+"/"+tg.SHA256+"."+name] = content
	e.mu.Unlock()
	if err := e.repo.SetGroupTargets(e.ctx, tenant, group, []Target{tg}); err != nil {
		e.t.Fatal(err)
	}
	return tg
}

// testCustom has what JSON encoders escape or mangle: HTML characters,
// non-ASCII, nesting.
const testCustom = `{"version": 3, "kind": "app", "note": "<a&b> \u00e9 é", "deps": [{"id": "x", "min": -2}]}`

// latestVersion returns the latest version of a role.
func (e *env) latestVersion(tenant, role string) int64 {
	e.t.Helper()
	f, err := e.st.LatestMetadata(e.ctx, tenant, role)
	if err != nil {
		e.t.Fatal(err)
	}
	return f.Version
}

func mustMeta(t *testing.T, e *env, tenant, name string) []byte {
	t.Helper()
	data, err := e.repo.Metadata(e.ctx, tenant, name)
	if err != nil {
		t.Fatalf("Metadata(%s): %v", name, err)
	}
	return data
}

func mustKeys(t *testing.T, e *env, tenant string) []StoredKey {
	t.Helper()
	keys, err := e.st.Keys(e.ctx, tenant)
	if err != nil {
		t.Fatal(err)
	}
	return keys
}

// newRootKeyPEM makes a P-256 key as an operator would with openssl.
func newRootKeyPEM(t *testing.T) []byte {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
}

func sha256Hex(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

func itoa(v int64) string { return strconv.FormatInt(v, 10) }

// sphereCode is the application error code of err.
func sphereCode(err error) string { return sphere.ErrorCode(err) }

// device is a TUF client as the agent runs it: go-tuf's real updater with
// a metadata cache directory that persists between update checks.
type device struct {
	e      *env
	tenant string // whose URLs it talks to
	dir    string
}

// enroll makes a device that pins the tenant's current root.
func (e *env) enroll(tenant string) *device {
	e.t.Helper()
	root, err := e.repo.TrustedRoot(e.ctx, tenant)
	if err != nil {
		e.t.Fatal(err)
	}
	return e.deviceWithRoot(tenant, root)
}

// deviceWithRoot makes a device that trusts root and talks to tenant's
// URLs.
func (e *env) deviceWithRoot(tenant string, root []byte) *device {
	e.t.Helper()
	d := &device{e: e, tenant: tenant, dir: e.t.TempDir()}
	for _, sub := range []string{"metadata", "targets"} {
		if err := os.MkdirAll(filepath.Join(d.dir, sub), 0o700); err != nil {
			e.t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(d.dir, "metadata", "root.json"), root, 0o600); err != nil {
		e.t.Fatal(err)
	}
	return d
}

// fetch runs one update check and downloads a group's target, verified.
func (d *device) fetch(group, name string) ([]byte, *metadata.TargetFiles, error) {
	u, err := d.refresh()
	if err != nil {
		return nil, nil, err
	}
	info, err := u.GetTargetInfo(TargetPath(group, name))
	if err != nil {
		return nil, nil, err
	}
	_, data, err := u.DownloadTarget(info, filepath.Join(d.dir, "targets", "download"), "")
	return data, info, err
}

// refresh runs the top-level part of an update check.
func (d *device) refresh() (*updater.Updater, error) {
	root, err := os.ReadFile(filepath.Join(d.dir, "metadata", "root.json"))
	if err != nil {
		return nil, err
	}
	base := d.e.srv.URL + "/" + d.tenant
	cfg, err := config.New(base+"/metadata", root)
	if err != nil {
		return nil, err
	}
	cfg.RemoteTargetsURL = base + "/targets"
	cfg.LocalMetadataDir = filepath.Join(d.dir, "metadata")
	cfg.LocalTargetsDir = filepath.Join(d.dir, "targets")
	u, err := updater.New(cfg)
	if err != nil {
		return nil, err
	}
	// go-tuf checks expiry against time.Now; the device's clock is the
	// test's.
	u.UnsafeSetRefTime(d.e.clock.Now())
	return u, u.Refresh()
}

// rootVersion returns the version of the root the device trusts now.
func (d *device) rootVersion() int64 {
	d.e.t.Helper()
	data, err := os.ReadFile(filepath.Join(d.dir, "metadata", "root.json"))
	if err != nil {
		d.e.t.Fatal(err)
	}
	root, err := metadata.Root().FromBytes(data)
	if err != nil {
		d.e.t.Fatal(err)
	}
	return root.Signed.Version
}

// mustFetch fetches and checks the bytes.
func (d *device) mustFetch(group, name string, want []byte) {
	d.e.t.Helper()
	got, _, err := d.fetch(group, name)
	if err != nil {
		d.e.t.Fatalf("device update: %v", err)
	}
	if !bytes.Equal(got, want) {
		d.e.t.Fatalf("device got %q, want %q", got, want)
	}
}
