package server

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // the "pgx" driver, to create and drop test schemas

	"github.com/opensphere/sphere"
	"github.com/opensphere/sphere/api"
	"github.com/opensphere/sphere/blob"
	"github.com/opensphere/sphere/ca"
	"github.com/opensphere/sphere/image"
	"github.com/opensphere/sphere/store"
	"github.com/opensphere/sphere/updates"
	"github.com/opensphere/sphere/verifier"
)

// The harness runs the real server over loopback HTTP on a real store:
// a SQLite file in t.TempDir() and, when SPHERE_TEST_POSTGRES names a
// database, a fresh PostgreSQL schema per test. newEnv bootstraps the
// service and builds, through the API itself, the fixtures that most tests
// need: two tenants with a product, a device group, a claimed device, a
// tenant CA, an allowlist entry, a publisher key, an image and a deployment
// each, a platform publisher key, and users holding every role.

// env is one running server with its fixtures.
type env struct {
	srv   *Server
	store *store.Store
	url   string
	http  *http.Client
	// blobDir holds the image packages (blob.FS): a file per blob in a
	// directory named by the first two hex digits of its SHA-256.
	blobDir string

	reqSeq  atomic.Int64 // X-Request-Id of each request
	nameSeq atomic.Int64 // unique names for fresh resources
	errLogs atomic.Int64 // error-level server logs: internal errors

	// operator is "admin", made by Bootstrap. It created tenant B and so
	// is Administrator of both tenants; tests that check tenant isolation
	// use the non-operator users below.
	operator user
	adminA   user // Administrator of tenant A only
	contribA user // Contributor of tenant A only
	readerA  user // Reader of tenant A only
	adminB   user // Administrator of tenant B only

	// platform signs OS releases; PlatformKey is its registration as a
	// platform publisher key, by the operator.
	platform    *ecdsa.PrivateKey
	PlatformKey sphere.SigningKey

	A, B fixture // A is the bootstrap tenant "Default", B is "Other"
}

// user is a principal and its API token secret.
type user struct {
	Name, ID, Token string
	TokenIDs        []string // ids of the tokens it held when the fixtures were built
}

// auth is the Authorization header that user sends.
func (u user) auth() string { return "Bearer " + u.Token }

// fixture is one tenant's shared resources. Tests must not change them;
// a test that mutates makes fresh resources with the env's new* helpers.
type fixture struct {
	Tenant  sphere.Tenant
	Product sphere.Product
	Group   sphere.DeviceGroup // "Pilot", created in Product; holds Device
	Group2  sphere.DeviceGroup // the default "Field Test" group of Product, empty
	Device  sphere.Device      // registered and claimed into Group
	// Rollout is the default "Development" group of Product, empty, where
	// newDeployment deploys; each new deployment supersedes the last.
	Rollout sphere.DeviceGroup
	// CA is the tenant's first CA, made by the first read of its CAs.
	CA api.CACertificate
	// Measurement is an allowed agent binary.
	Measurement sphere.AllowedMeasurement
	// Publisher signs the tenant's image packages; PublisherKey is its
	// registration here.
	Publisher    *ecdsa.PrivateKey
	PublisherKey sphere.SigningKey
	// Image is an app image signed by Publisher and uploaded.
	Image sphere.Image
	// Deployment deploys Image to Group; it stays active (a test that
	// pauses, halts or supersedes a deployment makes its own in a fresh
	// group with newDeployment).
	Deployment sphere.Deployment
	Members    []user // the non-operator users with a role here
}

// path returns the tenant's API path plus suffix.
func (f *fixture) path(suffix string) string { return "/api/v1/tenants/" + f.Tenant.ID + suffix }

// secrets are strings that only someone with a role in the tenant may
// see: its ids, names and members.
func (f *fixture) secrets() []string {
	s := []string{f.Tenant.ID, f.Tenant.Name, f.Product.ID, f.Product.Name, f.Group.ID, f.Group2.ID, f.Rollout.ID, f.Device.ID,
		f.CA.ID, f.CA.Thumbprint, f.CA.PEM, f.Measurement.ID, f.Measurement.Digest,
		f.PublisherKey.ID, f.Image.ID, f.Image.Name, f.Image.ComponentID, f.Image.BlobSHA256, f.Deployment.ID}
	for _, m := range f.Members {
		s = append(s, m.Name, m.ID)
		s = append(s, m.TokenIDs...)
	}
	return s
}

// eachDialect runs fn on a fresh env over SQLite and, when
// SPHERE_TEST_POSTGRES is set, over PostgreSQL, in parallel.
func eachDialect(t *testing.T, fn func(t *testing.T, e *env)) {
	t.Helper()
	t.Run("sqlite", func(t *testing.T) {
		t.Parallel()
		fn(t, newEnv(t, openSQLite(t)))
	})
	t.Run("postgres", func(t *testing.T) {
		t.Parallel()
		dsn := os.Getenv("SPHERE_TEST_POSTGRES")
		if dsn == "" {
			t.Skip("SPHERE_TEST_POSTGRES is not set (e.g. postgres://postgres@127.0.0.1:5432/test?sslmode=disable); skipping the PostgreSQL run")
		}
		fn(t, newEnv(t, openPostgres(t, dsn)))
	})
}

func openSQLite(t *testing.T) *store.Store {
	t.Helper()
	st, err := store.Open(context.Background(), store.Config{DSN: filepath.Join(t.TempDir(), "sphere.db")})
	if err != nil {
		t.Fatalf("open sqlite store: %v", err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// openPostgres creates a schema of the test's own, so that parallel and
// repeated runs never see each other's rows, and drops it afterwards.
func openPostgres(t *testing.T, dsn string) *store.Store {
	t.Helper()
	ctx := context.Background()
	b := make([]byte, 8)
	rand.Read(b)
	schema := "sphere_server_test_" + hex.EncodeToString(b)
	db, err := sql.Open("pgx", dsn)
	if err != nil {
		t.Fatalf("open postgres: %v", err)
	}
	if _, err := db.ExecContext(ctx, "CREATE SCHEMA "+schema); err != nil {
		db.Close()
		t.Fatalf("create schema %s: %v", schema, err)
	}
	t.Cleanup(func() {
		if _, err := db.ExecContext(context.Background(), "DROP SCHEMA "+schema+" CASCADE"); err != nil {
			t.Errorf("drop schema %s: %v", schema, err)
		}
		db.Close()
	})
	st, err := store.Open(ctx, store.Config{DSN: store.PostgresSchemaDSN(dsn, schema)})
	if err != nil {
		t.Fatalf("open postgres store in schema %s: %v", schema, err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// testLog sends the server's warnings and errors to the test log and
// counts errors: the server logs at error level only for internal errors
// and panics, which no test provokes on purpose.
type testLog struct {
	t    testing.TB
	errs *atomic.Int64
}

func (w testLog) Write(p []byte) (int, error) {
	if bytes.Contains(p, []byte("level=ERROR")) {
		w.errs.Add(1)
	}
	w.t.Log("server: " + strings.TrimSpace(string(p)))
	return len(p), nil
}

// newServer starts the real server on st, over plain HTTP on 127.0.0.1.
func newServer(t *testing.T, st *store.Store) *env { return newServerLogging(t, st, nil) }

// newServerLogging is newServer whose log also goes, from info level, to
// logs when it is not nil.
func newServerLogging(t *testing.T, st *store.Store, logs io.Writer) *env {
	t.Helper()
	e := &env{store: st}
	var h slog.Handler = slog.NewTextHandler(testLog{t, &e.errLogs}, &slog.HandlerOptions{Level: slog.LevelWarn})
	if logs != nil {
		h = slog.NewTextHandler(io.MultiWriter(testLog{t, &e.errLogs}, logs), &slog.HandlerOptions{Level: slog.LevelInfo})
	}
	log := slog.New(h)
	kek, err := ca.NewKEK(bytes.Repeat([]byte{7}, 32))
	if err != nil {
		t.Fatal(err)
	}
	authority, err := ca.New(context.Background(), ca.Config{Store: st, KEK: kek, Logger: log})
	if err != nil {
		t.Fatalf("ca.New: %v", err)
	}
	att, err := verifier.New(verifier.Config{Store: st, CA: authority, MACKey: kek.Derive("challenge mac"), Logger: log})
	if err != nil {
		t.Fatalf("verifier.New: %v", err)
	}
	e.blobDir = filepath.Join(t.TempDir(), "blobs")
	blobs, err := blob.NewFS(e.blobDir)
	if err != nil {
		t.Fatal(err)
	}
	upd, err := updates.New(updates.Config{Store: st, Blobs: blobs, KEK: kek, Log: log})
	if err != nil {
		t.Fatalf("updates.New: %v", err)
	}
	srv, err := New(Config{Store: st, CA: authority, Attest: att, Updates: upd, Logger: log, Version: "test"})
	if err != nil {
		t.Fatalf("server.New: %v", err)
	}
	hs := httptest.NewServer(srv.Handler())
	t.Cleanup(func() {
		hs.Close()
		if n := e.errLogs.Load(); n > 0 {
			t.Errorf("the server logged %d error(s): internal errors or panics (see the log above)", n)
		}
	})
	e.srv, e.url, e.http = srv, hs.URL, hs.Client()
	return e
}

// newEnv starts the server on st and builds the fixtures through the API.
func newEnv(t *testing.T, st *store.Store) *env {
	t.Helper()
	e := newServer(t, st)
	secret, err := st.Bootstrap(context.Background(), "admin", "Default")
	if err != nil || secret == "" {
		t.Fatalf("Bootstrap: %q, %v", secret, err)
	}
	e.operator = user{Name: "admin", Token: secret}
	var me api.Me
	e.must(t, e.operator, "GET", "/api/v1/me", nil, 200, &me)
	e.operator.ID = me.User.ID

	e.must(t, e.operator, "GET", "/api/v1/tenants/Default", nil, 200, &e.A.Tenant)
	e.must(t, e.operator, "POST", "/api/v1/tenants", api.CreateTenant{Name: "Other"}, 201, &e.B.Tenant)

	e.adminA = e.addUser(t, &e.A, "alice.admin", sphere.RoleAdministrator)
	e.contribA = e.addUser(t, &e.A, "carol.contributor", sphere.RoleContributor)
	e.readerA = e.addUser(t, &e.A, "rita.reader", sphere.RoleReader)
	e.adminB = e.addUser(t, &e.B, "bob.otheradmin", sphere.RoleAdministrator)

	e.platform = newSigner(t)
	e.must(t, e.operator, "POST", "/api/v1/signing-keys", api.AddSigningKey{Name: "platform release key", PublicKey: publicPEM(t, e.platform)}, 201, &e.PlatformKey)

	e.fill(t, &e.A, "Kettle Alpha", e.adminA)
	e.fill(t, &e.B, "Toaster Beta", e.adminB)
	return e
}

// addUser creates a user with a role in f's tenant, as the operator, and
// records it as one of f's members.
func (e *env) addUser(t *testing.T, f *fixture, name string, role sphere.Role) user {
	t.Helper()
	var ra api.RoleAdded
	e.must(t, e.operator, "POST", f.path("/roles"), api.AddRole{User: name, Role: role}, 201, &ra)
	if ra.Secret == "" {
		t.Fatalf("adding new user %s gave no token secret", name)
	}
	u := user{Name: name, ID: ra.Assignment.UserID, Token: ra.Secret}
	var toks sphere.Page[sphere.Token]
	e.must(t, u, "GET", "/api/v1/me/tokens", nil, 200, &toks)
	for _, tok := range toks.Items {
		u.TokenIDs = append(u.TokenIDs, tok.ID)
	}
	f.Members = append(f.Members, u)
	return u
}

// fill gives f's tenant a product, a "Pilot" device group, a device
// claimed into it, its first CA, an allowlist entry, a registered
// publisher key, an app image signed with it and a deployment of that
// image to the Pilot group; admin is the tenant's own (non-operator)
// Administrator.
func (e *env) fill(t *testing.T, f *fixture, product string, admin user) {
	t.Helper()
	e.must(t, admin, "POST", f.path("/products"), api.CreateProduct{Name: product, Description: "fixture"}, 201, &f.Product)
	e.must(t, admin, "POST", f.path("/device-groups"), api.CreateDeviceGroup{Product: f.Product.ID, Name: "Pilot"}, 201, &f.Group)
	for name, g := range map[string]*sphere.DeviceGroup{"Field+Test": &f.Group2, "Development": &f.Rollout} {
		var groups sphere.Page[sphere.DeviceGroup]
		e.must(t, admin, "GET", f.path("/device-groups?product="+f.Product.ID+"&name="+name), nil, 200, &groups)
		if len(groups.Items) != 1 {
			t.Fatalf("product %s has %d groups named %s; want 1", product, len(groups.Items), name)
		}
		*g = groups.Items[0]
	}
	d := e.registerDevice(t)
	e.must(t, admin, "POST", f.path("/devices/"+d.ID+"/claim"), api.ClaimDevice{DeviceGroup: f.Group.ID}, 200, &f.Device)
	var cas sphere.Page[api.CACertificate]
	e.must(t, admin, "GET", f.path("/ca-certificates"), nil, 200, &cas)
	if len(cas.Items) != 1 || cas.Items[0].State != ca.StateActive {
		t.Fatalf("the first read of tenant %s's CAs gave %+v; want one new Active CA", f.Tenant.Name, cas.Items)
	}
	f.CA = cas.Items[0]
	e.must(t, admin, "POST", f.path("/measurements"), api.AllowMeasurement{Type: "agent", Digest: randomDigest(t), Name: "fixture agent"}, 201, &f.Measurement)

	f.Publisher = newSigner(t)
	e.must(t, admin, "POST", f.path("/signing-keys"), api.AddSigningKey{Name: "fixture publisher", PublicKey: publicPEM(t, f.Publisher)}, 201, &f.PublisherKey)
	pkg := packApp(t, f.Publisher, newGUID(t), product+" firmware", "1.0.0")
	e.mustSend(t, admin, "POST", octets(f.path("/images"), pkg), 201, &f.Image)
	e.must(t, admin, "POST", f.path("/deployments"), api.CreateDeployment{DeviceGroup: f.Group.ID, ImageIDs: []string{f.Image.ID}}, 201, &f.Deployment)
}

// ---- fresh resources, for tests that change things ----

// name returns a unique valid name starting with prefix.
func (e *env) name(prefix string) string {
	return fmt.Sprintf("%s %d", prefix, e.nameSeq.Add(1))
}

// userName returns a unique valid user name starting with prefix.
func (e *env) userName(prefix string) string {
	return fmt.Sprintf("%s%d", prefix, e.nameSeq.Add(1))
}

func (e *env) newProduct(t *testing.T, f *fixture) sphere.Product {
	t.Helper()
	var p sphere.Product
	e.must(t, e.operator, "POST", f.path("/products"), api.CreateProduct{Name: e.name("Product")}, 201, &p)
	return p
}

func (e *env) newGroup(t *testing.T, f *fixture) sphere.DeviceGroup {
	t.Helper()
	var g sphere.DeviceGroup
	e.must(t, e.operator, "POST", f.path("/device-groups"), api.CreateDeviceGroup{Product: f.Product.ID, Name: e.name("Group")}, 201, &g)
	return g
}

// registerDevice registers a device with fresh keys, as at manufacture.
func (e *env) registerDevice(t *testing.T) sphere.Device {
	t.Helper()
	var d sphere.Device
	e.must(t, e.operator, "POST", "/api/v1/devices", newRegistration(t), 201, &d)
	return d
}

// newClaimedDevice registers a device and claims it into f's Group.
func (e *env) newClaimedDevice(t *testing.T, f *fixture) sphere.Device {
	t.Helper()
	d := e.registerDevice(t)
	e.must(t, e.operator, "POST", f.path("/devices/"+d.ID+"/claim"), api.ClaimDevice{DeviceGroup: f.Group.ID}, 200, &d)
	return d
}

// newMeasurement allows a fresh agent digest in f's tenant.
func (e *env) newMeasurement(t *testing.T, f *fixture) sphere.AllowedMeasurement {
	t.Helper()
	var m sphere.AllowedMeasurement
	e.must(t, e.operator, "POST", f.path("/measurements"), api.AllowMeasurement{Type: "agent", Digest: randomDigest(t), Name: e.name("agent")}, 201, &m)
	return m
}

// revokedDevice claims a fresh device into f's Group and revokes it.
func (e *env) revokedDevice(t *testing.T, f *fixture, reason string) sphere.Device {
	t.Helper()
	d := e.newClaimedDevice(t, f)
	e.must(t, e.operator, "POST", f.path("/devices/"+d.ID+"/revoke"), api.RevokeDevice{Reason: reason}, 200, &d)
	return d
}

// randomDigest is a fresh lowercase hex SHA-256-sized digest.
func randomDigest(t testing.TB) string {
	t.Helper()
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// newPublisher registers a fresh publisher key in f's tenant, as the
// operator, and returns its private half and its registration.
func (e *env) newPublisher(t *testing.T, f *fixture) (*ecdsa.PrivateKey, sphere.SigningKey) {
	t.Helper()
	k := newSigner(t)
	var sk sphere.SigningKey
	e.must(t, e.operator, "POST", f.path("/signing-keys"), api.AddSigningKey{Name: e.name("publisher"), PublicKey: publicPEM(t, k)}, 201, &sk)
	return k, sk
}

// newImage uploads a fresh app image signed by f's Publisher, as the
// operator.
func (e *env) newImage(t *testing.T, f *fixture) sphere.Image {
	t.Helper()
	var im sphere.Image
	e.mustSend(t, e.operator, "POST", octets(f.path("/images"), packApp(t, f.Publisher, newGUID(t), e.name("app"), "1.0.0")), 201, &im)
	return im
}

// newDeployment deploys f's Image to f's Rollout group, as the operator,
// and returns the deployment: active, in its first wave. (A fresh group
// each time would do too, but every group costs each OS release a TUF
// signature.)
func (e *env) newDeployment(t *testing.T, f *fixture) sphere.Deployment {
	t.Helper()
	var d sphere.Deployment
	e.must(t, e.operator, "POST", f.path("/deployments"), api.CreateDeployment{DeviceGroup: f.Rollout.ID, ImageIDs: []string{f.Image.ID}}, 201, &d)
	return d
}

// deploymentIn returns a fresh deployment of f in state: active, paused
// or halted.
func (e *env) deploymentIn(t *testing.T, f *fixture, state string) sphere.Deployment {
	t.Helper()
	d := e.newDeployment(t, f)
	action := map[string]string{sphere.DeploymentPaused: "pause", sphere.DeploymentHalted: "halt"}[state]
	if action != "" {
		e.must(t, e.operator, "POST", f.path("/deployments/"+d.ID+"/"+action), api.DeploymentAction{Reason: "test setup"}, 200, &d)
	}
	if d.State != state {
		t.Fatalf("deployment %s is %s; want %s", d.ID, d.State, state)
	}
	return d
}

// newMember creates a user with role in f's tenant (not recorded as a
// fixture member).
func (e *env) newMember(t *testing.T, f *fixture, role sphere.Role) user {
	t.Helper()
	var ra api.RoleAdded
	name := e.userName("member")
	e.must(t, e.operator, "POST", f.path("/roles"), api.AddRole{User: name, Role: role}, 201, &ra)
	return user{Name: name, ID: ra.Assignment.UserID, Token: ra.Secret}
}

// newTenantLikeA creates a tenant where the users of tenant A hold the
// same roles as in A, for tests that rename a tenant.
func (e *env) newTenantLikeA(t *testing.T) sphere.Tenant {
	t.Helper()
	var tn sphere.Tenant
	e.must(t, e.operator, "POST", "/api/v1/tenants", api.CreateTenant{Name: e.name("Tenant")}, 201, &tn)
	for _, m := range []struct {
		u    user
		role sphere.Role
	}{{e.adminA, sphere.RoleAdministrator}, {e.contribA, sphere.RoleContributor}, {e.readerA, sphere.RoleReader}} {
		e.must(t, e.operator, "POST", "/api/v1/tenants/"+tn.ID+"/roles", api.AddRole{User: m.u.Name, Role: m.role}, 201, nil)
	}
	return tn
}

// newToken creates an API token for u.
func (e *env) newToken(t *testing.T, u user) sphere.Token {
	t.Helper()
	var nt api.NewToken
	e.must(t, u, "POST", "/api/v1/me/tokens", api.CreateToken{Name: e.name("token")}, 201, &nt)
	return nt.Token
}

// newRegistration makes a device registration with fresh ECDSA P-256
// identity and attestation keys, as PEM SubjectPublicKeyInfo.
func newRegistration(t testing.TB) api.RegisterDevice {
	t.Helper()
	return api.RegisterDevice{IdentityPublicKey: newPublicKeyPEM(t), AttestationPublicKey: newPublicKeyPEM(t)}
}

func newPublicKeyPEM(t testing.TB) string {
	t.Helper()
	return publicPEM(t, newSigner(t))
}

// newSigner makes a fresh ECDSA P-256 key, as publishers sign image
// packages with.
func newSigner(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// publicPEM is k's public key as a PEM SubjectPublicKeyInfo.
func publicPEM(t testing.TB, k *ecdsa.PrivateKey) string {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(&k.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
}

// newGUID is a fresh random GUID in canonical lowercase form, as image
// component ids are.
func newGUID(t testing.TB) string {
	t.Helper()
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	b[6], b[8] = b[6]&0x0f|0x40, b[8]&0x3f|0x80
	h := hex.EncodeToString(b)
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

// packApp makes an app image package signed by signer, with a small
// payload of its own.
func packApp(t testing.TB, signer *ecdsa.PrivateKey, component, name, version string) []byte {
	t.Helper()
	return pack(t, signer, image.Metadata{Kind: image.KindApp, ComponentID: component, Name: name, Version: version, SecurityVersion: 1,
		AppManifest: &image.AppManifest{SchemaVersion: 1, Name: name, ComponentId: component, EntryPoint: "/bin/x"}})
}

// packOS makes an OS image package signed by signer.
func packOS(t testing.TB, signer *ecdsa.PrivateKey, version string) []byte {
	t.Helper()
	return pack(t, signer, image.Metadata{Kind: image.KindOS, ComponentID: newGUID(t), Name: "OpenSphere OS", Version: version, SecurityVersion: 1})
}

func pack(t testing.TB, signer *ecdsa.PrivateKey, md image.Metadata) []byte {
	t.Helper()
	md.BuildTime = time.Now().UTC().Truncate(time.Second)
	payload := []byte(strings.Repeat(md.Name+" "+md.Version+" ", 64) + randomDigest(t))
	var buf bytes.Buffer
	if _, err := image.Pack(&buf, md, bytes.NewReader(payload), signer); err != nil {
		t.Fatalf("image.Pack: %v", err)
	}
	return buf.Bytes()
}

// ---- requests ----

// request is a request without its method and caller. intact, if set,
// checks that a refused request left its target as it was.
type request struct {
	path string
	body any // nil: no body; string or []byte: sent as is; anything else: JSON
	// contentType defaults to application/json when there is a body; "-"
	// sends none.
	contentType string
	header      http.Header // more request headers, e.g. Range
	intact      func(t *testing.T)
}

// octets is a request whose body is a file (an image package), sent raw
// as application/octet-stream.
func octets(path string, b []byte) request {
	return request{path: path, body: b, contentType: "application/octet-stream"}
}

// response is what the server answered.
type response struct {
	Status    int
	Header    http.Header
	Body      []byte
	RequestID string // the X-Request-Id the request was sent with
}

// send makes one request. auth is the whole Authorization header, "" for
// none. Every request carries a unique X-Request-Id, and send checks that
// the server echoes it.
func (e *env) send(t testing.TB, auth, method string, req request) response {
	t.Helper()
	var body io.Reader
	contentType := req.contentType
	switch b := req.body.(type) {
	case nil:
	case string:
		body = strings.NewReader(b)
	case []byte:
		body = bytes.NewReader(b)
	default:
		j, err := json.Marshal(b)
		if err != nil {
			t.Fatal(err)
		}
		body = bytes.NewReader(j)
	}
	if body != nil && contentType == "" {
		contentType = "application/json"
	}
	r, err := http.NewRequest(method, e.url+req.path, body)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range req.header {
		r.Header[k] = v
	}
	if auth != "" {
		r.Header.Set("Authorization", auth)
	}
	if contentType != "" && contentType != "-" {
		r.Header.Set("Content-Type", contentType)
	}
	id := fmt.Sprintf("test-%d", e.reqSeq.Add(1))
	r.Header.Set("X-Request-Id", id)
	resp, err := e.http.Do(r)
	if err != nil {
		t.Fatalf("%s %s: %v", method, req.path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: reading the response: %v", method, req.path, err)
	}
	if got := resp.Header.Get("X-Request-Id"); got != id {
		t.Errorf("%s %s: X-Request-Id = %q; want the one sent, %q", method, req.path, got, id)
	}
	return response{Status: resp.StatusCode, Header: resp.Header, Body: b, RequestID: id}
}

// must sends a request as u, fails the test unless the status is want,
// and decodes the body into out if out is not nil.
func (e *env) must(t testing.TB, u user, method, path string, body any, want int, out any) response {
	t.Helper()
	return e.mustSend(t, u, method, request{path: path, body: body}, want, out)
}

// mustSend is must for a whole request, such as a raw upload.
func (e *env) mustSend(t testing.TB, u user, method string, req request, want int, out any) response {
	t.Helper()
	r := e.send(t, u.auth(), method, req)
	if r.Status != want {
		t.Fatalf("%s %s as %s: status %d, want %d; body: %s", method, req.path, u.Name, r.Status, want, r.Body)
	}
	if out != nil {
		if err := json.Unmarshal(r.Body, out); err != nil {
			t.Fatalf("%s %s: decoding %T: %v; body: %s", method, req.path, out, err, r.Body)
		}
	}
	return r
}

// wantError checks that r is an error of the one shape, with the status and
// code given and a message, and returns the message.
func wantError(t testing.TB, r response, status int, code string) string {
	t.Helper()
	if r.Status != status {
		t.Errorf("status %d, want %d; body: %s", r.Status, status, r.Body)
	}
	if ct := r.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("error Content-Type %q, want application/json", ct)
	}
	var eb api.ErrorBody
	dec := json.NewDecoder(bytes.NewReader(r.Body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&eb); err != nil {
		t.Errorf("error body is not {\"error\":{\"code\",\"message\"}}: %v; body: %s", err, r.Body)
		return ""
	}
	if eb.Error.Code != code {
		t.Errorf("error code %q, want %q; message: %s", eb.Error.Code, code, eb.Error.Message)
	}
	if strings.TrimSpace(eb.Error.Message) == "" {
		t.Errorf("error %s has an empty message", eb.Error.Code)
	}
	return eb.Error.Message
}

// wantNoLeak fails if the response shows any of secrets that the request
// did not itself contain.
func wantNoLeak(t testing.TB, req request, r response, secrets []string) {
	t.Helper()
	sent := req.path
	if req.body != nil {
		b, _ := json.Marshal(req.body)
		sent += string(b)
		switch raw := req.body.(type) {
		case string:
			sent += raw
		case []byte:
			sent += string(raw)
		}
	}
	if u, err := url.PathUnescape(sent); err == nil {
		sent += u
	}
	for _, s := range secrets {
		if s != "" && bytes.Contains(r.Body, []byte(s)) && !strings.Contains(sent, s) {
			t.Errorf("the response shows %q, which belongs to a tenant the caller holds no role in; body: %s", s, r.Body)
		}
	}
}

// auditEntry returns the audit entry written for the request with the
// given id, looking through the newest entries of the whole log.
func (e *env) auditEntry(t testing.TB, requestID string) (sphere.AuditEntry, bool) {
	t.Helper()
	page, err := e.store.ListAllAudit(context.Background(), store.AuditFilter{}, store.PageRequest{Size: 50})
	if err != nil {
		t.Fatalf("ListAllAudit: %v", err)
	}
	for _, a := range page.Items {
		if a.RequestID == requestID {
			return a, true
		}
	}
	return sphere.AuditEntry{}, false
}

// refused sends req as u and checks that it is refused with status, code
// and a message containing msg; that snapshot is the same before and
// after (nothing changed); and that the refusal is audited if it was a
// change (and not if it was a read).
func (e *env) refused(t *testing.T, u user, method string, req request, status int, code, msg string, snapshot func(*testing.T) map[string]string) {
	t.Helper()
	before := snapshot(t)
	r := e.send(t, u.auth(), method, req)
	got := wantError(t, r, status, code)
	if !strings.Contains(got, msg) {
		t.Errorf("message %q does not say %q", got, msg)
	}
	if after := snapshot(t); !maps.Equal(before, after) {
		for k, v := range after {
			if before[k] != v {
				t.Errorf("the refused request changed %s:\n%s\n->\n%s", k, before[k], v)
			}
		}
	}
	a, audited := e.auditEntry(t, r.RequestID)
	switch {
	case method == "GET" && audited:
		t.Errorf("a read was audited: %+v", a)
	case method != "GET" && !audited:
		t.Errorf("no audit entry for the refused %s %s", method, req.path)
	case method != "GET" && (a.Actor != u.Name || a.Result != code || a.Status != status):
		t.Errorf("audit entry %+v; want actor %s, result %s, status %d", a, u.Name, code, status)
	}
}
