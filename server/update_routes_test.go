package server

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/opensphere/sphere"
	"github.com/opensphere/sphere/api"
	"github.com/opensphere/sphere/image"
	"github.com/opensphere/sphere/tufrepo"
	"github.com/opensphere/sphere/updates"
)

// updateRouteCases are the rows of routeCases (routes_test.go) for the
// routes of renewable security in update_routes.go: signing keys, images,
// deployments, OS releases and the TUF repository.
func updateRouteCases() map[string]routeCase {
	return map[string]routeCase{
		// ---- signing keys ----
		"GET /api/v1/tenants/{tenant}/signing-keys": {
			status: 200,
			valid:  inA("/signing-keys", nil),
			check: func(t *testing.T, e *env, _ request, r response) {
				var p sphere.Page[sphere.SigningKey]
				decode(t, r, &p)
				roles := map[string]int{}
				for _, k := range p.Items {
					roles[k.Role]++
					if k.TenantID != e.A.Tenant.ID {
						t.Errorf("key %+v listed for tenant A", k)
					}
				}
				if !slices.ContainsFunc(p.Items, func(k sphere.SigningKey) bool { return k.ID == e.A.PublisherKey.ID }) || roles[sphere.KeyService] != 1 {
					t.Errorf("tenant A's keys %+v; want its fixture publisher key and one service key", p.Items)
				}
				if strings.Contains(string(r.Body), "PRIVATE") || strings.Contains(string(r.Body), "sealed") {
					t.Errorf("the key list shows private key material: %s", r.Body)
				}
			},
			bad:         inA("/signing-keys?role=publisher", nil),
			noForbidden: readerIsLowest,
			cross: []crossCase{{
				name: "only this tenant's keys", req: inA("/signing-keys", nil),
				status: 200, reason: "lists the caller's tenant's keys; the leak check looks for the other tenant's publisher key",
			}},
		},
		"POST /api/v1/tenants/{tenant}/signing-keys": {
			status: 201,
			valid: func(t *testing.T, e *env) request {
				return request{path: e.A.path("/signing-keys"), body: api.AddSigningKey{Name: e.name("CI release key"), PublicKey: newPublicKeyPEM(t)}}
			},
			check: func(t *testing.T, e *env, req request, r response) {
				var k sphere.SigningKey
				decode(t, r, &k)
				in := req.body.(api.AddSigningKey)
				if k.ID == "" || k.TenantID != e.A.Tenant.ID || k.Role != sphere.KeyPublisher || k.Name != in.Name || k.PublicKey != in.PublicKey || k.RevokedAt != nil {
					t.Errorf("registered %+v; want an active publisher key of tenant A with %+v", k, in)
				}
				e.keyIs(e.readerA, &e.A, k.ID, "active")(t)
				if a, _ := e.auditEntry(t, r.RequestID); a.Target != k.ID {
					t.Errorf("audit target %q; want the new key %s", a.Target, k.ID)
				}
			},
			bad: inA("/signing-keys", api.AddSigningKey{Name: "CI", PublicKey: "not a PEM public key"}),
			cross: []crossCase{{
				name: "the other tenant's public key",
				req: func(t *testing.T, e *env) request {
					k, sk := e.newPublisher(t, &e.B)
					return request{path: e.A.path("/signing-keys"), body: api.AddSigningKey{Name: e.name("shared key"), PublicKey: publicPEM(t, k)},
						intact: e.keyIs(e.adminB, &e.B, sk.ID, "active")}
				},
				status: 201,
				reason: "a public key is no secret: a publisher may sign for several tenants, and registering its key here accepts its packages here only",
				check: func(t *testing.T, e *env, r response) {
					var k sphere.SigningKey
					decode(t, r, &k)
					if k.TenantID != e.A.Tenant.ID {
						t.Errorf("the key was registered in tenant %s; want A", k.TenantID)
					}
					e.keyIs(e.adminA, &e.A, k.ID, "active")(t)
					e.keyIs(e.adminB, &e.B, k.ID, "absent")(t)
				},
			}},
		},
		"DELETE /api/v1/tenants/{tenant}/signing-keys/{key}": {
			status: 200,
			valid: func(t *testing.T, e *env) request {
				_, sk := e.newPublisher(t, &e.A)
				return request{path: e.A.path("/signing-keys/" + sk.ID), intact: e.keyIs(e.operator, &e.A, sk.ID, "active")}
			},
			check: func(t *testing.T, e *env, req request, r response) {
				var k sphere.SigningKey
				decode(t, r, &k)
				if k.RevokedAt == nil || k.Role != sphere.KeyPublisher {
					t.Errorf("revoked key %+v has no revoked_at", k)
				}
				e.keyIs(e.readerA, &e.A, lastSegment(req.path), "revoked")(t)
				if a, _ := e.auditEntry(t, r.RequestID); a.Target != k.ID {
					t.Errorf("audit target %q; want the revoked key %s", a.Target, k.ID)
				}
			},
			bad: func(_ *testing.T, e *env) request {
				return request{path: e.A.path("/signing-keys/" + e.A.PublisherKey.ID + "?force=1")}
			},
			cross: []crossCase{{name: "by id", req: func(t *testing.T, e *env) request {
				_, sk := e.newPublisher(t, &e.B)
				return request{path: e.A.path("/signing-keys/" + sk.ID), intact: e.keyIs(e.adminB, &e.B, sk.ID, "active")}
			}}},
		},

		// ---- images ----
		"POST /api/v1/tenants/{tenant}/images": {
			status: 201,
			valid: func(t *testing.T, e *env) request {
				pkg := packApp(t, e.A.Publisher, newGUID(t), e.name("thermostat"), "2.1.0")
				req := octets(e.A.path("/images"), pkg)
				req.intact = e.exists(e.operator, e.A.path("/images/"+imageID(t, pkg)), 404)
				return req
			},
			check: func(t *testing.T, e *env, req request, r response) {
				var im sphere.Image
				decode(t, r, &im)
				h, err := image.ReadHeader(bytes.NewReader(req.body.([]byte)))
				if err != nil {
					t.Fatal(err)
				}
				md := h.Metadata
				if im.ID != h.ImageID() || im.TenantID != e.A.Tenant.ID || im.Kind != "app" || im.ComponentID != md.ComponentID ||
					im.Name != md.Name || im.Version != md.Version || im.UploadedBy != e.contribA.Name {
					t.Errorf("uploaded image %+v; want %s of tenant A with the package's metadata %+v", im, h.ImageID(), md)
				}
				if svc := e.serviceKey(t, &e.A); im.SignerKeyID != svc.KeyID {
					t.Errorf("image signer %s; want tenant A's service key %s (the service re-signs uploads)", im.SignerKeyID, svc.KeyID)
				}
				e.exists(e.readerA, e.A.path("/images/"+im.ID), 200)(t)
				if a, _ := e.auditEntry(t, r.RequestID); a.Target != im.ID {
					t.Errorf("audit target %q; want the new image %s", a.Target, im.ID)
				}
			},
			bad: func(_ *testing.T, e *env) request {
				return octets(e.A.path("/images"), []byte("#!/bin/sh\necho this is not an image package\n"))
			},
			cross: []crossCase{
				{
					name: "signed by the other tenant's publisher key",
					req: func(t *testing.T, e *env) request {
						pkg := packApp(t, e.B.Publisher, newGUID(t), e.name("intruder"), "1.0.0")
						req := octets(e.A.path("/images"), pkg)
						req.intact = e.exists(e.operator, e.A.path("/images/"+imageID(t, pkg)), 404)
						return req
					},
					status: 400,
					reason: "a publisher key registered in another tenant is unknown here: the package is refused as signed by an unregistered key",
				},
				{
					name: "the other tenant's image as the service signed it",
					req: func(t *testing.T, e *env) request {
						pkg := e.mustSend(t, e.adminB, "GET", request{path: e.B.path("/images/" + e.B.Image.ID + "/download")}, 200, nil).Body
						req := octets(e.A.path("/images"), pkg)
						req.intact = e.exists(e.operator, e.A.path("/images/"+e.B.Image.ID), 404)
						return req
					},
					status: 400,
					reason: "the other tenant's service key is no publisher key here, so its images cannot be copied in",
				},
			},
		},
		"GET /api/v1/tenants/{tenant}/images": {
			status: 200,
			valid:  inA("/images?kind=app&page_size=1000", nil),
			check: func(t *testing.T, e *env, _ request, r response) {
				var p sphere.Page[sphere.Image]
				decode(t, r, &p)
				if !slices.ContainsFunc(p.Items, func(im sphere.Image) bool { return im.ID == e.A.Image.ID }) {
					t.Errorf("tenant A's images %+v lack its fixture image %s", p.Items, e.A.Image.ID)
				}
				for _, im := range p.Items {
					if im.TenantID != e.A.Tenant.ID || im.Kind != "app" {
						t.Errorf("image %+v listed for tenant A's apps", im)
					}
				}
			},
			bad:         inA("/images?page_size=-1", nil),
			noForbidden: readerIsLowest,
			cross: []crossCase{{
				name: "component filter", req: func(_ *testing.T, e *env) request {
					return request{path: e.A.path("/images?component_id=" + e.B.Image.ComponentID)}
				},
				status: 200, reason: "components are not resources of their own: the other tenant's component id finds nothing here",
				check: func(t *testing.T, _ *env, r response) {
					var p sphere.Page[sphere.Image]
					decode(t, r, &p)
					if len(p.Items) != 0 {
						t.Errorf("filtering by the other tenant's component found %+v", p.Items)
					}
				},
			}},
		},
		"GET /api/v1/tenants/{tenant}/images/{image}": {
			status: 200,
			valid:  func(_ *testing.T, e *env) request { return request{path: e.A.path("/images/" + e.A.Image.ID)} },
			check: func(t *testing.T, e *env, _ request, r response) {
				var im sphere.Image
				decode(t, r, &im)
				if im.ID != e.A.Image.ID || im.BlobSHA256 != e.A.Image.BlobSHA256 || im.ComponentID != e.A.Image.ComponentID || im.UploadedBy != e.adminA.Name {
					t.Errorf("image = %+v; want the fixture %+v", im, e.A.Image)
				}
			},
			bad: func(_ *testing.T, e *env) request {
				return request{path: e.A.path("/images/" + e.A.Image.ID + "?version=1")}
			},
			noForbidden: readerIsLowest,
			cross: []crossCase{{name: "by id", req: func(_ *testing.T, e *env) request {
				return request{path: e.A.path("/images/" + e.B.Image.ID)}
			}}},
		},
		"GET /api/v1/tenants/{tenant}/images/{image}/download": {
			status: 200,
			raw:    "application/octet-stream",
			valid: func(_ *testing.T, e *env) request {
				return request{path: e.A.path("/images/" + e.A.Image.ID + "/download")}
			},
			check: func(t *testing.T, e *env, _ request, r response) {
				sum := sha256.Sum256(r.Body)
				if hex.EncodeToString(sum[:]) != e.A.Image.BlobSHA256 || int64(len(r.Body)) != e.A.Image.Size {
					t.Errorf("downloaded %d bytes with SHA-256 %x; want the stored %d bytes, %s", len(r.Body), sum, e.A.Image.Size, e.A.Image.BlobSHA256)
				}
				body := bytes.NewReader(r.Body)
				h, err := image.ReadHeader(body)
				if err != nil {
					t.Fatalf("the download is not an image package: %v", err)
				}
				if h.ImageID() != e.A.Image.ID {
					t.Errorf("downloaded image %s; want %s", h.ImageID(), e.A.Image.ID)
				}
				if err := h.VerifySignature(e.servicePublicKey(t, &e.A)); err != nil {
					t.Errorf("the download is not signed by tenant A's service key: %v", err)
				}
				if err := image.VerifyPayload(body, h); err != nil {
					t.Errorf("the download's payload: %v", err)
				}
			},
			bad: func(_ *testing.T, e *env) request {
				return request{path: e.A.path("/images/" + e.A.Image.ID + "/download?format=tar")}
			},
			noForbidden: readerIsLowest,
			cross: []crossCase{{name: "by id", req: func(_ *testing.T, e *env) request {
				return request{path: e.A.path("/images/" + e.B.Image.ID + "/download")}
			}}},
		},

		// ---- deployments ----
		"POST /api/v1/tenants/{tenant}/deployments": {
			status: 201,
			valid: func(t *testing.T, e *env) request {
				g := e.newGroup(t, &e.A)
				return request{path: e.A.path("/deployments"), body: api.CreateDeployment{DeviceGroup: g.ID, ImageIDs: []string{e.A.Image.ID},
					Waves: []int{10, 100}, DwellSeconds: 3600, FailurePermille: 100, MinSample: 3},
					intact: e.countIs(e.operator, e.A.path("/deployments?device_group="+g.ID), 0)}
			},
			check: func(t *testing.T, e *env, req request, r response) {
				var d sphere.Deployment
				decode(t, r, &d)
				in := req.body.(api.CreateDeployment)
				if d.ID == "" || d.TenantID != e.A.Tenant.ID || d.DeviceGroupID != in.DeviceGroup || !slices.Equal(d.ImageIDs, in.ImageIDs) ||
					d.State != sphere.DeploymentActive || !slices.Equal(d.Waves, in.Waves) || d.DwellSeconds != 3600 || d.FailurePermille != 100 ||
					d.MinSample != 3 || d.CurrentWave != 0 || d.CreatedBy != e.contribA.Name {
					t.Errorf("deployment %+v; want an active one of %+v by %s", d, in, e.contribA.Name)
				}
				e.countIs(e.readerA, e.A.path("/deployments?device_group="+in.DeviceGroup), 1)(t)
				if a, _ := e.auditEntry(t, r.RequestID); a.Target != d.ID {
					t.Errorf("audit target %q; want the new deployment %s", a.Target, d.ID)
				}
			},
			bad: func(_ *testing.T, e *env) request {
				return request{path: e.A.path("/deployments"), body: api.CreateDeployment{DeviceGroup: e.A.Group2.ID, ImageIDs: []string{e.A.Image.ID}, Waves: []int{50, 10}}}
			},
			cross: []crossCase{
				{name: "the other tenant's image", req: func(t *testing.T, e *env) request {
					g := e.newGroup(t, &e.A)
					return request{path: e.A.path("/deployments"), body: api.CreateDeployment{DeviceGroup: g.ID, ImageIDs: []string{e.B.Image.ID}},
						intact: e.countIs(e.operator, e.A.path("/deployments?device_group="+g.ID), 0)}
				}},
				{name: "to the other tenant's group", req: func(_ *testing.T, e *env) request {
					return request{path: e.A.path("/deployments"), body: api.CreateDeployment{DeviceGroup: e.B.Group.ID, ImageIDs: []string{e.A.Image.ID}},
						intact: e.deploymentIs(e.adminB, &e.B, e.B.Deployment.ID, sphere.DeploymentActive)}
				}},
			},
		},
		"GET /api/v1/tenants/{tenant}/deployments": {
			status: 200,
			valid: func(_ *testing.T, e *env) request {
				return request{path: e.A.path("/deployments?device_group=" + e.A.Group.ID)}
			},
			check: func(t *testing.T, e *env, _ request, r response) {
				var p sphere.Page[sphere.Deployment]
				decode(t, r, &p)
				if len(p.Items) != 1 || p.Items[0].ID != e.A.Deployment.ID || p.Items[0].State != sphere.DeploymentActive {
					t.Errorf("deployments of tenant A's Pilot group = %+v; want only its active fixture deployment", p.Items)
				}
			},
			bad:         inA("/deployments?page_token=bogus", nil),
			noForbidden: readerIsLowest,
			cross: []crossCase{{name: "group filter", req: func(_ *testing.T, e *env) request {
				return request{path: e.A.path("/deployments?device_group=" + e.B.Group.ID)}
			}}},
		},
		"GET /api/v1/tenants/{tenant}/deployments/{deployment}": {
			status: 200,
			valid: func(_ *testing.T, e *env) request {
				return request{path: e.A.path("/deployments/" + e.A.Deployment.ID)}
			},
			check: func(t *testing.T, e *env, _ request, r response) {
				var ds api.DeploymentState
				decode(t, r, &ds)
				d := ds.Deployment
				if d.ID != e.A.Deployment.ID || d.State != sphere.DeploymentActive || !slices.Equal(d.ImageIDs, []string{e.A.Image.ID}) {
					t.Errorf("deployment %+v; want tenant A's active fixture deployment of its image", d)
				}
				if ds.GroupDevices < 1 || ds.Counts == nil {
					t.Errorf("deployment state %+v; want the Pilot group's devices (at least the fixture device) and counts", ds)
				}
			},
			bad: func(_ *testing.T, e *env) request {
				return request{path: e.A.path("/deployments/" + e.A.Deployment.ID + "?verbose=1")}
			},
			noForbidden: readerIsLowest,
			cross: []crossCase{{name: "by id", req: func(_ *testing.T, e *env) request {
				return request{path: e.A.path("/deployments/" + e.B.Deployment.ID)}
			}}},
		},
		"GET /api/v1/tenants/{tenant}/deployments/{deployment}/devices": {
			status: 200,
			valid: func(_ *testing.T, e *env) request {
				return request{path: e.A.path("/deployments/" + e.A.Deployment.ID + "/devices?page_size=100")}
			},
			check: func(t *testing.T, e *env, _ request, r response) {
				var p sphere.Page[sphere.DeviceUpdate]
				decode(t, r, &p)
				if p.Items == nil {
					t.Errorf("items is null; want a list: %s", r.Body)
				}
				for _, u := range p.Items {
					if u.DeploymentID != e.A.Deployment.ID {
						t.Errorf("device update %+v listed for deployment %s", u, e.A.Deployment.ID)
					}
				}
			},
			bad: func(_ *testing.T, e *env) request {
				return request{path: e.A.path("/deployments/" + e.A.Deployment.ID + "/devices?page_size=-1")}
			},
			noForbidden: readerIsLowest,
			cross: []crossCase{{name: "by id", req: func(_ *testing.T, e *env) request {
				return request{path: e.A.path("/deployments/" + e.B.Deployment.ID + "/devices")}
			}}},
		},
		"POST /api/v1/tenants/{tenant}/deployments/{deployment}/pause":  deploymentActionCase("pause", sphere.DeploymentActive, sphere.DeploymentPaused),
		"POST /api/v1/tenants/{tenant}/deployments/{deployment}/resume": deploymentActionCase("resume", sphere.DeploymentPaused, sphere.DeploymentActive),
		"POST /api/v1/tenants/{tenant}/deployments/{deployment}/halt":   deploymentActionCase("halt", sphere.DeploymentActive, sphere.DeploymentHalted),

		// ---- devices ----
		"GET /api/v1/tenants/{tenant}/devices/{device}/update-status": {
			status: 200,
			valid: func(_ *testing.T, e *env) request {
				return request{path: e.A.path("/devices/" + e.A.Device.ID + "/update-status")}
			},
			check: func(t *testing.T, e *env, _ request, r response) {
				var ex updates.Explanation
				decode(t, r, &ex)
				if ex.DeviceID != e.A.Device.ID || ex.DeviceGroup != e.A.Group.Name || ex.Deployment == nil || ex.Deployment.ID != e.A.Deployment.ID {
					t.Errorf("update status %+v; want tenant A's device in its Pilot group under its fixture deployment", ex)
				}
				if ex.LastCheck != nil || !slices.ContainsFunc(ex.Reasons, func(s string) bool { return strings.Contains(s, "never checked") }) {
					t.Errorf("update status %+v; want the reason that the device never checked", ex)
				}
			},
			bad:         inA("/devices/xyz/update-status", nil),
			noForbidden: readerIsLowest,
			cross: []crossCase{{name: "the other tenant's device", req: func(_ *testing.T, e *env) request {
				return request{path: e.A.path("/devices/" + e.B.Device.ID + "/update-status")}
			}}},
		},
		"POST /api/v1/tenants/{tenant}/devices/{device}/check-now": {
			status: 204,
			valid: func(t *testing.T, e *env) request {
				d := e.newClaimedDevice(t, &e.A)
				return request{path: e.A.path("/devices/" + d.ID + "/check-now"), intact: e.checkNowIs(e.operator, &e.A, d.ID, false)}
			},
			check: func(t *testing.T, e *env, req request, _ response) {
				e.checkNowIs(e.readerA, &e.A, lastSegment(strings.TrimSuffix(req.path, "/check-now")), true)(t)
			},
			bad: func(_ *testing.T, e *env) request {
				return request{path: e.A.path("/devices/" + e.A.Device.ID + "/check-now?force=1")}
			},
			cross: []crossCase{{name: "the other tenant's device", req: func(_ *testing.T, e *env) request {
				return request{path: e.A.path("/devices/" + e.B.Device.ID + "/check-now"), intact: e.checkNowIs(e.adminB, &e.B, e.B.Device.ID, false)}
			}}},
		},

		// ---- the TUF repository ----
		"GET /api/v1/tenants/{tenant}/tuf/root.json": {
			status: 200,
			raw:    "application/json",
			valid:  inA("/tuf/root.json", nil),
			check: func(t *testing.T, e *env, _ request, r response) {
				root := parseRoot(t, r.Body)
				for _, role := range []string{"root", "targets", "snapshot", "timestamp"} {
					if len(root.Signed.Roles[role].KeyIDs) == 0 {
						t.Errorf("tenant A's root has no keys for role %s", role)
					}
				}
				if len(root.Signatures) == 0 {
					t.Errorf("tenant A's root is not signed")
				}
				other := parseRoot(t, e.mustSend(t, e.adminB, "GET", request{path: e.B.path("/tuf/root.json")}, 200, nil).Body)
				if slices.Equal(root.Signed.Roles["root"].KeyIDs, other.Signed.Roles["root"].KeyIDs) {
					t.Errorf("tenants A and B share their TUF root keys %v", root.Signed.Roles["root"].KeyIDs)
				}
			},
			bad:         inA("/tuf/root.json?version=1", nil),
			noForbidden: readerIsLowest,
			cross: []crossCase{{
				name: "only this tenant's root", req: inA("/tuf/root.json", nil),
				status: 200, reason: "every tenant has a TUF repository of its own; the answer is the caller's tenant's root",
			}},
		},
		"POST /api/v1/tenants/{tenant}/tuf/rotate": {
			status: 204,
			valid: func(t *testing.T, e *env) request {
				return request{path: e.A.path("/tuf/rotate"), body: api.RotateTUFKey{Role: "timestamp"}, intact: e.rootUnchanged(t, &e.A)}
			},
			check: func(t *testing.T, e *env, _ request, _ response) {
				// Rotate once more to see what a rotation changes.
				before := parseRoot(t, e.mustSend(t, e.adminA, "GET", request{path: e.A.path("/tuf/root.json")}, 200, nil).Body)
				e.must(t, e.adminA, "POST", e.A.path("/tuf/rotate"), api.RotateTUFKey{Role: "snapshot"}, 204, nil)
				after := parseRoot(t, e.mustSend(t, e.adminA, "GET", request{path: e.A.path("/tuf/root.json")}, 200, nil).Body)
				if after.Signed.Version != before.Signed.Version+1 {
					t.Errorf("root version %d after a rotation; want %d", after.Signed.Version, before.Signed.Version+1)
				}
				if slices.Equal(after.Signed.Roles["snapshot"].KeyIDs, before.Signed.Roles["snapshot"].KeyIDs) {
					t.Errorf("rotating the snapshot key left its key ids %v", after.Signed.Roles["snapshot"].KeyIDs)
				}
				for _, role := range []string{"root", "targets", "timestamp"} {
					if !slices.Equal(after.Signed.Roles[role].KeyIDs, before.Signed.Roles[role].KeyIDs) {
						t.Errorf("rotating the snapshot key changed the %s keys", role)
					}
				}
			},
			bad:     inA("/tuf/rotate", api.RotateTUFKey{Role: "root"}),
			noCross: noResource,
		},

		"POST /api/v1/tenants/{tenant}/tuf/root-key/export": {
			status: 200,
			valid:  inA("/tuf/root-key/export", nil),
			check: func(t *testing.T, e *env, _ request, r response) {
				var b api.PEMBundle
				decode(t, r, &b)
				key := parseRootKey(t, b.PEM)
				root := parseRoot(t, e.mustSend(t, e.readerA, "GET", request{path: e.A.path("/tuf/root.json")}, 200, nil).Body)
				if !slices.ContainsFunc(root.Signed.Roles["root"].KeyIDs, func(id string) bool { return root.Signed.Keys[id].Public() == publicPEM(t, key) }) {
					t.Errorf("the exported key is not a root key of tenant A's TUF root")
				}
			},
			bad:     inA("/tuf/root-key/export?format=der", nil),
			noCross: noResource,
		},
		"DELETE /api/v1/tenants/{tenant}/tuf/root-key": {
			status: 204,
			valid: func(t *testing.T, e *env) request {
				// The root key is gone for good: take it from a tenant of
				// its own, where tenant A's users hold their roles. Its
				// TUF repository does not exist yet; removing the key must
				// not leave the next read to make one with an online key.
				path := "/api/v1/tenants/" + e.newTenantLikeA(t).ID + "/tuf/root-key"
				return request{path: path, body: api.RemoveRootKey{Confirm: true}, intact: func(t *testing.T) {
					e.mustSend(t, e.operator, "POST", request{path: path + "/export"}, 200, nil)
				}}
			},
			check: func(t *testing.T, e *env, req request, _ response) {
				r := e.send(t, e.operator.auth(), "POST", request{path: req.path + "/export"})
				wantError(t, r, http.StatusConflict, sphere.EPrecondition)
			},
			bad:     inA("/tuf/root-key", api.RemoveRootKey{Confirm: false}),
			noCross: noResource,
		},
		"POST /api/v1/tenants/{tenant}/tuf/root/prepare": {
			status: 200,
			raw:    "application/json",
			valid:  inA("/tuf/root/prepare", nil),
			check: func(t *testing.T, e *env, req request, r response) {
				pending := parseRoot(t, r.Body)
				cur := parseRoot(t, e.mustSend(t, e.readerA, "GET", request{path: e.A.path("/tuf/root.json")}, 200, nil).Body)
				if pending.Signed.Version != cur.Signed.Version+1 || len(pending.Signatures) != 0 {
					t.Errorf("pending root version %d with %d signatures; want version %d, unsigned", pending.Signed.Version, len(pending.Signatures), cur.Signed.Version+1)
				}
				again := e.mustSend(t, e.adminA, "POST", request{path: req.path}, 200, nil)
				if !bytes.Equal(again.Body, r.Body) {
					t.Errorf("preparing again made another pending root; want the one waiting")
				}
			},
			bad:     inA("/tuf/root/prepare?version=2", nil),
			noCross: noResource,
		},
		"POST /api/v1/tenants/{tenant}/tuf/root/signed": {
			status: 204,
			valid: func(t *testing.T, e *env) request {
				return request{path: e.A.path("/tuf/root/signed"), body: api.SignedRoot{Root: e.signedNextRoot(t, &e.A)}, intact: e.rootUnchanged(t, &e.A)}
			},
			check: func(t *testing.T, e *env, req request, _ response) {
				want := parseRoot(t, req.body.(api.SignedRoot).Root)
				got := parseRoot(t, e.mustSend(t, e.readerA, "GET", request{path: e.A.path("/tuf/root.json")}, 200, nil).Body)
				if got.Signed.Version != want.Signed.Version {
					t.Errorf("tenant A's root is version %d after the import; want the imported %d", got.Signed.Version, want.Signed.Version)
				}
			},
			bad: func(t *testing.T, e *env) request {
				// The pending root as prepared, without the signatures.
				pending := e.mustSend(t, e.operator, "POST", request{path: e.A.path("/tuf/root/prepare")}, 200, nil).Body
				return request{path: e.A.path("/tuf/root/signed"), body: api.SignedRoot{Root: pending}, intact: e.rootUnchanged(t, &e.A)}
			},
			noCross: noResource,
		},

		// ---- OS releases and platform keys ----
		"POST /api/v1/os-releases": {
			status: 201,
			valid: func(t *testing.T, e *env) request {
				return octets("/api/v1/os-releases", packOS(t, e.platform, "2026.8."+e.userName("")))
			},
			check: func(t *testing.T, e *env, req request, r response) {
				var rel sphere.OSRelease
				decode(t, r, &rel)
				h, err := image.ReadHeader(bytes.NewReader(req.body.([]byte)))
				if err != nil {
					t.Fatal(err)
				}
				if rel.ID != h.ImageID() || rel.Kind != "os" || rel.Version != h.Metadata.Version || rel.TenantID != "" {
					t.Errorf("OS release %+v; want image %s of the platform", rel, h.ImageID())
				}
				if lead := rel.RetailAt.Sub(rel.EvalAt); lead != 14*24*time.Hour || time.Since(rel.EvalAt) > time.Minute {
					t.Errorf("OS release on RetailEval at %v and Retail at %v; want RetailEval now and Retail 14 days later", rel.EvalAt, rel.RetailAt)
				}
				var p sphere.Page[sphere.OSRelease]
				e.must(t, e.readerA, "GET", "/api/v1/os-releases", nil, 200, &p)
				if !slices.ContainsFunc(p.Items, func(o sphere.OSRelease) bool { return o.ID == rel.ID }) {
					t.Errorf("the new OS release %s is not listed", rel.ID)
				}
				if a, _ := e.auditEntry(t, r.RequestID); a.Target != rel.ID {
					t.Errorf("audit target %q; want the new release %s", a.Target, rel.ID)
				}
			},
			bad: func(t *testing.T, e *env) request {
				return octets("/api/v1/os-releases", packApp(t, e.platform, newGUID(t), "not an OS", "1.0.0"))
			},
			noOtherTenant: notTenant,
			noCross:       operatorWide,
		},
		"GET /api/v1/os-releases": {
			status: 200,
			valid:  plain("/api/v1/os-releases"),
			check: func(t *testing.T, _ *env, _ request, r response) {
				var p sphere.Page[sphere.OSRelease]
				decode(t, r, &p)
				if p.Items == nil {
					t.Errorf("items is null; want a list: %s", r.Body)
				}
				for _, o := range p.Items {
					if o.Kind != "os" || o.TenantID != "" {
						t.Errorf("OS release %+v is not a platform OS image", o)
					}
				}
			},
			bad:           plain("/api/v1/os-releases?feed=Retail"),
			noForbidden:   anyUser,
			noOtherTenant: notTenant,
			cross: []crossCase{{
				name: "other tenant's admin", actor: adminB, req: plain("/api/v1/os-releases"),
				status: 200, reason: "OS releases are the platform's, the same for every tenant",
			}},
		},
		"GET /api/v1/signing-keys": {
			status: 200,
			valid:  plain("/api/v1/signing-keys"),
			check: func(t *testing.T, e *env, _ request, r response) {
				var p sphere.Page[sphere.SigningKey]
				decode(t, r, &p)
				if !slices.ContainsFunc(p.Items, func(k sphere.SigningKey) bool { return k.ID == e.PlatformKey.ID }) {
					t.Errorf("platform keys %+v lack the fixture platform key %s", p.Items, e.PlatformKey.ID)
				}
				for _, k := range p.Items {
					if k.TenantID != "" {
						t.Errorf("a tenant's key %+v listed among the platform's", k)
					}
				}
			},
			bad:           plain("/api/v1/signing-keys?role=service"),
			noOtherTenant: notTenant,
			noCross:       operatorWide,
		},
		"POST /api/v1/signing-keys": {
			status: 201,
			valid: func(t *testing.T, e *env) request {
				return request{path: "/api/v1/signing-keys", body: api.AddSigningKey{Name: e.name("release key"), PublicKey: newPublicKeyPEM(t)}}
			},
			check: func(t *testing.T, e *env, _ request, r response) {
				var k sphere.SigningKey
				decode(t, r, &k)
				if k.TenantID != "" || k.Role != sphere.KeyPublisher || k.RevokedAt != nil {
					t.Errorf("platform key %+v; want an active publisher key of no tenant", k)
				}
				var p sphere.Page[sphere.SigningKey]
				e.must(t, e.operator, "GET", "/api/v1/signing-keys", nil, 200, &p)
				if !slices.ContainsFunc(p.Items, func(pk sphere.SigningKey) bool { return pk.ID == k.ID }) {
					t.Errorf("the new platform key %s is not listed", k.ID)
				}
				e.keyIs(e.operator, &e.A, k.ID, "absent")(t)
				if a, _ := e.auditEntry(t, r.RequestID); a.Target != k.ID {
					t.Errorf("audit target %q; want the new key %s", a.Target, k.ID)
				}
			},
			bad: func(*testing.T, *env) request {
				return request{path: "/api/v1/signing-keys", body: api.AddSigningKey{Name: "release", PublicKey: "-----BEGIN PUBLIC KEY-----\nnot base64\n-----END PUBLIC KEY-----\n"}}
			},
			noOtherTenant: notTenant,
			noCross:       operatorWide,
		},
		"DELETE /api/v1/signing-keys/{key}": {
			status: 200,
			valid: func(t *testing.T, e *env) request {
				var k sphere.SigningKey
				e.must(t, e.operator, "POST", "/api/v1/signing-keys", api.AddSigningKey{Name: e.name("old key"), PublicKey: newPublicKeyPEM(t)}, 201, &k)
				return request{path: "/api/v1/signing-keys/" + k.ID}
			},
			check: func(t *testing.T, e *env, req request, r response) {
				var k sphere.SigningKey
				decode(t, r, &k)
				if k.RevokedAt == nil || k.TenantID != "" {
					t.Errorf("revoked platform key %+v; want revoked_at set", k)
				}
				var p sphere.Page[sphere.SigningKey]
				e.must(t, e.operator, "GET", "/api/v1/signing-keys", nil, 200, &p)
				for _, pk := range p.Items {
					if pk.ID == k.ID && pk.RevokedAt == nil {
						t.Errorf("platform key %s still active after revocation", k.ID)
					}
				}
			},
			bad: func(t *testing.T, e *env) request {
				return request{path: "/api/v1/signing-keys/some-key?force=1"}
			},
			noOtherTenant: notTenant,
			noCross:       operatorWide,
		},
	}
}

// deploymentActionCase is the row of a deployment's pause, resume or halt
// route: it moves a fresh deployment from state from to state to.
func deploymentActionCase(action, from, to string) routeCase {
	fresh := func(t *testing.T, e *env, f *fixture, u user, reason string) request {
		d := e.deploymentIn(t, f, from)
		return request{path: f.path("/deployments/" + d.ID + "/" + action), body: api.DeploymentAction{Reason: reason},
			intact: e.deploymentIs(u, f, d.ID, from)}
	}
	return routeCase{
		status: 200,
		valid: func(t *testing.T, e *env) request {
			return fresh(t, e, &e.A, e.operator, "the canary group reports failures")
		},
		check: func(t *testing.T, e *env, req request, r response) {
			var d sphere.Deployment
			decode(t, r, &d)
			if d.State != to {
				t.Errorf("after %s the deployment is %s; want %s", action, d.State, to)
			}
			if to != sphere.DeploymentActive && (!strings.Contains(d.StateReason, e.contribA.Name) || !strings.Contains(d.StateReason, "canary")) {
				t.Errorf("state reason %q does not say who did it and why", d.StateReason)
			}
			e.deploymentIs(e.readerA, &e.A, d.ID, to)(t)
			if a, _ := e.auditEntry(t, r.RequestID); a.Target != d.ID {
				t.Errorf("audit target %q; want the deployment %s", a.Target, d.ID)
			}
			// The deployment is no longer in the state the action needs.
			again := e.send(t, e.contribA.auth(), "POST", request{path: req.path, body: api.DeploymentAction{}})
			wantError(t, again, http.StatusConflict, sphere.EPrecondition)
		},
		bad: func(t *testing.T, e *env) request {
			return fresh(t, e, &e.A, e.operator, "line\x00break")
		},
		cross: []crossCase{{name: "by id", req: func(t *testing.T, e *env) request {
			return fresh(t, e, &e.B, e.adminB, "hijacked")
		}}},
	}
}

// keyIs returns a check that f's signing keys, as u sees them, hold the
// key id in state: "active", "revoked" or "absent".
func (e *env) keyIs(u user, f *fixture, id, state string) func(t *testing.T) {
	return func(t *testing.T) {
		t.Helper()
		var p sphere.Page[sphere.SigningKey]
		e.must(t, u, "GET", f.path("/signing-keys"), nil, 200, &p)
		got := "absent"
		for _, k := range p.Items {
			if k.ID == id {
				got = "active"
				if k.RevokedAt != nil {
					got = "revoked"
				}
			}
		}
		if got != state {
			t.Errorf("signing key %s in tenant %s is %s; want %s", id, f.Tenant.Name, got, state)
		}
	}
}

// deploymentIs returns a check that f's deployment id, as u sees it, is in
// state.
func (e *env) deploymentIs(u user, f *fixture, id, state string) func(t *testing.T) {
	return func(t *testing.T) {
		t.Helper()
		var ds api.DeploymentState
		e.must(t, u, "GET", f.path("/deployments/"+id), nil, 200, &ds)
		if ds.Deployment.State != state {
			t.Errorf("deployment %s is %s; want %s", id, ds.Deployment.State, state)
		}
	}
}

// checkNowIs returns a check that f's device has (or has not) been asked
// to check for updates at its next contact.
func (e *env) checkNowIs(u user, f *fixture, deviceID string, want bool) func(t *testing.T) {
	return func(t *testing.T) {
		t.Helper()
		var ex updates.Explanation
		e.must(t, u, "GET", f.path("/devices/"+deviceID+"/update-status"), nil, 200, &ex)
		if ex.CheckNow != want {
			t.Errorf("device %s: check_now = %v, want %v", deviceID, ex.CheckNow, want)
		}
	}
}

// serviceKey returns f's service signing key: the key the service
// re-signs the tenant's images with.
func (e *env) serviceKey(t *testing.T, f *fixture) sphere.SigningKey {
	t.Helper()
	var p sphere.Page[sphere.SigningKey]
	e.must(t, e.operator, "GET", f.path("/signing-keys"), nil, 200, &p)
	for _, k := range p.Items {
		if k.Role == sphere.KeyService && k.RevokedAt == nil {
			return k
		}
	}
	t.Fatalf("tenant %s has no active service key: %+v", f.Tenant.Name, p.Items)
	return sphere.SigningKey{}
}

func (e *env) servicePublicKey(t *testing.T, f *fixture) *ecdsa.PublicKey {
	t.Helper()
	pub, _, err := sphere.ParsePublicKey("service key", []byte(e.serviceKey(t, f).PublicKey))
	if err != nil {
		t.Fatal(err)
	}
	return pub.(*ecdsa.PublicKey)
}

// imageID is the image id of a package.
func imageID(t testing.TB, pkg []byte) string {
	t.Helper()
	h, err := image.ReadHeader(bytes.NewReader(pkg))
	if err != nil {
		t.Fatal(err)
	}
	return h.ImageID()
}

// tufRoot is the part of a TUF root metadata file the tests look at.
type tufRoot struct {
	Signed struct {
		Type    string            `json:"_type"`
		Version int               `json:"version"`
		Keys    map[string]tufKey `json:"keys"`
		Roles   map[string]struct {
			KeyIDs []string `json:"keyids"`
		} `json:"roles"`
	} `json:"signed"`
	Signatures []json.RawMessage `json:"signatures"`
}

type tufKey struct {
	KeyVal struct {
		Public string `json:"public"`
	} `json:"keyval"`
}

// Public is the key's public half as PEM.
func (k tufKey) Public() string { return k.KeyVal.Public }

// parseRootKey parses an exported TUF root key: an ECDSA P-256 private
// key in PKCS#8 PEM.
func parseRootKey(t *testing.T, s string) *ecdsa.PrivateKey {
	t.Helper()
	b, rest := pem.Decode([]byte(s))
	if b == nil || b.Type != "PRIVATE KEY" || len(bytes.TrimSpace(rest)) != 0 {
		t.Fatalf("not one PKCS#8 PEM block: %.40q", s)
	}
	k, err := x509.ParsePKCS8PrivateKey(b.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	ek, ok := k.(*ecdsa.PrivateKey)
	if !ok || ek.Curve != elliptic.P256() {
		t.Fatalf("the root key is %T; want ECDSA P-256", k)
	}
	return ek
}

// signedNextRoot exports f's TUF root key, prepares the next root and
// signs it with that key, as an operator does on their own machine.
func (e *env) signedNextRoot(t *testing.T, f *fixture) json.RawMessage {
	t.Helper()
	var key api.PEMBundle
	e.must(t, e.operator, "POST", f.path("/tuf/root-key/export"), nil, 200, &key)
	pending := e.mustSend(t, e.operator, "POST", request{path: f.path("/tuf/root/prepare")}, 200, nil).Body
	signed, err := tufrepo.SignRoot(pending, []byte(key.PEM))
	if err != nil {
		t.Fatalf("tufrepo.SignRoot: %v", err)
	}
	return signed
}

// rootUnchanged returns a check that f's TUF root is as it is now.
func (e *env) rootUnchanged(t *testing.T, f *fixture) func(t *testing.T) {
	t.Helper()
	before := e.mustSend(t, e.operator, "GET", request{path: f.path("/tuf/root.json")}, 200, nil).Body
	return func(t *testing.T) {
		t.Helper()
		after := e.mustSend(t, e.operator, "GET", request{path: f.path("/tuf/root.json")}, 200, nil).Body
		if !bytes.Equal(before, after) {
			t.Errorf("a refused request changed tenant %s's TUF root", f.Tenant.Name)
		}
	}
}

func parseRoot(t *testing.T, b []byte) tufRoot {
	t.Helper()
	var r tufRoot
	if err := json.Unmarshal(b, &r); err != nil || r.Signed.Type != "root" || r.Signed.Version < 1 {
		t.Fatalf("not TUF root metadata (%v): %s", err, b)
	}
	return r
}

// lastSegment is the last segment of a path.
func lastSegment(path string) string { return path[strings.LastIndexByte(path, '/')+1:] }
