package gcpace

import (
	"context"
	"runtime"
	"testing"
	"time"
)

const mib = 1 << 20

func TestPercent(t *testing.T) {
	cases := []struct {
		live, headroom uint64
		max, want      int
	}{
		{0, 256 * mib, 400, 400},          // nothing measured yet
		{10 * mib, 256 * mib, 400, 400},   // a small heap: the most
		{100 * mib, 256 * mib, 400, 250},  // 256 %, rounded down
		{200 * mib, 256 * mib, 400, 125},  // 128 %
		{256 * mib, 256 * mib, 400, 100},  // as large as the headroom
		{2048 * mib, 256 * mib, 400, 100}, // never below Go's default
		{10 * mib, 256 * mib, 150, 150},   // a lower bound
		{10 * mib, 256 * mib, 50, 100},    // a bound below 100 means 100
		{1, 1 << 62, 400, 400},            // no overflow
	}
	for _, c := range cases {
		if got := Percent(c.live, c.headroom, c.max); got != c.want {
			t.Errorf("Percent(%d MiB live, %d MiB headroom, max %d) = %d, want %d", c.live/mib, c.headroom/mib, c.max, got, c.want)
		}
	}
}

var live [][]byte

// waitFor polls the collector's percentage until it is want.
func waitFor(t *testing.T, want int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for Current() != want {
		if time.Now().After(deadline) {
			t.Fatalf("GOGC is %d, want %d (live heap %d MiB)", Current(), want, Live()/mib)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestRunFollowsTheLiveHeap: a small heap gets the most; a live heap of
// 192 MiB gets 100 × 256 / 192 = 133, so 125; when it is dropped the
// percentage goes back up, and when Run ends the original comes back.
func TestRunFollowsTheLiveHeap(t *testing.T) {
	orig := Current()
	runtime.GC()
	ctx, cancel := context.WithCancel(context.Background())
	changes := make(chan int, 16)
	done := make(chan struct{})
	go func() {
		defer close(done)
		Run(ctx, Config{Headroom: 256 * mib, Interval: 5 * time.Millisecond, OnChange: func(p int) {
			select {
			case changes <- p:
			default:
			}
		}})
	}()
	waitFor(t, 400)

	for range 192 {
		live = append(live, make([]byte, mib))
	}
	runtime.GC()
	waitFor(t, 125)
	live = nil
	runtime.GC()
	waitFor(t, 400)

	cancel()
	<-done
	if got := Current(); got != orig {
		t.Errorf("after Run, GOGC is %d, want the original %d", got, orig)
	}
	if len(changes) < 3 {
		t.Errorf("OnChange heard %d changes, want at least 3", len(changes))
	}
}

// TestRunWithoutHeadroom: with no headroom Run returns at once and
// changes nothing.
func TestRunWithoutHeadroom(t *testing.T) {
	orig := Current()
	done := make(chan struct{})
	go func() {
		defer close(done)
		Run(context.Background(), Config{Interval: time.Millisecond})
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return")
	}
	if got := Current(); got != orig {
		t.Errorf("the percentage changed to %d", got)
	}
}
