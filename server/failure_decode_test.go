package server

import (
	"encoding/json"
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/opensphere/sphere"
	"github.com/opensphere/sphere/api"
)

// failureBodySeeds are upload bodies the fast path takes, and ones it must
// leave to encoding/json.
func failureBodySeeds(t testing.TB) []string {
	now := time.Date(2026, 3, 1, 12, 0, 0, 123456789, time.UTC)
	code := -3
	u := api.FailureUpload{Events: []sphere.FailureEvent{
		{ID: "0123456789abcdef0123456789abcdef", Class: "app", Category: sphere.FailureAppCrash, Description: "signal SIGSEGV",
			ComponentID: "blinky", ImageID: "img-1", Version: "1.0.0", ExitCode: &code, Signal: "SIGSEGV", Count: 7,
			FirstTime: now.Add(-time.Hour), LastTime: now},
		{ID: "fedcba9876543210fedcba9876543210", Class: "os", Category: sphere.FailureUncleanShutdown, Description: "power cut",
			Count: 1, FirstTime: now.In(time.FixedZone("", 2*3600)), LastTime: now},
	}}
	plain, err := json.Marshal(u)
	if err != nil {
		t.Fatal(err)
	}
	indented, _ := json.MarshalIndent(u, "", "\t")
	return []string{
		string(plain), string(indented), `{"events":[]}`, `{"events":[{}]}`, " {\"events\" : [ { } , {\"count\":1} ] } \n",
		`{"events":[{"count":-0}]}`, `{"events":[{"first_time":"2026-03-01T12:00:00+02:00"}]}`,
		`{"events":null}`, `{}`, `{"Events":[]}`, `{"events":[{"ID":"x"}]}`, `{"events":[{"id":"a","id":"b"}]}`,
		`{"events":[{"id":"caf\u00e9"}]}`, `{"events":[{"description":"café"}]}`, `{"events":[{"exit_code":null}]}`,
		`{"events":[{"exit_code":1.0}]}`, `{"events":[{"exit_code":1e2}]}`, `{"events":[{"count":01}]}`,
		`{"events":[{"count":9223372036854775808}]}`, `{"events":[{"count":"1"}]}`, `{"events":[{"first_time":"2026-03-01"}]}`,
		`{"events":[{"last_time":null}]}`, `{"events":[{"extra":1}]}`,
		`{"events":[]} {}`, `{"events":[],}`, `{"events":[{},]}`, `{"events":[{"id":"a"}}`, `{"events":[1]}`, `null`, `[]`,
		`{"events":[{"description":"tab\tinside"}]}`, `{"events":[{"description":"del` + "\x7f" + `"}]}`, `{"events":[{"count":-}]}`,
		`{"events":[{"exit_code":-9223372036854775809}]}`, `{"events":[` + "\xff" + `]}`, `{"events":[{"id":"\ud800"}]}`,
	}
}

// FuzzFastFailureUpload checks that the fast path of the failure upload
// agrees with encoding/json: whatever it takes, decodeJSONBody takes too,
// with the same result.
func FuzzFastFailureUpload(f *testing.F) {
	for _, s := range failureBodySeeds(f) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, body string) {
		var fast api.FailureUpload
		if !fastFailureUpload([]byte(body), &fast) {
			return
		}
		var slow api.FailureUpload
		if err := decodeJSONBody([]byte(body), &slow); err != nil {
			t.Fatalf("fast path took %q, encoding/json refuses it: %v", body, err)
		}
		if !reflect.DeepEqual(fast, slow) {
			t.Fatalf("%q: fast path gives %+v, encoding/json %+v", body, fast, slow)
		}
	})
}

// The fast path takes what devices send: the agent's encoding of a batch.
func TestFastFailureUpload(t *testing.T) {
	seeds := failureBodySeeds(t)
	for i, s := range seeds {
		var u api.FailureUpload
		took := fastFailureUpload([]byte(s), &u)
		if want := i < 7; took != want {
			t.Errorf("seed %d %q: fast path took it: %v; want %v", i, s, took, want)
		}
	}
	var u api.FailureUpload
	var events []sphere.FailureEvent
	for i := range api.MaxFailureBatch {
		code := i % 3
		events = append(events, sphere.FailureEvent{ID: fmt.Sprintf("%032x", i), Class: "app", Category: sphere.FailureAppExit,
			Description: fmt.Sprintf("exit code %d", code), ExitCode: &code, Count: 1, FirstTime: time.Now(), LastTime: time.Now()})
	}
	b, _ := json.Marshal(api.FailureUpload{Events: events})
	if !fastFailureUpload(b, &u) || len(u.Events) != len(events) || *u.Events[999].ExitCode != 999%3 || *u.Events[1].ExitCode != 1 {
		t.Fatalf("a batch of %d events: fast path took %d", len(events), len(u.Events))
	}
	var slow api.FailureUpload
	if err := decodeJSONBody(b, &slow); err != nil || !reflect.DeepEqual(u, slow) {
		t.Fatalf("fast and encoding/json differ on a full batch: %v", err)
	}
}
