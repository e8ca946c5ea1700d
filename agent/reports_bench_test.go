package agent

import (
	"context"
	"fmt"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/opensphere/sphere"
	"github.com/opensphere/sphere/api"
	"github.com/opensphere/sphere/report"
	"github.com/opensphere/sphere/rot"
)

// BenchmarkFailureIngest measures failure-report ingest (BENCHMARKS.md has
// the figures and the command), in events per second:
//
//   - http: batches of 1,000 events uploaded by one device over mutual TLS
//     through the real handler into SQLite, one after the other;
//   - http-parallel: the same from 4 devices, 4 uploads at a time;
//   - store: the store's batch insert alone.
func BenchmarkFailureIngest(b *testing.B) {
	svc := startService(b)
	var devs []*device
	for range 4 {
		d := svc.softDevice(b, "Field Test")
		if _, err := d.agent.Attest(context.Background()); err != nil {
			b.Fatal(err)
		}
		devs = append(devs, d)
	}
	var seq atomic.Int64
	batch := func() api.FailureUpload {
		now := svc.clock.Now().UTC()
		u := api.FailureUpload{Events: make([]sphere.FailureEvent, api.MaxFailureBatch)}
		for i := range u.Events {
			code := 1 + i%3
			u.Events[i] = sphere.FailureEvent{ID: fmt.Sprintf("%032x", seq.Add(1)), Class: "app", Category: sphere.FailureAppExit,
				Description: fmt.Sprintf("exit code %d", code), ComponentID: "blinky", ImageID: "img-1", Version: "1.0.0", ExitCode: &code,
				Count: 1, FirstTime: now, LastTime: now}
		}
		return u
	}
	post := func(b *testing.B, d *device) {
		var res api.FailureUploadResult
		if err := d.agent.Post(context.Background(), report.UploadPath, batch(), &res); err != nil || res.Accepted != api.MaxFailureBatch {
			b.Fatalf("%+v %v", res, err)
		}
	}
	// On a shared machine the wall rate depends on the neighbours; the
	// process's CPU time per event (service and devices together) does not.
	report := func(b *testing.B, cpu0 time.Duration) {
		n := float64(b.N * api.MaxFailureBatch)
		b.ReportMetric(n/b.Elapsed().Seconds(), "events/s")
		b.ReportMetric(float64((cpuTime()-cpu0).Microseconds())/n, "cpu-µs/event")
	}
	b.Run("http", func(b *testing.B) {
		cpu0 := cpuTime()
		for b.Loop() {
			post(b, devs[0])
		}
		report(b, cpu0)
	})
	b.Run("http-parallel", func(b *testing.B) {
		var next atomic.Int64
		cpu0 := cpuTime()
		b.SetParallelism(2)
		b.RunParallel(func(pb *testing.PB) {
			d := devs[int(next.Add(1))%len(devs)]
			for pb.Next() {
				post(b, d)
			}
		})
		report(b, cpu0)
	})
	dev, err := svc.st.GetDevice(context.Background(), devs[0].agent.DeviceID())
	if err != nil {
		b.Fatal(err)
	}
	b.Run("store", func(b *testing.B) {
		cpu0 := cpuTime()
		for b.Loop() {
			u := batch()
			if n, err := svc.st.AddFailureReports(context.Background(), dev, u.Events); err != nil || n != len(u.Events) {
				b.Fatal(n, err)
			}
		}
		report(b, cpu0)
	})
}

// cpuTime is the process's user and system CPU time so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// softDevice makes a device with a soft root of trust, enrolled in group,
// its measurements taken.
func (svc *service) softDevice(t testing.TB, group string) *device {
	t.Helper()
	dir := t.TempDir()
	r, err := rot.OpenSoft(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	d := svc.newDevice(t, r, dir)
	svc.enroll(t, d, group)
	if err := d.agent.Measure(); err != nil {
		t.Fatal(err)
	}
	return d
}
