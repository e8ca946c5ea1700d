// Package sim is the fleet simulator: many virtual devices in one process,
// each running the agent's real code (software root of trust, attestation,
// mutual TLS, update checks) against a real security service, with the
// latency and errors of every operation recorded. It sets the fleet up
// through the admin API's bulk routes like an operator would, spreads its
// sockets over loopback source addresses, and reads the service's memory
// and CPU from /proc when it runs on the same host.
package sim

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

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
	ScenarioIdle        = "idle"         // every device holds an open mutual-TLS connection
	ScenarioDelta       = "delta"        // one device assembles a new 64 MiB image from its old one
	ScenarioReports     = "reports"      // every device uploads its queue of failure reports at once
)

// Scenarios lists the scenarios in the order the help shows them.
var Scenarios = []string{ScenarioStorm, ScenarioRenewal, ScenarioUpdateCheck, ScenarioIdle, ScenarioDelta, ScenarioReports}

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
	// CheckWrites makes every update check one the service records: each
	// check reports a component version other than the device's last
	// one, as the check of a device that checks less often than hourly
	// is recorded. Without it, a device checking again within the hour
	// costs the service a read only.
	CheckWrites bool
	// Progress receives a line now and then; nil is quiet.
	Progress func(format string, args ...any)
	// SourceAddrs are the loopback addresses the devices' sockets come
	// from, in turn (ParseSourceAddrs); empty picks one per 20,000 devices
	// from 127.0.0.1 up.
	SourceAddrs []netip.Addr
	// ServerPID, when the service runs on this host, is read from /proc
	// before and after the scenario for its memory and CPU.
	ServerPID int
	// Population registers and claims this many more devices (keys only,
	// no agent) into the group before the run, so that the service works
	// with a large fleet's database while Devices run.
	Population int
	// DeltaMiB and DeltaPlaces shape the delta scenario: an image of
	// DeltaMiB (default 64) with 5 % of its bytes overwritten in
	// DeltaPlaces places (default 16).
	DeltaMiB, DeltaPlaces int
	// ReportEvents is how many failure events each device queues for the
	// reports scenario; zero means 1,000.
	ReportEvents int
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
	// SourceAddrs is how many source addresses the sockets came from;
	// AddrFallbacks how often a dial moved on because one was out of ports.
	SourceAddrs   int   `json:"source_addrs"`
	AddrFallbacks int64 `json:"addr_fallbacks"`
	// Server is the service's memory and CPU over the scenario (after
	// set-up), when it runs on this host (Config.ServerPID).
	Server *ServerUse `json:"server,omitempty"`
	// Fleet is the simulator's own use over the same phase: the devices'
	// side, which shares the host's cores with a local service.
	Fleet   *ServerUse     `json:"fleet,omitempty"`
	Idle    *IdleReport    `json:"idle,omitempty"`
	Delta   *DeltaReport   `json:"delta,omitempty"`
	Reports *ReportsReport `json:"reports,omitempty"`
}

// ServerUse is the service's use of this host during the scenario.
type ServerUse struct {
	Before, After ProcStats
	// CPU is the service's CPU time over the scenario, System the part of
	// it in the kernel, Cores CPU over its wall time, and CPUPerOp CPU
	// over the operations that succeeded.
	CPU      time.Duration `json:"cpu_ns"`
	System   time.Duration `json:"cpu_system_ns"`
	Cores    float64       `json:"cores"`
	CPUPerOp time.Duration `json:"cpu_per_op_ns"`
}

// KernelShare is the part of CPU spent in the kernel, from 0 to 1 (0 when
// the process used no CPU).
func (u *ServerUse) KernelShare() float64 {
	if u.CPU <= 0 {
		return 0
	}
	return u.System.Seconds() / u.CPU.Seconds()
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
	rot    rot.RootOfTrust
	agent  *agent.Agent
	checks atomic.Int64 // update checks made (CheckWrites)
}

// fleet is what set-up made: the devices and where they are.
type fleet struct {
	devs    []*device
	tenant  string // tenant path, /api/v1/tenants/<id>
	groupID string
}

// Run sets up the fleet and runs the scenario.
func Run(ctx context.Context, cfg Config) (Report, error) {
	if cfg.Devices <= 0 || cfg.Devices > 1_000_000 {
		return Report{}, fmt.Errorf("devices must be between 1 and 1000000")
	}
	if cfg.Concurrency <= 0 {
		cfg.Concurrency = 4 * runtime.NumCPU()
	}
	if !slices.Contains(Scenarios, cfg.Scenario) {
		return Report{}, fmt.Errorf("scenario %q is not one of %s", cfg.Scenario, strings.Join(Scenarios, ", "))
	}
	if cfg.Scenario == ScenarioDelta {
		cfg.Devices = 1
	}
	if cfg.DeltaMiB <= 0 {
		cfg.DeltaMiB = 64
	}
	if cfg.DeltaPlaces <= 0 {
		cfg.DeltaPlaces = 16
	}
	if cfg.ReportEvents <= 0 {
		cfg.ReportEvents = 1000
	}
	if cfg.Progress == nil {
		cfg.Progress = func(string, ...any) {}
	}
	if len(cfg.SourceAddrs) == 0 {
		cfg.SourceAddrs = autoSourceAddrs(cfg.Devices)
	}
	if cfg.Dir == "" {
		dir, err := tempFleetDir()
		if err != nil {
			return Report{}, err
		}
		defer os.RemoveAll(dir)
		cfg.Dir = dir
	}
	c, err := client.New(client.Config{Server: cfg.Server, Token: cfg.Token, CAFile: cfg.CAFile, Timeout: 5 * time.Minute})
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
	dial := &dialer{addrs: cfg.SourceAddrs}

	setupStart := time.Now()
	fl, err := setup(ctx, cfg, c, roots, dial)
	if err != nil {
		return Report{}, fmt.Errorf("sim: setup: %w", err)
	}
	devs := fl.devs
	rep := Report{Scenario: cfg.Scenario, Devices: cfg.Devices, Setup: time.Since(setupStart), SourceAddrs: len(cfg.SourceAddrs)}
	cfg.Progress("set up %d devices in %s", len(devs), rep.Setup.Round(time.Millisecond))

	// done ends a device's operation: without Reuse its connections close.
	done := func(d *device) {
		if !cfg.Reuse {
			d.agent.CloseIdleConnections()
		}
	}
	attestAll := func(name string) {
		rec := newRecorder()
		each(ctx, devs, cfg.Concurrency, 0, 0, func(d *device) {
			t := time.Now()
			_, err := d.agent.Attest(ctx)
			rec.observe(t, err)
			done(d)
		})
		rep.Ops = append(rep.Ops, rec.op(name))
	}
	// The service's use is measured over the scenario's main phase.
	var before, selfBefore ProcStats
	var phaseStart time.Time
	startPhase := func() {
		phaseStart = time.Now()
		if cfg.ServerPID > 0 {
			before, _ = ReadProc(cfg.ServerPID)
		}
		selfBefore, _ = ReadProc(os.Getpid())
	}
	startPhase()
	switch cfg.Scenario {
	case ScenarioStorm:
		attestAll("attest+certificate")
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
		attestAll("attest+certificate")
		startPhase()
		rec := newRecorder()
		each(ctx, devs, cfg.Concurrency, cfg.Rate, cfg.Duration, func(d *device) {
			t := time.Now()
			var res updates.CheckResult
			var rep updates.Report
			if cfg.CheckWrites {
				rep.Components = []api.UpdateCheckComponent{{ComponentID: "sim", Kind: "app", Version: strconv.FormatInt(d.checks.Add(1)%2, 10)}}
			}
			err := d.agent.Post(ctx, "/device/v1/updates/check", rep, &res)
			rec.observe(t, err)
			done(d)
		})
		rep.Ops = append(rep.Ops, rec.op("update-check"))
	case ScenarioIdle:
		cfg.Reuse = true // the connections are the point
		attestAll("attest+certificate")
		for _, d := range devs {
			d.agent.CloseIdleConnections() // only the mutual-TLS ones stay
		}
		if rep.Idle, err = runIdle(ctx, cfg, devs, before.RSS, &rep); err != nil {
			return rep, err
		}
	case ScenarioDelta:
		attestAll("attest+certificate")
		if rep.Delta, err = runDelta(ctx, cfg, c, fl, &rep); err != nil {
			return rep, err
		}
	case ScenarioReports:
		attestAll("attest+certificate")
		if rep.Reports, err = runReports(ctx, cfg, devs, &rep, startPhase); err != nil {
			return rep, err
		}
	}
	use := func(before ProcStats, pid int) *ServerUse {
		after, err := ReadProc(pid)
		if err != nil || before.PID == 0 {
			return nil
		}
		u := &ServerUse{Before: before, After: after, CPU: after.CPU - before.CPU, System: after.System - before.System}
		if wall := time.Since(phaseStart); wall > 0 {
			u.Cores = u.CPU.Seconds() / wall.Seconds()
		}
		if last := rep.Ops[len(rep.Ops)-1]; last.Count > 0 {
			u.CPUPerOp = u.CPU / time.Duration(last.Count)
		}
		return u
	}
	if cfg.ServerPID > 0 {
		rep.Server = use(before, cfg.ServerPID)
	}
	rep.Fleet = use(selfBefore, os.Getpid())
	for _, d := range devs {
		if c := d.agent.Certificate(); c != nil && time.Now().Before(c.NotAfter) {
			rep.Certified++
		}
		d.agent.CloseIdleConnections()
	}
	rep.AddrFallbacks = dial.exhausted.Load()
	return rep, nil
}

// each runs fn for every device with at most conc in flight. With rate > 0
// it paces starts to rate per second; with dur > 0 it goes round the fleet
// again until dur has passed (at least one round).
//
// The conc workers live for the whole run: a goroutine per call would
// start on a small stack and grow it through net/http and TLS on every
// call, which cost the simulator 3 to 6 % of its CPU.
func each(ctx context.Context, devs []*device, conc int, rate float64, dur time.Duration, fn func(*device)) {
	work := make(chan *device)
	var wg sync.WaitGroup
	for range max(conc, 1) {
		wg.Go(func() {
			for d := range work {
				fn(d)
			}
		})
	}
	defer func() {
		close(work)
		wg.Wait()
	}()
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
				return
			}
			if tick != nil {
				select {
				case <-tick:
				case <-ctx.Done():
					return
				}
			}
			work <- d
		}
	}
}

// tempFleetDir makes the directory where the fleet keeps its state by
// default: in /dev/shm when it can. The virtual devices' flash is not this
// host's disk: on the disk, thousands of devices writing and fsyncing
// their keys and certificates contend with the service's own commits and
// cost the simulator CPU that a service on the same cores would otherwise
// have.
func tempFleetDir() (string, error) {
	if dir, err := os.MkdirTemp("/dev/shm", "sphere-sim-"); err == nil {
		return dir, nil
	}
	return os.MkdirTemp("", "sphere-sim-")
}
