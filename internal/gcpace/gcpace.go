// Package gcpace lets a process whose live heap is small collect less
// often.
//
// Go's collector runs when the heap has grown by GOGC per cent (100) of
// what the last collection found live. A security service in a storm keeps
// little live (tens of MiB: the requests in flight and the connections)
// and allocates fast (every attestation parses evidence and builds a
// certificate), so at GOGC=100 it collects many times a second, and the
// collections and the allocation assists that pace them cost about a
// tenth of its CPU. Memory is not what such a process is short of: a
// fixed headroom of a few hundred MiB above the live heap is cheap, where
// doubling a heap of gigabytes (100,000 held connections) is not.
//
// Run therefore sets the collector's percentage from the live heap every
// interval, so that the heap may grow by Headroom before the next
// collection: GOGC = 100 × Headroom / live, never below Go's default of 100
// and never above Max. A small heap gets up to Max (400 by default: the
// heap grows to five times its live data), a heap larger than Headroom
// keeps Go's default pacing, so the extra memory is at most Headroom.
// The commands pass a Headroom of 0 when GOGC is set in the environment,
// so that the operator's setting wins.
package gcpace

import (
	"context"
	"runtime/debug"
	"runtime/metrics"
	"time"
)

// Config tunes Run; zero fields take the defaults.
type Config struct {
	// Headroom is how far the heap may grow beyond the live heap between
	// two collections, in bytes. Zero leaves the collector alone (and is
	// what a process run with GOGC set should pass).
	Headroom uint64
	// Max bounds the percentage (default 400).
	Max int
	// Interval is how often the live heap is read (default 2 s).
	Interval time.Duration
	// OnChange, if set, is told each percentage Run sets.
	OnChange func(percent int)
}

// step rounds percentages so that a live heap drifting by a few bytes
// does not change the setting at every interval.
const step = 25

// Percent is the collector percentage that lets the heap grow by headroom
// beyond live: 100 × headroom / live, rounded down to a multiple of 25,
// between 100 and most.
func Percent(live, headroom uint64, most int) int {
	most = max(100, most)
	p := most
	if live > 0 {
		p = int(min(float64(most), 100*float64(headroom)/float64(live)))
	}
	return max(100, p-p%step)
}

// Live reads what the last collection found reachable on the heap, or 0
// when the runtime does not say.
func Live() uint64 { return read("/gc/heap/live:bytes") }

// Current reads the collector's percentage in force.
func Current() int { return int(read("/gc/gogc:percent")) }

func read(name string) uint64 {
	s := []metrics.Sample{{Name: name}}
	metrics.Read(s)
	if s[0].Value.Kind() != metrics.KindUint64 {
		return 0
	}
	return s[0].Value.Uint64()
}

// Run paces the collector until ctx is done, then puts back the
// percentage it found. It returns at once when cfg.Headroom is 0.
func Run(ctx context.Context, cfg Config) {
	if cfg.Headroom == 0 {
		return
	}
	if cfg.Max <= 0 {
		cfg.Max = 400
	}
	if cfg.Interval <= 0 {
		cfg.Interval = 2 * time.Second
	}
	t := time.NewTicker(cfg.Interval)
	defer t.Stop()
	set := -1
	orig := Current()
	defer debug.SetGCPercent(orig)
	for {
		if p := Percent(Live(), cfg.Headroom, cfg.Max); p != set {
			debug.SetGCPercent(p)
			set = p
			if cfg.OnChange != nil {
				cfg.OnChange(p)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
