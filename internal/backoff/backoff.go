// Package backoff computes a device's jittered waits: the backoff after
// consecutive failures, and the random spread that keeps a fleet from
// acting in step (after a power cut or an outage of the service, every
// device fails and retries at once unless each one waits its own time).
package backoff

import (
	"math/rand/v2"
	"time"
)

// Random returns a uniformly random duration in [0, d), or 0 when d <= 0.
func Random(d time.Duration) time.Duration {
	if d <= 0 {
		return 0
	}
	return time.Duration(rand.Int64N(int64(d)))
}

// Exponential is the wait after n consecutive failures (n >= 1): base,
// doubled for each further failure up to limit, then jittered into
// [d/2, d) ("equal jitter"), so that devices that failed together spread
// their retries but none retries sooner than half its step.
func Exponential(n int, base, limit time.Duration) time.Duration {
	d := base
	for i := 1; i < n && d < limit; i++ {
		d *= 2
	}
	if d <= 0 || d > limit {
		d = limit
	}
	return d/2 + Random(d/2)
}
