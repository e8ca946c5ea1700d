package rot

// TPM 2.0 structures shared by both implementations and the verifier: the
// key templates, TPM names, and conversions between TPM and Go encodings of
// ECDSA keys and signatures.

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/sha256"
	"encoding/asn1"
	"encoding/binary"
	"errors"
	"fmt"
	"math/big"

	"github.com/google/go-tpm/tpm2"
)

// MaxNonceSize is the largest nonce (Quote) or extraData (CertifyIdentity)
// accepted. A TPM's TPM2B_DATA holds at most sizeof(TPMT_HA), which is 34
// bytes on a TPM that implements only SHA-256; 32 bytes is the portable
// limit. A service that wants longer challenges hashes them to 32 bytes.
const MaxNonceSize = 32

// pcrSelection is the PCR selection of every quote: MeasurementPCR of the
// SHA-256 bank, in the PC Client's minimum 3-byte select format.
func pcrSelection() tpm2.TPMLPCRSelection {
	return tpm2.TPMLPCRSelection{
		PCRSelections: []tpm2.TPMSPCRSelection{{
			Hash:      tpm2.TPMAlgSHA256,
			PCRSelect: tpm2.PCClientCompatible.PCRs(MeasurementPCR),
		}},
	}
}

// eccSigningTemplate is the template of the attestation key (restricted) and
// the identity key (unrestricted): ECC P-256, ECDSA with SHA-256, made in
// the TPM and bound to it and to its parent. NoDA is set: both keys have an
// empty authorization value, so dictionary-attack protection would guard
// nothing and would let anyone lock the device out of its own keys by
// sending bad authorizations.
func eccSigningTemplate(restricted bool) tpm2.TPMTPublic {
	return tpm2.TPMTPublic{
		Type:    tpm2.TPMAlgECC,
		NameAlg: tpm2.TPMAlgSHA256,
		ObjectAttributes: tpm2.TPMAObject{
			FixedTPM:            true,
			FixedParent:         true,
			SensitiveDataOrigin: true,
			UserWithAuth:        true,
			NoDA:                true,
			Restricted:          restricted,
			SignEncrypt:         true,
		},
		Parameters: tpm2.NewTPMUPublicParms(tpm2.TPMAlgECC, &tpm2.TPMSECCParms{
			Scheme: tpm2.TPMTECCScheme{
				Scheme: tpm2.TPMAlgECDSA,
				Details: tpm2.NewTPMUAsymScheme(tpm2.TPMAlgECDSA,
					&tpm2.TPMSSigSchemeECDSA{HashAlg: tpm2.TPMAlgSHA256}),
			},
			CurveID: tpm2.TPMECCNistP256,
		}),
		Unique: tpm2.NewTPMUPublicID(tpm2.TPMAlgECC, &tpm2.TPMSECCPoint{}),
	}
}

// publicAreaFor is the TPMT_PUBLIC that a TPM would report for a signing
// key made from eccSigningTemplate(restricted) with public key pub. The soft
// root of trust uses it so that its evidence has the TPM's shape.
func publicAreaFor(pub *ecdsa.PublicKey, restricted bool) (tpm2.TPMTPublic, error) {
	raw, err := pub.Bytes()
	if err != nil || len(raw) != 65 || raw[0] != 4 || pub.Curve != elliptic.P256() {
		return tpm2.TPMTPublic{}, errors.New("rot: key is not an ECDSA P-256 public key")
	}
	t := eccSigningTemplate(restricted)
	t.Unique = tpm2.NewTPMUPublicID(tpm2.TPMAlgECC, &tpm2.TPMSECCPoint{
		X: tpm2.TPM2BECCParameter{Buffer: raw[1:33]},
		Y: tpm2.TPM2BECCParameter{Buffer: raw[33:65]},
	})
	return t, nil
}

// checkTemplate reports whether a TPM object's public area has exactly the
// type, name algorithm, attributes and scheme of eccSigningTemplate: a key
// blob planted in the state directory (say, one imported from outside the
// TPM, which cannot have fixedTPM) is refused at open.
func checkTemplate(pub *tpm2.TPMTPublic, restricted bool) error {
	want := eccSigningTemplate(restricted)
	if pub.Type != want.Type || pub.NameAlg != want.NameAlg {
		return errors.New("not an ECC key with a SHA-256 name")
	}
	if pub.ObjectAttributes != want.ObjectAttributes {
		return fmt.Errorf("object attributes %#08x, want %#08x",
			attrBits(pub.ObjectAttributes), attrBits(want.ObjectAttributes))
	}
	if len(pub.AuthPolicy.Buffer) != 0 {
		return errors.New("key has an authorization policy")
	}
	if _, err := eccSigningKey(pub); err != nil {
		return err
	}
	return nil
}

// attrBits is the TPMA_OBJECT bit field, for error messages.
func attrBits(a tpm2.TPMAObject) uint32 {
	b := tpm2.Marshal(a)
	if len(b) != 4 {
		return 0
	}
	return binary.BigEndian.Uint32(b)
}

// eccSigningKey returns the public key of pub, which must be an ECC P-256
// signing key with the ECDSA-SHA256 scheme. It validates the point (the
// result is safe to verify signatures with).
func eccSigningKey(pub *tpm2.TPMTPublic) (*ecdsa.PublicKey, error) {
	if pub.Type != tpm2.TPMAlgECC {
		return nil, errors.New("not an ECC key")
	}
	parms, err := pub.Parameters.ECCDetail()
	if err != nil {
		return nil, errors.New("no ECC parameters")
	}
	if parms.CurveID != tpm2.TPMECCNistP256 {
		return nil, fmt.Errorf("curve %#04x, want NIST P-256", uint16(parms.CurveID))
	}
	if parms.Scheme.Scheme != tpm2.TPMAlgECDSA {
		return nil, fmt.Errorf("signing scheme %#04x, want ECDSA", uint16(parms.Scheme.Scheme))
	}
	scheme, err := parms.Scheme.Details.ECDSA()
	if err != nil || scheme.HashAlg != tpm2.TPMAlgSHA256 {
		return nil, errors.New("signing scheme is not ECDSA with SHA-256")
	}
	point, err := pub.Unique.ECC()
	if err != nil {
		return nil, errors.New("no ECC point")
	}
	x, y := point.X.Buffer, point.Y.Buffer
	if len(x) > 32 || len(y) > 32 {
		return nil, errors.New("ECC point coordinate longer than 32 bytes")
	}
	raw := make([]byte, 65)
	raw[0] = 4
	copy(raw[1+32-len(x):33], x)
	copy(raw[33+32-len(y):], y)
	key, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), raw)
	if err != nil {
		return nil, errors.New("ECC point is not on the P-256 curve")
	}
	return key, nil
}

// nameOf is the TPM name of a marshalled TPMT_PUBLIC whose name algorithm
// is SHA-256: TPM_ALG_SHA256 || SHA-256(publicArea).
func nameOf(publicArea []byte) []byte {
	h := sha256.Sum256(publicArea)
	return append([]byte{0x00, 0x0b}, h[:]...)
}

// ecdsaSig is the ASN.1 form of an ECDSA signature (RFC 3279).
type ecdsaSig struct {
	R, S *big.Int
}

// derSignature converts a TPMT_SIGNATURE holding an ECDSA signature to
// ASN.1 DER, the form crypto/ecdsa, crypto/x509 and crypto/tls use.
func derSignature(sig *tpm2.TPMTSignature) ([]byte, error) {
	if sig.SigAlg != tpm2.TPMAlgECDSA {
		return nil, fmt.Errorf("rot: TPM signature algorithm %#04x, want ECDSA", uint16(sig.SigAlg))
	}
	e, err := sig.Signature.ECDSA()
	if err != nil {
		return nil, fmt.Errorf("rot: TPM signature: %w", err)
	}
	if e.Hash != tpm2.TPMAlgSHA256 {
		return nil, fmt.Errorf("rot: TPM signature hash %#04x, want SHA-256", uint16(e.Hash))
	}
	return asn1.Marshal(ecdsaSig{
		R: new(big.Int).SetBytes(e.SignatureR.Buffer),
		S: new(big.Int).SetBytes(e.SignatureS.Buffer),
	})
}
