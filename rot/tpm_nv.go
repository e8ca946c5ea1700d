package rot

import (
	"encoding/asn1"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/google/go-tpm/tpm2"
)

// The anti-rollback counter in TPM NV.
//
// A TPM_NT_COUNTER index can only go up, but it does not start at zero: its
// first TPM2_NV_Increment sets it to the highest value any counter in that
// TPM ever had. So the security version is counter - base, where base is
// the counter's value at provisioning, kept in a second index that is
// written once and then write-locked for good (TPMA_NV_WRITEDEFINE +
// TPM2_NV_WriteLock): no software can change it afterwards.
//
// Limit: whoever holds owner authorization can undefine both indices and
// provision them again, which resets the security version to 0. On a
// device whose owner authorization is empty, that is anyone with root;
// set an owner authorization (TPMConfig.OwnerAuth) to close that door.

// maxCounterStep bounds one AdvanceCounter call: each step is one
// TPM2_NV_Increment (an NV write), and security versions move in small
// steps; a huge jump is a bug or an attack.
const maxCounterStep = 1 << 20

// ErrCounterRollback is returned by AdvanceCounter for a value below the
// counter's current value.
var ErrCounterRollback = errors.New("rot: anti-rollback counter never goes down")

// tpmNV is an NV index and its current name.
type tpmNV struct {
	handle tpm2.TPMHandle
	name   tpm2.TPM2BName
}

func (n tpmNV) named() tpm2.NamedHandle {
	return tpm2.NamedHandle{Handle: n.handle, Name: n.name}
}

func (t *TPM) owner() tpm2.AuthHandle {
	return tpm2.AuthHandle{Handle: tpm2.TPMRHOwner, Auth: tpm2.PasswordAuth(t.ownerAuth)}
}

func counterPublic(idx uint32) tpm2.TPMSNVPublic {
	return tpm2.TPMSNVPublic{
		NVIndex: tpm2.TPMHandle(idx),
		NameAlg: tpm2.TPMAlgSHA256,
		Attributes: tpm2.TPMANV{
			OwnerWrite: true,
			OwnerRead:  true,
			AuthRead:   true,
			NoDA:       true,
			NT:         tpm2.TPMNTCounter,
		},
		DataSize: 8,
	}
}

func basePublic(idx uint32) tpm2.TPMSNVPublic {
	return tpm2.TPMSNVPublic{
		NVIndex: tpm2.TPMHandle(idx),
		NameAlg: tpm2.TPMAlgSHA256,
		Attributes: tpm2.TPMANV{
			OwnerWrite:  true,
			OwnerRead:   true,
			AuthRead:    true,
			NoDA:        true,
			WriteAll:    true,
			WriteDefine: true,
			NT:          tpm2.TPMNTOrdinary,
		},
		DataSize: 8,
	}
}

// nvPublic reads an NV index's public area; ok is false if it is not
// defined.
func (t *TPM) nvPublic(idx uint32) (pub *tpm2.TPMSNVPublic, nv tpmNV, ok bool, err error) {
	rsp, err := tpm2.NVReadPublic{NVIndex: tpm2.TPMHandle(idx)}.Execute(t.tpm)
	if errors.Is(err, tpm2.TPMRCHandle) {
		return nil, tpmNV{}, false, nil
	}
	if err != nil {
		return nil, tpmNV{}, false, fmt.Errorf("TPM2_NV_ReadPublic(%#08x): %w", idx, err)
	}
	pub, err = rsp.NVPublic.Contents()
	if err != nil {
		return nil, tpmNV{}, false, fmt.Errorf("TPM2_NV_ReadPublic(%#08x): %w", idx, err)
	}
	return pub, tpmNV{handle: tpm2.TPMHandle(idx), name: rsp.NVName}, true, nil
}

// nvEnsure returns the index described by want, defining it if needed. An
// existing index must have want's attributes (those that its state does not
// change), or it is someone else's.
func (t *TPM) nvEnsure(want tpm2.TPMSNVPublic, what string) (*tpm2.TPMSNVPublic, tpmNV, error) {
	idx := uint32(want.NVIndex)
	pub, nv, ok, err := t.nvPublic(idx)
	if err != nil {
		return nil, tpmNV{}, err
	}
	if !ok {
		_, err := tpm2.NVDefineSpace{
			AuthHandle: t.owner(),
			PublicInfo: tpm2.New2B(want),
		}.Execute(t.tpm)
		if err != nil {
			return nil, tpmNV{}, fmt.Errorf("define %s NV index %#08x: %w", what, idx, err)
		}
		t.log.Info("rot: defined TPM NV index", "what", what, "index", fmt.Sprintf("%#08x", idx))
		if pub, nv, ok, err = t.nvPublic(idx); err != nil || !ok {
			return nil, tpmNV{}, fmt.Errorf("define %s NV index %#08x: not there after definition (%v)", what, idx, err)
		}
	}
	got := pub.Attributes
	got.Written, got.WriteLocked = false, false
	if got != want.Attributes || pub.DataSize != want.DataSize || pub.NameAlg != want.NameAlg || len(pub.AuthPolicy.Buffer) != 0 {
		return nil, tpmNV{}, fmt.Errorf("NV index %#08x exists but is not this package's %s (attributes or size differ); "+
			"set TPMConfig.CounterIndex to a free index", idx, what)
	}
	return pub, nv, nil
}

// provisionCounter makes sure that the counter and its locked base exist,
// picking up where a provisioning interrupted by a crash stopped, and reads
// the base.
func (t *TPM) provisionCounter(idx uint32) error {
	if idx>>24 != 0x01 || idx&0x00ffffff == 0x00ffffff {
		return fmt.Errorf("counter NV index %#08x is not an NV index with room for its base at +1", idx)
	}
	pub, nv, err := t.nvEnsure(counterPublic(idx), "anti-rollback counter")
	if err != nil {
		return err
	}
	if !pub.Attributes.Written {
		// A counter cannot be read before its first increment.
		if err := t.nvIncrement(nv); err != nil {
			return err
		}
		if _, nv, _, err = t.nvPublic(idx); err != nil {
			return err
		}
	}
	t.counter = nv

	bpub, bnv, err := t.nvEnsure(basePublic(idx+1), "anti-rollback counter base")
	if err != nil {
		return err
	}
	if !bpub.Attributes.Written {
		c, err := t.nvRead8(t.counter)
		if err != nil {
			return err
		}
		var b [8]byte
		binary.BigEndian.PutUint64(b[:], c)
		_, err = tpm2.NVWrite{
			AuthHandle: t.owner(),
			NVIndex:    bnv.named(),
			Data:       tpm2.TPM2BMaxNVBuffer{Buffer: b[:]},
		}.Execute(t.tpm)
		if err != nil {
			return fmt.Errorf("write counter base: %w", err)
		}
		t.log.Info("rot: provisioned anti-rollback counter", "index", fmt.Sprintf("%#08x", idx), "base", c)
		if bpub, bnv, _, err = t.nvPublic(idx + 1); err != nil {
			return err
		}
	}
	if !bpub.Attributes.WriteLocked {
		_, err := tpm2.NVWriteLock{AuthHandle: t.owner(), NVIndex: bnv.named()}.Execute(t.tpm)
		if err != nil {
			return fmt.Errorf("write-lock counter base: %w", err)
		}
		if _, bnv, _, err = t.nvPublic(idx + 1); err != nil {
			return err
		}
	}
	t.base = bnv
	if t.baseValue, err = t.nvRead8(t.base); err != nil {
		return err
	}
	return nil
}

func (t *TPM) nvIncrement(nv tpmNV) error {
	_, err := tpm2.NVIncrement{AuthHandle: t.owner(), NVIndex: nv.named()}.Execute(t.tpm)
	if err != nil {
		return fmt.Errorf("TPM2_NV_Increment(%#08x): %w", uint32(nv.handle), err)
	}
	return nil
}

func (t *TPM) nvRead8(nv tpmNV) (uint64, error) {
	rsp, err := tpm2.NVRead{AuthHandle: t.owner(), NVIndex: nv.named(), Size: 8}.Execute(t.tpm)
	if err != nil {
		return 0, fmt.Errorf("TPM2_NV_Read(%#08x): %w", uint32(nv.handle), err)
	}
	if len(rsp.Data.Buffer) != 8 {
		return 0, fmt.Errorf("TPM2_NV_Read(%#08x): %d bytes, want 8", uint32(nv.handle), len(rsp.Data.Buffer))
	}
	return binary.BigEndian.Uint64(rsp.Data.Buffer), nil
}

// counterLocked is Counter with t.mu held.
func (t *TPM) counterLocked() (uint64, error) {
	if t.closed {
		return 0, ErrClosed
	}
	c, err := t.nvRead8(t.counter)
	if err != nil {
		return 0, err
	}
	if c < t.baseValue {
		return 0, fmt.Errorf("counter %d is below its base %d: NV indices %#08x/%#08x are inconsistent",
			c, t.baseValue, uint32(t.counter.handle), uint32(t.base.handle))
	}
	return c - t.baseValue, nil
}

// Counter implements RootOfTrust: the NV counter minus its base.
func (t *TPM) Counter() (uint64, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	v, err := t.counterLocked()
	if err != nil {
		return 0, fmt.Errorf("rot.Counter: %w", err)
	}
	return v, nil
}

// AdvanceCounter implements RootOfTrust: one TPM2_NV_Increment per step,
// at most 1<<20 steps per call.
func (t *TPM) AdvanceCounter(v uint64) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	cur, err := t.counterLocked()
	if err != nil {
		return fmt.Errorf("rot.AdvanceCounter: %w", err)
	}
	if err := checkAdvance(cur, v); err != nil {
		return err
	}
	for ; cur < v; cur++ {
		if err := t.nvIncrement(t.counter); err != nil {
			return fmt.Errorf("rot.AdvanceCounter(%d) at %d: %w", v, cur, err)
		}
	}
	got, err := t.counterLocked()
	if err != nil {
		return fmt.Errorf("rot.AdvanceCounter: %w", err)
	}
	if got != v {
		return fmt.Errorf("rot.AdvanceCounter(%d): counter is %d after incrementing (another writer?)", v, got)
	}
	return nil
}

// checkAdvance is the rule both implementations apply to AdvanceCounter.
func checkAdvance(cur, v uint64) error {
	if v < cur {
		return fmt.Errorf("rot.AdvanceCounter(%d): counter is already %d: %w", v, cur, ErrCounterRollback)
	}
	if v-cur > maxCounterStep {
		return fmt.Errorf("rot.AdvanceCounter(%d): a jump of %d from %d exceeds the limit of %d per call; "+
			"security versions are meant to grow by small steps", v, v-cur, cur, maxCounterStep)
	}
	return nil
}

// readEKCert returns the DER EK certificate from the TPM manufacturer's NV
// index (ECC first, then RSA), or nil. Failures are logged, not returned:
// most TPMs in development have no EK certificate, and the device works
// without one.
func (t *TPM) readEKCert() []byte {
	for _, idx := range []uint32{ECCEKCertIndex, RSAEKCertIndex} {
		pub, nv, ok, err := t.nvPublic(idx)
		if err != nil {
			t.log.Warn("rot: EK certificate", "index", fmt.Sprintf("%#08x", idx), "err", err)
			continue
		}
		if !ok {
			continue
		}
		data, err := t.nvReadAll(pub, nv)
		if err != nil {
			t.log.Warn("rot: EK certificate", "index", fmt.Sprintf("%#08x", idx), "err", err)
			continue
		}
		cert, err := trimDER(data)
		if err != nil {
			t.log.Warn("rot: EK certificate", "index", fmt.Sprintf("%#08x", idx), "err", err)
			continue
		}
		return cert
	}
	return nil
}

// nvReadAll reads a whole NV index in chunks small enough for any TPM
// (TPM_PT_NV_BUFFER_MAX is at least 512 on PC Client TPMs), with the
// index's own (empty) authorization if it allows, else the owner's.
func (t *TPM) nvReadAll(pub *tpm2.TPMSNVPublic, nv tpmNV) ([]byte, error) {
	const chunk = 512
	auth := t.owner()
	if pub.Attributes.AuthRead {
		auth = tpm2.AuthHandle{Handle: nv.handle, Name: nv.name, Auth: tpm2.PasswordAuth(nil)}
	}
	out := make([]byte, 0, pub.DataSize)
	for off := 0; off < int(pub.DataSize); off += chunk {
		n := min(chunk, int(pub.DataSize)-off)
		rsp, err := tpm2.NVRead{AuthHandle: auth, NVIndex: nv.named(), Size: uint16(n), Offset: uint16(off)}.Execute(t.tpm)
		if err != nil {
			return nil, fmt.Errorf("TPM2_NV_Read at %d: %w", off, err)
		}
		if len(rsp.Data.Buffer) != n {
			return nil, fmt.Errorf("TPM2_NV_Read at %d: %d bytes, want %d", off, len(rsp.Data.Buffer), n)
		}
		out = append(out, rsp.Data.Buffer...)
	}
	return out, nil
}

// trimDER returns the DER SEQUENCE at the start of b without the padding
// that NV indices often have after it.
func trimDER(b []byte) ([]byte, error) {
	var v asn1.RawValue
	rest, err := asn1.Unmarshal(b, &v)
	if err != nil {
		return nil, fmt.Errorf("not DER: %w", err)
	}
	if v.Class != asn1.ClassUniversal || v.Tag != asn1.TagSequence || !v.IsCompound {
		return nil, errors.New("not a DER certificate (no SEQUENCE)")
	}
	return append([]byte(nil), b[:len(b)-len(rest)]...), nil
}
