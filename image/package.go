// Package image is OpenSphere's signed image package: the file that carries
// one OS or app image from whoever builds it, through the security service,
// to devices. It defines the file format (docs/image-package.md), packing,
// reading, verifying and re-signing packages, the app manifest that says
// what an app may do, and the content-defined chunk index that lets a device
// fetch only the parts of a new image it lacks.
//
// It is not the update protocol (which images a device should run, and the
// TUF metadata that says so) nor the installer: those use this package to
// check what they move and install.
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
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"regexp"
	"time"
)

// Format constants. A package is
//
//	Magic | u32 len | metadata JSON | u32 len | signature JSON | payload
//
// with lengths in big-endian byte order. See docs/image-package.md.
const (
	Magic = "OSPHPKG1"
	// FormatVersion is the metadata version Pack writes by default. Readers
	// accept 1 too: format 1 is format 2 without chunk_size, always cut
	// with Chunking64K. Agents older than format 2 refuse format-2
	// packages; pack format 1 for a fleet that still runs them.
	FormatVersion      = 2
	MaxMetadataSize    = 8 << 20 // bytes of the metadata section
	MaxSignatureSize   = 4 << 10 // bytes of the signature section
	SignatureAlgorithm = "ecdsa-p256-sha256"
	maxVersionLen      = 64
)

// The errors that reading and verifying a package wrap, for errors.Is. The
// message of the wrapping error says what exactly is wrong.
var (
	// ErrFormat: the bytes are not a well-formed package (wrong magic, a
	// section over its size limit, invalid JSON, unknown fields, values out
	// of range, an app manifest that contradicts the metadata).
	ErrFormat = errors.New("invalid image package")
	// ErrCorrupt: the package is well formed as far as it goes but does not
	// hold together: it is truncated, has bytes after the payload, or its
	// payload does not match the size and digests in the metadata.
	ErrCorrupt = errors.New("corrupt image package")
	// ErrUnknownKey: the package is signed by another key than the one it is
	// checked against.
	ErrUnknownKey = errors.New("image package signed by an unknown key")
	// ErrBadSignature: the package names the right key but its signature
	// does not verify: the metadata was altered or the signature damaged.
	ErrBadSignature = errors.New("image package signature is not valid")
)

// Kind is what an image holds.
type Kind string

// The kinds of image.
const (
	KindOS  Kind = "os"
	KindApp Kind = "app"
)

// Metadata describes an image; it is the part of a package that is signed.
// Pack fills FormatVersion and ChunkSize (when zero) and the payload fields.
type Metadata struct {
	FormatVersion int    `json:"format_version"` // 1 or 2
	Kind          Kind   `json:"kind"`           // "os" or "app"
	ComponentID   string `json:"component_id"`   // GUID, canonical lowercase
	Name          string `json:"name"`           // 1 to 64 bytes of printable text
	// Version is for people and tools: 1 to 64 letters, digits and . + ~ _ -,
	// starting with a letter or digit, such as 1.4.2 or 2026.08.1-rc1.
	Version string `json:"version"`
	// SecurityVersion is the anti-rollback counter: a device never installs
	// an image of the component with a lower one than it has run.
	SecurityVersion uint32    `json:"security_version"`
	BuildTime       time.Time `json:"build_time"` // RFC 3339
	PayloadSize     int64     `json:"payload_size"`
	PayloadSHA256   string    `json:"payload_sha256"` // lowercase hex
	// ChunkSize is the average chunk size of the chunk index, which names
	// its chunking (ChunkingOf): 16384 or 65536. Required in format 2,
	// absent in format 1 (whose chunking is Chunking64K).
	ChunkSize int64 `json:"chunk_size,omitempty"`
	// Chunks is the chunk index of the payload: contiguous chunks covering it
	// exactly, in order, each at most the chunking's Max bytes.
	Chunks []Chunk `json:"chunks"`
	// AppManifest is required for an app (its ComponentId must equal
	// ComponentID) and must be absent for an OS image.
	AppManifest *AppManifest `json:"app_manifest,omitempty"`
}

var (
	versionRE = regexp.MustCompile(`^[0-9A-Za-z][0-9A-Za-z.+~_-]*$`)
	sha256RE  = regexp.MustCompile(`^[0-9a-f]{64}$`)
)

// Validate checks every field of md and that they agree with each other.
func (md *Metadata) Validate() error {
	ch, err := md.chunking()
	if err != nil {
		return err
	}
	if md.Kind != KindOS && md.Kind != KindApp {
		return fmt.Errorf("kind must be %q or %q, not %q", KindOS, KindApp, md.Kind)
	}
	if err := checkGUID(md.ComponentID); err != nil {
		return fmt.Errorf("component_id: %w", err)
	}
	if err := checkName(md.Name); err != nil {
		return fmt.Errorf("name: %w", err)
	}
	if len(md.Version) > maxVersionLen || !versionRE.MatchString(md.Version) {
		return fmt.Errorf("version %q: want 1 to %d letters, digits and . + ~ _ -, starting with a letter or digit (such as 1.4.2)", md.Version, maxVersionLen)
	}
	if md.BuildTime.IsZero() {
		return errors.New("build_time is missing")
	}
	if md.PayloadSize < 0 {
		return fmt.Errorf("payload_size %d is negative", md.PayloadSize)
	}
	if !sha256RE.MatchString(md.PayloadSHA256) {
		return fmt.Errorf("payload_sha256 %q is not a SHA-256 in lowercase hex", md.PayloadSHA256)
	}
	var off int64
	for i, c := range md.Chunks {
		if c.Offset != off {
			return fmt.Errorf("chunks[%d]: offset %d, want %d (chunks must cover the payload in order, without gaps)", i, c.Offset, off)
		}
		if c.Size < 1 || c.Size > ch.Max {
			return fmt.Errorf("chunks[%d]: size %d is out of range (1 to %d)", i, c.Size, ch.Max)
		}
		if !sha256RE.MatchString(c.SHA256) {
			return fmt.Errorf("chunks[%d]: sha256 %q is not a SHA-256 in lowercase hex", i, c.SHA256)
		}
		off += c.Size
	}
	if off != md.PayloadSize {
		return fmt.Errorf("chunks cover %d bytes but payload_size is %d", off, md.PayloadSize)
	}
	switch {
	case md.Kind == KindApp && md.AppManifest == nil:
		return errors.New("app_manifest is required for an app image")
	case md.Kind == KindOS && md.AppManifest != nil:
		return errors.New("an OS image must not have an app_manifest")
	case md.AppManifest != nil:
		if err := md.AppManifest.validate(); err != nil {
			return fmt.Errorf("app_manifest: %w", err)
		}
		if md.AppManifest.ComponentId != md.ComponentID {
			return fmt.Errorf("app_manifest ComponentId %s does not match component_id %s", md.AppManifest.ComponentId, md.ComponentID)
		}
	}
	return nil
}

// chunking returns the chunking of md's chunk index, from its format
// version and chunk size.
func (md *Metadata) chunking() (Chunking, error) {
	switch md.FormatVersion {
	case 1:
		if md.ChunkSize != 0 {
			return Chunking{}, errors.New("chunk_size must be absent in format 1 (its chunks average 65536 bytes)")
		}
		return Chunking64K, nil
	case 2:
		if md.ChunkSize == 0 {
			return Chunking{}, errors.New("chunk_size is missing (format 2 requires it)")
		}
		ch, ok := ChunkingOf(md.ChunkSize)
		if !ok {
			return Chunking{}, fmt.Errorf("chunk_size %d is not supported (want %d or %d)", md.ChunkSize, Chunking16K.Avg, Chunking64K.Avg)
		}
		return ch, nil
	}
	return Chunking{}, fmt.Errorf("format_version %d is not supported (want 1 or 2)", md.FormatVersion)
}

// Chunking returns the chunking of md's chunk index: what a device cuts
// the payloads it holds with, to find chunks of this package among them.
// md must be valid (Validate).
func (md *Metadata) Chunking() Chunking {
	ch, _ := md.chunking()
	return ch
}

// Signature is the signature section of a package.
type Signature struct {
	// KeyID is the lowercase hex SHA-256 of the signer's public key in
	// SubjectPublicKeyInfo DER form.
	KeyID string `json:"key_id"`
	// Algorithm is SignatureAlgorithm.
	Algorithm string `json:"algorithm"`
	// Signature is the ASN.1 DER ECDSA signature over
	// SHA-256(Magic || metadata bytes as stored); base64 in JSON.
	Signature []byte `json:"signature"`
}

func (s *Signature) validate() error {
	if !sha256RE.MatchString(s.KeyID) {
		return fmt.Errorf("key_id %q is not a SHA-256 in lowercase hex", s.KeyID)
	}
	if s.Algorithm != SignatureAlgorithm {
		return fmt.Errorf("algorithm %q is not supported (want %q)", s.Algorithm, SignatureAlgorithm)
	}
	if len(s.Signature) < 8 || len(s.Signature) > 72 {
		return fmt.Errorf("signature is %d bytes; an ASN.1 ECDSA P-256 signature is 8 to 72", len(s.Signature))
	}
	return nil
}

// Header is what precedes the payload in a package.
type Header struct {
	Metadata Metadata
	// MetadataJSON is the metadata section exactly as stored: the bytes the
	// signature and the image id cover.
	MetadataJSON []byte
	Signature    Signature
}

// ImageID returns the image's identity: the lowercase hex SHA-256 of its
// metadata bytes. The metadata holds the payload digest, so the id covers
// the payload too; the signature is outside it, so re-signing keeps the id.
func ImageID(metadataJSON []byte) string {
	sum := sha256.Sum256(metadataJSON)
	return hex.EncodeToString(sum[:])
}

// ImageID returns the image id of h's metadata.
func (h *Header) ImageID() string { return ImageID(h.MetadataJSON) }

// KeyID returns the key id of an ECDSA P-256 public key: the lowercase hex
// SHA-256 of its SubjectPublicKeyInfo DER.
func KeyID(pub *ecdsa.PublicKey) (string, error) {
	if pub == nil || pub.Curve != elliptic.P256() {
		return "", errors.New("image: signing keys must be ECDSA P-256")
	}
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return "", fmt.Errorf("image: %w", err)
	}
	sum := sha256.Sum256(der)
	return hex.EncodeToString(sum[:]), nil
}

// signedDigest is what the signature signs.
func signedDigest(metadataJSON []byte) []byte {
	h := sha256.New()
	h.Write([]byte(Magic))
	h.Write(metadataJSON)
	return h.Sum(nil)
}

// VerifySignature checks that h is signed by pub. It returns an error
// wrapping ErrUnknownKey when the package names another signer, and
// ErrBadSignature when it names pub but the signature does not verify.
func (h *Header) VerifySignature(pub *ecdsa.PublicKey) error {
	kid, err := KeyID(pub)
	if err != nil {
		return err
	}
	if h.Signature.KeyID != kid {
		return fmt.Errorf("%w: signed by key %s, not by key %s", ErrUnknownKey, h.Signature.KeyID, kid)
	}
	if h.Signature.Algorithm != SignatureAlgorithm || !ecdsa.VerifyASN1(pub, signedDigest(h.MetadataJSON), h.Signature.Signature) {
		return fmt.Errorf("%w: the signature by key %s does not match the metadata: the package was altered or damaged", ErrBadSignature, kid)
	}
	return nil
}

// sign signs metadataJSON with signer, an ECDSA P-256 key.
func sign(signer crypto.Signer, metadataJSON []byte) (Signature, error) {
	pub, ok := signer.Public().(*ecdsa.PublicKey)
	if !ok {
		return Signature{}, fmt.Errorf("signing key is %T; it must be ECDSA P-256", signer.Public())
	}
	kid, err := KeyID(pub)
	if err != nil {
		return Signature{}, err
	}
	d := signedDigest(metadataJSON)
	sig, err := signer.Sign(rand.Reader, d, crypto.SHA256)
	if err != nil {
		return Signature{}, fmt.Errorf("sign: %w", err)
	}
	// A signer backed by a token may answer raw r||s or sign something else:
	// catch it here rather than on every device.
	if !ecdsa.VerifyASN1(pub, d, sig) {
		return Signature{}, errors.New("sign: the signer returned a signature that does not verify (it must be ASN.1 DER ECDSA over a SHA-256 digest)")
	}
	return Signature{KeyID: kid, Algorithm: SignatureAlgorithm, Signature: sig}, nil
}

// Pack writes a package of payload (all of it, from offset 0) described by
// md, signed by signer (ECDSA P-256). Pack reads the payload twice: once to
// compute its size, SHA-256 and chunk index, which it puts into md, and once
// to copy it to w, checking that it did not change in between (three times
// when the chunk size it picked gives too large an index and it cuts again
// with larger chunks). No pass holds more than a chunk in memory. It
// returns the header it wrote.
func Pack(w io.Writer, md Metadata, payload io.ReadSeeker, signer crypto.Signer) (*Header, error) {
	if md.FormatVersion == 0 {
		md.FormatVersion = FormatVersion
	}
	md.BuildTime = md.BuildTime.UTC().Round(0)
	size, err := payload.Seek(0, io.SeekEnd)
	if err != nil {
		return nil, fmt.Errorf("image.Pack: payload: %w", err)
	}
	// A chunk size Pack picks gives way to the larger one when the chunk
	// index would not fit the metadata section: a payload that cuts into
	// many small chunks.
	picked := md.FormatVersion == 2 && md.ChunkSize == 0
	if picked {
		md.ChunkSize = DefaultChunkSize(size)
	}
	var mdJSON []byte
	for {
		if mdJSON, err = md.index(payload); err != nil {
			return nil, fmt.Errorf("image.Pack: %w", err)
		}
		if len(mdJSON) <= packMetadataLimit {
			break
		}
		if !picked || md.ChunkSize == Chunking64K.Avg {
			return nil, fmt.Errorf("image.Pack: metadata is %d bytes, more than the limit of %d (the payload has too many chunks)", len(mdJSON), packMetadataLimit)
		}
		md.ChunkSize = Chunking64K.Avg
	}
	sig, err := sign(signer, mdJSON)
	if err != nil {
		return nil, fmt.Errorf("image.Pack: %w", err)
	}
	h := &Header{Metadata: md, MetadataJSON: mdJSON, Signature: sig}
	if err := writeHeader(w, h); err != nil {
		return nil, fmt.Errorf("image.Pack: %w", err)
	}
	if _, err := payload.Seek(0, io.SeekStart); err != nil {
		return nil, fmt.Errorf("image.Pack: payload: %w", err)
	}
	if err := copyPayload(w, payload, h); err != nil {
		if errors.Is(err, ErrCorrupt) {
			return nil, fmt.Errorf("image.Pack: the payload changed while it was being packed: %w", err)
		}
		return nil, fmt.Errorf("image.Pack: %w", err)
	}
	return h, nil
}

// packMetadataLimit is MaxMetadataSize; tests lower it.
var packMetadataLimit = MaxMetadataSize

// index reads the payload from its start and fills md's payload fields
// and chunk index, cut with md's chunking; it returns md as JSON.
func (md *Metadata) index(payload io.ReadSeeker) ([]byte, error) {
	ch, err := md.chunking()
	if err != nil {
		return nil, fmt.Errorf("metadata: %w", err)
	}
	if _, err := payload.Seek(0, io.SeekStart); err != nil {
		return nil, fmt.Errorf("payload: %w", err)
	}
	digest := sha256.New()
	chunks, err := ch.Chunks(io.TeeReader(payload, digest))
	if err != nil {
		return nil, fmt.Errorf("read payload: %w", err)
	}
	md.PayloadSize = 0
	for _, c := range chunks {
		md.PayloadSize += c.Size
	}
	md.PayloadSHA256 = hex.EncodeToString(digest.Sum(nil))
	md.Chunks = chunks
	if md.Chunks == nil {
		md.Chunks = []Chunk{}
	}
	if err := md.Validate(); err != nil {
		return nil, fmt.Errorf("metadata: %w", err)
	}
	return json.Marshal(md)
}

// PackFile is Pack with the payload read from the file at path.
func PackFile(w io.Writer, md Metadata, path string, signer crypto.Signer) (*Header, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("image.Pack: %w", err)
	}
	defer f.Close()
	return Pack(w, md, f, signer)
}

func writeHeader(w io.Writer, h *Header) error {
	sigJSON, err := json.Marshal(&h.Signature)
	if err != nil {
		return err
	}
	var buf bytes.Buffer
	buf.Grow(len(Magic) + 8 + len(h.MetadataJSON) + len(sigJSON))
	buf.WriteString(Magic)
	buf.Write(binary.BigEndian.AppendUint32(nil, uint32(len(h.MetadataJSON))))
	buf.Write(h.MetadataJSON)
	buf.Write(binary.BigEndian.AppendUint32(nil, uint32(len(sigJSON))))
	buf.Write(sigJSON)
	_, err = w.Write(buf.Bytes())
	return err
}

// ReadHeader reads a package's header from r, checks that it is well formed
// and leaves r at the first byte of the payload. It does not check the
// signature (see VerifySignature) nor the payload (see VerifyPayload).
// Errors wrap ErrFormat or ErrCorrupt, or are r's own read errors.
func ReadHeader(r io.Reader) (*Header, error) {
	var magic [len(Magic)]byte
	n, err := io.ReadFull(r, magic[:])
	switch {
	case n == 0 && (err == io.EOF || err == io.ErrUnexpectedEOF):
		return nil, fmt.Errorf("%w: the file is empty, not an OpenSphere image package", ErrFormat)
	case string(magic[:n]) != Magic[:n]:
		return nil, fmt.Errorf("%w: not an OpenSphere image package (it does not start with %q)", ErrFormat, Magic)
	case err == io.ErrUnexpectedEOF:
		return nil, fmt.Errorf("%w: truncated in the magic number", ErrCorrupt)
	case err != nil:
		return nil, fmt.Errorf("image: read package: %w", err)
	}
	mdJSON, err := readSection(r, "metadata", MaxMetadataSize)
	if err != nil {
		return nil, err
	}
	h := &Header{MetadataJSON: mdJSON}
	if err := decodeStrict(mdJSON, &h.Metadata); err != nil {
		return nil, fmt.Errorf("%w: metadata: %w", ErrFormat, err)
	}
	if err := h.Metadata.Validate(); err != nil {
		return nil, fmt.Errorf("%w: metadata: %w", ErrFormat, err)
	}
	sigJSON, err := readSection(r, "signature", MaxSignatureSize)
	if err != nil {
		return nil, err
	}
	if err := decodeStrict(sigJSON, &h.Signature); err != nil {
		return nil, fmt.Errorf("%w: signature: %w", ErrFormat, err)
	}
	if err := h.Signature.validate(); err != nil {
		return nil, fmt.Errorf("%w: signature: %w", ErrFormat, err)
	}
	return h, nil
}

// readSection reads a u32 length and that many bytes (at most limit).
func readSection(r io.Reader, name string, limit int) ([]byte, error) {
	var l [4]byte
	if _, err := io.ReadFull(r, l[:]); err != nil {
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			return nil, fmt.Errorf("%w: truncated before the length of the %s section", ErrCorrupt, name)
		}
		return nil, fmt.Errorf("image: read package: %w", err)
	}
	n := binary.BigEndian.Uint32(l[:])
	if n == 0 {
		return nil, fmt.Errorf("%w: the %s section is empty", ErrFormat, name)
	}
	if n > uint32(limit) {
		return nil, fmt.Errorf("%w: the %s section is %d bytes, more than the limit of %d", ErrFormat, name, n, limit)
	}
	// Grow as bytes arrive rather than trusting the length: a few bytes
	// claiming 8 MiB cost no 8 MiB.
	var buf bytes.Buffer
	got, err := io.CopyN(&buf, r, int64(n))
	if err == io.EOF {
		return nil, fmt.Errorf("%w: truncated in the %s section (%d of %d bytes)", ErrCorrupt, name, got, n)
	}
	if err != nil {
		return nil, fmt.Errorf("image: read package: %w", err)
	}
	return buf.Bytes(), nil
}

// VerifyPayload reads the payload from r (what follows the header, to the
// end) and checks its size, its SHA-256 and each chunk of the chunk index
// against h. It streams. Errors wrap ErrCorrupt, or are r's own read errors.
func VerifyPayload(r io.Reader, h *Header) error {
	return copyPayload(io.Discard, r, h)
}

// Resign reads a package from r and writes it to w signed by signer
// instead, streaming the payload and verifying it as it goes (an error
// wrapping ErrCorrupt means w got a package that must be thrown away). The
// metadata bytes, hence the image id, stay the same. Resign does not check
// the old signature: whoever re-signs vouches for the image, so check it
// first when that matters. It returns the new header.
func Resign(w io.Writer, r io.Reader, signer crypto.Signer) (*Header, error) {
	h, err := ReadHeader(r)
	if err != nil {
		return nil, err
	}
	sig, err := sign(signer, h.MetadataJSON)
	if err != nil {
		return nil, fmt.Errorf("image.Resign: %w", err)
	}
	h.Signature = sig
	if err := writeHeader(w, h); err != nil {
		return nil, fmt.Errorf("image.Resign: %w", err)
	}
	if err := copyPayload(w, r, h); err != nil {
		return nil, err
	}
	return h, nil
}

// errPayloadDigest is the message for a payload that does not match.
const errPayloadDigest = "payload does not match its SHA-256 in the metadata: the file is corrupt or was altered"

// copyPayload copies exactly the payload from r to w, checking it against
// h's size, digest and chunk index, and that r ends right after it.
func copyPayload(w io.Writer, r io.Reader, h *Header) error {
	md := &h.Metadata
	total := sha256.New()
	chunk := sha256.New()
	badChunk := -1
	var done int64
	for i, c := range md.Chunks {
		chunk.Reset()
		n, err := io.CopyN(io.MultiWriter(w, total, chunk), r, c.Size)
		done += n
		if err == io.EOF {
			return fmt.Errorf("%w: truncated in the payload (%d of %d bytes)", ErrCorrupt, done, md.PayloadSize)
		}
		if err != nil {
			return fmt.Errorf("image: payload: %w", err)
		}
		if badChunk < 0 && !sumIs(chunk, c.SHA256) {
			badChunk = i
		}
	}
	extra, err := io.Copy(io.Discard, r)
	if err != nil {
		return fmt.Errorf("image: payload: %w", err)
	}
	if extra > 0 {
		return fmt.Errorf("%w: %d bytes follow the %d-byte payload", ErrCorrupt, extra, md.PayloadSize)
	}
	switch {
	case !sumIs(total, md.PayloadSHA256) && badChunk >= 0:
		c := md.Chunks[badChunk]
		return fmt.Errorf("%w: %s (first difference in chunk %d, bytes %d to %d)", ErrCorrupt, errPayloadDigest, badChunk, c.Offset, c.Offset+c.Size-1)
	case !sumIs(total, md.PayloadSHA256):
		return fmt.Errorf("%w: %s", ErrCorrupt, errPayloadDigest)
	case badChunk >= 0:
		return fmt.Errorf("%w: chunk %d of the chunk index does not match the payload", ErrCorrupt, badChunk)
	}
	return nil
}

func sumIs(h hash.Hash, want string) bool {
	return hex.EncodeToString(h.Sum(nil)) == want
}
