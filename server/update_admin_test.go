package server

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/opensphere/sphere"
	"github.com/opensphere/sphere/api"
	"github.com/opensphere/sphere/image"
	"github.com/opensphere/sphere/store"
	"github.com/opensphere/sphere/tufrepo"
	"github.com/opensphere/sphere/updates"
)

const octetStream = "application/octet-stream"

// TestUpdateAdminInput sends the update admin routes (signing keys, image
// uploads, deployments, the TUF repository, OS releases) requests they must
// refuse, beyond the one bad request of each route's row in routeCases:
// each gets a clear 4xx in the one error shape, changes nothing (not even
// the blob store), and is audited when it was a mutating call.
func TestUpdateAdminInput(t *testing.T) {
	t.Parallel()
	const missingID = "01900000-0000-7000-8000-000000000000"
	missingImage := strings.Repeat("ab", 32)
	// appBy is a fresh app package signed by the key that key picks.
	appBy := func(key func(*testing.T, *env) *ecdsa.PrivateKey) func(*testing.T, *env) any {
		return func(t *testing.T, e *env) any {
			return packApp(t, key(t, e), newGUID(t), e.name("app"), "1.0.0")
		}
	}
	stranger := func(t *testing.T, _ *env) *ecdsa.PrivateKey { return newSigner(t) }
	platform := func(_ *testing.T, e *env) *ecdsa.PrivateKey { return e.platform }
	publisherA := func(_ *testing.T, e *env) *ecdsa.PrivateKey { return e.A.Publisher }
	// altered returns the fixture publisher's fresh package with one byte
	// changed by change, which gets the package and its header length.
	altered := func(change func(pkg []byte, headerLen int)) func(*testing.T, *env) any {
		return func(t *testing.T, e *env) any {
			pkg := packApp(t, e.A.Publisher, newGUID(t), e.name("app"), "1.0.0")
			h, err := image.ReadHeader(bytes.NewReader(pkg))
			if err != nil {
				t.Fatal(err)
			}
			change(pkg, len(pkg)-int(h.Metadata.PayloadSize))
			return pkg
		}
	}
	// deploy fills in tenant A's empty group and its image where d has
	// none.
	deploy := func(tmpl api.CreateDeployment) func(*testing.T, *env) any {
		return func(_ *testing.T, e *env) any {
			d := tmpl
			if d.DeviceGroup == "" {
				d.DeviceGroup = e.A.Group2.ID
			}
			if d.ImageIDs == nil {
				d.ImageIDs = []string{e.A.Image.ID}
			}
			return d
		}
	}
	deploymentIn := func(state, action string) func(*testing.T, *env) string {
		return func(t *testing.T, e *env) string {
			return e.A.path("/deployments/" + e.deploymentIn(t, &e.A, state).ID + "/" + action)
		}
	}
	cases := []inputCase{
		// Image uploads.
		{name: "image/not a package", path: pathInA("/images"), contentType: octetStream, body: []byte("PK\x03\x04 a zip file"), status: 400, code: sphere.EInvalid, msg: "not an OpenSphere image package"},
		{name: "image/empty", path: pathInA("/images"), contentType: octetStream, body: []byte{}, status: 400, code: sphere.EInvalid, msg: "empty"},
		{name: "image/signed by an unregistered key", path: pathInA("/images"), contentType: octetStream, body: appBy(stranger), status: 400, code: sphere.EInvalid, msg: "not a registered publisher key"},
		{name: "image/signed by a revoked key", path: pathInA("/images"), contentType: octetStream, body: func(t *testing.T, e *env) any {
			k, sk := e.newPublisher(t, &e.A)
			e.must(t, e.operator, "DELETE", e.A.path("/signing-keys/"+sk.ID), nil, 200, nil)
			return packApp(t, k, newGUID(t), e.name("app"), "1.0.0")
		}, status: 400, code: sphere.EInvalid, msg: "not a registered publisher key"},
		{name: "image/signed by the platform key", path: pathInA("/images"), contentType: octetStream, body: appBy(platform), status: 400, code: sphere.EInvalid, msg: "not a registered publisher key"},
		{name: "image/payload altered", path: pathInA("/images"), contentType: octetStream, body: altered(func(pkg []byte, hl int) { pkg[hl+5] ^= 1 }), status: 400, code: sphere.EInvalid, msg: "corrupt"},
		{name: "image/metadata altered", path: pathInA("/images"), contentType: octetStream, body: altered(func(pkg []byte, _ int) {
			i := bytes.Index(pkg, []byte(`"1.0.0"`))
			pkg[i+1] = '7' // version 7.0.0: well formed, but not what was signed
		}), status: 400, code: sphere.EInvalid, msg: "signature"},
		{name: "image/truncated", path: pathInA("/images"), contentType: octetStream, body: func(t *testing.T, e *env) any {
			pkg := packApp(t, e.A.Publisher, newGUID(t), e.name("app"), "1.0.0")
			return pkg[:len(pkg)-100]
		}, status: 400, code: sphere.EInvalid, msg: "corrupt"},
		{name: "image/bytes after the payload", path: pathInA("/images"), contentType: octetStream, body: func(t *testing.T, e *env) any {
			return append(packApp(t, e.A.Publisher, newGUID(t), e.name("app"), "1.0.0"), "trailer"...)
		}, status: 400, code: sphere.EInvalid, msg: "corrupt"},
		{name: "image/sent as JSON", path: pathInA("/images"), body: appBy(publisherA), status: 415, code: sphere.EUnsupported, msg: "application/octet-stream"},
		{name: "image/sent as a form", path: pathInA("/images"), contentType: "multipart/form-data; boundary=x", body: appBy(publisherA), status: 415, code: sphere.EUnsupported, msg: "application/octet-stream"},
		{name: "image/unknown parameter", path: pathInA("/images?name=blinky"), contentType: octetStream, body: appBy(publisherA), status: 400, code: sphere.EInvalid, msg: `"name"`},
		{name: "image/as Reader", as: readerA, path: pathInA("/images"), contentType: octetStream, body: appBy(publisherA), status: 403, code: sphere.EPermission, msg: "Contributor"},
		{name: "image/unknown", as: readerA, method: "GET", path: pathInA("/images/" + missingImage), status: 404, code: sphere.ENotFound, msg: missingImage},
		{name: "image/download unknown", as: readerA, method: "GET", path: pathInA("/images/" + missingImage + "/download"), status: 404, code: sphere.ENotFound, msg: missingImage},
		{name: "images/unknown kind", as: readerA, method: "GET", path: pathInA("/images?kind=firmware"), status: 400, code: sphere.EInvalid, msg: "os or app"},
		{name: "images/negative page size", as: readerA, method: "GET", path: pathInA("/images?page_size=-1"), status: 400, code: sphere.EInvalid, msg: "page_size"},

		// Signing keys.
		{name: "key/not PEM", as: adminA, path: pathInA("/signing-keys"), body: api.AddSigningKey{Name: "ci", PublicKey: "ssh-ed25519 AAAAC3Nza"}, status: 400, code: sphere.EInvalid, msg: "PEM"},
		{name: "key/no key", as: adminA, path: pathInA("/signing-keys"), body: api.AddSigningKey{Name: "ci"}, status: 400, code: sphere.EInvalid, msg: "required"},
		{name: "key/RSA", as: adminA, path: pathInA("/signing-keys"), body: func(t *testing.T, _ *env) any {
			return api.AddSigningKey{Name: "ci", PublicKey: rsaKeyPEM(t, 2048)}
		}, status: 400, code: sphere.EInvalid, msg: "P-256"},
		{name: "key/P-384", as: adminA, path: pathInA("/signing-keys"), body: func(t *testing.T, _ *env) any {
			return api.AddSigningKey{Name: "ci", PublicKey: ecKeyPEM(t, elliptic.P384())}
		}, status: 400, code: sphere.EInvalid, msg: "P-256"},
		{name: "key/Ed25519", as: adminA, path: pathInA("/signing-keys"), body: func(t *testing.T, _ *env) any {
			return api.AddSigningKey{Name: "ci", PublicKey: ed25519KeyPEM(t)}
		}, status: 400, code: sphere.EInvalid, msg: "P-256"},
		{name: "key/registered already", as: adminA, path: pathInA("/signing-keys"), body: func(t *testing.T, e *env) any {
			return api.AddSigningKey{Name: "again", PublicKey: publicPEM(t, e.A.Publisher)}
		}, status: 409, code: sphere.EConflict, msg: "already registered"},
		{name: "key/name too long", as: adminA, path: pathInA("/signing-keys"), body: func(t *testing.T, _ *env) any {
			return api.AddSigningKey{Name: strings.Repeat("n", 101), PublicKey: newPublicKeyPEM(t)}
		}, status: 400, code: sphere.EInvalid, msg: "at most"},
		{name: "key/unknown field", as: adminA, path: pathInA("/signing-keys"), body: `{"name":"ci","public_key":"x","role":"service"}`, status: 400, code: sphere.EInvalid, msg: `"role"`},
		{name: "key/as Contributor", path: pathInA("/signing-keys"), body: func(t *testing.T, _ *env) any {
			return api.AddSigningKey{Name: "ci", PublicKey: newPublicKeyPEM(t)}
		}, status: 403, code: sphere.EPermission, msg: "Administrator"},
		{name: "key/revoke the service key", as: adminA, method: "DELETE", path: func(t *testing.T, e *env) string {
			return e.A.path("/signing-keys/" + e.serviceKey(t, &e.A).ID)
		}, status: 404, code: sphere.ENotFound, msg: "publisher key"},
		{name: "key/revoke unknown", as: adminA, method: "DELETE", path: pathInA("/signing-keys/" + missingID), status: 404, code: sphere.ENotFound, msg: missingID},
		{name: "key/revoke a platform key", as: operator, method: "DELETE", path: func(_ *testing.T, e *env) string {
			return e.A.path("/signing-keys/" + e.PlatformKey.ID)
		}, status: 404, code: sphere.ENotFound, msg: "publisher key"},
		{name: "key/revoke as Contributor", method: "DELETE", path: func(_ *testing.T, e *env) string {
			return e.A.path("/signing-keys/" + e.A.PublisherKey.ID)
		}, status: 403, code: sphere.EPermission, msg: "Administrator"},

		// Deployments.
		{name: "deployment/waves falling", path: pathInA("/deployments"), body: deploy(api.CreateDeployment{Waves: []int{50, 10}}), status: 400, code: sphere.EInvalid, msg: "rise"},
		{name: "deployment/last wave not 100", path: pathInA("/deployments"), body: deploy(api.CreateDeployment{Waves: []int{10, 50}}), status: 400, code: sphere.EInvalid, msg: "100"},
		{name: "deployment/wave over 100", path: pathInA("/deployments"), body: deploy(api.CreateDeployment{Waves: []int{10, 120}}), status: 400, code: sphere.EInvalid, msg: "100"},
		{name: "deployment/negative dwell", path: pathInA("/deployments"), body: deploy(api.CreateDeployment{DwellSeconds: -1}), status: 400, code: sphere.EInvalid, msg: "dwell"},
		{name: "deployment/failure threshold over 1000", path: pathInA("/deployments"), body: deploy(api.CreateDeployment{FailurePermille: 1001}), status: 400, code: sphere.EInvalid, msg: "per mille"},
		{name: "deployment/no images", path: pathInA("/deployments"), body: deploy(api.CreateDeployment{ImageIDs: []string{}}), status: 400, code: sphere.EInvalid, msg: "at least one image"},
		{name: "deployment/image twice", path: pathInA("/deployments"), body: func(_ *testing.T, e *env) any {
			return api.CreateDeployment{DeviceGroup: e.A.Group2.ID, ImageIDs: []string{e.A.Image.ID, e.A.Image.ID}}
		}, status: 400, code: sphere.EInvalid, msg: "one version of a component"},
		{name: "deployment/unknown image", path: pathInA("/deployments"), body: deploy(api.CreateDeployment{ImageIDs: []string{missingImage}}), status: 404, code: sphere.ENotFound, msg: missingImage},
		{name: "deployment/unknown group", path: pathInA("/deployments"), body: deploy(api.CreateDeployment{DeviceGroup: missingID}), status: 404, code: sphere.ENotFound, msg: missingID},
		{name: "deployment/waves not a list", path: pathInA("/deployments"), body: `{"device_group_id":"x","image_ids":["y"],"waves":"1,10,100"}`, status: 400, code: sphere.EInvalid, msg: `"waves"`},
		{name: "deployment/as Reader", as: readerA, path: pathInA("/deployments"), body: deploy(api.CreateDeployment{}), status: 403, code: sphere.EPermission, msg: "Contributor"},
		{name: "deployment/unknown", as: readerA, method: "GET", path: pathInA("/deployments/" + missingID), status: 404, code: sphere.ENotFound, msg: missingID},
		{name: "deployments/unknown group filter", as: readerA, method: "GET", path: pathInA("/deployments?device_group=" + missingID), status: 404, code: sphere.ENotFound, msg: missingID},
		{name: "pause/halted", path: deploymentIn(sphere.DeploymentHalted, "pause"), body: api.DeploymentAction{}, status: 409, code: sphere.EPrecondition, msg: "halted"},
		{name: "pause/paused", path: deploymentIn(sphere.DeploymentPaused, "pause"), body: api.DeploymentAction{}, status: 409, code: sphere.EPrecondition, msg: "paused"},
		{name: "resume/active", path: deploymentIn(sphere.DeploymentActive, "resume"), body: api.DeploymentAction{}, status: 409, code: sphere.EPrecondition, msg: "active"},
		{name: "halt/halted", path: deploymentIn(sphere.DeploymentHalted, "halt"), body: api.DeploymentAction{Reason: "again"}, status: 409, code: sphere.EPrecondition, msg: "halted"},
		{name: "pause/superseded", path: func(t *testing.T, e *env) string {
			d := e.newDeployment(t, &e.A)
			e.must(t, e.operator, "POST", e.A.path("/deployments"), api.CreateDeployment{DeviceGroup: d.DeviceGroupID, ImageIDs: d.ImageIDs}, 201, nil)
			return e.A.path("/deployments/" + d.ID + "/pause")
		}, body: api.DeploymentAction{}, status: 409, code: sphere.EPrecondition, msg: "superseded"},
		{name: "pause/unknown", path: pathInA("/deployments/" + missingID + "/pause"), body: api.DeploymentAction{}, status: 404, code: sphere.ENotFound, msg: missingID},
		{name: "pause/reason too long", path: deploymentIn(sphere.DeploymentActive, "pause"), body: api.DeploymentAction{Reason: strings.Repeat("r", sphere.MaxDescriptionLen+1)}, status: 400, code: sphere.EInvalid, msg: "at most"},

		// Devices.
		{name: "check-now/device id not hex", path: pathInA("/devices/" + strings.Repeat("g", 64) + "/check-now"), status: 400, code: sphere.EInvalid, msg: "64 lowercase hex"},
		{name: "check-now/unknown device", path: pathInA("/devices/" + missingImage + "/check-now"), status: 404, code: sphere.ENotFound, msg: missingImage},
		{name: "check-now/with a body", path: func(_ *testing.T, e *env) string { return e.A.path("/devices/" + e.A.Device.ID + "/check-now") }, body: `{"now":true}`, status: 400, code: sphere.EInvalid, msg: "no body"},
		{name: "update-status/unknown device", as: readerA, method: "GET", path: pathInA("/devices/" + missingImage + "/update-status"), status: 404, code: sphere.ENotFound, msg: missingImage},

		// The TUF repository.
		{name: "rotate/root", as: adminA, path: pathInA("/tuf/rotate"), body: api.RotateTUFKey{Role: "root"}, status: 400, code: sphere.EInvalid, msg: "targets, snapshot or timestamp"},
		{name: "rotate/no role", as: adminA, path: pathInA("/tuf/rotate"), body: `{}`, status: 400, code: sphere.EInvalid, msg: "targets, snapshot or timestamp"},
		{name: "rotate/a group role", as: adminA, path: func(_ *testing.T, e *env) string { return e.A.path("/tuf/rotate") }, body: func(_ *testing.T, e *env) any {
			return api.RotateTUFKey{Role: "groups/" + e.A.Group.ID}
		}, status: 400, code: sphere.EInvalid, msg: "targets, snapshot or timestamp"},
		{name: "rotate/as Contributor", path: pathInA("/tuf/rotate"), body: api.RotateTUFKey{Role: "timestamp"}, status: 403, code: sphere.EPermission, msg: "Administrator"},
		{name: "root-key/remove without confirm", as: adminA, method: "DELETE", path: pathInA("/tuf/root-key"), body: `{}`, status: 400, code: sphere.EInvalid, msg: "confirm"},
		{name: "root-key/export as Contributor", path: pathInA("/tuf/root-key/export"), status: 403, code: sphere.EPermission, msg: "Administrator"},
		{name: "root/signed not TUF", as: adminA, path: pathInA("/tuf/root/signed"), body: `{"root":{"signed":{"_type":"targets"}}}`, status: 400, code: sphere.EInvalid, msg: "not TUF root metadata"},
		{name: "root/signed no root", as: adminA, path: pathInA("/tuf/root/signed"), body: `{}`, status: 400, code: sphere.EInvalid, msg: "root is required"},
		{name: "root/signed by a stranger", as: adminA, path: pathInA("/tuf/root/signed"), body: func(t *testing.T, e *env) any {
			pending := e.mustSend(t, e.operator, "POST", request{path: e.A.path("/tuf/root/prepare")}, 200, nil).Body
			return api.SignedRoot{Root: signRoot(t, pending, newSigner(t))}
		}, status: 400, code: sphere.EInvalid, msg: "not signed by the current root key"},

		// OS releases and platform keys.
		{name: "os/an app", as: operator, path: fixedPath("/api/v1/os-releases"), contentType: octetStream, body: appBy(platform), status: 400, code: sphere.EInvalid, msg: "os image"},
		{name: "os/not a package", as: operator, path: fixedPath("/api/v1/os-releases"), contentType: octetStream, body: []byte("\x7fELF an executable"), status: 400, code: sphere.EInvalid, msg: "not an OpenSphere image package"},
		{name: "os/signed by a tenant's publisher", as: operator, path: fixedPath("/api/v1/os-releases"), contentType: octetStream, body: func(t *testing.T, e *env) any {
			return packOS(t, e.A.Publisher, "9.9.9")
		}, status: 400, code: sphere.EInvalid, msg: "not a registered publisher key"},
		{name: "os/sent as JSON", as: operator, path: fixedPath("/api/v1/os-releases"), body: func(t *testing.T, e *env) any {
			return packOS(t, e.platform, "9.9.9")
		}, status: 415, code: sphere.EUnsupported, msg: "application/octet-stream"},
		{name: "os/as a tenant's Administrator", as: adminA, path: fixedPath("/api/v1/os-releases"), contentType: octetStream, body: func(t *testing.T, e *env) any {
			return packOS(t, e.platform, "9.9.9")
		}, status: 403, code: sphere.EPermission, msg: "operator"},
		{name: "os/list with parameters", as: readerA, method: "GET", path: fixedPath("/api/v1/os-releases?page_size=10"), status: 400, code: sphere.EInvalid, msg: "takes none"},
		{name: "platform-key/not PEM", as: operator, path: fixedPath("/api/v1/signing-keys"), body: api.AddSigningKey{Name: "release", PublicKey: "not a key"}, status: 400, code: sphere.EInvalid, msg: "PEM"},
		{name: "platform-key/as a tenant's Administrator", as: adminA, path: fixedPath("/api/v1/signing-keys"), body: func(t *testing.T, _ *env) any {
			return api.AddSigningKey{Name: "release", PublicKey: newPublicKeyPEM(t)}
		}, status: 403, code: sphere.EPermission, msg: "operator"},
		{name: "platform-key/registered already", as: operator, path: fixedPath("/api/v1/signing-keys"), body: func(t *testing.T, e *env) any {
			return api.AddSigningKey{Name: "again", PublicKey: publicPEM(t, e.platform)}
		}, status: 409, code: sphere.EConflict, msg: "already registered"},
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
				e.refused(t, u, method, req, c.status, c.code, c.msg, e.updateSnapshot)
			})
		}
	})
}

// updateSnapshot is snapshot (input_test.go) plus what the update admin
// routes change: each fixture tenant's signing keys, images, deployments
// and TUF root, the platform's keys and OS releases, and the blob store.
func (e *env) updateSnapshot(t *testing.T) map[string]string {
	t.Helper()
	out := e.snapshot(t)
	ctx := context.Background()
	all := store.PageRequest{Size: store.MaxPageSize}
	put := func(key string, v any, err error) {
		if err != nil {
			t.Fatalf("snapshot %s: %v", key, err)
		}
		b, _ := json.Marshal(v)
		out[key] = string(b)
	}
	for _, f := range []*fixture{&e.A, &e.B} {
		ts := e.store.Tenant(f.Tenant.ID)
		keys, err := e.store.SigningKeys(ctx, f.Tenant.ID, "")
		put(f.Tenant.Name+" signing keys", keys, err)
		images, err := ts.ListImages(ctx, store.ImageFilter{}, all)
		put(f.Tenant.Name+" images", images.Items, err)
		deps, err := ts.ListDeployments(ctx, "", all)
		put(f.Tenant.Name+" deployments", deps.Items, err)
		root, err := e.srv.updates.TUF().TrustedRoot(ctx, f.Tenant.ID)
		put(f.Tenant.Name+" TUF root", string(root), err)
	}
	// The platform's service key is made on first use, by the first OS
	// release that gets as far as being re-signed.
	keys, err := e.store.SigningKeys(ctx, "", sphere.KeyPublisher)
	put("platform publisher keys", keys, err)
	rels, err := e.store.ListOSReleases(ctx)
	put("OS releases", rels, err)
	out["blobs"] = strings.Join(e.blobs(t), "\n")
	return out
}

// blobs lists the blob store's blobs (not its temporary files).
func (e *env) blobs(t *testing.T) []string {
	t.Helper()
	var out []string
	dirs, err := os.ReadDir(e.blobDir)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range dirs {
		if !d.IsDir() || d.Name() == "tmp" {
			continue
		}
		files, err := os.ReadDir(filepath.Join(e.blobDir, d.Name()))
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range files {
			out = append(out, f.Name())
		}
	}
	slices.Sort(out)
	return out
}

// signRoot signs TUF root metadata with key, as `sphere tuf sign-root`
// does on an operator's machine.
func signRoot(t *testing.T, rootJSON []byte, key *ecdsa.PrivateKey) json.RawMessage {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	signed, err := tufrepo.SignRoot(rootJSON, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
	if err != nil {
		t.Fatalf("tufrepo.SignRoot: %v", err)
	}
	return signed
}

// TestPublisherKeyRevocation checks that revoking a publisher key refuses
// its later uploads but keeps the images it signed before, and that the
// key may be registered again.
func TestPublisherKeyRevocation(t *testing.T) {
	t.Parallel()
	eachDialect(t, func(t *testing.T, e *env) {
		key := newSigner(t)
		var sk sphere.SigningKey
		e.must(t, e.adminA, "POST", e.A.path("/signing-keys"), api.AddSigningKey{Name: "laptop key", PublicKey: publicPEM(t, key)}, 201, &sk)
		var before sphere.Image
		e.mustSend(t, e.contribA, "POST", octets(e.A.path("/images"), packApp(t, key, newGUID(t), "before", "1.0.0")), 201, &before)

		e.must(t, e.adminA, "DELETE", e.A.path("/signing-keys/"+sk.ID), nil, 200, nil)
		r := e.send(t, e.contribA.auth(), "POST", octets(e.A.path("/images"), packApp(t, key, newGUID(t), "after", "1.0.0")))
		if msg := wantError(t, r, http.StatusBadRequest, sphere.EInvalid); !strings.Contains(msg, "revoked") {
			t.Errorf("message %q does not say the key may have been revoked", msg)
		}
		e.must(t, e.readerA, "GET", e.A.path("/images/"+before.ID+"/download"), nil, 200, nil)

		var again sphere.SigningKey
		e.must(t, e.adminA, "POST", e.A.path("/signing-keys"), api.AddSigningKey{Name: "laptop key", PublicKey: publicPEM(t, key)}, 201, &again)
		if again.ID == sk.ID || again.KeyID != sk.KeyID {
			t.Errorf("registered again as %+v; want a new registration of key %s", again, sk.KeyID)
		}
		e.mustSend(t, e.contribA, "POST", octets(e.A.path("/images"), packApp(t, key, newGUID(t), "after", "1.0.0")), 201, nil)
	})
}

// TestSameImageInTwoTenants checks that one package, signed by a publisher
// both tenants trust, becomes an image of each with the same id, each
// re-signed by its own tenant's service key, and that a deployment in one
// tenant does not reach the other.
func TestSameImageInTwoTenants(t *testing.T) {
	t.Parallel()
	eachDialect(t, func(t *testing.T, e *env) {
		key := newSigner(t)
		for _, c := range []struct {
			f     *fixture
			admin user
		}{{&e.A, e.adminA}, {&e.B, e.adminB}} {
			e.must(t, c.admin, "POST", c.f.path("/signing-keys"), api.AddSigningKey{Name: "vendor", PublicKey: publicPEM(t, key)}, 201, nil)
		}
		pkg := packApp(t, key, newGUID(t), "vendor app", "3.0.0")
		var a, b sphere.Image
		e.mustSend(t, e.adminA, "POST", octets(e.A.path("/images"), pkg), 201, &a)
		e.mustSend(t, e.adminB, "POST", octets(e.B.path("/images"), pkg), 201, &b)
		if a.ID != b.ID || a.TenantID == b.TenantID || a.BlobSHA256 == b.BlobSHA256 {
			t.Errorf("images %+v and %+v; want the same id in two tenants, each with a package of its own", a, b)
		}
		for _, c := range []struct {
			f, other *fixture
			u        user
		}{{&e.A, &e.B, e.adminA}, {&e.B, &e.A, e.adminB}} {
			r := e.must(t, c.u, "GET", c.f.path("/images/"+a.ID+"/download"), nil, 200, nil)
			h, err := image.ReadHeader(bytes.NewReader(r.Body))
			if err != nil {
				t.Fatal(err)
			}
			if err := h.VerifySignature(e.servicePublicKey(t, c.f)); err != nil {
				t.Errorf("tenant %s's copy is not signed by its service key: %v", c.f.Tenant.Name, err)
			}
			if err := h.VerifySignature(e.servicePublicKey(t, c.other)); err == nil {
				t.Errorf("tenant %s's copy verifies with tenant %s's service key", c.f.Tenant.Name, c.other.Tenant.Name)
			}
		}
		var d sphere.Deployment
		e.must(t, e.adminA, "POST", e.A.path("/deployments"), api.CreateDeployment{DeviceGroup: e.newGroup(t, &e.A).ID, ImageIDs: []string{a.ID}}, 201, &d)
		e.exists(e.adminB, e.B.path("/deployments/"+d.ID), 404)(t)
		e.deploymentIs(e.adminB, &e.B, e.B.Deployment.ID, sphere.DeploymentActive)(t)
	})
}

// TestImageDownloadRange checks that a package download can resume: a
// Range request answers 206 with the bytes asked for.
func TestImageDownloadRange(t *testing.T) {
	t.Parallel()
	eachDialect(t, func(t *testing.T, e *env) {
		path := e.A.path("/images/" + e.A.Image.ID + "/download")
		whole := e.must(t, e.readerA, "GET", path, nil, 200, nil).Body
		r := e.send(t, e.readerA.auth(), "GET", request{path: path, header: http.Header{"Range": {"bytes=8-"}}})
		if r.Status != http.StatusPartialContent || !bytes.Equal(r.Body, whole[8:]) {
			t.Errorf("Range bytes=8-: status %d with %d bytes; want 206 with the %d bytes after the magic", r.Status, len(r.Body), len(whole)-8)
		}
		if got := r.Header.Get("Content-Type"); got != octetStream {
			t.Errorf("Content-Type %q, want %s", got, octetStream)
		}
	})
}

// TestOfflineRootOverAPI takes a tenant's TUF root key offline through the
// API and completes a key rotation with a root signed on the operator's
// machine.
func TestOfflineRootOverAPI(t *testing.T) {
	t.Parallel()
	eachDialect(t, func(t *testing.T, e *env) {
		f := &e.A
		var key api.PEMBundle
		e.must(t, e.adminA, "POST", f.path("/tuf/root-key/export"), nil, 200, &key)
		root1 := parseRoot(t, e.must(t, e.readerA, "GET", f.path("/tuf/root.json"), nil, 200, nil).Body)
		e.must(t, e.adminA, "DELETE", f.path("/tuf/root-key"), api.RemoveRootKey{Confirm: true}, 204, nil)

		r := e.send(t, e.adminA.auth(), "POST", request{path: f.path("/tuf/root-key/export")})
		wantError(t, r, http.StatusConflict, sphere.EPrecondition)
		r = e.send(t, e.adminA.auth(), "POST", request{path: f.path("/tuf/rotate"), body: api.RotateTUFKey{Role: "timestamp"}})
		if msg := wantError(t, r, http.StatusConflict, sphere.EPrecondition); !strings.Contains(msg, "sign-root") {
			t.Errorf("message %q does not say how to sign the new root", msg)
		}

		pending := e.must(t, e.adminA, "POST", f.path("/tuf/root/prepare"), nil, 200, nil).Body
		if p := parseRoot(t, pending); p.Signed.Version != root1.Signed.Version+1 || len(p.Signatures) != 0 {
			t.Fatalf("pending root version %d with %d signatures; want %d, unsigned", p.Signed.Version, len(p.Signatures), root1.Signed.Version+1)
		}
		signed, err := tufrepo.SignRoot(pending, []byte(key.PEM))
		if err != nil {
			t.Fatal(err)
		}
		e.must(t, e.adminA, "POST", f.path("/tuf/root/signed"), api.SignedRoot{Root: signed}, 204, nil)
		root2 := parseRoot(t, e.must(t, e.readerA, "GET", f.path("/tuf/root.json"), nil, 200, nil).Body)
		if root2.Signed.Version != root1.Signed.Version+1 {
			t.Errorf("root version %d after the import; want %d", root2.Signed.Version, root1.Signed.Version+1)
		}
		if slices.Equal(root2.Signed.Roles["timestamp"].KeyIDs, root1.Signed.Roles["timestamp"].KeyIDs) {
			t.Errorf("the imported root keeps the timestamp key the rotation replaced")
		}
		// Importing the same root again is refused: it is no longer next.
		r = e.send(t, e.adminA.auth(), "POST", request{path: f.path("/tuf/root/signed"), body: api.SignedRoot{Root: signed}})
		wantError(t, r, http.StatusBadRequest, sphere.EInvalid)
	})
}

// TestOSReleaseFeeds checks that a new OS release is offered at once to a
// device in a RetailEval group and not yet to one in a Retail group.
func TestOSReleaseFeeds(t *testing.T) {
	t.Parallel()
	eachDialect(t, func(t *testing.T, e *env) {
		var eval sphere.DeviceGroup
		e.must(t, e.adminA, "POST", e.A.path("/device-groups"), api.CreateDeviceGroup{Product: e.A.Product.ID, Name: "Eval", OSFeed: "RetailEval"}, 201, &eval)
		d := e.registerDevice(t)
		e.must(t, e.adminA, "POST", e.A.path("/devices/"+d.ID+"/claim"), api.ClaimDevice{DeviceGroup: eval.ID}, 200, nil)

		var rel sphere.OSRelease
		e.mustSend(t, e.operator, "POST", octets("/api/v1/os-releases", packOS(t, e.platform, "2026.9.1")), 201, &rel)
		offered := func(deviceID string) bool {
			var ex updates.Explanation
			e.must(t, e.readerA, "GET", e.A.path("/devices/"+deviceID+"/update-status"), nil, 200, &ex)
			return slices.ContainsFunc(ex.Offered, func(tg updates.Target) bool { return tg.ImageID == rel.ID && tg.OSRelease })
		}
		if !offered(d.ID) {
			t.Errorf("the OS release is not offered to a device in a RetailEval group")
		}
		if offered(e.A.Device.ID) {
			t.Errorf("the OS release is offered to a device in a Retail group before its Retail date")
		}
	})
}
