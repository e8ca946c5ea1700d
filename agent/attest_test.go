package agent

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/opensphere/sphere"
	"github.com/opensphere/sphere/api"
	"github.com/opensphere/sphere/attest"
	"github.com/opensphere/sphere/ca"
	"github.com/opensphere/sphere/rot"
)

// TestEnrollAttestAndCall is the whole first day of a device, on each root
// of trust: identity -> register -> claim -> attest -> 24-hour certificate,
// which openssl verifies against the tenant chain, and which then
// authenticates the device over mutual TLS.
func TestEnrollAttestAndCall(t *testing.T) {
	for _, impl := range roots {
		t.Run(impl.name, func(t *testing.T) {
			svc := startService(t)
			dir := t.TempDir()
			d := svc.newDevice(t, impl.open(t, dir), dir)
			group := "Development"
			if impl.hardware {
				group = "Production" // requires a hardware root of trust
			}
			svc.enroll(t, d, group)
			ctx := context.Background()

			// Before attesting, the mTLS-only route refuses the device.
			var self api.DeviceSelf
			var se *ServiceError
			if err := d.agent.Get(ctx, "/device/v1/whoami", &self); !errors.As(err, &se) || se.Status != http.StatusUnauthorized {
				t.Fatalf("whoami without a certificate: %v; want 401", err)
			}

			if err := d.agent.Measure(); err != nil {
				t.Fatal(err)
			}
			res, err := d.agent.Attest(ctx)
			if err != nil {
				t.Fatalf("Attest: %v", err)
			}
			if res.Result != sphere.AttestHealthy {
				t.Fatalf("result %+v; want healthy", res)
			}
			cert := d.agent.Certificate()
			if cert.Subject.CommonName != d.agent.DeviceID() {
				t.Errorf("CN = %q; want the device id %s", cert.Subject.CommonName, d.agent.DeviceID())
			}
			if life := cert.NotAfter.Sub(cert.NotBefore); life != 24*time.Hour+ca.Backdate {
				t.Errorf("certificate lives %v; want 24h (NotBefore backdated %v)", life, ca.Backdate)
			}
			if !cert.PublicKey.(*ecdsa.PublicKey).Equal(d.rot.Identity().Public()) {
				t.Error("the certificate is not for the root of trust's identity key")
			}
			bundle, err := svc.ca.Bundle(ctx, svc.tenant.ID())
			if err != nil {
				t.Fatal(err)
			}
			opensslVerify(t, cert, bundle)

			// The certificate authenticates the device over mutual TLS.
			if err := d.agent.Get(ctx, "/device/v1/whoami", &self); err != nil {
				t.Fatalf("whoami with the certificate: %v", err)
			}
			if self.DeviceID != d.agent.DeviceID() || self.TenantID != svc.tenant.ID() || self.DeviceGroupID != svc.groups[group].ID {
				t.Errorf("whoami = %+v", self)
			}
			// The service is sent the leaf alone (it holds the tenant's
			// CAs); brokers get the whole chain.
			if got := self.PresentedCertificates; got != 1 {
				t.Errorf("the service was sent %d certificates; want the leaf alone", got)
			}
			if n := len(d.agent.TLSCertificate().Certificate); n < 2 {
				t.Errorf("TLSCertificate holds %d certificates; want the leaf and its chain", n)
			}

			// The service recorded the attestation for operators.
			dev, err := svc.tenant.GetDevice(ctx, d.agent.DeviceID())
			if err != nil {
				t.Fatal(err)
			}
			if dev.LastAttestation == nil || dev.LastAttestation.Result != sphere.AttestHealthy || dev.CertNotAfter == nil {
				t.Errorf("device record after attesting: %+v", dev)
			}

			// A restarted agent picks its certificate up from the state dir.
			again, err := New(Config{Server: svc.url, StateDir: dir, RoT: d.rot, ServerRoots: svc.roots, Now: svc.clock.Now})
			if err != nil {
				t.Fatal(err)
			}
			if c := again.Certificate(); c == nil || !c.Equal(cert) {
				t.Error("a new agent did not load the stored certificate")
			}

			// Revoked: the current certificate is refused at once and the
			// next attestation is refused with the reason.
			if _, err := svc.tenant.RevokeDevice(ctx, dev.ID, "reported stolen"); err != nil {
				t.Fatal(err)
			}
			if err := d.agent.Get(ctx, "/device/v1/whoami", &self); !errors.As(err, &se) || se.Status != http.StatusForbidden {
				t.Errorf("whoami of a revoked device: %v; want 403", err)
			}
			res, err = d.agent.Attest(ctx)
			var ae *AttestError
			if !errors.As(err, &ae) || res.Reason != attest.ReasonRevoked || !strings.Contains(res.Detail, "reported stolen") {
				t.Errorf("attest when revoked: %+v, %v; want refused %s with the reason", res, err, attest.ReasonRevoked)
			}
		})
	}
}

// opensslVerify checks a device certificate with the real openssl, for
// TLS client use, against the tenant chain bundle.
func opensslVerify(t *testing.T, leaf *x509.Certificate, bundle []*x509.Certificate) {
	t.Helper()
	if _, err := exec.LookPath("openssl"); err != nil {
		t.Skip("openssl is not installed")
	}
	dir := t.TempDir()
	var b []byte
	for _, c := range bundle {
		b = append(b, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
	}
	os.WriteFile(filepath.Join(dir, "chain.pem"), b, 0o644)
	os.WriteFile(filepath.Join(dir, "leaf.pem"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: leaf.Raw}), 0o644)
	out, err := exec.Command("openssl", "verify", "-purpose", "sslclient", "-CAfile", filepath.Join(dir, "chain.pem"), filepath.Join(dir, "leaf.pem")).CombinedOutput()
	if err != nil || !strings.Contains(string(out), ": OK") {
		t.Errorf("openssl verify: %v\n%s", err, out)
	}
}

// evidence builds what the agent sends, from a root of trust, for a
// challenge; tests then break one link of it.
func evidence(t testing.TB, r rot.RootOfTrust, deviceID, nonce string) attest.Evidence {
	t.Helper()
	raw, err := attest.DecodeNonce(nonce)
	if err != nil {
		t.Fatal(err)
	}
	q, err := r.Quote(attest.QuoteNonce(raw))
	if err != nil {
		t.Fatal(err)
	}
	c, err := r.CertifyIdentity(attest.CertifyNonce(raw))
	if err != nil {
		t.Fatal(err)
	}
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: deviceID}}, r.Identity())
	if err != nil {
		t.Fatal(err)
	}
	return attest.Evidence{DeviceID: deviceID, Challenge: nonce, RoT: r.Kind(), Quote: q, EventLog: r.EventLog(),
		IdentityPublicArea: r.IdentityPublicArea(), Certify: c, CSR: csr}
}

// post sends JSON to the device API without a client certificate.
func (svc *service) post(t testing.TB, a *Agent, path string, in, out any) {
	t.Helper()
	if err := a.call(context.Background(), a.open, "POST", path, in, out); err != nil {
		t.Fatalf("POST %s: %v", path, err)
	}
}

func (svc *service) challenge(t testing.TB, a *Agent, deviceID string) string {
	var ch attest.Challenge
	svc.post(t, a, "/device/v1/challenge", api.ChallengeRequest{DeviceID: deviceID}, &ch)
	return ch.Nonce
}

// TestRefusals breaks one link of the evidence chain per case and checks
// the reason the service gives, on each root of trust.
func TestRefusals(t *testing.T) {
	for _, impl := range roots {
		t.Run(impl.name, func(t *testing.T) { testRefusals(t, impl) })
	}
}

func testRefusals(t *testing.T, impl rootImpl) {
	svc := startService(t)
	ctx := context.Background()
	dir := t.TempDir()
	d := svc.newDevice(t, impl.open(t, dir), dir)
	svc.enroll(t, d, "Development")
	if err := d.agent.Measure(); err != nil {
		t.Fatal(err)
	}
	id := d.agent.DeviceID()
	// A second device, software, for "someone else's key" cases.
	otherDir := t.TempDir()
	other := svc.newDevice(t, roots[0].open(t, otherDir), otherDir)
	if err := other.agent.Measure(); err != nil {
		t.Fatal(err)
	}

	cases := []struct {
		name   string
		setup  func(t *testing.T) attest.Evidence
		want   string // reason
		result string // default refused
	}{
		{"ok", func(t *testing.T) attest.Evidence { return evidence(t, d.rot, id, svc.challenge(t, d.agent, id)) }, "", sphere.AttestHealthy},
		{"error/replayed nonce", func(t *testing.T) attest.Evidence {
			ev := evidence(t, d.rot, id, svc.challenge(t, d.agent, id))
			var first attest.Result
			svc.post(t, d.agent, "/device/v1/attest", ev, &first)
			if first.Result != sphere.AttestHealthy {
				t.Fatalf("first use: %+v", first)
			}
			return ev
		}, attest.ReasonNonceReplayed, ""},
		{"error/expired nonce", func(t *testing.T) attest.Evidence {
			n := svc.challenge(t, d.agent, id)
			svc.clock.Advance(attest.ChallengeTTL + time.Second)
			return evidence(t, d.rot, id, n)
		}, attest.ReasonNonceExpired, ""},
		{"error/another device's nonce", func(t *testing.T) attest.Evidence {
			return evidence(t, d.rot, id, svc.challenge(t, d.agent, other.agent.DeviceID()))
		}, attest.ReasonNonceInvalid, ""},
		{"error/forged nonce", func(t *testing.T) attest.Evidence {
			raw, _ := attest.DecodeNonce(svc.challenge(t, d.agent, id))
			raw[len(raw)-1] ^= 1 // a bit of the MAC
			return evidence(t, d.rot, id, base64.RawURLEncoding.EncodeToString(raw))
		}, attest.ReasonNonceInvalid, ""},
		{"error/tampered event log", func(t *testing.T) attest.Evidence {
			ev := evidence(t, d.rot, id, svc.challenge(t, d.agent, id))
			ev.EventLog[1].Name = "agent-settings-edited"
			return ev
		}, attest.ReasonEventLogMismatch, ""},
		{"error/event dropped from the log", func(t *testing.T) attest.Evidence {
			ev := evidence(t, d.rot, id, svc.challenge(t, d.agent, id))
			ev.EventLog = ev.EventLog[:1]
			return ev
		}, attest.ReasonEventLogMismatch, ""},
		{"error/quote by an unregistered key", func(t *testing.T) attest.Evidence {
			ev := evidence(t, d.rot, id, svc.challenge(t, d.agent, id))
			forged := evidence(t, other.rot, id, ev.Challenge)
			ev.Quote = forged.Quote // signed by the other device's attestation key
			ev.EventLog = forged.EventLog
			return ev
		}, attest.ReasonQuoteInvalid, ""},
		{"error/unregistered device", func(t *testing.T) attest.Evidence {
			oid := other.agent.DeviceID()
			ev := evidence(t, other.rot, oid, svc.challenge(t, other.agent, oid))
			ev.RoT = rot.Kind(impl.name)
			return ev
		}, attest.ReasonUnregistered, ""},
		{"error/CSR key not certified by the attestation key", func(t *testing.T) attest.Evidence {
			ev := evidence(t, d.rot, id, svc.challenge(t, d.agent, id))
			k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
			ev.CSR, _ = x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: id}}, k)
			return ev
		}, attest.ReasonCSRKeyNotCertified, ""},
		{"error/identity certification by another attestation key", func(t *testing.T) attest.Evidence {
			ev := evidence(t, d.rot, id, svc.challenge(t, d.agent, id))
			forged := evidence(t, other.rot, id, ev.Challenge)
			ev.Certify, ev.IdentityPublicArea = forged.Certify, forged.IdentityPublicArea
			return ev
		}, attest.ReasonCertifyInvalid, ""},
		{"error/claims another root of trust", func(t *testing.T) attest.Evidence {
			ev := evidence(t, d.rot, id, svc.challenge(t, d.agent, id))
			ev.RoT = map[rot.Kind]rot.Kind{rot.KindSoft: rot.KindTPM, rot.KindTPM: rot.KindSoft}[ev.RoT]
			return ev
		}, attest.ReasonRoTMismatch, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ev := c.setup(t)
			var res attest.Result
			svc.post(t, d.agent, "/device/v1/attest", ev, &res)
			want := c.result
			if want == "" {
				want = sphere.AttestRefused
			}
			if res.Result != want || res.Reason != c.want {
				t.Fatalf("got %s (%s: %s); want %s %s", res.Result, res.Reason, res.Detail, want, c.want)
			}
			if want == sphere.AttestRefused && res.Certificate != "" {
				t.Error("a refused attestation carried a certificate")
			}
		})
	}

	// States of the device and its group, each refused with its reason,
	// which `sphere device show` displays.
	states := []struct {
		name  string
		apply func(t *testing.T)
		undo  func(t *testing.T)
		want  string
	}{
		{"error/unclaimed device", func(t *testing.T) {
			if _, err := svc.tenant.ReleaseDevice(ctx, id); err != nil {
				t.Fatal(err)
			}
		}, func(t *testing.T) {
			if _, err := svc.tenant.ClaimDevice(ctx, id, svc.groups["Development"].ID); err != nil {
				t.Fatal(err)
			}
		}, attest.ReasonUnclaimed},
		{"error/revoked device", func(t *testing.T) {
			if _, err := svc.tenant.RevokeDevice(ctx, id, "lost in transit"); err != nil {
				t.Fatal(err)
			}
		}, func(t *testing.T) {
			if _, err := svc.tenant.UnrevokeDevice(ctx, id); err != nil {
				t.Fatal(err)
			}
		}, attest.ReasonRevoked},
		{"error/unknown software", func(t *testing.T) {
			ms, _ := svc.tenant.ListMeasurements(ctx, storePage())
			for _, m := range ms.Items {
				if m.Type == "agent" {
					svc.tenant.RemoveMeasurement(ctx, m.ID)
				}
			}
		}, func(t *testing.T) { svc.allow(t, d, sphere.MeasurementAllowed) }, attest.ReasonUnknownSoftware},
		{"stale/deprecated software", func(t *testing.T) { svc.allow(t, d, sphere.MeasurementDeprecated) },
			func(t *testing.T) { svc.allow(t, d, sphere.MeasurementAllowed) }, attest.ReasonStaleSoftware},
	}
	if !impl.hardware {
		states = append(states, struct {
			name  string
			apply func(t *testing.T)
			undo  func(t *testing.T)
			want  string
		}{"error/software root of trust where hardware is required", func(t *testing.T) {
			if _, err := svc.tenant.MoveDevice(ctx, id, svc.groups["Production"].ID); err != nil {
				t.Fatal(err)
			}
		}, func(t *testing.T) {
			if _, err := svc.tenant.MoveDevice(ctx, id, svc.groups["Development"].ID); err != nil {
				t.Fatal(err)
			}
		}, attest.ReasonHardwareRequired})
	}
	for _, c := range states {
		t.Run(c.name, func(t *testing.T) {
			c.apply(t)
			defer c.undo(t)
			res, err := d.agent.Attest(ctx)
			var ae *AttestError
			if !errors.As(err, &ae) || res.Reason != c.want {
				t.Fatalf("got %+v, %v; want reason %s", res, err, c.want)
			}
			dev, err := svc.st.GetDevice(ctx, id)
			if err != nil {
				t.Fatal(err)
			}
			if dev.LastAttestation == nil || dev.LastAttestation.Reason != c.want || dev.LastAttestation.Detail == "" {
				t.Errorf("recorded attestation %+v; want reason %s with a detail", dev.LastAttestation, c.want)
			}
		})
	}

	// And after all that, the device still attests.
	if _, err := d.agent.Attest(ctx); err != nil {
		t.Fatalf("final attestation: %v", err)
	}
}

// TestMalformedEvidence: the device API refuses evidence that is not
// evidence with a 400 and the error shape, and records nothing.
func TestMalformedEvidence(t *testing.T) {
	svc := startService(t)
	d := svc.newDevice(t, roots[0].open(t, t.TempDir()), t.TempDir())
	for _, body := range []string{`{}`, `[]`, `{"device_id":"x"}`, `{"device_id":"` + strings.Repeat("a", 64) + `","challenge":"x","rot":"tpm"}`, `not json`} {
		req, _ := http.NewRequest("POST", svc.url+"/device/v1/attest", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		resp, err := d.agent.open.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		data, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		var eb api.ErrorBody
		if resp.StatusCode != http.StatusBadRequest || json.Unmarshal(data, &eb) != nil || eb.Error.Code != sphere.EInvalid {
			t.Errorf("body %s: %d %s; want 400 invalid_argument", body, resp.StatusCode, data)
		}
	}
}

// TestRenewalReusesTheRequest: the certificate request is signed once and
// sent again at the next attestation (on a TPM, one TPM2_Sign fewer per
// renewal); the service accepts it each time against the fresh quote and
// certification, and both certificates are for the identity key.
func TestRenewalReusesTheRequest(t *testing.T) {
	d := startService(t).softDevice(t, "Development")
	r := d.rot
	ctx := context.Background()
	var sent [][]byte
	var serials []string
	for range 2 {
		res, err := d.agent.Attest(ctx)
		if err != nil || res.Result != sphere.AttestHealthy {
			t.Fatalf("Attest: %+v %v", res, err)
		}
		sent = append(sent, d.agent.csr)
		c := d.agent.Certificate()
		if !c.PublicKey.(*ecdsa.PublicKey).Equal(r.Identity().Public()) {
			t.Fatal("the certificate is not for the identity key")
		}
		serials = append(serials, c.SerialNumber.String())
	}
	if &sent[0][0] != &sent[1][0] {
		t.Error("the second attestation signed a new certificate request")
	}
	if serials[0] == serials[1] {
		t.Error("the renewal did not issue a new certificate")
	}
	csr, err := x509.ParseCertificateRequest(sent[0])
	if err != nil || csr.CheckSignature() != nil {
		t.Fatalf("the kept request: %v", err)
	}
	if csr.Subject.CommonName != d.agent.DeviceID() || !csr.PublicKey.(*ecdsa.PublicKey).Equal(r.Identity().Public()) {
		t.Errorf("the kept request names %q with another key", csr.Subject.CommonName)
	}
}
