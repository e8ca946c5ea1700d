package store

import (
	"context"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"math/big"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/opensphere/sphere"
)

// rsaPublicKeyDER returns SubjectPublicKeyInfo DER for an RSA public key of
// the given size. The modulus is random, not a product of two primes: the
// store judges a key by its type and size, and generating real RSA keys
// would only slow the test down.
func rsaPublicKeyDER(t testing.TB, bits int) []byte {
	t.Helper()
	n := new(big.Int).SetBytes(randomBytes(bits / 8))
	n.SetBit(n, bits-1, 1)
	n.SetBit(n, 0, 1)
	return spkiDER(t, &rsa.PublicKey{N: n, E: 65537})
}

func TestParseRegistration(t *testing.T) {
	idKey := newECKey(t, elliptic.P256())
	idDER := spkiDER(t, idKey.Public())
	idPEM := pemBlock("PUBLIC KEY", idDER)
	akDER := spkiDER(t, newECKey(t, elliptic.P256()).Public())
	akPEM := pemBlock("PUBLIC KEY", akDER)
	p384DER := spkiDER(t, newECKey(t, elliptic.P384()).Public())
	p224DER := spkiDER(t, newECKey(t, elliptic.P224()).Public())
	edPub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ekDER := selfSignedCertDER(t)
	ekPEM := pemBlock("CERTIFICATE", ekDER)

	// The device id, computed independently of the store.
	sum := sha256.Sum256(idDER)
	wantID := hex.EncodeToString(sum[:])
	if len(wantID) != 64 || strings.ToLower(wantID) != wantID {
		t.Fatalf("test setup: id %q is not 64 lowercase hex characters", wantID)
	}

	tests := []struct {
		name     string
		reg      Registration
		wantID   string // "" means the id of the P-256 identity key above
		wantEK   bool
		wantCode string
	}{
		{"ok/PEM", Registration{IdentityPublicKey: idPEM, AttestationPublicKey: akPEM}, "", false, ""},
		{"ok/DER", Registration{IdentityPublicKey: idDER, AttestationPublicKey: akDER}, "", false, ""},
		{"ok/PEM with surrounding whitespace", Registration{IdentityPublicKey: append(append([]byte("\n  "), idPEM...), "\r\n\n"...), AttestationPublicKey: akPEM}, "", false, ""},
		{"ok/EK certificate PEM", Registration{IdentityPublicKey: idPEM, AttestationPublicKey: akPEM, EKCertificate: ekPEM}, "", true, ""},
		{"ok/EK certificate DER", Registration{IdentityPublicKey: idDER, AttestationPublicKey: akDER, EKCertificate: ekDER}, "", true, ""},
		{"ok/P-384 identity key", Registration{IdentityPublicKey: p384DER, AttestationPublicKey: akDER}, sphere.DeviceID(p384DER), false, ""},
		{"ok/RSA 2048 attestation key", Registration{IdentityPublicKey: idDER, AttestationPublicKey: rsaPublicKeyDER(t, 2048)}, "", false, ""},
		{"error/RSA 1024 identity key", Registration{IdentityPublicKey: rsaPublicKeyDER(t, 1024), AttestationPublicKey: akDER}, "", false, sphere.EInvalid},
		{"error/RSA 1024 attestation key", Registration{IdentityPublicKey: idDER, AttestationPublicKey: pemBlock("PUBLIC KEY", rsaPublicKeyDER(t, 1024))}, "", false, sphere.EInvalid},
		{"error/P-224 identity key", Registration{IdentityPublicKey: pemBlock("PUBLIC KEY", p224DER), AttestationPublicKey: akPEM}, "", false, sphere.EInvalid},
		{"error/P-224 attestation key", Registration{IdentityPublicKey: idPEM, AttestationPublicKey: p224DER}, "", false, sphere.EInvalid},
		{"error/Ed25519 identity key", Registration{IdentityPublicKey: spkiDER(t, edPub), AttestationPublicKey: akDER}, "", false, sphere.EInvalid},
		{"error/no identity key", Registration{AttestationPublicKey: akPEM}, "", false, sphere.EInvalid},
		{"error/no attestation key", Registration{IdentityPublicKey: idPEM}, "", false, sphere.EInvalid},
		{"error/garbage identity key", Registration{IdentityPublicKey: []byte("not a key at all"), AttestationPublicKey: akPEM}, "", false, sphere.EInvalid},
		{"error/garbage DER", Registration{IdentityPublicKey: []byte{0x30, 0x03, 0x02, 0x01, 0x01}, AttestationPublicKey: akDER}, "", false, sphere.EInvalid},
		{"error/truncated DER", Registration{IdentityPublicKey: idDER[:len(idDER)-1], AttestationPublicKey: akDER}, "", false, sphere.EInvalid},
		{"error/broken PEM", Registration{IdentityPublicKey: idPEM[:len(idPEM)-10], AttestationPublicKey: akPEM}, "", false, sphere.EInvalid},
		{"error/wrong PEM type", Registration{IdentityPublicKey: pemBlock("EC PUBLIC KEY", idDER), AttestationPublicKey: akPEM}, "", false, sphere.EInvalid},
		{"error/certificate given as key", Registration{IdentityPublicKey: ekPEM, AttestationPublicKey: akPEM}, "", false, sphere.EInvalid},
		{"error/trailing junk after PEM", Registration{IdentityPublicKey: append(slices.Clone(idPEM), "junk"...), AttestationPublicKey: akPEM}, "", false, sphere.EInvalid},
		{"error/second PEM block", Registration{IdentityPublicKey: append(slices.Clone(idPEM), akPEM...), AttestationPublicKey: akPEM}, "", false, sphere.EInvalid},
		{"error/trailing junk after DER", Registration{IdentityPublicKey: append(slices.Clone(idDER), 0), AttestationPublicKey: akDER}, "", false, sphere.EInvalid},
		{"error/garbage EK certificate", Registration{IdentityPublicKey: idPEM, AttestationPublicKey: akPEM, EKCertificate: []byte("certificate")}, "", false, sphere.EInvalid},
		{"error/truncated EK certificate", Registration{IdentityPublicKey: idPEM, AttestationPublicKey: akPEM, EKCertificate: ekDER[:len(ekDER)/2]}, "", false, sphere.EInvalid},
		{"error/EK certificate with wrong PEM type", Registration{IdentityPublicKey: idPEM, AttestationPublicKey: akPEM, EKCertificate: pemBlock("PUBLIC KEY", ekDER)}, "", false, sphere.EInvalid},
		{"error/key given as EK certificate", Registration{IdentityPublicKey: idPEM, AttestationPublicKey: akPEM, EKCertificate: akPEM}, "", false, sphere.EInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, err := ParseRegistration(tt.reg)
			checkCode(t, err, tt.wantCode)
			if err != nil {
				return
			}
			want := tt.wantID
			if want == "" {
				want = wantID
			}
			if d.ID != want {
				t.Errorf("got id %s, want %s", d.ID, want)
			}
			if err := sphere.ValidateDeviceID(d.ID); err != nil {
				t.Errorf("id: %v", err)
			}
			// Keys come back as canonical PEM whatever form they came in.
			if _, der, err := sphere.ParsePublicKey("identity", []byte(d.IdentityPublicKey)); err != nil || sphere.DeviceID(der) != d.ID ||
				!strings.HasPrefix(d.IdentityPublicKey, "-----BEGIN PUBLIC KEY-----\n") {
				t.Errorf("identity key %q does not parse back to the id: %v", d.IdentityPublicKey, err)
			}
			if !strings.HasPrefix(d.AttestationPublicKey, "-----BEGIN PUBLIC KEY-----\n") {
				t.Errorf("attestation key %q is not PEM", d.AttestationPublicKey)
			}
			if tt.wantEK != (d.EKCertificate != "") || tt.wantEK && d.EKCertificate != string(ekPEM) {
				t.Errorf("got EK certificate %q, want present=%v (%q)", d.EKCertificate, tt.wantEK, ekPEM)
			}
			if d.TenantID != "" || d.DeviceGroupID != "" || d.ClaimedAt != nil {
				t.Errorf("a parsed registration is claimed: %+v", d)
			}
		})
	}
	if d, err := ParseRegistration(Registration{IdentityPublicKey: idPEM, AttestationPublicKey: akPEM}); err != nil ||
		d.IdentityPublicKey != string(idPEM) || d.AttestationPublicKey != string(akPEM) {
		t.Fatalf("PEM keys: got %+v, %v; want them unchanged", d, err)
	}
}

// FuzzParseRegistration checks that no identity key input panics the parser
// and that whatever it accepts is self-consistent.
func FuzzParseRegistration(f *testing.F) {
	id := spkiDER(f, newECKey(f, elliptic.P256()).Public())
	ak := spkiDER(f, newECKey(f, elliptic.P256()).Public())
	f.Add(id)
	f.Add(pemBlock("PUBLIC KEY", id))
	f.Add([]byte("-----BEGIN PUBLIC KEY-----\n-----END PUBLIC KEY-----\n"))
	f.Add(rsaPublicKeyDER(f, 1024))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, key []byte) {
		d, err := ParseRegistration(Registration{IdentityPublicKey: key, AttestationPublicKey: ak})
		if err != nil {
			if code := codeOf(err); code != sphere.EInvalid {
				t.Fatalf("got code %q (%v), want %q", code, err, sphere.EInvalid)
			}
			return
		}
		if err := sphere.ValidateDeviceID(d.ID); err != nil {
			t.Fatalf("accepted key gives a bad id: %v", err)
		}
		again, err := ParseRegistration(Registration{IdentityPublicKey: []byte(d.IdentityPublicKey), AttestationPublicKey: ak})
		if err != nil || again.ID != d.ID || again.IdentityPublicKey != d.IdentityPublicKey {
			t.Fatalf("the canonical PEM does not parse back to the same device: %+v, %v", again, err)
		}
	})
}

func TestRegisterDevice(t *testing.T) {
	clock := newTestClock()
	eachStoreWith(t, Config{Now: clock.Now}, func(t *testing.T, s *Store) {
		ctx := context.Background()
		reg := newRegistration(t)
		first, err := s.RegisterDevice(ctx, reg)
		if err != nil {
			t.Fatal(err)
		}
		parsed, err := ParseRegistration(reg)
		if err != nil {
			t.Fatal(err)
		}
		parsed.RegisteredAt = clock.Now()
		if !devicesEqual(first, parsed) {
			t.Fatalf("got %+v, want %+v", first, parsed)
		}
		clock.Advance(time.Hour)

		idDER, _ := pemDecode(t, reg.IdentityPublicKey)
		akDER, _ := pemDecode(t, reg.AttestationPublicKey)
		other := newRegistration(t)
		tests := []struct {
			name     string
			reg      Registration
			wantCode string
			wantNew  bool
		}{
			{"ok/same keys again", reg, "", false},
			{"ok/same keys as DER", Registration{IdentityPublicKey: idDER, AttestationPublicKey: akDER}, "", false},
			{"ok/another device", other, "", true},
			{"error/different attestation key", Registration{IdentityPublicKey: reg.IdentityPublicKey, AttestationPublicKey: other.AttestationPublicKey}, sphere.EConflict, false},
			{"error/invalid", Registration{IdentityPublicKey: []byte("junk"), AttestationPublicKey: reg.AttestationPublicKey}, sphere.EInvalid, false},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				before := dumpTables(t, s)
				n := countRows(t, s, "devices", "")
				got, err := s.RegisterDevice(ctx, tt.reg)
				checkCode(t, err, tt.wantCode)
				if err != nil {
					if after := dumpTables(t, s); after != before {
						t.Fatalf("a refused RegisterDevice changed rows:\nbefore:\n%s\nafter:\n%s", before, after)
					}
					return
				}
				if tt.wantNew {
					if got.ID == first.ID || !got.RegisteredAt.Equal(clock.Now()) || countRows(t, s, "devices", "") != n+1 {
						t.Fatalf("got %+v, want a new device registered now", got)
					}
					return
				}
				if !devicesEqual(got, first) || countRows(t, s, "devices", "") != n {
					t.Fatalf("got %+v, want the first registration %+v and no new row", got, first)
				}
			})
		}
		if got, err := s.GetDevice(ctx, first.ID); err != nil || !devicesEqual(got, first) {
			t.Fatalf("GetDevice: got %+v, %v; want %+v", got, err, first)
		}
	})
}

func pemDecode(t *testing.T, b []byte) ([]byte, string) {
	t.Helper()
	_, der, err := sphere.ParsePublicKey("key", b)
	if err != nil {
		t.Fatal(err)
	}
	return der, sphere.PublicKeyPEM(der)
}

// devicesEqual compares devices, including what their time pointers point to.
func devicesEqual(a, b sphere.Device) bool {
	ca, cb := a.ClaimedAt, b.ClaimedAt
	a.ClaimedAt, b.ClaimedAt = nil, nil
	if (ca == nil) != (cb == nil) || ca != nil && !ca.Equal(*cb) {
		return false
	}
	return a == b
}

func TestGetDevice(t *testing.T) {
	eachStore(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		a := s.Tenant(mustTenant(t, s, "Contoso").ID)
		d := mustClaimedDevice(t, s, a, "")
		free := mustDevice(t, s)
		tests := []struct {
			name     string
			get      func(context.Context, string) (sphere.Device, error)
			id       string
			wantCode string
		}{
			{"ok/operator", s.GetDevice, free.ID, ""},
			{"ok/operator sees a claimed device", s.GetDevice, d.ID, ""},
			{"ok/tenant", a.GetDevice, d.ID, ""},
			{"error/tenant does not see an unclaimed device", a.GetDevice, free.ID, sphere.ENotFound},
			{"error/unregistered", s.GetDevice, strings.Repeat("ab", 32), sphere.ENotFound},
			{"error/upper case id", s.GetDevice, strings.ToUpper(free.ID), sphere.EInvalid},
			{"error/short id", s.GetDevice, free.ID[:63], sphere.EInvalid},
			{"error/not hex", a.GetDevice, strings.Repeat("g", 64), sphere.EInvalid},
			{"error/empty", a.GetDevice, "", sphere.EInvalid},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				got, err := tt.get(ctx, tt.id)
				checkCode(t, err, tt.wantCode)
				if err == nil && got.ID != tt.id {
					t.Fatalf("got device %s, want %s", got.ID, tt.id)
				}
			})
		}
	})
}

// TestGetAttestee: attestation's one read of a device carries its
// group's name and root-of-trust policy and the operator's check-now, on
// both databases; a device in no group has neither.
func TestGetAttestee(t *testing.T) {
	eachStore(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		a := s.Tenant(mustTenant(t, s, "Contoso").ID)
		g, err := a.CreateDeviceGroup(ctx, DeviceGroupSpec{Product: mustProduct(t, a, "Coffee Maker").ID, Name: "Kiosk", RequireHardwareRoT: true})
		if err != nil {
			t.Fatal(err)
		}
		in := mustClaimedDevice(t, s, a, g.ID)
		loose := mustDevice(t, s)
		if err := a.SetCheckNow(ctx, in.ID); err != nil {
			t.Fatal(err)
		}
		got, err := s.GetAttestee(ctx, in.ID)
		if err != nil {
			t.Fatal(err)
		}
		if got.Device.ID != in.ID || got.Device.DeviceGroupID != g.ID || got.Device.IdentityPublicKey == "" ||
			got.GroupName != "Kiosk" || !got.RequireHardwareRoT || !got.CheckNow {
			t.Errorf("in a group: %+v", got)
		}
		got, err = s.GetAttestee(ctx, loose.ID)
		if err != nil {
			t.Fatal(err)
		}
		if got.Device.ID != loose.ID || got.GroupName != "" || got.RequireHardwareRoT || got.CheckNow {
			t.Errorf("in no group: %+v", got)
		}
		_, err = s.GetAttestee(ctx, strings.Repeat("ab", 32))
		checkCode(t, err, sphere.ENotFound)
		_, err = s.GetAttestee(ctx, "device-1")
		checkCode(t, err, sphere.EInvalid)
	})
}

func TestClaimDevice(t *testing.T) {
	clock := newTestClock()
	eachStoreWith(t, Config{Now: clock.Now}, func(t *testing.T, s *Store) {
		ctx := context.Background()
		contoso := mustTenant(t, s, "Contoso")
		fabrikam := mustTenant(t, s, "Fabrikam")
		a, b := s.Tenant(contoso.ID), s.Tenant(fabrikam.ID)
		aGroup := groupNamed(t, a, mustProduct(t, a, "Coffee Maker").ID, "Production")
		bGroup := groupNamed(t, b, mustProduct(t, b, "Coffee Maker").ID, "Production")
		d := mustDevice(t, s)
		loose := mustDevice(t, s)
		clock.Advance(time.Hour)

		tests := []struct {
			name     string
			ts       *TenantStore
			id       string
			group    string
			wantCode string
			wantFor  string // tenant that then holds the device
		}{
			{"error/unregistered", a, strings.Repeat("0", 64), "", sphere.ENotFound, ""},
			{"error/malformed id", a, "device-1", "", sphere.EInvalid, ""},
			{"error/another tenant's group", a, d.ID, bGroup.ID, sphere.ENotFound, ""},
			{"error/unknown group", a, d.ID, newID(), sphere.ENotFound, ""},
			{"ok/into group", a, d.ID, aGroup.ID, "", contoso.ID},
			{"error/claimed by self", a, d.ID, "", sphere.EConflict, contoso.ID},
			{"error/claimed by another tenant", b, d.ID, "", sphere.EConflict, contoso.ID},
			{"error/claimed by another tenant, own group given", b, d.ID, bGroup.ID, sphere.EConflict, contoso.ID},
			{"ok/unassigned", b, loose.ID, "", "", fabrikam.ID},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				before := dumpTables(t, s)
				got, err := tt.ts.ClaimDevice(ctx, tt.id, tt.group)
				checkCode(t, err, tt.wantCode)
				if err != nil {
					if after := dumpTables(t, s); after != before {
						t.Fatalf("a refused ClaimDevice changed rows:\nbefore:\n%s\nafter:\n%s", before, after)
					}
					other := contoso
					if tt.ts == a {
						other = fabrikam
					}
					for _, leak := range []string{other.ID, other.Name} {
						if strings.Contains(err.Error(), leak) {
							t.Fatalf("error %q names the other tenant (%q)", err, leak)
						}
					}
				} else {
					want := sphere.Device{ID: tt.id, TenantID: tt.ts.ID(), DeviceGroupID: tt.group, ClaimedAt: ptr(clock.Now())}
					if tt.group != "" {
						want.ProductID = aGroup.ProductID
					}
					if got.ID != want.ID || got.TenantID != want.TenantID || got.DeviceGroupID != want.DeviceGroupID ||
						got.ProductID != want.ProductID || got.ClaimedAt == nil || !got.ClaimedAt.Equal(*want.ClaimedAt) {
						t.Fatalf("got %+v, want %+v", got, want)
					}
				}
				if tt.wantFor != "" {
					if held, err := s.GetDevice(ctx, tt.id); err != nil || held.TenantID != tt.wantFor {
						t.Fatalf("device is held by %q (%v), want %q", held.TenantID, err, tt.wantFor)
					}
				}
			})
		}
	})
}

func TestMoveDevice(t *testing.T) {
	eachStore(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		a := s.Tenant(mustTenant(t, s, "Contoso").ID)
		b := s.Tenant(mustTenant(t, s, "Fabrikam").ID)
		coffee := mustProduct(t, a, "Coffee Maker")
		toaster := mustProduct(t, a, "Toaster")
		dev := groupNamed(t, a, coffee.ID, "Development")
		prod := groupNamed(t, a, toaster.ID, "Production")
		bGroup := groupNamed(t, b, mustProduct(t, b, "Kettle").ID, "Production")
		d := mustClaimedDevice(t, s, a, "")
		bDevice := mustClaimedDevice(t, s, b, bGroup.ID)
		free := mustDevice(t, s)
		tests := []struct {
			name        string
			id          string
			group       string
			wantCode    string
			wantProduct string
		}{
			{"ok/unassigned into group", d.ID, dev.ID, "", coffee.ID},
			{"ok/into a group of another product", d.ID, prod.ID, "", toaster.ID},
			{"ok/into the group it is in", d.ID, prod.ID, "", toaster.ID},
			{"error/another tenant's group", d.ID, bGroup.ID, sphere.ENotFound, ""},
			{"error/unknown group", d.ID, newID(), sphere.ENotFound, ""},
			{"error/no group", d.ID, "", sphere.EInvalid, ""},
			{"error/another tenant's device", bDevice.ID, dev.ID, sphere.ENotFound, ""},
			{"error/unclaimed device", free.ID, dev.ID, sphere.ENotFound, ""},
			{"error/malformed id", "x", dev.ID, sphere.EInvalid, ""},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				before := dumpTables(t, s)
				got, err := a.MoveDevice(ctx, tt.id, tt.group)
				checkCode(t, err, tt.wantCode)
				if err != nil {
					if after := dumpTables(t, s); after != before {
						t.Fatalf("a refused MoveDevice changed rows:\nbefore:\n%s\nafter:\n%s", before, after)
					}
					return
				}
				if got.DeviceGroupID != tt.group || got.ProductID != tt.wantProduct || got.TenantID != a.ID() {
					t.Fatalf("got %+v, want group %s of product %s", got, tt.group, tt.wantProduct)
				}
				if read, err := a.GetDevice(ctx, tt.id); err != nil || !devicesEqual(read, got) {
					t.Fatalf("GetDevice: got %+v, %v; want %+v", read, err, got)
				}
			})
		}
	})
}

func TestReleaseDevice(t *testing.T) {
	eachStore(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		a := s.Tenant(mustTenant(t, s, "Contoso").ID)
		b := s.Tenant(mustTenant(t, s, "Fabrikam").ID)
		aGroup := groupNamed(t, a, mustProduct(t, a, "Coffee Maker").ID, "Production")
		bGroup := groupNamed(t, b, mustProduct(t, b, "Kettle").ID, "Field Test")
		d := mustClaimedDevice(t, s, a, aGroup.ID)

		for _, ts := range []*TenantStore{b, s.Tenant(newID())} {
			before := dumpTables(t, s)
			_, err := ts.ReleaseDevice(ctx, d.ID)
			checkCode(t, err, sphere.ENotFound)
			if after := dumpTables(t, s); after != before {
				t.Fatalf("a refused ReleaseDevice changed rows:\nbefore:\n%s\nafter:\n%s", before, after)
			}
		}
		got, err := a.ReleaseDevice(ctx, d.ID)
		if err != nil {
			t.Fatal(err)
		}
		if got.TenantID != "" || got.DeviceGroupID != "" || got.ProductID != "" || got.ClaimedAt != nil {
			t.Fatalf("released device: got %+v, want it unclaimed", got)
		}
		if _, err := a.GetDevice(ctx, d.ID); codeOf(err) != sphere.ENotFound {
			t.Fatalf("GetDevice by the former owner: got %v, want %s", err, sphere.ENotFound)
		}
		_, err = a.ReleaseDevice(ctx, d.ID)
		checkCode(t, err, sphere.ENotFound)

		claimed, err := b.ClaimDevice(ctx, d.ID, bGroup.ID)
		if err != nil {
			t.Fatalf("claim by another tenant after release: %v", err)
		}
		if claimed.TenantID != b.ID() || claimed.DeviceGroupID != bGroup.ID {
			t.Fatalf("got %+v, want it in %s of %s", claimed, bGroup.ID, b.ID())
		}
		// The former owner's group is empty again and can be deleted.
		if err := a.DeleteDeviceGroup(ctx, aGroup.ID); err != nil {
			t.Fatalf("DeleteDeviceGroup(former group): %v", err)
		}
	})
}

func TestListDevices(t *testing.T) {
	eachStore(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		a := s.Tenant(mustTenant(t, s, "Contoso").ID)
		b := s.Tenant(mustTenant(t, s, "Fabrikam").ID)
		coffee := mustProduct(t, a, "Coffee Maker")
		toaster := mustProduct(t, a, "Toaster")
		cProd := groupNamed(t, a, coffee.ID, "Production")
		cDev := groupNamed(t, a, coffee.ID, "Development")
		tProd := groupNamed(t, a, toaster.ID, "Production")
		bGroup := groupNamed(t, b, mustProduct(t, b, "Coffee Maker").ID, "Production")

		inCProd := []sphere.Device{mustClaimedDevice(t, s, a, cProd.ID), mustClaimedDevice(t, s, a, cProd.ID)}
		inCDev := []sphere.Device{mustClaimedDevice(t, s, a, cDev.ID)}
		inTProd := []sphere.Device{mustClaimedDevice(t, s, a, tProd.ID)}
		loose := []sphere.Device{mustClaimedDevice(t, s, a, ""), mustClaimedDevice(t, s, a, "")}
		mustClaimedDevice(t, s, b, bGroup.ID)
		mustClaimedDevice(t, s, b, "")
		mustDevice(t, s)

		join := func(sets ...[]sphere.Device) []string {
			var out []string
			for _, set := range sets {
				out = append(out, ids(set, deviceID)...)
			}
			sort.Strings(out)
			return out
		}
		tests := []struct {
			name     string
			filter   DeviceFilter
			want     []string
			wantCode string
		}{
			{"ok/all of the tenant's devices by id", DeviceFilter{}, join(inCProd, inCDev, inTProd, loose), ""},
			{"ok/product by id", DeviceFilter{Product: coffee.ID}, join(inCProd, inCDev), ""},
			{"ok/product by name", DeviceFilter{Product: "toaster"}, join(inTProd), ""},
			{"ok/device group", DeviceFilter{DeviceGroup: cProd.ID}, join(inCProd), ""},
			{"ok/product and group", DeviceFilter{Product: coffee.ID, DeviceGroup: cDev.ID}, join(inCDev), ""},
			{"ok/product and another product's group", DeviceFilter{Product: toaster.ID, DeviceGroup: cDev.ID}, join(), ""},
			{"ok/unassigned", DeviceFilter{Unassigned: true}, join(loose), ""},
			{"ok/empty group", DeviceFilter{DeviceGroup: groupNamed(t, a, toaster.ID, "Field Test").ID}, join(), ""},
			{"error/unknown product", DeviceFilter{Product: "Kettle"}, nil, sphere.ENotFound},
			{"error/unknown group", DeviceFilter{DeviceGroup: newID()}, nil, sphere.ENotFound},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				got, err := a.ListDevices(ctx, tt.filter, PageRequest{})
				checkCode(t, err, tt.wantCode)
				if err != nil {
					return
				}
				if gotIDs := ids(got.Items, deviceID); !slices.Equal(gotIDs, tt.want) && !(len(gotIDs) == 0 && len(tt.want) == 0) {
					t.Fatalf("got %v, want %v", gotIDs, tt.want)
				}
				for _, d := range got.Items {
					if d.TenantID != a.ID() {
						t.Fatalf("device %s of tenant %q listed for %q", d.ID, d.TenantID, a.ID())
					}
				}
			})
		}

		all, err := s.ListAllDevices(ctx, false, PageRequest{})
		if err != nil || len(all.Items) != 9 || !sort.SliceIsSorted(all.Items, func(i, j int) bool { return all.Items[i].ID < all.Items[j].ID }) {
			t.Fatalf("ListAllDevices: got %d devices (%v), want 9 in id order", len(all.Items), err)
		}
		unclaimed, err := s.ListAllDevices(ctx, true, PageRequest{})
		if err != nil || len(unclaimed.Items) != 1 || unclaimed.Items[0].TenantID != "" {
			t.Fatalf("ListAllDevices(unclaimed): got %+v, %v; want the one unclaimed device", unclaimed.Items, err)
		}
	})
}

// TestDeviceBatches: bulk registration and claim are all or nothing, name
// the bad item by its index, keep to MaxBatch, and audit each device.
func TestDeviceBatches(t *testing.T) {
	eachStore(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		a, b := s.Tenant(mustTenant(t, s, "A").ID), s.Tenant(mustTenant(t, s, "B").ID)
		g := groupNamed(t, a, mustProduct(t, a, "Lamp").ID, "Field Test")
		r1, r2 := newRegistration(t), newRegistration(t)
		bad := Registration{IdentityPublicKey: []byte("not a key"), AttestationPublicKey: r1.AttestationPublicKey}
		if _, err := s.RegisterDevices(ctx, []Registration{r1, bad}, nil); codeOf(err) != sphere.EInvalid || !strings.Contains(err.Error(), "devices[1]") {
			t.Fatalf("a bad record: %v", err)
		}
		if _, err := s.RegisterDevices(ctx, []Registration{r1, r1}, nil); codeOf(err) != sphere.EInvalid {
			t.Fatalf("the same record twice: %v", err)
		}
		if _, err := s.RegisterDevices(ctx, make([]Registration, MaxBatch+1), nil); codeOf(err) != sphere.EInvalid {
			t.Fatalf("more than MaxBatch: %v", err)
		}
		if page, _ := s.ListAllDevices(ctx, false, PageRequest{}); len(page.Items) != 0 {
			t.Fatalf("refused batches registered %d devices", len(page.Items))
		}
		audit := &sphere.AuditEntry{Actor: "ops", ActorID: "u1", Action: "device.register", Result: "ok", RequestID: "req-1"}
		ids, err := s.RegisterDevices(ctx, []Registration{r1, r2}, audit)
		if err != nil || len(ids) != 2 {
			t.Fatalf("RegisterDevices = %v, %v", ids, err)
		}
		for _, id := range ids {
			page, _ := s.ListAllAudit(ctx, AuditFilter{Action: "device.register", Target: id}, PageRequest{})
			if len(page.Items) != 1 || page.Items[0].RequestID != "req-1" {
				t.Errorf("audit of %s: %+v", id, page.Items)
			}
		}
		taken := mustClaimedDevice(t, s, b, "")
		if err := a.ClaimDevices(ctx, []string{ids[0], taken.ID}, g.ID, nil); codeOf(err) != sphere.EConflict || !strings.Contains(err.Error(), "device_ids[1]") {
			t.Fatalf("claiming another tenant's device: %v", err)
		}
		if d, _ := s.GetDevice(ctx, ids[0]); d.TenantID != "" {
			t.Fatalf("a refused batch claimed %s", ids[0])
		}
		if err := a.ClaimDevices(ctx, []string{ids[0], ids[0]}, g.ID, nil); codeOf(err) != sphere.EInvalid {
			t.Fatalf("the same device twice: %v", err)
		}
		if err := a.ClaimDevices(ctx, ids, g.ID, &sphere.AuditEntry{Actor: "alice", Action: "device.claim", Result: "ok"}); err != nil {
			t.Fatal(err)
		}
		for _, id := range ids {
			if d, _ := a.GetDevice(ctx, id); d.DeviceGroupID != g.ID {
				t.Errorf("device %s in group %q; want %s", id, d.DeviceGroupID, g.ID)
			}
			if page, _ := a.ListAudit(ctx, AuditFilter{Action: "device.claim", Target: id}, PageRequest{}); len(page.Items) != 1 {
				t.Errorf("tenant audit of claiming %s: %+v", id, page.Items)
			}
		}
	})
}

// TestRecordAnswerReplayRace: the same answer recorded many times at once
// (a replay racing the original) is fresh exactly once, with one
// certificate; answers to different challenges are each fresh. The writes
// run at READ COMMITTED on PostgreSQL (txBlind), where only the used
// nonce's primary key refuses the replays.
func TestRecordAnswerReplayRace(t *testing.T) {
	eachStore(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		a := s.Tenant(mustTenant(t, s, "A").ID)
		g := groupNamed(t, a, mustProduct(t, a, "Lamp").ID, "Field Test")
		d := mustClaimedDevice(t, s, a, g.ID)
		now := time.Now().UTC()
		caRec := CARecord{ID: "ca-1", TenantID: a.id, CertDER: []byte("der"), KeySealed: []byte("sealed"),
			Thumbprint: "thumb", NotBefore: now, NotAfter: now.Add(time.Hour), ActivatesAt: now}
		if _, err := s.AddTenantCA(ctx, caRec, func([]CARecord) bool { return true }); err != nil {
			t.Fatal(err)
		}
		record := func(nonce string) (bool, error) {
			now := time.Now().UTC()
			return s.RecordAnswer(ctx, &Nonce{Hash: nonce, Expires: now.Add(time.Hour)}, d.ID,
				sphere.Attestation{At: now, Result: sphere.AttestHealthy},
				&IssuedCert{Serial: hex.EncodeToString(randomBytes(16)), TenantID: a.id, CAID: caRec.ID, NotBefore: now, NotAfter: now.Add(24 * time.Hour)})
		}
		const racers = 16
		fresh := make(chan bool, 2*racers)
		var wg sync.WaitGroup
		for i := range racers {
			wg.Go(func() {
				ok, err := record("replayed")
				if err != nil {
					t.Errorf("RecordAnswer: %v", err)
				}
				fresh <- ok
			})
			wg.Go(func() {
				ok, err := record(fmt.Sprintf("own %d", i))
				if err != nil || !ok {
					t.Errorf("RecordAnswer of its own challenge: fresh %v, %v", ok, err)
				}
			})
		}
		wg.Wait()
		close(fresh)
		n := 0
		for ok := range fresh {
			if ok {
				n++
			}
		}
		if n != 1 {
			t.Errorf("the same answer was fresh %d times of %d, want once", n, racers)
		}
		var certs int
		if err := s.queryRow(ctx, "SELECT COUNT(*) FROM device_certs WHERE device_id = ?", d.ID).Scan(&certs); err != nil {
			t.Fatal(err)
		}
		if certs != racers+1 {
			t.Errorf("%d certificates recorded, want %d (one per challenge)", certs, racers+1)
		}
		got, err := a.GetDevice(ctx, d.ID)
		if err != nil || got.LastAttestation == nil || got.LastAttestation.Result != sphere.AttestHealthy {
			t.Errorf("device after the answers: %+v, %v", got.LastAttestation, err)
		}
	})
}
