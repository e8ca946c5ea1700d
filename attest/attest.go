// Package attest holds what both sides of remote attestation share: the
// wire types (Challenge, Evidence, Result), the refusal reasons, the
// nonces the root of trust signs over, and VerifyChain, the cryptographic
// check of evidence against a device's registered keys. It touches no
// database, so the agent links it; the service's verifier (challenges,
// the store, the policy, the certificate) is package verifier.
package attest

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/x509"
	"errors"
	"fmt"
	"time"

	"github.com/opensphere/sphere"
	"github.com/opensphere/sphere/rot"
)

// Refusal reasons: machine codes that the agent logs and `sphere device
// show` displays.
const (
	ReasonMalformed          = "malformed_evidence"
	ReasonNonceInvalid       = "nonce_invalid" // forged, or issued to another device
	ReasonNonceExpired       = "nonce_expired"
	ReasonNonceReplayed      = "nonce_replayed"
	ReasonUnregistered       = "device_unregistered"
	ReasonUnclaimed          = "device_unclaimed"
	ReasonUnassigned         = "device_unassigned"
	ReasonRevoked            = "device_revoked"
	ReasonRoTMismatch        = "rot_mismatch"
	ReasonHardwareRequired   = "hardware_required"
	ReasonQuoteInvalid       = "quote_invalid"
	ReasonEventLogMismatch   = "event_log_mismatch"
	ReasonCertifyInvalid     = "certify_invalid"
	ReasonIdentityMismatch   = "identity_mismatch"
	ReasonCSRInvalid         = "csr_invalid"
	ReasonCSRKeyNotCertified = "csr_key_not_certified"
	ReasonUnknownSoftware    = "unknown_software"
	ReasonStaleSoftware      = "stale_software"
)

// Image measurement types: the event's digest is the image id.
const (
	EventOSImage  = "os-image"
	EventAppImage = "app-image"
)

// Result is the service's answer to evidence.
type Result struct {
	sphere.Attestation
	DeviceID string `json:"device_id"`
	// Certificate and Chain (PEM) are set when the result is healthy: the
	// device certificate, then the tenant CA and the root.
	Certificate string    `json:"certificate,omitempty"`
	Chain       string    `json:"chain,omitempty"`
	NotAfter    time.Time `json:"not_after,omitzero"`
	// CheckNow asks the device to check for updates right away: an
	// operator ran `sphere device check-now`. The update check clears it.
	CheckNow bool `json:"check_now,omitempty"`
}

// Refuse is a refused result with a reason (Reason...) and a detail for
// the operator.
func Refuse(reason, format string, args ...any) Result {
	return Result{Attestation: sphere.Attestation{Result: sphere.AttestRefused, Reason: reason, Detail: fmt.Sprintf(format, args...)}}
}

// VerifyChain checks the cryptographic links of evidence against a device's
// registered attestation key ak and identity key id, for the raw challenge:
// the quote is signed by ak over QuoteNonce(challenge) and the event log
// replays to the quoted register; the identity public area is certified by
// ak over CertifyNonce(challenge) and is the registered identity key; the
// CSR is signed by that key and asks for it. It returns the key to certify,
// or the refusal. It touches no database, so it is fuzzed on its own.
func VerifyChain(ak, id crypto.PublicKey, ev *Evidence, challenge []byte) (*ecdsa.PublicKey, *Result) {
	no := func(reason, format string, args ...any) (*ecdsa.PublicKey, *Result) {
		r := Refuse(reason, format, args...)
		return nil, &r
	}
	// The quote: signed by the attestation key, over our challenge, and
	// explained by the event log.
	pcr, err := rot.ReplayEventLog(ev.EventLog)
	if err != nil {
		return no(ReasonMalformed, "event log: %v", err)
	}
	if err := rot.VerifyQuote(ak, ev.Quote, QuoteNonce(challenge), pcr); err != nil {
		if errors.Is(err, rot.ErrPCRMismatch) {
			return no(ReasonEventLogMismatch, "the event log does not replay to the quoted measurements: %v", err)
		}
		return no(ReasonQuoteInvalid, "quote: %v", err)
	}
	// The identity key: certified by the attestation key, the key the
	// device was registered with, and the key of the CSR.
	idKey, err := rot.VerifyCertify(ak, ev.Certify, ev.IdentityPublicArea, CertifyNonce(challenge))
	if err != nil {
		return no(ReasonCertifyInvalid, "identity key certification: %v", err)
	}
	if !idKey.Equal(id) {
		return no(ReasonIdentityMismatch, "the certified identity key is not the one the device was registered with")
	}
	csr, err := x509.ParseCertificateRequest(ev.CSR)
	if err != nil {
		return no(ReasonCSRInvalid, "csr: %v", err)
	}
	if err := csr.CheckSignature(); err != nil {
		return no(ReasonCSRInvalid, "csr signature: %v", err)
	}
	csrKey, ok := csr.PublicKey.(*ecdsa.PublicKey)
	if !ok || !csrKey.Equal(idKey) {
		return no(ReasonCSRKeyNotCertified, "the CSR's key is not the identity key that the attestation key certified")
	}
	return csrKey, nil
}
