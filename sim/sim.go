// Package sim is the fleet simulator: many virtual devices in one process,
// each running the agent's real code (software root of trust, attestation,
// mutual TLS, update checks) against a real security service, with the
// latency and errors of every operation recorded. It sets the fleet up
// through the admin API like an operator would.
package sim

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/opensphere/sphere"
	"github.com/opensphere/sphere/agent"
	"github.com/opensphere/sphere/api"
	"github.com/opensphere/sphere/client"
	"github.com/opensphere/sphere/rot"
	"github.com/opensphere/sphere/updates"
)

// Scenarios the simulator runs.
const (
	// By default every operation of every device runs on new TLS
	// connections (the device's idle connections are closed after each),
	// as devices that wake up and attest do; this also keeps a large fleet
	// from holding every loopback ephemeral port. Config.Reuse keeps them.
	ScenarioStorm       = "storm"        // every device attests at once
	ScenarioRenewal     = "renewal"      // attestations at a steady rate, as daily renewal spreads them
	ScenarioUpdateCheck = "update-check" // every device checks for updates over mutual TLS
)

// Config configures a run.
type Config struct {
	// Server, CAFile and Token reach the service as an operator who is
	// also Administrator of Tenant.
	Server, CAFile, Token, Tenant string
	// Devices is the fleet size; Concurrency bounds operations in flight.
	Devices, Concurrency int
	Scenario             string
	// Rate (operations per second) and Duration bound the renewal
	// scenario; zero Rate means as fast as Concurrency allows.
	Rate     float64
	Duration time.Duration
	// Dir holds the devices' state (soft keys); a temporary directory if empty.
	Dir string
	// Reuse keeps each device's connections open between its operations
	// (as an agent does during a day) instead of new TLS for each.
	Reuse bool
	// Progress receives a line now and then; nil is quiet.
	Progress func(format string, args ...any)
}

// Op is one kind of operation and how it fared.
type Op struct {
	Name       string         `json:"name"`
	Count      int            `json:"count"`
	Errors     int            `json:"errors"`
	ErrorKinds map[string]int `json:"error_kinds,omitempty"`
	PerSecond  float64        `json:"per_second"`
	P50        time.Duration  `json:"p50_ns"`
	P90        time.Duration  `json:"p90_ns"`
	P99        time.Duration  `json:"p99_ns"`
	Max        time.Duration  `json:"max_ns"`
}

// Report is the outcome of a run.
type Report struct {
	Scenario string        `json:"scenario"`
	Devices  int           `json:"devices"`
	Setup    time.Duration `json:"setup_ns"`
	Ops      []Op          `json:"ops"`
	// Certified counts devices holding a valid certificate at the end.
	Certified int `json:"certified"`
}

// recorder collects latencies of one operation.
type recorder struct {
	mu    sync.Mutex
	lat   []time.Duration
	errs  map[string]int
	start time.Time
	end   time.Time
}

func newRecorder() *recorder { return &recorder{errs: map[string]int{}} }

func (r *recorder) observe(start time.Time, err error) {
	d := time.Since(start)
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.start.IsZero() || start.Before(r.start) {
		r.start = start
	}
	if now := start.Add(d); now.After(r.end) {
		r.end = now
	}
	if err != nil {
		r.errs[errorKind(err)]++
		return
	}
	r.lat = append(r.lat, d)
}

// errorKind names an error for the report without its details.
func errorKind(err error) string {
	var se *agent.ServiceError
	var ae *agent.AttestError
	switch {
	case errors.As(err, &ae):
		return "refused:" + ae.Result.Reason
	case errors.As(err, &se):
		return fmt.Sprintf("http %d %s", se.Status, se.Code)
	case strings.Contains(err.Error(), "connection reset"), strings.Contains(err.Error(), "EOF"):
		return "connection reset"
	case strings.Contains(err.Error(), "timeout"), errors.Is(err, context.DeadlineExceeded):
		return "timeout"
	case strings.Contains(err.Error(), "address"):
		return "dial: " + lastWords(err.Error())
	}
	return lastWords(err.Error())
}

func lastWords(s string) string {
	if i := strings.LastIndex(s, ": "); i >= 0 {
		return s[i+2:]
	}
	return s
}

func (r *recorder) op(name string) Op {
	r.mu.Lock()
	defer r.mu.Unlock()
	o := Op{Name: name, Count: len(r.lat), ErrorKinds: r.errs}
	for _, n := range r.errs {
		o.Errors += n
	}
	if len(r.errs) == 0 {
		o.ErrorKinds = nil
	}
	if len(r.lat) == 0 {
		return o
	}
	sort.Slice(r.lat, func(i, j int) bool { return r.lat[i] < r.lat[j] })
	q := func(p float64) time.Duration { return r.lat[min(len(r.lat)-1, int(p*float64(len(r.lat))))] }
	o.P50, o.P90, o.P99, o.Max = q(0.50), q(0.90), q(0.99), r.lat[len(r.lat)-1]
	if span := r.end.Sub(r.start); span > 0 {
		o.PerSecond = float64(len(r.lat)) / span.Seconds()
	}
	return o
}

// device is one virtual device.
type device struct {
	rot   rot.RootOfTrust
	agent *agent.Agent
}

// Run sets up the fleet and runs the scenario.
func Run(ctx context.Context, cfg Config) (Report, error) {
	done := func(d *device) {
		if !cfg.Reuse {
			d.agent.CloseIdleConnections()
		}
	}
	if cfg.Devices <= 0 || cfg.Devices > 1_000_000 {
		return Report{}, fmt.Errorf("devices must be between 1 and 1000000")
	}
	if cfg.Concurrency <= 0 {
		cfg.Concurrency = 4 * runtime.NumCPU()
	}
	switch cfg.Scenario {
	case ScenarioStorm, ScenarioRenewal, ScenarioUpdateCheck:
	default:
		return Report{}, fmt.Errorf("scenario %q is not one of storm, renewal, update-check (reports, idle and delta come with their features)", cfg.Scenario)
	}
	if cfg.Progress == nil {
		cfg.Progress = func(string, ...any) {}
	}
	if cfg.Dir == "" {
		dir, err := os.MkdirTemp("", "sphere-sim-")
		if err != nil {
			return Report{}, err
		}
		defer os.RemoveAll(dir)
		cfg.Dir = dir
	}
	c, err := client.New(client.Config{Server: cfg.Server, Token: cfg.Token, CAFile: cfg.CAFile, Timeout: 2 * time.Minute})
	if err != nil {
		return Report{}, err
	}
	roots := x509.NewCertPool()
	if cfg.CAFile != "" {
		pemData, err := os.ReadFile(cfg.CAFile)
		if err != nil {
			return Report{}, err
		}
		roots.AppendCertsFromPEM(pemData)
	} else if roots, err = x509.SystemCertPool(); err != nil {
		return Report{}, err
	}

	setupStart := time.Now()
	devs, err := setup(ctx, cfg, c, roots)
	if err != nil {
		return Report{}, fmt.Errorf("sim: setup: %w", err)
	}
	rep := Report{Scenario: cfg.Scenario, Devices: cfg.Devices, Setup: time.Since(setupStart)}
	cfg.Progress("set up %d devices in %s", len(devs), rep.Setup.Round(time.Millisecond))

	switch cfg.Scenario {
	case ScenarioStorm:
		rec := newRecorder()
		each(ctx, devs, cfg.Concurrency, 0, 0, func(d *device) {
			t := time.Now()
			_, err := d.agent.Attest(ctx)
			rec.observe(t, err)
			done(d)
		})
		rep.Ops = append(rep.Ops, rec.op("attest+certificate"))
	case ScenarioRenewal:
		rec := newRecorder()
		each(ctx, devs, cfg.Concurrency, cfg.Rate, cfg.Duration, func(d *device) {
			t := time.Now()
			_, err := d.agent.Attest(ctx)
			rec.observe(t, err)
			done(d)
		})
		rep.Ops = append(rep.Ops, rec.op("renewal"))
	case ScenarioUpdateCheck:
		first := newRecorder()
		each(ctx, devs, cfg.Concurrency, 0, 0, func(d *device) {
			t := time.Now()
			_, err := d.agent.Attest(ctx)
			first.observe(t, err)
			done(d)
		})
		rep.Ops = append(rep.Ops, first.op("attest+certificate"))
		rec := newRecorder()
		each(ctx, devs, cfg.Concurrency, cfg.Rate, cfg.Duration, func(d *device) {
			t := time.Now()
			var res updates.CheckResult
			err := d.agent.Post(ctx, "/device/v1/updates/check", updates.Report{}, &res)
			rec.observe(t, err)
			done(d)
		})
		rep.Ops = append(rep.Ops, rec.op("update-check"))
	}
	for _, d := range devs {
		if c := d.agent.Certificate(); c != nil && time.Now().Before(c.NotAfter) {
			rep.Certified++
		}
	}
	return rep, nil
}

// each runs fn for every device with at most conc in flight. With rate > 0
// it paces starts to rate per second; with dur > 0 it goes round the fleet
// again until dur has passed (at least one round).
func each(ctx context.Context, devs []*device, conc int, rate float64, dur time.Duration, fn func(*device)) {
	sem := make(chan struct{}, conc)
	var wg sync.WaitGroup
	var tick <-chan time.Time
	if rate > 0 {
		t := time.NewTicker(time.Duration(float64(time.Second) / rate))
		defer t.Stop()
		tick = t.C
	}
	deadline := time.Now().Add(dur)
	for round := 0; round == 0 || (dur > 0 && time.Now().Before(deadline)); round++ {
		for _, d := range devs {
			if ctx.Err() != nil || (round > 0 && !time.Now().Before(deadline)) {
				break
			}
			if tick != nil {
				select {
				case <-tick:
				case <-ctx.Done():
				}
			}
			sem <- struct{}{}
			wg.Add(1)
			go func(d *device) {
				defer func() { <-sem; wg.Done() }()
				fn(d)
			}(d)
		}
	}
	wg.Wait()
}

// setup makes the devices' roots of trust, registers and claims them
// through the admin API (in parallel), and allows what they measure.
func setup(ctx context.Context, cfg Config, c *client.Client, roots *x509.CertPool) ([]*device, error) {
	tp := "/api/v1/tenants/" + url.PathEscape(cfg.Tenant)
	var t sphere.Tenant
	if err := c.Do(ctx, "GET", tp, nil, nil, &t); err != nil {
		return nil, fmt.Errorf("tenant %q: %w", cfg.Tenant, err)
	}
	productName := "Sim " + fmt.Sprint(time.Now().UnixNano()%1_000_000_000)
	if err := c.Do(ctx, "POST", tp+"/products", nil, api.CreateProduct{Name: productName}, nil); err != nil {
		return nil, err
	}
	var gs sphere.Page[sphere.DeviceGroup]
	if err := c.Do(ctx, "GET", tp+"/device-groups", url.Values{"product": {productName}, "name": {"Field Test"}}, nil, &gs); err != nil {
		return nil, err
	}
	if len(gs.Items) != 1 {
		return nil, errors.New("the new product has no Field Test group")
	}
	group := gs.Items[0].ID
	devs := make([]*device, cfg.Devices)
	var errMu sync.Mutex
	var firstErr error
	failed := func() bool { errMu.Lock(); defer errMu.Unlock(); return firstErr != nil }
	var done atomic.Int64
	quiet := slog.New(slog.DiscardHandler)
	idx := make([]*device, cfg.Devices)
	for i := range idx {
		idx[i] = &device{}
	}
	each(ctx, idx, cfg.Concurrency, 0, 0, func(d *device) {
		if failed() {
			return
		}
		i := int(done.Add(1)) - 1
		dir := filepath.Join(cfg.Dir, fmt.Sprintf("d%07d", i))
		err := func() error {
			r, err := rot.OpenSoft(dir)
			if err != nil {
				return err
			}
			rec, err := agent.IdentityRecord(r)
			if err != nil {
				return err
			}
			if err := c.Do(ctx, "POST", "/api/v1/devices", nil, api.RegisterDevice{IdentityPublicKey: rec.IdentityPublicKey,
				AttestationPublicKey: rec.AttestationPublicKey, RoT: rec.RoT}, nil); err != nil {
				return err
			}
			if err := c.Do(ctx, "POST", tp+"/devices/"+rec.DeviceID+"/claim", nil, api.ClaimDevice{DeviceGroup: group}, nil); err != nil {
				return err
			}
			a, err := agent.New(agent.Config{Server: cfg.Server, StateDir: dir, RoT: r, ServerRoots: roots, Logger: quiet})
			if err != nil {
				return err
			}
			if err := a.Measure(); err != nil {
				return err
			}
			d.rot, d.agent = r, a
			return nil
		}()
		if err != nil {
			errMu.Lock()
			if firstErr == nil {
				firstErr = err
			}
			errMu.Unlock()
		}
		if n := done.Load(); n%1000 == 0 {
			cfg.Progress("registered and claimed %d devices", n)
		}
	})
	if firstErr != nil {
		return nil, firstErr
	}
	copy(devs, idx)
	// Every device runs the same agent with the same settings.
	events := devs[0].rot.EventLog()
	for _, e := range events {
		if err := c.Do(ctx, "POST", tp+"/measurements", nil, api.AllowMeasurement{Type: e.Type, Digest: e.Digest, Name: "sim " + e.Name}, nil); err != nil {
			return nil, err
		}
	}
	return devs, nil
}
