package server

import (
	"strconv"

	"github.com/opensphere/sphere"
	"github.com/opensphere/sphere/api"
)

// fastFailureUpload is the fast path of a failure upload's body, the
// service's busiest request: up to 1,000 events, which encoding/json
// decodes by reflection, field by field, with a string allocated for each
// value. It reads only the plain form a device sends: exact field names,
// each at most once, ASCII strings without escapes, integers, and times
// that time.Time.UnmarshalJSON takes. The strings share one copy of the
// body. On anything else (escapes, null, unknown or repeated fields, other
// spellings, bad JSON) it returns false and the caller decodes the body
// with decodeJSONBody, which gives the same result or the error; so the
// route accepts and refuses exactly what it did before
// (FuzzFastFailureUpload checks that the two agree).
func fastFailureUpload(body []byte, u *api.FailureUpload) bool {
	p := failureParser{s: string(body)}
	if !p.byte('{') {
		return false
	}
	key, ok := p.key()
	if !ok || key != "events" || !p.byte('[') {
		return false
	}
	events := make([]sphere.FailureEvent, 0, min(len(body)/200+1, api.MaxFailureBatch))
	var codes []int
	if !p.byte(']') {
		for {
			var e sphere.FailureEvent
			if !p.event(&e, &codes) {
				return false
			}
			events = append(events, e)
			if p.byte(']') {
				break
			}
			if !p.byte(',') {
				return false
			}
		}
	}
	if !p.byte('}') {
		return false
	}
	p.space()
	if p.i != len(p.s) {
		return false
	}
	u.Events = events
	return true
}

// failureParser reads the plain JSON of a failure upload from s at i.
type failureParser struct {
	s string
	i int
}

func (p *failureParser) space() {
	for p.i < len(p.s) {
		switch p.s[p.i] {
		case ' ', '\t', '\n', '\r':
			p.i++
		default:
			return
		}
	}
}

// byte skips white space and then c, if it is next.
func (p *failureParser) byte(c byte) bool {
	p.space()
	if p.i < len(p.s) && p.s[p.i] == c {
		p.i++
		return true
	}
	return false
}

// str reads a string of printable ASCII without escapes, and returns it
// without and with its quotes.
func (p *failureParser) str() (string, string, bool) {
	p.space()
	if p.i >= len(p.s) || p.s[p.i] != '"' {
		return "", "", false
	}
	start := p.i
	for j := p.i + 1; j < len(p.s); j++ {
		c := p.s[j]
		if c == '"' {
			p.i = j + 1
			return p.s[start+1 : j], p.s[start : j+1], true
		}
		if c < 0x20 || c >= 0x7f || c == '\\' {
			return "", "", false
		}
	}
	return "", "", false
}

// key reads an object key and its colon.
func (p *failureParser) key() (string, bool) {
	k, _, ok := p.str()
	return k, ok && p.byte(':')
}

// integer reads a JSON integer (no fraction or exponent) that fits bits.
func (p *failureParser) integer(bits int) (int64, bool) {
	p.space()
	start := p.i
	if p.i < len(p.s) && p.s[p.i] == '-' {
		p.i++
	}
	digits := p.i
	for p.i < len(p.s) && p.s[p.i] >= '0' && p.s[p.i] <= '9' {
		p.i++
	}
	if p.i == digits || (p.s[digits] == '0' && p.i > digits+1) {
		return 0, false
	}
	if p.i < len(p.s) {
		switch p.s[p.i] {
		case '.', 'e', 'E':
			return 0, false
		}
	}
	n, err := strconv.ParseInt(p.s[start:p.i], 10, bits)
	return n, err == nil
}

// The fields of an event, as bits of a set, to refuse a repeated one.
const (
	fID = 1 << iota
	fClass
	fCategory
	fDescription
	fComponentID
	fImageID
	fVersion
	fExitCode
	fSignal
	fCount
	fFirstTime
	fLastTime
)

// event reads one event object. Exit codes point into codes, allocated a
// batch at a time.
func (p *failureParser) event(e *sphere.FailureEvent, codes *[]int) bool {
	if !p.byte('{') {
		return false
	}
	if p.byte('}') {
		return true
	}
	seen := 0
	for {
		key, ok := p.key()
		if !ok {
			return false
		}
		var bit int
		var dst *string
		switch key {
		case "id":
			bit, dst = fID, &e.ID
		case "class":
			bit, dst = fClass, &e.Class
		case "category":
			bit, dst = fCategory, &e.Category
		case "description":
			bit, dst = fDescription, &e.Description
		case "component_id":
			bit, dst = fComponentID, &e.ComponentID
		case "image_id":
			bit, dst = fImageID, &e.ImageID
		case "version":
			bit, dst = fVersion, &e.Version
		case "signal":
			bit, dst = fSignal, &e.Signal
		case "exit_code":
			bit = fExitCode
		case "count":
			bit = fCount
		case "first_time":
			bit = fFirstTime
		case "last_time":
			bit = fLastTime
		default:
			return false
		}
		if seen&bit != 0 {
			return false
		}
		seen |= bit
		switch {
		case dst != nil:
			if *dst, _, ok = p.str(); !ok {
				return false
			}
		case bit == fExitCode:
			n, ok := p.integer(strconv.IntSize)
			if !ok {
				return false
			}
			if len(*codes) == cap(*codes) {
				*codes = make([]int, 0, 256)
			}
			*codes = append(*codes, int(n))
			e.ExitCode = &(*codes)[len(*codes)-1]
		case bit == fCount:
			if e.Count, ok = p.integer(64); !ok {
				return false
			}
		default:
			_, quoted, ok := p.str()
			if !ok {
				return false
			}
			t := &e.FirstTime
			if bit == fLastTime {
				t = &e.LastTime
			}
			if t.UnmarshalJSON([]byte(quoted)) != nil {
				return false
			}
		}
		if p.byte('}') {
			return true
		}
		if !p.byte(',') {
			return false
		}
	}
}
