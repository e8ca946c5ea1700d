package report

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/opensphere/sphere/api"
	"github.com/opensphere/sphere/internal/backoff"
)

// Poster sends JSON to a device API route with mutual TLS; *agent.Agent is
// one.
type Poster interface {
	Post(ctx context.Context, path string, in, out any) error
}

// UploadPath is the service's route for failure reports.
const UploadPath = "/device/v1/failure-reports"

// UploaderConfig configures an Uploader.
type UploaderConfig struct {
	Queue  *Queue // required
	Poster Poster // required
	// Interval is the longest time between uploads; zero means 24 hours.
	// Each wait is jittered down by up to a tenth.
	Interval time.Duration
	// FillThreshold uploads early once the queue is this full (0 to 1);
	// zero means 0.5.
	FillThreshold float64
	// BatchSize is the events per request; zero means api.MaxFailureBatch.
	BatchSize int
	// Logger receives the uploader's logs; nil discards them.
	Logger *slog.Logger
}

// Uploader sends the queue to the service: at least every Interval,
// sooner when the queue passes its fill threshold or on Flush. A batch
// whose answer was lost is sent again as it was (same event ids), so the
// service counts it once.
type Uploader struct {
	cfg   UploaderConfig
	log   *slog.Logger
	flush chan struct{}
}

// NewUploader makes an Uploader.
func NewUploader(cfg UploaderConfig) (*Uploader, error) {
	if cfg.Queue == nil || cfg.Poster == nil {
		return nil, errors.New("report.NewUploader: a queue and a poster are required")
	}
	if cfg.Interval <= 0 {
		cfg.Interval = 24 * time.Hour
	}
	if cfg.FillThreshold <= 0 || cfg.FillThreshold > 1 {
		cfg.FillThreshold = 0.5
	}
	if cfg.BatchSize <= 0 || cfg.BatchSize > api.MaxFailureBatch {
		cfg.BatchSize = api.MaxFailureBatch
	}
	u := &Uploader{cfg: cfg, log: cfg.Logger, flush: make(chan struct{}, 1)}
	if u.log == nil {
		u.log = slog.New(slog.DiscardHandler)
	}
	return u, nil
}

// Flush asks Run to upload now.
func (u *Uploader) Flush() {
	select {
	case u.flush <- struct{}{}:
	default:
	}
}

// maxBatchesPerUpload bounds one Upload: a queue refilled as fast as it is
// sent waits for the next round.
const maxBatchesPerUpload = 100

// Upload sends everything queued, a batch at a time, and returns how many
// events the service took as new and how many it had already.
func (u *Uploader) Upload(ctx context.Context) (api.FailureUploadResult, error) {
	var total api.FailureUploadResult
	for range maxBatchesPerUpload {
		b, err := u.cfg.Queue.Pending(u.cfg.BatchSize)
		if err != nil {
			return total, err
		}
		if len(b.Events) == 0 {
			return total, nil
		}
		var res api.FailureUploadResult
		err = u.cfg.Poster.Post(ctx, UploadPath, api.FailureUpload{Events: b.Events}, &res)
		if refused(err) {
			// The service will never take this batch: sending it again
			// would stall the queue for good. Drop it, and say so.
			u.log.Error("the service refused a batch of failure reports; dropping it", "events", len(b.Events), "err", err)
			if err := u.cfg.Queue.Ack(b); err != nil {
				return total, err
			}
			u.cfg.Queue.countDropped(len(b.Events))
			continue
		}
		if err != nil {
			return total, fmt.Errorf("report.Upload: %w", err)
		}
		if err := u.cfg.Queue.Ack(b); err != nil {
			return total, err
		}
		total.Accepted += res.Accepted
		total.Duplicates += res.Duplicates
	}
	return total, nil
}

// refused reports whether the service answered that the batch itself is
// bad (400), as opposed to being unreachable or the device unauthorised.
func refused(err error) bool {
	var se interface{ HTTPStatus() int }
	return errors.As(err, &se) && se.HTTPStatus() == http.StatusBadRequest
}

// Run uploads on schedule until ctx ends. Failures back off exponentially
// (30 seconds to an hour, jittered); events stay queued meanwhile.
func (u *Uploader) Run(ctx context.Context) error {
	failures := 0
	due := time.Now().Add(jitter(u.cfg.Interval))
	for {
		// While backing off, a filling queue does not hurry the retry.
		if !u.waitUntil(ctx, due, failures == 0) {
			return nil
		}
		res, err := u.Upload(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			failures++
			wait := retryAfter(failures)
			due = time.Now().Add(wait)
			u.log.Warn("failure-report upload failed; will retry", "in", wait.Round(time.Second), "err", err)
			continue
		}
		failures = 0
		due = time.Now().Add(jitter(u.cfg.Interval))
		if res.Accepted+res.Duplicates > 0 {
			u.log.Info("uploaded failure reports", "accepted", res.Accepted, "duplicates", res.Duplicates)
		}
	}
}

// waitUntil waits for the due time, a Flush, or (if early) the queue
// passing its fill threshold; it returns false when ctx ends.
func (u *Uploader) waitUntil(ctx context.Context, due time.Time, early bool) bool {
	timer := time.NewTimer(time.Until(due))
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return false
		case <-timer.C:
			return true
		case <-u.flush:
			return true
		case <-u.cfg.Queue.Changed():
			if early && u.cfg.Queue.Stats().Fill >= u.cfg.FillThreshold {
				return true
			}
		}
	}
}

func jitter(d time.Duration) time.Duration { return d - backoff.Random(d/10) }

// retryAfter is the wait after n consecutive failed uploads (n >= 1).
func retryAfter(n int) time.Duration { return backoff.Exponential(n, 30*time.Second, time.Hour) }

// countDropped adds n events to the drop count (a batch the service
// refused).
func (q *Queue) countDropped(n int) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.st.DroppedNew == 0 {
		q.st.DroppedAt = q.now().UTC().UnixMicro()
	}
	q.st.DroppedNew += int64(n)
	if err := q.saveState(); err != nil {
		q.log.Warn("failure-report queue: saving the drop count", "err", err)
	}
}
