package rot

// Verification of evidence, for the service. Pure functions: no TPM, no
// state. The inputs come from devices, that is from anyone: every length
// is checked, and the parsers return errors, never panic.

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/sha256"
	"errors"
	"fmt"

	"github.com/google/go-tpm/tpm2"
)

// Reasons evidence is refused. The errors of VerifyQuote, VerifyCertify and
// ReplayEventLog wrap exactly one of them (test with errors.Is) and say in
// their text what did not match.
var (
	// ErrMalformed: the bytes are not the structure they claim to be.
	ErrMalformed = errors.New("rot: malformed evidence")
	// ErrUnsupportedKey: the attestation key given to the verifier is not
	// an ECDSA P-256 public key (a service-side problem, not the device's).
	ErrUnsupportedKey = errors.New("rot: attestation key is not an ECDSA P-256 public key")
	// ErrBadSignature: the signature is not the attestation key's over
	// SHA-256 of the structure.
	ErrBadSignature = errors.New("rot: signature does not verify with the attestation key")
	// ErrNotTPMGenerated: the structure lacks TPM_GENERATED_VALUE.
	ErrNotTPMGenerated = errors.New("rot: structure is not marked TPM-generated")
	// ErrWrongType: a certification where a quote was expected, or the
	// other way round.
	ErrWrongType = errors.New("rot: wrong attestation type")
	// ErrNonceMismatch: the qualifying data (extraData) is not the nonce
	// or the extraData the verifier expects: a replay or a stale answer.
	ErrNonceMismatch = errors.New("rot: qualifying data does not match")
	// ErrPCRSelection: the quote does not cover exactly MeasurementPCR of
	// the SHA-256 bank.
	ErrPCRSelection = errors.New("rot: quote does not cover exactly the measurement PCR")
	// ErrPCRMismatch: the quoted register is not the one the event log
	// replays to: the log is incomplete or was tampered with.
	ErrPCRMismatch = errors.New("rot: quoted measurement register does not match the event log")
	// ErrNameMismatch: the certified object is not the identity key given.
	ErrNameMismatch = errors.New("rot: certified key is not the identity key")
	// ErrIdentityKey: the identity key's public area is not an
	// unrestricted, fixedTPM, ECDSA P-256 signing key.
	ErrIdentityKey = errors.New("rot: identity key does not meet the policy")
)

// maxStructSize bounds a TPMS_ATTEST or TPMT_PUBLIC accepted for parsing.
// A quote or certification of an ECC key is about 150 bytes; a TPM's
// largest response is a few kilobytes.
const maxStructSize = 4096

// maxSigSize bounds an ASN.1 ECDSA P-256 signature (at most 72 bytes).
const maxSigSize = 128

// ReplayEventLog computes the measurement register that events produce:
// starting from 32 zero bytes (a reset PCR), pcr = SHA-256(pcr ||
// e.ExtendValue()) for each event in order.
func ReplayEventLog(events []Event) ([32]byte, error) {
	var pcr [32]byte
	for i, e := range events {
		v, err := e.ExtendValue()
		if err != nil {
			return [32]byte{}, fmt.Errorf("rot.ReplayEventLog: event %d (%q %q): %w: %v", i, e.Type, e.Name, ErrMalformed, err)
		}
		pcr = extend(pcr, v)
	}
	return pcr, nil
}

// VerifyQuote checks that q is a quote by the attestation key ak over the
// measurement register value pcr with nonce as qualifying data:
// TPM_GENERATED_VALUE, type TPM_ST_ATTEST_QUOTE, extraData == nonce, PCR
// selection exactly {SHA-256: MeasurementPCR}, pcrDigest == SHA-256(pcr),
// and an ECDSA signature by ak over SHA-256(q.Attest).
func VerifyQuote(ak crypto.PublicKey, q Attestation, nonce []byte, pcr [32]byte) error {
	a, err := parseAttest(q.Attest)
	if err != nil {
		return fmt.Errorf("rot.VerifyQuote: %w", err)
	}
	if err := verifySignature(ak, q); err != nil {
		return fmt.Errorf("rot.VerifyQuote: %w", err)
	}
	if err := checkHeader(a, tpm2.TPMSTAttestQuote, nonce); err != nil {
		return fmt.Errorf("rot.VerifyQuote: %w", err)
	}
	info, err := a.Attested.Quote()
	if err != nil {
		return fmt.Errorf("rot.VerifyQuote: %w: no quote information", ErrMalformed)
	}
	if err := checkPCRSelection(info.PCRSelect); err != nil {
		return fmt.Errorf("rot.VerifyQuote: %w", err)
	}
	want := sha256.Sum256(pcr[:])
	if !bytes.Equal(info.PCRDigest.Buffer, want[:]) {
		return fmt.Errorf("rot.VerifyQuote: %w: quoted PCR digest %x, SHA-256 of the expected register %x is %x",
			ErrPCRMismatch, info.PCRDigest.Buffer, pcr, want)
	}
	return nil
}

// VerifyCertify checks that c is a certification, by the attestation key
// ak with extraData as qualifying data, of the key whose marshalled
// TPMT_PUBLIC is identityPublicArea, and that this key is an unrestricted,
// fixedTPM, ECDSA P-256 (SHA-256) signing key. It returns the identity key,
// for the service to compare with the CSR's key and the registered one.
func VerifyCertify(ak crypto.PublicKey, c Attestation, identityPublicArea []byte, extraData []byte) (*ecdsa.PublicKey, error) {
	pub, name, err := parsePublicArea(identityPublicArea)
	if err != nil {
		return nil, fmt.Errorf("rot.VerifyCertify: identity public area: %w", err)
	}
	a, err := parseAttest(c.Attest)
	if err != nil {
		return nil, fmt.Errorf("rot.VerifyCertify: %w", err)
	}
	if err := verifySignature(ak, c); err != nil {
		return nil, fmt.Errorf("rot.VerifyCertify: %w", err)
	}
	if err := checkHeader(a, tpm2.TPMSTAttestCertify, extraData); err != nil {
		return nil, fmt.Errorf("rot.VerifyCertify: %w", err)
	}
	info, err := a.Attested.Certify()
	if err != nil {
		return nil, fmt.Errorf("rot.VerifyCertify: %w: no certify information", ErrMalformed)
	}
	if !bytes.Equal(info.Name.Buffer, name) {
		return nil, fmt.Errorf("rot.VerifyCertify: %w: certified name %x, identity key's name %x",
			ErrNameMismatch, info.Name.Buffer, name)
	}
	key, err := identityPolicy(pub)
	if err != nil {
		return nil, fmt.Errorf("rot.VerifyCertify: %w", err)
	}
	return key, nil
}

// parseAttest parses a marshalled TPMS_ATTEST: directly if it is a quote or
// a certification as TPMs write them, else with go-tpm (tpmwire.go).
func parseAttest(b []byte) (*tpm2.TPMSAttest, error) {
	if len(b) == 0 || len(b) > maxStructSize {
		return nil, fmt.Errorf("%w: attestation structure is %d bytes", ErrMalformed, len(b))
	}
	if a, ok := decodeAttest(b); ok {
		return a, nil
	}
	return parseAttestGoTPM(b)
}

// parseAttestGoTPM is parseAttest with go-tpm alone.
func parseAttestGoTPM(b []byte) (*tpm2.TPMSAttest, error) {
	a, err := tpm2.Unmarshal[tpm2.TPMSAttest](b)
	if err != nil {
		return nil, fmt.Errorf("%w: TPMS_ATTEST: %v", ErrMalformed, err)
	}
	return a, nil
}

// parsePublicArea parses a marshalled TPMT_PUBLIC with a SHA-256 name
// algorithm and returns it with its TPM name. It refuses trailing bytes and
// non-canonical encodings: the name computed over the bytes given must be
// the name of the structure parsed, or the key the certification speaks of
// and the key returned could differ.
func parsePublicArea(b []byte) (*tpm2.TPMTPublic, []byte, error) {
	if len(b) == 0 || len(b) > maxStructSize {
		return nil, nil, fmt.Errorf("%w: TPMT_PUBLIC is %d bytes", ErrMalformed, len(b))
	}
	if pub, ok := decodeECCPublic(b); ok {
		return pub, nameOf(b), nil
	}
	return parsePublicAreaGoTPM(b)
}

// parsePublicAreaGoTPM is parsePublicArea with go-tpm alone.
func parsePublicAreaGoTPM(b []byte) (*tpm2.TPMTPublic, []byte, error) {
	pub, err := tpm2.Unmarshal[tpm2.TPMTPublic](b)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: TPMT_PUBLIC: %v", ErrMalformed, err)
	}
	if pub.NameAlg != tpm2.TPMAlgSHA256 {
		return nil, nil, fmt.Errorf("%w: name algorithm %#04x, want SHA-256", ErrIdentityKey, uint16(pub.NameAlg))
	}
	name := nameOf(b)
	canonical, err := tpm2.ObjectName(pub)
	if err != nil || !bytes.Equal(canonical.Buffer, name) {
		return nil, nil, fmt.Errorf("%w: TPMT_PUBLIC has trailing bytes or a non-canonical encoding", ErrMalformed)
	}
	return pub, name, nil
}

// verifySignature checks the ASN.1 ECDSA signature of ak over
// SHA-256(att.Attest).
func verifySignature(ak crypto.PublicKey, att Attestation) error {
	pub, ok := ak.(*ecdsa.PublicKey)
	if !ok || pub == nil || pub.Curve != elliptic.P256() {
		return fmt.Errorf("%w: got %T", ErrUnsupportedKey, ak)
	}
	if len(att.Signature) == 0 || len(att.Signature) > maxSigSize {
		return fmt.Errorf("%w: signature is %d bytes", ErrBadSignature, len(att.Signature))
	}
	d := sha256.Sum256(att.Attest)
	if !ecdsa.VerifyASN1(pub, d[:], att.Signature) {
		return ErrBadSignature
	}
	return nil
}

// checkHeader checks the fields common to quotes and certifications.
func checkHeader(a *tpm2.TPMSAttest, typ tpm2.TPMST, extraData []byte) error {
	if a.Magic != tpm2.TPMGeneratedValue {
		return fmt.Errorf("%w: magic %#08x", ErrNotTPMGenerated, uint32(a.Magic))
	}
	if a.Type != typ {
		return fmt.Errorf("%w: %#04x, want %#04x", ErrWrongType, uint16(a.Type), uint16(typ))
	}
	if !bytes.Equal(a.ExtraData.Buffer, extraData) {
		return fmt.Errorf("%w: signed over %x, expected %x", ErrNonceMismatch, a.ExtraData.Buffer, extraData)
	}
	return nil
}

// checkPCRSelection accepts exactly one bank, SHA-256, with exactly
// MeasurementPCR selected (zero bytes beyond the minimum size allowed).
func checkPCRSelection(sel tpm2.TPMLPCRSelection) error {
	if len(sel.PCRSelections) != 1 {
		return fmt.Errorf("%w: %d banks selected", ErrPCRSelection, len(sel.PCRSelections))
	}
	s := sel.PCRSelections[0]
	if s.Hash != tpm2.TPMAlgSHA256 {
		return fmt.Errorf("%w: bank %#04x, want SHA-256", ErrPCRSelection, uint16(s.Hash))
	}
	if len(s.PCRSelect) <= MeasurementPCR/8 {
		return fmt.Errorf("%w: selection bitmap of %d bytes", ErrPCRSelection, len(s.PCRSelect))
	}
	for i, b := range s.PCRSelect {
		want := byte(0)
		if i == MeasurementPCR/8 {
			want = 1 << (MeasurementPCR % 8)
		}
		if b != want {
			return fmt.Errorf("%w: selection bitmap %x", ErrPCRSelection, s.PCRSelect)
		}
	}
	return nil
}

// identityPolicy checks that pub is an identity key as OpenSphere makes
// them and returns its public key.
func identityPolicy(pub *tpm2.TPMTPublic) (*ecdsa.PublicKey, error) {
	attrs := pub.ObjectAttributes
	switch {
	case !attrs.SignEncrypt:
		return nil, fmt.Errorf("%w: not a signing key", ErrIdentityKey)
	case attrs.Restricted:
		return nil, fmt.Errorf("%w: restricted (an attestation key, not an identity key)", ErrIdentityKey)
	case !attrs.FixedTPM:
		return nil, fmt.Errorf("%w: not fixedTPM (the key may exist outside the TPM)", ErrIdentityKey)
	}
	key, err := eccSigningKey(pub)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrIdentityKey, err)
	}
	return key, nil
}
