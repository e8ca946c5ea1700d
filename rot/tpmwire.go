package rot

// A direct codec for the TPM 2.0 structures on every attestation's path:
// TPMS_ATTEST of a quote or a certification, and the TPMT_PUBLIC of an ECC
// P-256 signing key. go-tpm's codec walks each structure by reflection
// (struct tags are parsed on every field of every call); on the service
// that was about 15 % of the CPU of an attestation, and on a soft root of
// trust about 13 % of the device's. The direct path reads and writes exactly
// the shapes that TPMs and the soft root of trust produce. Anything else
// (another attestation type, reserved attribute bits, a symmetric or KDF
// scheme, trailing bytes, a short buffer) is handed to go-tpm, so that on
// unusual input the verifier behaves exactly as it did with go-tpm alone.
// FuzzDirectAttest and FuzzDirectPublicArea check that the two agree
// wherever the direct path answers; TestAppendAttest that the soft root of
// trust's bytes are go-tpm's.

import (
	"encoding/binary"

	"github.com/google/go-tpm/tpm2"
)

// wire reads big-endian TPM fields from b. A read past the end sets short
// and returns zeros; callers check short (or done) once at the end.
type wire struct {
	b     []byte
	short bool
}

func (w *wire) take(n int) []byte {
	if w.short || n > len(w.b) {
		w.short = true
		return nil
	}
	v := w.b[:n:n]
	w.b = w.b[n:]
	return v
}

func (w *wire) u8() byte {
	if v := w.take(1); v != nil {
		return v[0]
	}
	return 0
}

func (w *wire) u16() uint16 {
	if v := w.take(2); v != nil {
		return binary.BigEndian.Uint16(v)
	}
	return 0
}

func (w *wire) u32() uint32 {
	if v := w.take(4); v != nil {
		return binary.BigEndian.Uint32(v)
	}
	return 0
}

func (w *wire) u64() uint64 {
	if v := w.take(8); v != nil {
		return binary.BigEndian.Uint64(v)
	}
	return 0
}

// sized reads a TPM2B: a 16-bit size, then that many bytes.
func (w *wire) sized() []byte { return w.take(int(w.u16())) }

// done reports whether every byte was read, and no read ran short.
func (w *wire) done() bool { return !w.short && len(w.b) == 0 }

// maxDirectBanks bounds the PCR banks of a quote the direct path reads; a
// TPM has a handful. More go to go-tpm (and fail the selection check).
const maxDirectBanks = 8

// decodeAttest reads a TPMS_ATTEST of type TPM_ST_ATTEST_QUOTE or
// TPM_ST_ATTEST_CERTIFY that a TPM generated. ok is false for anything
// else, which the caller hands to go-tpm. The result's buffers alias a copy
// of b, not b.
func decodeAttest(b []byte) (a *tpm2.TPMSAttest, ok bool) {
	w := wire{b: append([]byte(nil), b...)}
	a = &tpm2.TPMSAttest{
		Magic: tpm2.TPMGenerated(w.u32()),
		Type:  tpm2.TPMST(w.u16()),
	}
	if a.Magic != tpm2.TPMGeneratedValue {
		return nil, false
	}
	a.QualifiedSigner.Buffer = w.sized()
	a.ExtraData.Buffer = w.sized()
	a.ClockInfo.Clock = w.u64()
	a.ClockInfo.ResetCount = w.u32()
	a.ClockInfo.RestartCount = w.u32()
	switch w.u8() {
	case 0:
	case 1:
		a.ClockInfo.Safe = true
	default:
		return nil, false
	}
	a.FirmwareVersion = w.u64()
	switch a.Type {
	case tpm2.TPMSTAttestQuote:
		n := w.u32()
		if n > maxDirectBanks {
			return nil, false
		}
		q := &tpm2.TPMSQuoteInfo{}
		q.PCRSelect.PCRSelections = make([]tpm2.TPMSPCRSelection, n)
		for i := range q.PCRSelect.PCRSelections {
			s := &q.PCRSelect.PCRSelections[i]
			s.Hash = tpm2.TPMAlgID(w.u16())
			s.PCRSelect = w.take(int(w.u8()))
		}
		q.PCRDigest.Buffer = w.sized()
		a.Attested = tpm2.NewTPMUAttest(tpm2.TPMSTAttestQuote, q)
	case tpm2.TPMSTAttestCertify:
		c := &tpm2.TPMSCertifyInfo{}
		c.Name.Buffer = w.sized()
		c.QualifiedName.Buffer = w.sized()
		a.Attested = tpm2.NewTPMUAttest(tpm2.TPMSTAttestCertify, c)
	default:
		return nil, false
	}
	if !w.done() {
		return nil, false
	}
	return a, true
}

// objectAttributeBits are the TPMA_OBJECT bits that go-tpm names. A public
// area with any other (reserved) bit set is left to go-tpm.
var objectAttributeBits = [...]struct {
	bit uint
	set func(*tpm2.TPMAObject)
}{
	{1, func(a *tpm2.TPMAObject) { a.FixedTPM = true }},
	{2, func(a *tpm2.TPMAObject) { a.STClear = true }},
	{4, func(a *tpm2.TPMAObject) { a.FixedParent = true }},
	{5, func(a *tpm2.TPMAObject) { a.SensitiveDataOrigin = true }},
	{6, func(a *tpm2.TPMAObject) { a.UserWithAuth = true }},
	{7, func(a *tpm2.TPMAObject) { a.AdminWithPolicy = true }},
	{8, func(a *tpm2.TPMAObject) { a.FirmwareLimited = true }},
	{10, func(a *tpm2.TPMAObject) { a.NoDA = true }},
	{11, func(a *tpm2.TPMAObject) { a.EncryptedDuplication = true }},
	{16, func(a *tpm2.TPMAObject) { a.Restricted = true }},
	{17, func(a *tpm2.TPMAObject) { a.Decrypt = true }},
	{18, func(a *tpm2.TPMAObject) { a.SignEncrypt = true }},
	{19, func(a *tpm2.TPMAObject) { a.X509Sign = true }},
}

// decodeECCPublic reads a TPMT_PUBLIC of an ECC key with a SHA-256 name,
// no symmetric algorithm, the ECDSA scheme and no KDF: the shape of every
// signing key a TPM makes from OpenSphere's template. ok is false for
// anything else, which the caller hands to go-tpm. Every field it reads has
// one encoding, so b is the structure's canonical encoding when ok is true.
func decodeECCPublic(b []byte) (p *tpm2.TPMTPublic, ok bool) {
	w := wire{b: append([]byte(nil), b...)}
	p = &tpm2.TPMTPublic{
		Type:    tpm2.TPMAlgID(w.u16()),
		NameAlg: tpm2.TPMAlgID(w.u16()),
	}
	if p.Type != tpm2.TPMAlgECC || p.NameAlg != tpm2.TPMAlgSHA256 {
		return nil, false
	}
	bits := w.u32()
	for _, f := range objectAttributeBits {
		if bits&(1<<f.bit) != 0 {
			f.set(&p.ObjectAttributes)
			bits &^= 1 << f.bit
		}
	}
	if bits != 0 {
		return nil, false
	}
	p.AuthPolicy.Buffer = w.sized()
	parms := &tpm2.TPMSECCParms{}
	parms.Symmetric.Algorithm = tpm2.TPMAlgID(w.u16())
	parms.Scheme.Scheme = tpm2.TPMAlgID(w.u16())
	if parms.Symmetric.Algorithm != tpm2.TPMAlgNull || parms.Scheme.Scheme != tpm2.TPMAlgECDSA {
		return nil, false
	}
	parms.Scheme.Details = tpm2.NewTPMUAsymScheme(tpm2.TPMAlgECDSA,
		&tpm2.TPMSSigSchemeECDSA{HashAlg: tpm2.TPMAlgID(w.u16())})
	parms.CurveID = tpm2.TPMECCCurve(w.u16())
	parms.KDF.Scheme = tpm2.TPMAlgID(w.u16())
	if parms.KDF.Scheme != tpm2.TPMAlgNull {
		return nil, false
	}
	p.Parameters = tpm2.NewTPMUPublicParms(tpm2.TPMAlgECC, parms)
	point := &tpm2.TPMSECCPoint{}
	point.X.Buffer = w.sized()
	point.Y.Buffer = w.sized()
	p.Unique = tpm2.NewTPMUPublicID(tpm2.TPMAlgECC, point)
	if !w.done() {
		return nil, false
	}
	return p, true
}

// appendAttestHeader appends the fields of a TPMS_ATTEST that precede the
// attested union, as a TPM with firmware version 0 writes them.
func appendAttestHeader(b []byte, typ tpm2.TPMST, signer, extraData []byte, clock uint64, safe bool) []byte {
	b = binary.BigEndian.AppendUint32(b, uint32(tpm2.TPMGeneratedValue))
	b = binary.BigEndian.AppendUint16(b, uint16(typ))
	b = appendSized(b, signer)
	b = appendSized(b, extraData)
	b = binary.BigEndian.AppendUint64(b, clock)
	b = binary.BigEndian.AppendUint32(b, 0) // resetCount
	b = binary.BigEndian.AppendUint32(b, 0) // restartCount
	if safe {
		b = append(b, 1)
	} else {
		b = append(b, 0)
	}
	return binary.BigEndian.AppendUint64(b, 0) // firmwareVersion
}

// appendQuoteInfo appends a TPMS_QUOTE_INFO of one PCR bank.
func appendQuoteInfo(b []byte, hash tpm2.TPMAlgID, sel, digest []byte) []byte {
	b = binary.BigEndian.AppendUint32(b, 1)
	b = binary.BigEndian.AppendUint16(b, uint16(hash))
	b = append(b, byte(len(sel)))
	b = append(b, sel...)
	return appendSized(b, digest)
}

// appendCertifyInfo appends a TPMS_CERTIFY_INFO.
func appendCertifyInfo(b []byte, name, qualifiedName []byte) []byte {
	return appendSized(appendSized(b, name), qualifiedName)
}

// appendSized appends a TPM2B of v, which the callers keep under 64 KiB.
func appendSized(b, v []byte) []byte {
	b = binary.BigEndian.AppendUint16(b, uint16(len(v)))
	return append(b, v...)
}
