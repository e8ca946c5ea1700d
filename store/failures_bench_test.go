package store

import (
	"context"
	"fmt"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/opensphere/sphere"
)

// BenchmarkAddFailureReports measures the store's failure-report ingest on
// SQLite: batches of 1,000 events, one transaction each.
func BenchmarkAddFailureReports(b *testing.B) {
	s, ts, groupID := benchStore(b)
	ctx := context.Background()
	d, err := s.RegisterDevice(ctx, newRegistration(b))
	if err != nil {
		b.Fatal(err)
	}
	d, _ = ts.ClaimDevice(ctx, d.ID, groupID)
	now := time.Now().UTC()
	n := 0
	cpu0 := cpuTime()
	for b.Loop() {
		events := make([]sphere.FailureEvent, 1000)
		for i := range events {
			n++
			code := 1 + i%3
			events[i] = sphere.FailureEvent{ID: fmt.Sprintf("%032x", n), Class: "app", Category: sphere.FailureAppExit,
				Description: fmt.Sprintf("exit code %d", code), ComponentID: "blinky", ImageID: "img-1", Version: "1.0.0", ExitCode: &code,
				Count: 1, FirstTime: now, LastTime: now}
		}
		if got, err := s.AddFailureReports(ctx, d, events); err != nil || got != len(events) {
			b.Fatal(got, err)
		}
	}
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "events/s")
	// On a shared machine the wall rate depends on the neighbours; the
	// process's CPU time per event does not.
	b.ReportMetric(float64((cpuTime()-cpu0).Microseconds())/float64(n), "cpu-µs/event")
}

// cpuTime is the process's user and system CPU time so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// benchStore opens a SQLite store for a benchmark (closed at its end) with
// a tenant and a product, and returns the tenant and the product's first
// device group.
func benchStore(b *testing.B) (*Store, *TenantStore, string) {
	s, err := Open(context.Background(), Config{DSN: filepath.Join(b.TempDir(), "s.db")})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	ctx := context.Background()
	tn, err := s.CreateTenant(ctx, "A", "")
	if err != nil {
		b.Fatal(err)
	}
	ts := s.Tenant(tn.ID)
	p, err := ts.CreateProduct(ctx, "Lamp", "")
	if err != nil {
		b.Fatal(err)
	}
	gs, err := ts.ListDeviceGroups(ctx, DeviceGroupFilter{Product: p.ID}, PageRequest{})
	if err != nil || len(gs.Items) == 0 {
		b.Fatal("no device group", err)
	}
	return s, ts, gs.Items[0].ID
}
