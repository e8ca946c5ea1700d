package image

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
)

// ParsePrivateKeyPEM parses an image signing key: an ECDSA P-256 private key
// in a PEM block of type "PRIVATE KEY" (PKCS#8) or "EC PRIVATE KEY" (SEC1),
// as written by `sphere image-package keygen` or
// `openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256`.
func ParsePrivateKeyPEM(data []byte) (*ecdsa.PrivateKey, error) {
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			return nil, errors.New("no PRIVATE KEY or EC PRIVATE KEY PEM block found")
		}
		var key any
		var err error
		switch b.Type {
		case "PRIVATE KEY":
			key, err = x509.ParsePKCS8PrivateKey(b.Bytes)
		case "EC PRIVATE KEY":
			key, err = x509.ParseECPrivateKey(b.Bytes)
		case "ENCRYPTED PRIVATE KEY":
			return nil, errors.New("the key is encrypted; decrypt it first (openssl pkey -in KEY -out PLAIN)")
		default:
			continue // such as "EC PARAMETERS" before the key
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", b.Type, err)
		}
		k, ok := key.(*ecdsa.PrivateKey)
		if !ok || k.Curve != elliptic.P256() {
			return nil, fmt.Errorf("the key is %s; image signing keys must be ECDSA P-256", keyKind(key))
		}
		return k, nil
	}
}

// ParsePublicKeyPEM parses an image signing public key: an ECDSA P-256 key
// in a "PUBLIC KEY" PEM block (SubjectPublicKeyInfo), or the public half of
// a private key or certificate PEM.
func ParsePublicKeyPEM(data []byte) (*ecdsa.PublicKey, error) {
	rest := data
	for {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		var key any
		var err error
		switch b.Type {
		case "PUBLIC KEY":
			key, err = x509.ParsePKIXPublicKey(b.Bytes)
		case "CERTIFICATE":
			var c *x509.Certificate
			if c, err = x509.ParseCertificate(b.Bytes); err == nil {
				key = c.PublicKey
			}
		case "PRIVATE KEY", "EC PRIVATE KEY", "ENCRYPTED PRIVATE KEY":
			k, err := ParsePrivateKeyPEM(pem.EncodeToMemory(b))
			if err != nil {
				return nil, err
			}
			return &k.PublicKey, nil
		default:
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", b.Type, err)
		}
		k, ok := key.(*ecdsa.PublicKey)
		if !ok || k.Curve != elliptic.P256() {
			return nil, fmt.Errorf("the key is %s; image signing keys must be ECDSA P-256", keyKind(key))
		}
		return k, nil
	}
	return nil, errors.New("no PUBLIC KEY, CERTIFICATE or private key PEM block found")
}

func keyKind(key any) string {
	switch k := key.(type) {
	case *ecdsa.PrivateKey:
		return "ECDSA " + k.Curve.Params().Name
	case *ecdsa.PublicKey:
		return "ECDSA " + k.Curve.Params().Name
	}
	return fmt.Sprintf("%T", key)
}
