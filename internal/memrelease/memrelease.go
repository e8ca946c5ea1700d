// Package memrelease gives a quiet process's spare heap back to the
// operating system.
//
// The security service's memory follows its fleet: a reconnecting fleet
// (after a power cut, a network outage, a release) allocates quickly, then
// holds its connections and goes quiet. Go's collector runs when the heap
// reaches twice what was live after the last collection, so the garbage
// of the busy phase stays in the heap until the fleet has allocated as
// much again, which a quiet fleet takes hours to do; and the runtime's
// background scavenger returns only what lies above that goal. For a
// service holding 100,000 idle connections that headroom is about as
// large as the connections themselves.
//
// A Releaser samples the runtime's heap every Interval. When the heap
// holds at least MinSpare (and a quarter of the live heap) of memory that
// a collection would free or that is already free, and the process
// allocates so slowly that refilling it would take at least Refill, it
// runs a collection and returns the free memory (debug.FreeOSMemory), at
// most once per MinGap. A busy process never qualifies: its allocation
// rate refills the headroom within seconds, and the collector's own pacing
// is right for it.
package memrelease

import (
	"context"
	"math"
	"runtime/debug"
	"runtime/metrics"
	"time"
)

// Config tunes a Releaser; zero fields take the defaults.
type Config struct {
	// Interval is how often the heap is sampled (default 2 s).
	Interval time.Duration
	// MinSpare is the least spare memory worth a collection (default
	// 64 MiB).
	MinSpare uint64
	// Refill: release only if, at the allocation rate of the last
	// interval, the process would take at least this long to allocate
	// the spare memory again (default 1 minute).
	Refill time.Duration
	// MinGap is the least time between two releases (default 30 s).
	MinGap time.Duration
	// OnRelease, if set, is told after each release how much memory was
	// spare before it and how long the collection and release took.
	OnRelease func(spare uint64, took time.Duration)
}

func (c *Config) defaults() {
	if c.Interval <= 0 {
		c.Interval = 2 * time.Second
	}
	if c.MinSpare == 0 {
		c.MinSpare = 64 << 20
	}
	if c.Refill <= 0 {
		c.Refill = time.Minute
	}
	if c.MinGap <= 0 {
		c.MinGap = 30 * time.Second
	}
}

// Heap is one sample of the runtime's heap (bytes).
type Heap struct {
	// Live is what the last collection found reachable.
	Live uint64
	// Objects is the memory of heap objects, live or not yet collected.
	Objects uint64
	// Free is heap memory free and not yet returned to the system.
	Free uint64
	// Allocated counts every byte ever allocated on the heap.
	Allocated uint64
}

// Spare is the memory a collection followed by a release would give back:
// the garbage among the objects and the free memory.
func (h Heap) Spare() uint64 {
	var garbage uint64
	if h.Objects > h.Live {
		garbage = h.Objects - h.Live
	}
	return garbage + h.Free
}

var sampleNames = []string{
	"/gc/heap/live:bytes",
	"/memory/classes/heap/objects:bytes",
	"/memory/classes/heap/free:bytes",
	"/gc/heap/allocs:bytes",
}

// Read samples the runtime's heap.
func Read() Heap {
	s := make([]metrics.Sample, len(sampleNames))
	for i, n := range sampleNames {
		s[i].Name = n
	}
	metrics.Read(s)
	v := func(i int) uint64 {
		if s[i].Value.Kind() != metrics.KindUint64 {
			return 0 // not supported by this runtime: never release
		}
		return s[i].Value.Uint64()
	}
	return Heap{Live: v(0), Objects: v(1), Free: v(2), Allocated: v(3)}
}

// Never stands for the time since the last release when there was none.
const Never = time.Duration(math.MaxInt64)

// Due says whether to release now, given the sample before, taken elapsed
// ago, and the time since the last release.
func (c Config) Due(before, now Heap, elapsed, sinceLast time.Duration) bool {
	c.defaults()
	if sinceLast < c.MinGap {
		return false
	}
	spare := now.Spare()
	if spare < c.MinSpare || spare < now.Live/4 {
		return false
	}
	if elapsed <= 0 || now.Allocated < before.Allocated {
		return false
	}
	// Refill time at the recent rate: spare / (allocated / elapsed).
	allocated := now.Allocated - before.Allocated
	if allocated == 0 {
		return true
	}
	refill := time.Duration(float64(spare) / float64(allocated) * float64(elapsed))
	return refill >= c.Refill
}

// Run samples the heap and releases spare memory when it is due, until ctx
// is done.
func Run(ctx context.Context, cfg Config) {
	cfg.defaults()
	t := time.NewTicker(cfg.Interval)
	defer t.Stop()
	before, at := Read(), time.Now()
	var last time.Time // of the last release; zero before the first
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		now, nowAt := Read(), time.Now()
		sinceLast := Never
		if !last.IsZero() {
			sinceLast = nowAt.Sub(last)
		}
		if cfg.Due(before, now, nowAt.Sub(at), sinceLast) {
			start := time.Now()
			debug.FreeOSMemory()
			last = time.Now()
			if cfg.OnRelease != nil {
				cfg.OnRelease(now.Spare(), last.Sub(start))
			}
			// The collection's own bookkeeping is not the process's
			// allocation: start the next interval after it.
			now, nowAt = Read(), time.Now()
		}
		before, at = now, nowAt
	}
}
