package server

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/opensphere/sphere"
	"github.com/opensphere/sphere/api"
)

// MaxBodyBytes bounds an admin API request body.
const MaxBodyBytes = 1 << 20

// inputShape describes how a request struct is read: which fields come from
// the query string and whether it has a JSON body. It is derived once per
// route from the struct tags (see package api).
type inputShape struct {
	typ     reflect.Type
	query   []queryField
	hasBody bool
	// maxBody bounds the body; zero means MaxBodyBytes.
	maxBody int64
	// raw is set for api.RawBody: the handler streams the body itself.
	raw bool
}

type queryField struct {
	name  string
	doc   string
	index []int
	kind  string // "string", "int", "bool", "time"
}

var timeType = reflect.TypeFor[time.Time]()

func shapeOf(t reflect.Type) inputShape {
	s := inputShape{typ: t, raw: t == reflect.TypeFor[api.RawBody]()}
	var walk func(t reflect.Type, index []int)
	walk = func(t reflect.Type, index []int) {
		for i := 0; i < t.NumField(); i++ {
			f := t.Field(i)
			idx := append(append([]int(nil), index...), i)
			if f.Anonymous && f.Type.Kind() == reflect.Struct {
				walk(f.Type, idx)
				continue
			}
			if q, ok := f.Tag.Lookup("query"); ok {
				kind := f.Type.Kind().String()
				if f.Type == timeType {
					kind = "time"
				}
				switch kind {
				case "string", "int", "bool", "time":
				default:
					panic(fmt.Sprintf("server: query field %s has unsupported type %s", f.Name, f.Type))
				}
				s.query = append(s.query, queryField{name: q, doc: f.Tag.Get("doc"), index: idx, kind: kind})
				continue
			}
			if j := f.Tag.Get("json"); j != "-" && f.IsExported() {
				s.hasBody = true
			}
		}
	}
	walk(t, nil)
	return s
}

// decode reads r into a new value of the shape's type: the JSON body
// (strictly: one object, no unknown fields, at most maxBody) and the
// query parameters (no unknown ones). Every failure is an EInvalid,
// ETooLarge or EUnsupported error that says what was wrong.
func (s inputShape) decode(w http.ResponseWriter, r *http.Request) (reflect.Value, error) {
	v := reflect.New(s.typ)
	// r.URL.Query() drops what it cannot parse; a malformed query must be
	// refused, not read as if the broken parameter were absent.
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		return v, sphere.Errorf(sphere.EInvalid, "the query string is malformed: %v", err)
	}
	if err := s.decodeQuery(q, v.Elem()); err != nil {
		return v, err
	}
	if s.raw {
		if ct := r.Header.Get("Content-Type"); ct != "" {
			if mt, _, err := mime.ParseMediaType(ct); err != nil || mt != "application/octet-stream" {
				return v, sphere.Errorf(sphere.EUnsupported, "Content-Type %q is not supported; send the file as application/octet-stream", ct)
			}
		}
		return v, nil
	}
	if !s.hasBody {
		if r.ContentLength > 0 {
			return v, sphere.Errorf(sphere.EInvalid, "this request takes no body")
		}
		return v, nil
	}
	if ct := r.Header.Get("Content-Type"); ct != "" {
		mt, _, err := mime.ParseMediaType(ct)
		if err != nil || mt != "application/json" {
			return v, sphere.Errorf(sphere.EUnsupported, "Content-Type %q is not supported; send application/json", ct)
		}
	}
	limit := s.maxBody
	if limit == 0 {
		limit = MaxBodyBytes
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	var tooBig *http.MaxBytesError
	if errors.As(err, &tooBig) {
		return v, sphere.Errorf(sphere.ETooLarge, "request body is larger than %d bytes", limit)
	}
	if err != nil {
		return v, sphere.Errorf(sphere.EInvalid, "reading request body: %v", err)
	}
	if len(bytes.TrimSpace(body)) == 0 {
		return v, sphere.Errorf(sphere.EInvalid, "request body is empty; send a JSON object")
	}
	if u, ok := v.Interface().(*api.FailureUpload); ok && fastFailureUpload(body, u) {
		return v, nil
	}
	return v, decodeJSONBody(body, v.Interface())
}

// decodeJSONBody decodes exactly one JSON object into dst, refusing unknown
// fields and trailing data.
func decodeJSONBody(body []byte, dst any) error {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(dst); err != nil {
		var syn *json.SyntaxError
		var typ *json.UnmarshalTypeError
		switch {
		case errors.As(err, &syn):
			return sphere.Errorf(sphere.EInvalid, "request body is not valid JSON: %v (at byte %d)", syn, syn.Offset)
		case errors.As(err, &typ):
			if typ.Field != "" {
				return sphere.Errorf(sphere.EInvalid, "field %q must be %s, not JSON %s", typ.Field, jsonKind(typ.Type), typ.Value)
			}
			return sphere.Errorf(sphere.EInvalid, "request body must be a JSON object, not %s", typ.Value)
		case strings.HasPrefix(err.Error(), "json: unknown field "):
			return sphere.Errorf(sphere.EInvalid, "request body has unknown field %s", strings.TrimPrefix(err.Error(), "json: unknown field "))
		case errors.Is(err, io.ErrUnexpectedEOF):
			return sphere.Errorf(sphere.EInvalid, "request body is truncated JSON")
		}
		return sphere.Errorf(sphere.EInvalid, "request body: %v", err)
	}
	if dec.More() {
		return sphere.Errorf(sphere.EInvalid, "request body has data after the JSON object")
	}
	var extra json.RawMessage
	if err := dec.Decode(&extra); err != io.EOF {
		return sphere.Errorf(sphere.EInvalid, "request body has data after the JSON object")
	}
	// A struct also decodes from null, leaving every field zero.
	if t := bytes.TrimLeft(body, " \t\r\n"); len(t) == 0 || t[0] != '{' {
		return sphere.Errorf(sphere.EInvalid, "request body must be a JSON object, not null")
	}
	return nil
}

func jsonKind(t reflect.Type) string {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "true or false"
	case reflect.Int, reflect.Int64, reflect.Int32:
		return "an integer"
	case reflect.Struct, reflect.Map:
		return "an object"
	case reflect.Slice:
		return "an array"
	}
	return t.String()
}

func (s inputShape) decodeQuery(q url.Values, v reflect.Value) error {
	known := make(map[string]bool, len(s.query))
	for _, f := range s.query {
		known[f.name] = true
		vals, ok := q[f.name]
		if !ok {
			continue
		}
		if len(vals) != 1 {
			return sphere.Errorf(sphere.EInvalid, "query parameter %q is given %d times; give it once", f.name, len(vals))
		}
		raw := vals[0]
		fv := v.FieldByIndex(f.index)
		switch f.kind {
		case "string":
			if len(raw) > 1024 {
				return sphere.Errorf(sphere.EInvalid, "query parameter %q is too long", f.name)
			}
			fv.SetString(raw)
		case "int":
			n, err := strconv.Atoi(raw)
			if err != nil {
				return sphere.Errorf(sphere.EInvalid, "query parameter %q must be an integer, got %q", f.name, raw)
			}
			fv.SetInt(int64(n))
		case "bool":
			b, err := strconv.ParseBool(raw)
			if err != nil {
				return sphere.Errorf(sphere.EInvalid, "query parameter %q must be true or false, got %q", f.name, raw)
			}
			fv.SetBool(b)
		case "time":
			t, err := time.Parse(time.RFC3339, raw)
			if err != nil {
				return sphere.Errorf(sphere.EInvalid, "query parameter %q must be an RFC 3339 time such as 2026-01-02T15:04:05Z, got %q", f.name, raw)
			}
			fv.Set(reflect.ValueOf(t))
		}
	}
	for name := range q {
		if !known[name] {
			if len(s.query) == 0 {
				return sphere.Errorf(sphere.EInvalid, "unknown query parameter %q; this route takes none", name)
			}
			names := make([]string, len(s.query))
			for i, f := range s.query {
				names[i] = f.name
			}
			return sphere.Errorf(sphere.EInvalid, "unknown query parameter %q; this route takes %s", name, strings.Join(names, ", "))
		}
	}
	return nil
}
