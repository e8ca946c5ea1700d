package rot

// The soft root of trust keeps its keys in files. ANYONE WHO CAN READ THOSE
// FILES CAN IMPERSONATE THE DEVICE: copy them and you have its identity and
// its attestation key, and can quote any measurement you like. It exists for
// development and fleet simulation only. Its evidence has the TPM's format,
// so the service verifies it with the same code; the service trusts it only
// as far as the device's registered kind (KindSoft) allows, and a device
// group can refuse it.

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/google/go-tpm/tpm2"
)

// Files of the soft root of trust in its state directory.
const (
	softAKFile       = "ak.pem"       // attestation key, PKCS#8 PEM
	softIdentityFile = "identity.pem" // identity key, PKCS#8 PEM
	softCounterFile  = "counter"      // anti-rollback counter, decimal
)

// Soft is a root of trust in software: ECDSA P-256 keys in PKCS#8 PEM
// files (mode 0600), the measurement register in memory, the anti-rollback
// counter in a file. For development and simulation only: see the top of
// soft.go.
type Soft struct {
	mu     sync.Mutex
	dir    string
	start  time.Time
	closed bool

	ak, id       *ecdsa.PrivateKey
	akQN         []byte // qualified name of the AK, for TPMS_ATTEST.qualifiedSigner
	idArea       []byte // marshalled TPMT_PUBLIC of the identity key
	idName, idQN []byte
	register     [32]byte
	events       []Event
	counterSeen  uint64 // highest value read or written, to refuse a file that went backwards
}

var _ RootOfTrust = (*Soft)(nil)

// OpenSoft opens the soft root of trust kept in stateDir, creating the
// directory (mode 0700) and the keys the first time.
func OpenSoft(stateDir string) (*Soft, error) {
	if err := prepareStateDir(stateDir); err != nil {
		return nil, fmt.Errorf("rot.OpenSoft: %w", err)
	}
	s := &Soft{dir: stateDir, start: time.Now()}
	var err error
	if s.ak, err = loadOrCreateSoftKey(stateDir, softAKFile); err != nil {
		return nil, fmt.Errorf("rot.OpenSoft: %w", err)
	}
	if s.id, err = loadOrCreateSoftKey(stateDir, softIdentityFile); err != nil {
		return nil, fmt.Errorf("rot.OpenSoft: %w", err)
	}
	akArea, err := marshalPublicArea(&s.ak.PublicKey, true)
	if err != nil {
		return nil, fmt.Errorf("rot.OpenSoft: attestation key: %w", err)
	}
	if s.idArea, err = marshalPublicArea(&s.id.PublicKey, false); err != nil {
		return nil, fmt.Errorf("rot.OpenSoft: identity key: %w", err)
	}
	s.akQN = softQualifiedName(nameOf(akArea))
	s.idName = nameOf(s.idArea)
	s.idQN = softQualifiedName(s.idName)
	if _, err := s.readCounter(); err != nil {
		return nil, fmt.Errorf("rot.OpenSoft: %w", err)
	}
	return s, nil
}

func marshalPublicArea(pub *ecdsa.PublicKey, restricted bool) ([]byte, error) {
	area, err := publicAreaFor(pub, restricted)
	if err != nil {
		return nil, err
	}
	return tpm2.Marshal(area), nil
}

// softQualifiedName is the qualified name a TPM would give a key with this
// name that was a primary of the owner hierarchy:
// nameAlg || SHA-256(handle name of TPM_RH_OWNER || name). Verifiers do not
// check it; it is there so the structure is complete.
func softQualifiedName(name []byte) []byte {
	h := sha256.New()
	h.Write(tpm2.HandleName(tpm2.TPMRHOwner).Buffer)
	h.Write(name)
	return h.Sum([]byte{0x00, 0x0b})
}

// loadOrCreateSoftKey reads an ECDSA P-256 key from dir/name, creating it if
// the file does not exist.
func loadOrCreateSoftKey(dir, name string) (*ecdsa.PrivateKey, error) {
	b, ok, err := readStateFile(dir, name)
	if err != nil {
		return nil, err
	}
	if !ok {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return nil, err
		}
		der, err := x509.MarshalPKCS8PrivateKey(k)
		if err != nil {
			return nil, err
		}
		if err := writeFileAtomic(dir, name, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})); err != nil {
			return nil, fmt.Errorf("save %s: %w", name, err)
		}
		return k, nil
	}
	block, _ := pem.Decode(b)
	if block == nil || block.Type != "PRIVATE KEY" {
		return nil, fmt.Errorf("%s: no PKCS#8 PRIVATE KEY PEM block", name)
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	ek, ok := k.(*ecdsa.PrivateKey)
	if !ok || ek.Curve != elliptic.P256() {
		return nil, fmt.Errorf("%s: not an ECDSA P-256 key", name)
	}
	return ek, nil
}

// Kind implements RootOfTrust.
func (s *Soft) Kind() Kind { return KindSoft }

// AttestationKey implements RootOfTrust: an *ecdsa.PublicKey.
func (s *Soft) AttestationKey() crypto.PublicKey { return &s.ak.PublicKey }

// Identity implements RootOfTrust. Like the TPM's, Sign accepts SHA-256,
// SHA-384 and SHA-512 digests and returns ASN.1 DER.
func (s *Soft) Identity() crypto.Signer { return softSigner{s} }

// IdentityPublicArea implements RootOfTrust: the TPMT_PUBLIC a TPM would
// report for the identity key (same template as the TPM identity key).
func (s *Soft) IdentityPublicArea() []byte { return append([]byte(nil), s.idArea...) }

// EKCertificate implements RootOfTrust: a soft root of trust has none.
func (s *Soft) EKCertificate() []byte { return nil }

type softSigner struct{ s *Soft }

func (ss softSigner) Public() crypto.PublicKey { return &ss.s.id.PublicKey }

// Sign signs with the identity key. Like the TPM, it signs the leftmost 256
// bits of the digest (which is what ECDSA P-256 signs anyway).
func (ss softSigner) Sign(r io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	d, err := p256Digest(digest, opts)
	if err != nil {
		return nil, err
	}
	ss.s.mu.Lock()
	closed := ss.s.closed
	ss.s.mu.Unlock()
	if closed {
		return nil, ErrClosed
	}
	if r == nil {
		r = rand.Reader
	}
	return ecdsa.SignASN1(r, ss.s.id, d)
}

// sign makes the evidence: a TPMS_ATTEST as a TPM would write it, with
// attested as its marshalled union, signed by the AK over its SHA-256.
func (s *Soft) sign(typ tpm2.TPMST, extraData []byte, attested func([]byte) []byte) (Attestation, error) {
	a := appendAttestHeader(make([]byte, 0, 256), typ, s.akQN, extraData,
		uint64(time.Since(s.start).Milliseconds()), true)
	a = attested(a)
	d := sha256.Sum256(a)
	sig, err := ecdsa.SignASN1(rand.Reader, s.ak, d[:])
	if err != nil {
		return Attestation{}, err
	}
	return Attestation{Attest: a, Signature: sig}, nil
}

// CertifyIdentity implements RootOfTrust: a TPM_ST_ATTEST_CERTIFY over the
// identity key's name.
func (s *Soft) CertifyIdentity(extraData []byte) (Attestation, error) {
	if len(extraData) > MaxNonceSize {
		return Attestation{}, fmt.Errorf("rot.CertifyIdentity: extraData is %d bytes, at most %d", len(extraData), MaxNonceSize)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return Attestation{}, ErrClosed
	}
	att, err := s.sign(tpm2.TPMSTAttestCertify, extraData, func(b []byte) []byte {
		return appendCertifyInfo(b, s.idName, s.idQN)
	})
	if err != nil {
		return Attestation{}, fmt.Errorf("rot.CertifyIdentity: %w", err)
	}
	return att, nil
}

// ResetMeasurements implements RootOfTrust: the register becomes zeros.
func (s *Soft) ResetMeasurements() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	s.register = [32]byte{}
	s.events = nil
	return nil
}

// Extend implements RootOfTrust: register = SHA-256(register ||
// e.ExtendValue()), as TPM2_PCR_Extend does.
func (s *Soft) Extend(e Event) error {
	v, err := e.ExtendValue()
	if err != nil {
		return fmt.Errorf("rot.Extend: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	s.register = extend(s.register, v)
	s.events = append(s.events, e)
	return nil
}

// EventLog implements RootOfTrust.
func (s *Soft) EventLog() []Event {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Event(nil), s.events...)
}

// Quote implements RootOfTrust: a TPM_ST_ATTEST_QUOTE over MeasurementPCR
// of the SHA-256 bank.
func (s *Soft) Quote(nonce []byte) (Attestation, error) {
	if len(nonce) > MaxNonceSize {
		return Attestation{}, fmt.Errorf("rot.Quote: nonce is %d bytes, at most %d", len(nonce), MaxNonceSize)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return Attestation{}, ErrClosed
	}
	digest := sha256.Sum256(s.register[:])
	sel := pcrSelection().PCRSelections[0]
	att, err := s.sign(tpm2.TPMSTAttestQuote, nonce, func(b []byte) []byte {
		return appendQuoteInfo(b, sel.Hash, sel.PCRSelect, digest[:])
	})
	if err != nil {
		return Attestation{}, fmt.Errorf("rot.Quote: %w", err)
	}
	return att, nil
}

// readCounter reads the counter file; a missing file is 0. A damaged file,
// or one that went down since this process last saw it, is an error, never
// a silent 0: that would be a rollback.
func (s *Soft) readCounter() (uint64, error) {
	b, ok, err := readStateFile(s.dir, softCounterFile)
	if err != nil {
		return 0, fmt.Errorf("anti-rollback counter: %w", err)
	}
	if !ok {
		if s.counterSeen != 0 {
			return 0, fmt.Errorf("anti-rollback counter: %s disappeared (it was %d)", softCounterFile, s.counterSeen)
		}
		return 0, nil
	}
	v, err := strconv.ParseUint(strings.TrimSuffix(string(b), "\n"), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("anti-rollback counter: %s is damaged: %w", softCounterFile, err)
	}
	if v < s.counterSeen {
		return 0, fmt.Errorf("anti-rollback counter: %s went down from %d to %d", softCounterFile, s.counterSeen, v)
	}
	s.counterSeen = v
	return v, nil
}

// Counter implements RootOfTrust.
func (s *Soft) Counter() (uint64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return 0, ErrClosed
	}
	v, err := s.readCounter()
	if err != nil {
		return 0, fmt.Errorf("rot.Counter: %w", err)
	}
	return v, nil
}

// AdvanceCounter implements RootOfTrust, with the TPM's rules: never down,
// at most 1<<20 per call.
func (s *Soft) AdvanceCounter(v uint64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	cur, err := s.readCounter()
	if err != nil {
		return fmt.Errorf("rot.AdvanceCounter: %w", err)
	}
	if err := checkAdvance(cur, v); err != nil {
		return err
	}
	if v == cur {
		return nil
	}
	if err := writeFileAtomic(s.dir, softCounterFile, []byte(strconv.FormatUint(v, 10)+"\n")); err != nil {
		return fmt.Errorf("rot.AdvanceCounter: %w", err)
	}
	s.counterSeen = v
	return nil
}

// Close implements RootOfTrust.
func (s *Soft) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	return nil
}

// extend is TPM2_PCR_Extend of a SHA-256 PCR: SHA-256(pcr || v).
func extend(pcr, v [32]byte) [32]byte {
	return sha256.Sum256(append(pcr[:], v[:]...))
}
