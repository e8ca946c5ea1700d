package verifier

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"time"

	"github.com/opensphere/sphere/attest"
)

// Challenges are stateless: the nonce carries its issue time and a MAC over
// it and the device id, so any replica holding the same MAC key can check
// it without shared memory. Single use comes from the database: the first
// replica to accept a nonce records its hash until it expires.
//
//	nonce = version(1) || issued unix ms (8) || random (16) || HMAC-SHA256(key, version || issued || random || device id) (32)
const (
	nonceVersion = 1
	nonceLen     = 1 + 8 + 16 + 32
)

// maxClockSkew tolerates replicas whose clocks run slightly apart.
const maxClockSkew = time.Minute

func (s *Service) mac(version byte, issued []byte, random []byte, deviceID string) []byte {
	m := hmac.New(sha256.New, s.macKey)
	m.Write([]byte{version})
	m.Write(issued)
	m.Write(random)
	m.Write([]byte(deviceID))
	return m.Sum(nil)
}

// NewChallenge makes a challenge for a device.
func (s *Service) NewChallenge(_ context.Context, deviceID string) attest.Challenge {
	now := s.now()
	b := make([]byte, nonceLen)
	b[0] = nonceVersion
	binary.BigEndian.PutUint64(b[1:9], uint64(now.UnixMilli()))
	rand.Read(b[9:25])
	copy(b[25:], s.mac(nonceVersion, b[1:9], b[9:25], deviceID))
	return attest.Challenge{Nonce: base64.RawURLEncoding.EncodeToString(b), ExpiresAt: now.Add(attest.ChallengeTTL).UTC()}
}

// checkChallenge verifies a nonce's MAC for deviceID and its age, and
// returns its raw bytes and expiry. It does not mark it used.
func (s *Service) checkChallenge(nonce, deviceID string) (raw []byte, expires time.Time, reason string) {
	b, err := base64.RawURLEncoding.DecodeString(nonce)
	if err != nil || len(b) != nonceLen || b[0] != nonceVersion {
		return nil, time.Time{}, attest.ReasonNonceInvalid
	}
	if !hmac.Equal(b[25:], s.mac(b[0], b[1:9], b[9:25], deviceID)) {
		// Forged, or issued to another device.
		return nil, time.Time{}, attest.ReasonNonceInvalid
	}
	issued := time.UnixMilli(int64(binary.BigEndian.Uint64(b[1:9])))
	now := s.now()
	if issued.After(now.Add(maxClockSkew)) {
		return nil, time.Time{}, attest.ReasonNonceInvalid
	}
	expires = issued.Add(attest.ChallengeTTL)
	if !now.Before(expires) {
		return nil, time.Time{}, attest.ReasonNonceExpired
	}
	return b, expires, ""
}

// nonceHash is what the used-nonce table stores.
func nonceHash(raw []byte) string {
	sum := sha256.Sum256(raw)
	return hex.EncodeToString(sum[:])
}
