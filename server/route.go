package server

import (
	"context"
	"io"
	"net/http"
	"reflect"
	"strings"
	"time"

	"github.com/opensphere/sphere"
	"github.com/opensphere/sphere/api"
	"github.com/opensphere/sphere/store"
)

// Access says who may call a route.
type Access int

const (
	// AccessUser routes need any valid token.
	AccessUser Access = iota + 1
	// AccessOperator routes need a token of an operator (who runs the service).
	AccessOperator
	// AccessTenant routes act inside the tenant named by {tenant} and need
	// at least the route's Role there.
	AccessTenant
	// AccessDeviceOpen routes of the device API take no credentials: what
	// they are sent (attestation evidence) authenticates itself.
	AccessDeviceOpen
	// AccessDevice routes of the device API need the device certificate
	// over mutual TLS.
	AccessDevice
)

// route is one row of the API table.
type route struct {
	Method  string
	Path    string
	Summary string
	Access  Access
	Role    sphere.Role // for AccessTenant
	// Action names the change in the audit log; empty for reads.
	Action string
	// Status is the HTTP status of success.
	Status int
	// MaxBody bounds the request body; zero means MaxBodyBytes.
	MaxBody int64

	in   inputShape
	out  reflect.Type
	call func(c *call, in reflect.Value) (any, error)
}

// RouteInfo describes a route for tests and documentation.
type RouteInfo struct {
	Method, Path, Summary, Action string
	Access                        Access
	Role                          sphere.Role
	Status                        int
	HasBody                       bool
	Query                         []string
}

// Routes lists the admin API routes in table order.
func (s *Server) Routes() []RouteInfo { return routeInfos(s.routes) }

// DeviceRoutes lists the device API routes (/device/v1).
func (s *Server) DeviceRoutes() []RouteInfo { return routeInfos(s.deviceRoutes) }

func routeInfos(routes []*route) []RouteInfo {
	out := make([]RouteInfo, len(routes))
	for i, rt := range routes {
		ri := RouteInfo{Method: rt.Method, Path: rt.Path, Summary: rt.Summary, Action: rt.Action,
			Access: rt.Access, Role: rt.Role, Status: rt.Status, HasBody: rt.in.hasBody}
		for _, q := range rt.in.query {
			ri.Query = append(ri.Query, q.name)
		}
		out[i] = ri
	}
	return out
}

// call is what a handler sees of a request: who asked, the tenant-scoped
// store when the route acts in a tenant, and where to note the target of
// a change for the audit log.
type call struct {
	ctx    context.Context
	r      *http.Request
	user   sphere.User
	tenant *store.TenantStore // set on AccessTenant routes
	role   sphere.Role        // the caller's role in tenant
	device *sphere.Device     // set on AccessDevice routes: see store.DeviceCaller for its fields
	// update is the calling device's update status, read with device.
	update store.UpdateStatus
	target string // id of the resource changed, for the audit log
}

// handle turns a typed handler into a route's decoder and caller, so that a
// route's input and output types come from its handler's signature.
func handle[In, Out any](fn func(c *call, in *In) (Out, error)) func(rt *route) {
	return func(rt *route) {
		rt.in = shapeOf(reflect.TypeFor[In]())
		rt.out = reflect.TypeFor[Out]()
		rt.call = func(c *call, in reflect.Value) (any, error) {
			return fn(c, in.Interface().(*In))
		}
	}
}

func (s *Server) serveRoute(rt *route) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c := &call{ctx: r.Context(), r: r}
		c.target = pathTarget(r)
		var out any
		err := s.authorize(c, rt)
		if err == nil {
			var in reflect.Value
			if in, err = rt.in.decode(w, r); err == nil {
				out, err = rt.call(c, in)
			}
		}
		status := rt.Status
		if err != nil {
			status = writeError(w, r, s.log, err)
		} else if rt.out == noContentType {
			w.WriteHeader(http.StatusNoContent)
		} else if rc, ok := out.(*rawContent); ok {
			rc.serve(w, r)
		} else {
			writeJSONAs(w, status, out, rt.Access != AccessDevice && rt.Access != AccessDeviceOpen)
		}
		if rt.Action != "" && c.user.ID != "" {
			s.audit(c, rt, status, err)
		}
	})
}

// authorize authenticates the caller and, for tenant routes, resolves the
// tenant, checks the caller's role there and scopes the store to it. A
// tenant the caller holds no role in is reported as not found, so that
// nobody can learn which tenants exist.
func (s *Server) authorize(c *call, rt *route) error {
	switch rt.Access {
	case AccessDeviceOpen:
		return nil
	case AccessDevice:
		return s.authDevice(c)
	}
	tok, ok := strings.CutPrefix(c.r.Header.Get("Authorization"), "Bearer ")
	if !ok || tok == "" {
		return sphere.Errorf(sphere.EUnauthenticated, "this route needs an API token: send the header \"Authorization: Bearer <token>\" (sphere login stores one)")
	}
	u, err := s.store.Authenticate(c.ctx, strings.TrimSpace(tok))
	if err != nil {
		return err
	}
	c.user = u
	switch rt.Access {
	case AccessOperator:
		if !u.Operator {
			return sphere.Errorf(sphere.EPermission, "only an operator of this OpenSphere service may do this")
		}
	case AccessTenant:
		name := c.r.PathValue("tenant")
		t, err := s.store.GetTenant(c.ctx, name)
		if sphere.ErrorCode(err) == sphere.ENotFound || sphere.ErrorCode(err) == sphere.EInvalid {
			return sphere.Errorf(sphere.ENotFound, "tenant %q not found", name)
		}
		if err != nil {
			return err
		}
		role, err := s.store.RoleIn(c.ctx, u.ID, t.ID)
		if err != nil {
			return err
		}
		if role == "" {
			return sphere.Errorf(sphere.ENotFound, "tenant %q not found", name)
		}
		c.tenant, c.role = s.store.Tenant(t.ID), role
		if !role.Allows(rt.Role) {
			return sphere.Errorf(sphere.EPermission, "this needs the %s role in tenant %q; you are %s", rt.Role, t.Name, role)
		}
	}
	return nil
}

// audit records a mutating call, successful or not. A failure to write the
// audit entry is logged loudly: the change itself has already happened.
func (s *Server) audit(c *call, rt *route, status int, err error) {
	e := sphere.AuditEntry{
		Time: s.now(), ActorID: c.user.ID, Actor: c.user.Name, Action: rt.Action,
		Target: c.target, Result: "ok", Status: status, RequestID: requestID(c.ctx),
	}
	if c.tenant != nil {
		e.TenantID = c.tenant.ID()
	}
	if err != nil {
		e.Result = sphere.ErrorCode(err)
	}
	if aerr := s.store.AppendAudit(context.WithoutCancel(c.ctx), e); aerr != nil {
		s.log.ErrorContext(c.ctx, "audit log write failed", "err", aerr, "action", rt.Action, "actor", c.user.Name, "request_id", e.RequestID)
	}
}

// pathTarget names the resource a request acts on, for the audit log; a
// create handler replaces it with the id of what it made.
func pathTarget(r *http.Request) string {
	for _, p := range []string{"device", "product", "group", "user", "token", "measurement", "ca", "key", "image", "deployment"} {
		if v := r.PathValue(p); v != "" {
			return v
		}
	}
	return r.PathValue("tenant")
}

var noContentType = reflect.TypeFor[api.NoContent]()

// rawContent is the answer of a route that serves a file (an image
// package, TUF metadata) rather than JSON; it supports HTTP Range.
type rawContent struct {
	name        string
	contentType string
	modTime     time.Time
	body        io.ReadSeeker
	close       func() error
}

var rawContentType = reflect.TypeFor[*rawContent]()

func (rc *rawContent) serve(w http.ResponseWriter, r *http.Request) {
	if rc.close != nil {
		defer rc.close()
	}
	w.Header().Set("Content-Type", rc.contentType)
	w.Header().Set("X-Content-Type-Options", "nosniff")
	http.ServeContent(w, r, rc.name, rc.modTime, rc.body)
}
