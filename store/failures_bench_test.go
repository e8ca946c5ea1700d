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
	d, err := s.RegisterDevice(ctx, newRegistration(b))
	if err != nil {
		b.Fatal(err)
	}
	d, _ = ts.ClaimDevice(ctx, d.ID, gs.Items[0].ID)
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
