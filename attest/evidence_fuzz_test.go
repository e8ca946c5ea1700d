package attest

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/opensphere/sphere/rot"
)

// FuzzDecodeEvidence: whatever a device sends, decoding never panics, and
// either fails with ErrMalformed or yields evidence that Validate accepts
// and that round-trips through JSON.
func FuzzDecodeEvidence(f *testing.F) {
	digest := strings.Repeat("ab", 32)
	good, _ := json.Marshal(Evidence{
		DeviceID: strings.Repeat("0", 64), Challenge: "AQID", RoT: rot.KindTPM,
		Quote:              rot.Attestation{Attest: []byte{1, 2}, Signature: []byte{3}},
		EventLog:           []rot.Event{{Type: "agent", Name: "sphere", Digest: digest}},
		IdentityPublicArea: []byte{4}, Certify: rot.Attestation{Attest: []byte{5}, Signature: []byte{6}}, CSR: []byte{7},
	})
	f.Add(good)
	f.Add([]byte(`{}`))
	f.Add([]byte(`[]`))
	f.Add([]byte(`null`))
	f.Add([]byte(`{"device_id":"x","event_log":[{"type":"agent","digest":"zz"}]}`))
	f.Add([]byte(`{"device_id":"x"} {"device_id":"y"}`))
	f.Add([]byte(strings.Replace(string(good), `"rot":"tpm"`, `"rot":"hsm"`, 1)))
	f.Fuzz(func(t *testing.T, data []byte) {
		ev, err := DecodeEvidence(data)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error does not wrap ErrMalformed: %v", err)
			}
			if ev != nil {
				t.Fatal("evidence returned with an error")
			}
			return
		}
		if err := ev.Validate(); err != nil {
			t.Fatalf("decoded evidence fails Validate: %v", err)
		}
		again, err := json.Marshal(ev)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := DecodeEvidence(again); err != nil {
			t.Fatalf("re-encoded evidence does not decode: %v", err)
		}
	})
}
