package image

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const (
	testAppID = "3f0c2b5e-7d4a-4c1e-9b8f-2a6d5e4c3b21"
	testOSID  = "9d1e8f2a-4b3c-4d5e-8f6a-7b8c9d0e1f2a"
)

func newKey(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func testManifest() *AppManifest {
	return &AppManifest{
		SchemaVersion: 1, Name: "Blink", ComponentId: testAppID, EntryPoint: "/bin/app",
		CmdArgs: []string{"--verbose"},
		Capabilities: Capabilities{
			AllowedConnections: []string{"example.com", "10.1.2.3:8883"}, Gpio: []int{8, 9},
			MutableStorage: &MutableStorage{SizeKB: 64}, PowerControls: []string{PowerForceReboot},
		},
	}
}

var buildTime = time.Date(2026, 8, 1, 12, 30, 0, 0, time.UTC)

func appMetadata() Metadata {
	return Metadata{Kind: KindApp, ComponentID: testAppID, Name: "Blink", Version: "1.2.3",
		SecurityVersion: 4, BuildTime: buildTime, AppManifest: testManifest()}
}

func osMetadata() Metadata {
	return Metadata{Kind: KindOS, ComponentID: testOSID, Name: "Contoso Linux", Version: "2026.08.1",
		SecurityVersion: 7, BuildTime: buildTime}
}

// pack packs payload and returns the package bytes.
func pack(t testing.TB, md Metadata, payload []byte, key crypto.Signer) ([]byte, *Header) {
	t.Helper()
	var buf bytes.Buffer
	h, err := Pack(&buf, md, bytes.NewReader(payload), key)
	if err != nil {
		t.Fatalf("Pack: %v", err)
	}
	return buf.Bytes(), h
}

// readAll reads a package: header, signature check against pub and payload.
func readAll(pkg []byte, pub *ecdsa.PublicKey) (*Header, error) {
	r := bytes.NewReader(pkg)
	h, err := ReadHeader(r)
	if err != nil {
		return nil, err
	}
	if err := h.VerifySignature(pub); err != nil {
		return h, err
	}
	return h, VerifyPayload(r, h)
}

// headerLen returns the offset of the payload in pkg.
func headerLen(pkg []byte) (mdStart, mdEnd, sigEnd int) {
	mdLen := int(binary.BigEndian.Uint32(pkg[8:]))
	mdStart, mdEnd = 12, 12+mdLen
	sigLen := int(binary.BigEndian.Uint32(pkg[mdEnd:]))
	return mdStart, mdEnd, mdEnd + 4 + sigLen
}

func TestPackRoundTrip(t *testing.T) {
	key := newKey(t)
	for _, tc := range []struct {
		name    string
		md      Metadata
		payload []byte
	}{
		{"app", appMetadata(), randomBytes(1, 3<<20+17)},
		{"os", osMetadata(), randomBytes(2, 1<<20)},
		{"os/empty payload", osMetadata(), nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pkg, packed := pack(t, tc.md, tc.payload, key)
			r := bytes.NewReader(pkg)
			h, err := ReadHeader(r)
			if err != nil {
				t.Fatalf("ReadHeader: %v", err)
			}
			if err := h.VerifySignature(&key.PublicKey); err != nil {
				t.Fatalf("VerifySignature: %v", err)
			}
			rest, _ := io.ReadAll(r)
			if !bytes.Equal(rest, tc.payload) {
				t.Fatalf("payload after the header is %d bytes, want the %d packed", len(rest), len(tc.payload))
			}
			if err := VerifyPayload(bytes.NewReader(rest), h); err != nil {
				t.Fatalf("VerifyPayload: %v", err)
			}
			md := h.Metadata
			sum := sha256.Sum256(tc.payload)
			if md.FormatVersion != 2 || md.ChunkSize != 16384 || md.Kind != tc.md.Kind || md.ComponentID != tc.md.ComponentID || md.Name != tc.md.Name ||
				md.Version != tc.md.Version || md.SecurityVersion != tc.md.SecurityVersion || !md.BuildTime.Equal(buildTime) ||
				md.PayloadSize != int64(len(tc.payload)) || md.PayloadSHA256 != hex.EncodeToString(sum[:]) {
				t.Errorf("metadata read back = %+v", md)
			}
			checkCover(t, Chunking16K, tc.payload, md.Chunks)
			want, _ := Chunking16K.Chunks(bytes.NewReader(tc.payload))
			if !equalChunks(md.Chunks, want) {
				t.Errorf("chunk index differs from Chunks(payload)")
			}
			if tc.md.AppManifest != nil {
				a, _ := tc.md.AppManifest.Marshal()
				b, _ := md.AppManifest.Marshal()
				if !bytes.Equal(a, b) {
					t.Errorf("app manifest read back = %s, want %s", b, a)
				}
			} else if md.AppManifest != nil {
				t.Errorf("os image read back with an app manifest")
			}
			_, mdEnd, _ := headerLen(pkg)
			idSum := sha256.Sum256(pkg[12:mdEnd])
			if h.ImageID() != hex.EncodeToString(idSum[:]) || packed.ImageID() != h.ImageID() {
				t.Errorf("ImageID = %s (Pack said %s), want the SHA-256 of the metadata bytes", h.ImageID(), packed.ImageID())
			}
			kid, _ := KeyID(&key.PublicKey)
			if h.Signature.KeyID != kid || h.Signature.Algorithm != SignatureAlgorithm {
				t.Errorf("signature names key %s (%s), want %s", h.Signature.KeyID, h.Signature.Algorithm, kid)
			}
		})
	}
}

func TestPackFile(t *testing.T) {
	key := newKey(t)
	path := filepath.Join(t.TempDir(), "rootfs.img")
	payload := randomBytes(5, 700<<10)
	if err := os.WriteFile(path, payload, 0o644); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if _, err := PackFile(&buf, osMetadata(), path, key); err != nil {
		t.Fatal(err)
	}
	if _, err := readAll(buf.Bytes(), &key.PublicKey); err != nil {
		t.Fatal(err)
	}
	if _, err := PackFile(io.Discard, osMetadata(), filepath.Join(t.TempDir(), "missing"), key); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("missing payload file: got %v", err)
	}
}

// rawPackage assembles a package from its sections, for malformed inputs.
func rawPackage(md, sig, payload []byte) []byte {
	var b bytes.Buffer
	b.WriteString(Magic)
	b.Write(binary.BigEndian.AppendUint32(nil, uint32(len(md))))
	b.Write(md)
	b.Write(binary.BigEndian.AppendUint32(nil, uint32(len(sig))))
	b.Write(sig)
	b.Write(payload)
	return b.Bytes()
}

// resignRaw signs arbitrary metadata bytes, so that a test reaches the check
// it is about rather than failing the signature first.
func resignRaw(t testing.TB, key *ecdsa.PrivateKey, md []byte) []byte {
	t.Helper()
	sig, err := sign(key, md)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(sig)
	return b
}

func TestCorruption(t *testing.T) {
	key := newKey(t)
	payload := randomBytes(9, 600<<10)
	pkg, _ := pack(t, appMetadata(), payload, key)
	mdStart, mdEnd, sigEnd := headerLen(pkg)
	mdJSON := pkg[mdStart:mdEnd]
	sigJSON := pkg[mdEnd+4 : sigEnd]

	// editMD returns the package with the metadata replaced and signed again.
	editMD := func(old, new string) []byte {
		md := strings.Replace(string(mdJSON), old, new, 1)
		if md == string(mdJSON) {
			t.Fatalf("metadata has no %q", old)
		}
		return rawPackage([]byte(md), resignRaw(t, key, []byte(md)), payload)
	}
	flip := func(at int) []byte {
		b := bytes.Clone(pkg)
		b[at] ^= 0x01
		return b
	}
	nameAt := mdStart + bytes.Index(mdJSON, []byte(`"name":"Blink"`)) + len(`"name":"B`)
	sigAt := mdEnd + 4 + bytes.Index(sigJSON, []byte(`"signature":"`)) + len(`"signature":"`) + 20
	trailing := string(mdJSON) + " {}"
	osPkg, _ := pack(t, osMetadata(), payload, key)
	_, osMDEnd, _ := headerLen(osPkg)
	noManifest := strings.Replace(string(osPkg[12:osMDEnd]), `"kind":"os"`, `"kind":"app"`, 1)
	appWithoutManifest := rawPackage([]byte(noManifest), resignRaw(t, key, []byte(noManifest)), payload)
	nullManifest := strings.Replace(noManifest, `"chunks":`, `"app_manifest":null,"chunks":`, 1)
	appNullManifest := rawPackage([]byte(nullManifest), resignRaw(t, key, []byte(nullManifest)), payload)
	// A format-1 package (64 KiB chunks) relabelled as format 2 with 16 KiB
	// chunks: its chunks are larger than that chunking allows.
	v1md := appMetadata()
	v1md.FormatVersion = 1
	v1Pkg, _ := pack(t, v1md, payload, key)
	v1Start, v1End, _ := headerLen(v1Pkg)
	relabelled := strings.Replace(string(v1Pkg[v1Start:v1End]), `"format_version":1`, `"format_version":2,"chunk_size":16384`, 1)
	bigChunks := rawPackage([]byte(relabelled), resignRaw(t, key, []byte(relabelled)), payload)
	corruptSig := bytes.Clone(pkg)
	corruptSig[sigAt] = map[bool]byte{true: 'B', false: 'A'}[corruptSig[sigAt] == 'A']

	tests := []struct {
		name    string
		pkg     []byte
		want    error
		message string
	}{
		{"error/payload byte flipped", flip(sigEnd + 300<<10), ErrCorrupt, "payload does not match its SHA-256 in the metadata: the file is corrupt or was altered"},
		{"error/last payload byte flipped", flip(len(pkg) - 1), ErrCorrupt, "payload does not match its SHA-256"},
		{"error/metadata value byte flipped", flip(nameAt), ErrBadSignature, "does not match the metadata"},
		{"error/metadata structure byte flipped", flip(mdStart), ErrFormat, "metadata: invalid JSON"},
		{"error/signature byte changed", corruptSig, ErrBadSignature, "signature"},
		{"error/signed by another key", rawPackage(mdJSON, resignRaw(t, newKey(t), mdJSON), payload), ErrUnknownKey, "signed by key"},
		{"error/wrong magic", append([]byte("OSPHPKG2"), pkg[8:]...), ErrFormat, "not an OpenSphere image package"},
		{"error/a tar file", append([]byte("ustar\x0000"), pkg[8:]...), ErrFormat, "not an OpenSphere image package"},
		{"error/empty file", nil, ErrFormat, "the file is empty"},
		{"error/truncated in magic", pkg[:5], ErrCorrupt, "truncated in the magic"},
		{"error/truncated before metadata length", pkg[:8], ErrCorrupt, "truncated before the length of the metadata"},
		{"error/truncated in metadata length", pkg[:10], ErrCorrupt, "truncated before the length of the metadata"},
		{"error/truncated in metadata", pkg[:mdStart+40], ErrCorrupt, "truncated in the metadata section"},
		{"error/truncated before signature length", pkg[:mdEnd], ErrCorrupt, "truncated before the length of the signature"},
		{"error/truncated in signature", pkg[:mdEnd+4+10], ErrCorrupt, "truncated in the signature section"},
		{"error/truncated at payload start", pkg[:sigEnd], ErrCorrupt, "truncated in the payload (0 of"},
		{"error/truncated in payload", pkg[:sigEnd+1000], ErrCorrupt, "truncated in the payload (1000 of"},
		{"error/one byte short", pkg[:len(pkg)-1], ErrCorrupt, "truncated in the payload"},
		{"error/bytes after payload", append(bytes.Clone(pkg), "junk"...), ErrCorrupt, "4 bytes follow the"},
		{"error/metadata over 8 MiB", append([]byte(Magic), 0x00, 0x80, 0x00, 0x01), ErrFormat, "more than the limit of 8388608"},
		{"error/empty metadata", rawPackage(nil, sigJSON, payload), ErrFormat, "metadata section is empty"},
		{"error/signature over limit", append(append(bytes.Clone(pkg[:mdEnd]), 0, 0, 0x10, 1), pkg[mdEnd+4:]...), ErrFormat, "signature section is 4097 bytes"},
		{"error/metadata not JSON", rawPackage([]byte("hello"), sigJSON, payload), ErrFormat, "invalid JSON"},
		{"error/metadata not UTF-8", editMD(`"name":"Blink"`, "\"name\":\"Bl\xffnk\""), ErrFormat, "not valid UTF-8"},
		{"error/data after the metadata JSON", rawPackage([]byte(trailing), resignRaw(t, key, []byte(trailing)), payload), ErrFormat, "unexpected data after the JSON value"},
		{"error/unknown metadata field", editMD(`"name":`, `"nickname":"b","name":`), ErrFormat, `unknown field "nickname"`},
		{"error/metadata field in wrong case", editMD(`"name":`, `"Name":`), ErrFormat, `unknown field "Name" (did you mean "name"?`},
		{"error/duplicate metadata field", editMD(`"name":"Blink"`, `"name":"Blink","name":"Evil"`), ErrFormat, `field "name" appears twice`},
		{"error/unknown chunk field", editMD(`"sha256":`, `"hash":"x","sha256":`), ErrFormat, `unknown field "hash" in chunks`},
		{"error/bad kind", editMD(`"kind":"app"`, `"kind":"firmware"`), ErrFormat, `kind must be "os" or "app", not "firmware"`},
		{"error/os image with manifest", editMD(`"kind":"app"`, `"kind":"os"`), ErrFormat, "an OS image must not have an app_manifest"},
		{"error/app image without manifest", appWithoutManifest, ErrFormat, "app_manifest is required for an app image"},
		{"error/app image with null manifest", appNullManifest, ErrFormat, "app_manifest is required for an app image"},
		{"error/manifest component mismatch", editMD(`"component_id":"`+testAppID, `"component_id":"`+testOSID), ErrFormat, "app_manifest ComponentId " + testAppID + " does not match component_id " + testOSID},
		{"error/unknown capability in metadata", editMD(`"Gpio":`, `"Gpios":[1],"Gpio":`), ErrFormat, `unknown capability "Gpios"`},
		{"error/format version 3", editMD(`"format_version":2`, `"format_version":3`), ErrFormat, "format_version 3 is not supported (want 1 or 2)"},
		{"error/chunk size not supported", editMD(`"chunk_size":16384`, `"chunk_size":32768`), ErrFormat, "chunk_size 32768 is not supported (want 16384 or 65536)"},
		{"error/format 2 without chunk size", editMD(`"chunk_size":16384,`, ``), ErrFormat, "chunk_size is missing (format 2 requires it)"},
		{"error/format 1 with chunk size", editMD(`"format_version":2`, `"format_version":1`), ErrFormat, "chunk_size must be absent in format 1"},
		{"error/chunk larger than the chunking allows", bigChunks, ErrFormat, "is out of range (1 to 65536)"},
		{"error/negative security version", editMD(`"security_version":4`, `"security_version":-4`), ErrFormat, `field "security_version": expected a non-negative integer`},
		{"error/payload size disagrees with chunks", editMD(`"payload_size":`, `"payload_size":1`), ErrFormat, "chunks cover"},
		{"error/bad build time", editMD(`"build_time":"2026-08-01T12:30:00Z"`, `"build_time":"yesterday"`), ErrFormat, "build_time"},
		{"error/unknown signature field", rawPackage(mdJSON, []byte(strings.Replace(string(sigJSON), `{`, `{"x509":1,`, 1)), payload), ErrFormat, `signature: unknown field "x509"`},
		{"error/unknown signature algorithm", rawPackage(mdJSON, []byte(strings.Replace(string(sigJSON), SignatureAlgorithm, "ed25519", 1)), payload), ErrFormat, `algorithm "ed25519" is not supported`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := readAll(tc.pkg, &key.PublicKey)
			t.Log(err)
			if !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want an error wrapping %q", err, tc.want)
			}
			for _, other := range []error{ErrFormat, ErrCorrupt, ErrUnknownKey, ErrBadSignature} {
				if other != tc.want && errors.Is(err, other) {
					t.Errorf("error %q also wraps %q", err, other)
				}
			}
			if !strings.Contains(err.Error(), tc.message) {
				t.Errorf("error %q does not say %q", err, tc.message)
			}
		})
	}
}

func TestResign(t *testing.T) {
	vendor, customer := newKey(t), newKey(t)
	payload := randomBytes(21, 900<<10)
	pkg, orig := pack(t, appMetadata(), payload, vendor)

	var out bytes.Buffer
	nh, err := Resign(&out, bytes.NewReader(pkg), customer)
	if err != nil {
		t.Fatalf("Resign: %v", err)
	}
	h, err := readAll(out.Bytes(), &customer.PublicKey)
	if err != nil {
		t.Fatalf("re-signed package does not verify with the new key: %v", err)
	}
	if h.ImageID() != orig.ImageID() || nh.ImageID() != orig.ImageID() {
		t.Errorf("ImageID changed from %s to %s", orig.ImageID(), h.ImageID())
	}
	if _, _, sigEnd := headerLen(out.Bytes()); !bytes.Equal(out.Bytes()[sigEnd:], payload) {
		t.Errorf("payload changed")
	}
	if _, err := readAll(out.Bytes(), &vendor.PublicKey); !errors.Is(err, ErrUnknownKey) {
		t.Errorf("re-signed package checked against the old key: got %v, want ErrUnknownKey", err)
	}
	kid, _ := KeyID(&customer.PublicKey)
	if h.Signature.KeyID != kid {
		t.Errorf("key id %s, want %s", h.Signature.KeyID, kid)
	}

	t.Run("error/corrupt payload", func(t *testing.T) {
		bad := bytes.Clone(pkg)
		bad[len(bad)-10] ^= 0xff
		if _, err := Resign(io.Discard, bytes.NewReader(bad), customer); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("got %v, want ErrCorrupt", err)
		}
	})
	t.Run("error/not a package", func(t *testing.T) {
		if _, err := Resign(io.Discard, strings.NewReader("hello, world"), customer); !errors.Is(err, ErrFormat) {
			t.Fatalf("got %v, want ErrFormat", err)
		}
	})
}

// badSigner signs with the wrong encoding, as a misconfigured token might.
type badSigner struct{ *ecdsa.PrivateKey }

func (s badSigner) Sign(r io.Reader, d []byte, o crypto.SignerOpts) ([]byte, error) {
	return make([]byte, 64), nil
}

// changingPayload returns different bytes on each pass.
type changingPayload struct {
	*bytes.Reader
	passes int
	data   []byte
}

// Seek to the start begins a pass, which reads other bytes than the last.
func (p *changingPayload) Seek(off int64, whence int) (int64, error) {
	if p.Reader == nil || off == 0 && whence == io.SeekStart {
		p.passes++
		d := bytes.Clone(p.data)
		d[len(d)/2] ^= byte(p.passes)
		p.Reader = bytes.NewReader(d)
	}
	return p.Reader.Seek(off, whence)
}

func TestPackErrors(t *testing.T) {
	key := newKey(t)
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	payload := randomBytes(3, 100<<10)
	noName := osMetadata()
	noName.Name = ""
	noTime := osMetadata()
	noTime.BuildTime = time.Time{}
	osWithManifest := osMetadata()
	osWithManifest.AppManifest = testManifest()
	mismatch := appMetadata()
	mismatch.ComponentID = testOSID
	badVersion := osMetadata()
	badVersion.Version = "1.0 beta"
	for _, tc := range []struct {
		name    string
		md      Metadata
		payload io.ReadSeeker
		signer  crypto.Signer
		want    string
	}{
		{"error/no name", noName, bytes.NewReader(payload), key, "name: missing"},
		{"error/no build time", noTime, bytes.NewReader(payload), key, "build_time is missing"},
		{"error/os with manifest", osWithManifest, bytes.NewReader(payload), key, "must not have an app_manifest"},
		{"error/component mismatch", mismatch, bytes.NewReader(payload), key, "does not match component_id"},
		{"error/bad version", badVersion, bytes.NewReader(payload), key, `version "1.0 beta"`},
		{"error/P-384 key", osMetadata(), bytes.NewReader(payload), p384, "ECDSA P-256"},
		{"error/signer with wrong encoding", osMetadata(), bytes.NewReader(payload), badSigner{key}, "does not verify"},
		{"error/payload changes between passes", osMetadata(), &changingPayload{data: payload}, key, "the payload changed while it was being packed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Pack(io.Discard, tc.md, tc.payload, tc.signer)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error saying %q", err, tc.want)
			}
		})
	}
}

func TestVerifySignatureWrongCurve(t *testing.T) {
	key := newKey(t)
	pkg, _ := pack(t, osMetadata(), []byte("x"), key)
	h, err := ReadHeader(bytes.NewReader(pkg))
	if err != nil {
		t.Fatal(err)
	}
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err := h.VerifySignature(&p384.PublicKey); err == nil || !strings.Contains(err.Error(), "P-256") {
		t.Fatalf("got %v, want an error about the curve", err)
	}
}

func TestKeysPEM(t *testing.T) {
	key := newKey(t)
	pkcs8 := mustPEM(t, "PRIVATE KEY", key, true)
	sec1 := mustPEM(t, "EC PRIVATE KEY", key, false)
	for _, data := range [][]byte{pkcs8, sec1, append([]byte("-----BEGIN EC PARAMETERS-----\nBggqhkjOPQMBBw==\n-----END EC PARAMETERS-----\n"), sec1...)} {
		k, err := ParsePrivateKeyPEM(data)
		if err != nil {
			t.Fatalf("ParsePrivateKeyPEM: %v", err)
		}
		if !k.Equal(key) {
			t.Fatal("parsed another key")
		}
		pub, err := ParsePublicKeyPEM(data)
		if err != nil || !pub.Equal(&key.PublicKey) {
			t.Fatalf("ParsePublicKeyPEM of a private key: %v", err)
		}
	}
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if _, err := ParsePrivateKeyPEM(mustPEM(t, "PRIVATE KEY", p384, true)); err == nil || !strings.Contains(err.Error(), "ECDSA P-384; image signing keys must be ECDSA P-256") {
		t.Fatalf("P-384 key: got %v", err)
	}
	if _, err := ParsePrivateKeyPEM([]byte("-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n")); err == nil || !strings.Contains(err.Error(), "encrypted") {
		t.Fatalf("encrypted key: got %v", err)
	}
	if _, err := ParsePrivateKeyPEM([]byte("not a key")); err == nil {
		t.Fatal("garbage parsed as a key")
	}
}

func mustPEM(t testing.TB, typ string, key *ecdsa.PrivateKey, pkcs8 bool) []byte {
	t.Helper()
	var der []byte
	var err error
	if pkcs8 {
		der, err = marshalPKCS8(key)
	} else {
		der, err = marshalSEC1(key)
	}
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}

func marshalPKCS8(k *ecdsa.PrivateKey) ([]byte, error) { return x509.MarshalPKCS8PrivateKey(k) }
func marshalSEC1(k *ecdsa.PrivateKey) ([]byte, error)  { return x509.MarshalECPrivateKey(k) }

// TestSignatureOpenSSL checks the signature and key id with openssl, an
// implementation that shares no code with ours, following
// docs/image-package.md: the signature is ASN.1 DER ECDSA over
// SHA-256("OSPHPKG1" || metadata bytes), the key id the SHA-256 of the
// SubjectPublicKeyInfo DER.
func TestSignatureOpenSSL(t *testing.T) {
	if _, err := exec.LookPath("openssl"); err != nil {
		t.Skip("openssl is not installed")
	}
	key := newKey(t)
	_, h := pack(t, appMetadata(), randomBytes(4, 70<<10), key)
	dir := t.TempDir()
	spki, _ := x509.MarshalPKIXPublicKey(&key.PublicKey)
	files := map[string][]byte{
		"pub.pem":  pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: spki}),
		"sig.der":  h.Signature.Signature,
		"signed":   append([]byte(Magic), h.MetadataJSON...),
		"tampered": append([]byte(Magic), bytes.Replace(h.MetadataJSON, []byte(`"security_version":4`), []byte(`"security_version":9`), 1)...),
	}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	openssl := func(args ...string) (string, error) {
		cmd := exec.Command("openssl", args...)
		cmd.Dir = dir
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	if out, err := openssl("dgst", "-sha256", "-verify", "pub.pem", "-signature", "sig.der", "signed"); err != nil || !strings.Contains(out, "Verified OK") {
		t.Errorf("openssl does not verify the signature: %v\n%s", err, out)
	}
	if out, err := openssl("dgst", "-sha256", "-verify", "pub.pem", "-signature", "sig.der", "tampered"); err == nil || !strings.Contains(out, "Verification failure") {
		t.Errorf("openssl verified tampered metadata: %v\n%s", err, out)
	}
	if out, err := openssl("pkey", "-pubin", "-in", "pub.pem", "-outform", "DER", "-out", "spki.der"); err != nil {
		t.Fatalf("openssl pkey: %v\n%s", err, out)
	}
	der, err := os.ReadFile(filepath.Join(dir, "spki.der"))
	if err != nil {
		t.Fatal(err)
	}
	if sum := sha256.Sum256(der); hex.EncodeToString(sum[:]) != h.Signature.KeyID {
		t.Errorf("key id %s is not the SHA-256 of the SubjectPublicKeyInfo openssl writes", h.Signature.KeyID)
	}
}

// TestPackFormats: Pack writes format 2 with the default chunk size unless
// told otherwise, format 1 on request (for fleets whose agents predate
// format 2), and what it writes reads back with its chunking.
func TestPackFormats(t *testing.T) {
	key := newKey(t)
	payload := randomBytes(31, 2<<20)
	for _, tc := range []struct {
		name            string
		format          int
		chunkSize       int64
		want            Chunking
		wantFormat      int
		wantInJSON, err string
	}{
		{"default", 0, 0, Chunking16K, 2, `"chunk_size":16384`, ""},
		{"format 2, 64 KiB", 2, 65536, Chunking64K, 2, `"chunk_size":65536`, ""},
		{"format 1", 1, 0, Chunking64K, 1, `"format_version":1,`, ""},
		{"error/format 1 with a chunk size", 1, 16384, Chunking{}, 0, "", "chunk_size must be absent in format 1"},
		{"error/unsupported chunk size", 2, 4096, Chunking{}, 0, "", "chunk_size 4096 is not supported"},
		{"error/format 3", 3, 0, Chunking{}, 0, "", "format_version 3 is not supported"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			md := osMetadata()
			md.FormatVersion, md.ChunkSize = tc.format, tc.chunkSize
			var buf bytes.Buffer
			_, err := Pack(&buf, md, bytes.NewReader(payload), key)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("Pack: got %v, want an error saying %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Pack: %v", err)
			}
			h, err := readAll(buf.Bytes(), &key.PublicKey)
			if err != nil {
				t.Fatalf("reading it back: %v", err)
			}
			if h.Metadata.FormatVersion != tc.wantFormat || h.Metadata.Chunking() != tc.want {
				t.Errorf("format %d, chunking %+v; want %d, %+v", h.Metadata.FormatVersion, h.Metadata.Chunking(), tc.wantFormat, tc.want)
			}
			if !strings.Contains(string(h.MetadataJSON), tc.wantInJSON) {
				t.Errorf("metadata %.200s... does not hold %s", h.MetadataJSON, tc.wantInJSON)
			}
			if tc.wantFormat == 1 && strings.Contains(string(h.MetadataJSON), "chunk_size") {
				t.Errorf("format 1 metadata has a chunk_size")
			}
			want, _ := tc.want.Chunks(bytes.NewReader(payload))
			if !equalChunks(h.Metadata.Chunks, want) {
				t.Errorf("chunk index is not the payload cut with %+v", tc.want)
			}
		})
	}
}

// TestPackFallsBackToLargerChunks: when the chunk index in the default
// 16 KiB chunks does not fit the metadata section, Pack cuts the payload
// again in 64 KiB chunks; a chunk size the caller chose is not changed.
func TestPackFallsBackToLargerChunks(t *testing.T) {
	key := newKey(t)
	payload := randomBytes(32, 1<<20) // about 60 chunks of 16 KiB, 15 of 64 KiB
	defer func(n int) { packMetadataLimit = n }(packMetadataLimit)
	packMetadataLimit = 4 << 10
	_, h := pack(t, osMetadata(), payload, key)
	if h.Metadata.ChunkSize != Chunking64K.Avg || len(h.MetadataJSON) > packMetadataLimit {
		t.Errorf("chunk_size %d, %d bytes of metadata; want 65536 within %d", h.Metadata.ChunkSize, len(h.MetadataJSON), packMetadataLimit)
	}
	want, _ := Chunking64K.Chunks(bytes.NewReader(payload))
	if !equalChunks(h.Metadata.Chunks, want) {
		t.Error("the chunk index is not the payload in 64 KiB chunks")
	}
	md := osMetadata()
	md.FormatVersion, md.ChunkSize = 2, Chunking16K.Avg
	if _, err := Pack(io.Discard, md, bytes.NewReader(payload), key); err == nil || !strings.Contains(err.Error(), "the payload has too many chunks") {
		t.Errorf("16 KiB chunks asked for, index too large: got %v", err)
	}
}
