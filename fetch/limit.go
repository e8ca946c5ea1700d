package fetch

import (
	"context"
	"sync"
	"time"
)

// limiter is a token bucket of bytes. It is ours rather than
// golang.org/x/time/rate only to keep the module's dependencies as they
// are; it needs nothing that package adds (reservations, rate changes).
//
// A read takes its bytes after the fact: the bucket may go into debt by up
// to one read (at most burst bytes, since reads are capped to burst), and
// the reader then sleeps until the debt is paid. Over any long stretch the
// rate is at most the limit plus one burst.
type limiter struct {
	rate  float64 // bytes per second
	burst int     // bucket size in bytes, and the largest read

	mu     sync.Mutex
	tokens float64
	last   time.Time
}

// newLimiter returns a limiter of bytesPerSecond, or nil for 0 (unlimited).
func newLimiter(bytesPerSecond int64) *limiter {
	if bytesPerSecond <= 0 {
		return nil
	}
	burst := min(max(bytesPerSecond/10, 1<<10), 64<<10)
	return &limiter{rate: float64(bytesPerSecond), burst: int(burst), tokens: float64(burst), last: time.Now()}
}

// wait takes n bytes from the bucket and sleeps while it is in debt.
func (l *limiter) wait(ctx context.Context, n int) error {
	l.mu.Lock()
	now := time.Now()
	l.tokens = min(l.tokens+now.Sub(l.last).Seconds()*l.rate, float64(l.burst))
	l.last = now
	l.tokens -= float64(n)
	debt := -l.tokens
	l.mu.Unlock()
	if debt <= 0 {
		return nil
	}
	return sleep(ctx, time.Duration(debt/l.rate*float64(time.Second)))
}
