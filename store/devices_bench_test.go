package store

import (
	"context"
	"path/filepath"
	"testing"
)

// BenchmarkDeviceReads compares the two reads of one device on SQLite: the
// full record (GetDevice: keys, EK certificate, last attestation) and the
// device API's narrow one (GetDeviceCaller), among 1,000 devices.
func BenchmarkDeviceReads(b *testing.B) {
	s, err := Open(context.Background(), Config{DSN: filepath.Join(b.TempDir(), "s.db")})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	tn, _ := s.CreateTenant(ctx, "A", "")
	ts := s.Tenant(tn.ID)
	p, _ := ts.CreateProduct(ctx, "Lamp", "")
	gs, _ := ts.ListDeviceGroups(ctx, DeviceGroupFilter{Product: p.ID}, PageRequest{})
	ids := make([]string, 1000)
	for i := range ids {
		d, err := s.RegisterDevice(ctx, newRegistration(b))
		if err != nil {
			b.Fatal(err)
		}
		if _, err := ts.ClaimDevice(ctx, d.ID, gs.Items[0].ID); err != nil {
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
