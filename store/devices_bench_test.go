package store

import (
	"context"
	"testing"
)

// BenchmarkDeviceReads compares the two reads of one device on SQLite: the
// full record (GetDevice: keys, EK certificate, last attestation) and the
// device API's narrow one (GetDeviceCaller), among 1,000 devices.
func BenchmarkDeviceReads(b *testing.B) {
	s, ts, groupID := benchStore(b)
	ctx := context.Background()
	ids := make([]string, 1000)
	for i := range ids {
		d, err := s.RegisterDevice(ctx, newRegistration(b))
		if err != nil {
			b.Fatal(err)
		}
		if _, err := ts.ClaimDevice(ctx, d.ID, groupID); err != nil {
			b.Fatal(err)
		}
		ids[i] = d.ID
	}
	b.Run("GetDevice", func(b *testing.B) {
		i := 0
		for b.Loop() {
			if _, err := s.GetDevice(ctx, ids[i%len(ids)]); err != nil {
				b.Fatal(err)
			}
			i++
		}
	})
	b.Run("GetDeviceCaller", func(b *testing.B) {
		i := 0
		for b.Loop() {
			if _, err := s.GetDeviceCaller(ctx, ids[i%len(ids)]); err != nil {
				b.Fatal(err)
			}
			i++
		}
	})
}
