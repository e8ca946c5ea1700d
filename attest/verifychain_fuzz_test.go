package attest

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	mrand "math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/opensphere/sphere"
	"github.com/opensphere/sphere/rot"
)

// chainReasons are the refusals VerifyChain can give; any other reason
// from it is a bug.
var chainReasons = map[string]bool{
	ReasonMalformed:          true,
	ReasonQuoteInvalid:       true,
	ReasonEventLogMismatch:   true,
	ReasonCertifyInvalid:     true,
	ReasonIdentityMismatch:   true,
	ReasonCSRInvalid:         true,
	ReasonCSRKeyNotCertified: true,
}

// chainFixture is one device's valid evidence for one challenge, made by a
// real soft root of trust, and a second device's evidence for the same
// challenge, to splice in.
type chainFixture struct {
	challenge []byte
	ak, id    crypto.PublicKey // the device's registered keys
	ev        Evidence
	other     rot.RootOfTrust
	otherEv   Evidence
}

// newChainFixture builds the evidence. The device's keys and the challenge
// are derived from fixed seeds, so that a failing input saved by the fuzzer
// replays against the same keys in a later run; signatures still vary.
func newChainFixture(tb testing.TB) *chainFixture {
	tb.Helper()
	dir := tb.TempDir()
	ak := writeSeededKey(tb, dir, "ak.pem", "opensphere fuzz attestation key")
	id := writeSeededKey(tb, dir, "identity.pem", "opensphere fuzz identity key")
	r := openSoft(tb, dir)
	if !r.AttestationKey().(*ecdsa.PublicKey).Equal(&ak.PublicKey) || !r.Identity().Public().(*ecdsa.PublicKey).Equal(&id.PublicKey) {
		tb.Fatal("rot.OpenSoft did not load the seeded keys (were its key files renamed?); fuzz failures would not reproduce")
	}
	challenge := make([]byte, 1+8+16+32) // the size of a real nonce (package verifier)
	mrand.NewChaCha8(sha256.Sum256([]byte("opensphere fuzz challenge"))).Read(challenge)

	f := &chainFixture{challenge: challenge, ak: r.AttestationKey(), id: r.Identity().Public(),
		ev: softEvidence(tb, r, challenge), other: openSoft(tb, tb.TempDir())}
	f.otherEv = softEvidence(tb, f.other, challenge)
	return f
}

// writeSeededKey writes an ECDSA P-256 key derived from seed where the
// soft root of trust keeps it (PKCS#8 PEM, 0600).
func writeSeededKey(tb testing.TB, dir, name, seed string) *ecdsa.PrivateKey {
	tb.Helper()
	scalar := sha256.Sum256([]byte(seed))
	k, err := ecdsa.ParseRawPrivateKey(elliptic.P256(), scalar[:])
	if err != nil {
		tb.Fatalf("seeded key %s: %v", name, err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		tb.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, name), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		tb.Fatal(err)
	}
	return k
}

func openSoft(tb testing.TB, dir string) rot.RootOfTrust {
	tb.Helper()
	r, err := rot.OpenSoft(dir)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { r.Close() })
	return r
}

// softEvidence measures two events into r and returns its evidence for
// challenge, as the agent makes it.
func softEvidence(tb testing.TB, r rot.RootOfTrust, challenge []byte) Evidence {
	tb.Helper()
	if err := r.ResetMeasurements(); err != nil {
		tb.Fatal(err)
	}
	for _, e := range []rot.Event{
		{Type: "agent", Name: "sphere", Digest: strings.Repeat("ab", 32)},
		{Type: "config", Name: "agent-settings", Digest: strings.Repeat("cd", 32)},
	} {
		if err := r.Extend(e); err != nil {
			tb.Fatal(err)
		}
	}
	q, err := r.Quote(QuoteNonce(challenge))
	if err != nil {
		tb.Fatal(err)
	}
	c, err := r.CertifyIdentity(CertifyNonce(challenge))
	if err != nil {
		tb.Fatal(err)
	}
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "device"}}, r.Identity())
	if err != nil {
		tb.Fatal(err)
	}
	return Evidence{DeviceID: "device", RoT: r.Kind(), Quote: q, EventLog: r.EventLog(),
		IdentityPublicArea: r.IdentityPublicArea(), Certify: c, CSR: csr}
}

// copyEvidence returns a deep copy, so that a case can break it freely.
func copyEvidence(ev Evidence) Evidence {
	c := ev
	c.Quote = rot.Attestation{Attest: bytes.Clone(ev.Quote.Attest), Signature: bytes.Clone(ev.Quote.Signature)}
	c.Certify = rot.Attestation{Attest: bytes.Clone(ev.Certify.Attest), Signature: bytes.Clone(ev.Certify.Signature)}
	c.IdentityPublicArea = bytes.Clone(ev.IdentityPublicArea)
	c.CSR = bytes.Clone(ev.CSR)
	c.EventLog = append([]rot.Event(nil), ev.EventLog...)
	return c
}

// TestVerifyChain breaks one link per case and checks the refusal.
func TestVerifyChain(t *testing.T) {
	f := newChainFixture(t)
	otherKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	cases := []struct {
		name   string
		mutate func(ev *Evidence) (ak, id crypto.PublicKey, challenge []byte)
		want   string // reason; "" means the identity key is returned
	}{
		{"ok", func(ev *Evidence) (crypto.PublicKey, crypto.PublicKey, []byte) {
			return f.ak, f.id, f.challenge
		}, ""},
		{"error/another device's attestation key", func(ev *Evidence) (crypto.PublicKey, crypto.PublicKey, []byte) {
			return f.other.AttestationKey(), f.id, f.challenge
		}, ReasonQuoteInvalid},
		{"error/another challenge", func(ev *Evidence) (crypto.PublicKey, crypto.PublicKey, []byte) {
			ch := bytes.Clone(f.challenge)
			ch[len(ch)-1] ^= 1
			return f.ak, f.id, ch
		}, ReasonQuoteInvalid},
		{"error/tampered event log", func(ev *Evidence) (crypto.PublicKey, crypto.PublicKey, []byte) {
			ev.EventLog[1].Name = "agent-settings-edited"
			return f.ak, f.id, f.challenge
		}, ReasonEventLogMismatch},
		{"error/malformed event", func(ev *Evidence) (crypto.PublicKey, crypto.PublicKey, []byte) {
			ev.EventLog[0].Digest = "zz"
			return f.ak, f.id, f.challenge
		}, ReasonMalformed},
		{"error/identity certified by another attestation key", func(ev *Evidence) (crypto.PublicKey, crypto.PublicKey, []byte) {
			ev.Certify, ev.IdentityPublicArea = f.otherEv.Certify, f.otherEv.IdentityPublicArea
			return f.ak, f.id, f.challenge
		}, ReasonCertifyInvalid},
		{"error/registered with another identity key", func(ev *Evidence) (crypto.PublicKey, crypto.PublicKey, []byte) {
			return f.ak, f.other.Identity().Public(), f.challenge
		}, ReasonIdentityMismatch},
		{"error/garbage CSR", func(ev *Evidence) (crypto.PublicKey, crypto.PublicKey, []byte) {
			ev.CSR = ev.CSR[:len(ev.CSR)/2]
			return f.ak, f.id, f.challenge
		}, ReasonCSRInvalid},
		{"error/CSR signature", func(ev *Evidence) (crypto.PublicKey, crypto.PublicKey, []byte) {
			ev.CSR[len(ev.CSR)-1] ^= 1
			return f.ak, f.id, f.challenge
		}, ReasonCSRInvalid},
		{"error/CSR for another key", func(ev *Evidence) (crypto.PublicKey, crypto.PublicKey, []byte) {
			ev.CSR, _ = x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, otherKey)
			return f.ak, f.id, f.challenge
		}, ReasonCSRKeyNotCertified},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ev := copyEvidence(f.ev)
			ak, id, ch := c.mutate(&ev)
			key, refusal := VerifyChain(ak, id, &ev, ch)
			if c.want == "" {
				if refusal != nil {
					t.Fatalf("refused %s: %s; want the identity key", refusal.Reason, refusal.Detail)
				}
				if key == nil || !key.Equal(f.id) {
					t.Fatalf("key %v; want the registered identity key", key)
				}
				return
			}
			if key != nil || refusal == nil {
				t.Fatalf("got key %v, refusal %+v; want refusal %s", key, refusal, c.want)
			}
			if refusal.Result != sphere.AttestRefused || refusal.Reason != c.want || refusal.Detail == "" {
				t.Fatalf("got %s %s (%q); want refused %s with a detail", refusal.Result, refusal.Reason, refusal.Detail, c.want)
			}
		})
	}
}

// perturbLog changes the event log according to op: op%10 picks the
// change, op/10 the event. 0 leaves it alone; 9 changes only the digest's
// case, which replays to the same register.
func perturbLog(events []rot.Event, op byte) []rot.Event {
	out := append([]rot.Event(nil), events...)
	i := int(op/10) % len(out)
	switch op % 10 {
	case 1:
		out = out[:len(out)-1]
	case 2:
		out[0], out[len(out)-1] = out[len(out)-1], out[0]
	case 3:
		d := []byte(out[i].Digest)
		j := int(op) % len(d)
		if d[j] == '0' { // another hex digit, so the event is well formed but different
			d[j] = '1'
		} else {
			d[j] = '0'
		}
		out[i].Digest = string(d)
	case 4:
		out[i].Digest = out[i].Digest[:len(out[i].Digest)-2]
	case 5:
		out[i].Type += "\x00"
	case 6:
		out[i].Name = ""
	case 7:
		out = append(out, out[i])
	case 8:
		out = nil
	case 9:
		out[i].Digest = strings.ToUpper(out[i].Digest)
	}
	return out
}

// FuzzVerifyChain: whatever replaces the quote, the identity certification,
// the identity public area, the CSR or the event log, and whichever of two
// identity keys is registered, VerifyChain never panics, answers exactly
// one of a key or a refusal (with a known reason and a detail), and never
// returns a key other than the registered identity key: no input makes the
// service certify another key.
func FuzzVerifyChain(f *testing.F) {
	fx := newChainFixture(f)
	ev, o := fx.ev, fx.otherEv
	f.Add(ev.Quote.Attest, ev.Quote.Signature, ev.Certify.Attest, ev.Certify.Signature, ev.IdentityPublicArea, ev.CSR, byte(0), false)
	for op := range byte(10) {
		f.Add(ev.Quote.Attest, ev.Quote.Signature, ev.Certify.Attest, ev.Certify.Signature, ev.IdentityPublicArea, ev.CSR, op+10, false)
	}
	// The other device's parts, spliced in one at a time and all at once.
	f.Add(o.Quote.Attest, o.Quote.Signature, ev.Certify.Attest, ev.Certify.Signature, ev.IdentityPublicArea, ev.CSR, byte(0), false)
	f.Add(ev.Quote.Attest, ev.Quote.Signature, o.Certify.Attest, o.Certify.Signature, o.IdentityPublicArea, ev.CSR, byte(0), false)
	f.Add(ev.Quote.Attest, ev.Quote.Signature, ev.Certify.Attest, ev.Certify.Signature, o.IdentityPublicArea, ev.CSR, byte(0), false)
	f.Add(ev.Quote.Attest, ev.Quote.Signature, ev.Certify.Attest, ev.Certify.Signature, ev.IdentityPublicArea, o.CSR, byte(0), false)
	f.Add(o.Quote.Attest, o.Quote.Signature, o.Certify.Attest, o.Certify.Signature, o.IdentityPublicArea, o.CSR, byte(0), false)
	// The quote where the certification belongs and the other way round.
	f.Add(ev.Certify.Attest, ev.Certify.Signature, ev.Quote.Attest, ev.Quote.Signature, ev.IdentityPublicArea, ev.CSR, byte(0), false)
	f.Add([]byte{}, []byte{}, []byte{}, []byte{}, []byte{}, []byte{}, byte(0), false)
	// The device's own evidence when another identity key is registered.
	f.Add(ev.Quote.Attest, ev.Quote.Signature, ev.Certify.Attest, ev.Certify.Signature, ev.IdentityPublicArea, ev.CSR, byte(0), true)

	f.Fuzz(func(t *testing.T, quoteAttest, quoteSig, certAttest, certSig, idArea, csr []byte, logOp byte, registerOther bool) {
		registered := fx.id
		if registerOther {
			registered = fx.other.Identity().Public()
		}
		in := Evidence{DeviceID: ev.DeviceID, RoT: ev.RoT,
			Quote:              rot.Attestation{Attest: quoteAttest, Signature: quoteSig},
			Certify:            rot.Attestation{Attest: certAttest, Signature: certSig},
			IdentityPublicArea: idArea, CSR: csr, EventLog: perturbLog(ev.EventLog, logOp)}
		key, refusal := VerifyChain(fx.ak, registered, &in, fx.challenge)
		switch {
		case key != nil && refusal != nil:
			t.Fatalf("both a key and a refusal (%s)", refusal.Reason)
		case key == nil && refusal == nil:
			t.Fatal("neither a key nor a refusal")
		case key != nil:
			if !key.Equal(registered) {
				t.Fatalf("VerifyChain returned a key that is not the registered identity key: %s", describeKey(key))
			}
		default:
			if !chainReasons[refusal.Reason] || refusal.Result != sphere.AttestRefused || refusal.Detail == "" {
				t.Fatalf("refusal %+v; want refused with a VerifyChain reason and a detail", refusal.Attestation)
			}
			if refusal.Certificate != "" || refusal.Chain != "" {
				t.Fatal("a refusal carries a certificate")
			}
		}
		// The untouched evidence must still be accepted: a verifier that
		// refuses everything would pass the checks above.
		if !registerOther && logOp%10 == 0 && bytes.Equal(quoteAttest, ev.Quote.Attest) && bytes.Equal(quoteSig, ev.Quote.Signature) &&
			bytes.Equal(certAttest, ev.Certify.Attest) && bytes.Equal(certSig, ev.Certify.Signature) &&
			bytes.Equal(idArea, ev.IdentityPublicArea) && bytes.Equal(csr, ev.CSR) && key == nil {
			t.Fatalf("the valid evidence was refused: %s: %s", refusal.Reason, refusal.Detail)
		}
	})
}

func describeKey(k *ecdsa.PublicKey) string {
	der, err := x509.MarshalPKIXPublicKey(k)
	if err != nil {
		return fmt.Sprintf("unmarshallable key: %v", err)
	}
	return fmt.Sprintf("%x", der)
}
