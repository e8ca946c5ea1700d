package report

import (
	"testing"
	"time"

	"github.com/opensphere/sphere"
)

// FuzzDecodeFrame reads arbitrary bytes as a queue segment, as OpenQueue
// does after a power cut or disk corruption: it never panics, never reads
// past the data, and a record it accepts can be written again.
func FuzzDecodeFrame(f *testing.F) {
	ev := sphere.FailureEvent{ID: NewEventID(), Class: "app", Category: sphere.FailureAppCrash, Description: "SIGSEGV", Count: 2,
		FirstTime: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), LastTime: time.Date(2026, 1, 2, 0, 0, 0, 0, time.UTC)}
	for _, r := range []record{{Seq: 7, Event: &ev}, {Seq: 7, Update: true, Count: 3, Last: ev.LastTime}} {
		b, err := encodeFrame(r)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
		f.Add(b[:len(b)-1])
		f.Add(append(b, b...))
	}
	f.Add([]byte{0, 0, 0, 0, 0, 0, 0, 0})
	f.Add([]byte{0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, data []byte) {
		for off := 0; off < len(data); {
			r, n, err := decodeFrame(data[off:])
			if err != nil {
				return
			}
			if n <= frameHeader || off+n > len(data) {
				t.Fatalf("frame of %d bytes at %d of %d", n, off, len(data))
			}
			if _, err := encodeFrame(r); err != nil {
				t.Fatalf("an accepted record does not encode: %v", err)
			}
			off += n
		}
	})
}
