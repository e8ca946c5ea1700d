package image

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strings"
	"unicode/utf8"
)

// unknownFieldError reports an object key that names no field. Parent is the
// dotted path of the object holding it ("" for the top level).
type unknownFieldError struct {
	Parent, Key string
	Hint        string // the field it differs from only in letter case, if any
}

func (e *unknownFieldError) Error() string {
	msg := fmt.Sprintf("unknown field %q", e.Key)
	if e.Parent != "" {
		msg = fmt.Sprintf("unknown field %q in %s", e.Key, e.Parent)
	}
	if e.Hint != "" {
		msg += fmt.Sprintf(" (did you mean %q? names are case-sensitive)", e.Hint)
	}
	return msg
}

// decodeStrict decodes one JSON value from data into v, which must be a
// pointer to a struct. It is stricter than encoding/json: every object key
// must name a field exactly (encoding/json matches keys case-insensitively),
// no key may appear twice in an object (encoding/json lets the last one win),
// the text must be valid UTF-8 (encoding/json silently replaces bad bytes),
// and nothing may follow the value. Signed metadata must mean one thing to
// every parser that reads it; these are the usual ways two parsers disagree.
// Values of types with their own UnmarshalJSON are left to that method.
func decodeStrict(data []byte, v any) error {
	if !utf8.Valid(data) {
		return errors.New("not valid UTF-8")
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := checkKeys(dec, reflect.TypeOf(v), ""); err != nil {
		return err
	}
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("unexpected data after the JSON value")
	}
	dec = json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return jsonError(err)
	}
	return nil
}

// jsonError rewords encoding/json's errors to name the field in the
// document's terms.
func jsonError(err error) error {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		if te.Field == "" {
			return fmt.Errorf("expected %s, got %s", jsonKind(te.Type), te.Value)
		}
		return fmt.Errorf("field %q: expected %s, got %s", te.Field, jsonKind(te.Type), te.Value)
	}
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return fmt.Errorf("invalid JSON at byte %d: %v", se.Offset, se)
	}
	if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
		return errors.New("invalid JSON: unexpected end of input")
	}
	return err
}

// jsonKind names a Go type as the JSON value it expects.
func jsonKind(t reflect.Type) string {
	switch t.Kind() {
	case reflect.Bool:
		return "true or false"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return "an integer"
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "a non-negative integer that fits in " + t.Kind().String()
	case reflect.String:
		return "a string"
	case reflect.Slice, reflect.Array:
		if t.Elem().Kind() == reflect.Uint8 {
			return "a base64 string"
		}
		return "a list"
	case reflect.Struct, reflect.Map:
		return "an object"
	}
	return t.String()
}

var unmarshalerType = reflect.TypeFor[json.Unmarshaler]()

// checkKeys reads one value from dec and checks the keys of every object in
// it against the json field names of t (nil t: no checks, only consume).
func checkKeys(dec *json.Decoder, t reflect.Type, path string) error {
	for t != nil && t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t != nil && reflect.PointerTo(t).Implements(unmarshalerType) {
		// The type checks its own value; run it here, where the error
		// can name the field.
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return jsonError(err)
		}
		if string(raw) == "null" {
			return nil // encoding/json leaves the value alone, so do we
		}
		if err := reflect.New(t).Interface().(json.Unmarshaler).UnmarshalJSON(raw); err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		return nil
	}
	tok, err := dec.Token()
	if err != nil {
		return jsonError(err)
	}
	switch tok {
	case json.Delim('{'):
		var fields map[string]reflect.Type
		if t != nil && t.Kind() == reflect.Struct {
			fields = jsonFields(t)
		}
		seen := map[string]bool{}
		for dec.More() {
			kt, err := dec.Token()
			if err != nil {
				return jsonError(err)
			}
			key := kt.(string)
			if seen[key] {
				return fmt.Errorf("field %q appears twice", join(path, key))
			}
			seen[key] = true
			var ft reflect.Type
			if fields != nil {
				var ok bool
				if ft, ok = fields[key]; !ok {
					e := &unknownFieldError{Parent: path, Key: key}
					for name := range fields {
						if strings.EqualFold(name, key) {
							e.Hint = name
						}
					}
					return e
				}
			}
			if err := checkKeys(dec, ft, join(path, key)); err != nil {
				return err
			}
		}
		_, err = dec.Token()
		return jsonError(err)
	case json.Delim('['):
		var et reflect.Type
		if t != nil && (t.Kind() == reflect.Slice || t.Kind() == reflect.Array) {
			et = t.Elem()
		}
		for dec.More() {
			if err := checkKeys(dec, et, path); err != nil {
				return err
			}
		}
		_, err = dec.Token()
		return jsonError(err)
	}
	return nil
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// jsonFields maps the JSON names of t's exported fields to their types.
func jsonFields(t reflect.Type) map[string]reflect.Type {
	m := map[string]reflect.Type{}
	for i := range t.NumField() {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		name := f.Name
		if tag, ok := f.Tag.Lookup("json"); ok {
			n, _, _ := strings.Cut(tag, ",")
			if n == "-" {
				continue
			}
			if n != "" {
				name = n
			}
		}
		m[name] = f.Type
	}
	return m
}
