package server

import (
	"encoding/json"
	"log/slog"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/opensphere/sphere"
	"github.com/opensphere/sphere/api"
	"github.com/opensphere/sphere/internal/syncbuf"
)

// TestSystemEndpoints checks what sits beside the API: health, readiness,
// metrics, the OpenAPI document, request ids and the answer to a path that
// matches no route.
func TestSystemEndpoints(t *testing.T) {
	t.Parallel()
	eachDialect(t, func(t *testing.T, e *env) {
		t.Run("healthz", func(t *testing.T) {
			var got map[string]string
			e.must(t, user{}, "GET", "/healthz", nil, 200, &got)
			if got["status"] != "ok" || got["version"] != "test" {
				t.Errorf("/healthz = %v", got)
			}
		})

		t.Run("readyz", func(t *testing.T) {
			var got map[string]string
			e.must(t, user{}, "GET", "/readyz", nil, 200, &got)
			if got["status"] != "ready" || got["database"] != e.store.Dialect() || got["database"] == "" {
				t.Errorf("/readyz = %v; want ready on %s", got, e.store.Dialect())
			}
		})

		t.Run("metrics", func(t *testing.T) {
			e.must(t, e.readerA, "GET", "/api/v1/me", nil, 200, nil)
			r := e.must(t, user{}, "GET", "/metrics", nil, 200, nil)
			body := string(r.Body)
			for _, want := range []string{
				`sphere_http_requests_total{code="200",route="GET /api/v1/me"}`,
				`sphere_http_request_duration_seconds_bucket{route="GET /api/v1/me"`,
			} {
				if !strings.Contains(body, want) {
					t.Errorf("/metrics lacks %s", want)
				}
			}
		})

		t.Run("metrics of unmatched paths", func(t *testing.T) {
			for i := range 3 {
				e.send(t, "", "GET", request{path: "/no/such/path/" + strings.Repeat("x", i)})
			}
			r := e.must(t, user{}, "GET", "/metrics", nil, 200, nil)
			if !strings.Contains(string(r.Body), `route="unmatched"`) || strings.Contains(string(r.Body), "/no/such/path") {
				t.Errorf("unmatched paths must be counted under one label, not their own")
			}
		})

		t.Run("request id", func(t *testing.T) {
			// send checks that a valid X-Request-Id is echoed; one that is
			// too long or could forge log lines is replaced.
			for _, id := range []string{strings.Repeat("a", 65), "two words", "a/b", `"quoted"`, ""} {
				req, _ := http.NewRequest("GET", e.url+"/healthz", nil)
				if id != "" {
					req.Header.Set("X-Request-Id", id)
				}
				resp, err := e.http.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				got := resp.Header.Get("X-Request-Id")
				if got == id || !validRequestID(got) {
					t.Errorf("X-Request-Id %q answered with %q; want a fresh valid id", id, got)
				}
			}
		})

		t.Run("every answer has a request id", func(t *testing.T) {
			for _, path := range []string{"/healthz", "/readyz", "/metrics", "/api/v1/openapi.json", "/api/v1/me", "/nope"} {
				req, _ := http.NewRequest("GET", e.url+path, nil)
				resp, err := e.http.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				if resp.Header.Get("X-Request-Id") == "" {
					t.Errorf("GET %s: no X-Request-Id", path)
				}
			}
		})

		t.Run("unknown path", func(t *testing.T) {
			for _, c := range []struct{ method, path string }{
				{"GET", "/api/v1/nope"},
				{"GET", "/"},
				{"POST", "/api/v2/tenants"},
				{"GET", "/api/v1/tenants/Default/widgets"},
			} {
				r := e.send(t, e.operator.auth(), c.method, request{path: c.path})
				msg := wantError(t, r, http.StatusNotFound, sphere.ENotFound)
				if !strings.Contains(msg, c.path) {
					t.Errorf("%s %s: message %q does not name the path", c.method, c.path, msg)
				}
			}
		})

		t.Run("openapi", func(t *testing.T) {
			r := e.must(t, user{}, "GET", "/api/v1/openapi.json", nil, 200, nil)
			checkOpenAPI(t, e, r.Body)
		})
	})
}

var pathParam = regexp.MustCompile(`\{([a-z_]+)\}`)

// checkOpenAPI checks the document against both route tables, the admin
// API and the device API: every route with its method, parameters and
// statuses, no operation that is not a route, unique operation ids, and
// only references that resolve.
func checkOpenAPI(t *testing.T, e *env, body []byte) {
	t.Helper()
	var doc struct {
		OpenAPI string `json:"openapi"`
		Paths   map[string]map[string]struct {
			OperationID string `json:"operationId"`
			Parameters  []struct {
				Name     string `json:"name"`
				In       string `json:"in"`
				Required bool   `json:"required"`
			} `json:"parameters"`
			RequestBody map[string]any             `json:"requestBody"`
			Responses   map[string]json.RawMessage `json:"responses"`
			// Security is absent where the document's bearer token
			// applies and [] where no token is sent (the device API).
			Security *[]json.RawMessage `json:"security"`
		} `json:"paths"`
		Components struct {
			Schemas map[string]json.RawMessage `json:"schemas"`
		} `json:"components"`
	}
	if err := json.Unmarshal(body, &doc); err != nil {
		t.Fatalf("openapi.json is not valid JSON of the expected shape: %v", err)
	}
	if !strings.HasPrefix(doc.OpenAPI, "3.") {
		t.Errorf("openapi version %q", doc.OpenAPI)
	}
	admin, device := e.srv.Routes(), e.srv.DeviceRoutes()
	if len(admin) == 0 || len(device) == 0 {
		t.Fatalf("the server has %d admin and %d device routes; want both tables filled", len(admin), len(device))
	}
	internal := map[string]*route{} // what RouteInfo does not show
	for _, rt := range slices.Concat(e.srv.routes, e.srv.deviceRoutes) {
		internal[rt.Method+" "+rt.Path] = rt
	}
	ops := map[string]string{}
	routes := map[string]bool{} // "METHOD PATH" of every route
	for _, rt := range slices.Concat(admin, device) {
		key := rt.Method + " " + rt.Path
		if routes[key] {
			t.Errorf("%s is a route twice", key)
		}
		routes[key] = true
		op, ok := doc.Paths[rt.Path][strings.ToLower(rt.Method)]
		if !ok {
			t.Errorf("openapi.json lacks %s", key)
			continue
		}
		if op.OperationID == "" {
			t.Errorf("%s has no operationId", key)
		} else if other, dup := ops[op.OperationID]; dup {
			t.Errorf("%s and %s share operationId %q; operation ids must be unique", other, key, op.OperationID)
		}
		ops[op.OperationID] = key
		var inPath, inQuery []string
		for _, p := range op.Parameters {
			switch p.In {
			case "path":
				inPath = append(inPath, p.Name)
				if !p.Required {
					t.Errorf("%s: path parameter %s is not required", key, p.Name)
				}
			case "query":
				inQuery = append(inQuery, p.Name)
			}
		}
		var wantPath []string
		for _, m := range pathParam.FindAllStringSubmatch(rt.Path, -1) {
			wantPath = append(wantPath, m[1])
		}
		if !slices.Equal(inPath, wantPath) {
			t.Errorf("%s: path parameters %v, want %v", key, inPath, wantPath)
		}
		if !slices.Equal(inQuery, rt.Query) {
			t.Errorf("%s: query parameters %v, want %v", key, inQuery, rt.Query)
		}
		// A route that takes a file (an image package) reads the raw
		// body as application/octet-stream; one that answers a file (a
		// package, TUF metadata) documents it so too.
		in := internal[key]
		wantBody := ""
		switch {
		case in.in.raw:
			wantBody = "application/octet-stream"
		case rt.HasBody:
			wantBody = "application/json"
		}
		if got := mediaTypes(op.RequestBody); got != wantBody {
			t.Errorf("%s: requestBody media types %q, want %q", key, got, wantBody)
		}
		if got, ok := op.Responses[strconv.Itoa(rt.Status)]; !ok {
			t.Errorf("%s: no %d response", key, rt.Status)
		} else {
			var resp map[string]any
			json.Unmarshal(got, &resp)
			want := "application/json"
			switch in.out {
			case noContentType:
				want = ""
			case rawContentType:
				want = "application/octet-stream"
			}
			if mt := mediaTypes(resp); mt != want {
				t.Errorf("%s: %d response media types %q, want %q", key, rt.Status, mt, want)
			}
		}
		// A device that attests sends no credentials, so it cannot be
		// refused as unauthenticated; every other route can.
		wantResp := []string{"400", "401"}
		if rt.Access == AccessDeviceOpen {
			wantResp = []string{"400"}
			if _, ok := op.Responses["401"]; ok {
				t.Errorf("%s takes no credentials but documents a 401", key)
			}
		}
		for _, s := range wantResp {
			if _, ok := op.Responses[s]; !ok {
				t.Errorf("%s: no %s response", key, s)
			}
		}
		isDevice := rt.Access == AccessDeviceOpen || rt.Access == AccessDevice
		if isDevice != strings.HasPrefix(rt.Path, "/device/v1/") {
			t.Errorf("%s: access %d does not match its API (admin under /api/v1, device under /device/v1)", key, rt.Access)
		}
		switch {
		case isDevice && (op.Security == nil || len(*op.Security) != 0):
			t.Errorf("%s: a device route must set security to [] (no bearer token); got %v", key, op.Security)
		case !isDevice && op.Security != nil:
			t.Errorf("%s: an admin route must keep the document's bearer security; got %v", key, *op.Security)
		}
	}
	for path, methods := range doc.Paths {
		for method := range methods {
			if key := strings.ToUpper(method) + " " + path; !routes[key] {
				t.Errorf("openapi.json documents %s, which is not a route of the server", key)
			}
		}
	}
	for _, ref := range regexp.MustCompile(`"\$ref":\s*"#/components/schemas/([^"]+)"`).FindAllSubmatch(body, -1) {
		if s, ok := doc.Components.Schemas[string(ref[1])]; !ok || string(s) == "null" {
			t.Errorf("$ref to schema %s, which is not defined", ref[1])
		}
	}
}

// mediaTypes lists the media types of an OpenAPI request body or response
// object (its "content"), sorted and joined by commas; "" for none.
func mediaTypes(obj map[string]any) string {
	content, _ := obj["content"].(map[string]any)
	var out []string
	for mt := range content {
		out = append(out, mt)
	}
	slices.Sort(out)
	return strings.Join(out, ",")
}

// TestAccessLogLevels: at the info level, an operator's calls and a
// device's refused calls each leave an access-log line; a device's
// successful calls, a fleet's steady traffic, do not (they are at debug,
// and counted in the metrics).
func TestAccessLogLevels(t *testing.T) {
	logs := &syncbuf.Buffer{}
	e := newServerLogging(t, openSQLite(t), logs)
	cases := []struct {
		name, method string
		req          request
		status       int
		logged       bool
	}{
		{"device ok", "POST", request{path: "/device/v1/challenge", body: api.ChallengeRequest{DeviceID: strings.Repeat("ab", 32)}}, 200, false},
		{"device refused", "POST", request{path: "/device/v1/challenge", body: api.ChallengeRequest{DeviceID: "not-a-device"}}, 400, true},
		{"device unauthenticated", "GET", request{path: "/device/v1/whoami"}, 401, true},
		{"operator ok", "GET", request{path: "/api/v1/openapi.json"}, 200, true},
		{"operator unauthenticated", "GET", request{path: "/api/v1/me"}, 401, true},
	}
	for _, c := range cases {
		resp := e.send(t, "", c.method, c.req)
		if resp.Status != c.status {
			t.Fatalf("%s: %s %s = %d, want %d", c.name, c.method, c.req.path, resp.Status, c.status)
		}
		line := "request_id=" + resp.RequestID + " "
		if got := strings.Contains(logs.String(), line); got != c.logged {
			t.Errorf("%s: access-log line at info = %v, want %v\n%s", c.name, got, c.logged, logs)
		}
	}
	if got := accessLevel(503, true); got != slog.LevelError {
		t.Errorf("a device call that failed in the service logs at %v, want error", got)
	}
}
