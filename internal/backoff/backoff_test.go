package backoff

import (
	"testing"
	"time"
)

func TestExponential(t *testing.T) {
	for n, step := range map[int]time.Duration{1: 5 * time.Second, 2: 10 * time.Second, 4: 40 * time.Second, 10: 2560 * time.Second, 11: time.Hour, 1000: time.Hour} {
		seen := map[time.Duration]bool{}
		for range 50 {
			got := Exponential(n, 5*time.Second, time.Hour)
			if got < step/2 || got >= step {
				t.Fatalf("Exponential(%d) = %v; want within [%v, %v)", n, got, step/2, step)
			}
			seen[got] = true
		}
		if len(seen) < 2 {
			t.Errorf("Exponential(%d): 50 draws all gave the same wait; want jitter", n)
		}
	}
	if got := Exponential(0, time.Second, time.Minute); got < time.Second/2 || got >= time.Second {
		t.Errorf("Exponential(0) = %v; want the first step", got)
	}
}

func TestRandom(t *testing.T) {
	for _, d := range []time.Duration{-time.Second, 0} {
		if got := Random(d); got != 0 {
			t.Errorf("Random(%v) = %v; want 0", d, got)
		}
	}
	for range 1000 {
		if got := Random(time.Millisecond); got < 0 || got >= time.Millisecond {
			t.Fatalf("Random(1ms) = %v; want within [0, 1ms)", got)
		}
	}
}
