package agent

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"sync"
	"time"

	"github.com/opensphere/sphere"
	"github.com/opensphere/sphere/attest"
	"github.com/opensphere/sphere/report"
	"github.com/opensphere/sphere/tlsutil"
)

// runningMarker is a file that exists while the agent runs: found at
// start, it means the last run ended without a clean stop (a power cut, a
// kill, a panic).
const runningMarker = "running"

// RecordFailure puts a failure event in the report queue, if the agent has
// one. It returns once the event is on disk; a failure to record is
// logged, since a failure report must never take the agent down.
func (a *Agent) RecordFailure(ev sphere.FailureEvent) {
	if a.cfg.Reports == nil {
		return
	}
	if err := a.cfg.Reports.Record(ev); err != nil {
		a.log.Error("recording a failure report", "category", ev.Category, "err", err)
	}
}

// recordAttestation records a refused attestation (not a stale one: the
// device is genuine and its update will follow).
func (a *Agent) recordAttestation(res attest.Result) {
	if res.Result != sphere.AttestRefused {
		return
	}
	a.RecordFailure(sphere.FailureEvent{Category: sphere.FailureAttestRefused, Description: strings.TrimSpace(res.Reason + ": " + res.Detail)})
}

// RecordPanic records a panic of the agent and panics again: defer it at
// the top of the agent's goroutines. The event is on disk before the
// process dies.
func (a *Agent) RecordPanic() {
	r := recover()
	if r == nil {
		return
	}
	a.RecordFailure(sphere.FailureEvent{Category: sphere.FailureAgentPanic, Description: fmt.Sprintf("panic: %v; %s", r, stackTop(debug.Stack(), 6))})
	panic(r)
}

// stackTop keeps the first n frames of a stack trace, on one line.
func stackTop(stack []byte, n int) string {
	lines := strings.Split(strings.TrimSpace(string(stack)), "\n")
	if len(lines) > 1+2*n {
		lines = lines[:1+2*n]
	}
	for i := range lines {
		lines[i] = strings.TrimSpace(lines[i])
	}
	return strings.Join(lines, " | ")
}

// ReportOptions tune StartReports.
type ReportOptions struct {
	// Interval is the longest time between uploads; zero means 24 hours.
	Interval time.Duration
}

// Reporting is failure reporting started by StartReports.
type Reporting struct {
	up   *report.Uploader // nil without a queue
	stop func()
	once sync.Once
}

// Flush asks for an upload now.
func (r *Reporting) Flush() {
	if r.up != nil {
		r.up.Flush()
	}
}

// Stop ends the uploads and removes the running mark: call it on a clean
// stop only.
func (r *Reporting) Stop() { r.once.Do(r.stop) }

// StartReports starts failure reporting: it records an unclean shutdown
// if the last run did not stop cleanly, marks this run as running, and
// uploads the queue in the background (see report.Uploader). Without a
// queue it does nothing.
func (a *Agent) StartReports(ctx context.Context, o ReportOptions) (*Reporting, error) {
	if a.cfg.Reports == nil {
		return &Reporting{stop: func() {}}, nil
	}
	marker := filepath.Join(a.cfg.StateDir, runningMarker)
	if info, err := os.Stat(marker); err == nil {
		a.RecordFailure(sphere.FailureEvent{Category: sphere.FailureUncleanShutdown,
			Description: "the agent stopped without a clean stop (power cut, kill or panic)", FirstTime: info.ModTime().UTC(), LastTime: a.now().UTC()})
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("agent: running mark: %w", err)
	}
	if err := tlsutil.WriteFileAtomic(marker, []byte(a.now().UTC().Format(time.RFC3339)+"\n"), 0o600); err != nil {
		return nil, fmt.Errorf("agent: running mark: %w", err)
	}
	up, err := report.NewUploader(report.UploaderConfig{Queue: a.cfg.Reports, Poster: a, Interval: o.Interval, Logger: a.log})
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() {
		defer a.RecordPanic()
		up.Run(ctx)
	})
	return &Reporting{up: up, stop: func() {
		cancel()
		wg.Wait()
		if err := os.Remove(marker); err != nil {
			a.log.Warn("removing the running mark", "err", err)
		}
	}}, nil
}

// HTTPStatus is the HTTP status the service answered, so that the
// failure-report uploader can tell a refused batch from an unreachable
// service.
func (e *ServiceError) HTTPStatus() int { return e.Status }
