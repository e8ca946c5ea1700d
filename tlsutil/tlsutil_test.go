package tlsutil

import (
	"crypto/x509"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestSelfSigned(t *testing.T) {
	dir := t.TempDir()
	now := time.Now()
	cert, info, err := LoadOrCreateSelfSigned(dir, []string{"sphere.example.com", "10.0.0.7"}, now)
	if err != nil || !info.Created {
		t.Fatalf("create: %v %+v", err, info)
	}
	leaf, _ := x509.ParseCertificate(cert.Certificate[0])
	if err := leaf.VerifyHostname("sphere.example.com"); err != nil {
		t.Error(err)
	}
	for _, h := range []string{"localhost", "127.0.0.1", "::1", "10.0.0.7"} {
		if err := leaf.VerifyHostname(h); err != nil {
			t.Errorf("%s: %v", h, err)
		}
	}
	if fi, _ := os.Stat(info.KeyFile); fi.Mode().Perm() != 0o600 {
		t.Errorf("key file mode %v", fi.Mode().Perm())
	}
	// A second start loads the same certificate.
	again, info2, err := LoadOrCreateSelfSigned(dir, nil, now.Add(time.Hour))
	if err != nil || info2.Created || string(again.Certificate[0]) != string(cert.Certificate[0]) {
		t.Fatalf("reload: %v created=%v", err, info2.Created)
	}
	// Within 30 days of expiry a new one is made.
	renewed, info3, err := LoadOrCreateSelfSigned(dir, nil, leaf.NotAfter.Add(-29*24*time.Hour))
	if err != nil || !info3.Created || string(renewed.Certificate[0]) == string(cert.Certificate[0]) {
		t.Fatalf("renew: %v created=%v", err, info3.Created)
	}
	// A damaged certificate is an error that says what to do, not a silent new one.
	os.WriteFile(info.CertFile, []byte("garbage"), 0o644)
	if _, _, err := LoadOrCreateSelfSigned(dir, nil, now); err == nil {
		t.Error("a damaged certificate was accepted or replaced")
	}
}

func TestWriteFileAtomic(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "f")
	if err := WriteFileAtomic(p, []byte("one"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := WriteFileAtomic(p, []byte("two"), 0o640); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(p)
	fi, _ := os.Stat(p)
	if string(b) != "two" || fi.Mode().Perm() != 0o640 {
		t.Errorf("content %q mode %v", b, fi.Mode().Perm())
	}
	if left, _ := filepath.Glob(filepath.Join(dir, ".f.tmp-*")); len(left) != 0 {
		t.Errorf("temporary files left: %v", left)
	}
	if err := WriteFileAtomic(filepath.Join(dir, "missing", "f"), []byte("x"), 0o600); err == nil {
		t.Error("writing into a missing directory succeeded")
	}
	// A rename that fails (a file cannot replace a directory) leaves the
	// directory as it was and no temporary file behind.
	sub := filepath.Join(dir, "d")
	if err := os.MkdirAll(filepath.Join(sub, "x"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := WriteFileAtomic(sub, []byte("x"), 0o600); err == nil {
		t.Error("a file replaced a directory")
	}
	if fi, err := os.Stat(filepath.Join(sub, "x")); err != nil || !fi.IsDir() {
		t.Errorf("the directory changed: %v", err)
	}
	if left, _ := filepath.Glob(filepath.Join(dir, ".d.tmp-*")); len(left) != 0 {
		t.Errorf("temporary files left after a failed rename: %v", left)
	}
}
