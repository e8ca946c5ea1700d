package agent

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net"
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
//     does on one machine;
//   - BenchmarkAttest/tls-handshake: both sides of one new TLS 1.3
//     connection as the service and a device make it (P-256 server key,
//     device certificate from the tenant CA, verified by the service as the
//     device routes do), over an in-memory pipe.
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
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader) // tenant CAs are P-256
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

	b.Run("tls-handshake", func(b *testing.B) { benchHandshake(b, caCert, caKey, r) })
}

// benchHandshake runs both sides of new mutual-TLS connections over a pipe
// and the service's check of the device certificate against its CA
// (presented with the CA, as devices do; the service's root is P-384).
func benchHandshake(b *testing.B, caCert *x509.Certificate, caKey *ecdsa.PrivateKey, r rot.RootOfTrust) {
	srvKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	srvTmpl := &x509.Certificate{SerialNumber: big.NewInt(3), Subject: pkix.Name{CommonName: "127.0.0.1"}, DNSNames: []string{"localhost"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	srvDER, _ := x509.CreateCertificate(rand.Reader, srvTmpl, srvTmpl, &srvKey.PublicKey, srvKey)
	srvCert, _ := x509.ParseCertificate(srvDER)
	devTmpl := &x509.Certificate{SerialNumber: big.NewInt(4), Subject: pkix.Name{CommonName: "device"}, NotBefore: time.Now().Add(-time.Hour),
		NotAfter: time.Now().Add(time.Hour), KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	devDER, err := x509.CreateCertificate(rand.Reader, devTmpl, caCert, r.Identity().Public(), caKey)
	if err != nil {
		b.Fatal(err)
	}
	caPool, srvPool := x509.NewCertPool(), x509.NewCertPool()
	caPool.AddCert(caCert)
	srvPool.AddCert(srvCert)
	srvConf := &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{srvDER}, PrivateKey: srvKey}}, ClientAuth: tls.RequestClientCert,
		SessionTicketsDisabled: true}
	cliConf := &tls.Config{RootCAs: srvPool, ServerName: "localhost", Certificates: []tls.Certificate{{Certificate: [][]byte{devDER, caCert.Raw}, PrivateKey: r.Identity()}}}
	for b.Loop() {
		a, c := net.Pipe()
		srv, cli := tls.Server(a, srvConf), tls.Client(c, cliConf)
		done := make(chan error, 1)
		go func() { done <- cli.Handshake() }()
		if err := srv.Handshake(); err != nil {
			b.Fatal(err)
		}
		if err := <-done; err != nil {
			b.Fatal(err)
		}
		peer := srv.ConnectionState().PeerCertificates
		if _, err := peer[0].Verify(x509.VerifyOptions{Roots: caPool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
			b.Fatal(err)
		}
		a.Close() // the pipe, not TLS: no close_notify to wait for
		c.Close()
	}
}
