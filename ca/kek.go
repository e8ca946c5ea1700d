package ca

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/opensphere/sphere/tlsutil"
)

// KEK is the key-encryption key that seals CA and signing private keys at
// rest (AES-256-GCM). Every replica of a service must be given the same
// one. It also derives the other service-wide secrets (the challenge MAC
// key) so that one file is all an operator has to keep safe.
type KEK struct {
	aead cipher.AEAD
	raw  []byte
}

// LoadOrCreateKEK reads a KEK file (64 hex characters). If create is true
// and the file does not exist, it makes one with mode 0600.
func LoadOrCreateKEK(path string, create bool) (*KEK, bool, error) {
	data, err := os.ReadFile(path)
	created := false
	switch {
	case errors.Is(err, os.ErrNotExist) && create:
		raw := make([]byte, 32)
		rand.Read(raw)
		if err := tlsutil.WriteFileAtomic(path, []byte(hex.EncodeToString(raw)+"\n"), 0o600); err != nil {
			return nil, false, fmt.Errorf("ca: create key-encryption key: %w", err)
		}
		data, created = []byte(hex.EncodeToString(raw)), true
	case errors.Is(err, os.ErrNotExist):
		return nil, false, fmt.Errorf("ca: key-encryption key %s does not exist", path)
	case err != nil:
		return nil, false, fmt.Errorf("ca: key-encryption key: %w", err)
	}
	if fi, err := os.Stat(path); err == nil && fi.Mode().Perm()&0o077 != 0 {
		return nil, false, fmt.Errorf("ca: key-encryption key %s is readable by others (mode %v); chmod 600 it", path, fi.Mode().Perm())
	}
	raw, err := hex.DecodeString(strings.TrimSpace(string(data)))
	if err != nil || len(raw) != 32 {
		return nil, false, fmt.Errorf("ca: key-encryption key %s must hold 64 hex characters (32 bytes)", path)
	}
	k, err := NewKEK(raw)
	return k, created, err
}

// NewKEK makes a KEK from 32 raw bytes.
func NewKEK(raw []byte) (*KEK, error) {
	if len(raw) != 32 {
		return nil, errors.New("ca: key-encryption key must be 32 bytes")
	}
	block, err := aes.NewCipher(raw)
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	return &KEK{aead: aead, raw: append([]byte(nil), raw...)}, nil
}

const sealVersion = 1

// Seal encrypts plaintext bound to label (the key's id), so that a sealed
// key copied to another row does not open.
func (k *KEK) Seal(plaintext []byte, label string) []byte {
	nonce := make([]byte, k.aead.NonceSize())
	rand.Read(nonce)
	out := append([]byte{sealVersion}, nonce...)
	return k.aead.Seal(out, nonce, plaintext, []byte(label))
}

// Open decrypts what Seal made with the same label.
func (k *KEK) Open(sealed []byte, label string) ([]byte, error) {
	n := k.aead.NonceSize()
	if len(sealed) < 1+n+k.aead.Overhead() || sealed[0] != sealVersion {
		return nil, errors.New("ca: sealed key is malformed")
	}
	pt, err := k.aead.Open(nil, sealed[1:1+n], sealed[1+n:], []byte(label))
	if err != nil {
		return nil, errors.New("ca: sealed key does not open with this key-encryption key (wrong --kek-file?)")
	}
	return pt, nil
}

// Derive returns a 32-byte secret for purpose, derived from the KEK with
// HKDF-SHA256; the KEK itself is used only for sealing.
func (k *KEK) Derive(purpose string) []byte {
	out, err := hkdf.Key(sha256.New, k.raw, nil, "opensphere "+purpose, 32)
	if err != nil {
		panic(err) // only for lengths HKDF cannot give
	}
	return out
}
