package agent

import (
	"context"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"testing"
	"time"

	"github.com/opensphere/sphere"
	"github.com/opensphere/sphere/attest"
	"github.com/opensphere/sphere/rot"
)

// Benchmarks of attestation with certificate issuance, measured side by
// side in one run (BENCHMARKS.md has the figures and the command):
//
//   - BenchmarkAttest/http: the whole exchange through the real HTTPS
//     handler on loopback (challenge, evidence, verification, policy,
//     issuance, the SQLite writes), one connection reused, software root
//     of trust, so the device's three signatures run on the same cores;
//   - BenchmarkAttest/crypto-service: the service's raw crypto for the same
//     steps: quote verify, certify verify, CSR signature check, device
//     certificate creation;
//   - BenchmarkAttest/crypto-device: the device's raw crypto (quote,
//     certify, CSR), so that the two ceilings add up to what the http case
//     does on one machine.
func BenchmarkAttest(b *testing.B) {
	svc := startService(b)
	d := svc.softDevice(b, "Development")
	r := d.rot
	ctx := context.Background()

	b.Run("http", func(b *testing.B) {
		for b.Loop() {
			res, err := d.agent.Attest(ctx)
			if err != nil || res.Result != sphere.AttestHealthy {
				b.Fatalf("%+v %v", res, err)
			}
		}
	})

	// Material for the raw crypto cases: one real evidence set.
	ch := svc.challenge(b, d.agent, d.agent.DeviceID())
	raw, _ := attest.DecodeNonce(ch)
	ev := evidence(b, r, d.agent.DeviceID(), ch)
	pcr, _ := rot.ReplayEventLog(ev.EventLog)
	caKey, _ := ecdsa.GenerateKey(r.Identity().Public().(*ecdsa.PublicKey).Curve, rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "bench CA"}, IsCA: true,
		BasicConstraintsValid: true, NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour), KeyUsage: x509.KeyUsageCertSign}
	caDER, _ := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	caCert, _ := x509.ParseCertificate(caDER)

	b.Run("crypto-service", func(b *testing.B) {
		for b.Loop() {
			if err := rot.VerifyQuote(r.AttestationKey(), ev.Quote, attest.QuoteNonce(raw), pcr); err != nil {
				b.Fatal(err)
			}
			idKey, err := rot.VerifyCertify(r.AttestationKey(), ev.Certify, ev.IdentityPublicArea, attest.CertifyNonce(raw))
			if err != nil {
				b.Fatal(err)
			}
			csr, err := x509.ParseCertificateRequest(ev.CSR)
			if err != nil || csr.CheckSignature() != nil {
				b.Fatal("csr")
			}
			tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: d.agent.DeviceID()},
				NotBefore: time.Now(), NotAfter: time.Now().Add(24 * time.Hour), KeyUsage: x509.KeyUsageDigitalSignature,
				ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
			if _, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, idKey, caKey); err != nil {
				b.Fatal(err)
			}
		}
	})

	b.Run("crypto-device", func(b *testing.B) {
		for b.Loop() {
			if _, err := r.Quote(attest.QuoteNonce(raw)); err != nil {
				b.Fatal(err)
			}
			if _, err := r.CertifyIdentity(attest.CertifyNonce(raw)); err != nil {
				b.Fatal(err)
			}
			if _, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: d.agent.DeviceID()}}, r.Identity()); err != nil {
				b.Fatal(err)
			}
		}
	})
}
