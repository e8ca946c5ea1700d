package server

import (
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/opensphere/sphere"
	"github.com/opensphere/sphere/api"
)

// OpenAPI returns the OpenAPI 3.0 document of the admin and device APIs, generated from
// the route table and the request and response types, so it cannot drift
// from what the server does.
func (s *Server) OpenAPI() map[string]any {
	g := &schemaGen{defs: map[string]any{}}
	errRef := g.schema(reflect.TypeFor[api.ErrorBody]())
	paths := map[string]map[string]any{}
	for _, rt := range append(append([]*route(nil), s.routes...), s.deviceRoutes...) {
		op := map[string]any{
			"summary":     rt.Summary,
			"operationId": operationID(rt),
			"tags":        []string{tagOf(rt.Path)},
		}
		var params []any
		for _, name := range pathParams.FindAllStringSubmatch(rt.Path, -1) {
			params = append(params, map[string]any{"name": name[1], "in": "path", "required": true, "schema": map[string]any{"type": "string"}})
		}
		for _, q := range rt.in.query {
			sch := map[string]any{"type": q.kind}
			switch q.kind {
			case "int":
				sch = map[string]any{"type": "integer"}
			case "bool":
				sch = map[string]any{"type": "boolean"}
			case "time":
				sch = map[string]any{"type": "string", "format": "date-time"}
			}
			params = append(params, map[string]any{"name": q.name, "in": "query", "description": q.doc, "schema": sch})
		}
		if params != nil {
			op["parameters"] = params
		}
		switch {
		case rt.in.raw:
			op["requestBody"] = map[string]any{"required": true, "content": map[string]any{
				"application/octet-stream": map[string]any{"schema": map[string]any{"type": "string", "format": "binary"}}}}
		case rt.in.hasBody:
			op["requestBody"] = map[string]any{"required": true, "content": map[string]any{
				"application/json": map[string]any{"schema": g.schema(rt.in.typ)}}}
		}
		ok := map[string]any{"description": "success"}
		switch rt.out {
		case noContentType:
		case rawContentType:
			ok["content"] = map[string]any{"application/octet-stream": map[string]any{"schema": map[string]any{"type": "string", "format": "binary"}}}
		default:
			ok["content"] = map[string]any{"application/json": map[string]any{"schema": g.schema(rt.out)}}
		}
		responses := map[string]any{strconv.Itoa(rt.Status): ok}
		errResp := func(desc string) any {
			return map[string]any{"description": desc, "content": map[string]any{"application/json": map[string]any{"schema": errRef}}}
		}
		responses["400"] = errResp("bad input; the message says what is wrong")
		if rt.Access == AccessDevice {
			responses["401"] = errResp("no valid device certificate (mutual TLS)")
		} else if rt.Access != AccessDeviceOpen {
			responses["401"] = errResp("no valid bearer token")
		}
		switch rt.Access {
		case AccessOperator, AccessTenant:
			responses["403"] = errResp("the caller's role does not allow this")
		case AccessDevice:
			responses["403"] = errResp("the device is revoked")
		}
		if rt.Access == AccessDeviceOpen || rt.Access == AccessDevice {
			op["security"] = []any{}
		}
		if rt.Access == AccessTenant || strings.Contains(rt.Path, "{") {
			responses["404"] = errResp("not found, or in a tenant the caller holds no role in")
		}
		if rt.Action != "" {
			responses["409"] = errResp("conflicts with the current state")
		}
		op["responses"] = responses
		access := map[Access]string{AccessUser: "any authenticated user", AccessOperator: "operators only",
			AccessTenant:     "role " + string(rt.Role) + " or higher in the tenant",
			AccessDeviceOpen: "devices, without credentials (the evidence authenticates itself)",
			AccessDevice:     "devices, with their certificate over mutual TLS"}[rt.Access]
		op["description"] = rt.Summary + ". Access: " + access + "."
		if rt.Action != "" {
			op["description"] = op["description"].(string) + " Audited as " + rt.Action + "."
		}
		if paths[rt.Path] == nil {
			paths[rt.Path] = map[string]any{}
		}
		paths[rt.Path][strings.ToLower(rt.Method)] = op
	}
	return map[string]any{
		"openapi": "3.0.3",
		"info": map[string]any{
			"title":       "OpenSphere security service API",
			"version":     s.version,
			"description": "The admin API (/api/v1: tenants, roles, products, device groups, devices, certificate authorities, the measurement allowlist, the audit log; bearer tokens) and the device API (/device/v1: attestation, then mutual TLS with the device certificate) of an OpenSphere security service. Errors always have the shape {\"error\":{\"code\",\"message\"}}.",
		},
		"paths":      paths,
		"security":   []any{map[string]any{"bearer": []string{}}},
		"components": map[string]any{"schemas": g.defs, "securitySchemes": map[string]any{"bearer": map[string]any{"type": "http", "scheme": "bearer"}}},
	}
}

var pathParams = regexp.MustCompile(`\{([a-z_]+)\}`)

func tagOf(path string) string {
	parts := strings.Split(strings.TrimPrefix(path, "/api/v1/"), "/")
	for i := len(parts) - 1; i >= 0; i-- {
		if p := parts[i]; p != "" && !strings.HasPrefix(p, "{") && p != "claim" && p != "release" {
			return p
		}
	}
	return "api"
}

func operationID(rt *route) string {
	var b strings.Builder
	b.WriteString(strings.ToLower(rt.Method))
	parts := strings.Split(strings.TrimPrefix(rt.Path, "/api/v1/"), "/")
	for i, p := range parts {
		if strings.HasPrefix(p, "{") {
			// A path ending in a parameter acts on one item; naming the
			// parameter keeps its id apart from the list's at the same
			// path (getTenants, getTenantsByTenant).
			if name := strings.Trim(p, "{}"); i == len(parts)-1 && name != "" {
				b.WriteString("By" + strings.ToUpper(name[:1]) + name[1:])
			}
			continue
		}
		for _, w := range strings.FieldsFunc(p, func(r rune) bool { return r == '-' || r == '_' }) {
			b.WriteString(strings.ToUpper(w[:1]) + w[1:])
		}
	}
	return b.String()
}

// schemaGen turns Go types into OpenAPI schemas, naming structs under
// components/schemas.
type schemaGen struct {
	defs map[string]any
}

var enums = map[reflect.Type][]string{
	reflect.TypeFor[sphere.Role]():         {string(sphere.RoleAdministrator), string(sphere.RoleContributor), string(sphere.RoleReader)},
	reflect.TypeFor[sphere.OSFeed]():       {string(sphere.FeedRetail), string(sphere.FeedRetailEval)},
	reflect.TypeFor[sphere.UpdatePolicy](): {string(sphere.PolicyUpdateAll), string(sphere.PolicyNo3rdPartyAppUpdates), string(sphere.PolicyNoUpdates)},
}

func (g *schemaGen) schema(t reflect.Type) map[string]any {
	if e, ok := enums[t]; ok {
		return map[string]any{"type": "string", "enum": e}
	}
	switch {
	case t == reflect.TypeFor[time.Time]():
		return map[string]any{"type": "string", "format": "date-time"}
	case t.Kind() == reflect.Pointer:
		s := g.schema(t.Elem())
		return s
	}
	switch t.Kind() {
	case reflect.String:
		return map[string]any{"type": "string"}
	case reflect.Bool:
		return map[string]any{"type": "boolean"}
	case reflect.Int, reflect.Int32, reflect.Int64:
		return map[string]any{"type": "integer"}
	case reflect.Slice:
		return map[string]any{"type": "array", "items": g.schema(t.Elem())}
	case reflect.Map:
		return map[string]any{"type": "object", "additionalProperties": g.schema(t.Elem())}
	case reflect.Struct:
		name := schemaName(t)
		ref := map[string]any{"$ref": "#/components/schemas/" + name}
		if _, done := g.defs[name]; done {
			return ref
		}
		g.defs[name] = nil // reserve against recursion
		props := map[string]any{}
		var required []string
		g.fields(t, props, &required)
		obj := map[string]any{"type": "object", "properties": props, "additionalProperties": false}
		if len(required) > 0 {
			obj["required"] = required
		}
		g.defs[name] = obj
		return ref
	}
	return map[string]any{}
}

func (g *schemaGen) fields(t reflect.Type, props map[string]any, required *[]string) {
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if f.Anonymous && f.Type.Kind() == reflect.Struct {
			g.fields(f.Type, props, required)
			continue
		}
		tag := f.Tag.Get("json")
		if tag == "-" || !f.IsExported() {
			continue
		}
		name, opts, _ := strings.Cut(tag, ",")
		if name == "" {
			name = f.Name
		}
		s := g.schema(f.Type)
		if doc := f.Tag.Get("doc"); doc != "" {
			if _, isRef := s["$ref"]; !isRef {
				s["description"] = doc
			}
		}
		props[name] = s
		if !strings.Contains(opts, "omitempty") && f.Type.Kind() != reflect.Pointer {
			*required = append(*required, name)
		}
	}
}

// schemaName names a struct type, including generic instances such as
// sphere.Page[sphere.Product] ("PageProduct").
func schemaName(t reflect.Type) string {
	name := t.Name()
	if i := strings.IndexByte(name, '['); i >= 0 {
		inner := name[i+1 : len(name)-1]
		if j := strings.LastIndexByte(inner, '.'); j >= 0 {
			inner = inner[j+1:]
		}
		name = name[:i] + inner
	}
	return name
}
