// Package tlsutil provides the security service's own TLS material: a
// self-signed server certificate for the embedded default, created on first
// start, and the small file helpers (atomic, durable writes) that keep keys
// safe on disk. It is not the device certificate authority.
package tlsutil

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// SelfSigned describes the generated server certificate.
type SelfSigned struct {
	CertFile, KeyFile string
	Created           bool // true when this call made a new certificate
}

// LoadOrCreateSelfSigned returns a TLS certificate from dir/server.crt and
// dir/server.key, creating a new ECDSA P-256 self-signed certificate for
// hosts (plus localhost, 127.0.0.1 and ::1) if none exists or the existing
// one expires within 30 days. The key file is mode 0600.
func LoadOrCreateSelfSigned(dir string, hosts []string, now time.Time) (tls.Certificate, SelfSigned, error) {
	info := SelfSigned{CertFile: filepath.Join(dir, "server.crt"), KeyFile: filepath.Join(dir, "server.key")}
	if cert, err := tls.LoadX509KeyPair(info.CertFile, info.KeyFile); err == nil {
		if leaf, err := x509.ParseCertificate(cert.Certificate[0]); err == nil && now.Add(30*24*time.Hour).Before(leaf.NotAfter) {
			return cert, info, nil
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return tls.Certificate{}, info, fmt.Errorf("tlsutil: %s: %w (delete both files to make a new certificate)", info.CertFile, err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return tls.Certificate{}, info, fmt.Errorf("tlsutil: %w", err)
	}
	certPEM, keyPEM, err := newSelfSigned(hosts, now)
	if err != nil {
		return tls.Certificate{}, info, err
	}
	if err := WriteFileAtomic(info.KeyFile, keyPEM, 0o600); err != nil {
		return tls.Certificate{}, info, err
	}
	if err := WriteFileAtomic(info.CertFile, certPEM, 0o644); err != nil {
		return tls.Certificate{}, info, err
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	info.Created = true
	return cert, info, err
}

func newSelfSigned(hosts []string, now time.Time) (certPEM, keyPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "OpenSphere security service", Organization: []string{"OpenSphere"}},
		NotBefore:             now.Add(-5 * time.Minute),
		NotAfter:              now.Add(397 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true, // a self-signed leaf must be its own CA for clients to pin it with --ca-file
		MaxPathLenZero:        true,
	}
	seen := map[string]bool{}
	for _, h := range append([]string{"localhost", "127.0.0.1", "::1"}, hosts...) {
		if h == "" || seen[h] {
			continue
		}
		seen[h] = true
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, fmt.Errorf("tlsutil: create certificate: %w", err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), nil
}

// WriteFileAtomic writes data to path so that a crash or power cut leaves
// either the old file or the new one, never a torn one: it writes a
// temporary file in the same directory, syncs it, renames it over path and
// syncs the directory.
func WriteFileAtomic(path string, data []byte, perm os.FileMode) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	tmp := f.Name()
	// Until the rename the temporary file is removed on any failure; after
	// it there is nothing to remove (an unconditional os.Remove would cost
	// two failing system calls on every write: unlink, then rmdir). Closing
	// an already closed file only returns an error, ignored here.
	fail := func(err error) error {
		f.Close()
		os.Remove(tmp)
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Chmod(perm); err != nil {
		return fail(err)
	}
	if _, err := f.Write(data); err != nil {
		return fail(err)
	}
	if err := f.Sync(); err != nil {
		return fail(err)
	}
	if err := f.Close(); err != nil {
		return fail(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fail(err)
	}
	if err := SyncDir(dir); err != nil {
		return fmt.Errorf("write %s: sync directory: %w", path, err)
	}
	return nil
}
