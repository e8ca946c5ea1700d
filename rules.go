package sphere

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Role is a per-tenant role. Administrator may do everything in the tenant,
// Contributor everything but deletes and role management, Reader only reads.
type Role string

const (
	RoleReader        Role = "Reader"
	RoleContributor   Role = "Contributor"
	RoleAdministrator Role = "Administrator"
)

// Rank orders roles so that a higher role includes the lower ones. An
// unknown role ranks 0 and so allows nothing.
func (r Role) Rank() int {
	switch r {
	case RoleReader:
		return 1
	case RoleContributor:
		return 2
	case RoleAdministrator:
		return 3
	}
	return 0
}

// Allows reports whether r includes the permissions of need.
func (r Role) Allows(need Role) bool { return r.Rank() > 0 && r.Rank() >= need.Rank() }

// ParseRole accepts a role name in any letter case.
func ParseRole(s string) (Role, error) {
	for _, r := range []Role{RoleAdministrator, RoleContributor, RoleReader} {
		if strings.EqualFold(s, string(r)) {
			return r, nil
		}
	}
	return "", Errorf(EInvalid, "role %q is not one of Administrator, Contributor, Reader", s)
}

// OSFeed selects which OS releases a device group receives.
type OSFeed string

const (
	FeedRetail     OSFeed = "Retail"
	FeedRetailEval OSFeed = "RetailEval" // receives OS releases before Retail
)

// ParseOSFeed accepts a feed name in any letter case.
func ParseOSFeed(s string) (OSFeed, error) {
	for _, f := range []OSFeed{FeedRetail, FeedRetailEval} {
		if strings.EqualFold(s, string(f)) {
			return f, nil
		}
	}
	return "", Errorf(EInvalid, "OS feed %q is not one of Retail, RetailEval", s)
}

// UpdatePolicy says which updates a device group accepts.
type UpdatePolicy string

const (
	PolicyUpdateAll            UpdatePolicy = "UpdateAll"
	PolicyNo3rdPartyAppUpdates UpdatePolicy = "No3rdPartyAppUpdates"
	PolicyNoUpdates            UpdatePolicy = "NoUpdates"
)

// ParseUpdatePolicy accepts a policy name in any letter case.
func ParseUpdatePolicy(s string) (UpdatePolicy, error) {
	for _, p := range []UpdatePolicy{PolicyUpdateAll, PolicyNo3rdPartyAppUpdates, PolicyNoUpdates} {
		if strings.EqualFold(s, string(p)) {
			return p, nil
		}
	}
	return "", Errorf(EInvalid, "update policy %q is not one of UpdateAll, No3rdPartyAppUpdates, NoUpdates", s)
}

// DefaultDeviceGroup describes one of the groups every new product gets.
type DefaultDeviceGroup struct {
	Name               string
	Description        string
	OSFeed             OSFeed
	UpdatePolicy       UpdatePolicy
	RequireHardwareRoT bool
}

// DefaultDeviceGroups are created with every product, as in Azure Sphere.
var DefaultDeviceGroups = []DefaultDeviceGroup{
	{"Development", "Devices used to develop applications; cloud app updates are off so locally side-loaded apps stay.", FeedRetail, PolicyNo3rdPartyAppUpdates, false},
	{"Field Test", "Devices in lab or field testing; receive all updates.", FeedRetail, PolicyUpdateAll, false},
	{"Field Test OS Evaluation", "Field test devices that receive OS releases early (RetailEval).", FeedRetailEval, PolicyUpdateAll, false},
	{"Production", "Devices in the hands of customers.", FeedRetail, PolicyUpdateAll, true},
	{"Production OS Evaluation", "Production devices that receive OS releases early to validate apps against them.", FeedRetailEval, PolicyUpdateAll, true},
}

// MaxNameLen is the longest product, device group or tenant name.
const MaxNameLen = 50

// MaxDescriptionLen is the longest description.
const MaxDescriptionLen = 256

// ValidateName checks a tenant, product or device group name: 1 to 50
// characters, letters, digits and single inner spaces. what names the thing
// in the error message ("product name").
func ValidateName(what, s string) error {
	if s == "" {
		return Errorf(EInvalid, "%s is required", what)
	}
	if !utf8.ValidString(s) {
		return Errorf(EInvalid, "%s is not valid UTF-8", what)
	}
	if n := utf8.RuneCountInString(s); n > MaxNameLen {
		return Errorf(EInvalid, "%s is %d characters long; at most %d are allowed", what, n, MaxNameLen)
	}
	if strings.TrimSpace(s) != s {
		return Errorf(EInvalid, "%s %q must not start or end with a space", what, s)
	}
	for _, r := range s {
		if r != ' ' && !unicode.IsLetter(r) && !unicode.IsDigit(r) {
			return Errorf(EInvalid, "%s %q may only contain letters, digits and spaces (found %q)", what, s, r)
		}
	}
	return nil
}

// ValidateDescription checks a free-text description.
func ValidateDescription(s string) error { return ValidateText("description", s, MaxDescriptionLen) }

// ValidateText checks free text: valid UTF-8, at most max characters, no
// control characters. what names it in the error message.
func ValidateText(what, s string, max int) error {
	if !utf8.ValidString(s) {
		return Errorf(EInvalid, "%s is not valid UTF-8", what)
	}
	if n := utf8.RuneCountInString(s); n > max {
		return Errorf(EInvalid, "%s is %d characters long; at most %d are allowed", what, n, max)
	}
	for _, r := range s {
		if unicode.IsControl(r) {
			return Errorf(EInvalid, "%s must not contain control characters", what)
		}
	}
	return nil
}

// ValidateUserName checks a user name: 1 to 254 characters of letters,
// digits and . _ @ + - (an e-mail address fits).
func ValidateUserName(s string) error {
	if s == "" {
		return Errorf(EInvalid, "user name is required")
	}
	if len(s) > 254 {
		return Errorf(EInvalid, "user name is %d bytes long; at most 254 are allowed", len(s))
	}
	for _, r := range s {
		if r > unicode.MaxASCII || !(unicode.IsLetter(r) || unicode.IsDigit(r) || strings.ContainsRune("._@+-", r)) {
			return Errorf(EInvalid, "user name %q may only contain ASCII letters, digits and . _ @ + -", s)
		}
	}
	return nil
}

// ValidateDeviceID checks that s has the shape of a device id: 64 lowercase
// hex characters.
func ValidateDeviceID(s string) error {
	if len(s) != 64 {
		return Errorf(EInvalid, "device id must be 64 lowercase hex characters (SHA-256 of the identity key), got %d characters", len(s))
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return Errorf(EInvalid, "device id must be 64 lowercase hex characters; %q is not", s)
		}
	}
	return nil
}

// ParsePublicKey reads a public key given as a PEM "PUBLIC KEY" block or as
// SubjectPublicKeyInfo DER. It accepts ECDSA P-256 and P-384 and RSA keys of
// 2048 to 4096 bits, and returns the key with its canonical DER encoding.
// what names the key in error messages ("identity public key").
func ParsePublicKey(what string, data []byte) (any, []byte, error) {
	der := data
	if trimmed := strings.TrimSpace(string(data)); strings.HasPrefix(trimmed, "-----BEGIN") {
		block, rest := pem.Decode([]byte(trimmed))
		if block == nil {
			return nil, nil, Errorf(EInvalid, "%s: PEM block could not be decoded", what)
		}
		if block.Type != "PUBLIC KEY" {
			return nil, nil, Errorf(EInvalid, "%s: PEM block is %q; want \"PUBLIC KEY\"", what, block.Type)
		}
		if len(strings.TrimSpace(string(rest))) != 0 {
			return nil, nil, Errorf(EInvalid, "%s: unexpected data after the PEM block", what)
		}
		der = block.Bytes
	}
	if len(der) == 0 {
		return nil, nil, Errorf(EInvalid, "%s is required", what)
	}
	pub, err := x509.ParsePKIXPublicKey(der)
	if err != nil {
		return nil, nil, Errorf(EInvalid, "%s is neither a PEM PUBLIC KEY nor SubjectPublicKeyInfo DER: %v", what, err)
	}
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		if k.Curve != elliptic.P256() && k.Curve != elliptic.P384() {
			return nil, nil, Errorf(EInvalid, "%s: ECDSA curve %s is not supported; use P-256 or P-384", what, k.Curve.Params().Name)
		}
	case *rsa.PublicKey:
		if n := k.N.BitLen(); n < 2048 || n > 4096 {
			return nil, nil, Errorf(EInvalid, "%s: RSA key of %d bits is not supported; use 2048 to 4096 bits", what, n)
		}
	default:
		return nil, nil, Errorf(EInvalid, "%s: key type %T is not supported; use ECDSA P-256", what, pub)
	}
	canon, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, nil, Errorf(EInvalid, "%s: %v", what, err)
	}
	return pub, canon, nil
}

// DeviceID derives the device id from the identity key's
// SubjectPublicKeyInfo DER: lowercase hex SHA-256, 64 characters.
func DeviceID(spkiDER []byte) string {
	sum := sha256.Sum256(spkiDER)
	return hex.EncodeToString(sum[:])
}

// PublicKeyPEM encodes SubjectPublicKeyInfo DER as a PEM block.
func PublicKeyPEM(spkiDER []byte) string {
	return string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: spkiDER}))
}
