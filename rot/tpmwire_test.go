package rot

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/binary"
	"testing"

	"github.com/google/go-tpm/tpm2"
)

// checkDirectAttest fails the test unless the direct decoder and go-tpm
// read b the same way: the direct one answers only for structures go-tpm
// reads too, with the same fields (compared through go-tpm's encoding, which
// for these structures must also be b itself).
func checkDirectAttest(t *testing.T, b []byte) (direct bool) {
	t.Helper()
	d, ok := decodeAttest(b)
	ref, err := parseAttestGoTPM(b)
	if !ok {
		if err == nil && canonicalAttest(ref, b) {
			t.Errorf("direct decoder refused a canonical %#04x structure go-tpm reads: %x", uint16(ref.Type), b)
		}
		return false
	}
	if err != nil {
		t.Fatalf("direct decoder read what go-tpm refuses (%v): %x", err, b)
	}
	if got, want := tpm2.Marshal(*d), tpm2.Marshal(*ref); !bytes.Equal(got, want) || !bytes.Equal(got, b) {
		t.Fatalf("direct decoder and go-tpm differ:\n input  %x\n direct %x\n go-tpm %x", b, got, want)
	}
	return true
}

// canonicalAttest reports whether ref is a structure the direct decoder is
// meant to read: a TPM-generated quote (of at most maxDirectBanks banks) or
// certification, which go-tpm encodes back to exactly b.
func canonicalAttest(ref *tpm2.TPMSAttest, b []byte) bool {
	if ref.Magic != tpm2.TPMGeneratedValue || !bytes.Equal(tpm2.Marshal(*ref), b) {
		return false
	}
	switch ref.Type {
	case tpm2.TPMSTAttestCertify:
		return true
	case tpm2.TPMSTAttestQuote:
		q, err := ref.Attested.Quote()
		return err == nil && len(q.PCRSelect.PCRSelections) <= maxDirectBanks
	}
	return false
}

// checkDirectPublic is checkDirectAttest for a TPMT_PUBLIC: same structure,
// same name, and the same answer from the identity policy.
func checkDirectPublic(t *testing.T, b []byte) (direct bool) {
	t.Helper()
	d, ok := decodeECCPublic(b)
	if !ok {
		return false
	}
	ref, name, err := parsePublicAreaGoTPM(b)
	if err != nil {
		t.Fatalf("direct decoder read what go-tpm refuses (%v): %x", err, b)
	}
	if got, want := tpm2.Marshal(*d), tpm2.Marshal(*ref); !bytes.Equal(got, want) || !bytes.Equal(got, b) {
		t.Fatalf("direct decoder and go-tpm differ:\n input  %x\n direct %x\n go-tpm %x", b, got, want)
	}
	if !bytes.Equal(nameOf(b), name) {
		t.Fatalf("names differ: %x, go-tpm path %x", nameOf(b), name)
	}
	dk, derr := identityPolicy(d)
	rk, rerr := identityPolicy(ref)
	switch {
	case (derr == nil) != (rerr == nil):
		t.Fatalf("identity policy: direct %v, go-tpm %v", derr, rerr)
	case derr != nil && derr.Error() != rerr.Error():
		t.Fatalf("identity policy refuses differently: direct %v, go-tpm %v", derr, rerr)
	case derr == nil && !dk.Equal(rk):
		t.Fatal("identity policy returns different keys")
	}
	return true
}

// TestDirectCodecOnDevices: the evidence of the soft root of trust and of
// the TPM simulator (with cgo) is read by the direct path, and reads as
// go-tpm reads it.
func TestDirectCodecOnDevices(t *testing.T) {
	forEachImpl(t, func(t *testing.T, open func() RootOfTrust) {
		r := open()
		q, err := r.Quote([]byte("nonce"))
		if err != nil {
			t.Fatal(err)
		}
		c, err := r.CertifyIdentity(bytes.Repeat([]byte{7}, MaxNonceSize))
		if err != nil {
			t.Fatal(err)
		}
		for name, b := range map[string][]byte{"quote": q.Attest, "certification": c.Attest} {
			if !checkDirectAttest(t, b) {
				t.Errorf("%s went to go-tpm: %x", name, b)
			}
		}
		if !checkDirectPublic(t, r.IdentityPublicArea()) {
			t.Errorf("identity public area went to go-tpm: %x", r.IdentityPublicArea())
		}
	})
}

// TestDirectCodecHandsOver: the shapes the direct path does not read go to
// go-tpm, and the verifier's answer is go-tpm's.
func TestDirectCodecHandsOver(t *testing.T) {
	nonce := []byte("nonce")
	quote := tpm2.Marshal(quoteAttest(nonce, pcrSelection(), [32]byte{1}))
	withByte := func(b []byte, i int, v byte) []byte {
		b = bytes.Clone(b)
		b[i] = v
		return b
	}
	// The clock's Safe byte sits after magic, type, two TPM2Bs and 16
	// bytes of counters.
	safeAt := 4 + 2 + 2 + 0 + 2 + len(nonce) + 16
	timeAttest := tpm2.Marshal(tpm2.TPMSAttest{
		Magic:    tpm2.TPMGeneratedValue,
		Type:     tpm2.TPMSTAttestTime,
		Attested: tpm2.NewTPMUAttest(tpm2.TPMSTAttestTime, &tpm2.TPMSTimeAttestInfo{}),
	})
	attests := []struct {
		name string
		b    []byte
	}{
		{"other type", timeAttest},
		{"not TPM-generated", withByte(quote, 0, 0)},
		{"Safe is 2", withByte(quote, safeAt, 2)},
		{"trailing byte", append(bytes.Clone(quote), 0)},
		{"truncated", quote[:len(quote)-1]},
		{"many banks", func() []byte {
			var sels []tpm2.TPMSPCRSelection
			for range maxDirectBanks + 1 {
				sels = append(sels, tpm2.TPMSPCRSelection{Hash: tpm2.TPMAlgSHA256, PCRSelect: []byte{0, 0, 0x80}})
			}
			return tpm2.Marshal(quoteAttest(nonce, tpm2.TPMLPCRSelection{PCRSelections: sels}, [32]byte{}))
		}()},
	}
	if quote[safeAt] != 0 && quote[safeAt] != 1 {
		t.Fatalf("byte %d of the quote is %d, not the Safe flag", safeAt, quote[safeAt])
	}
	for _, tt := range attests {
		if checkDirectAttest(t, tt.b) {
			t.Errorf("%s: read by the direct path", tt.name)
		}
	}

	id, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	area := func(mutate func(p *tpm2.TPMTPublic)) []byte { return identityArea(t, &id.PublicKey, mutate) }
	good := area(func(*tpm2.TPMTPublic) {})
	reserved := bytes.Clone(good)
	binary.BigEndian.PutUint32(reserved[4:], binary.BigEndian.Uint32(reserved[4:])|1<<31)
	publics := []struct {
		name string
		b    []byte
	}{
		{"SHA-1 name", area(func(p *tpm2.TPMTPublic) { p.NameAlg = tpm2.TPMAlgSHA1 })},
		{"reserved attribute bit", reserved},
		{"trailing byte", append(bytes.Clone(good), 0)},
		{"truncated", good[:len(good)-1]},
		{"symmetric algorithm", area(func(p *tpm2.TPMTPublic) {
			parms, _ := p.Parameters.ECCDetail()
			parms.Symmetric = tpm2.TPMTSymDefObject{
				Algorithm: tpm2.TPMAlgAES,
				KeyBits:   tpm2.NewTPMUSymKeyBits(tpm2.TPMAlgAES, tpm2.TPMKeyBits(128)),
				Mode:      tpm2.NewTPMUSymMode(tpm2.TPMAlgAES, tpm2.TPMAlgCFB),
			}
		})},
		{"no scheme", area(func(p *tpm2.TPMTPublic) {
			parms, _ := p.Parameters.ECCDetail()
			parms.Scheme = tpm2.TPMTECCScheme{Scheme: tpm2.TPMAlgNull}
		})},
		{"RSA", tpm2.Marshal(tpm2.TPMTPublic{
			Type:       tpm2.TPMAlgRSA,
			NameAlg:    tpm2.TPMAlgSHA256,
			Parameters: tpm2.NewTPMUPublicParms(tpm2.TPMAlgRSA, &tpm2.TPMSRSAParms{KeyBits: 2048}),
			Unique:     tpm2.NewTPMUPublicID(tpm2.TPMAlgRSA, &tpm2.TPM2BPublicKeyRSA{Buffer: make([]byte, 256)}),
		})},
	}
	for _, tt := range publics {
		if checkDirectPublic(t, tt.b) {
			t.Errorf("%s: read by the direct path", tt.name)
		}
	}
	// And public areas the direct path reads but the policy refuses: one
	// restricted, and one with every attribute go-tpm names, each bit alone.
	if !checkDirectPublic(t, area(func(p *tpm2.TPMTPublic) { p.ObjectAttributes.Restricted = true })) {
		t.Error("a restricted key went to go-tpm")
	}
	for _, f := range objectAttributeBits {
		b := bytes.Clone(good)
		binary.BigEndian.PutUint32(b[4:], 1<<f.bit)
		if !checkDirectPublic(t, b) {
			t.Errorf("attribute bit %d alone: went to go-tpm", f.bit)
		}
	}
}

// TestAppendAttest: the soft root of trust's encoder writes what go-tpm
// writes for the same structure.
func TestAppendAttest(t *testing.T) {
	sel := pcrSelection().PCRSelections[0]
	for _, tt := range []struct {
		name      string
		extraData []byte
		clock     uint64
		safe      bool
	}{
		{"empty extraData", nil, 0, false},
		{"nonce", []byte("nonce"), 1<<40 + 5, true},
		{"longest nonce", bytes.Repeat([]byte{0xa5}, MaxNonceSize), 1<<64 - 1, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			signer := bytes.Repeat([]byte{1}, 34)
			digest := bytes.Repeat([]byte{2}, 32)
			name, qname := bytes.Repeat([]byte{3}, 34), bytes.Repeat([]byte{4}, 34)
			header := tpm2.TPMSAttest{
				Magic:           tpm2.TPMGeneratedValue,
				QualifiedSigner: tpm2.TPM2BName{Buffer: signer},
				ExtraData:       tpm2.TPM2BData{Buffer: tt.extraData},
				ClockInfo:       tpm2.TPMSClockInfo{Clock: tt.clock, Safe: tt.safe},
			}
			q := header
			q.Type = tpm2.TPMSTAttestQuote
			q.Attested = tpm2.NewTPMUAttest(tpm2.TPMSTAttestQuote, &tpm2.TPMSQuoteInfo{
				PCRSelect: pcrSelection(),
				PCRDigest: tpm2.TPM2BDigest{Buffer: digest},
			})
			got := appendQuoteInfo(appendAttestHeader(nil, q.Type, signer, tt.extraData, tt.clock, tt.safe), sel.Hash, sel.PCRSelect, digest)
			if want := tpm2.Marshal(q); !bytes.Equal(got, want) {
				t.Errorf("quote:\n got  %x\n want %x", got, want)
			}
			c := header
			c.Type = tpm2.TPMSTAttestCertify
			c.Attested = tpm2.NewTPMUAttest(tpm2.TPMSTAttestCertify, &tpm2.TPMSCertifyInfo{
				Name:          tpm2.TPM2BName{Buffer: name},
				QualifiedName: tpm2.TPM2BName{Buffer: qname},
			})
			got = appendCertifyInfo(appendAttestHeader(nil, c.Type, signer, tt.extraData, tt.clock, tt.safe), name, qname)
			if want := tpm2.Marshal(c); !bytes.Equal(got, want) {
				t.Errorf("certification:\n got  %x\n want %x", got, want)
			}
		})
	}
}

// FuzzDirectAttest: wherever the direct decoder answers, go-tpm reads the
// same structure; and it answers for every canonical quote or certification.
func FuzzDirectAttest(f *testing.F) {
	r := fuzzDevice(f)
	q, err := r.Quote([]byte("fuzz nonce"))
	if err != nil {
		f.Fatal(err)
	}
	c, err := r.CertifyIdentity([]byte("fuzz extra"))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(q.Attest)
	f.Add(c.Attest)
	f.Add(tpm2.Marshal(quoteAttest(nil, tpm2.TPMLPCRSelection{}, [32]byte{})))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) > maxStructSize {
			return
		}
		checkDirectAttest(t, b)
	})
}

// FuzzDirectPublicArea: wherever the direct decoder answers, go-tpm's path
// reads the same key with the same name and the policy says the same.
func FuzzDirectPublicArea(f *testing.F) {
	r := fuzzDevice(f)
	f.Add(r.IdentityPublicArea())
	akArea, err := marshalPublicArea(&r.ak.PublicKey, true)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(akArea)
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) > maxStructSize {
			return
		}
		checkDirectPublic(t, b)
	})
}

// BenchmarkEvidence: the verifier's parsing of one attestation's evidence
// (a quote, a certification and the identity key's public area), by the
// direct path and by go-tpm alone, side by side; and the soft root of
// trust's encoding of a quote, both ways.
func BenchmarkEvidence(b *testing.B) {
	r, err := OpenSoft(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	defer r.Close()
	q, _ := r.Quote([]byte("nonce"))
	c, _ := r.CertifyIdentity([]byte("extra"))
	area := r.IdentityPublicArea()
	b.Run("parse/direct", func(b *testing.B) {
		for b.Loop() {
			decodeAttest(q.Attest)
			decodeAttest(c.Attest)
			decodeECCPublic(area)
		}
	})
	b.Run("parse/go-tpm", func(b *testing.B) {
		for b.Loop() {
			parseAttestGoTPM(q.Attest)
			parseAttestGoTPM(c.Attest)
			parsePublicAreaGoTPM(area)
		}
	})
	sel := pcrSelection().PCRSelections[0]
	digest := make([]byte, 32)
	b.Run("encode/direct", func(b *testing.B) {
		for b.Loop() {
			appendQuoteInfo(appendAttestHeader(make([]byte, 0, 256), tpm2.TPMSTAttestQuote, r.akQN, []byte("nonce"), 1, true),
				sel.Hash, sel.PCRSelect, digest)
		}
	})
	b.Run("encode/go-tpm", func(b *testing.B) {
		for b.Loop() {
			tpm2.Marshal(tpm2.TPMSAttest{
				Magic:           tpm2.TPMGeneratedValue,
				Type:            tpm2.TPMSTAttestQuote,
				QualifiedSigner: tpm2.TPM2BName{Buffer: r.akQN},
				ExtraData:       tpm2.TPM2BData{Buffer: []byte("nonce")},
				ClockInfo:       tpm2.TPMSClockInfo{Clock: 1, Safe: true},
				Attested: tpm2.NewTPMUAttest(tpm2.TPMSTAttestQuote, &tpm2.TPMSQuoteInfo{
					PCRSelect: pcrSelection(),
					PCRDigest: tpm2.TPM2BDigest{Buffer: digest},
				}),
			})
		}
	})
}
