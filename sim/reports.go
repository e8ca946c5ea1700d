package sim

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/opensphere/sphere"
	"github.com/opensphere/sphere/report"
)

// ReportsReport is the outcome of the reports scenario: failure-report
// ingest by the service.
type ReportsReport struct {
	// Events were queued on the devices; Accepted and Duplicates are what
	// the service answered (a re-send after a lost answer is a duplicate).
	Events     int `json:"events"`
	Accepted   int `json:"accepted"`
	Duplicates int `json:"duplicates"`
	// Wall is the upload phase; PerSecond is Accepted over it.
	Wall      time.Duration `json:"wall_ns"`
	PerSecond float64       `json:"events_per_second"`
}

// runReports fills each device's on-disk failure-report queue (the agent's
// own, package report) with distinct events, outside the measured phase,
// then has every device upload its queue at once with the agent's
// uploader: batches of up to 1,000 events over mutual TLS, acknowledged
// only once the service has stored them.
func runReports(ctx context.Context, cfg Config, devs []*device, rep *Report, startPhase func()) (*ReportsReport, error) {
	per := cfg.ReportEvents
	ups := make([]*report.Uploader, len(devs))
	index := make(map[*device]int, len(devs))
	for i, d := range devs {
		index[d] = i
	}
	var fillErr atomic.Value
	var mu sync.Mutex
	each(ctx, devs, cfg.Concurrency, 0, 0, func(d *device) {
		i := index[d]
		q, err := report.OpenQueue(report.QueueConfig{Dir: filepath.Join(cfg.Dir, fmt.Sprintf("reports-%d", i)),
			MaxEvents: per + 16, MaxBytes: int64(per+16) * 2048})
		if err == nil {
			for n := 0; n < per && err == nil; n++ {
				code := n % 250
				err = q.Record(sphere.FailureEvent{Category: sphere.FailureAppExit, ComponentID: "sim-app", Version: "1.0.0",
					ExitCode: &code, Description: fmt.Sprintf("exited with code %d (event %d)", code, n)})
			}
		}
		var up *report.Uploader
		if err == nil {
			up, err = report.NewUploader(report.UploaderConfig{Queue: q, Poster: d.agent, BatchSize: 1000})
		}
		if err != nil {
			fillErr.CompareAndSwap(nil, err)
			return
		}
		mu.Lock()
		ups[i] = up
		mu.Unlock()
	})
	if err, _ := fillErr.Load().(error); err != nil {
		return nil, fmt.Errorf("sim: filling the failure-report queues: %w", err)
	}
	cfg.Progress("queued %d failure events on each of %d devices", per, len(devs))
	out := &ReportsReport{Events: per * len(devs)}
	rec := newRecorder()
	startPhase()
	start := time.Now()
	each(ctx, devs, cfg.Concurrency, 0, 0, func(d *device) {
		t := time.Now()
		res, err := ups[index[d]].Upload(ctx)
		rec.observe(t, err)
		mu.Lock()
		out.Accepted += res.Accepted
		out.Duplicates += res.Duplicates
		mu.Unlock()
	})
	out.Wall = time.Since(start)
	if out.Wall > 0 {
		out.PerSecond = float64(out.Accepted) / out.Wall.Seconds()
	}
	rep.Ops = append(rep.Ops, rec.op(fmt.Sprintf("upload of %d events", per)))
	return out, nil
}
