package rot

import (
	"crypto"
	"crypto/ecdsa"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"
)

// TPMConfig says which TPM to use and where the TPM root of trust keeps its
// key blobs.
type TPMConfig struct {
	// StateDir holds the attestation and identity key blobs: each key's
	// TPM2B_PUBLIC (ak.pub, identity.pub) and TPM2B_PRIVATE (ak.priv,
	// identity.priv), the private part encrypted by the TPM's storage root
	// key and so useless on any other TPM. Required; created (mode 0700) if
	// missing. Losing it means new keys, that is a new device identity.
	StateDir string
	// Device is the TPM character device, or "tcp:HOST:PORT" for a TPM
	// behind a socket such as swtpm's TCP server (labs). Empty means
	// /dev/tpmrm0 (the kernel's resource manager), falling back to
	// /dev/tpm0.
	Device string
	// Transport, if set, is used instead of Device (tests pass a TPM
	// simulator). OpenTPM does not take it over: Close leaves it open.
	Transport transport.TPM
	// OwnerAuth is the authorization value of the owner hierarchy, under
	// which the storage root key and the counter's NV indices live. Empty
	// means the empty authorization a TPM has until someone sets one.
	OwnerAuth []byte
	// CounterIndex is the NV index of the anti-rollback counter; the
	// counter's base is kept at CounterIndex+1. Zero means
	// DefaultCounterIndex.
	CounterIndex uint32
	// Logger receives a line for each thing OpenTPM provisions (new keys,
	// the counter). Nil means no logging.
	Logger *slog.Logger
}

// NV indices and handles the TPM root of trust uses.
const (
	// DefaultCounterIndex is the NV index of the anti-rollback counter
	// (TPM_NT_COUNTER), in the owner range of the TCG handle registry
	// (0x01800000-0x01BFFFFF; systemd's 0x01800400-0x018005FF avoided).
	// DefaultCounterIndex+1 holds the counter's base: 8 bytes, big-endian,
	// written once at provisioning and then write-locked for good
	// (TPMA_NV_WRITEDEFINE + TPM2_NV_WriteLock).
	DefaultCounterIndex uint32 = 0x01805300
	// ECCEKCertIndex and RSAEKCertIndex are where TPM manufacturers store
	// the endorsement key certificates (TCG EK Credential Profile).
	ECCEKCertIndex uint32 = 0x01c0000a
	RSAEKCertIndex uint32 = 0x01c00002
)

// ErrClosed is returned by a root of trust used after Close.
var ErrClosed = errors.New("rot: root of trust is closed")

// TPM is the root of trust in a TPM 2.0. Its keys are made in the TPM and
// never leave it: an ECC P-256 storage root key, a primary under the owner
// hierarchy made again from the TCG template (tpm2.ECCSRKTemplate) at each
// open, so nothing of it is stored; under it an attestation key (restricted,
// signs only TPM-made quotes and certifications) and an identity key
// (unrestricted, for TLS), both ECDSA P-256 with SHA-256, fixedTPM,
// fixedParent, sensitiveDataOrigin, userWithAuth and noDA, with empty
// authorization values.
//
// The TPM runs one command at a time; a mutex serializes every use, Sign
// from concurrent TLS handshakes included.
type TPM struct {
	mu        sync.Mutex
	tpm       transport.TPM
	closer    io.Closer // nil when the transport was given in TPMConfig
	ownerAuth []byte
	log       *slog.Logger
	closed    bool

	ak, id tpmKey
	ekCert []byte

	counter, base tpmNV
	baseValue     uint64

	events []Event
}

// tpmKey is a key loaded in the TPM.
type tpmKey struct {
	handle     tpm2.TPMHandle
	name       tpm2.TPM2BName
	publicArea []byte // marshalled TPMT_PUBLIC
	pub        *ecdsa.PublicKey
}

func (k tpmKey) auth() tpm2.AuthHandle {
	return tpm2.AuthHandle{Handle: k.handle, Name: k.name, Auth: tpm2.PasswordAuth(nil)}
}

var _ RootOfTrust = (*TPM)(nil)

// OpenTPM opens the TPM root of trust: it opens the TPM, makes the storage
// root key, loads the attestation and identity keys from cfg.StateDir
// (creating them the first time), reads the EK certificate if the TPM has
// one, and provisions the anti-rollback counter the first time.
func OpenTPM(cfg TPMConfig) (_ *TPM, err error) {
	if err := prepareStateDir(cfg.StateDir); err != nil {
		return nil, fmt.Errorf("rot.OpenTPM: %w", err)
	}
	t := &TPM{ownerAuth: cfg.OwnerAuth, log: cfg.Logger}
	if t.log == nil {
		t.log = slog.New(slog.DiscardHandler)
	}
	if cfg.Transport != nil {
		t.tpm = cfg.Transport
	} else {
		var tc transport.TPMCloser
		var err error
		if addr, ok := strings.CutPrefix(cfg.Device, "tcp:"); ok {
			tc, err = openSocket(addr)
		} else {
			tc, err = openDevice(cfg.Device)
		}
		if err != nil {
			return nil, fmt.Errorf("rot.OpenTPM: %w", err)
		}
		t.tpm, t.closer = tc, tc
	}
	defer func() {
		if err != nil {
			t.Close()
		}
	}()
	if err := t.loadKeys(cfg.StateDir); err != nil {
		return nil, fmt.Errorf("rot.OpenTPM: %w", err)
	}
	t.ekCert = t.readEKCert()
	idx := cfg.CounterIndex
	if idx == 0 {
		idx = DefaultCounterIndex
	}
	if err := t.provisionCounter(idx); err != nil {
		return nil, fmt.Errorf("rot.OpenTPM: anti-rollback counter: %w", err)
	}
	return t, nil
}

// loadKeys makes the storage root key and loads (or creates) the
// attestation and identity keys under it. The SRK is flushed once its
// children are loaded: a loaded key does not need its parent, and a TPM
// without a resource manager has only a few object slots.
func (t *TPM) loadKeys(dir string) error {
	srk, err := tpm2.CreatePrimary{
		PrimaryHandle: tpm2.AuthHandle{Handle: tpm2.TPMRHOwner, Auth: tpm2.PasswordAuth(t.ownerAuth)},
		InPublic:      tpm2.New2B(tpm2.ECCSRKTemplate),
	}.Execute(t.tpm)
	if err != nil {
		return fmt.Errorf("create storage root key: %w", err)
	}
	defer t.flush(srk.ObjectHandle)
	parent := tpm2.AuthHandle{Handle: srk.ObjectHandle, Name: srk.Name, Auth: tpm2.PasswordAuth(nil)}
	if t.ak, err = t.loadOrCreate(dir, "ak", parent, true); err != nil {
		return err
	}
	if t.id, err = t.loadOrCreate(dir, "identity", parent, false); err != nil {
		return err
	}
	return nil
}

// loadOrCreate loads the key whose blobs are dir/base.pub and dir/base.priv,
// creating it first if base.pub does not exist. Creation writes .priv, then
// .pub: a .pub file means the pair is complete.
func (t *TPM) loadOrCreate(dir, base string, parent tpm2.AuthHandle, restricted bool) (tpmKey, error) {
	pubFile, privFile := base+".pub", base+".priv"
	pubBlob, havePub, err := readStateFile(dir, pubFile)
	if err != nil {
		return tpmKey{}, err
	}
	privBlob, havePriv, err := readStateFile(dir, privFile)
	if err != nil {
		return tpmKey{}, err
	}
	if !havePub {
		rsp, err := tpm2.Create{
			ParentHandle: parent,
			InPublic:     tpm2.New2B(eccSigningTemplate(restricted)),
		}.Execute(t.tpm)
		if err != nil {
			return tpmKey{}, fmt.Errorf("create %s key: %w", base, err)
		}
		privBlob, pubBlob = tpm2.Marshal(rsp.OutPrivate), tpm2.Marshal(rsp.OutPublic)
		if err := writeFileAtomic(dir, privFile, privBlob); err != nil {
			return tpmKey{}, fmt.Errorf("save %s key: %w", base, err)
		}
		if err := writeFileAtomic(dir, pubFile, pubBlob); err != nil {
			return tpmKey{}, fmt.Errorf("save %s key: %w", base, err)
		}
		t.log.Info("rot: created TPM key", "key", base, "dir", dir)
	} else if !havePriv {
		return tpmKey{}, fmt.Errorf("%s exists but %s does not: the state directory is damaged", pubFile, privFile)
	}

	pub2B, err := tpm2.Unmarshal[tpm2.TPM2BPublic](pubBlob)
	if err != nil {
		return tpmKey{}, fmt.Errorf("%s: %w", pubFile, err)
	}
	priv2B, err := tpm2.Unmarshal[tpm2.TPM2BPrivate](privBlob)
	if err != nil {
		return tpmKey{}, fmt.Errorf("%s: %w", privFile, err)
	}
	pub, err := pub2B.Contents()
	if err != nil {
		return tpmKey{}, fmt.Errorf("%s: %w", pubFile, err)
	}
	if err := checkTemplate(pub, restricted); err != nil {
		return tpmKey{}, fmt.Errorf("%s: not a key this package made: %w", pubFile, err)
	}
	ecPub, err := eccSigningKey(pub)
	if err != nil {
		return tpmKey{}, fmt.Errorf("%s: %w", pubFile, err)
	}
	loaded, err := tpm2.Load{
		ParentHandle: parent,
		InPrivate:    *priv2B,
		InPublic:     *pub2B,
	}.Execute(t.tpm)
	if err != nil {
		return tpmKey{}, fmt.Errorf("load %s key (made by another TPM, or the owner hierarchy was cleared?): %w", base, err)
	}
	return tpmKey{
		handle:     loaded.ObjectHandle,
		name:       loaded.Name,
		publicArea: pub2B.Bytes(),
		pub:        ecPub,
	}, nil
}

func (t *TPM) flush(h tpm2.TPMHandle) {
	if h == 0 {
		return
	}
	if _, err := (tpm2.FlushContext{FlushHandle: h}).Execute(t.tpm); err != nil {
		t.log.Warn("rot: flush TPM object", "handle", fmt.Sprintf("%#08x", uint32(h)), "err", err)
	}
}

// Kind implements RootOfTrust.
func (t *TPM) Kind() Kind { return KindTPM }

// AttestationKey implements RootOfTrust: an *ecdsa.PublicKey.
func (t *TPM) AttestationKey() crypto.PublicKey { return t.ak.pub }

// Identity implements RootOfTrust. Sign accepts SHA-256, SHA-384 and
// SHA-512 digests and returns ASN.1 DER.
func (t *TPM) Identity() crypto.Signer { return tpmSigner{t} }

// IdentityPublicArea implements RootOfTrust: the TPMT_PUBLIC as the TPM
// returned it when the key was made.
func (t *TPM) IdentityPublicArea() []byte { return append([]byte(nil), t.id.publicArea...) }

// EKCertificate implements RootOfTrust: the ECC EK certificate if the TPM
// has one, else the RSA one, else nil.
func (t *TPM) EKCertificate() []byte { return append([]byte(nil), t.ekCert...) }

type tpmSigner struct{ t *TPM }

func (s tpmSigner) Public() crypto.PublicKey { return s.t.id.pub }

// Sign runs TPM2_Sign with the identity key. rand is not used: the TPM has
// its own.
func (s tpmSigner) Sign(_ io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	d, err := p256Digest(digest, opts)
	if err != nil {
		return nil, err
	}
	t := s.t
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return nil, ErrClosed
	}
	rsp, err := tpm2.Sign{
		KeyHandle:  t.id.auth(),
		Digest:     tpm2.TPM2BDigest{Buffer: d},
		Validation: tpm2.TPMTTKHashCheck{Tag: tpm2.TPMSTHashCheck},
	}.Execute(t.tpm)
	if err != nil {
		return nil, fmt.Errorf("rot: TPM2_Sign: %w", err)
	}
	return derSignature(&rsp.Signature)
}

// p256Digest checks digest against opts and returns what an ECDSA P-256
// signature is computed over: the leftmost 256 bits of the digest (SEC 1,
// 4.1.3). So a key whose TPM scheme is ECDSA-SHA256 also makes valid
// signatures over SHA-384 and SHA-512 digests, which TLS 1.2 peers may ask
// for.
func p256Digest(digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	if opts == nil {
		return nil, errors.New("rot: Sign: no hash function given")
	}
	h := opts.HashFunc()
	switch h {
	case crypto.SHA256, crypto.SHA384, crypto.SHA512:
	default:
		return nil, fmt.Errorf("rot: Sign: hash %v not supported (SHA-256, SHA-384, SHA-512)", h)
	}
	if len(digest) != h.Size() {
		return nil, fmt.Errorf("rot: Sign: digest is %d bytes, %v needs %d", len(digest), h, h.Size())
	}
	return digest[:32], nil
}

// CertifyIdentity implements RootOfTrust with TPM2_Certify.
func (t *TPM) CertifyIdentity(extraData []byte) (Attestation, error) {
	if len(extraData) > MaxNonceSize {
		return Attestation{}, fmt.Errorf("rot.CertifyIdentity: extraData is %d bytes, at most %d", len(extraData), MaxNonceSize)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return Attestation{}, ErrClosed
	}
	rsp, err := tpm2.Certify{
		ObjectHandle:   t.id.auth(),
		SignHandle:     t.ak.auth(),
		QualifyingData: tpm2.TPM2BData{Buffer: extraData},
	}.Execute(t.tpm)
	if err != nil {
		return Attestation{}, fmt.Errorf("rot.CertifyIdentity: TPM2_Certify: %w", err)
	}
	sig, err := derSignature(&rsp.Signature)
	if err != nil {
		return Attestation{}, fmt.Errorf("rot.CertifyIdentity: %w", err)
	}
	return Attestation{Attest: rsp.CertifyInfo.Bytes(), Signature: sig}, nil
}

func pcrAuth() tpm2.AuthHandle {
	return tpm2.AuthHandle{Handle: tpm2.TPMHandle(MeasurementPCR), Auth: tpm2.PasswordAuth(nil)}
}

// ResetMeasurements implements RootOfTrust with TPM2_PCR_Reset.
func (t *TPM) ResetMeasurements() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return ErrClosed
	}
	if _, err := (tpm2.PCRReset{PCRHandle: pcrAuth()}).Execute(t.tpm); err != nil {
		return fmt.Errorf("rot.ResetMeasurements: TPM2_PCR_Reset(%d): %w", MeasurementPCR, err)
	}
	t.events = nil
	return nil
}

// Extend implements RootOfTrust with TPM2_PCR_Extend of the SHA-256 bank.
func (t *TPM) Extend(e Event) error {
	v, err := e.ExtendValue()
	if err != nil {
		return fmt.Errorf("rot.Extend: %w", err)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return ErrClosed
	}
	_, err = tpm2.PCRExtend{
		PCRHandle: pcrAuth(),
		Digests: tpm2.TPMLDigestValues{Digests: []tpm2.TPMTHA{
			{HashAlg: tpm2.TPMAlgSHA256, Digest: v[:]},
		}},
	}.Execute(t.tpm)
	if err != nil {
		return fmt.Errorf("rot.Extend: TPM2_PCR_Extend(%d): %w", MeasurementPCR, err)
	}
	t.events = append(t.events, e)
	return nil
}

// EventLog implements RootOfTrust. It is kept in memory: after the process
// restarts, the agent resets the register and measures again.
func (t *TPM) EventLog() []Event {
	t.mu.Lock()
	defer t.mu.Unlock()
	return append([]Event(nil), t.events...)
}

// Quote implements RootOfTrust with TPM2_Quote.
func (t *TPM) Quote(nonce []byte) (Attestation, error) {
	if len(nonce) > MaxNonceSize {
		return Attestation{}, fmt.Errorf("rot.Quote: nonce is %d bytes, at most %d", len(nonce), MaxNonceSize)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return Attestation{}, ErrClosed
	}
	rsp, err := tpm2.Quote{
		SignHandle:     t.ak.auth(),
		QualifyingData: tpm2.TPM2BData{Buffer: nonce},
		PCRSelect:      pcrSelection(),
	}.Execute(t.tpm)
	if err != nil {
		return Attestation{}, fmt.Errorf("rot.Quote: TPM2_Quote: %w", err)
	}
	sig, err := derSignature(&rsp.Signature)
	if err != nil {
		return Attestation{}, fmt.Errorf("rot.Quote: %w", err)
	}
	return Attestation{Attest: rsp.Quoted.Bytes(), Signature: sig}, nil
}

// Close implements RootOfTrust: it unloads the keys and closes the TPM
// device (not a transport given in TPMConfig). The keys stay in StateDir.
func (t *TPM) Close() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return nil
	}
	t.closed = true
	t.flush(t.ak.handle)
	t.flush(t.id.handle)
	if t.closer != nil {
		return t.closer.Close()
	}
	return nil
}
