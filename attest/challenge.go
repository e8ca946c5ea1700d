package attest

import (
	"crypto/sha256"
	"encoding/base64"
	"time"
)

// ChallengeTTL is how long a challenge may be answered.
const ChallengeTTL = 5 * time.Minute

// Challenge is what the service gives a device to attest against.
type Challenge struct {
	Nonce     string    `json:"nonce"` // base64url, no padding
	ExpiresAt time.Time `json:"expires_at"`
}

// QuoteNonce is the qualifying data of the quote for a challenge; the TPM
// limits it to a digest's size, so it is a hash of the challenge.
func QuoteNonce(challenge []byte) []byte { return domainHash("opensphere quote", challenge) }

// CertifyNonce is the qualifying data of the identity key certification.
func CertifyNonce(challenge []byte) []byte { return domainHash("opensphere certify", challenge) }

func domainHash(domain string, b []byte) []byte {
	h := sha256.New()
	h.Write([]byte(domain))
	h.Write([]byte{0})
	h.Write(b)
	return h.Sum(nil)
}

// DecodeNonce returns the raw bytes of a challenge nonce, for the device
// side, which hashes them into QuoteNonce and CertifyNonce.
func DecodeNonce(nonce string) ([]byte, error) {
	return base64.RawURLEncoding.DecodeString(nonce)
}
