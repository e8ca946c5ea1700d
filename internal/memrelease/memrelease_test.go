package memrelease

import (
	"context"
	"runtime"
	"runtime/debug"
	"testing"
	"time"
)

const mib = 1 << 20

func TestDue(t *testing.T) {
	quiet := Heap{Live: 100 * mib, Objects: 250 * mib, Free: 50 * mib, Allocated: 1000 * mib}
	cases := []struct {
		name      string
		before    Heap
		now       Heap
		elapsed   time.Duration
		sinceLast time.Duration
		want      bool
	}{
		{"quiet after a busy phase", quiet, quiet, 2 * time.Second, Never, true},
		{"allocating a little", quiet, with(quiet, 1*mib), 2 * time.Second, Never, true}, // 200 MiB spare at 0.5 MiB/s: 400 s to refill
		{"allocating fast", quiet, with(quiet, 40*mib), 2 * time.Second, Never, false},   // refilled in 10 s
		{"released just now", quiet, quiet, 2 * time.Second, 10 * time.Second, false},    // within MinGap
		{"released a while ago", quiet, quiet, 2 * time.Second, 31 * time.Second, true},  //
		{"little spare", Heap{Live: 10 * mib, Objects: 40 * mib, Free: 10 * mib}, Heap{Live: 10 * mib, Objects: 40 * mib, Free: 10 * mib}, 2 * time.Second, Never, false},
		{"spare small beside the live heap", quiet, Heap{Live: 2000 * mib, Objects: 2300 * mib, Free: 100 * mib, Allocated: 1000 * mib}, 2 * time.Second, Never, false},
		{"no time passed", quiet, quiet, 0, Never, false},
		{"counter went back", with(quiet, 1), quiet, 2 * time.Second, Never, false},
	}
	for _, c := range cases {
		if got := (Config{}).Due(c.before, c.now, c.elapsed, c.sinceLast); got != c.want {
			t.Errorf("%s: Due = %v, want %v (spare %d MiB)", c.name, got, c.want, c.now.Spare()/mib)
		}
	}
}

// with is h after allocating n more bytes.
func with(h Heap, n uint64) Heap {
	h.Allocated += n
	return h
}

var live, sink [][]byte

// TestRunReleasesAfterABurst: a burst of allocation beside a large live
// heap (as a service's connections are), then quiet: the garbage of the
// burst is below the collector's goal, so only Run collects it and
// returns the memory.
func TestRunReleasesAfterABurst(t *testing.T) {
	// The collector paced so that the burst stays below its goal, as a
	// service's burst stays below twice its live connections, whatever
	// else the test binary does.
	defer debug.SetGCPercent(debug.SetGCPercent(400))
	for range 1536 { // 96 MiB that stays live
		live = append(live, make([]byte, 64<<10))
	}
	defer func() { live = nil }()
	runtime.GC()

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	released := make(chan uint64, 1)
	go Run(ctx, Config{Interval: 20 * time.Millisecond, MinSpare: 32 * mib, OnRelease: func(spare uint64, took time.Duration) {
		select {
		case released <- spare:
		default:
		}
	}})
	// 128 MiB in 64 KiB pieces, of which the last 64 stay live until the
	// end of the test.
	for i := range 2048 {
		b := make([]byte, 64<<10)
		b[0] = byte(i)
		sink = append(sink, b)
		if len(sink) > 64 {
			sink = sink[1:]
		}
	}
	runtime.KeepAlive(sink)
	select {
	case spare := <-released:
		if spare < 32*mib {
			t.Fatalf("released with %d MiB spare, below MinSpare", spare/mib)
		}
		if after := Read(); after.Free > 16*mib {
			t.Errorf("after the release %d MiB of free heap is still held", after.Free/mib)
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("no release within 20 s of going quiet; heap now %+v", Read())
	}
	runtime.KeepAlive(live)
}
