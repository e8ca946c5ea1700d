package store

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/opensphere/sphere"
)

// codeOf returns "" for nil, the Code of a *sphere.Error, and a description
// of anything else, so that a non-application error never matches a code.
func codeOf(err error) string {
	if err == nil {
		return ""
	}
	var e *sphere.Error
	if !errors.As(err, &e) {
		return fmt.Sprintf("not a *sphere.Error (%T: %v)", err, err)
	}
	return sphere.ErrorCode(err)
}

// checkCode fails the test unless err carries the application error code
// want; want "" means err must be nil.
func checkCode(t *testing.T, err error, want string) {
	t.Helper()
	if got := codeOf(err); got != want {
		if want == "" {
			t.Fatalf("got error %v, want none", err)
		}
		t.Fatalf("got error %v (code %q), want code %q", err, got, want)
	}
}

// countRows counts a table's rows; where is an optional condition.
func countRows(t *testing.T, s *Store, table, where string, args ...any) int {
	t.Helper()
	q := "SELECT COUNT(*) FROM " + table
	if where != "" {
		q += " WHERE " + where
	}
	var n int
	if err := s.queryRow(context.Background(), q, args...).Scan(&n); err != nil {
		t.Fatalf("count %s: %v", table, err)
	}
	return n
}

// dumpTables returns every row of every table as text, in a fixed order, so
// that a test can show that an operation changed nothing at all. It finds
// the tables in the schema, so tables that later migrations add are covered.
func dumpTables(t *testing.T, s *Store) string {
	t.Helper()
	ctx := context.Background()
	q := "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite%' ORDER BY name"
	if s.Dialect() == "postgres" {
		q = "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema() ORDER BY table_name"
	}
	tables, err := collect(ctx, s, q, nil, func(row interface{ Scan(...any) error }) (string, error) {
		var name string
		err := row.Scan(&name)
		return name, err
	})
	if err != nil || len(tables) == 0 {
		t.Fatalf("list tables: got %v, %v", tables, err)
	}
	var b strings.Builder
	for _, table := range tables {
		rows, err := s.query(ctx, "SELECT * FROM "+table)
		if err != nil {
			t.Fatalf("dump %s: %v", table, err)
		}
		cols, err := rows.Columns()
		if err != nil {
			t.Fatalf("dump %s: %v", table, err)
		}
		var lines []string
		for rows.Next() {
			vals := make([]any, len(cols))
			ptrs := make([]any, len(cols))
			for i := range vals {
				ptrs[i] = &vals[i]
			}
			if err := rows.Scan(ptrs...); err != nil {
				t.Fatalf("dump %s: %v", table, err)
			}
			for i, v := range vals {
				if bs, ok := v.([]byte); ok {
					vals[i] = fmt.Sprintf("%x", bs)
				}
			}
			lines = append(lines, fmt.Sprintf("%#v", vals))
		}
		if err := rows.Err(); err != nil {
			t.Fatalf("dump %s: %v", table, err)
		}
		rows.Close()
		sort.Strings(lines)
		fmt.Fprintf(&b, "== %s %v\n%s\n", table, cols, strings.Join(lines, "\n"))
	}
	return b.String()
}

func mustTenant(t *testing.T, s *Store, name string) sphere.Tenant {
	t.Helper()
	tn, err := s.CreateTenant(context.Background(), name, "")
	if err != nil {
		t.Fatalf("CreateTenant(%q): %v", name, err)
	}
	return tn
}

// mustUser makes an operator user through RecoverOperator and returns it
// with its token secret.
func mustUser(t *testing.T, s *Store, name string) (sphere.User, string) {
	t.Helper()
	ctx := context.Background()
	secret, err := s.RecoverOperator(ctx, name)
	if err != nil {
		t.Fatalf("RecoverOperator(%q): %v", name, err)
	}
	u, err := s.Authenticate(ctx, secret)
	if err != nil {
		t.Fatalf("Authenticate(%q's token): %v", name, err)
	}
	return u, secret
}

func mustProduct(t *testing.T, ts *TenantStore, name string) sphere.Product {
	t.Helper()
	p, err := ts.CreateProduct(context.Background(), name, "the "+name)
	if err != nil {
		t.Fatalf("CreateProduct(%q): %v", name, err)
	}
	return p
}

// groupNamed returns one of a product's device groups by name.
func groupNamed(t *testing.T, ts *TenantStore, productID, name string) sphere.DeviceGroup {
	t.Helper()
	page, err := ts.ListDeviceGroups(context.Background(), DeviceGroupFilter{Product: productID, Name: name}, PageRequest{})
	if err != nil || len(page.Items) != 1 {
		t.Fatalf("device group %q of product %s: got %v, %v; want one group", name, productID, page.Items, err)
	}
	return page.Items[0]
}

// newECKey makes an ECDSA key on curve c.
func newECKey(t testing.TB, c elliptic.Curve) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(c, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// spkiDER returns a public key's SubjectPublicKeyInfo DER.
func spkiDER(t testing.TB, pub any) []byte {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func pemBlock(typ string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}

// newRegistration makes a device's P-256 identity and attestation keys,
// as PEM, like a manufacturer would register them.
func newRegistration(t testing.TB) Registration {
	t.Helper()
	return Registration{
		IdentityPublicKey:    pemBlock("PUBLIC KEY", spkiDER(t, newECKey(t, elliptic.P256()).Public())),
		AttestationPublicKey: pemBlock("PUBLIC KEY", spkiDER(t, newECKey(t, elliptic.P256()).Public())),
	}
}

func mustDevice(t *testing.T, s *Store) sphere.Device {
	t.Helper()
	d, err := s.RegisterDevice(context.Background(), newRegistration(t))
	if err != nil {
		t.Fatalf("RegisterDevice: %v", err)
	}
	return d
}

// mustClaimedDevice registers a device and claims it into ts, in group if
// group is not "".
func mustClaimedDevice(t *testing.T, s *Store, ts *TenantStore, group string) sphere.Device {
	t.Helper()
	d, err := ts.ClaimDevice(context.Background(), mustDevice(t, s).ID, group)
	if err != nil {
		t.Fatalf("ClaimDevice: %v", err)
	}
	return d
}

// selfSignedCertDER makes a small certificate to stand in for a TPM
// endorsement key certificate.
func selfSignedCertDER(t testing.TB) []byte {
	t.Helper()
	k := newECKey(t, elliptic.P256())
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "test EK"},
		NotBefore:    time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC),
		NotAfter:     time.Date(2045, 1, 1, 0, 0, 0, 0, time.UTC),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, k.Public(), k)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func ptr[T any](v T) *T { return &v }

// ids returns the ids of items, for got/want comparisons.
func ids[T any](items []T, id func(T) string) []string {
	out := make([]string, 0, len(items))
	for _, it := range items {
		out = append(out, id(it))
	}
	return out
}

func tenantID(t sphere.Tenant) string           { return t.ID }
func productID(p sphere.Product) string         { return p.ID }
func groupID(g sphere.DeviceGroup) string       { return g.ID }
func deviceID(d sphere.Device) string           { return d.ID }
func roleUserID(r sphere.RoleAssignment) string { return r.UserID }
