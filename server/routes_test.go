package server

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/opensphere/sphere"
	"github.com/opensphere/sphere/api"
	"github.com/opensphere/sphere/ca"
	"github.com/opensphere/sphere/store"
)

// TestRouteTable checks every route of the API against its row in
// routeCases: success with the route's status, 400 on bad input, 401
// without a valid token, 403 for a role below the route's, 404 (and no
// other tenant's data) across tenants, and an audit entry for every
// mutating call by an authenticated user. A route without a row fails the
// test, and so does a row without a route.
func TestRouteTable(t *testing.T) {
	t.Parallel()
	eachDialect(t, func(t *testing.T, e *env) {
		cases := routeCases()
		seen := map[string]bool{}
		for _, rt := range e.srv.Routes() {
			key := rt.Method + " " + rt.Path
			c, ok := cases[key]
			if !ok {
				t.Errorf("route %s has no row in routeCases (routes_test.go); add one that says how to call it", key)
				continue
			}
			seen[key] = true
			t.Run(key, func(t *testing.T) { testRoute(t, e, rt, c) })
		}
		for key := range cases {
			if !seen[key] {
				t.Errorf("routeCases has a row for %s, which is not a route of the server", key)
			}
		}
	})
}

// reqFunc builds a request. It may create fresh resources so that a
// request that succeeds never uses up the shared fixtures.
type reqFunc func(t *testing.T, e *env) request

// routeCase is one row of the route table test.
type routeCase struct {
	// status is the route's success status; the test checks that it is
	// the route table's.
	status int
	// valid is a request that succeeds when the route's least privileged
	// caller sends it (see env.actor). The 401, 403 and 404 cases send it
	// too, as other callers.
	valid reqFunc
	// check, if set, looks further at a successful answer.
	check func(t *testing.T, e *env, req request, r response)
	// raw is the Content-Type of a successful answer that is a file (an
	// image package, TUF metadata) rather than the API's JSON; "" for JSON.
	raw string
	// bad is a request the same caller sends that must be refused with 400.
	bad reqFunc
	// noForbidden says why no caller can be refused with 403: the route is
	// open to any user, or needs only the lowest role.
	noForbidden string
	// noOtherTenant says why the route has no tenant in its path, so that
	// tenant B's Administrator cannot be pointed at tenant A.
	noOtherTenant string
	// cross points a caller at a resource of a tenant it holds no role in.
	cross []crossCase
	// noCross says why the route has no cross case: it names no resource.
	noCross string
}

// crossCase sends a request that names another tenant's resource.
type crossCase struct {
	name  string
	actor func(e *env) user // nil: tenant A's Administrator
	req   reqFunc
	// status is 404 unless the row says otherwise, with reason.
	status int
	reason string
	check  func(t *testing.T, e *env, r response)
}

const (
	anyUser        = "any authenticated user may call it"
	readerIsLowest = "Reader is the lowest role; a user with no role in the tenant gets 404, which the other-tenant case checks"
	notTenant      = "no tenant in the path"
	operatorWide   = "operators act on the whole service; there is no tenant scope to cross"
	noResource     = "the request names no resource that could belong to another tenant"
)

// plain is a request for a fixed path without a body.
func plain(path string) reqFunc {
	return func(*testing.T, *env) request { return request{path: path} }
}

// inA is a request for a path in tenant A, with body (nil for none).
func inA(suffix string, body any) reqFunc {
	return func(_ *testing.T, e *env) request { return request{path: e.A.path(suffix), body: body} }
}

func adminB(e *env) user { return e.adminB }

// routeCases is the route table test's table: one row per route, keyed by
// "METHOD PATH" as in routes.go; the rows of the update routes are in
// update_routes_test.go.
func routeCases() map[string]routeCase {
	cases := map[string]routeCase{
		// ---- the caller ----
		"GET /api/v1/me": {
			status: 200,
			valid:  plain("/api/v1/me"),
			check: func(t *testing.T, e *env, _ request, r response) {
				var me api.Me
				decode(t, r, &me)
				want := []api.TenantRole{{TenantID: e.A.Tenant.ID, TenantName: "Default", Role: sphere.RoleReader}}
				if me.User.Name != e.readerA.Name || !slices.Equal(me.Roles, want) {
					t.Errorf("me = %+v; want user %s with roles %+v", me, e.readerA.Name, want)
				}
			},
			bad:           plain("/api/v1/me?verbose=1"),
			noForbidden:   anyUser,
			noOtherTenant: notTenant,
			cross: []crossCase{{
				name: "other tenant's admin", actor: adminB, req: plain("/api/v1/me"),
				status: 200, reason: "shows only the caller and its own roles",
			}},
		},
		"GET /api/v1/me/tokens": {
			status: 200,
			valid:  plain("/api/v1/me/tokens?page_size=10"),
			check: func(t *testing.T, e *env, _ request, r response) {
				var p sphere.Page[sphere.Token]
				decode(t, r, &p)
				for _, tok := range p.Items {
					if tok.UserID != e.readerA.ID {
						t.Errorf("token %s of user %s listed for %s", tok.ID, tok.UserID, e.readerA.Name)
					}
				}
				if strings.Contains(string(r.Body), "sph_") || strings.Contains(string(r.Body), `"hash"`) {
					t.Errorf("token list shows a secret or hash: %s", r.Body)
				}
			},
			bad:           plain("/api/v1/me/tokens?page_size=-1"),
			noForbidden:   anyUser,
			noOtherTenant: notTenant,
			cross: []crossCase{{
				name: "other tenant's admin", actor: adminB, req: plain("/api/v1/me/tokens"),
				status: 200, reason: "lists only the caller's own tokens",
			}},
		},
		"POST /api/v1/me/tokens": {
			status: 201,
			valid: func(_ *testing.T, e *env) request {
				return request{path: "/api/v1/me/tokens", body: api.CreateToken{Name: e.name("ci token"), ExpiresInHours: 24}}
			},
			check: func(t *testing.T, e *env, _ request, r response) {
				var nt api.NewToken
				decode(t, r, &nt)
				if nt.Token.ExpiresAt == nil || nt.Token.UserID != e.readerA.ID {
					t.Errorf("new token %+v: want one of %s that expires", nt.Token, e.readerA.ID)
				}
				var me api.Me
				e.must(t, user{Name: "new token", Token: nt.Secret}, "GET", "/api/v1/me", nil, 200, &me)
				if me.User.ID != e.readerA.ID {
					t.Errorf("the new token authenticates %s; want %s", me.User.Name, e.readerA.Name)
				}
			},
			bad: func(*testing.T, *env) request {
				return request{path: "/api/v1/me/tokens", body: api.CreateToken{Name: "ci", ExpiresInHours: -1}}
			},
			noForbidden:   anyUser,
			noOtherTenant: notTenant,
			noCross:       "creates a token for the caller itself; " + noResource,
		},
		"DELETE /api/v1/me/tokens/{token}": {
			status: 204,
			valid: func(t *testing.T, e *env) request {
				tok := e.newToken(t, e.readerA)
				return request{path: "/api/v1/me/tokens/" + tok.ID, intact: e.tokenListed(e.readerA, tok.ID, true)}
			},
			check: func(t *testing.T, e *env, req request, _ response) {
				id := req.path[strings.LastIndexByte(req.path, '/')+1:]
				e.tokenListed(e.readerA, id, false)(t)
			},
			bad:           plain("/api/v1/me/tokens/0190c2a4-5b6c-7d8e-9f00-112233445566?force=1"),
			noForbidden:   anyUser,
			noOtherTenant: notTenant,
			cross: []crossCase{{
				name: "another user's token", actor: adminB,
				req: func(t *testing.T, e *env) request {
					tok := e.newToken(t, e.readerA)
					return request{path: "/api/v1/me/tokens/" + tok.ID, intact: e.tokenListed(e.readerA, tok.ID, true)}
				},
			}},
		},

		// ---- tenants ----
		"GET /api/v1/tenants": {
			status: 200,
			valid:  plain("/api/v1/tenants"),
			check: func(t *testing.T, e *env, _ request, r response) {
				var p sphere.Page[sphere.Tenant]
				decode(t, r, &p)
				if len(p.Items) != 1 || p.Items[0].ID != e.A.Tenant.ID {
					t.Errorf("tenants of %s = %+v; want only tenant A", e.readerA.Name, p.Items)
				}
			},
			bad:           plain("/api/v1/tenants?page_size=-1"),
			noForbidden:   anyUser,
			noOtherTenant: notTenant,
			cross: []crossCase{
				{name: "other tenant's admin", actor: adminB, req: plain("/api/v1/tenants"), status: 200, reason: "lists only the tenants the caller holds a role in"},
				{name: "other tenant's admin by name", actor: adminB, req: plain("/api/v1/tenants?name=Default"), status: 200, reason: "a name filter matches only the caller's tenants"},
			},
		},
		"POST /api/v1/tenants": {
			status: 201,
			valid: func(_ *testing.T, e *env) request {
				return request{path: "/api/v1/tenants", body: api.CreateTenant{Name: e.name("Tenant")}}
			},
			check: func(t *testing.T, e *env, req request, r response) {
				var tn sphere.Tenant
				decode(t, r, &tn)
				if tn.Name != req.body.(api.CreateTenant).Name {
					t.Errorf("created tenant %+v; want name %q", tn, req.body.(api.CreateTenant).Name)
				}
				var roles sphere.Page[sphere.RoleAssignment]
				e.must(t, e.operator, "GET", "/api/v1/tenants/"+tn.ID+"/roles", nil, 200, &roles)
				if len(roles.Items) != 1 || roles.Items[0].UserID != e.operator.ID || roles.Items[0].Role != sphere.RoleAdministrator {
					t.Errorf("roles in the new tenant = %+v; want the operator as its Administrator", roles.Items)
				}
			},
			bad: func(*testing.T, *env) request {
				return request{path: "/api/v1/tenants", body: api.CreateTenant{Name: "Bad/Name"}}
			},
			noOtherTenant: notTenant,
			noCross:       operatorWide,
		},
		"GET /api/v1/tenants/{tenant}": {
			status: 200,
			valid:  plain("/api/v1/tenants/Default"),
			check: func(t *testing.T, e *env, _ request, r response) {
				var tn sphere.Tenant
				decode(t, r, &tn)
				if tn.ID != e.A.Tenant.ID {
					t.Errorf("tenant by name Default = %+v; want %s", tn, e.A.Tenant.ID)
				}
			},
			bad:         inA("?fields=name", nil),
			noForbidden: readerIsLowest,
			noCross:     noResource,
		},
		"PATCH /api/v1/tenants/{tenant}": {
			status: 200,
			valid: func(t *testing.T, e *env) request {
				tn := e.newTenantLikeA(t)
				return request{path: "/api/v1/tenants/" + tn.ID, body: api.UpdateTenant{Name: e.name("Renamed")},
					intact: e.unchanged("/api/v1/tenants/"+tn.ID, "name", tn.Name)}
			},
			check: func(t *testing.T, e *env, req request, r response) {
				e.unchanged(req.path, "name", req.body.(api.UpdateTenant).Name)(t)
			},
			bad:     inA("", api.UpdateTenant{Name: "Bad/Name"}),
			noCross: "the tenant itself is the resource; the other-tenant case covers it",
		},

		// ---- roles ----
		"GET /api/v1/tenants/{tenant}/roles": {
			status: 200,
			valid:  inA("/roles", nil),
			check: func(t *testing.T, e *env, _ request, r response) {
				for _, u := range []user{e.adminA, e.contribA, e.readerA} {
					if !strings.Contains(string(r.Body), `"`+u.Name+`"`) {
						t.Errorf("roles of tenant A do not list %s: %s", u.Name, r.Body)
					}
				}
			},
			bad:         inA("/roles?page_size=1001", nil),
			noForbidden: readerIsLowest,
			noCross:     noResource,
		},
		"POST /api/v1/tenants/{tenant}/roles": {
			status: 201,
			valid: func(_ *testing.T, e *env) request {
				return request{path: e.A.path("/roles"), body: api.AddRole{User: e.userName("newuser"), Role: "reader"}}
			},
			check: func(t *testing.T, e *env, _ request, r response) {
				var ra api.RoleAdded
				decode(t, r, &ra)
				if ra.Secret == "" || ra.Assignment.Role != sphere.RoleReader || ra.Assignment.TenantID != e.A.Tenant.ID {
					t.Fatalf("role added = %+v; want a Reader in tenant A with a first token", ra)
				}
				e.must(t, user{Name: ra.Assignment.UserName, Token: ra.Secret}, "GET", e.A.path(""), nil, 200, nil)
			},
			bad: inA("/roles", api.AddRole{User: "someone", Role: "Owner"}),
			cross: []crossCase{{
				name: "a member of the other tenant",
				req: func(t *testing.T, e *env) request {
					m := e.newMember(t, &e.B, sphere.RoleReader)
					return request{path: e.A.path("/roles"), body: api.AddRole{User: m.Name, Role: sphere.RoleReader}}
				},
				status: 201,
				reason: "users are global: an Administrator may add any existing user by name; the answer must show nothing of the user's other tenant and mint no token for it",
				check: func(t *testing.T, _ *env, r response) {
					var ra api.RoleAdded
					decode(t, r, &ra)
					if ra.Secret != "" {
						t.Errorf("adding an existing user returned a token secret for it")
					}
				},
			}},
		},
		"DELETE /api/v1/tenants/{tenant}/roles/{user}": {
			status: 204,
			valid: func(t *testing.T, e *env) request {
				m := e.newMember(t, &e.A, sphere.RoleReader)
				return request{path: e.A.path("/roles/" + m.Name), intact: func(t *testing.T) {
					e.must(t, m, "GET", e.A.path(""), nil, 200, nil)
				}}
			},
			check: func(t *testing.T, e *env, req request, r response) {
				var roles sphere.Page[sphere.RoleAssignment]
				e.must(t, e.adminA, "GET", e.A.path("/roles"), nil, 200, &roles)
				removed := req.path[strings.LastIndexByte(req.path, '/')+1:]
				for _, ra := range roles.Items {
					if ra.UserName == removed {
						t.Errorf("%s still holds %s in tenant A", removed, ra.Role)
					}
				}
			},
			bad: func(_ *testing.T, e *env) request {
				return request{path: e.A.path("/roles/" + e.readerA.Name + "?force=1")}
			},
			cross: []crossCase{{
				name: "the other tenant's admin",
				req: func(t *testing.T, e *env) request {
					return request{path: e.A.path("/roles/" + e.adminB.Name), intact: func(t *testing.T) {
						e.must(t, e.adminB, "GET", e.B.path(""), nil, 200, nil)
					}}
				},
			}},
		},

		// ---- products ----
		"GET /api/v1/tenants/{tenant}/products": {
			status: 200,
			valid:  inA("/products?name=kettle", nil),
			check: func(t *testing.T, e *env, _ request, r response) {
				var p sphere.Page[sphere.Product]
				decode(t, r, &p)
				if len(p.Items) != 1 || p.Items[0].ID != e.A.Product.ID {
					t.Errorf("products named like kettle = %+v; want tenant A's product", p.Items)
				}
			},
			bad:         inA("/products?page_token=bogus", nil),
			noForbidden: readerIsLowest,
			noCross:     noResource,
		},
		"POST /api/v1/tenants/{tenant}/products": {
			status: 201,
			valid: func(_ *testing.T, e *env) request {
				return request{path: e.A.path("/products"), body: api.CreateProduct{Name: e.name("Product"), Description: "made by the route test"}}
			},
			check: func(t *testing.T, e *env, _ request, r response) {
				var p sphere.Product
				decode(t, r, &p)
				if p.TenantID != e.A.Tenant.ID {
					t.Errorf("product %+v not in tenant A", p)
				}
				var groups sphere.Page[sphere.DeviceGroup]
				e.must(t, e.readerA, "GET", e.A.path("/device-groups?product="+p.ID), nil, 200, &groups)
				if len(groups.Items) != len(sphere.DefaultDeviceGroups) {
					t.Errorf("new product has %d device groups; want the %d default ones", len(groups.Items), len(sphere.DefaultDeviceGroups))
				}
			},
			bad:     inA("/products", api.CreateProduct{Name: strings.Repeat("a", 51)}),
			noCross: noResource,
		},
		"GET /api/v1/tenants/{tenant}/products/{product}": {
			status: 200,
			valid: func(_ *testing.T, e *env) request {
				return request{path: e.A.path("/products/" + url.PathEscape(e.A.Product.Name))}
			},
			bad: func(_ *testing.T, e *env) request {
				return request{path: e.A.path("/products/" + e.A.Product.ID + "?name=x")}
			},
			noForbidden: readerIsLowest,
			cross: []crossCase{
				{name: "by id", req: func(_ *testing.T, e *env) request { return request{path: e.A.path("/products/" + e.B.Product.ID)} }},
				{name: "by name", req: func(_ *testing.T, e *env) request {
					return request{path: e.A.path("/products/" + url.PathEscape(e.B.Product.Name))}
				}},
			},
		},
		"PATCH /api/v1/tenants/{tenant}/products/{product}": {
			status: 200,
			valid: func(t *testing.T, e *env) request {
				p := e.newProduct(t, &e.A)
				path := e.A.path("/products/" + p.ID)
				return request{path: path, body: map[string]string{"description": "changed"}, intact: e.unchanged(path, "description", "")}
			},
			check: func(t *testing.T, e *env, req request, _ response) {
				e.unchanged(req.path, "description", "changed")(t)
			},
			bad: func(_ *testing.T, e *env) request {
				return request{path: e.A.path("/products/" + e.A.Product.ID), body: "{}"}
			},
			cross: []crossCase{{name: "by id", req: func(_ *testing.T, e *env) request {
				return request{path: e.A.path("/products/" + e.B.Product.ID), body: map[string]string{"description": "hijacked"},
					intact: e.unchangedFor(e.adminB, e.B.path("/products/"+e.B.Product.ID), "description", "fixture")}
			}}},
		},
		"DELETE /api/v1/tenants/{tenant}/products/{product}": {
			status: 204,
			valid: func(t *testing.T, e *env) request {
				path := e.A.path("/products/" + e.newProduct(t, &e.A).ID)
				return request{path: path, intact: e.exists(e.operator, path, 200)}
			},
			check: func(t *testing.T, e *env, req request, _ response) { e.exists(e.operator, req.path, 404)(t) },
			bad: func(_ *testing.T, e *env) request {
				return request{path: e.A.path("/products/" + e.A.Product.ID + "?force=true")}
			},
			cross: []crossCase{{name: "by id", req: func(t *testing.T, e *env) request {
				p := e.newProduct(t, &e.B)
				return request{path: e.A.path("/products/" + p.ID), intact: e.exists(e.adminB, e.B.path("/products/"+p.ID), 200)}
			}}},
		},

		// ---- device groups ----
		"GET /api/v1/tenants/{tenant}/device-groups": {
			status: 200,
			valid: func(_ *testing.T, e *env) request {
				return request{path: e.A.path("/device-groups?product=" + e.A.Product.ID)}
			},
			check: func(t *testing.T, e *env, _ request, r response) {
				var p sphere.Page[sphere.DeviceGroup]
				decode(t, r, &p)
				if n := len(p.Items); n != len(sphere.DefaultDeviceGroups)+1 {
					t.Errorf("tenant A's product has %d device groups; want the defaults and Pilot", n)
				}
			},
			bad:         inA("/device-groups?page_size=-1", nil),
			noForbidden: readerIsLowest,
			cross: []crossCase{{name: "product filter", req: func(_ *testing.T, e *env) request {
				return request{path: e.A.path("/device-groups?product=" + e.B.Product.ID)}
			}}},
		},
		"POST /api/v1/tenants/{tenant}/device-groups": {
			status: 201,
			valid: func(_ *testing.T, e *env) request {
				return request{path: e.A.path("/device-groups"), body: api.CreateDeviceGroup{
					Product: e.A.Product.ID, Name: e.name("Group"), OSFeed: "RetailEval", UpdatePolicy: "noupdates"}}
			},
			check: func(t *testing.T, e *env, _ request, r response) {
				var g sphere.DeviceGroup
				decode(t, r, &g)
				if g.TenantID != e.A.Tenant.ID || g.ProductID != e.A.Product.ID || g.OSFeed != sphere.FeedRetailEval || g.UpdatePolicy != sphere.PolicyNoUpdates {
					t.Errorf("created group %+v", g)
				}
			},
			bad: func(_ *testing.T, e *env) request {
				return request{path: e.A.path("/device-groups"), body: api.CreateDeviceGroup{Product: e.A.Product.ID, Name: "Beta Group", OSFeed: "Beta"}}
			},
			cross: []crossCase{{name: "in the other tenant's product", req: func(t *testing.T, e *env) request {
				return request{path: e.A.path("/device-groups"), body: api.CreateDeviceGroup{Product: e.B.Product.ID, Name: e.name("Group")},
					intact: e.countIs(e.adminB, e.B.path("/device-groups?product="+e.B.Product.ID), len(sphere.DefaultDeviceGroups)+1)}
			}}},
		},
		"GET /api/v1/tenants/{tenant}/device-groups/{group}": {
			status: 200,
			valid:  func(_ *testing.T, e *env) request { return request{path: e.A.path("/device-groups/" + e.A.Group.ID)} },
			bad: func(_ *testing.T, e *env) request {
				return request{path: e.A.path("/device-groups/" + e.A.Group.ID + "?x=1")}
			},
			noForbidden: readerIsLowest,
			cross: []crossCase{{name: "by id", req: func(_ *testing.T, e *env) request {
				return request{path: e.A.path("/device-groups/" + e.B.Group.ID)}
			}}},
		},
		"PATCH /api/v1/tenants/{tenant}/device-groups/{group}": {
			status: 200,
			valid: func(t *testing.T, e *env) request {
				path := e.A.path("/device-groups/" + e.newGroup(t, &e.A).ID)
				return request{path: path, body: map[string]any{"update_policy": "NoUpdates", "require_hardware_rot": true},
					intact: e.unchanged(path, "update_policy", "UpdateAll")}
			},
			check: func(t *testing.T, e *env, req request, _ response) {
				e.unchanged(req.path, "update_policy", "NoUpdates")(t)
			},
			bad: func(_ *testing.T, e *env) request {
				return request{path: e.A.path("/device-groups/" + e.A.Group.ID), body: map[string]string{"update_policy": "Sometimes"}}
			},
			cross: []crossCase{{name: "by id", req: func(_ *testing.T, e *env) request {
				return request{path: e.A.path("/device-groups/" + e.B.Group.ID), body: map[string]string{"description": "hijacked"},
					intact: e.unchangedFor(e.adminB, e.B.path("/device-groups/"+e.B.Group.ID), "description", "")}
			}}},
		},
		"DELETE /api/v1/tenants/{tenant}/device-groups/{group}": {
			status: 204,
			valid: func(t *testing.T, e *env) request {
				path := e.A.path("/device-groups/" + e.newGroup(t, &e.A).ID)
				return request{path: path, intact: e.exists(e.operator, path, 200)}
			},
			check: func(t *testing.T, e *env, req request, _ response) { e.exists(e.operator, req.path, 404)(t) },
			bad: func(_ *testing.T, e *env) request {
				return request{path: e.A.path("/device-groups/" + e.A.Group.ID + "?force=1")}
			},
			cross: []crossCase{{name: "by id", req: func(t *testing.T, e *env) request {
				g := e.newGroup(t, &e.B)
				return request{path: e.A.path("/device-groups/" + g.ID), intact: e.exists(e.adminB, e.B.path("/device-groups/"+g.ID), 200)}
			}}},
		},

		// ---- devices ----
		"POST /api/v1/devices": {
			status: 201,
			valid:  func(t *testing.T, _ *env) request { return request{path: "/api/v1/devices", body: newRegistration(t)} },
			check: func(t *testing.T, e *env, req request, r response) {
				var d sphere.Device
				decode(t, r, &d)
				_, der, err := sphere.ParsePublicKey("identity", []byte(req.body.(api.RegisterDevice).IdentityPublicKey))
				if err != nil {
					t.Fatal(err)
				}
				if d.ID != sphere.DeviceID(der) || d.TenantID != "" || d.ClaimedAt != nil {
					t.Errorf("registered device %+v; want id %s, unclaimed", d, sphere.DeviceID(der))
				}
			},
			bad: func(t *testing.T, _ *env) request {
				return request{path: "/api/v1/devices", body: api.RegisterDevice{IdentityPublicKey: "not a key", AttestationPublicKey: newPublicKeyPEM(t)}}
			},
			noOtherTenant: notTenant,
			noCross:       "registration at manufacture happens before any tenant claims the device",
		},
		"POST /api/v1/device-batches": {
			status: 201,
			valid: func(t *testing.T, _ *env) request {
				return request{path: "/api/v1/device-batches", body: api.RegisterDevices{Devices: []api.RegisterDevice{newRegistration(t), newRegistration(t)}}}
			},
			check: func(t *testing.T, e *env, req request, r response) {
				var b api.DeviceBatch
				decode(t, r, &b)
				if b.Count != 2 || len(b.DeviceIDs) != 2 {
					t.Fatalf("batch = %+v; want 2 devices", b)
				}
				for _, id := range b.DeviceIDs {
					var d sphere.Device
					e.must(t, e.operator, "GET", "/api/v1/devices/"+id, nil, 200, &d)
					if d.TenantID != "" {
						t.Errorf("registered device %+v; want it unclaimed", d)
					}
					e.auditedDevice(t, "device.register", id, r.RequestID)
				}
			},
			bad: func(t *testing.T, e *env) request {
				// The second record is bad: the first is not registered either.
				good := newRegistration(t)
				_, der, _ := sphere.ParsePublicKey("identity", []byte(good.IdentityPublicKey))
				return request{path: "/api/v1/device-batches", body: api.RegisterDevices{Devices: []api.RegisterDevice{good,
					{IdentityPublicKey: "not a key", AttestationPublicKey: newPublicKeyPEM(t)}}},
					intact: func(t *testing.T) {
						e.must(t, e.operator, "GET", "/api/v1/devices/"+sphere.DeviceID(der), nil, 404, nil)
					}}
			},
			noOtherTenant: notTenant,
			noCross:       "registration at manufacture happens before any tenant claims the device",
		},
		"GET /api/v1/devices": {
			status: 200,
			valid:  plain("/api/v1/devices?unclaimed=false"),
			check: func(t *testing.T, e *env, _ request, r response) {
				for _, id := range []string{e.A.Device.ID, e.B.Device.ID} {
					if !strings.Contains(string(r.Body), id) {
						t.Errorf("the list of all devices lacks %s", id)
					}
				}
			},
			bad:           plain("/api/v1/devices?unclaimed=maybe"),
			noOtherTenant: notTenant,
			noCross:       operatorWide,
		},
		"GET /api/v1/devices/{device}": {
			status:        200,
			valid:         func(_ *testing.T, e *env) request { return request{path: "/api/v1/devices/" + e.B.Device.ID} },
			bad:           plain("/api/v1/devices/xyz"),
			noOtherTenant: notTenant,
			noCross:       operatorWide,
		},
		"GET /api/v1/tenants/{tenant}/devices": {
			status: 200,
			valid: func(_ *testing.T, e *env) request {
				return request{path: e.A.path("/devices?product=" + e.A.Product.ID)}
			},
			check: func(t *testing.T, e *env, _ request, r response) {
				var p sphere.Page[sphere.Device]
				decode(t, r, &p)
				for _, d := range p.Items {
					if d.TenantID != e.A.Tenant.ID || d.ProductID != e.A.Product.ID {
						t.Errorf("device %s (tenant %s, product %s) listed for tenant A's product", d.ID, d.TenantID, d.ProductID)
					}
				}
				if !strings.Contains(string(r.Body), e.A.Device.ID) {
					t.Errorf("tenant A's device list lacks its fixture device")
				}
			},
			bad:         inA("/devices?unassigned=maybe", nil),
			noForbidden: readerIsLowest,
			cross: []crossCase{
				{name: "group filter", req: func(_ *testing.T, e *env) request {
					return request{path: e.A.path("/devices?device_group=" + e.B.Group.ID)}
				}},
				{name: "product filter", req: func(_ *testing.T, e *env) request {
					return request{path: e.A.path("/devices?product=" + e.B.Product.ID)}
				}},
			},
		},
		"GET /api/v1/tenants/{tenant}/devices/{device}": {
			status:      200,
			valid:       func(_ *testing.T, e *env) request { return request{path: e.A.path("/devices/" + e.A.Device.ID)} },
			bad:         inA("/devices/xyz", nil),
			noForbidden: readerIsLowest,
			cross: []crossCase{{name: "by id", req: func(_ *testing.T, e *env) request {
				return request{path: e.A.path("/devices/" + e.B.Device.ID)}
			}}},
		},
		"POST /api/v1/tenants/{tenant}/devices/{device}/claim": {
			status: 200,
			valid: func(t *testing.T, e *env) request {
				d := e.registerDevice(t)
				return request{path: e.A.path("/devices/" + d.ID + "/claim"), body: api.ClaimDevice{DeviceGroup: e.A.Group.ID},
					intact: e.unchangedFor(e.operator, "/api/v1/devices/"+d.ID, "tenant_id", nil)}
			},
			check: func(t *testing.T, e *env, _ request, r response) {
				var d sphere.Device
				decode(t, r, &d)
				if d.TenantID != e.A.Tenant.ID || d.DeviceGroupID != e.A.Group.ID || d.ProductID != e.A.Product.ID || d.ClaimedAt == nil {
					t.Errorf("claimed device %+v; want it in tenant A's Pilot group", d)
				}
			},
			bad: inA("/devices/NOT-A-DEVICE-ID/claim", "{}"),
			cross: []crossCase{
				{
					name: "claimed by the other tenant",
					req: func(_ *testing.T, e *env) request {
						return request{path: e.A.path("/devices/" + e.B.Device.ID + "/claim"), body: "{}",
							intact: e.unchangedFor(e.adminB, e.B.path("/devices/"+e.B.Device.ID), "device_group_id", e.B.Group.ID)}
					},
					status: 409,
					reason: "a device belongs to one tenant: claiming one another tenant holds is a conflict the caller must be told about, without naming that tenant",
				},
				{name: "into the other tenant's group", req: func(t *testing.T, e *env) request {
					d := e.registerDevice(t)
					return request{path: e.A.path("/devices/" + d.ID + "/claim"), body: api.ClaimDevice{DeviceGroup: e.B.Group.ID},
						intact: e.unchangedFor(e.operator, "/api/v1/devices/"+d.ID, "tenant_id", nil)}
				}},
			},
		},
		"POST /api/v1/tenants/{tenant}/device-claims": {
			status: 200,
			valid: func(t *testing.T, e *env) request {
				d1, d2 := e.registerDevice(t), e.registerDevice(t)
				return request{path: e.A.path("/device-claims"), body: api.ClaimDevices{DeviceIDs: []string{d1.ID, d2.ID}, DeviceGroup: e.A.Group.ID},
					intact: e.unchangedFor(e.operator, "/api/v1/devices/"+d1.ID, "tenant_id", nil)}
			},
			check: func(t *testing.T, e *env, req request, r response) {
				var b api.DeviceBatch
				decode(t, r, &b)
				if b.Count != 2 {
					t.Fatalf("batch = %+v; want 2 devices", b)
				}
				for _, id := range req.body.(api.ClaimDevices).DeviceIDs {
					var d sphere.Device
					e.must(t, e.adminA, "GET", e.A.path("/devices/"+id), nil, 200, &d)
					if d.TenantID != e.A.Tenant.ID || d.DeviceGroupID != e.A.Group.ID || d.ClaimedAt == nil {
						t.Errorf("claimed device %+v; want it in tenant A's Pilot group", d)
					}
					e.auditedDevice(t, "device.claim", id, r.RequestID)
				}
			},
			bad: func(t *testing.T, e *env) request {
				// The second device is not registered: the first is not claimed either.
				d := e.registerDevice(t)
				return request{path: e.A.path("/device-claims"), body: api.ClaimDevices{DeviceIDs: []string{d.ID, "NOT-A-DEVICE-ID"}, DeviceGroup: e.A.Group.ID},
					intact: e.unchangedFor(e.operator, "/api/v1/devices/"+d.ID, "tenant_id", nil)}
			},
			cross: []crossCase{
				{
					name: "one claimed by the other tenant",
					req: func(t *testing.T, e *env) request {
						d := e.registerDevice(t)
						return request{path: e.A.path("/device-claims"), body: api.ClaimDevices{DeviceIDs: []string{d.ID, e.B.Device.ID}},
							intact: func(t *testing.T) {
								e.unchangedFor(e.operator, "/api/v1/devices/"+d.ID, "tenant_id", nil)(t)
								e.unchangedFor(e.adminB, e.B.path("/devices/"+e.B.Device.ID), "device_group_id", e.B.Group.ID)(t)
							}}
					},
					status: 409,
					reason: "a device belongs to one tenant: claiming one another tenant holds is a conflict the caller must be told about, without naming that tenant",
				},
				{name: "into the other tenant's group", req: func(t *testing.T, e *env) request {
					d := e.registerDevice(t)
					return request{path: e.A.path("/device-claims"), body: api.ClaimDevices{DeviceIDs: []string{d.ID}, DeviceGroup: e.B.Group.ID},
						intact: e.unchangedFor(e.operator, "/api/v1/devices/"+d.ID, "tenant_id", nil)}
				}},
			},
		},
		"PATCH /api/v1/tenants/{tenant}/devices/{device}": {
			status: 200,
			valid: func(t *testing.T, e *env) request {
				path := e.A.path("/devices/" + e.newClaimedDevice(t, &e.A).ID)
				return request{path: path, body: api.UpdateDevice{DeviceGroup: e.A.Group2.ID}, intact: e.unchanged(path, "device_group_id", e.A.Group.ID)}
			},
			check: func(t *testing.T, e *env, req request, _ response) {
				e.unchanged(req.path, "device_group_id", e.A.Group2.ID)(t)
			},
			bad: func(_ *testing.T, e *env) request {
				return request{path: e.A.path("/devices/" + e.A.Device.ID), body: api.UpdateDevice{}}
			},
			cross: []crossCase{
				{name: "the other tenant's device", req: func(_ *testing.T, e *env) request {
					return request{path: e.A.path("/devices/" + e.B.Device.ID), body: api.UpdateDevice{DeviceGroup: e.A.Group2.ID},
						intact: e.unchangedFor(e.adminB, e.B.path("/devices/"+e.B.Device.ID), "device_group_id", e.B.Group.ID)}
				}},
				{name: "into the other tenant's group", req: func(t *testing.T, e *env) request {
					path := e.A.path("/devices/" + e.newClaimedDevice(t, &e.A).ID)
					return request{path: path, body: api.UpdateDevice{DeviceGroup: e.B.Group.ID}, intact: e.unchanged(path, "device_group_id", e.A.Group.ID)}
				}},
			},
		},
		"POST /api/v1/tenants/{tenant}/devices/{device}/release": {
			status: 200,
			valid: func(t *testing.T, e *env) request {
				path := e.A.path("/devices/" + e.newClaimedDevice(t, &e.A).ID)
				return request{path: path + "/release", body: api.ReleaseDevice{Confirm: true}, intact: e.exists(e.operator, path, 200)}
			},
			check: func(t *testing.T, e *env, req request, r response) {
				var d sphere.Device
				decode(t, r, &d)
				if d.TenantID != "" || d.DeviceGroupID != "" || d.ClaimedAt != nil {
					t.Errorf("released device %+v still claimed", d)
				}
				e.exists(e.operator, strings.TrimSuffix(req.path, "/release"), 404)(t)
			},
			bad: func(_ *testing.T, e *env) request {
				return request{path: e.A.path("/devices/" + e.A.Device.ID + "/release"), body: api.ReleaseDevice{Confirm: false}}
			},
			cross: []crossCase{{name: "the other tenant's device", req: func(_ *testing.T, e *env) request {
				return request{path: e.A.path("/devices/" + e.B.Device.ID + "/release"), body: api.ReleaseDevice{Confirm: true},
					intact: e.exists(e.adminB, e.B.path("/devices/"+e.B.Device.ID), 200)}
			}}},
		},

		// ---- certificate authorities ----
		"GET /api/v1/tenants/{tenant}/ca-certificates": {
			status: 200,
			valid:  inA("/ca-certificates", nil),
			check: func(t *testing.T, e *env, _ request, r response) {
				var p sphere.Page[api.CACertificate]
				decode(t, r, &p)
				if len(p.Items) != 1 || p.Items[0].ID != e.A.CA.ID || p.Items[0].State != ca.StateActive || p.Items[0].PEM != e.A.CA.PEM {
					t.Errorf("tenant A's CAs = %+v; want only its Active fixture CA %s", p.Items, e.A.CA.ID)
				}
				// The first read in a tenant makes its first CA; later
				// reads find the same one.
				var tn sphere.Tenant
				e.must(t, e.operator, "POST", "/api/v1/tenants", api.CreateTenant{Name: e.name("Tenant")}, 201, &tn)
				var first, again sphere.Page[api.CACertificate]
				e.must(t, e.operator, "GET", "/api/v1/tenants/"+tn.ID+"/ca-certificates", nil, 200, &first)
				e.must(t, e.operator, "GET", "/api/v1/tenants/"+tn.ID+"/ca-certificates", nil, 200, &again)
				if len(first.Items) != 1 || first.Items[0].State != ca.StateActive || first.Items[0].ID == e.A.CA.ID || first.Items[0].ID == e.B.CA.ID {
					t.Fatalf("a new tenant's first CA list = %+v; want one new Active CA of its own", first.Items)
				}
				if len(again.Items) != 1 || again.Items[0].ID != first.Items[0].ID {
					t.Errorf("reading a new tenant's CAs again = %+v; want the same one CA %s", again.Items, first.Items[0].ID)
				}
			},
			bad:         inA("/ca-certificates?page_size=10", nil),
			noForbidden: readerIsLowest,
			cross: []crossCase{{
				name: "only this tenant's CAs", req: inA("/ca-certificates", nil),
				status: 200, reason: "lists the caller's tenant's CAs; the leak check looks for the other tenant's CA",
			}},
		},
		"GET /api/v1/tenants/{tenant}/ca-certificates/chain": {
			status: 200,
			valid:  inA("/ca-certificates/chain", nil),
			check: func(t *testing.T, e *env, _ request, r response) {
				var b api.PEMBundle
				decode(t, r, &b)
				certs := parseCerts(t, b.PEM)
				if len(certs) != 2 {
					t.Fatalf("tenant A's chain has %d certificates; want its one CA and the root", len(certs))
				}
				tenantCA, root := certs[0], certs[1]
				if string(tenantCA.Raw) != string(caCert(t, e.A.CA).Raw) {
					t.Errorf("the chain starts with %s; want tenant A's CA", tenantCA.Subject)
				}
				if err := root.CheckSignatureFrom(root); err != nil || !root.IsCA {
					t.Errorf("the chain ends with %s, which is not a self-signed CA: %v", root.Subject, err)
				}
				if err := tenantCA.CheckSignatureFrom(root); err != nil {
					t.Errorf("tenant A's CA is not signed by the root in the chain: %v", err)
				}
			},
			bad:         inA("/ca-certificates/chain?format=der", nil),
			noForbidden: readerIsLowest,
			cross: []crossCase{{
				name: "only this tenant's CAs", req: inA("/ca-certificates/chain", nil),
				status: 200, reason: "the bundle holds the caller's tenant's CAs and the shared root; the leak check looks for the other tenant's CA",
			}},
		},
		"GET /api/v1/tenants/{tenant}/ca-certificates/{ca}": {
			status: 200,
			valid:  func(_ *testing.T, e *env) request { return request{path: e.A.path("/ca-certificates/" + e.A.CA.ID)} },
			check: func(t *testing.T, e *env, _ request, r response) {
				var got, active api.CACertificate
				decode(t, r, &got)
				if got.ID != e.A.CA.ID || got.PEM != e.A.CA.PEM || got.Thumbprint != ca.Thumbprint(caCert(t, e.A.CA)) {
					t.Errorf("CA %s = %+v; want tenant A's fixture CA with the SHA-256 of its DER as thumbprint", e.A.CA.ID, got)
				}
				want := "urn:opensphere:tenant:" + e.A.Tenant.ID
				if c := caCert(t, got); len(c.URIs) != 1 || c.URIs[0].String() != want {
					t.Errorf("tenant A's CA names %v; want %s", c.URIs, want)
				}
				e.must(t, e.readerA, "GET", e.A.path("/ca-certificates/active"), nil, 200, &active)
				if active.ID != e.A.CA.ID || active.State != ca.StateActive {
					t.Errorf("CA \"active\" = %+v; want %s", active, e.A.CA.ID)
				}
			},
			bad: func(_ *testing.T, e *env) request {
				return request{path: e.A.path("/ca-certificates/" + e.A.CA.ID + "?format=der")}
			},
			noForbidden: readerIsLowest,
			cross: []crossCase{{name: "by id", req: func(_ *testing.T, e *env) request {
				return request{path: e.A.path("/ca-certificates/" + e.B.CA.ID)}
			}}},
		},
		"POST /api/v1/tenants/{tenant}/ca-certificates/{ca}/proof": {
			status: 200,
			valid: func(t *testing.T, e *env) request {
				// AWS IoT's registration codes are 64 hex characters, the longest allowed.
				return request{path: e.A.path("/ca-certificates/active/proof"), body: api.CreateProof{Code: randomDigest(t)}}
			},
			check: func(t *testing.T, e *env, req request, r response) {
				var b api.PEMBundle
				decode(t, r, &b)
				certs := parseCerts(t, b.PEM)
				if len(certs) != 1 {
					t.Fatalf("the proof holds %d certificates; want 1", len(certs))
				}
				code := req.body.(api.CreateProof).Code
				if cn := certs[0].Subject.CommonName; cn != code {
					t.Errorf("proof CN = %q; want the code %q", cn, code)
				}
				if err := certs[0].CheckSignatureFrom(caCert(t, e.A.CA)); err != nil {
					t.Errorf("the proof is not signed by tenant A's active CA: %v", err)
				}
				if a, _ := e.auditEntry(t, r.RequestID); a.Target != e.A.CA.ID {
					t.Errorf("audit target %q; want the CA that \"active\" named, %s", a.Target, e.A.CA.ID)
				}
			},
			bad: inA("/ca-certificates/active/proof", api.CreateProof{Code: ""}),
			cross: []crossCase{{name: "by id", req: func(_ *testing.T, e *env) request {
				return request{path: e.A.path("/ca-certificates/" + e.B.CA.ID + "/proof"), body: api.CreateProof{Code: "hijack"}}
			}}},
		},

		// ---- revocation ----
		"POST /api/v1/tenants/{tenant}/devices/{device}/revoke": {
			status: 200,
			valid: func(t *testing.T, e *env) request {
				path := e.A.path("/devices/" + e.newClaimedDevice(t, &e.A).ID)
				return request{path: path + "/revoke", body: api.RevokeDevice{Reason: "stolen from the lab"}, intact: e.unchanged(path, "revoked_at", nil)}
			},
			check: func(t *testing.T, e *env, req request, r response) {
				var d sphere.Device
				decode(t, r, &d)
				if d.RevokedAt == nil || d.RevokedReason != "stolen from the lab" || d.TenantID != e.A.Tenant.ID {
					t.Errorf("revoked device %+v; want revoked_at and the reason, still in tenant A", d)
				}
				e.unchanged(strings.TrimSuffix(req.path, "/revoke"), "revoked_reason", "stolen from the lab")(t)
			},
			bad: func(_ *testing.T, e *env) request {
				return request{path: e.A.path("/devices/" + e.A.Device.ID + "/revoke"), body: api.RevokeDevice{}}
			},
			cross: []crossCase{{name: "the other tenant's device", req: func(_ *testing.T, e *env) request {
				return request{path: e.A.path("/devices/" + e.B.Device.ID + "/revoke"), body: api.RevokeDevice{Reason: "hijacked"},
					intact: e.unchangedFor(e.adminB, e.B.path("/devices/"+e.B.Device.ID), "revoked_at", nil)}
			}}},
		},
		"POST /api/v1/tenants/{tenant}/devices/{device}/unrevoke": {
			status: 200,
			valid: func(t *testing.T, e *env) request {
				path := e.A.path("/devices/" + e.revokedDevice(t, &e.A, "lost in transit").ID)
				return request{path: path + "/unrevoke", intact: e.unchanged(path, "revoked_reason", "lost in transit")}
			},
			check: func(t *testing.T, e *env, req request, r response) {
				var d sphere.Device
				decode(t, r, &d)
				if d.RevokedAt != nil || d.RevokedReason != "" {
					t.Errorf("unrevoked device %+v still revoked", d)
				}
				again := e.send(t, e.adminA.auth(), "POST", request{path: req.path})
				wantError(t, again, http.StatusConflict, sphere.EPrecondition)
			},
			bad: func(_ *testing.T, e *env) request {
				return request{path: e.A.path("/devices/" + e.A.Device.ID + "/unrevoke?force=1")}
			},
			cross: []crossCase{{name: "the other tenant's revoked device", req: func(t *testing.T, e *env) request {
				d := e.revokedDevice(t, &e.B, "recalled")
				return request{path: e.A.path("/devices/" + d.ID + "/unrevoke"),
					intact: e.unchangedFor(e.adminB, e.B.path("/devices/"+d.ID), "revoked_reason", "recalled")}
			}}},
		},

		// ---- the measurement allowlist ----
		"GET /api/v1/tenants/{tenant}/measurements": {
			status: 200,
			valid:  inA("/measurements?page_size=1000", nil),
			check: func(t *testing.T, e *env, _ request, r response) {
				var p sphere.Page[sphere.AllowedMeasurement]
				decode(t, r, &p)
				if !slices.ContainsFunc(p.Items, func(m sphere.AllowedMeasurement) bool { return m == e.A.Measurement }) {
					t.Errorf("tenant A's allowlist %+v lacks its fixture entry %+v", p.Items, e.A.Measurement)
				}
				for _, m := range p.Items {
					if m.TenantID != e.A.Tenant.ID {
						t.Errorf("entry %+v listed for tenant A", m)
					}
				}
			},
			bad:         inA("/measurements?page_size=1001", nil),
			noForbidden: readerIsLowest,
			cross: []crossCase{{
				name: "only this tenant's allowlist", req: inA("/measurements", nil),
				status: 200, reason: "lists the caller's tenant's entries; the leak check looks for the other tenant's entry",
			}},
		},
		"POST /api/v1/tenants/{tenant}/measurements": {
			status: 201,
			valid: func(t *testing.T, e *env) request {
				return request{path: e.A.path("/measurements"), body: api.AllowMeasurement{
					Type: "config", Digest: strings.ToUpper(randomDigest(t)), Name: "sphere-agent.toml 2", Status: sphere.MeasurementDeprecated}}
			},
			check: func(t *testing.T, e *env, req request, r response) {
				var m sphere.AllowedMeasurement
				decode(t, r, &m)
				in := req.body.(api.AllowMeasurement)
				if m.ID == "" || m.TenantID != e.A.Tenant.ID || m.Type != in.Type || m.Digest != strings.ToLower(in.Digest) || m.Name != in.Name || m.Status != in.Status {
					t.Errorf("allowed %+v; want %+v in tenant A with the digest in lower case", m, in)
				}
				e.measurementListed(e.readerA, &e.A, m.ID, true)(t)
				if a, _ := e.auditEntry(t, r.RequestID); a.Target != m.ID {
					t.Errorf("audit target %q; want the new entry %s", a.Target, m.ID)
				}
			},
			bad: func(t *testing.T, e *env) request {
				return request{path: e.A.path("/measurements"), body: api.AllowMeasurement{Type: "kernel", Digest: randomDigest(t)}}
			},
			cross: []crossCase{{
				name: "the other tenant's digest",
				req: func(t *testing.T, e *env) request {
					m := e.newMeasurement(t, &e.B)
					return request{path: e.A.path("/measurements"), body: api.AllowMeasurement{Type: m.Type, Digest: m.Digest, Status: sphere.MeasurementDeprecated}}
				},
				status: 201,
				reason: "allowlists are per tenant: the same digest makes a new entry here and leaves the other tenant's alone",
				check: func(t *testing.T, e *env, r response) {
					var m sphere.AllowedMeasurement
					decode(t, r, &m)
					var p sphere.Page[sphere.AllowedMeasurement]
					e.must(t, e.adminB, "GET", e.B.path("/measurements?page_size=1000"), nil, 200, &p)
					for _, b := range p.Items {
						if b.Digest == m.Digest && (b.ID == m.ID || b.Status != sphere.MeasurementAllowed) {
							t.Errorf("tenant A's entry %+v changed tenant B's %+v", m, b)
						}
					}
				},
			}},
		},
		"DELETE /api/v1/tenants/{tenant}/measurements/{measurement}": {
			status: 204,
			valid: func(t *testing.T, e *env) request {
				m := e.newMeasurement(t, &e.A)
				return request{path: e.A.path("/measurements/" + m.ID), intact: e.measurementListed(e.operator, &e.A, m.ID, true)}
			},
			check: func(t *testing.T, e *env, req request, _ response) {
				e.measurementListed(e.operator, &e.A, req.path[strings.LastIndexByte(req.path, '/')+1:], false)(t)
			},
			bad: func(_ *testing.T, e *env) request {
				return request{path: e.A.path("/measurements/" + e.A.Measurement.ID + "?force=1")}
			},
			cross: []crossCase{{name: "by id", req: func(t *testing.T, e *env) request {
				m := e.newMeasurement(t, &e.B)
				return request{path: e.A.path("/measurements/" + m.ID), intact: e.measurementListed(e.adminB, &e.B, m.ID, true)}
			}}},
		},

		// ---- audit ----
		"GET /api/v1/tenants/{tenant}/audit": {
			status: 200,
			valid:  inA("/audit?action=product.create&result=ok&since=2020-01-01T00:00:00Z", nil),
			check: func(t *testing.T, e *env, _ request, r response) {
				var p sphere.Page[sphere.AuditEntry]
				decode(t, r, &p)
				if len(p.Items) == 0 {
					t.Errorf("tenant A's audit log has no product.create entry")
				}
				for _, a := range p.Items {
					if a.TenantID != e.A.Tenant.ID || a.Action != "product.create" || a.Result != "ok" {
						t.Errorf("audit entry %+v does not match the filter", a)
					}
				}
			},
			bad:         inA("/audit?since=yesterday", nil),
			noForbidden: readerIsLowest,
			cross: []crossCase{{
				name: "target filter", req: func(_ *testing.T, e *env) request { return request{path: e.A.path("/audit?target=" + e.B.Product.ID)} },
				status: 200, reason: "a filter naming another tenant's resource finds only this tenant's entries",
			}},
		},
		"GET /api/v1/audit": {
			status:        200,
			valid:         plain("/api/v1/audit?result=error&page_size=10"),
			bad:           plain("/api/v1/audit?until=2026-13-01T00:00:00Z"),
			noOtherTenant: notTenant,
			noCross:       operatorWide,
		},
	}
	for key, c := range updateRouteCases() {
		if _, dup := cases[key]; dup {
			panic("routeCases: two rows for " + key)
		}
		cases[key] = c
	}
	for key, c := range failureRouteCases() {
		if _, dup := cases[key]; dup {
			panic("routeCases: two rows for " + key)
		}
		cases[key] = c
	}
	return cases
}

// actor is the least privileged caller that may call rt: for a tenant
// route the user whose role in tenant A is exactly the route's.
func (e *env) actor(rt RouteInfo) user {
	switch {
	case rt.Access == AccessOperator:
		return e.operator
	case rt.Access == AccessTenant && rt.Role == sphere.RoleAdministrator:
		return e.adminA
	case rt.Access == AccessTenant && rt.Role == sphere.RoleContributor:
		return e.contribA
	}
	return e.readerA
}

// below lists the users that rt must refuse with 403.
func (e *env) below(rt RouteInfo) []user {
	var out []user
	switch rt.Access {
	case AccessOperator:
		return []user{e.adminA, e.adminB}
	case AccessTenant:
		for _, u := range []user{e.contribA, e.readerA} {
			if e.roleInA(u).Rank() < rt.Role.Rank() {
				out = append(out, u)
			}
		}
	}
	return out
}

func (e *env) roleInA(u user) sphere.Role {
	switch u.ID {
	case e.adminA.ID:
		return sphere.RoleAdministrator
	case e.contribA.ID:
		return sphere.RoleContributor
	case e.readerA.ID:
		return sphere.RoleReader
	}
	return ""
}

// hiddenFrom returns the secrets of the fixture tenants u holds no role in.
func (e *env) hiddenFrom(u user) []string {
	var out []string
	for _, f := range []*fixture{&e.A, &e.B} {
		if !slices.ContainsFunc(f.Members, func(m user) bool { return m.ID == u.ID }) {
			out = append(out, f.secrets()...)
		}
	}
	return out
}

var resourceParam = regexp.MustCompile(`\{(product|group|device|user|token|ca|measurement|key|image|deployment)\}`)

func testRoute(t *testing.T, e *env, rt RouteInfo, c routeCase) {
	if c.status != rt.Status {
		t.Errorf("the row expects status %d; the route answers %d", c.status, rt.Status)
	}
	actor := e.actor(rt)

	t.Run("ok", func(t *testing.T) {
		req := c.valid(t, e)
		r := e.send(t, actor.auth(), rt.Method, req)
		if r.Status != rt.Status {
			t.Fatalf("as %s: status %d, want %d; body: %s", actor.Name, r.Status, rt.Status, r.Body)
		}
		switch {
		case r.Status == http.StatusNoContent && len(r.Body) != 0:
			t.Errorf("204 with a body: %s", r.Body)
		case c.raw != "" && r.Header.Get("Content-Type") != c.raw:
			t.Errorf("answer Content-Type %q, want %q", r.Header.Get("Content-Type"), c.raw)
		case (c.raw == "" || c.raw == "application/json") && r.Status != http.StatusNoContent && !json.Valid(r.Body):
			t.Errorf("answer is not JSON: %s", r.Body)
		}
		if c.check != nil {
			c.check(t, e, req, r)
		}
		e.wantAudit(t, rt, actor, r, "ok")
	})

	t.Run("bad input", func(t *testing.T) {
		req := c.bad(t, e)
		r := e.send(t, actor.auth(), rt.Method, req)
		wantError(t, r, http.StatusBadRequest, sphere.EInvalid)
		e.wantAudit(t, rt, actor, r, sphere.EInvalid)
	})

	t.Run("no token", func(t *testing.T) {
		req := c.valid(t, e)
		r := e.send(t, "", rt.Method, req)
		wantError(t, r, http.StatusUnauthorized, sphere.EUnauthenticated)
		if r.Header.Get("WWW-Authenticate") == "" {
			t.Errorf("401 without a WWW-Authenticate header")
		}
		e.wantAudit(t, rt, user{}, r, "")
		req.checkIntact(t)
	})

	t.Run("garbage token", func(t *testing.T) {
		req := c.valid(t, e)
		for _, auth := range []string{
			"Bearer sph_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
			"Bearer not-a-token",
			"Bearer " + strings.Repeat("sph_", 100),
			"Basic YWRtaW46YWRtaW4=",
			"Bearer",
		} {
			r := e.send(t, auth, rt.Method, req)
			wantError(t, r, http.StatusUnauthorized, sphere.EUnauthenticated)
			e.wantAudit(t, rt, user{}, r, "")
		}
		req.checkIntact(t)
	})

	t.Run("forbidden", func(t *testing.T) {
		lower := e.below(rt)
		switch {
		case len(lower) == 0 && c.noForbidden == "":
			t.Fatalf("no caller can get 403 here; the row must say why in noForbidden")
		case len(lower) == 0:
			t.Logf("not applicable: %s", c.noForbidden)
			return
		case c.noForbidden != "":
			t.Errorf("the row says there is no 403 case (%s), but the route must refuse %s", c.noForbidden, lower[0].Name)
		}
		for _, u := range lower {
			req := c.valid(t, e)
			r := e.send(t, u.auth(), rt.Method, req)
			wantError(t, r, http.StatusForbidden, sphere.EPermission)
			e.wantAudit(t, rt, u, r, sphere.EPermission)
			req.checkIntact(t)
		}
	})

	t.Run("other tenant's user", func(t *testing.T) {
		switch {
		case rt.Access != AccessTenant && c.noOtherTenant == "":
			t.Fatalf("the route has no tenant in its path; the row must say so in noOtherTenant")
		case rt.Access != AccessTenant:
			t.Logf("not applicable: %s", c.noOtherTenant)
			return
		case c.noOtherTenant != "":
			t.Errorf("the row says there is no other-tenant case (%s), but the route is a tenant route", c.noOtherTenant)
		}
		req := c.valid(t, e)
		r := e.send(t, e.adminB.auth(), rt.Method, req)
		wantError(t, r, http.StatusNotFound, sphere.ENotFound)
		wantNoLeak(t, req, r, e.A.secrets())
		e.wantAudit(t, rt, e.adminB, r, sphere.ENotFound)
		req.checkIntact(t)
	})

	t.Run("other tenant's resource", func(t *testing.T) {
		switch {
		case len(c.cross) == 0 && c.noCross == "":
			t.Fatalf("the row has no cross-tenant case; give one in cross, or say why not in noCross")
		case len(c.cross) > 0 && c.noCross != "":
			t.Errorf("the row has cross-tenant cases and says there are none (%s)", c.noCross)
		case len(c.cross) == 0 && rt.Access == AccessTenant && resourceParam.MatchString(rt.Path):
			t.Errorf("the route names a resource in its path; the row must point it at another tenant's")
		case len(c.cross) == 0:
			t.Logf("not applicable: %s", c.noCross)
		}
		for _, x := range c.cross {
			t.Run(x.name, func(t *testing.T) {
				u := e.adminA
				if x.actor != nil {
					u = x.actor(e)
				}
				want, code := x.status, ""
				switch want {
				case 0, http.StatusNotFound:
					want, code = http.StatusNotFound, sphere.ENotFound
				case http.StatusBadRequest:
					code = sphere.EInvalid
				case http.StatusConflict:
					code = sphere.EConflict
				}
				if want != http.StatusNotFound && x.reason == "" {
					t.Errorf("the case expects %d instead of 404 and must say why in reason", want)
				}
				req := x.req(t, e)
				r := e.send(t, u.auth(), rt.Method, req)
				if code != "" {
					wantError(t, r, want, code)
				} else if r.Status != want {
					t.Errorf("as %s: status %d, want %d; body: %s", u.Name, r.Status, want, r.Body)
				}
				wantNoLeak(t, req, r, e.hiddenFrom(u))
				if r.Status < 300 {
					if x.check != nil {
						x.check(t, e, r)
					}
					e.wantAudit(t, rt, u, r, "ok")
				} else {
					e.wantAudit(t, rt, u, r, code)
					req.checkIntact(t)
				}
			})
		}
	})
}

// checkIntact runs the request's intact check, if it has one.
func (req request) checkIntact(t *testing.T) {
	t.Helper()
	if req.intact != nil {
		req.intact(t)
	}
}

// wantAudit checks the audit entry of the request r answered: one with the
// route's action, the caller and the result for a mutating call by an
// authenticated user (result is "ok" or an error code), none otherwise.
func (e *env) wantAudit(t *testing.T, rt RouteInfo, u user, r response, result string) {
	t.Helper()
	a, ok := e.auditEntry(t, r.RequestID)
	if rt.Action == "" || u.ID == "" {
		if ok {
			t.Errorf("unexpected audit entry for a read or an unauthenticated call: %+v", a)
		}
		return
	}
	if !ok {
		t.Errorf("no audit entry for request %s (%s by %s, status %d)", r.RequestID, rt.Action, u.Name, r.Status)
		return
	}
	if a.Action != rt.Action || a.Actor != u.Name || a.ActorID != u.ID || a.Result != result || a.Status != r.Status || a.Time.IsZero() {
		t.Errorf("audit entry %+v; want action %s, actor %s (%s), result %s, status %d", a, rt.Action, u.Name, u.ID, result, r.Status)
	}
	if rt.Access != AccessTenant && a.TenantID != "" {
		t.Errorf("audit entry of a route outside tenants has tenant %s", a.TenantID)
	}
	if rt.Access == AccessTenant && result != sphere.ENotFound && a.TenantID == "" {
		t.Errorf("audit entry of a tenant route by a member has no tenant: %+v", a)
	}
}

// decode decodes a successful answer.
func decode(t *testing.T, r response, out any) {
	t.Helper()
	if err := json.Unmarshal(r.Body, out); err != nil {
		t.Fatalf("decoding %T: %v; body: %s", out, err, r.Body)
	}
}

// unchanged returns a check that GET path as the operator shows field
// with the value want.
func (e *env) unchanged(path, field string, want any) func(t *testing.T) {
	return e.unchangedFor(e.operator, path, field, want)
}

// unchangedFor is unchanged as u. A want of nil means the field is absent.
// auditedDevice checks that a bulk call (its request id) left an audit
// entry with action for one of its devices.
func (e *env) auditedDevice(t *testing.T, action, deviceID, requestID string) {
	t.Helper()
	page, err := e.store.ListAllAudit(context.Background(), store.AuditFilter{Action: action, Target: deviceID}, store.PageRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if len(page.Items) != 1 || page.Items[0].RequestID != requestID || page.Items[0].Result != "ok" {
		t.Errorf("audit entries for %s of %s: %+v; want one of request %s", action, deviceID, page.Items, requestID)
	}
}

func (e *env) unchangedFor(u user, path, field string, want any) func(t *testing.T) {
	return func(t *testing.T) {
		t.Helper()
		var obj map[string]any
		e.must(t, u, "GET", path, nil, 200, &obj)
		if got := obj[field]; got != want {
			t.Errorf("GET %s: %s = %v, want %v", path, field, got, want)
		}
	}
}

// exists returns a check that GET path as u answers status.
func (e *env) exists(u user, path string, status int) func(t *testing.T) {
	return func(t *testing.T) {
		t.Helper()
		e.must(t, u, "GET", path, nil, status, nil)
	}
}

// countIs returns a check that the list at path has n items.
func (e *env) countIs(u user, path string, n int) func(t *testing.T) {
	return func(t *testing.T) {
		t.Helper()
		var p sphere.Page[json.RawMessage]
		e.must(t, u, "GET", path, nil, 200, &p)
		if len(p.Items) != n {
			t.Errorf("GET %s: %d items, want %d", path, len(p.Items), n)
		}
	}
}

// measurementListed returns a check that f's allowlist, as u sees it,
// does (or does not) hold the entry id.
func (e *env) measurementListed(u user, f *fixture, id string, want bool) func(t *testing.T) {
	return func(t *testing.T) {
		t.Helper()
		var p sphere.Page[sphere.AllowedMeasurement]
		e.must(t, u, "GET", f.path("/measurements?page_size=1000"), nil, 200, &p)
		got := slices.ContainsFunc(p.Items, func(m sphere.AllowedMeasurement) bool { return m.ID == id })
		if got != want {
			t.Errorf("measurement %s listed in tenant %s: %v, want %v", id, f.Tenant.Name, got, want)
		}
	}
}

// parseCerts parses every PEM CERTIFICATE block of s, and fails on
// anything else in it.
func parseCerts(t *testing.T, s string) []*x509.Certificate {
	t.Helper()
	var out []*x509.Certificate
	rest := []byte(s)
	for {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			t.Fatalf("PEM block %q in a certificate bundle", b.Type)
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			t.Fatalf("parsing a certificate of the bundle: %v", err)
		}
		out = append(out, c)
	}
	if len(bytes.TrimSpace(rest)) != 0 || len(out) == 0 {
		t.Fatalf("not a PEM certificate bundle: %q", s)
	}
	return out
}

// caCert parses a tenant CA's certificate.
func caCert(t *testing.T, c api.CACertificate) *x509.Certificate {
	t.Helper()
	return parseCerts(t, c.PEM)[0]
}

// tokenListed returns a check that u's token id is (or is not) listed.
func (e *env) tokenListed(u user, id string, want bool) func(t *testing.T) {
	return func(t *testing.T) {
		t.Helper()
		var p sphere.Page[sphere.Token]
		e.must(t, u, "GET", "/api/v1/me/tokens?page_size=1000", nil, 200, &p)
		got := slices.ContainsFunc(p.Items, func(tok sphere.Token) bool { return tok.ID == id })
		if got != want {
			t.Errorf("token %s listed for %s: %v, want %v", id, u.Name, got, want)
		}
	}
}

// TestTenantExistenceHidden checks that a tenant, product, group or device
// the caller cannot see is answered exactly like one that does not exist,
// so that nobody can learn what another tenant holds.
func TestTenantExistenceHidden(t *testing.T) {
	t.Parallel()
	eachDialect(t, func(t *testing.T, e *env) {
		const missingID = "01900000-0000-7000-8000-000000000000"
		missingDevice := strings.Repeat("0", 64)
		for _, c := range []struct {
			name                  string
			as                    user
			hidden, missing       string // paths
			hiddenKey, missingKey string // the id or name each path ends in
		}{
			{"tenant by name", e.adminB, "/api/v1/tenants/Default", "/api/v1/tenants/Nowhere", "Default", "Nowhere"},
			{"tenant by id", e.adminB, "/api/v1/tenants/" + e.A.Tenant.ID, "/api/v1/tenants/" + missingID, e.A.Tenant.ID, missingID},
			{"tenant's products", e.adminB, e.A.path("/products"), "/api/v1/tenants/" + missingID + "/products", e.A.Tenant.ID, missingID},
			{"product", e.adminA, e.A.path("/products/" + e.B.Product.ID), e.A.path("/products/" + missingID), e.B.Product.ID, missingID},
			{"device group", e.adminA, e.A.path("/device-groups/" + e.B.Group.ID), e.A.path("/device-groups/" + missingID), e.B.Group.ID, missingID},
			{"device", e.adminA, e.A.path("/devices/" + e.B.Device.ID), e.A.path("/devices/" + missingDevice), e.B.Device.ID, missingDevice},
			{"tenant CA", e.adminA, e.A.path("/ca-certificates/" + e.B.CA.ID), e.A.path("/ca-certificates/" + missingID), e.B.CA.ID, missingID},
		} {
			t.Run(c.name, func(t *testing.T) {
				hidden := e.send(t, c.as.auth(), "GET", request{path: c.hidden})
				missing := e.send(t, c.as.auth(), "GET", request{path: c.missing})
				hm := wantError(t, hidden, http.StatusNotFound, sphere.ENotFound)
				mm := wantError(t, missing, http.StatusNotFound, sphere.ENotFound)
				if strings.ReplaceAll(hm, c.hiddenKey, "X") != strings.ReplaceAll(mm, c.missingKey, "X") {
					t.Errorf("a hidden resource is told apart from a missing one:\nhidden:  %s\nmissing: %s", hm, mm)
				}
			})
		}
	})
}
