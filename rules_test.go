package sphere

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"strings"
	"testing"
)

func TestValidateName(t *testing.T) {
	for _, c := range []struct {
		name string
		ok   bool
	}{
		{"Coffee Maker", true},
		{"Ünïcode Lamp 2", true},
		{strings.Repeat("a", 50), true},
		{"", false},
		{strings.Repeat("a", 51), false},
		{" leading", false},
		{"trailing ", false},
		{"slash/name", false},
		{"tab\tname", false},
		{"dash-name", false},
		{string([]byte{0xff, 'a'}), false},
	} {
		err := ValidateName("product name", c.name)
		if (err == nil) != c.ok {
			t.Errorf("ValidateName(%q) = %v; want ok=%v", c.name, err, c.ok)
		}
		if err != nil && ErrorCode(err) != EInvalid {
			t.Errorf("ValidateName(%q) code %s; want %s", c.name, ErrorCode(err), EInvalid)
		}
	}
}

func TestRoles(t *testing.T) {
	if !RoleAdministrator.Allows(RoleContributor) || !RoleContributor.Allows(RoleReader) || RoleReader.Allows(RoleContributor) {
		t.Error("role order is wrong")
	}
	if Role("Owner").Allows(RoleReader) {
		t.Error("an unknown role allows something")
	}
	if r, err := ParseRole("contributor"); err != nil || r != RoleContributor {
		t.Errorf("ParseRole = %s, %v", r, err)
	}
	if _, err := ParseRole("root"); ErrorCode(err) != EInvalid {
		t.Errorf("ParseRole(root) = %v", err)
	}
}

func TestParsePublicKeyAndDeviceID(t *testing.T) {
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, _ := x509.MarshalPKIXPublicKey(&k.PublicKey)
	for name, in := range map[string][]byte{"DER": der, "PEM": []byte(PublicKeyPEM(der)), "PEM with spaces": []byte("\n  " + PublicKeyPEM(der) + "\n")} {
		_, canon, err := ParsePublicKey("identity key", in)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		sum := sha256.Sum256(der)
		if got := DeviceID(canon); got != hex.EncodeToString(sum[:]) || ValidateDeviceID(got) != nil {
			t.Errorf("%s: device id %s", name, got)
		}
	}
	small, _ := rsa.GenerateKey(rand.Reader, 1024)
	smallDER, _ := x509.MarshalPKIXPublicKey(&small.PublicKey)
	p224, _ := ecdsa.GenerateKey(elliptic.P224(), rand.Reader)
	p224DER, _ := x509.MarshalPKIXPublicKey(&p224.PublicKey)
	for name, in := range map[string][]byte{
		"empty":          nil,
		"garbage":        []byte("not a key"),
		"RSA 1024":       smallDER,
		"P-224":          p224DER,
		"wrong PEM type": []byte(strings.Replace(PublicKeyPEM(der), "PUBLIC KEY", "CERTIFICATE", 2)),
		"trailing data":  []byte(PublicKeyPEM(der) + "junk"),
	} {
		if _, _, err := ParsePublicKey("identity key", in); ErrorCode(err) != EInvalid || !strings.Contains(err.Error(), "identity key") {
			t.Errorf("%s: %v; want invalid_argument naming the key", name, err)
		}
	}
	for _, id := range []string{"", strings.Repeat("A", 64), strings.Repeat("0", 63), strings.Repeat("g", 64)} {
		if ValidateDeviceID(id) == nil {
			t.Errorf("ValidateDeviceID(%q) accepted it", id)
		}
	}
}

func FuzzParsePublicKey(f *testing.F) {
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, _ := x509.MarshalPKIXPublicKey(&k.PublicKey)
	f.Add(der)
	f.Add([]byte(PublicKeyPEM(der)))
	f.Add([]byte("-----BEGIN PUBLIC KEY-----\n-----END PUBLIC KEY-----\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		_, canon, err := ParsePublicKey("key", data)
		if err != nil {
			if ErrorCode(err) != EInvalid {
				t.Fatalf("error code %s", ErrorCode(err))
			}
			return
		}
		if _, again, err := ParsePublicKey("key", canon); err != nil || string(again) != string(canon) {
			t.Fatalf("canonical form does not round-trip: %v", err)
		}
	})
}
