package server

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/opensphere/sphere"
	"github.com/opensphere/sphere/api"
	"github.com/opensphere/sphere/ca"
)

// TestAttestAdminInput sends the attestation admin routes (tenant CAs,
// revocation, the measurement allowlist) requests they must refuse, beyond
// the one bad request of each route's row in routeCases: each gets a clear
// 4xx in the one error shape, changes nothing, and is audited when it was
// a mutating call.
func TestAttestAdminInput(t *testing.T) {
	t.Parallel()
	const missingID = "01900000-0000-7000-8000-000000000000"
	deviceIn := func(suffix string) func(*testing.T, *env) string {
		return func(_ *testing.T, e *env) string { return e.A.path("/devices/" + e.A.Device.ID + suffix) }
	}
	digest := strings.Repeat("ab", 32)
	cases := []inputCase{
		// Proofs of possession.
		{name: "proof/code of 65 characters", as: adminA, path: pathInA("/ca-certificates/active/proof"), body: api.CreateProof{Code: strings.Repeat("c", 65)}, status: 400, code: sphere.EInvalid, msg: "1 to 64"},
		{name: "proof/code not printable", as: adminA, path: pathInA("/ca-certificates/active/proof"), body: api.CreateProof{Code: "line\nbreak"}, status: 400, code: sphere.EInvalid, msg: "printable"},
		{name: "proof/code not ASCII", as: adminA, path: pathInA("/ca-certificates/active/proof"), body: api.CreateProof{Code: "café"}, status: 400, code: sphere.EInvalid, msg: "printable"},
		{name: "proof/no body", as: adminA, path: pathInA("/ca-certificates/active/proof"), status: 400, code: sphere.EInvalid, msg: "empty"},
		{name: "proof/unknown CA", as: adminA, path: pathInA("/ca-certificates/" + missingID + "/proof"), body: api.CreateProof{Code: "code"}, status: 404, code: sphere.ENotFound, msg: missingID},
		{name: "ca/unknown", as: readerA, method: "GET", path: pathInA("/ca-certificates/" + missingID), status: 404, code: sphere.ENotFound, msg: missingID},
		{name: "ca/list with a body", as: readerA, method: "GET", path: pathInA("/ca-certificates"), body: `{}`, status: 400, code: sphere.EInvalid, msg: "no body"},

		// Revocation.
		{name: "revoke/no body", as: adminA, path: deviceIn("/revoke"), status: 400, code: sphere.EInvalid, msg: "empty"},
		{name: "revoke/reason too long", as: adminA, path: deviceIn("/revoke"), body: api.RevokeDevice{Reason: strings.Repeat("r", sphere.MaxDescriptionLen+1)}, status: 400, code: sphere.EInvalid, msg: "at most"},
		{name: "revoke/reason with control characters", as: adminA, path: deviceIn("/revoke"), body: api.RevokeDevice{Reason: "lost\x00"}, status: 400, code: sphere.EInvalid, msg: "control"},
		{name: "revoke/device id not hex", as: adminA, path: pathInA("/devices/" + strings.Repeat("g", 64) + "/revoke"), body: api.RevokeDevice{Reason: "lost"}, status: 400, code: sphere.EInvalid, msg: "64 lowercase hex"},
		{name: "revoke/unknown device", as: adminA, path: pathInA("/devices/" + digest + "/revoke"), body: api.RevokeDevice{Reason: "lost"}, status: 404, code: sphere.ENotFound, msg: digest},
		{name: "unrevoke/not revoked", as: adminA, path: deviceIn("/unrevoke"), status: 409, code: sphere.EPrecondition, msg: "not revoked"},
		{name: "unrevoke/with a body", as: adminA, path: deviceIn("/unrevoke"), body: `{"reason":"found"}`, status: 400, code: sphere.EInvalid, msg: "no body"},

		// The allowlist.
		{name: "measurement/digest not hex", path: pathInA("/measurements"), body: api.AllowMeasurement{Type: "agent", Digest: "xyz"}, status: 400, code: sphere.EInvalid, msg: "64-hex"},
		{name: "measurement/digest of 63 characters", path: pathInA("/measurements"), body: api.AllowMeasurement{Type: "agent", Digest: digest[:63]}, status: 400, code: sphere.EInvalid, msg: "64-hex"},
		{name: "measurement/no type", path: pathInA("/measurements"), body: api.AllowMeasurement{Digest: digest}, status: 400, code: sphere.EInvalid, msg: "agent, config"},
		{name: "measurement/type in capitals", path: pathInA("/measurements"), body: api.AllowMeasurement{Type: "Agent", Digest: digest}, status: 400, code: sphere.EInvalid, msg: "agent, config"},
		{name: "measurement/unknown status", path: pathInA("/measurements"), body: api.AllowMeasurement{Type: "agent", Digest: digest, Status: "retired"}, status: 400, code: sphere.EInvalid, msg: `"retired"`},
		{name: "measurement/name too long", path: pathInA("/measurements"), body: api.AllowMeasurement{Type: "agent", Digest: digest, Name: strings.Repeat("n", sphere.MaxDescriptionLen+1)}, status: 400, code: sphere.EInvalid, msg: "at most"},
		{name: "measurement/digest as a number", path: pathInA("/measurements"), body: `{"type":"agent","digest":7}`, status: 400, code: sphere.EInvalid, msg: `"digest"`},
		{name: "measurement/remove unknown", as: adminA, method: "DELETE", path: pathInA("/measurements/" + missingID), status: 404, code: sphere.ENotFound, msg: missingID},
		{name: "measurement/remove as Contributor", method: "DELETE", path: func(_ *testing.T, e *env) string { return e.A.path("/measurements/" + e.A.Measurement.ID) }, status: 403, code: sphere.EPermission, msg: "Administrator"},
		{name: "measurements/negative page size", as: readerA, method: "GET", path: pathInA("/measurements?page_size=-1"), status: 400, code: sphere.EInvalid, msg: "page_size"},
		{name: "measurements/unknown parameter", as: readerA, method: "GET", path: pathInA("/measurements?type=agent"), status: 400, code: sphere.EInvalid, msg: `"type"`},
		{name: "measurements/page token of another list", as: readerA, method: "GET", path: func(t *testing.T, e *env) string {
			var p sphere.Page[sphere.Product]
			e.newProduct(t, &e.A)
			e.must(t, e.readerA, "GET", e.A.path("/products?page_size=1"), nil, 200, &p)
			return e.A.path("/measurements?page_token=" + p.NextPageToken)
		}, status: 400, code: sphere.EInvalid, msg: "page_token"},
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
				req := request{path: c.path(t, e), body: c.body}
				e.refused(t, u, method, req, c.status, c.code, c.msg, e.attestSnapshot)
			})
		}
	})
}

// attestSnapshot is snapshot (input_test.go) plus what the attestation
// admin routes change: each fixture tenant's CAs and allowlist.
func (e *env) attestSnapshot(t *testing.T) map[string]string {
	t.Helper()
	out := e.snapshot(t)
	ctx := context.Background()
	for _, f := range []*fixture{&e.A, &e.B} {
		cas, err := e.store.TenantCAs(ctx, f.Tenant.ID)
		if err != nil {
			t.Fatalf("snapshot: tenant %s's CAs: %v", f.Tenant.Name, err)
		}
		var ids []string
		for _, c := range cas {
			ids = append(ids, c.ID)
		}
		out[f.Tenant.Name+" CAs"] = strings.Join(ids, ",")
		var p sphere.Page[json.RawMessage]
		e.must(t, e.operator, "GET", f.path("/measurements?page_size=1000"), nil, 200, &p)
		b, _ := json.Marshal(p.Items)
		out[f.Tenant.Name+" measurements"] = string(b)
	}
	return out
}

// TestAllowMeasurementAgain checks that allowing a digest the allowlist
// already holds changes that entry's status and name instead of adding a
// second one, and that removing it takes it off the list.
func TestAllowMeasurementAgain(t *testing.T) {
	t.Parallel()
	eachDialect(t, func(t *testing.T, e *env) {
		first := e.newMeasurement(t, &e.A)
		var again sphere.AllowedMeasurement
		e.must(t, e.contribA, "POST", e.A.path("/measurements"),
			api.AllowMeasurement{Type: first.Type, Digest: first.Digest, Name: "superseded", Status: sphere.MeasurementDeprecated}, 201, &again)
		if again.ID != first.ID || again.Status != sphere.MeasurementDeprecated || again.Name != "superseded" || !again.CreatedAt.Equal(first.CreatedAt) {
			t.Errorf("allowing %s again gave %+v; want entry %s deprecated and renamed", first.Digest, again, first.ID)
		}
		var config sphere.AllowedMeasurement
		e.must(t, e.contribA, "POST", e.A.path("/measurements"), api.AllowMeasurement{Type: "config", Digest: first.Digest}, 201, &config)
		if config.ID == first.ID || config.Status != sphere.MeasurementAllowed {
			t.Errorf("the same digest as a config gave %+v; want a new allowed entry, not agent entry %s", config, first.ID)
		}
		e.must(t, e.adminA, "DELETE", e.A.path("/measurements/"+first.ID), nil, 204, nil)
		e.measurementListed(e.readerA, &e.A, first.ID, false)(t)
		e.measurementListed(e.readerA, &e.A, config.ID, true)(t)
		r := e.send(t, e.adminA.auth(), "DELETE", request{path: e.A.path("/measurements/" + first.ID)})
		wantError(t, r, http.StatusNotFound, sphere.ENotFound)
	})
}

// TestRevokeRoundTrip checks revoking, revoking again (the newer reason
// wins) and unrevoking one device, and that a revoked device is shown
// revoked to the tenant's Reader.
func TestRevokeRoundTrip(t *testing.T) {
	t.Parallel()
	eachDialect(t, func(t *testing.T, e *env) {
		d := e.newClaimedDevice(t, &e.A)
		path := e.A.path("/devices/" + d.ID)
		e.must(t, e.adminA, "POST", path+"/revoke", api.RevokeDevice{Reason: "lost"}, 200, nil)
		var again sphere.Device
		e.must(t, e.adminA, "POST", path+"/revoke", api.RevokeDevice{Reason: "stolen"}, 200, &again)
		if again.RevokedAt == nil || again.RevokedReason != "stolen" {
			t.Errorf("revoking again gave %+v; want it revoked for the newer reason", again)
		}
		e.unchangedFor(e.readerA, path, "revoked_reason", "stolen")(t)
		var back sphere.Device
		e.must(t, e.adminA, "POST", path+"/unrevoke", nil, 200, &back)
		if back.RevokedAt != nil || back.RevokedReason != "" || back.TenantID != e.A.Tenant.ID || back.DeviceGroupID != e.A.Group.ID {
			t.Errorf("unrevoked device %+v; want it as it was before, in tenant A's Pilot group", back)
		}
		e.unchangedFor(e.readerA, path, "revoked_at", nil)(t)
	})
}

// TestFirstCAOnce checks that many first reads of a new tenant's CAs at
// once make exactly one CA between them.
func TestFirstCAOnce(t *testing.T) {
	t.Parallel()
	eachDialect(t, func(t *testing.T, e *env) {
		var tn sphere.Tenant
		e.must(t, e.operator, "POST", "/api/v1/tenants", api.CreateTenant{Name: "Fresh"}, 201, &tn)
		paths := []string{"/ca-certificates", "/ca-certificates/chain", "/ca-certificates/active"}
		var wg sync.WaitGroup
		for i := range 12 {
			wg.Go(func() {
				// Not e.send: it may fail the test, which only the test's
				// own goroutine may do.
				path := "/api/v1/tenants/" + tn.ID + paths[i%len(paths)]
				req, err := http.NewRequest("GET", e.url+path, nil)
				if err != nil {
					t.Error(err)
					return
				}
				req.Header.Set("Authorization", e.operator.auth())
				resp, err := e.http.Do(req)
				if err != nil {
					t.Errorf("GET %s: %v", path, err)
					return
				}
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					t.Errorf("GET %s: status %d", path, resp.StatusCode)
				}
			})
		}
		wg.Wait()
		var p sphere.Page[api.CACertificate]
		e.must(t, e.operator, "GET", "/api/v1/tenants/"+tn.ID+"/ca-certificates", nil, 200, &p)
		if len(p.Items) != 1 || p.Items[0].State != ca.StateActive {
			t.Errorf("after concurrent first reads the tenant has CAs %+v; want exactly one, Active", p.Items)
		}
	})
}
