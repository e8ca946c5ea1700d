package rot

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"sync"
	"testing"
	"time"
)

// The shared test table: every test in this file runs against each
// implementation in impls. The soft one is always there; the TPM one is
// added by tpm_sim_test.go when cgo (and so the TPM simulator) is available.

// device makes a fresh device and returns a function that opens it; calling
// it again after Close reopens the same device (same state directory, same
// TPM). Opened roots of trust are closed at the end of the test.
type device func(t *testing.T) (open func() RootOfTrust)

type impl struct {
	name      string
	newDevice device
}

var impls = []impl{{name: "soft", newDevice: softDevice}}

func softDevice(t *testing.T) func() RootOfTrust {
	dir := t.TempDir()
	return func() RootOfTrust {
		t.Helper()
		r, err := OpenSoft(dir)
		if err != nil {
			t.Fatalf("OpenSoft: %v", err)
		}
		t.Cleanup(func() { r.Close() })
		return r
	}
}

// forEachImpl runs f as a subtest per implementation.
func forEachImpl(t *testing.T, f func(t *testing.T, open func() RootOfTrust)) {
	for _, im := range impls {
		t.Run(im.name, func(t *testing.T) { f(t, im.newDevice(t)) })
	}
}

func digestOf(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}

var testEvents = []Event{
	{Type: "agent", Name: "/usr/bin/sphere", Digest: digestOf("agent binary")},
	{Type: "os-image", Name: "os", Digest: digestOf("os image")},
	{Type: "app-image", Name: "com.example.blink", Digest: digestOf("app image")},
	{Type: "config", Name: "/etc/sphere/agent.json", Digest: digestOf("config")},
}

func TestKeysPersistAcrossReopen(t *testing.T) {
	forEachImpl(t, func(t *testing.T, open func() RootOfTrust) {
		r1 := open()
		ak1, id1, area1 := r1.AttestationKey(), r1.Identity().Public(), r1.IdentityPublicArea()
		if err := r1.Close(); err != nil {
			t.Fatalf("Close: %v", err)
		}
		r2 := open()
		if ak2 := r2.AttestationKey(); !ak2.(*ecdsa.PublicKey).Equal(ak1) {
			t.Errorf("attestation key changed across reopen")
		}
		if id2 := r2.Identity().Public(); !id2.(*ecdsa.PublicKey).Equal(id1) {
			t.Errorf("identity key changed across reopen")
		}
		if !bytes.Equal(r2.IdentityPublicArea(), area1) {
			t.Errorf("identity public area changed across reopen")
		}
		if ak1.(*ecdsa.PublicKey).Equal(id1) {
			t.Errorf("attestation key and identity key are the same key")
		}
	})
}

func TestIdentityCSR(t *testing.T) {
	forEachImpl(t, func(t *testing.T, open func() RootOfTrust) {
		r := open()
		der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
			Subject: pkix.Name{CommonName: "device"},
		}, r.Identity())
		if err != nil {
			t.Fatalf("CreateCertificateRequest: %v", err)
		}
		csr, err := x509.ParseCertificateRequest(der)
		if err != nil {
			t.Fatalf("ParseCertificateRequest: %v", err)
		}
		if err := csr.CheckSignature(); err != nil {
			t.Errorf("CSR signature: %v", err)
		}
		if !csr.PublicKey.(*ecdsa.PublicKey).Equal(r.Identity().Public()) {
			t.Errorf("CSR public key is not the identity key")
		}
	})
}

func TestIdentitySignDigests(t *testing.T) {
	msg := []byte("to be signed")
	s256, s384, s512, s1 := sha256.Sum256(msg), sha512.Sum384(msg), sha512.Sum512(msg), sha1.Sum(msg)
	tests := []struct {
		name    string
		digest  []byte
		opts    crypto.SignerOpts
		wantErr bool
	}{
		{"ok/sha256", s256[:], crypto.SHA256, false},
		{"ok/sha384", s384[:], crypto.SHA384, false},
		{"ok/sha512", s512[:], crypto.SHA512, false},
		{"error/sha1", s1[:], crypto.SHA1, true},
		{"error/digest length", s256[:20], crypto.SHA256, true},
		{"error/nil opts", s256[:], nil, true},
	}
	forEachImpl(t, func(t *testing.T, open func() RootOfTrust) {
		r := open()
		pub := r.Identity().Public().(*ecdsa.PublicKey)
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				sig, err := r.Identity().Sign(rand.Reader, tt.digest, tt.opts)
				if tt.wantErr {
					if err == nil {
						t.Fatalf("Sign: got nil error, want one")
					}
					return
				}
				if err != nil {
					t.Fatalf("Sign: %v", err)
				}
				if !ecdsa.VerifyASN1(pub, tt.digest, sig) {
					t.Errorf("signature does not verify")
				}
			})
		}
	})
}

func TestIdentityTLSClientAuth(t *testing.T) {
	forEachImpl(t, func(t *testing.T, open func() RootOfTrust) {
		r := open()
		for _, v := range []struct {
			name    string
			version uint16
		}{{"tls1.2", tls.VersionTLS12}, {"tls1.3", tls.VersionTLS13}} {
			t.Run(v.name, func(t *testing.T) { tlsHandshake(t, r.Identity(), v.version) })
		}
	})
}

// tlsHandshake runs a real mutual-TLS handshake on 127.0.0.1 with signer as
// the client's key, and checks that the server saw the client certificate.
func tlsHandshake(t *testing.T, signer crypto.Signer, version uint16) {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, _ := x509.ParseCertificate(caDER)
	issue := func(serial int64, cn string, pub crypto.PublicKey, eku x509.ExtKeyUsage) []byte {
		der, err := x509.CreateCertificate(rand.Reader, &x509.Certificate{
			SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: cn},
			NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour),
			KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{eku},
			IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		}, caCert, pub, caKey)
		if err != nil {
			t.Fatal(err)
		}
		return der
	}
	serverKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	serverDER := issue(2, "server", &serverKey.PublicKey, x509.ExtKeyUsageServerAuth)
	clientDER := issue(3, "device", signer.Public(), x509.ExtKeyUsageClientAuth)
	pool := x509.NewCertPool()
	pool.AddCert(caCert)

	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{
		Certificates: []tls.Certificate{{Certificate: [][]byte{serverDER}, PrivateKey: serverKey}},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    pool,
		MinVersion:   version,
		MaxVersion:   version,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	serverErr := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			serverErr <- err
			return
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		tc := c.(*tls.Conn)
		if err := tc.Handshake(); err != nil {
			serverErr <- fmt.Errorf("server handshake: %w", err)
			return
		}
		peers := tc.ConnectionState().PeerCertificates
		if len(peers) == 0 {
			serverErr <- errors.New("server saw no client certificate")
			return
		}
		_, err = io.WriteString(tc, "hello "+peers[0].Subject.CommonName)
		serverErr <- err
	}()

	conn, err := tls.Dial("tcp", ln.Addr().String(), &tls.Config{
		RootCAs:      pool,
		Certificates: []tls.Certificate{{Certificate: [][]byte{clientDER}, PrivateKey: signer}},
		MinVersion:   version,
		MaxVersion:   version,
	})
	if err != nil {
		t.Fatalf("client handshake: %v", err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	got, err := io.ReadAll(conn)
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	if err := <-serverErr; err != nil {
		t.Fatal(err)
	}
	if want := "hello device"; string(got) != want {
		t.Errorf("got %q, want %q", got, want)
	}
	if conn.ConnectionState().Version != version {
		t.Errorf("negotiated %x, want %x", conn.ConnectionState().Version, version)
	}
}

func TestCertifyIdentity(t *testing.T) {
	forEachImpl(t, func(t *testing.T, open func() RootOfTrust) {
		r := open()
		otherAK, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		extra := []byte("csr-binding-0123456789abcdef0123") // 32 bytes
		c, err := r.CertifyIdentity(extra)
		if err != nil {
			t.Fatalf("CertifyIdentity: %v", err)
		}
		q, err := r.Quote(extra)
		if err != nil {
			t.Fatalf("Quote: %v", err)
		}
		// The last byte of the attest is the last byte of the qualified
		// name: changing it keeps the structure parseable.
		tampered := Attestation{Attest: bytes.Clone(c.Attest), Signature: c.Signature}
		tampered.Attest[len(tampered.Attest)-1] ^= 1
		otherArea, _ := marshalPublicArea(&otherAK.PublicKey, false)

		tests := []struct {
			name      string
			ak        crypto.PublicKey
			att       Attestation
			area      []byte
			extraData []byte
			wantErr   error
		}{
			{"ok", r.AttestationKey(), c, r.IdentityPublicArea(), extra, nil},
			{"error/other attestation key", &otherAK.PublicKey, c, r.IdentityPublicArea(), extra, ErrBadSignature},
			{"error/tampered attest", r.AttestationKey(), tampered, r.IdentityPublicArea(), extra, ErrBadSignature},
			{"error/wrong extraData", r.AttestationKey(), c, r.IdentityPublicArea(), []byte("another csr"), ErrNonceMismatch},
			{"error/no extraData", r.AttestationKey(), c, r.IdentityPublicArea(), nil, ErrNonceMismatch},
			{"error/other identity key", r.AttestationKey(), c, otherArea, extra, ErrNameMismatch},
			{"error/quote as certification", r.AttestationKey(), q, r.IdentityPublicArea(), extra, ErrWrongType},
			{"error/signature is not DER", r.AttestationKey(), Attestation{c.Attest, []byte{1, 2, 3}}, r.IdentityPublicArea(), extra, ErrBadSignature},
			{"error/truncated attest", r.AttestationKey(), Attestation{c.Attest[:20], c.Signature}, r.IdentityPublicArea(), extra, ErrMalformed},
			{"error/attestation key is not ECDSA", "not a key", c, r.IdentityPublicArea(), extra, ErrUnsupportedKey},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				key, err := VerifyCertify(tt.ak, tt.att, tt.area, tt.extraData)
				if tt.wantErr != nil {
					if !errors.Is(err, tt.wantErr) {
						t.Fatalf("VerifyCertify: got %v, want %v", err, tt.wantErr)
					}
					return
				}
				if err != nil {
					t.Fatalf("VerifyCertify: %v", err)
				}
				if !key.Equal(r.Identity().Public()) {
					t.Errorf("VerifyCertify returned a key that is not the identity key")
				}
			})
		}
		if _, err := r.CertifyIdentity(make([]byte, MaxNonceSize+1)); err == nil {
			t.Errorf("CertifyIdentity with %d bytes of extraData: got nil error", MaxNonceSize+1)
		}
	})
}

func TestQuote(t *testing.T) {
	forEachImpl(t, func(t *testing.T, open func() RootOfTrust) {
		r := open()
		if err := r.ResetMeasurements(); err != nil {
			t.Fatalf("ResetMeasurements: %v", err)
		}
		for _, e := range testEvents {
			if err := r.Extend(e); err != nil {
				t.Fatalf("Extend(%v): %v", e, err)
			}
		}
		if err := r.Extend(Event{Type: "config", Name: "bad", Digest: "xyz"}); err == nil {
			t.Errorf("Extend with a bad digest: got nil error")
		}
		log := r.EventLog()
		if len(log) != len(testEvents) {
			t.Fatalf("EventLog has %d events, want %d", len(log), len(testEvents))
		}
		nonce := []byte("0123456789abcdef0123456789abcdef")
		q, err := r.Quote(nonce)
		if err != nil {
			t.Fatalf("Quote: %v", err)
		}
		c, err := r.CertifyIdentity(nonce)
		if err != nil {
			t.Fatalf("CertifyIdentity: %v", err)
		}
		pcr, err := ReplayEventLog(log)
		if err != nil {
			t.Fatalf("ReplayEventLog: %v", err)
		}
		otherAK, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)

		replay := func(mutate func(l []Event) []Event) [32]byte {
			l := mutate(append([]Event(nil), log...))
			p, err := ReplayEventLog(l)
			if err != nil {
				t.Fatalf("ReplayEventLog: %v", err)
			}
			return p
		}
		tests := []struct {
			name    string
			ak      crypto.PublicKey
			q       Attestation
			nonce   []byte
			pcr     [32]byte
			wantErr error
		}{
			{"ok", r.AttestationKey(), q, nonce, pcr, nil},
			{"error/tampered event digest", r.AttestationKey(), q, nonce, replay(func(l []Event) []Event {
				l[1].Digest = digestOf("another os image")
				return l
			}), ErrPCRMismatch},
			{"error/tampered event name", r.AttestationKey(), q, nonce, replay(func(l []Event) []Event {
				l[2].Name = "com.example.other"
				return l
			}), ErrPCRMismatch},
			{"error/event dropped", r.AttestationKey(), q, nonce, replay(func(l []Event) []Event { return l[:len(l)-1] }), ErrPCRMismatch},
			{"error/events reordered", r.AttestationKey(), q, nonce, replay(func(l []Event) []Event {
				l[0], l[1] = l[1], l[0]
				return l
			}), ErrPCRMismatch},
			{"error/wrong nonce", r.AttestationKey(), q, []byte("another nonce"), pcr, ErrNonceMismatch},
			{"error/other attestation key", &otherAK.PublicKey, q, nonce, pcr, ErrBadSignature},
			{"error/certification as quote", r.AttestationKey(), c, nonce, pcr, ErrWrongType},
			{"error/empty attest", r.AttestationKey(), Attestation{nil, q.Signature}, nonce, pcr, ErrMalformed},
			{"error/signature swapped", r.AttestationKey(), Attestation{q.Attest, c.Signature}, nonce, pcr, ErrBadSignature},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				err := VerifyQuote(tt.ak, tt.q, tt.nonce, tt.pcr)
				if tt.wantErr == nil && err != nil {
					t.Fatalf("VerifyQuote: %v", err)
				}
				if tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
					t.Fatalf("VerifyQuote: got %v, want %v", err, tt.wantErr)
				}
			})
		}

		// A reset starts a fresh register and log.
		if err := r.ResetMeasurements(); err != nil {
			t.Fatalf("ResetMeasurements: %v", err)
		}
		if got := r.EventLog(); len(got) != 0 {
			t.Errorf("EventLog after reset has %d events", len(got))
		}
		q2, err := r.Quote(nonce)
		if err != nil {
			t.Fatalf("Quote: %v", err)
		}
		if err := VerifyQuote(r.AttestationKey(), q2, nonce, [32]byte{}); err != nil {
			t.Errorf("quote after reset does not verify against the zero register: %v", err)
		}
		if _, err := r.Quote(make([]byte, MaxNonceSize+1)); err == nil {
			t.Errorf("Quote with a %d-byte nonce: got nil error", MaxNonceSize+1)
		}
	})
}

func TestCounter(t *testing.T) {
	forEachImpl(t, func(t *testing.T, open func() RootOfTrust) {
		r := open()
		mustCounter := func(r RootOfTrust, want uint64) {
			t.Helper()
			got, err := r.Counter()
			if err != nil {
				t.Fatalf("Counter: %v", err)
			}
			if got != want {
				t.Fatalf("Counter: got %d, want %d", got, want)
			}
		}
		mustCounter(r, 0)
		if err := r.AdvanceCounter(3); err != nil {
			t.Fatalf("AdvanceCounter(3): %v", err)
		}
		mustCounter(r, 3)
		if err := r.AdvanceCounter(2); !errors.Is(err, ErrCounterRollback) {
			t.Fatalf("AdvanceCounter(2) at 3: got %v, want ErrCounterRollback", err)
		}
		if err := r.AdvanceCounter(3); err != nil {
			t.Fatalf("AdvanceCounter(3) at 3: %v", err)
		}
		if err := r.AdvanceCounter(3 + maxCounterStep + 1); err == nil || errors.Is(err, ErrCounterRollback) {
			t.Fatalf("AdvanceCounter(huge jump): got %v, want a jump error", err)
		}
		mustCounter(r, 3)
		r.Close()

		r = open()
		mustCounter(r, 3)
		if err := r.AdvanceCounter(5); err != nil {
			t.Fatalf("AdvanceCounter(5): %v", err)
		}
		mustCounter(r, 5)
		if err := r.AdvanceCounter(0); !errors.Is(err, ErrCounterRollback) {
			t.Fatalf("AdvanceCounter(0) at 5: got %v, want ErrCounterRollback", err)
		}
	})
}

func TestConcurrentUse(t *testing.T) {
	forEachImpl(t, func(t *testing.T, open func() RootOfTrust) {
		r := open()
		if err := r.ResetMeasurements(); err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		errs := make(chan error, 64)
		for i := range 4 {
			wg.Go(func() {
				d := sha256.Sum256([]byte{byte(i)})
				for range 3 {
					if _, err := r.Identity().Sign(rand.Reader, d[:], crypto.SHA256); err != nil {
						errs <- err
					}
					if err := r.Extend(testEvents[i]); err != nil {
						errs <- err
					}
					if _, err := r.Quote([]byte{byte(i)}); err != nil {
						errs <- err
					}
					_ = r.EventLog()
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
		// Whatever the interleaving, the log replays to the register.
		q, err := r.Quote([]byte("n"))
		if err != nil {
			t.Fatal(err)
		}
		pcr, err := ReplayEventLog(r.EventLog())
		if err != nil {
			t.Fatal(err)
		}
		if err := VerifyQuote(r.AttestationKey(), q, []byte("n"), pcr); err != nil {
			t.Errorf("after concurrent extends: %v", err)
		}
	})
}

func TestUseAfterClose(t *testing.T) {
	forEachImpl(t, func(t *testing.T, open func() RootOfTrust) {
		r := open()
		if err := r.Close(); err != nil {
			t.Fatal(err)
		}
		if err := r.Close(); err != nil {
			t.Errorf("second Close: %v", err)
		}
		d := sha256.Sum256(nil)
		if _, err := r.Identity().Sign(rand.Reader, d[:], crypto.SHA256); !errors.Is(err, ErrClosed) {
			t.Errorf("Sign after Close: got %v, want ErrClosed", err)
		}
		if _, err := r.Quote(nil); !errors.Is(err, ErrClosed) {
			t.Errorf("Quote after Close: got %v, want ErrClosed", err)
		}
		if err := r.Extend(testEvents[0]); !errors.Is(err, ErrClosed) {
			t.Errorf("Extend after Close: got %v, want ErrClosed", err)
		}
		if _, err := r.Counter(); !errors.Is(err, ErrClosed) {
			t.Errorf("Counter after Close: got %v, want ErrClosed", err)
		}
	})
}
