package server

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"reflect"
	"testing"

	"github.com/opensphere/sphere"
	"github.com/opensphere/sphere/api"
)

// bodyShapes are request types with a JSON body, covering strings, ints,
// bools, pointers and the sphere.Role string type.
var bodyShapes = []inputShape{
	shapeOf(reflect.TypeFor[api.CreateProduct]()),
	shapeOf(reflect.TypeFor[api.UpdateProduct]()),
	shapeOf(reflect.TypeFor[api.CreateDeviceGroup]()),
	shapeOf(reflect.TypeFor[api.UpdateDeviceGroup]()),
	shapeOf(reflect.TypeFor[api.RegisterDevice]()),
	shapeOf(reflect.TypeFor[api.ReleaseDevice]()),
	shapeOf(reflect.TypeFor[api.AddRole]()),
	shapeOf(reflect.TypeFor[api.CreateToken]()),
	shapeOf(reflect.TypeFor[api.Empty]()), // takes no body at all
	shapeOf(reflect.TypeFor[api.RegisterDevices]()),
	shapeOf(reflect.TypeFor[api.ClaimDevices]()),
}

// queryShapes are request types with query parameters of every kind.
var queryShapes = []inputShape{
	shapeOf(reflect.TypeFor[api.ListAudit]()),
	shapeOf(reflect.TypeFor[api.ListDevices]()),
	shapeOf(reflect.TypeFor[api.ListAllDevices]()),
	shapeOf(reflect.TypeFor[api.ListDeviceGroups]()),
	shapeOf(reflect.TypeFor[api.Paging]()),
	shapeOf(reflect.TypeFor[api.Empty]()),
}

// wantDecodeError fails unless err is nil or a *sphere.Error with one of
// codes and a message.
func wantDecodeError(t *testing.T, err error, codes ...string) {
	t.Helper()
	if err == nil {
		return
	}
	var se *sphere.Error
	if !errors.As(err, &se) {
		t.Fatalf("error %v (%T) is not a *sphere.Error", err, err)
	}
	for _, c := range codes {
		if se.Code == c {
			if se.Message == "" {
				t.Fatalf("error %s has no message", se.Code)
			}
			return
		}
	}
	t.Fatalf("error code %q not among %v: %s", se.Code, codes, se.Message)
}

func FuzzDecodeBody(f *testing.F) {
	for _, s := range []struct {
		shape       uint8
		contentType string
		body        string
	}{
		{0, "application/json", `{"name":"Coffee Maker","description":"x"}`},
		{0, "application/json; charset=utf-8", `{"name":"Kettle"}`},
		{0, "", `{"name":"Kettle"}`},
		{0, "text/plain", `{"name":"Kettle"}`},
		{0, "application/json;;", `{}`},
		{0, "application/json", `{"name":"Kettle","colour":"red"}`},
		{0, "application/json", `{"name":42}`},
		{0, "application/json", `[{"name":"Kettle"}]`},
		{0, "application/json", `null`},
		{0, "application/json", ` null `},
		{0, "application/json", `{"name":"a"} {"name":"b"}`},
		{0, "application/json", `{"name":"a"}}`},
		{0, "application/json", `{"name":"a"`},
		{0, "application/json", ``},
		{0, "application/json", "\xef\xbb\xbf{}"},
		{1, "application/json", `{"name":null,"description":"d"}`},
		{2, "application/json", `{"product":"p","name":"g","os_feed":"RetailEval","require_hardware_rot":true}`},
		{3, "application/json", `{"require_hardware_rot":"yes"}`},
		{4, "application/json", `{"identity_public_key":"-----BEGIN PUBLIC KEY-----\nAA==\n-----END PUBLIC KEY-----\n"}`},
		{5, "application/json", `{"confirm":true}`},
		{5, "application/json", `{"confirm":1}`},
		{6, "application/json", `{"user":"alice","role":"Reader"}`},
		{7, "application/json", `{"name":"ci","expires_in_hours":1e40}`},
		{7, "application/json", `{"name":"ci","expires_in_hours":-1.5}`},
		{8, "application/json", `{}`},
		{9, "application/json", `{"devices":[{"identity_public_key":"a","attestation_public_key":"b","rot":"soft"},{}]}`},
		{9, "application/json", `{"devices":null}`},
		{9, "application/json", `{"devices":[[]]}`},
		{10, "application/json", `{"device_ids":["ab","cd"],"device_group_id":"g"}`},
		{10, "application/json", `{"device_ids":"ab"}`},
	} {
		f.Add(s.shape, s.contentType, []byte(s.body))
	}
	f.Fuzz(func(t *testing.T, which uint8, contentType string, body []byte) {
		shape := bodyShapes[int(which)%len(bodyShapes)]

		// The JSON decoder alone: nil only for exactly one JSON object.
		err := decodeJSONBody(body, reflect.New(shape.typ).Interface())
		wantDecodeError(t, err, sphere.EInvalid)
		if err == nil {
			if trimmed := bytes.TrimLeft(body, " \t\r\n"); !json.Valid(body) || len(trimmed) == 0 || trimmed[0] != '{' {
				t.Fatalf("decodeJSONBody accepted %q, which is not one JSON object", body)
			}
		}

		// The whole request decoder, as a handler sees it.
		r := &http.Request{
			Method:        "POST",
			URL:           &url.URL{Path: "/"},
			Header:        http.Header{},
			Body:          io.NopCloser(bytes.NewReader(body)),
			ContentLength: int64(len(body)),
		}
		if contentType != "" {
			r.Header.Set("Content-Type", contentType)
		}
		v, err := shape.decode(httptest.NewRecorder(), r)
		wantDecodeError(t, err, sphere.EInvalid, sphere.ETooLarge, sphere.EUnsupported)
		if v.Type() != reflect.PointerTo(shape.typ) {
			t.Fatalf("decode returned a %s, want *%s", v.Type(), shape.typ)
		}
	})
}

func FuzzDecodeQuery(f *testing.F) {
	for _, s := range []struct {
		shape uint8
		query string
	}{
		{0, "actor=alice&action=product.create&result=ok"},
		{0, "since=2026-01-02T15:04:05Z&until=2026-01-03T00:00:00%2B01:00"},
		{0, "since=yesterday"},
		{0, "page_size=10&page_token=cDE6YXVkaXQ6MTA"},
		{0, "page_size=-1"},
		{0, "page_size=99999999999999999999"},
		{1, "unassigned=true&product=Kettle&device_group=g"},
		{1, "unassigned=maybe"},
		{2, "unclaimed=1"},
		{3, "product=p&name=Field+Test"},
		{4, "page_size=1&page_size=2"},
		{4, "sort=name"},
		{4, "name=%zz"},
		{4, "page_size=1;x=2"},
		{4, "&&=&"},
		{5, ""},
		{5, "x"},
	} {
		f.Add(s.shape, s.query)
	}
	f.Fuzz(func(t *testing.T, which uint8, rawQuery string) {
		shape := queryShapes[int(which)%len(queryShapes)]
		r := &http.Request{Method: "GET", URL: &url.URL{Path: "/", RawQuery: rawQuery}, Header: http.Header{}, Body: http.NoBody}
		_, err := shape.decode(httptest.NewRecorder(), r)
		wantDecodeError(t, err, sphere.EInvalid)
		if err != nil {
			return
		}
		// Accepted: the query parses, and names each known parameter once.
		q, perr := url.ParseQuery(rawQuery)
		if perr != nil {
			t.Fatalf("decode accepted %q, which does not parse: %v", rawQuery, perr)
		}
		known := map[string]bool{}
		for _, qf := range shape.query {
			known[qf.name] = true
		}
		for name, vals := range q {
			if !known[name] || len(vals) != 1 {
				t.Fatalf("decode accepted %q: parameter %q (known %v, given %d times)", rawQuery, name, known[name], len(vals))
			}
		}
	})
}
