package server

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/opensphere/sphere"
	"github.com/opensphere/sphere/api"
)

// decodeFailureUpload is what the device route does with a body: the fast
// path or else the strict JSON decoder, then the batch's own checks.
func decodeFailureUpload(body []byte, now time.Time) (api.FailureUpload, error) {
	var u api.FailureUpload
	if !fastFailureUpload(body, &u) {
		if err := decodeJSONBody(body, &u); err != nil {
			return u, err
		}
	}
	return u, u.Validate(now)
}

var fuzzNow = time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)

const goodEvent = `{"id":"0123456789abcdef0123456789abcdef","class":"app","category":"app_crash","description":"signal SIGSEGV","component_id":"blinky","image_id":"img","version":"1.0","exit_code":139,"signal":"SIGSEGV","count":3,"first_time":"2026-10-31T10:00:00Z","last_time":"2026-10-31T11:00:00Z"}`

// FuzzFailureUpload feeds the device's upload decoder arbitrary bodies: it
// never panics, refuses with an invalid_argument error, and what it
// accepts keeps every bound and decodes the same again.
func FuzzFailureUpload(f *testing.F) {
	for _, s := range []string{
		`{"events":[]}`,
		`{"events":[` + goodEvent + `]}`,
		`{"events":[` + goodEvent + `,` + goodEvent + `]}`,
		`{"events":[` + strings.Replace(goodEvent, `"count":3`, `"count":-3`, 1) + `]}`,
		`{"events":[` + strings.Replace(goodEvent, `"app_crash"`, `"meltdown"`, 1) + `]}`,
		`{"events":[` + strings.Replace(goodEvent, `2026-10-31T10`, `1970-01-01T00`, 1) + `]}`,
		`{"events":[` + strings.Replace(goodEvent, `"signal":"SIGSEGV"`, `"signal":"SIGSEGV","extra":1`, 1) + `]}`,
		`{"events":null}`, `null`, `[]`, `{"events":[{}]}`, `{"events":[` + goodEvent + `]} {}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		u, err := decodeFailureUpload(body, fuzzNow)
		if err != nil {
			wantDecodeError(t, err, sphere.EInvalid)
			return
		}
		if len(u.Events) > api.MaxFailureBatch {
			t.Fatalf("accepted %d events", len(u.Events))
		}
		ids := map[string]bool{}
		for _, e := range u.Events {
			if len(e.ID) != 32 || ids[e.ID] || e.Count < 1 || e.LastTime.Before(e.FirstTime) || len(e.Description) > 4*sphere.MaxFailureDescription {
				t.Fatalf("accepted a bad event %+v", e)
			}
			if _, ok := sphere.FailureCategories[e.Category]; !ok {
				t.Fatalf("accepted category %q", e.Category)
			}
			ids[e.ID] = true
		}
		again, err := json.Marshal(u)
		if err != nil {
			t.Fatal(err)
		}
		u2, err := decodeFailureUpload(again, fuzzNow)
		if err != nil || len(u2.Events) != len(u.Events) {
			t.Fatalf("an accepted upload re-encoded is refused: %v", err)
		}
	})
}

func TestFailureUploadRefusals(t *testing.T) {
	many := make([]string, api.MaxFailureBatch+1)
	for i := range many {
		many[i] = strings.Replace(goodEvent, "0123456789abcdef0123456789abcdef", strings.Repeat("0", 28)+hex4(i), 1)
	}
	for name, c := range map[string]struct{ body, want string }{
		"ok":                {`{"events":[` + goodEvent + `]}`, ""},
		"error/unknown":     {`{"events":[` + strings.Replace(goodEvent, `"count"`, `"cnt":1,"count"`, 1) + `]}`, "unknown field"},
		"error/duplicate":   {`{"events":[` + goodEvent + `,` + goodEvent + `]}`, "given twice"},
		"error/too many":    {`{"events":[` + strings.Join(many, ",") + `]}`, "at most 1000 events"},
		"error/future":      {`{"events":[` + strings.Replace(goodEvent, `"last_time":"2026-10-31T11`, `"last_time":"2027-10-31T11`, 1) + `]}`, "not in the future"},
		"error/upper id":    {`{"events":[` + strings.Replace(goodEvent, "0123456789abcdef", "0123456789ABCDEF", 1) + `]}`, "lowercase hex"},
		"error/zero count":  {`{"events":[` + strings.Replace(goodEvent, `"count":3`, `"count":0`, 1) + `]}`, "count 0"},
		"error/bad class":   {`{"events":[` + strings.Replace(goodEvent, `"class":"app"`, `"class":"kernel"`, 1) + `]}`, "not os or app"},
		"error/control chr": {`{"events":[` + strings.Replace(goodEvent, `signal SIGSEGV`, `a\u0000b`, 1) + `]}`, "control characters"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := decodeFailureUpload([]byte(c.body), fuzzNow)
			if c.want == "" && err != nil || c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)) {
				t.Errorf("error %v; want %q", err, c.want)
			}
		})
	}
}

func hex4(i int) string {
	const digits = "0123456789abcdef"
	return string([]byte{digits[i>>12&15], digits[i>>8&15], digits[i>>4&15], digits[i&15]})
}
