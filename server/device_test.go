package server

import (
	"encoding/json"
	"maps"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/opensphere/sphere"
	"github.com/opensphere/sphere/api"
	"github.com/opensphere/sphere/attest"
	"github.com/opensphere/sphere/rot"
	"github.com/opensphere/sphere/updates"
)

// The device API tests here need no root of trust: they check what the
// service answers before any evidence is verified. Attestation end to end,
// with a TPM simulator, is tested in package attest and by the agent.

// TestDeviceChallenge checks that any well-formed device id gets a fresh
// challenge valid for attest.ChallengeTTL, without credentials and without
// revealing whether the device is registered, and that a malformed id is
// refused.
func TestDeviceChallenge(t *testing.T) {
	t.Parallel()
	eachDialect(t, func(t *testing.T, e *env) {
		unregistered := strings.Repeat("ab", 32)
		for _, c := range []struct {
			name, deviceID string
		}{
			{"ok/registered and claimed", e.A.Device.ID},
			{"ok/unregistered", unregistered},
		} {
			t.Run(c.name, func(t *testing.T) {
				before := time.Now()
				r := e.send(t, "", "POST", request{path: "/device/v1/challenge", body: api.ChallengeRequest{DeviceID: c.deviceID}})
				after := time.Now()
				if r.Status != http.StatusOK {
					t.Fatalf("status %d, want 200; body: %s", r.Status, r.Body)
				}
				var ch attest.Challenge
				decode(t, r, &ch)
				raw, err := attest.DecodeNonce(ch.Nonce)
				if err != nil || len(raw) < 32 {
					t.Errorf("nonce %q is not base64url of at least 32 bytes: %v", ch.Nonce, err)
				}
				// The server stamps the challenge with its own clock,
				// which may round to the millisecond.
				lo, hi := before.Add(attest.ChallengeTTL-time.Second), after.Add(attest.ChallengeTTL+time.Second)
				if ch.ExpiresAt.Before(lo) || ch.ExpiresAt.After(hi) {
					t.Errorf("expires_at %v; want about %v from now (between %v and %v)", ch.ExpiresAt, attest.ChallengeTTL, lo, hi)
				}
				var second attest.Challenge
				e.must(t, user{}, "POST", "/device/v1/challenge", api.ChallengeRequest{DeviceID: c.deviceID}, 200, &second)
				if second.Nonce == ch.Nonce {
					t.Errorf("two challenges for %s share the nonce %q", c.deviceID, ch.Nonce)
				}
				if a, ok := e.auditEntry(t, r.RequestID); ok {
					t.Errorf("a challenge was audited: %+v", a)
				}
			})
		}

		for _, c := range []struct {
			name string
			body any
		}{
			{"error/empty id", api.ChallengeRequest{}},
			{"error/short id", api.ChallengeRequest{DeviceID: "abc"}},
			{"error/65 characters", api.ChallengeRequest{DeviceID: unregistered + "a"}},
			{"error/uppercase", api.ChallengeRequest{DeviceID: strings.ToUpper(unregistered)}},
			{"error/not hex", api.ChallengeRequest{DeviceID: strings.Repeat("g", 64)}},
			{"error/unknown field", `{"device_id":"` + unregistered + `","tenant":"Default"}`},
			{"error/id not a string", `{"device_id":7}`},
			{"error/no body", nil},
		} {
			t.Run(c.name, func(t *testing.T) {
				r := e.send(t, "", "POST", request{path: "/device/v1/challenge", body: c.body})
				wantError(t, r, http.StatusBadRequest, sphere.EInvalid)
			})
		}
	})
}

// TestDeviceWhoamiNeedsCertificate checks that the device API authenticates
// devices only by their certificate: without one, and with an API token
// instead, the answer is 401 in the one error shape.
func TestDeviceWhoamiNeedsCertificate(t *testing.T) {
	t.Parallel()
	eachDialect(t, func(t *testing.T, e *env) {
		for _, c := range []struct {
			name, auth string
		}{
			{"no credentials", ""},
			{"an operator's API token", e.operator.auth()},
		} {
			t.Run(c.name, func(t *testing.T) {
				r := e.send(t, c.auth, "GET", request{path: "/device/v1/whoami"})
				msg := wantError(t, r, http.StatusUnauthorized, sphere.EUnauthenticated)
				if !strings.Contains(msg, "certificate") {
					t.Errorf("message %q does not say that a device certificate is needed", msg)
				}
			})
		}
	})
}

// TestDeviceUpdateRoutesNeedCertificate checks that the update routes of
// the device API (the update check, TUF metadata and image targets) answer
// 401 to a caller without a device certificate, whatever it names: the
// fixture device's group, its image, or an API token instead. Mutual TLS
// with real device certificates is tested end to end in package agent.
func TestDeviceUpdateRoutesNeedCertificate(t *testing.T) {
	t.Parallel()
	eachDialect(t, func(t *testing.T, e *env) {
		target := "/device/v1/targets/groups/" + e.A.Group.ID + "/" + e.A.Image.BlobSHA256 + "." + e.A.Image.ID + ".pkg"
		cases := []struct {
			name, method string
			req          request
		}{
			{"check", "POST", request{path: "/device/v1/updates/check", body: updates.Report{Components: []updates.Component{}}}},
			{"check without a body", "POST", request{path: "/device/v1/updates/check"}},
			{"trusted root", "GET", request{path: "/device/v1/tuf/1.root.json"}},
			{"timestamp", "GET", request{path: "/device/v1/tuf/timestamp.json"}},
			{"group targets", "GET", request{path: "/device/v1/tuf/1.groups%2F" + e.A.Group.ID + ".json"}},
			{"image target", "GET", request{path: target}},
			{"image target range", "GET", request{path: target, header: http.Header{"Range": {"bytes=0-7"}}}},
			{"signing key", "GET", request{path: "/device/v1/updates/signing-key"}},
			{"chunk by hash", "GET", request{path: "/device/v1/chunks/" + strings.Repeat("ab", 32)}},
		}
		tested := map[string]bool{}
		for _, c := range cases {
			for _, auth := range []struct{ name, header string }{{"no credentials", ""}, {"an operator's API token", e.operator.auth()}} {
				t.Run(c.name+"/"+auth.name, func(t *testing.T) {
					r := e.send(t, auth.header, c.method, c.req)
					msg := wantError(t, r, http.StatusUnauthorized, sphere.EUnauthenticated)
					if !strings.Contains(msg, "certificate") {
						t.Errorf("message %q does not say that a device certificate is needed", msg)
					}
					for _, s := range e.A.secrets() {
						if s != "" && strings.Contains(string(r.Body), s) && !strings.Contains(c.req.path, s) {
							t.Errorf("the refusal shows %q: %s", s, r.Body)
						}
					}
				})
			}
			for _, rt := range e.srv.DeviceRoutes() {
				if rt.Method == c.method && routeMatches(rt.Path, c.req.path) {
					tested[rt.Method+" "+rt.Path] = true
				}
			}
		}
		for _, rt := range e.srv.DeviceRoutes() {
			key := rt.Method + " " + rt.Path
			isUpdate := strings.Contains(key, "/updates/") || strings.Contains(key, "/tuf/") || strings.Contains(key, "/targets/") || strings.Contains(key, "/chunks/")
			if rt.Access == AccessDevice && isUpdate && !tested[key] {
				t.Errorf("device route %s is not tried without a certificate", key)
			}
		}
	})
}

// routeMatches reports whether path matches a route pattern whose {wildcards}
// each match one path segment.
func routeMatches(pattern, path string) bool {
	ps, xs := strings.Split(pattern, "/"), strings.Split(path, "/")
	if len(ps) != len(xs) {
		return false
	}
	for i := range ps {
		if !strings.HasPrefix(ps[i], "{") && ps[i] != xs[i] {
			return false
		}
	}
	return true
}

// TestDeviceAttestMalformed checks that evidence with a part missing or out
// of shape is refused with 400 before anything is verified or recorded.
func TestDeviceAttestMalformed(t *testing.T) {
	t.Parallel()
	// complete has every part present and well formed, though nothing in
	// it would verify; each case breaks one part.
	complete := func(e *env) attest.Evidence {
		part := rot.Attestation{Attest: []byte("attest"), Signature: []byte("signature")}
		return attest.Evidence{
			DeviceID:           e.A.Device.ID,
			Challenge:          "bm90LWEtcmVhbC1ub25jZQ",
			RoT:                rot.KindTPM,
			Quote:              part,
			EventLog:           []rot.Event{{Type: "agent", Name: "/usr/bin/sphere-agent", Digest: strings.Repeat("0", 64)}},
			IdentityPublicArea: []byte("public area"),
			Certify:            part,
			CSR:                []byte("csr"),
		}
	}
	cases := []struct {
		name  string
		body  func(e *env) any
		msg   string // a part of the message that says what was wrong
		plain bool   // the message comes from the JSON decoder, not evidence validation
	}{
		{name: "empty object", body: func(*env) any { return `{}` }, msg: "device_id"},
		{name: "no device id", body: func(e *env) any { ev := complete(e); ev.DeviceID = ""; return ev }, msg: "device_id"},
		{name: "no challenge", body: func(e *env) any { ev := complete(e); ev.Challenge = ""; return ev }, msg: "challenge"},
		{name: "unknown root of trust", body: func(e *env) any { ev := complete(e); ev.RoT = "sgx"; return ev }, msg: "rot"},
		{name: "no event log", body: func(e *env) any { ev := complete(e); ev.EventLog = nil; return ev }, msg: "event log"},
		{name: "event digest not hex", body: func(e *env) any { ev := complete(e); ev.EventLog[0].Digest = "xyz"; return ev }, msg: "event 0"},
		{name: "no quote", body: func(e *env) any { ev := complete(e); ev.Quote = rot.Attestation{}; return ev }, msg: "quote"},
		{name: "quote without signature", body: func(e *env) any { ev := complete(e); ev.Quote.Signature = nil; return ev }, msg: "quote"},
		{name: "no certification", body: func(e *env) any { ev := complete(e); ev.Certify = rot.Attestation{}; return ev }, msg: "certification"},
		{name: "no identity public area", body: func(e *env) any { ev := complete(e); ev.IdentityPublicArea = nil; return ev }, msg: "certification"},
		{name: "no csr", body: func(e *env) any { ev := complete(e); ev.CSR = nil; return ev }, msg: "csr"},
		{name: "unknown field", body: func(*env) any { return `{"device_id":"x","firmware":"1.0"}` }, msg: `"firmware"`, plain: true},
		{name: "quote not base64", body: func(*env) any { return `{"quote":{"attest":"%%%"}}` }, msg: "base64", plain: true},
		{name: "not an object", body: func(*env) any { return `[]` }, msg: "JSON object", plain: true},
	}
	eachDialect(t, func(t *testing.T, e *env) {
		if c := complete(e); c.Validate() != nil {
			t.Fatalf("the complete evidence the cases start from is itself malformed: %v", c.Validate())
		}
		for _, c := range cases {
			t.Run("error/"+c.name, func(t *testing.T) {
				body := c.body(e)
				if ev, ok := body.(attest.Evidence); ok && ev.Validate() == nil {
					t.Fatalf("the case's evidence is not malformed")
				}
				before := e.snapshot(t)
				r := e.send(t, "", "POST", request{path: "/device/v1/attest", body: body})
				msg := wantError(t, r, http.StatusBadRequest, sphere.EInvalid)
				if !strings.Contains(msg, c.msg) || (!c.plain && !strings.Contains(msg, "malformed evidence")) {
					t.Errorf("message %q does not say what was wrong (%q)", msg, c.msg)
				}
				if after := e.snapshot(t); !maps.Equal(before, after) {
					t.Errorf("malformed evidence changed the store")
				}
				var d sphere.Device
				e.must(t, e.adminA, "GET", e.A.path("/devices/"+e.A.Device.ID), nil, 200, &d)
				if d.LastAttestation != nil {
					b, _ := json.Marshal(d.LastAttestation)
					t.Errorf("malformed evidence was recorded as an attestation: %s", b)
				}
			})
		}
	})
}
