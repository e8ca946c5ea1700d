package attest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/opensphere/sphere/rot"
)

// Evidence is what a device sends to attest: a quote of its measurement
// register over the challenge, the event log that explains the register,
// the attestation key's certification of its identity key, and a CSR for
// that identity key.
type Evidence struct {
	DeviceID  string   `json:"device_id"`
	Challenge string   `json:"challenge"`
	RoT       rot.Kind `json:"rot"`
	// Quote is TPM2_Quote over rot.MeasurementPCR with QuoteNonce(challenge).
	Quote    rot.Attestation `json:"quote"`
	EventLog []rot.Event     `json:"event_log"`
	// IdentityPublicArea is the identity key's TPMT_PUBLIC; Certify is
	// TPM2_Certify of it by the attestation key with CertifyNonce(challenge).
	IdentityPublicArea []byte          `json:"identity_public_area"`
	Certify            rot.Attestation `json:"certify"`
	// CSR is a PKCS#10 request (DER) signed by the identity key.
	CSR []byte `json:"csr"`
}

// Limits on evidence, so that a hostile device cannot make the service do
// unbounded work.
const (
	MaxEvidenceBytes = 256 << 10
	MaxEvents        = 1024
	maxFieldBytes    = 16 << 10
)

// ErrMalformed is wrapped by every DecodeEvidence error.
var ErrMalformed = errors.New("malformed evidence")

// DecodeEvidence parses evidence strictly: one JSON object, no unknown
// fields, bounded sizes, every required part present.
func DecodeEvidence(data []byte) (*Evidence, error) {
	if len(data) > MaxEvidenceBytes {
		return nil, fmt.Errorf("%w: larger than %d bytes", ErrMalformed, MaxEvidenceBytes)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var ev Evidence
	if err := dec.Decode(&ev); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, fmt.Errorf("%w: data after the JSON object", ErrMalformed)
	}
	if err := ev.Validate(); err != nil {
		return nil, err
	}
	return &ev, nil
}

// Validate checks that every required part is present and within bounds.
// Its errors wrap ErrMalformed.
func (ev *Evidence) Validate() error {
	switch {
	case ev.DeviceID == "":
		return fmt.Errorf("%w: device_id is missing", ErrMalformed)
	case ev.Challenge == "":
		return fmt.Errorf("%w: challenge is missing", ErrMalformed)
	case ev.RoT != rot.KindTPM && ev.RoT != rot.KindSoft:
		return fmt.Errorf("%w: rot must be tpm or soft", ErrMalformed)
	case len(ev.EventLog) == 0:
		return fmt.Errorf("%w: the event log is empty", ErrMalformed)
	case len(ev.EventLog) > MaxEvents:
		return fmt.Errorf("%w: more than %d events", ErrMalformed, MaxEvents)
	case len(ev.Quote.Attest) == 0 || len(ev.Quote.Signature) == 0:
		return fmt.Errorf("%w: quote is missing", ErrMalformed)
	case len(ev.Certify.Attest) == 0 || len(ev.Certify.Signature) == 0 || len(ev.IdentityPublicArea) == 0:
		return fmt.Errorf("%w: identity certification is missing", ErrMalformed)
	case len(ev.CSR) == 0:
		return fmt.Errorf("%w: csr is missing", ErrMalformed)
	}
	for _, b := range [][]byte{ev.Quote.Attest, ev.Quote.Signature, ev.Certify.Attest, ev.Certify.Signature, ev.IdentityPublicArea, ev.CSR} {
		if len(b) > maxFieldBytes {
			return fmt.Errorf("%w: a field is larger than %d bytes", ErrMalformed, maxFieldBytes)
		}
	}
	for i, e := range ev.EventLog {
		if len(e.Type) == 0 || len(e.Type) > 64 || len(e.Name) > 1024 {
			return fmt.Errorf("%w: event %d: type must be 1 to 64 bytes and name at most 1024", ErrMalformed, i)
		}
		if _, err := e.ExtendValue(); err != nil {
			return fmt.Errorf("%w: event %d: %v", ErrMalformed, i, err)
		}
		// One spelling per measurement: lowercase digests (the allowlist
		// stores them so), and no NUL, which separates the fields that
		// ExtendValue hashes.
		if strings.ToLower(e.Digest) != e.Digest || strings.ContainsRune(e.Type+e.Name, 0) {
			return fmt.Errorf("%w: event %d: the digest must be lowercase hex and type and name must not contain NUL", ErrMalformed, i)
		}
	}
	return nil
}
