// Package rot is a device's root of trust: the keys that identify and
// attest the device, the measurement register and event log that record
// what it runs, and the anti-rollback counter. Two implementations share
// one interface: TPM 2.0 (keys made in the TPM and never exported) and
// soft (keys in 0600 files, for development and simulation; its evidence is
// marked as software and a device group can refuse it).
//
// Both produce the same evidence format, TPM 2.0 structures: a TPMS_ATTEST
// (quote or certify) signed by the attestation key. So the service verifies
// every device with one code path (VerifyQuote, VerifyCertify,
// ReplayEventLog in verify.go), and trusts the kind of root of trust that
// the device's manufacturer registered, never what the device claims.
package rot

import (
	"crypto"
	"crypto/sha256"
	"encoding/hex"
	"errors"
)

// Kind names a root-of-trust implementation.
type Kind string

const (
	KindTPM  Kind = "tpm"
	KindSoft Kind = "soft"
)

// MeasurementPCR is the PCR of the SHA-256 bank that the agent measures
// into. PCR 23 is the PC Client spec's application PCR: resettable, so that
// the agent can start a fresh log at its own start.
const MeasurementPCR = 23

// Event is one measurement: what was measured and the SHA-256 of it.
type Event struct {
	// Type says what kind of thing was measured: "agent", "config",
	// "os-image", "app-image".
	Type string `json:"type"`
	// Name identifies it (a path, a component id).
	Name string `json:"name"`
	// Digest is the lowercase hex SHA-256 of the measured content.
	Digest string `json:"digest"`
}

// ExtendValue is what extending e adds to the measurement register:
// SHA-256 over a domain tag, type, name and the digest bytes, NUL-separated,
// so that the log binds every field of the event.
func (e Event) ExtendValue() ([32]byte, error) {
	d, err := hex.DecodeString(e.Digest)
	if err != nil || len(d) != sha256.Size {
		return [32]byte{}, errors.New("rot: event digest must be 64 hex characters (SHA-256)")
	}
	h := sha256.New()
	h.Write([]byte("opensphere-event-v1\x00"))
	h.Write([]byte(e.Type))
	h.Write([]byte{0})
	h.Write([]byte(e.Name))
	h.Write([]byte{0})
	h.Write(d)
	var out [32]byte
	copy(out[:], h.Sum(nil))
	return out, nil
}

// Attestation is a TPM 2.0 TPMS_ATTEST structure (marshalled, as the TPM
// returns it) and the attestation key's signature over it: ASN.1 DER
// ECDSA over SHA-256(Attest).
type Attestation struct {
	Attest    []byte `json:"attest"`
	Signature []byte `json:"signature"`
}

// RootOfTrust is a device's root of trust.
type RootOfTrust interface {
	// Kind says which implementation this is.
	Kind() Kind
	// AttestationKey is the public half of the attestation key: a
	// restricted ECDSA P-256 signing key that signs only TPM-made
	// structures (quotes and certifications).
	AttestationKey() crypto.PublicKey
	// Identity is the device identity key: an unrestricted ECDSA P-256
	// signing key usable for TLS client authentication. Sign runs in the
	// root of trust; the private key never leaves it.
	Identity() crypto.Signer
	// IdentityPublicArea is the identity key's marshalled TPMT_PUBLIC; its
	// TPM name (SHA-256 name algorithm) is what CertifyIdentity attests.
	IdentityPublicArea() []byte
	// EKCertificate is the TPM endorsement key certificate (DER), or nil.
	EKCertificate() []byte
	// CertifyIdentity has the attestation key certify the identity key
	// (TPM2_Certify) with extraData as qualifying data.
	CertifyIdentity(extraData []byte) (Attestation, error)
	// ResetMeasurements starts a fresh measurement register and event log
	// (the agent calls it once at start).
	ResetMeasurements() error
	// Extend measures e: extends MeasurementPCR with e.ExtendValue() and
	// appends e to the event log.
	Extend(e Event) error
	// EventLog returns the events measured since the last reset, in order.
	EventLog() []Event
	// Quote signs the measurement register with the attestation key
	// (TPM2_Quote over MeasurementPCR, SHA-256 bank) with nonce as
	// qualifying data.
	Quote(nonce []byte) (Attestation, error)
	// Counter reads the anti-rollback counter.
	Counter() (uint64, error)
	// AdvanceCounter raises the anti-rollback counter to at least v. It
	// never lowers it: v below the current value is an error.
	AdvanceCounter(v uint64) error
	// Close releases the root of trust.
	Close() error
}
