package agent

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"log/slog"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/opensphere/sphere"
	"github.com/opensphere/sphere/blob"
	"github.com/opensphere/sphere/ca"
	"github.com/opensphere/sphere/rot"
	"github.com/opensphere/sphere/server"
	"github.com/opensphere/sphere/store"
	"github.com/opensphere/sphere/tlsutil"
	"github.com/opensphere/sphere/updates"
	"github.com/opensphere/sphere/verifier"
)

// clock is a settable clock shared by the service's parts in a test.
type clock struct {
	mu     sync.Mutex
	offset time.Duration
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return time.Now().Add(c.offset)
}

func (c *clock) Advance(d time.Duration) { c.mu.Lock(); c.offset += d; c.mu.Unlock() }

// service is a real security service on 127.0.0.1 over TLS that asks for
// client certificates, as `sphere serve` does.
type service struct {
	st      *store.Store
	ca      *ca.Authority
	upd     *updates.Service
	blobDir string
	url     string
	roots   *x509.CertPool
	// rootCert is the service's TLS certificate, which roots holds.
	rootCert *x509.Certificate
	clock    *clock
	tenant   *store.TenantStore
	// groups by name, in the product "Thermostat"
	groups map[string]sphere.DeviceGroup
}

func startService(t testing.TB) *service {
	t.Helper()
	ctx := context.Background()
	clk := &clock{}
	st, err := store.Open(ctx, store.Config{DSN: filepath.Join(t.TempDir(), "sphere.db"), Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	kek, err := ca.NewKEK(bytes.Repeat([]byte{9}, 32))
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	authority, err := ca.New(ctx, ca.Config{Store: st, KEK: kek, Now: clk.Now, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	blobDir := filepath.Join(t.TempDir(), "blobs")
	blobs, err := blob.NewFS(blobDir)
	if err != nil {
		t.Fatal(err)
	}
	upd, err := updates.New(updates.Config{Store: st, Blobs: blobs, KEK: kek, Now: clk.Now, Log: log})
	if err != nil {
		t.Fatal(err)
	}
	att, err := verifier.New(verifier.Config{Store: st, CA: authority, MACKey: kek.Derive("challenge mac"), Images: upd, Now: clk.Now, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	// The service's own listener, as `sphere serve` runs it, parking idle
	// connections after 50 ms: the agent's calls of one session find their
	// connection parked now and then.
	srv, err := server.New(server.Config{Store: st, CA: authority, Attest: att, Updates: upd, Now: clk.Now, Logger: log, ParkIdleAfter: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	cert, _, err := tlsutil.LoadOrCreateSelfSigned(t.TempDir(), nil, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	rootCert, err := x509.ParseCertificate(cert.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	sctx, stop := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() {
		served <- srv.Serve(sctx, ln, &tls.Config{Certificates: []tls.Certificate{cert}, ClientAuth: tls.RequestClientCert, MinVersion: tls.VersionTLS12})
	}()
	t.Cleanup(func() {
		stop()
		if err := <-served; err != nil {
			t.Errorf("server.Serve: %v", err)
		}
	})
	roots := x509.NewCertPool()
	roots.AddCert(rootCert)

	tn, err := st.CreateTenant(ctx, "Acme", "")
	if err != nil {
		t.Fatal(err)
	}
	ts := st.Tenant(tn.ID)
	p, err := ts.CreateProduct(ctx, "Thermostat", "")
	if err != nil {
		t.Fatal(err)
	}
	gs, err := ts.ListDeviceGroups(ctx, store.DeviceGroupFilter{Product: p.ID}, store.PageRequest{})
	if err != nil {
		t.Fatal(err)
	}
	groups := map[string]sphere.DeviceGroup{}
	for _, g := range gs.Items {
		groups[g.Name] = g
	}
	return &service{st: st, ca: authority, upd: upd, blobDir: blobDir, url: "https://" + ln.Addr().String(), roots: roots, rootCert: rootCert, clock: clk, tenant: ts, groups: groups}
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// device is an agent with its root of trust, not yet registered.
type device struct {
	rot   rot.RootOfTrust
	agent *Agent
	dir   string
}

// newDevice makes an agent on r pointed at svc.
func (svc *service) newDevice(t testing.TB, r rot.RootOfTrust, dir string) *device {
	t.Helper()
	a, err := New(Config{Server: svc.url, StateDir: dir, RoT: r, ServerRoots: svc.roots, Now: svc.clock.Now,
		Logger: slog.New(slog.NewTextHandler(testWriter{t}, nil))})
	if err != nil {
		t.Fatal(err)
	}
	return &device{rot: r, agent: a, dir: dir}
}

// enroll registers the device as its manufacturer would, claims it into
// group, and allows what it measures.
func (svc *service) enroll(t testing.TB, d *device, group string) {
	t.Helper()
	ctx := context.Background()
	rec, err := IdentityRecord(d.rot)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := svc.st.RegisterDevice(ctx, store.Registration{IdentityPublicKey: []byte(rec.IdentityPublicKey),
		AttestationPublicKey: []byte(rec.AttestationPublicKey), RoT: rec.RoT}); err != nil {
		t.Fatal(err)
	}
	if _, err := svc.tenant.ClaimDevice(ctx, rec.DeviceID, svc.groups[group].ID); err != nil {
		t.Fatal(err)
	}
	svc.allow(t, d, sphere.MeasurementAllowed)
}

// allow puts what d measures on the tenant's allowlist with status.
func (svc *service) allow(t testing.TB, d *device, status string) {
	t.Helper()
	events, err := d.agent.Measurements()
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range events {
		if _, err := svc.tenant.AllowMeasurement(context.Background(), e.Type, e.Digest, e.Name, status); err != nil {
			t.Fatal(err)
		}
	}
}

// rootImpl opens a fresh root of trust for a test.
type rootImpl struct {
	name string
	open func(t *testing.T, dir string) rot.RootOfTrust
	// hardware is true for a TPM.
	hardware bool
}

// roots lists the roots of trust the tests run on; a cgo build adds the
// TPM simulator (tpm_sim_test.go).
var roots = []rootImpl{{name: "soft", open: func(t *testing.T, dir string) rot.RootOfTrust {
	r, err := rot.OpenSoft(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}}}

func storePage() store.PageRequest { return store.PageRequest{Size: store.MaxPageSize} }
