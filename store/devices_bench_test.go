package store

import (
	"context"
	"sync/atomic"
	"testing"
	"time"
)

// BenchmarkDeviceReads compares the two reads of one device on SQLite: the
// full record (GetDevice: keys, EK certificate, last attestation) and the
// device API's narrow one (GetDeviceCaller), among 1,000 devices.
func BenchmarkDeviceReads(b *testing.B) {
	s, ts, groupID := benchStore(b)
	ctx := context.Background()
	ids := benchDevices(b, s, ts, groupID, 1000)
	b.Run("GetDevice", func(b *testing.B) {
		i := 0
		for b.Loop() {
			if _, err := s.GetDevice(ctx, ids[i%len(ids)]); err != nil {
				b.Fatal(err)
			}
			i++
		}
	})
	// A request's context can be cancelled: database/sql and the driver
	// would each watch it with a goroutine for the query's lifetime.
	reqCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	for _, c := range []struct {
		name string
		ctx  context.Context
	}{{"GetDeviceCaller", ctx}, {"GetDeviceCaller/request-context", reqCtx}} {
		b.Run(c.name, func(b *testing.B) {
			i := 0
			cpu0 := cpuTime()
			for b.Loop() {
				if _, err := s.GetDeviceCaller(c.ctx, ids[i%len(ids)]); err != nil {
					b.Fatal(err)
				}
				i++
			}
			b.ReportMetric(float64((cpuTime()-cpu0).Nanoseconds())/float64(b.N)/1000, "cpu-µs/op")
		})
	}
}

// BenchmarkConcurrentWrites compares, on SQLite, 32 writers updating one
// device row each: as a statement of its own (its own commit, SQLite's
// busy handler queueing the writers) and as RecordUpdateCheck writes it
// when a device checks less often than the coarse interval (a
// transaction, committed together with the others waiting; group.go).
func BenchmarkConcurrentWrites(b *testing.B) {
	s, ts, groupID := benchStore(b)
	ctx := context.Background()
	ids := benchDevices(b, s, ts, groupID, 1000)
	var next atomic.Int64
	run := func(b *testing.B, write func(id string) error) {
		b.SetParallelism(16)
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if err := write(ids[next.Add(1)%int64(len(ids))]); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	b.Run("statement", func(b *testing.B) {
		run(b, func(id string) error {
			_, err := s.exec(ctx, "UPDATE devices SET update_checked_at = ?, reported = ?, update_error = ?, check_now = 0 WHERE id = ?",
				time.Now().UnixMicro(), "[]", "", id)
			return err
		})
	})
	b.Run("RecordUpdateCheck", func(b *testing.B) {
		run(b, func(id string) error {
			_, err := s.RecordUpdateCheck(ctx, id, nil, []byte("[]"), "", 0)
			return err
		})
	})
}

// benchDevices registers n devices and claims them into the group.
func benchDevices(b *testing.B, s *Store, ts *TenantStore, groupID string, n int) []string {
	b.Helper()
	ctx := context.Background()
	ids := make([]string, n)
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
	return ids
}
