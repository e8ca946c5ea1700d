package rot

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"testing"

	"github.com/google/go-tpm/tpm2"
)

func TestReplayEventLog(t *testing.T) {
	zero, err := ReplayEventLog(nil)
	if err != nil || zero != [32]byte{} {
		t.Fatalf("ReplayEventLog(nil) = %x, %v; want zeros", zero, err)
	}
	// By hand: pcr = SHA-256(pcr || ExtendValue) per event.
	var want [32]byte
	for _, e := range testEvents[:2] {
		v, err := e.ExtendValue()
		if err != nil {
			t.Fatal(err)
		}
		want = sha256.Sum256(append(want[:], v[:]...))
	}
	got, err := ReplayEventLog(testEvents[:2])
	if err != nil || got != want {
		t.Errorf("ReplayEventLog = %x, %v; want %x", got, err, want)
	}
	bad := []Event{testEvents[0], {Type: "app-image", Name: "x", Digest: "00"}}
	if _, err := ReplayEventLog(bad); !errors.Is(err, ErrMalformed) {
		t.Errorf("ReplayEventLog with a short digest: got %v, want ErrMalformed", err)
	}
}

// signedAttest marshals a, and signs it as an AK would.
func signedAttest(t testing.TB, ak *ecdsa.PrivateKey, a tpm2.TPMSAttest) Attestation {
	t.Helper()
	b := tpm2.Marshal(a)
	d := sha256.Sum256(b)
	sig, err := ecdsa.SignASN1(rand.Reader, ak, d[:])
	if err != nil {
		t.Fatal(err)
	}
	return Attestation{Attest: b, Signature: sig}
}

func quoteAttest(nonce []byte, sel tpm2.TPMLPCRSelection, pcr [32]byte) tpm2.TPMSAttest {
	d := sha256.Sum256(pcr[:])
	return tpm2.TPMSAttest{
		Magic:     tpm2.TPMGeneratedValue,
		Type:      tpm2.TPMSTAttestQuote,
		ExtraData: tpm2.TPM2BData{Buffer: nonce},
		Attested: tpm2.NewTPMUAttest(tpm2.TPMSTAttestQuote, &tpm2.TPMSQuoteInfo{
			PCRSelect: sel,
			PCRDigest: tpm2.TPM2BDigest{Buffer: d[:]},
		}),
	}
}

func TestVerifyQuoteStructure(t *testing.T) {
	ak, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	nonce := []byte("nonce")
	pcr := sha256.Sum256([]byte("register"))
	bank := func(h tpm2.TPMAlgID, sel ...byte) tpm2.TPMSPCRSelection {
		return tpm2.TPMSPCRSelection{Hash: h, PCRSelect: sel}
	}
	sels := func(s ...tpm2.TPMSPCRSelection) tpm2.TPMLPCRSelection {
		return tpm2.TPMLPCRSelection{PCRSelections: s}
	}
	badMagic := quoteAttest(nonce, pcrSelection(), pcr)
	badMagic.Magic = 0x12345678
	tests := []struct {
		name    string
		a       tpm2.TPMSAttest
		wantErr error
	}{
		{"ok", quoteAttest(nonce, pcrSelection(), pcr), nil},
		{"ok/longer bitmap", quoteAttest(nonce, sels(bank(tpm2.TPMAlgSHA256, 0, 0, 0x80, 0)), pcr), nil},
		{"error/not TPM-generated", badMagic, ErrNotTPMGenerated},
		{"error/also PCR 22", quoteAttest(nonce, sels(bank(tpm2.TPMAlgSHA256, 0, 0, 0xc0)), pcr), ErrPCRSelection},
		{"error/PCR 0 instead", quoteAttest(nonce, sels(bank(tpm2.TPMAlgSHA256, 1, 0, 0)), pcr), ErrPCRSelection},
		{"error/SHA-1 bank", quoteAttest(nonce, sels(bank(tpm2.TPMAlgSHA1, 0, 0, 0x80)), pcr), ErrPCRSelection},
		{"error/two banks", quoteAttest(nonce, sels(bank(tpm2.TPMAlgSHA256, 0, 0, 0x80), bank(tpm2.TPMAlgSHA1, 0, 0, 0x80)), pcr), ErrPCRSelection},
		{"error/no bank", quoteAttest(nonce, sels(), pcr), ErrPCRSelection},
		{"error/short bitmap", quoteAttest(nonce, sels(bank(tpm2.TPMAlgSHA256, 0xff, 0xff)), pcr), ErrPCRSelection},
		{"error/other register", quoteAttest(nonce, pcrSelection(), [32]byte{1}), ErrPCRMismatch},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := VerifyQuote(&ak.PublicKey, signedAttest(t, ak, tt.a), nonce, pcr)
			if tt.wantErr == nil && err != nil {
				t.Fatalf("VerifyQuote: %v", err)
			}
			if tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
				t.Fatalf("VerifyQuote: got %v, want %v", err, tt.wantErr)
			}
		})
	}
}

// identityArea is the marshalled public area of an identity key pub, as
// the TPM would report it, after mutate.
func identityArea(t *testing.T, pub *ecdsa.PublicKey, mutate func(p *tpm2.TPMTPublic)) []byte {
	t.Helper()
	p, err := publicAreaFor(pub, false)
	if err != nil {
		t.Fatal(err)
	}
	mutate(&p)
	return tpm2.Marshal(p)
}

func TestVerifyCertifyIdentityPolicy(t *testing.T) {
	ak, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	id, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	extra := []byte("extra")
	area := func(mutate func(p *tpm2.TPMTPublic)) []byte { return identityArea(t, &id.PublicKey, mutate) }
	certifyOf := func(area []byte) Attestation {
		return signedAttest(t, ak, tpm2.TPMSAttest{
			Magic:     tpm2.TPMGeneratedValue,
			Type:      tpm2.TPMSTAttestCertify,
			ExtraData: tpm2.TPM2BData{Buffer: extra},
			Attested: tpm2.NewTPMUAttest(tpm2.TPMSTAttestCertify, &tpm2.TPMSCertifyInfo{
				Name: tpm2.TPM2BName{Buffer: nameOf(area)},
			}),
		})
	}
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	p384raw, _ := p384.PublicKey.Bytes()
	good := area(func(*tpm2.TPMTPublic) {})
	tests := []struct {
		name    string
		area    []byte
		wantErr error
	}{
		{"ok", good, nil},
		{"error/restricted", area(func(p *tpm2.TPMTPublic) { p.ObjectAttributes.Restricted = true }), ErrIdentityKey},
		{"error/not fixedTPM", area(func(p *tpm2.TPMTPublic) { p.ObjectAttributes.FixedTPM = false }), ErrIdentityKey},
		{"error/not a signing key", area(func(p *tpm2.TPMTPublic) { p.ObjectAttributes.SignEncrypt = false }), ErrIdentityKey},
		{"error/SHA-1 name", area(func(p *tpm2.TPMTPublic) { p.NameAlg = tpm2.TPMAlgSHA1 }), ErrIdentityKey},
		{"error/P-384", area(func(p *tpm2.TPMTPublic) {
			parms, _ := p.Parameters.ECCDetail()
			parms.CurveID = tpm2.TPMECCNistP384
			p.Unique = tpm2.NewTPMUPublicID(tpm2.TPMAlgECC, &tpm2.TPMSECCPoint{
				X: tpm2.TPM2BECCParameter{Buffer: p384raw[1:49]},
				Y: tpm2.TPM2BECCParameter{Buffer: p384raw[49:]},
			})
		}), ErrIdentityKey},
		{"error/point not on curve", area(func(p *tpm2.TPMTPublic) {
			p.Unique = tpm2.NewTPMUPublicID(tpm2.TPMAlgECC, &tpm2.TPMSECCPoint{
				X: tpm2.TPM2BECCParameter{Buffer: make([]byte, 32)},
				Y: tpm2.TPM2BECCParameter{Buffer: make([]byte, 32)},
			})
		}), ErrIdentityKey},
		{"error/trailing byte", append(append([]byte(nil), good...), 0), ErrMalformed},
		{"error/truncated", good[:len(good)-1], ErrMalformed},
		{"error/empty", nil, ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			key, err := VerifyCertify(&ak.PublicKey, certifyOf(tt.area), tt.area, extra)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("VerifyCertify: got %v, want %v", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("VerifyCertify: %v", err)
			}
			if !key.Equal(&id.PublicKey) {
				t.Errorf("VerifyCertify returned another key")
			}
		})
	}
}

// sentinels are the errors the verifiers may wrap.
var sentinels = []error{ErrMalformed, ErrUnsupportedKey, ErrBadSignature, ErrNotTPMGenerated, ErrWrongType,
	ErrNonceMismatch, ErrPCRSelection, ErrPCRMismatch, ErrNameMismatch, ErrIdentityKey}

func wrapsSentinel(err error) bool {
	for _, s := range sentinels {
		if errors.Is(err, s) {
			return true
		}
	}
	return false
}

// fuzzDevice is a soft root of trust whose evidence seeds the fuzzers.
func fuzzDevice(f *testing.F) *Soft {
	r, err := OpenSoft(f.TempDir())
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { r.Close() })
	if err := r.ResetMeasurements(); err != nil {
		f.Fatal(err)
	}
	for _, e := range testEvents {
		if err := r.Extend(e); err != nil {
			f.Fatal(err)
		}
	}
	return r
}

func FuzzVerifyQuote(f *testing.F) {
	r := fuzzDevice(f)
	pcr, err := ReplayEventLog(r.EventLog())
	if err != nil {
		f.Fatal(err)
	}
	nonce := []byte("fuzz nonce")
	q, err := r.Quote(nonce)
	if err != nil {
		f.Fatal(err)
	}
	c, _ := r.CertifyIdentity(nonce)
	f.Add(q.Attest, q.Signature, nonce)
	f.Add(c.Attest, c.Signature, nonce)
	f.Add(q.Attest[:len(q.Attest)/2], q.Signature, []byte{})
	f.Add([]byte{}, []byte{}, []byte{})
	ak := r.AttestationKey()
	f.Fuzz(func(t *testing.T, attest, sig, nonce []byte) {
		err := VerifyQuote(ak, Attestation{Attest: attest, Signature: sig}, nonce, pcr)
		if err != nil && !wrapsSentinel(err) {
			t.Errorf("VerifyQuote error wraps no sentinel: %v", err)
		}
	})
}

func FuzzVerifyCertify(f *testing.F) {
	r := fuzzDevice(f)
	extra := []byte("fuzz extra")
	c, err := r.CertifyIdentity(extra)
	if err != nil {
		f.Fatal(err)
	}
	q, _ := r.Quote(extra)
	area := r.IdentityPublicArea()
	f.Add(c.Attest, c.Signature, area, extra)
	f.Add(q.Attest, q.Signature, area, extra)
	f.Add(c.Attest, c.Signature, area[:len(area)-3], extra)
	f.Add([]byte{}, []byte{}, []byte{}, []byte{})
	ak := r.AttestationKey()
	f.Fuzz(func(t *testing.T, attest, sig, area, extra []byte) {
		key, err := VerifyCertify(ak, Attestation{Attest: attest, Signature: sig}, area, extra)
		if err != nil && !wrapsSentinel(err) {
			t.Errorf("VerifyCertify error wraps no sentinel: %v", err)
		}
		if err == nil && key == nil {
			t.Errorf("VerifyCertify: nil key and nil error")
		}
	})
}
