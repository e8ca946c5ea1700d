package agent

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/opensphere/sphere"
	"github.com/opensphere/sphere/attest"
	"github.com/opensphere/sphere/rot"
)

// samples is how often the tests of jittered durations draw one.
const samples = 200

// quoteCounter decorates a real root of trust: it counts Quote calls (one
// per attestation), notes when they happen and the most that ran at once,
// and holds each one for delay so that overlapping attestations would
// overlap in Quote. Everything else is the real root of trust.
type quoteCounter struct {
	rot.RootOfTrust
	delay time.Duration
	// gate, if set, holds every Quote until it is closed.
	gate chan struct{}

	calls, inFlight, maxInFlight atomic.Int32
	mu                           sync.Mutex
	at                           []time.Time
}

func (q *quoteCounter) Quote(nonce []byte) (rot.Attestation, error) {
	q.calls.Add(1)
	q.mu.Lock()
	q.at = append(q.at, time.Now())
	q.mu.Unlock()
	n := q.inFlight.Add(1)
	defer q.inFlight.Add(-1)
	for {
		m := q.maxInFlight.Load()
		if n <= m || q.maxInFlight.CompareAndSwap(m, n) {
			break
		}
	}
	if q.gate != nil {
		<-q.gate
	}
	time.Sleep(q.delay)
	return q.RootOfTrust.Quote(nonce)
}

// times returns when Quote was called.
func (q *quoteCounter) times() []time.Time {
	q.mu.Lock()
	defer q.mu.Unlock()
	return append([]time.Time(nil), q.at...)
}

// waitFor polls cond every 10 ms for up to limit.
func waitFor(t *testing.T, limit time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after %v: still waiting for %s", limit, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// offlineAgent is an agent on a soft root of trust with a fixed clock,
// pointed at no service: for the schedule, which needs none.
func offlineAgent(t *testing.T, now time.Time) *Agent {
	t.Helper()
	dir := t.TempDir()
	a, err := New(Config{Server: "https://127.0.0.1:1", StateDir: dir, RoT: roots[0].open(t, dir), Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// withValidity installs a certificate whose only meaningful fields are its
// validity, which is all the schedule reads.
func withValidity(a *Agent, notBefore, notAfter time.Time) {
	a.cert.Store(&tls.Certificate{Leaf: &x509.Certificate{NotBefore: notBefore, NotAfter: notAfter}})
}

// TestNextAttestation: renew at about two thirds of the certificate's life
// (less up to a thirtieth of it, so a fleet spreads out), but attest at
// least every 20 to 24 hours, and never wait less than a second.
func TestNextAttestation(t *testing.T) {
	now := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	cases := []struct {
		name      string
		notBefore time.Time // zero: no certificate
		life      time.Duration
		min, max  time.Duration
	}{
		{"24h certificate issued now", now, 24 * time.Hour, 16*time.Hour - 48*time.Minute, 16 * time.Hour},
		{"no certificate", time.Time{}, 0, 20 * time.Hour, 24 * time.Hour},
		{"90-day certificate: daily wins", now, 90 * 24 * time.Hour, 20 * time.Hour, 24 * time.Hour},
		{"renewal time passed", now.Add(-23 * time.Hour), 24 * time.Hour, time.Second, time.Second},
		{"expired certificate", now.Add(-48 * time.Hour), 24 * time.Hour, time.Second, time.Second},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			a := offlineAgent(t, now)
			if !c.notBefore.IsZero() {
				withValidity(a, c.notBefore, c.notBefore.Add(c.life))
			}
			seen := map[time.Duration]bool{}
			for range samples {
				got := a.nextAttestation()
				if got < c.min || got > c.max {
					t.Fatalf("nextAttestation() = %v; want within [%v, %v]", got, c.min, c.max)
				}
				seen[got] = true
			}
			if c.min != c.max && len(seen) < 2 {
				t.Errorf("%d draws all gave %v; want jitter", samples, a.nextAttestation())
			}
		})
	}

	// With the certificate the real service issues (backdated for clock
	// skew), the renewal is still at two thirds of its life.
	t.Run("certificate from the service", func(t *testing.T) {
		svc := startService(t)
		dir := t.TempDir()
		d := svc.newDevice(t, roots[0].open(t, dir), dir)
		svc.enroll(t, d, "Development")
		if err := d.agent.Measure(); err != nil {
			t.Fatal(err)
		}
		if _, err := d.agent.Attest(context.Background()); err != nil {
			t.Fatal(err)
		}
		c := d.agent.Certificate()
		life := c.NotAfter.Sub(c.NotBefore)
		renew := c.NotBefore.Add(life * 2 / 3)
		before := svc.clock.Now()
		got := d.agent.nextAttestation()
		after := svc.clock.Now()
		if lo, hi := renew.Add(-life/30).Sub(after), renew.Sub(before); got < lo || got > hi {
			t.Errorf("nextAttestation() = %v for a certificate living %v; want within [%v, %v]", got, life, lo, hi)
		}
	})
}

// TestRetryAfter: exponential backoff from 5 s, capped at an hour, with
// jitter over the upper half: within [d/2, d] for d = min(5s<<(n-1), 1h).
func TestRetryAfter(t *testing.T) {
	for n := 1; n <= 30; n++ {
		d := min(5*time.Second<<(n-1), time.Hour)
		seen := map[time.Duration]bool{}
		for range samples {
			got := retryAfter(n)
			if got < d/2 || got > d {
				t.Fatalf("retryAfter(%d) = %v; want within [%v, %v]", n, got, d/2, d)
			}
			seen[got] = true
		}
		if len(seen) < 2 {
			t.Errorf("retryAfter(%d): %d draws all gave %v; want jitter", n, samples, retryAfter(n))
		}
	}
	// However many failures, no overflow and never above an hour.
	for _, n := range []int{31, 62, 63, 64, 65, 1 << 20, math.MaxInt32, math.MaxInt} {
		for range samples {
			if got := retryAfter(n); got < 30*time.Minute || got > time.Hour {
				t.Fatalf("retryAfter(%d) = %v; want within [30m, 1h]", n, got)
			}
		}
	}
}

// TestAttestSingleFlight: eight attestations at once run one after the
// other, and all succeed.
func TestAttestSingleFlight(t *testing.T) {
	// The counter itself sees overlap when there is some; otherwise the
	// check below could pass without meaning anything.
	t.Run("the counter sees overlap", func(t *testing.T) {
		q := &quoteCounter{RootOfTrust: roots[0].open(t, t.TempDir()), gate: make(chan struct{})}
		var wg sync.WaitGroup
		for range 2 {
			wg.Go(func() { q.Quote(make([]byte, 32)) })
		}
		waitFor(t, 10*time.Second, "two Quote calls in flight", func() bool { return q.inFlight.Load() == 2 })
		close(q.gate)
		wg.Wait()
		if got := q.maxInFlight.Load(); got != 2 {
			t.Fatalf("max in flight = %d; want 2", got)
		}
	})

	svc := startService(t)
	dir := t.TempDir()
	q := &quoteCounter{RootOfTrust: roots[0].open(t, dir), delay: 5 * time.Millisecond}
	d := svc.newDevice(t, q, dir)
	svc.enroll(t, d, "Development")
	if err := d.agent.Measure(); err != nil {
		t.Fatal(err)
	}
	const n = 8
	start := make(chan struct{})
	results := make([]attest.Result, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			<-start
			results[i], errs[i] = d.agent.Attest(context.Background())
		})
	}
	close(start)
	wg.Wait()
	for i := range n {
		if errs[i] != nil || results[i].Result != sphere.AttestHealthy {
			t.Errorf("attestation %d: %+v, %v; want healthy", i, results[i].Attestation, errs[i])
		}
	}
	if got := q.maxInFlight.Load(); got != 1 {
		t.Errorf("up to %d quotes ran at once; want 1 (attestations must not overlap)", got)
	}
	if got := q.calls.Load(); got != n {
		t.Errorf("%d quotes; want %d", got, n)
	}
	if d.agent.Certificate() == nil {
		t.Error("no certificate installed")
	}
}

// runAgent starts a.Run and returns a function that cancels it and
// checks that it returns nil promptly.
func runAgent(t *testing.T, a *Agent) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	stopped := false
	stop = func() {
		t.Helper()
		if stopped {
			return
		}
		stopped = true
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run returned %v after cancel; want nil", err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("Run did not return within 5s of cancel")
		}
	}
	t.Cleanup(stop)
	return stop
}

// TestRun: an enrolled device's agent measures, attests at start, gets its
// certificate, then waits for the schedule (no second attestation) until
// its context ends.
func TestRun(t *testing.T) {
	t.Parallel()
	svc := startService(t)
	dir := t.TempDir()
	q := &quoteCounter{RootOfTrust: roots[0].open(t, dir)}
	d := svc.newDevice(t, q, dir)
	svc.enroll(t, d, "Development")

	stop := runAgent(t, d.agent)
	waitFor(t, 10*time.Second, "a healthy attestation and a certificate", func() bool {
		return d.agent.Certificate() != nil && d.agent.LastResult().Result == sphere.AttestHealthy
	})
	stop()
	if got := q.calls.Load(); got != 1 {
		t.Errorf("%d attestations; want 1, then a wait of hours", got)
	}
}

// TestRunBacksOff: a device the service refuses (here: never registered)
// keeps trying, but only after the backoff, never in a tight loop.
func TestRunBacksOff(t *testing.T) {
	t.Parallel()
	svc := startService(t)
	dir := t.TempDir()
	q := &quoteCounter{RootOfTrust: roots[0].open(t, dir)}
	d := svc.newDevice(t, q, dir) // not enrolled

	stop := runAgent(t, d.agent)
	waitFor(t, 10*time.Second, "the refusal", func() bool { return d.agent.LastResult().Reason == attest.ReasonUnregistered })
	// The first retry comes after retryAfter(1), at least 2.5 s; a
	// timer never fires early, so a shorter gap is a bug, not a slow machine.
	waitFor(t, 15*time.Second, "a second attempt", func() bool { return q.calls.Load() >= 2 })
	stop()
	at := q.times()
	if gap := at[1].Sub(at[0]); gap < 2500*time.Millisecond {
		t.Errorf("retried after %v; want at least 2.5s (retryAfter(1))", gap)
	}
	if len(at) > 2 {
		t.Errorf("%d attempts in %v; want 2 (the second backoff is at least 5s)", len(at), at[len(at)-1].Sub(at[0]))
	}
	if res := d.agent.LastResult(); res.Result != sphere.AttestRefused || res.Reason != attest.ReasonUnregistered || res.Detail == "" {
		t.Errorf("last result %+v; want refused %s with a detail", res.Attestation, attest.ReasonUnregistered)
	}
	if d.agent.Certificate() != nil {
		t.Error("a refused device has a certificate")
	}
}

// TestLoadCert: a restarted agent uses the stored certificate only if it
// is still valid and is for its own identity key.
func TestLoadCert(t *testing.T) {
	svc := startService(t)
	dir := t.TempDir()
	d := svc.newDevice(t, roots[0].open(t, dir), dir)
	svc.enroll(t, d, "Development")
	if err := d.agent.Measure(); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := d.agent.Attest(ctx); err != nil {
		t.Fatal(err)
	}
	cert := d.agent.Certificate()
	stored, err := os.ReadFile(filepath.Join(dir, certFile))
	if err != nil {
		t.Fatal(err)
	}

	// restart makes a new agent on stateDir and returns it with its logs.
	restart := func(t *testing.T, stateDir string, r rot.RootOfTrust, now func() time.Time) (*Agent, string) {
		t.Helper()
		var logs bytes.Buffer
		a, err := New(Config{Server: svc.url, StateDir: stateDir, RoT: r, ServerRoots: svc.roots, Now: now,
			Logger: slog.New(slog.NewTextHandler(&logs, nil))})
		if err != nil {
			t.Fatalf("New: %v", err)
		}
		return a, logs.String()
	}
	at := func(tm time.Time) func() time.Time { return func() time.Time { return tm } }

	t.Run("ok/still valid", func(t *testing.T) {
		a, _ := restart(t, dir, d.rot, svc.clock.Now)
		if c := a.Certificate(); c == nil || !c.Equal(cert) {
			t.Fatal("the stored, valid certificate was not loaded")
		}
	})
	t.Run("expired/at NotAfter", func(t *testing.T) {
		if a, _ := restart(t, dir, d.rot, at(cert.NotAfter)); a.Certificate() != nil {
			t.Fatal("loaded a certificate at its NotAfter")
		}
	})
	t.Run("error/another device's certificate", func(t *testing.T) {
		otherDir := t.TempDir()
		if err := os.WriteFile(filepath.Join(otherDir, certFile), stored, 0o600); err != nil {
			t.Fatal(err)
		}
		a, logs := restart(t, otherDir, roots[0].open(t, otherDir), svc.clock.Now)
		if a.Certificate() != nil {
			t.Fatal("loaded a certificate for another identity key")
		}
		if !strings.Contains(logs, "ignoring the stored device certificate") || !strings.Contains(logs, "not for this device's identity key") {
			t.Errorf("logs %q; want the ignored certificate and why", logs)
		}
	})
	t.Run("error/not a certificate", func(t *testing.T) {
		otherDir := t.TempDir()
		if err := os.WriteFile(filepath.Join(otherDir, certFile), []byte("not PEM\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		a, logs := restart(t, otherDir, roots[0].open(t, otherDir), svc.clock.Now)
		if a.Certificate() != nil {
			t.Fatal("loaded a certificate from garbage")
		}
		if !strings.Contains(logs, "ignoring the stored device certificate") {
			t.Errorf("logs %q; want the ignored certificate", logs)
		}
	})
	// Last, as it moves the service's clock: a day later the stored
	// certificate has expired; the agent starts without one and attests
	// for a new one.
	t.Run("expired/a day later", func(t *testing.T) {
		svc.clock.Advance(cert.NotAfter.Sub(svc.clock.Now()) + time.Minute)
		a, _ := restart(t, dir, d.rot, svc.clock.Now)
		if a.Certificate() != nil {
			t.Fatal("loaded an expired certificate")
		}
		if err := a.Measure(); err != nil {
			t.Fatal(err)
		}
		if _, err := a.Attest(ctx); err != nil {
			t.Fatalf("attesting after expiry: %v", err)
		}
		if c := a.Certificate(); c == nil || !svc.clock.Now().Before(c.NotAfter) {
			t.Fatal("no new, valid certificate after attesting")
		}
	})
}
