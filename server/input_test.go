package server

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/opensphere/sphere"
	"github.com/opensphere/sphere/api"
	"github.com/opensphere/sphere/store"
)

// inputCase is a request that the server must refuse without changing
// anything.
type inputCase struct {
	name   string
	as     func(e *env) user // nil: tenant A's Contributor
	method string
	path   func(t *testing.T, e *env) string
	// contentType defaults to application/json when there is a body; "-"
	// sends none.
	contentType string
	body        any
	status      int
	code        string
	msg         string // a part of the message that says what was wrong
}

func operator(e *env) user { return e.operator }
func adminA(e *env) user   { return e.adminA }
func readerA(e *env) user  { return e.readerA }

func pathInA(suffix string) func(*testing.T, *env) string {
	return func(_ *testing.T, e *env) string { return e.A.path(suffix) }
}

func fixedPath(p string) func(*testing.T, *env) string {
	return func(*testing.T, *env) string { return p }
}

// unclaimedClaimPath registers a fresh device and returns its claim path in
// tenant A. The snapshot compared is taken after it, so the device counts.
func unclaimedClaimPath(t *testing.T, e *env) string {
	return e.A.path("/devices/" + e.registerDevice(t).ID + "/claim")
}

// TestBadInput sends malformed and invalid requests and checks that each
// gets a clear 4xx in the one error shape, writes nothing (the store reads
// the same before and after), and is audited when it was a mutating call.
func TestBadInput(t *testing.T) {
	t.Parallel()
	validID := strings.Repeat("ab", 32)
	products := pathInA("/products")
	cases := []inputCase{
		// Bodies that are not one JSON object of the right shape.
		{name: "json/malformed", path: products, body: `{"name": "Kettle 2"`, status: 400, code: sphere.EInvalid, msg: "JSON"},
		{name: "json/not json", path: products, body: `name=Kettle`, status: 400, code: sphere.EInvalid, msg: "not valid JSON"},
		{name: "json/unknown field", path: products, body: `{"name":"Kettle 2","colour":"red"}`, status: 400, code: sphere.EInvalid, msg: `"colour"`},
		{name: "json/wrong type", path: products, body: `{"name":42}`, status: 400, code: sphere.EInvalid, msg: `"name"`},
		{name: "json/array", path: products, body: `[{"name":"Kettle 2"}]`, status: 400, code: sphere.EInvalid, msg: "JSON object"},
		{name: "json/string", path: products, body: `"Kettle 2"`, status: 400, code: sphere.EInvalid, msg: "JSON object"},
		{name: "json/null", path: products, body: `null`, status: 400, code: sphere.EInvalid, msg: "JSON object"},
		{name: "json/two objects", path: products, body: `{"name":"Kettle 2"} {"name":"Kettle 3"}`, status: 400, code: sphere.EInvalid, msg: "after the JSON object"},
		{name: "json/trailing garbage", path: products, body: `{"name":"Kettle 2"}x`, status: 400, code: sphere.EInvalid, msg: "after the JSON object"},
		{name: "json/trailing brace", path: products, body: `{"name":"Kettle 2"}}`, status: 400, code: sphere.EInvalid, msg: "after the JSON object"},
		{name: "json/empty body", path: products, body: ``, status: 400, code: sphere.EInvalid, msg: "empty"},
		{name: "json/only spaces", path: products, body: " \n\t", status: 400, code: sphere.EInvalid, msg: "empty"},
		{name: "json/no body", method: "POST", path: products, status: 400, code: sphere.EInvalid, msg: "empty"},
		{name: "json/null claim", path: unclaimedClaimPath, body: `null`, status: 400, code: sphere.EInvalid, msg: "JSON object"},
		{name: "size/over 1 MiB", path: products, body: `{"name":"` + strings.Repeat("a", MaxBodyBytes) + `"}`, status: 413, code: sphere.ETooLarge, msg: "bytes"},
		{name: "size/exactly 1 MiB", path: products, body: exactly(MaxBodyBytes, `{"name":"Big","description":"`, `"}`), status: 400, code: sphere.EInvalid, msg: "description"},
		{name: "content type/text", path: products, contentType: "text/plain", body: `{"name":"Kettle 2"}`, status: 415, code: sphere.EUnsupported, msg: "application/json"},
		{name: "content type/form", path: products, contentType: "application/x-www-form-urlencoded", body: `name=Kettle`, status: 415, code: sphere.EUnsupported, msg: "application/json"},
		{name: "content type/malformed", path: products, contentType: "application/json;;", body: `{"name":"Kettle 2"}`, status: 415, code: sphere.EUnsupported, msg: "application/json"},

		// Names and descriptions.
		{name: "name/51 characters", path: products, body: api.CreateProduct{Name: strings.Repeat("a", 51)}, status: 400, code: sphere.EInvalid, msg: "at most 50"},
		{name: "name/punctuation", path: products, body: api.CreateProduct{Name: "Kettle!"}, status: 400, code: sphere.EInvalid, msg: "letters, digits and spaces"},
		{name: "name/slash", path: products, body: api.CreateProduct{Name: "Kettle/2"}, status: 400, code: sphere.EInvalid, msg: "letters, digits and spaces"},
		{name: "name/tab", path: products, body: api.CreateProduct{Name: "Kettle\t2"}, status: 400, code: sphere.EInvalid, msg: "letters, digits and spaces"},
		{name: "name/leading space", path: products, body: api.CreateProduct{Name: " Kettle"}, status: 400, code: sphere.EInvalid, msg: "space"},
		{name: "name/empty", path: products, body: api.CreateProduct{}, status: 400, code: sphere.EInvalid, msg: "required"},
		{name: "name/taken", path: products, body: api.CreateProduct{Name: "KETTLE ALPHA"}, status: 409, code: sphere.EConflict, msg: "already exists"},
		{name: "description/257 characters", path: products, body: api.CreateProduct{Name: "Kettle 2", Description: strings.Repeat("d", 257)}, status: 400, code: sphere.EInvalid, msg: "at most 256"},
		{name: "description/control character", path: products, body: api.CreateProduct{Name: "Kettle 2", Description: "a\x00b"}, status: 400, code: sphere.EInvalid, msg: "control"},
		{name: "tenant/punctuation", as: operator, path: fixedPath("/api/v1/tenants"), body: api.CreateTenant{Name: "Acme, Inc."}, status: 400, code: sphere.EInvalid, msg: "letters, digits and spaces"},
		{name: "tenant/taken", as: operator, path: fixedPath("/api/v1/tenants"), body: api.CreateTenant{Name: "other"}, status: 409, code: sphere.EConflict, msg: "already exists"},
		{name: "tenant/rename invalid", as: adminA, method: "PATCH", path: pathInA(""), body: api.UpdateTenant{Name: strings.Repeat("x", 51)}, status: 400, code: sphere.EInvalid, msg: "at most 50"},

		// Device groups.
		{name: "group/no product", path: pathInA("/device-groups"), body: api.CreateDeviceGroup{Name: "Lab"}, status: 400, code: sphere.EInvalid, msg: "product"},
		{name: "group/unknown feed", path: pathInA("/device-groups"), body: func(t *testing.T, e *env) any {
			return api.CreateDeviceGroup{Product: e.A.Product.ID, Name: "Lab", OSFeed: "Beta"}
		}, status: 400, code: sphere.EInvalid, msg: "Retail"},
		{name: "group/unknown policy", path: pathInA("/device-groups"), body: func(t *testing.T, e *env) any {
			return api.CreateDeviceGroup{Product: e.A.Product.ID, Name: "Lab", UpdatePolicy: "Often"}
		}, status: 400, code: sphere.EInvalid, msg: "UpdateAll"},
		{name: "group/bool as string", path: pathInA("/device-groups"), body: func(t *testing.T, e *env) any {
			return `{"product":"` + e.A.Product.ID + `","name":"Lab","require_hardware_rot":"yes"}`
		}, status: 400, code: sphere.EInvalid, msg: "require_hardware_rot"},
		{name: "group/name taken", path: pathInA("/device-groups"), body: func(t *testing.T, e *env) any { return api.CreateDeviceGroup{Product: e.A.Product.ID, Name: "pilot"} }, status: 409, code: sphere.EConflict, msg: "already has"},
		{name: "group/nothing to change", method: "PATCH", path: func(_ *testing.T, e *env) string { return e.A.path("/device-groups/" + e.A.Group.ID) }, body: `{}`, status: 400, code: sphere.EInvalid, msg: "nothing to change"},
		{name: "product/nothing to change", method: "PATCH", path: func(_ *testing.T, e *env) string { return e.A.path("/products/" + e.A.Product.ID) }, body: `{}`, status: 400, code: sphere.EInvalid, msg: "nothing to change"},
		{name: "product/rename invalid", method: "PATCH", path: func(_ *testing.T, e *env) string { return e.A.path("/products/" + e.A.Product.ID) }, body: `{"name":"Kettle?"}`, status: 400, code: sphere.EInvalid, msg: "letters"},

		// Device keys.
		{name: "key/not base64", as: operator, path: fixedPath("/api/v1/devices"), body: func(t *testing.T, e *env) any { return regWith(t, "not a key", "") }, status: 400, code: sphere.EInvalid, msg: "identity_public_key"},
		{name: "key/base64 junk", as: operator, path: fixedPath("/api/v1/devices"), body: func(t *testing.T, e *env) any {
			return regWith(t, base64.StdEncoding.EncodeToString([]byte("hello")), "")
		}, status: 400, code: sphere.EInvalid, msg: "identity public key"},
		{name: "key/certificate block", as: operator, path: fixedPath("/api/v1/devices"), body: func(t *testing.T, e *env) any { return regWith(t, pemOf("CERTIFICATE", []byte("x")), "") }, status: 400, code: sphere.EInvalid, msg: "PUBLIC KEY"},
		{name: "key/truncated PEM", as: operator, path: fixedPath("/api/v1/devices"), body: func(t *testing.T, e *env) any { k := newPublicKeyPEM(t); return regWith(t, k[:len(k)/2], "") }, status: 400, code: sphere.EInvalid, msg: "PEM"},
		{name: "key/data after PEM", as: operator, path: fixedPath("/api/v1/devices"), body: func(t *testing.T, e *env) any { return regWith(t, newPublicKeyPEM(t)+"junk", "") }, status: 400, code: sphere.EInvalid, msg: "after the PEM"},
		{name: "key/P-224", as: operator, path: fixedPath("/api/v1/devices"), body: func(t *testing.T, e *env) any { return regWith(t, ecKeyPEM(t, elliptic.P224()), "") }, status: 400, code: sphere.EInvalid, msg: "P-224"},
		{name: "key/RSA 1024", as: operator, path: fixedPath("/api/v1/devices"), body: func(t *testing.T, e *env) any { return regWith(t, rsaKeyPEM(t, 1024), "") }, status: 400, code: sphere.EInvalid, msg: "1024"},
		{name: "key/Ed25519", as: operator, path: fixedPath("/api/v1/devices"), body: func(t *testing.T, e *env) any { return regWith(t, ed25519KeyPEM(t), "") }, status: 400, code: sphere.EInvalid, msg: "not supported"},
		{name: "key/no attestation key", as: operator, path: fixedPath("/api/v1/devices"), body: func(t *testing.T, e *env) any {
			return api.RegisterDevice{IdentityPublicKey: newPublicKeyPEM(t)}
		}, status: 400, code: sphere.EInvalid, msg: "attestation public key is required"},
		{name: "key/EK certificate junk", as: operator, path: fixedPath("/api/v1/devices"), body: func(t *testing.T, e *env) any {
			r := newRegistration(t)
			r.EKCertificate = base64.StdEncoding.EncodeToString([]byte("not a certificate"))
			return r
		}, status: 400, code: sphere.EInvalid, msg: "EK certificate"},
		{name: "key/other attestation key", as: operator, path: fixedPath("/api/v1/devices"), body: func(t *testing.T, e *env) any {
			return api.RegisterDevice{IdentityPublicKey: e.A.Device.IdentityPublicKey, AttestationPublicKey: newPublicKeyPEM(t)}
		}, status: 409, code: sphere.EConflict, msg: "different attestation key"},

		// Device ids.
		{name: "device id/short", path: pathInA("/devices/abc/claim"), body: `{}`, status: 400, code: sphere.EInvalid, msg: "64 lowercase hex"},
		{name: "device id/65 characters", path: pathInA("/devices/" + validID + "a/claim"), body: `{}`, status: 400, code: sphere.EInvalid, msg: "64 lowercase hex"},
		{name: "device id/uppercase", path: pathInA("/devices/" + strings.ToUpper(validID) + "/claim"), body: `{}`, status: 400, code: sphere.EInvalid, msg: "64 lowercase hex"},
		{name: "device id/not hex", path: pathInA("/devices/" + strings.Repeat("g", 64) + "/claim"), body: `{}`, status: 400, code: sphere.EInvalid, msg: "64 lowercase hex"},
		{name: "device id/unregistered", path: pathInA("/devices/" + validID + "/claim"), body: `{}`, status: 404, code: sphere.ENotFound, msg: "not registered"},
		{name: "device id/get uppercase", as: readerA, method: "GET", path: pathInA("/devices/" + strings.ToUpper(validID)), status: 400, code: sphere.EInvalid, msg: "64 lowercase hex"},
		{name: "device id/operator get", as: operator, method: "GET", path: fixedPath("/api/v1/devices/" + validID[:63]), status: 400, code: sphere.EInvalid, msg: "64 lowercase hex"},
		{name: "claim/unknown group", path: unclaimedClaimPath, body: api.ClaimDevice{DeviceGroup: "no-such-group"}, status: 404, code: sphere.ENotFound, msg: "device group"},
		{name: "claim/group not a string", path: unclaimedClaimPath, body: `{"device_group_id":7}`, status: 400, code: sphere.EInvalid, msg: "device_group_id"},
		{name: "move/no group", method: "PATCH", path: func(_ *testing.T, e *env) string { return e.A.path("/devices/" + e.A.Device.ID) }, body: `{"device_group_id":""}`, status: 400, code: sphere.EInvalid, msg: "device_group_id"},
		{name: "release/no confirm", as: adminA, path: func(_ *testing.T, e *env) string { return e.A.path("/devices/" + e.A.Device.ID + "/release") }, body: `{}`, status: 400, code: sphere.EInvalid, msg: "confirm"},
		{name: "release/confirm as string", as: adminA, path: func(_ *testing.T, e *env) string { return e.A.path("/devices/" + e.A.Device.ID + "/release") }, body: `{"confirm":"yes"}`, status: 400, code: sphere.EInvalid, msg: "confirm"},

		// Roles and tokens.
		{name: "role/unknown role", as: adminA, path: pathInA("/roles"), body: api.AddRole{User: "newbie", Role: "Owner"}, status: 400, code: sphere.EInvalid, msg: "Administrator, Contributor, Reader"},
		{name: "role/invalid user name", as: adminA, path: pathInA("/roles"), body: api.AddRole{User: "new bie!", Role: "Reader"}, status: 400, code: sphere.EInvalid, msg: "user name"},
		{name: "role/no user", as: adminA, path: pathInA("/roles"), body: api.AddRole{Role: "Reader"}, status: 400, code: sphere.EInvalid, msg: "required"},
		{name: "token/negative expiry", as: readerA, path: fixedPath("/api/v1/me/tokens"), body: api.CreateToken{Name: "ci", ExpiresInHours: -1}, status: 400, code: sphere.EInvalid, msg: "expires_in_hours"},
		{name: "token/expiry over ten years", as: readerA, path: fixedPath("/api/v1/me/tokens"), body: api.CreateToken{Name: "ci", ExpiresInHours: 24*3650 + 1}, status: 400, code: sphere.EInvalid, msg: "expires_in_hours"},
		{name: "token/no name", as: readerA, path: fixedPath("/api/v1/me/tokens"), body: api.CreateToken{}, status: 400, code: sphere.EInvalid, msg: "name"},
		{name: "token/name 101 characters", as: readerA, path: fixedPath("/api/v1/me/tokens"), body: api.CreateToken{Name: strings.Repeat("n", 101)}, status: 400, code: sphere.EInvalid, msg: "100"},
		{name: "token/huge expiry number", as: readerA, path: fixedPath("/api/v1/me/tokens"), body: `{"name":"ci","expires_in_hours":1e40}`, status: 400, code: sphere.EInvalid, msg: "expires_in_hours"},

		// Query strings.
		{name: "query/negative page size", as: readerA, method: "GET", path: pathInA("/products?page_size=-1"), status: 400, code: sphere.EInvalid, msg: "page_size"},
		{name: "query/page size too big", as: readerA, method: "GET", path: pathInA("/products?page_size=1001"), status: 400, code: sphere.EInvalid, msg: "page_size"},
		{name: "query/page size not a number", as: readerA, method: "GET", path: pathInA("/products?page_size=ten"), status: 400, code: sphere.EInvalid, msg: "integer"},
		{name: "query/page size twice", as: readerA, method: "GET", path: pathInA("/products?page_size=1&page_size=2"), status: 400, code: sphere.EInvalid, msg: "once"},
		{name: "query/page token of another list", as: readerA, method: "GET", path: func(t *testing.T, e *env) string {
			var p sphere.Page[sphere.DeviceGroup]
			e.must(t, e.readerA, "GET", e.A.path("/device-groups?page_size=1"), nil, 200, &p)
			return e.A.path("/products?page_token=" + url.QueryEscape(p.NextPageToken))
		}, status: 400, code: sphere.EInvalid, msg: "page_token"},
		{name: "query/unknown parameter", as: readerA, method: "GET", path: pathInA("/products?sort=name"), status: 400, code: sphere.EInvalid, msg: `"sort"`},
		{name: "query/parameter on a route without any", as: readerA, method: "GET", path: pathInA("?x=1"), status: 400, code: sphere.EInvalid, msg: "takes none"},
		{name: "query/bad escape", as: readerA, method: "GET", path: pathInA("/products?name=%zz"), status: 400, code: sphere.EInvalid, msg: "query"},
		{name: "query/semicolon", as: readerA, method: "GET", path: pathInA("/products?page_size=1;name=x"), status: 400, code: sphere.EInvalid, msg: "query"},
		{name: "query/bool", as: readerA, method: "GET", path: pathInA("/devices?unassigned=yes"), status: 400, code: sphere.EInvalid, msg: "true or false"},
		{name: "query/time", as: readerA, method: "GET", path: pathInA("/audit?since=2026-01-02"), status: 400, code: sphere.EInvalid, msg: "RFC 3339"},
		{name: "query/string too long", as: readerA, method: "GET", path: pathInA("/products?name=" + strings.Repeat("k", 1025)), status: 400, code: sphere.EInvalid, msg: "too long"},
		{name: "query/body on a read", as: readerA, method: "GET", path: pathInA("/products"), body: `{}`, status: 400, code: sphere.EInvalid, msg: "no body"},
		{name: "query/body on a delete", as: adminA, method: "DELETE", path: func(_ *testing.T, e *env) string { return e.A.path("/products/" + e.A.Product.ID) }, body: `{}`, status: 400, code: sphere.EInvalid, msg: "no body"},
	}
	eachDialect(t, func(t *testing.T, e *env) {
		for _, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				u := e.contribA
				if c.as != nil {
					u = c.as(e)
				}
				method := c.method
				if method == "" {
					method = "POST"
				}
				req := request{path: c.path(t, e), body: c.body, contentType: c.contentType}
				if f, ok := c.body.(func(*testing.T, *env) any); ok {
					req.body = f(t, e)
				}
				e.refused(t, u, method, req, c.status, c.code, c.msg, e.snapshot)
			})
		}
	})
}

// exactly pads a JSON string between prefix and suffix to n bytes in all.
func exactly(n int, prefix, suffix string) string {
	return prefix + strings.Repeat("d", n-len(prefix)-len(suffix)) + suffix
}

// regWith is a registration with the given identity key and, if
// attestation is empty, a fresh valid attestation key.
func regWith(t *testing.T, identity, attestation string) api.RegisterDevice {
	if attestation == "" {
		attestation = newPublicKeyPEM(t)
	}
	return api.RegisterDevice{IdentityPublicKey: identity, AttestationPublicKey: attestation}
}

func pemOf(typ string, der []byte) string {
	return string(pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}))
}

func ecKeyPEM(t *testing.T, c elliptic.Curve) string {
	k, err := ecdsa.GenerateKey(c, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return spkiPEM(t, &k.PublicKey)
}

func rsaKeyPEM(t *testing.T, bits int) string {
	k, err := rsa.GenerateKey(rand.Reader, bits)
	if err != nil {
		t.Fatal(err)
	}
	return spkiPEM(t, &k.PublicKey)
}

func ed25519KeyPEM(t *testing.T) string {
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return spkiPEM(t, pub)
}

func spkiPEM(t *testing.T, pub any) string {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return pemOf("PUBLIC KEY", der)
}

// snapshot reads, straight from the store, what a refused request must not
// change: how many tenants, products, groups, devices, roles and tokens
// there are, and the shared fixtures as they stand.
func (e *env) snapshot(t *testing.T) map[string]string {
	t.Helper()
	ctx := context.Background()
	all := store.PageRequest{Size: store.MaxPageSize}
	out := map[string]string{}
	put := func(key string, v any, err error) {
		if err != nil {
			t.Fatalf("snapshot %s: %v", key, err)
		}
		b, _ := json.Marshal(v)
		out[key] = string(b)
	}
	tenants, err := e.store.ListTenants(ctx, store.TenantFilter{}, all)
	put("tenants", len(tenants.Items), err)
	devices, err := e.store.ListAllDevices(ctx, false, all)
	put("devices", devices.Items, err)
	for _, f := range []*fixture{&e.A, &e.B} {
		ts := e.store.Tenant(f.Tenant.ID)
		tn, err := e.store.GetTenant(ctx, f.Tenant.ID)
		put(f.Tenant.Name+" tenant", tn, err)
		products, err := ts.ListProducts(ctx, store.ProductFilter{}, all)
		put(f.Tenant.Name+" products", products.Items, err)
		groups, err := ts.ListDeviceGroups(ctx, store.DeviceGroupFilter{}, all)
		put(f.Tenant.Name+" device groups", groups.Items, err)
		roles, err := ts.ListRoles(ctx, all)
		put(f.Tenant.Name+" roles", roles.Items, err)
	}
	for _, u := range []user{e.operator, e.adminA, e.contribA, e.readerA, e.adminB} {
		toks, err := e.store.ListTokens(ctx, u.ID, all)
		put(u.Name+" tokens", toks.Items, err)
	}
	return out
}

// auditList lists tenant f's audit log as u, with the query given.
func (e *env) auditList(t *testing.T, u user, f *fixture, query string) []sphere.AuditEntry {
	t.Helper()
	var p sphere.Page[sphere.AuditEntry]
	e.must(t, u, "GET", f.path("/audit?"+query), nil, 200, &p)
	return p.Items
}

// TestAuditTrail checks through the audit API, with its filters, that every
// mutating call by an authenticated user is recorded with its actor,
// action, target, result and status, whether it succeeded or not, and that
// a tenant's log holds only that tenant's entries.
func TestAuditTrail(t *testing.T) {
	t.Parallel()
	eachDialect(t, func(t *testing.T, e *env) {
		start := time.Now().Add(-time.Second).UTC()
		var p sphere.Product
		created := e.must(t, e.contribA, "POST", e.A.path("/products"), api.CreateProduct{Name: "Audited"}, 201, &p)
		invalid := e.send(t, e.contribA.auth(), "POST", request{path: e.A.path("/products"), body: api.CreateProduct{Name: "Audited!"}})
		wantError(t, invalid, 400, sphere.EInvalid)
		badGroup := e.send(t, e.contribA.auth(), "POST", request{path: e.A.path("/device-groups"), body: api.CreateDeviceGroup{Product: p.ID, Name: "Lab", OSFeed: "Beta"}})
		wantError(t, badGroup, 400, sphere.EInvalid)
		denied := e.send(t, e.contribA.auth(), "DELETE", request{path: e.A.path("/products/" + p.ID)})
		wantError(t, denied, 403, sphere.EPermission)
		readerDenied := e.send(t, e.readerA.auth(), "POST", request{path: e.A.path("/products"), body: api.CreateProduct{Name: "Reader Product"}})
		wantError(t, readerDenied, 403, sphere.EPermission)
		outsider := e.send(t, e.adminB.auth(), "DELETE", request{path: e.A.path("/products/" + p.ID)})
		wantError(t, outsider, 404, sphere.ENotFound)
		deleted := e.must(t, e.adminA, "DELETE", e.A.path("/products/"+p.ID), nil, 204, nil)
		e.must(t, e.readerA, "GET", e.A.path("/products"), nil, 200, nil) // reads are not audited
		end := time.Now().Add(time.Second).UTC()

		type want struct {
			actor, action, target, result string
			status                        int
			requestID                     string
		}
		check := func(t *testing.T, got []sphere.AuditEntry, wants ...want) {
			t.Helper()
			if len(got) != len(wants) {
				t.Fatalf("%d entries, want %d: %+v", len(got), len(wants), got)
			}
			for i, w := range wants {
				g := got[i]
				if g.Actor != w.actor || g.Action != w.action || g.Target != w.target || g.Result != w.result || g.Status != w.status || g.RequestID != w.requestID || g.TenantID != e.A.Tenant.ID {
					t.Errorf("entry %d = %+v; want %+v in tenant A", i, g, w)
				}
				if g.Time.Before(start) || !g.Time.Before(end) {
					t.Errorf("entry %d time %v not between %v and %v", i, g.Time, start, end)
				}
			}
		}
		carol, alice, rita := e.contribA.Name, e.adminA.Name, e.readerA.Name
		tenant := e.A.Tenant.ID // the target of a create that made nothing
		for _, c := range []struct {
			name, query string
			wants       []want
		}{
			{"created", "actor=" + carol + "&action=product.create&result=ok",
				[]want{{carol, "product.create", p.ID, "ok", 201, created.RequestID}}},
			{"failures of one actor, newest first", "actor=" + carol + "&result=error",
				[]want{
					{carol, "product.delete", p.ID, sphere.EPermission, 403, denied.RequestID},
					{carol, "device_group.create", tenant, sphere.EInvalid, 400, badGroup.RequestID},
					{carol, "product.create", tenant, sphere.EInvalid, 400, invalid.RequestID},
				}},
			{"by result code", "action=product.create&result=" + sphere.EPermission,
				[]want{{rita, "product.create", tenant, sphere.EPermission, 403, readerDenied.RequestID}}},
			{"a failed create names the tenant, not an id it never made", "action=device_group.create&result=error",
				[]want{{carol, "device_group.create", tenant, sphere.EInvalid, 400, badGroup.RequestID}}},
			{"by target", "target=" + p.ID,
				[]want{{alice, "product.delete", p.ID, "ok", 204, deleted.RequestID}, {carol, "product.delete", p.ID, sphere.EPermission, 403, denied.RequestID}, {carol, "product.create", p.ID, "ok", 201, created.RequestID}}},
			{"by time", "action=product.delete&since=" + start.Format(time.RFC3339Nano) + "&until=" + end.Format(time.RFC3339Nano),
				[]want{{alice, "product.delete", p.ID, "ok", 204, deleted.RequestID}, {carol, "product.delete", p.ID, sphere.EPermission, 403, denied.RequestID}}},
			{"nothing after the end", "since=" + end.Format(time.RFC3339Nano), nil},
			{"the outsider's attempt is not in the tenant's log", "actor=" + e.adminB.Name, nil},
			{"reads are not audited", "actor=" + rita + "&result=ok", nil},
		} {
			t.Run(c.name, func(t *testing.T) {
				check(t, e.auditList(t, e.readerA, &e.A, c.query), c.wants...)
			})
		}

		t.Run("paging", func(t *testing.T) {
			var ids []string
			q := "actor=" + carol + "&page_size=1"
			for page := 0; ; page++ {
				var pg sphere.Page[sphere.AuditEntry]
				e.must(t, e.readerA, "GET", e.A.path("/audit?"+q), nil, 200, &pg)
				for _, a := range pg.Items {
					ids = append(ids, a.RequestID)
				}
				if pg.NextPageToken == "" || page > 10 {
					break
				}
				q = "actor=" + carol + "&page_size=1&page_token=" + url.QueryEscape(pg.NextPageToken)
			}
			if want := []string{denied.RequestID, badGroup.RequestID, invalid.RequestID, created.RequestID}; !slices.Equal(ids, want) {
				t.Errorf("paged request ids %v, want %v", ids, want)
			}
		})

		t.Run("outsider in the operator's log", func(t *testing.T) {
			var pg sphere.Page[sphere.AuditEntry]
			e.must(t, e.operator, "GET", "/api/v1/audit?actor="+e.adminB.Name+"&action=product.delete", nil, 200, &pg)
			if len(pg.Items) != 1 || pg.Items[0].Result != sphere.ENotFound || pg.Items[0].Status != 404 || pg.Items[0].RequestID != outsider.RequestID || pg.Items[0].TenantID != "" {
				t.Errorf("operator's log of %s's attempt = %+v; want one not_found entry without a tenant", e.adminB.Name, pg.Items)
			}
		})

		t.Run("other tenant's log", func(t *testing.T) {
			var pg sphere.Page[sphere.AuditEntry]
			r := e.must(t, e.adminB, "GET", e.B.path("/audit?page_size=1000"), nil, 200, &pg)
			for _, a := range pg.Items {
				if a.TenantID != e.B.Tenant.ID {
					t.Errorf("tenant B's log holds %+v", a)
				}
			}
			wantNoLeak(t, request{path: e.B.path("/audit")}, r, e.A.secrets())
		})
	})
}

// TestReleaseNeedsConfirm checks that a release without confirm: true, or
// by a Contributor, leaves the device claimed, and that a confirmed release
// frees the device for any tenant.
func TestReleaseNeedsConfirm(t *testing.T) {
	t.Parallel()
	eachDialect(t, func(t *testing.T, e *env) {
		d := e.newClaimedDevice(t, &e.A)
		path := e.A.path("/devices/" + d.ID)
		stillClaimed := func(t *testing.T) {
			t.Helper()
			var got sphere.Device
			e.must(t, e.readerA, "GET", path, nil, 200, &got)
			if got.TenantID != e.A.Tenant.ID || got.DeviceGroupID != e.A.Group.ID || got.ClaimedAt == nil {
				t.Errorf("device after a refused release = %+v; want it still claimed in Pilot", got)
			}
		}
		for _, c := range []struct {
			name string
			as   user
			body any
			want int
			code string
		}{
			{"no body", e.adminA, nil, 400, sphere.EInvalid},
			{"empty object", e.adminA, `{}`, 400, sphere.EInvalid},
			{"confirm false", e.adminA, api.ReleaseDevice{Confirm: false}, 400, sphere.EInvalid},
			{"Contributor", e.contribA, api.ReleaseDevice{Confirm: true}, 403, sphere.EPermission},
			{"Reader", e.readerA, api.ReleaseDevice{Confirm: true}, 403, sphere.EPermission},
		} {
			t.Run(c.name, func(t *testing.T) {
				r := e.send(t, c.as.auth(), "POST", request{path: path + "/release", body: c.body})
				msg := wantError(t, r, c.want, c.code)
				if c.code == sphere.EInvalid && !strings.Contains(msg, "confirm") && !strings.Contains(msg, "empty") {
					t.Errorf("message %q does not say what to send", msg)
				}
				stillClaimed(t)
			})
		}
		t.Run("confirmed", func(t *testing.T) {
			var got sphere.Device
			e.must(t, e.adminA, "POST", path+"/release", api.ReleaseDevice{Confirm: true}, 200, &got)
			if got.TenantID != "" || got.ClaimedAt != nil {
				t.Errorf("released device = %+v", got)
			}
			e.must(t, e.readerA, "GET", path, nil, 404, nil)
			e.must(t, e.adminB, "POST", e.B.path("/devices/"+d.ID+"/claim"), api.ClaimDevice{DeviceGroup: e.B.Group.ID}, 200, &got)
			if got.TenantID != e.B.Tenant.ID {
				t.Errorf("reclaimed device = %+v; want it in tenant B", got)
			}
			audit := e.auditList(t, e.readerA, &e.A, "action=device.release&target="+d.ID)
			var results []string
			for _, a := range audit {
				results = append(results, a.Result)
			}
			want := []string{"ok", sphere.EPermission, sphere.EPermission, sphere.EInvalid, sphere.EInvalid, sphere.EInvalid}
			if !slices.Equal(results, want) {
				t.Errorf("device.release audit results %v, want %v", results, want)
			}
		})
	})
}

// TestContributorCannotDelete checks that a Contributor, who may create and
// change, is refused every delete and every Administrator-only change, and
// that the target survives.
func TestContributorCannotDelete(t *testing.T) {
	t.Parallel()
	eachDialect(t, func(t *testing.T, e *env) {
		p := e.newProduct(t, &e.A)
		g := e.newGroup(t, &e.A)
		d := e.newClaimedDevice(t, &e.A)
		e.must(t, e.contribA, "PATCH", e.A.path("/products/"+p.ID), map[string]string{"description": "a Contributor may change"}, 200, nil)
		for _, c := range []struct {
			method, path string
			body         any
			survives     string
		}{
			{"DELETE", e.A.path("/products/" + p.ID), nil, e.A.path("/products/" + p.ID)},
			{"DELETE", e.A.path("/device-groups/" + g.ID), nil, e.A.path("/device-groups/" + g.ID)},
			{"DELETE", e.A.path("/roles/" + e.readerA.Name), nil, ""},
			{"POST", e.A.path("/devices/" + d.ID + "/release"), api.ReleaseDevice{Confirm: true}, e.A.path("/devices/" + d.ID)},
			{"POST", e.A.path("/roles"), api.AddRole{User: e.contribA.Name, Role: sphere.RoleAdministrator}, ""},
			{"PATCH", e.A.path(""), api.UpdateTenant{Name: "Mine Now"}, ""},
		} {
			t.Run(c.method+" "+c.path, func(t *testing.T) {
				r := e.send(t, e.contribA.auth(), c.method, request{path: c.path, body: c.body})
				msg := wantError(t, r, http.StatusForbidden, sphere.EPermission)
				if !strings.Contains(msg, "Administrator") {
					t.Errorf("message %q does not name the role needed", msg)
				}
				if c.survives != "" {
					e.must(t, e.readerA, "GET", c.survives, nil, 200, nil)
				}
			})
		}
		if me := e.must(t, e.contribA, "GET", "/api/v1/me", nil, 200, nil); !strings.Contains(string(me.Body), `"Contributor"`) {
			t.Errorf("the Contributor's role changed: %s", me.Body)
		}
		if got := e.must(t, e.readerA, "GET", e.A.path(""), nil, 200, nil); !strings.Contains(string(got.Body), fmt.Sprintf("%q", e.A.Tenant.Name)) {
			t.Errorf("tenant A was renamed: %s", got.Body)
		}
	})
}
