package ca

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/opensphere/sphere/store"
)

// clock is a settable test clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time      { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Add(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

type fixture struct {
	st     *store.Store
	a      *Authority
	clk    *clock
	tenant string
	dir    string
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	ctx := context.Background()
	clk := &clock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	dir := t.TempDir()
	st, err := store.Open(ctx, store.Config{DSN: filepath.Join(dir, "s.db"), Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	kek, created, err := LoadOrCreateKEK(filepath.Join(dir, "kek"), true)
	if err != nil || !created {
		t.Fatalf("kek: %v created=%v", err, created)
	}
	a, err := New(ctx, Config{Store: st, KEK: kek, Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	tn, err := st.CreateTenant(ctx, "Acme", "")
	if err != nil {
		t.Fatal(err)
	}
	return &fixture{st: st, a: a, clk: clk, tenant: tn.ID, dir: dir}
}

func deviceKey(t *testing.T) *ecdsa.PrivateKey {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// registerDevice makes a device row so that issued certificates can be
// recorded against it.
func (f *fixture) device(t *testing.T) (string, *ecdsa.PrivateKey) {
	t.Helper()
	id, ak := deviceKey(t), deviceKey(t)
	idDER, _ := x509.MarshalPKIXPublicKey(&id.PublicKey)
	akDER, _ := x509.MarshalPKIXPublicKey(&ak.PublicKey)
	d, err := f.st.RegisterDevice(context.Background(), store.Registration{IdentityPublicKey: idDER, AttestationPublicKey: akDER})
	if err != nil {
		t.Fatal(err)
	}
	return d.ID, id
}

func writePEM(t *testing.T, path string, certs ...*x509.Certificate) {
	t.Helper()
	var b []byte
	for _, c := range certs {
		b = append(b, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// opensslVerify checks leaf against the bundle with the real openssl at the
// fixture's clock time, for client-auth use.
func (f *fixture) opensslVerify(t *testing.T, leaf *x509.Certificate, bundle []*x509.Certificate) error {
	t.Helper()
	return opensslVerifyAt(t, leaf, bundle, f.clk.Now())
}

func opensslVerifyAt(t *testing.T, leaf *x509.Certificate, bundle []*x509.Certificate, at time.Time) error {
	t.Helper()
	if _, err := exec.LookPath("openssl"); err != nil {
		t.Skip("openssl is not installed")
	}
	dir := t.TempDir()
	writePEM(t, filepath.Join(dir, "bundle.pem"), bundle...)
	writePEM(t, filepath.Join(dir, "leaf.pem"), leaf)
	out, err := exec.Command("openssl", "verify", "-attime", strconv.FormatInt(at.Unix(), 10), "-purpose", "sslclient",
		"-CAfile", filepath.Join(dir, "bundle.pem"), filepath.Join(dir, "leaf.pem")).CombinedOutput()
	if err != nil {
		return &verifyError{string(out)}
	}
	return nil
}

type verifyError struct{ out string }

func (e *verifyError) Error() string { return strings.TrimSpace(e.out) }

func TestDeviceCertificate(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	devID, key := f.device(t)
	iss, err := f.a.IssueDevice(ctx, f.tenant, devID, &key.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	c := iss.Cert
	if c.Subject.CommonName != devID {
		t.Errorf("CN = %q; want the device id", c.Subject.CommonName)
	}
	if got := c.NotAfter.Sub(c.NotBefore); got != DeviceLifetime+Backdate {
		t.Errorf("lifetime = %v; want 24h plus the %v backdate", got, Backdate)
	}
	if !c.NotBefore.Equal(f.clk.Now().Add(-Backdate)) {
		t.Errorf("NotBefore = %v; want now - %v", c.NotBefore, Backdate)
	}
	if len(c.URIs) != 1 || c.URIs[0].String() != "urn:opensphere:tenant:"+f.tenant+":device:"+devID {
		t.Errorf("URI SANs = %v", c.URIs)
	}
	if len(c.ExtKeyUsage) != 1 || c.ExtKeyUsage[0] != x509.ExtKeyUsageClientAuth || c.KeyUsage != x509.KeyUsageDigitalSignature {
		t.Errorf("EKU %v KU %v; want clientAuth and digitalSignature", c.ExtKeyUsage, c.KeyUsage)
	}
	bundle, err := f.a.Bundle(ctx, f.tenant)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.opensslVerify(t, c, bundle); err != nil {
		t.Errorf("openssl verify: %v", err)
	}
	if f.a.Root().PublicKeyAlgorithm != x509.ECDSA || f.a.Root().PublicKey.(*ecdsa.PublicKey).Curve != elliptic.P384() {
		t.Error("root CA is not P-384")
	}
	cas, _ := f.a.TenantCAs(ctx, f.tenant)
	if len(cas) != 1 || cas[0].State != StateActive || cas[0].Cert.PublicKey.(*ecdsa.PublicKey).Curve != elliptic.P256() ||
		cas[0].NotAfter.Sub(cas[0].NotBefore) != TenantCALifetime+Backdate {
		t.Errorf("tenant CAs = %+v; want one active P-256 two-year CA", cas)
	}
}

// TestRotation walks a tenant CA through its life with the injected clock:
// the successor appears 90 days before expiry, is Inactive for 45 days,
// then Active; during the overlap certificates under both CAs verify
// against the published bundle; after the old CA expires only the new
// CA's certificates do.
func TestRotation(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	devID, key := f.device(t)
	first, err := f.a.IssueDevice(ctx, f.tenant, devID, &key.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	cas, _ := f.a.TenantCAs(ctx, f.tenant)
	old := cas[0]

	// One day before the rotation point nothing happens.
	f.clk.t = old.NotAfter.Add(-RotateBefore - 24*time.Hour)
	if err := f.a.Rotate(ctx, f.tenant); err != nil {
		t.Fatal(err)
	}
	if cas, _ = f.a.TenantCAs(ctx, f.tenant); len(cas) != 1 {
		t.Fatalf("rotated too early: %d CAs", len(cas))
	}

	// At 90 days before expiry a successor appears, Inactive.
	f.clk.t = old.NotAfter.Add(-RotateBefore)
	devOld, err := f.a.IssueDevice(ctx, f.tenant, devID, &key.PublicKey) // issuing also rotates
	if err != nil {
		t.Fatal(err)
	}
	if err := f.a.Rotate(ctx, f.tenant); err != nil { // and rotating again adds nothing
		t.Fatal(err)
	}
	cas, _ = f.a.TenantCAs(ctx, f.tenant)
	if len(cas) != 2 || cas[0].State != StateActive || cas[1].State != StateInactive {
		t.Fatalf("after 90 days before expiry: %v; want [Active Inactive]", stateList(cas))
	}
	if devOld.CAID != old.ID {
		t.Errorf("an Inactive CA issued a certificate")
	}
	if want := f.clk.Now().Add(ActivateAfter); !cas[1].ActivatesAt.Equal(want) {
		t.Errorf("successor activates at %v; want %v", cas[1].ActivatesAt, want)
	}

	// An hour before the switch the old CA still issues; 45 days after the
	// successor appeared it is Active and issues; the old CA is Inactive
	// and still trusted, so both devices' certificates verify.
	f.clk.Add(ActivateAfter - time.Hour)
	if devOld, err = f.a.IssueDevice(ctx, f.tenant, devID, &key.PublicKey); err != nil || devOld.CAID != old.ID {
		t.Fatalf("issue just before the switch: %v (CA %s)", err, devOld.CAID)
	}
	f.clk.Add(time.Hour)
	devNew, err := f.a.IssueDevice(ctx, f.tenant, devID, &key.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	cas, _ = f.a.TenantCAs(ctx, f.tenant)
	if cas[0].State != StateInactive || cas[1].State != StateActive || devNew.CAID != cas[1].ID {
		t.Fatalf("after activation: %v, issuing CA %s", stateList(cas), devNew.CAID)
	}
	bundle, _ := f.a.Bundle(ctx, f.tenant)
	if len(bundle) != 3 {
		t.Fatalf("bundle during overlap has %d certificates; want both tenant CAs and the root", len(bundle))
	}
	if err := f.opensslVerify(t, devOld.Cert, bundle); err != nil {
		t.Errorf("overlap: old CA's certificate: %v", err)
	}
	if err := f.opensslVerify(t, devNew.Cert, bundle); err != nil {
		t.Errorf("overlap: new CA's certificate: %v", err)
	}

	// After the old CA expires only the new CA's certificates verify.
	f.clk.t = old.NotAfter.Add(time.Hour)
	late, err := f.a.IssueDevice(ctx, f.tenant, devID, &key.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	cas, _ = f.a.TenantCAs(ctx, f.tenant)
	if cas[0].State != StateExpired || cas[1].State != StateActive {
		t.Fatalf("after expiry: %v", stateList(cas))
	}
	bundle, _ = f.a.Bundle(ctx, f.tenant)
	if len(bundle) != 2 {
		t.Errorf("bundle after expiry has %d certificates; want the new CA and the root", len(bundle))
	}
	if err := f.opensslVerify(t, late.Cert, bundle); err != nil {
		t.Errorf("after expiry: new CA's certificate: %v", err)
	}
	// The expired CA has left the bundle: a certificate it issued fails
	// against it even at a time when the certificate itself was valid.
	if err := opensslVerifyAt(t, devOld.Cert, bundle, devOld.Cert.NotBefore.Add(time.Hour)); err == nil {
		t.Error("after expiry: a certificate under the expired CA still verifies against the bundle")
	}
	if err := opensslVerifyAt(t, first.Cert, bundle, first.Cert.NotBefore.Add(time.Hour)); err == nil {
		t.Error("after expiry: the first certificate still verifies against the bundle")
	}
}

func stateList(cas []TenantCA) []string {
	var s []string
	for _, c := range cas {
		s = append(s, c.State)
	}
	return s
}
