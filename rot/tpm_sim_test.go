//go:build cgo

package rot

// Tests of the TPM root of trust against the Microsoft TPM 2.0 reference
// simulator (go-tpm-tools, built with cgo). The simulator is a process-wide
// singleton: each test opens it (a fresh, manufacture-reset TPM) and closes
// it at the end, so these tests must not run in parallel.

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"
	"github.com/google/go-tpm/tpm2/transport/simulator"
)

func init() {
	impls = append(impls, impl{name: "tpm", newDevice: tpmDevice})
}

// newSimulator opens a fresh simulated TPM for the test.
func newSimulator(t *testing.T) transport.TPMCloser {
	t.Helper()
	sim, err := simulator.OpenSimulator()
	if err != nil {
		t.Fatalf("open TPM simulator: %v", err)
	}
	t.Cleanup(func() { sim.Close() })
	return sim
}

func tpmDevice(t *testing.T) func() RootOfTrust {
	sim := newSimulator(t)
	dir := t.TempDir()
	return func() RootOfTrust {
		t.Helper()
		return openSimTPM(t, TPMConfig{StateDir: dir, Transport: sim})
	}
}

func openSimTPM(t *testing.T, cfg TPMConfig) *TPM {
	t.Helper()
	r, err := OpenTPM(cfg)
	if err != nil {
		t.Fatalf("OpenTPM: %v", err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

func TestTPMPCRHoldsReplayedLog(t *testing.T) {
	sim := newSimulator(t)
	r := openSimTPM(t, TPMConfig{StateDir: t.TempDir(), Transport: sim})
	if err := r.ResetMeasurements(); err != nil {
		t.Fatal(err)
	}
	for _, e := range testEvents {
		if err := r.Extend(e); err != nil {
			t.Fatal(err)
		}
	}
	rsp, err := tpm2.PCRRead{PCRSelectionIn: pcrSelection()}.Execute(sim)
	if err != nil {
		t.Fatalf("PCR_Read: %v", err)
	}
	want, err := ReplayEventLog(r.EventLog())
	if err != nil {
		t.Fatal(err)
	}
	if len(rsp.PCRValues.Digests) != 1 || !bytes.Equal(rsp.PCRValues.Digests[0].Buffer, want[:]) {
		t.Errorf("PCR %d = %x, replayed log = %x", MeasurementPCR, rsp.PCRValues.Digests, want)
	}
}

func TestTPMStateFiles(t *testing.T) {
	sim := newSimulator(t)
	dir := t.TempDir()
	openSimTPM(t, TPMConfig{StateDir: dir, Transport: sim})
	for _, name := range []string{"ak.pub", "ak.priv", "identity.pub", "identity.priv"} {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: mode %v, want 0600", name, fi.Mode().Perm())
		}
	}
	leftovers, _ := filepath.Glob(filepath.Join(dir, ".*tmp*"))
	if len(leftovers) != 0 {
		t.Errorf("temporary files left behind: %v", leftovers)
	}
}

func TestTPMDamagedStateDir(t *testing.T) {
	sim := newSimulator(t)
	dir := t.TempDir()
	r := openSimTPM(t, TPMConfig{StateDir: dir, Transport: sim})
	r.Close()
	if err := os.Remove(filepath.Join(dir, "identity.priv")); err != nil {
		t.Fatal(err)
	}
	r, err := OpenTPM(TPMConfig{StateDir: dir, Transport: sim})
	if err == nil {
		r.Close()
		t.Fatalf("OpenTPM with identity.pub but no identity.priv: got nil error")
	}
	if !strings.Contains(err.Error(), "damaged") {
		t.Errorf("OpenTPM with identity.pub but no identity.priv: got %v, want a damaged state directory", err)
	}
}

// A key blob planted in the state directory that was not made from this
// package's template is refused, even though the TPM would load it.
func TestTPMRefusesForeignKey(t *testing.T) {
	sim := newSimulator(t)
	dir := t.TempDir()
	srk, err := tpm2.CreatePrimary{
		PrimaryHandle: tpm2.TPMRHOwner,
		InPublic:      tpm2.New2B(tpm2.ECCSRKTemplate),
	}.Execute(sim)
	if err != nil {
		t.Fatal(err)
	}
	foreign := eccSigningTemplate(false)
	foreign.ObjectAttributes.FixedTPM = false // could be duplicated out of the TPM
	foreign.ObjectAttributes.FixedParent = false
	rsp, err := tpm2.Create{
		ParentHandle: tpm2.AuthHandle{Handle: srk.ObjectHandle, Name: srk.Name, Auth: tpm2.PasswordAuth(nil)},
		InPublic:     tpm2.New2B(foreign),
	}.Execute(sim)
	if err != nil {
		t.Fatal(err)
	}
	tpm2.FlushContext{FlushHandle: srk.ObjectHandle}.Execute(sim)
	os.WriteFile(filepath.Join(dir, "identity.pub"), tpm2.Marshal(rsp.OutPublic), 0o600)
	os.WriteFile(filepath.Join(dir, "identity.priv"), tpm2.Marshal(rsp.OutPrivate), 0o600)
	r, err := OpenTPM(TPMConfig{StateDir: dir, Transport: sim})
	if err == nil {
		r.Close()
		t.Fatalf("OpenTPM with a non-fixedTPM identity key: got nil error")
	}
	if !strings.Contains(err.Error(), "not a key this package made") {
		t.Errorf("OpenTPM with a non-fixedTPM identity key: got %v, want a template mismatch", err)
	}
}

func TestTPMCounterBaseIsLocked(t *testing.T) {
	sim := newSimulator(t)
	r := openSimTPM(t, TPMConfig{StateDir: t.TempDir(), Transport: sim})
	if err := r.AdvanceCounter(2); err != nil {
		t.Fatal(err)
	}
	pub, nv, ok, err := r.nvPublic(DefaultCounterIndex + 1)
	if err != nil || !ok {
		t.Fatalf("base index: ok=%v err=%v", ok, err)
	}
	if !pub.Attributes.WriteLocked || !pub.Attributes.WriteDefine {
		t.Errorf("base index attributes %+v: want WRITELOCKED and WRITEDEFINE", pub.Attributes)
	}
	_, err = tpm2.NVWrite{
		AuthHandle: tpm2.AuthHandle{Handle: tpm2.TPMRHOwner, Auth: tpm2.PasswordAuth(nil)},
		NVIndex:    nv.named(),
		Data:       tpm2.TPM2BMaxNVBuffer{Buffer: make([]byte, 8)},
	}.Execute(sim)
	if !errors.Is(err, tpm2.TPMRCNVLocked) {
		t.Errorf("writing the counter base: got %v, want TPM_RC_NV_LOCKED", err)
	}
	// The raw counter is base + security version.
	cpub, cnv, _, err := r.nvPublic(DefaultCounterIndex)
	if err != nil {
		t.Fatal(err)
	}
	if cpub.Attributes.NT != tpm2.TPMNTCounter {
		t.Errorf("counter index type %v, want TPM_NT_COUNTER", cpub.Attributes.NT)
	}
	raw, err := r.nvRead8(cnv)
	if err != nil {
		t.Fatal(err)
	}
	if raw != r.baseValue+2 {
		t.Errorf("raw counter %d, want base %d + 2", raw, r.baseValue)
	}
}

// undefine deletes an NV index with owner authorization.
func undefine(t *testing.T, tpm transport.TPM, r *TPM, idx uint32) {
	t.Helper()
	_, nv, ok, err := r.nvPublic(idx)
	if err != nil || !ok {
		t.Fatalf("NV index %#08x: ok=%v err=%v", idx, ok, err)
	}
	_, err = tpm2.NVUndefineSpace{
		AuthHandle: tpm2.AuthHandle{Handle: tpm2.TPMRHOwner, Auth: tpm2.PasswordAuth(nil)},
		NVIndex:    nv.named(),
	}.Execute(tpm)
	if err != nil {
		t.Fatalf("NV_UndefineSpace(%#08x): %v", idx, err)
	}
}

// A TPM starts a new counter at the highest value a deleted counter had;
// the base makes the security version of a new counter start at 0 anyway.
func TestTPMCounterStartsAtZeroOnUsedTPM(t *testing.T) {
	sim := newSimulator(t)
	const other = 0x01805310
	first := openSimTPM(t, TPMConfig{StateDir: t.TempDir(), Transport: sim, CounterIndex: other})
	if err := first.AdvanceCounter(40); err != nil {
		t.Fatal(err)
	}
	firstRaw := first.baseValue + 40
	undefine(t, sim, first, other)
	first.Close()

	second := openSimTPM(t, TPMConfig{StateDir: t.TempDir(), Transport: sim})
	got, err := second.Counter()
	if err != nil {
		t.Fatal(err)
	}
	if got != 0 {
		t.Errorf("new counter on a used TPM: got %d, want 0", got)
	}
	if second.baseValue < firstRaw {
		t.Errorf("new counter's base %d is below the deleted counter's %d", second.baseValue, firstRaw)
	}
}

// Deleting and redefining the counter (but not its locked base) cannot take
// the security version down: the TPM restarts the counter at or above its
// old value.
func TestTPMCounterSurvivesRedefinition(t *testing.T) {
	sim := newSimulator(t)
	dir := t.TempDir()
	r := openSimTPM(t, TPMConfig{StateDir: dir, Transport: sim})
	if err := r.AdvanceCounter(7); err != nil {
		t.Fatal(err)
	}
	undefine(t, sim, r, DefaultCounterIndex)
	r.Close()
	r = openSimTPM(t, TPMConfig{StateDir: dir, Transport: sim})
	got, err := r.Counter()
	if err != nil {
		t.Fatal(err)
	}
	if got < 7 {
		t.Errorf("security version after the counter was redefined: got %d, want at least 7", got)
	}
}

func TestTPMCounterIndexTaken(t *testing.T) {
	sim := newSimulator(t)
	const idx = 0x01805320
	_, err := tpm2.NVDefineSpace{
		AuthHandle: tpm2.TPMRHOwner,
		PublicInfo: tpm2.New2B(tpm2.TPMSNVPublic{
			NVIndex:    idx,
			NameAlg:    tpm2.TPMAlgSHA256,
			Attributes: tpm2.TPMANV{OwnerWrite: true, OwnerRead: true, AuthWrite: true, NT: tpm2.TPMNTOrdinary},
			DataSize:   8,
		}),
	}.Execute(sim)
	if err != nil {
		t.Fatal(err)
	}
	r, err := OpenTPM(TPMConfig{StateDir: t.TempDir(), Transport: sim, CounterIndex: idx})
	if err == nil {
		r.Close()
		t.Fatalf("OpenTPM with someone else's index at CounterIndex: got nil error")
	}
	if !strings.Contains(err.Error(), "CounterIndex") {
		t.Errorf("OpenTPM with someone else's index at CounterIndex: got %v, want advice to pick another index", err)
	}
}

func TestTPMEKCertificate(t *testing.T) {
	sim := newSimulator(t)
	r := openSimTPM(t, TPMConfig{StateDir: t.TempDir(), Transport: sim})
	if r.EKCertificate() != nil {
		t.Fatalf("simulator has no EK certificate, got %d bytes", len(r.EKCertificate()))
	}
	r.Close()

	// Store a certificate the way manufacturers do: in the ECC EK
	// certificate index, zero-padded, larger than one read chunk.
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: "EK", Organization: []string{string(bytes.Repeat([]byte("x"), 400))}},
		NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	data := append(bytes.Clone(der), make([]byte, 64)...)
	owner := tpm2.AuthHandle{Handle: tpm2.TPMRHOwner, Auth: tpm2.PasswordAuth(nil)}
	def := tpm2.NVDefineSpace{
		AuthHandle: owner,
		PublicInfo: tpm2.New2B(tpm2.TPMSNVPublic{
			NVIndex:    tpm2.TPMHandle(ECCEKCertIndex),
			NameAlg:    tpm2.TPMAlgSHA256,
			Attributes: tpm2.TPMANV{OwnerWrite: true, OwnerRead: true, AuthRead: true, NoDA: true, NT: tpm2.TPMNTOrdinary},
			DataSize:   uint16(len(data)),
		}),
	}
	if _, err := def.Execute(sim); err != nil {
		t.Fatal(err)
	}
	r = openSimTPM(t, TPMConfig{StateDir: t.TempDir(), Transport: sim})
	_, nv, _, err := r.nvPublic(ECCEKCertIndex)
	if err != nil {
		t.Fatal(err)
	}
	for off := 0; off < len(data); off += 256 {
		end := min(off+256, len(data))
		_, err := tpm2.NVWrite{AuthHandle: owner, NVIndex: nv.named(), Data: tpm2.TPM2BMaxNVBuffer{Buffer: data[off:end]}, Offset: uint16(off)}.Execute(sim)
		if err != nil {
			t.Fatalf("NV_Write at %d: %v", off, err)
		}
		if off == 0 { // the name changes once the index is written
			if _, nv, _, err = r.nvPublic(ECCEKCertIndex); err != nil {
				t.Fatal(err)
			}
		}
	}
	r.Close()
	r = openSimTPM(t, TPMConfig{StateDir: t.TempDir(), Transport: sim})
	if got := r.EKCertificate(); !bytes.Equal(got, der) {
		t.Errorf("EKCertificate: got %d bytes, want the %d-byte certificate", len(got), len(der))
	}
}
