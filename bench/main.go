// Command bench measures OpenSphere against the performance targets of
// DESIGN.md on this machine and writes a BENCHMARKS.md section: each
// figure, its target, the ratio, the exact command and the machine.
//
//	go run ./bench -out bench-section.md
//
// It builds sphere, starts `sphere serve` on SQLite in a temporary
// directory (and on PostgreSQL too when SPHERE_TEST_POSTGRES is set, in a
// schema of its own), runs `sphere sim` scenarios against it over loopback
// with the service's pid for /proc figures, measures in the same run the
// raw crypto of one attestation (go test -bench BenchmarkAttest ./agent/),
// an agent's idle memory and CPU, and the linux/arm binary's size. Every
// scenario runs -runs times; the section gives medians. Counts and
// durations are bounded by the flags; -quick makes everything small.
package main

import (
	"bufio"
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib"

	"github.com/opensphere/sphere/sim"
)

var (
	runs        = flag.Int("runs", 3, "runs of each scenario (the section gives medians)")
	out         = flag.String("out", "", "file for the markdown section (default: standard output)")
	quick       = flag.Bool("quick", false, "small counts and short durations, to try the harness")
	stormN      = flag.Int("storm", 2000, "devices in the storm scenario")
	reuseN      = flag.Int("reuse", 1000, "devices in the renewal and update-check scenarios")
	population  = flag.Int("population", 100_000, "registered devices in the database during update checks")
	reportsN    = flag.Int("reports", 100, "devices in the reports scenario, each uploading 1,000 failure events")
	idleN       = flag.Int("idle", 10_000, "devices holding connections in the idle scenario (at most the open-file limit less a margin)")
	duration    = flag.Duration("duration", 15*time.Second, "length of the renewal and update-check scenarios")
	onSQLite    = flag.Bool("sqlite", true, "run the scenarios on SQLite (PostgreSQL runs too when SPHERE_TEST_POSTGRES is set)")
	only        = flag.String("only", "", "comma-separated groups to run: arm, ceiling, storm, reuse, idle, reports, agent (default: all)")
	agentSample = flag.Duration("agent-sample", 30*time.Second, "how long the idle agent's CPU is sampled")
)

// figure is one measured line of the section.
type figure struct {
	what, value, target, ratio, command string
}

func main() {
	flag.Parse()
	log.SetFlags(log.Ltime)
	if *quick {
		*runs, *stormN, *reuseN, *population, *idleN, *duration, *agentSample = 1, 100, 100, 1000, 200, 3*time.Second, 5*time.Second
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Hour)
	defer cancel()
	work, err := os.MkdirTemp("", "sphere-bench-")
	check(err)
	defer os.RemoveAll(work)

	bin := filepath.Join(work, "sphere")
	run(ctx, nil, "go", "build", "-o", bin, "./cmd/sphere")
	machine := describeMachine()
	log.Printf("machine: %s", machine)

	var figs []figure
	if want("arm") {
		figs = append(figs, armSize(ctx, work)...)
	}
	ceil := cryptoCeiling(ctx)
	if want("ceiling") {
		figs = append(figs, ceil.figures()...)
	}

	var dbs []string
	if *onSQLite {
		dbs = append(dbs, "")
	}
	if pg := os.Getenv("SPHERE_TEST_POSTGRES"); pg != "" {
		dbs = append(dbs, pg) // each service gets a new schema (startService)
	}
	for _, db := range dbs {
		figs = append(figs, scenarios(ctx, bin, work, db, ceil)...)
	}
	if want("agent") {
		figs = append(figs, agentIdle(ctx, bin, work)...)
	}

	var b strings.Builder
	fmt.Fprintf(&b, "## Measured against the DESIGN targets (`go run ./bench`, %s)\n\n", time.Now().UTC().Format("2006-01-02 15:04 MST"))
	fmt.Fprintf(&b, "Machine: %s. Medians of %d runs; ratios are between figures of the same run.\n\n", machine, *runs)
	fmt.Fprintf(&b, "| figure | measured | target | ratio | command |\n|---|---|---|---|---|\n")
	for _, f := range figs {
		fmt.Fprintf(&b, "| %s | %s | %s | %s | `%s` |\n", f.what, f.value, f.target, f.ratio, f.command)
	}
	if *out == "" {
		fmt.Print(b.String())
		return
	}
	check(os.WriteFile(*out, []byte(b.String()), 0o644))
	log.Printf("wrote %s", *out)
}

// want says whether -only asks for a group of figures.
func want(group string) bool {
	return *only == "" || slices.Contains(strings.Split(*only, ","), group)
}

func check(err error) {
	if err != nil {
		log.Fatal(err)
	}
}

// run runs a command, with env added, and returns its standard output.
func run(ctx context.Context, env []string, name string, args ...string) []byte {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = append(os.Environ(), env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		log.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, stderr.String())
	}
	return stdout.Bytes()
}

func describeMachine() string {
	model := "unknown CPU"
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		field := func(name string) string {
			if m := regexp.MustCompile(`(?m)^` + name + `\s*:\s*(.+)$`).FindSubmatch(b); m != nil {
				return strings.TrimSpace(string(m[1]))
			}
			return ""
		}
		if n := field("model name"); n != "" {
			model = n
		}
		// Hosts of this machine kind show one masked model name ("AMD
		// EPYC") whatever their generation, and the crypto ceiling and the
		// fleet scenarios do not gain alike from a faster host: name the
		// family, model and clock so that tables from different hosts are
		// told apart.
		if fam, mod := field("cpu family"), field(`model`); fam != "" && mod != "" {
			model += fmt.Sprintf(", family %s model %s", fam, mod)
		}
		if mhz, err := strconv.ParseFloat(field("cpu MHz"), 64); err == nil {
			model += fmt.Sprintf(", %.0f MHz", mhz)
		}
	}
	kernel, _ := os.ReadFile("/proc/sys/kernel/osrelease")
	load, _ := os.ReadFile("/proc/loadavg")
	return fmt.Sprintf("%d cores (%s), Linux %s, %s, load average at start %s (the machine is shared with other work)",
		runtime.NumCPU(), model, strings.TrimSpace(string(kernel)), runtime.Version(), strings.Join(strings.Fields(string(load))[:3], " "))
}

// armSize builds the linux/arm (GOARM=7) binary as CI does and as
// stripped, in the full build and the agent-only device build.
func armSize(ctx context.Context, work string) []figure {
	var figs []figure
	for _, tags := range []string{"", "agentonly"} {
		for _, ldflags := range []string{"", "-s -w"} {
			p := filepath.Join(work, "sphere-arm")
			shown := build(ctx, []string{"GOOS=linux", "GOARCH=arm", "GOARM=7", "CGO_ENABLED=0"}, p, tags, ldflags)
			name := "linux/arm binary"
			if tags != "" {
				name += ", -tags " + tags
			}
			if ldflags != "" {
				name += ", stripped (" + ldflags + ")"
			}
			st, err := os.Stat(p)
			check(err)
			mb := float64(st.Size()) / (1 << 20)
			figs = append(figs, figure{name, fmt.Sprintf("%.1f MiB", mb), "≤ 20 MiB", fmt.Sprintf("%.2f", mb/20), shown + " ./cmd/sphere"})
		}
	}
	return figs
}

// build builds ./cmd/sphere into out with env, build tags and ldflags
// (either may be empty), and returns the command as the section shows it.
func build(ctx context.Context, env []string, out, tags, ldflags string) string {
	args, shown := []string{"build", "-o", out}, strings.Join(env, " ")+" go build"
	if tags != "" {
		args, shown = append(args, "-tags", tags), shown+" -tags "+tags
	}
	if ldflags != "" {
		args, shown = append(args, "-ldflags", ldflags), shown+" "+ldflagsArg(ldflags)
	}
	run(ctx, env, "go", append(args, "./cmd/sphere")...)
	return shown
}

func ldflagsArg(f string) string {
	if f == "" {
		return ""
	}
	return "-ldflags '" + f + "'"
}

// ceiling is the raw crypto of one attestation, per operation.
type ceiling struct {
	service, device, handshake time.Duration
}

const ceilingCmd = "go test -run '^$' -bench 'BenchmarkAttest/(crypto|tls)' -benchtime 2s -count 5 ./agent/"

func cryptoCeiling(ctx context.Context) ceiling {
	count := "5"
	if *quick {
		count = "1"
	}
	return measureCeiling(ctx, count)
}

// measureCeiling runs the crypto benchmarks count times and takes the
// medians.
func measureCeiling(ctx context.Context, count string) ceiling {
	outp := run(ctx, nil, "go", "test", "-run", "^$", "-bench", "BenchmarkAttest/(crypto|tls)", "-benchtime", "2s", "-count", count, "./agent/")
	got := map[string][]float64{}
	re := regexp.MustCompile(`^BenchmarkAttest/([a-z-]+)-\d+\s+\d+\s+([\d.]+) ns/op`)
	sc := bufio.NewScanner(bytes.NewReader(outp))
	for sc.Scan() {
		if m := re.FindStringSubmatch(sc.Text()); m != nil {
			v, _ := strconv.ParseFloat(m[2], 64)
			got[m[1]] = append(got[m[1]], v)
		}
	}
	c := ceiling{time.Duration(median(got["crypto-service"])), time.Duration(median(got["crypto-device"])), time.Duration(median(got["tls-handshake"]))}
	if c.service == 0 || c.device == 0 || c.handshake == 0 {
		log.Fatalf("crypto benchmarks missing from:\n%s", outp)
	}
	log.Printf("crypto: service %s, device %s, handshake %s", c.service, c.device, c.handshake)
	return c
}

// perSecond is the attestations per second that the machine's cores could
// do if they did nothing but this crypto: the service's, the simulated
// devices' and the TLS handshake's (both sides), as in the storm.
func (c ceiling) perSecond() float64 {
	return float64(runtime.NumCPU()) / (c.service + c.device + c.handshake).Seconds()
}

func (c ceiling) figures() []figure {
	return []figure{
		{"crypto of one attestation, service (quote and certify verify, CSR check, certificate signed by a P-256 CA)", ms(c.service), "", "", ceilingCmd},
		{"crypto of one attestation, device (quote, certify, CSR)", ms(c.device), "", "", ceilingCmd},
		{"TLS handshake, both sides, with the device-certificate check", ms(c.handshake), "", "", ceilingCmd},
		{"raw ceiling: attestations on new TLS per second on all cores", fmt.Sprintf("%.0f /s", c.perSecond()), "", "", ceilingCmd},
	}
}

func ms(d time.Duration) string { return fmt.Sprintf("%.2f ms", float64(d)/1e6) }

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	return s[len(s)/2]
}

// pgSchema returns dsn with a new, empty schema as its search path.
func pgSchema(ctx context.Context, dsn string) (withPath, schema string) {
	db, err := sql.Open("pgx", dsn)
	check(err)
	defer db.Close()
	schema = fmt.Sprintf("sphere_bench_%d", time.Now().UnixNano())
	_, err = db.ExecContext(ctx, "CREATE SCHEMA "+schema)
	check(err)
	sep := "?"
	if strings.Contains(dsn, "?") {
		sep = "&"
	}
	return dsn + sep + "search_path=" + schema, schema
}

// dropSchema removes a schema pgSchema made, with everything in it: a
// 100,000-device fleet leaves hundreds of MiB behind otherwise.
func dropSchema(dsn, schema string) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	db, err := sql.Open("pgx", dsn)
	if err == nil {
		_, err = db.ExecContext(ctx, "DROP SCHEMA "+schema+" CASCADE")
		db.Close()
	}
	if err != nil {
		log.Printf("could not drop the benchmark's schema %s (drop it by hand): %v", schema, err)
	}
}

// service is a running `sphere serve`.
type service struct {
	cmd            *exec.Cmd
	url, caFile    string
	config, dbName string
	// dsn and schema: the PostgreSQL schema of this service, dropped
	// when it stops.
	dsn, schema string
}

func startService(ctx context.Context, bin, work, db string) *service {
	dir, err := os.MkdirTemp(work, "serve-")
	check(err)
	// The service runs with its defaults, logging at info (each
	// attestation, an operator's calls, a device's refused calls) to a
	// file of its own.
	args := []string{"serve", "--addr", "127.0.0.1:0", "--data-dir", filepath.Join(dir, "data")}
	s := &service{dbName: "SQLite", config: filepath.Join(dir, "config.json"), caFile: filepath.Join(dir, "data", "tls", "server.crt")}
	if db != "" {
		// A new, empty schema for each service, as SQLite gets a new
		// directory: a service started on another's database would find
		// CA keys sealed with that service's key-encryption key.
		withPath, schema := pgSchema(ctx, db)
		args = append(args, "--db", withPath)
		s.dbName, s.dsn, s.schema = "PostgreSQL", db, schema
	}
	s.cmd = exec.CommandContext(ctx, bin, args...)
	stdout, err := s.cmd.StdoutPipe()
	check(err)
	logPath := filepath.Join(dir, "serve.log")
	logFile, err := os.Create(logPath)
	check(err)
	s.cmd.Stderr = logFile
	check(s.cmd.Start())
	logFile.Close() // the child has its own descriptor
	sc := bufio.NewScanner(stdout)
	token := ""
	deadline := time.Now().Add(time.Minute)
	for (s.url == "" || token == "") && sc.Scan() && time.Now().Before(deadline) {
		line := sc.Text()
		if m := regexp.MustCompile(`listening on (https://\S+)`).FindStringSubmatch(line); m != nil {
			s.url = m[1]
		}
		if m := regexp.MustCompile(`--token (sph_\S+)`).FindStringSubmatch(line); m != nil {
			token = m[1]
		}
	}
	if s.url == "" || token == "" {
		out, _ := os.ReadFile(logPath)
		log.Fatalf("sphere serve did not print its address and first token; its log (%s):\n%s", logPath, out[max(0, len(out)-4096):])
	}
	go io.Copy(io.Discard, stdout)
	run(ctx, s.env(), bin, "login", "--server", s.url, "--ca-file", s.caFile, "--token", token)
	return s
}

func (s *service) env() []string { return []string{"SPHERE_CONFIG=" + s.config} }

func (s *service) stop() {
	s.cmd.Process.Signal(os.Interrupt)
	done := make(chan error, 1)
	go func() { done <- s.cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		s.cmd.Process.Kill()
		<-done
	}
	if s.schema != "" {
		dropSchema(s.dsn, s.schema)
	}
}

// simRun runs `sphere sim` with args (and the service's pid) and returns
// its report and the command as a person would type it.
func (s *service) sim(ctx context.Context, bin string, args ...string) (sim.Report, string) {
	shown := "sphere sim " + strings.Join(args, " ")
	args = append([]string{"sim", "--output", "json", "--server-pid", strconv.Itoa(s.cmd.Process.Pid)}, args...)
	log.Printf("%s (%s)", shown, s.dbName)
	var rep sim.Report
	check(json.Unmarshal(run(ctx, s.env(), bin, args...), &rep))
	for _, o := range rep.Ops {
		if o.Errors > 0 {
			log.Printf("  %s: %d errors %v", o.Name, o.Errors, o.ErrorKinds)
		}
	}
	return rep, shown
}

func opOf(rep sim.Report, name string) sim.Op {
	for _, o := range rep.Ops {
		if o.Name == name {
			return o
		}
	}
	return sim.Op{}
}

// scenarios runs the sim scenarios on a fresh service on db ("" is SQLite)
// and returns their figures.
func scenarios(ctx context.Context, bin, work, db string, ceil ceiling) []figure {
	var figs []figure
	on := func(s *service) string { return " (" + s.dbName + ")" }
	// Storm: every device attests at once on new TLS connections.
	if want("storm") {
		s := startService(ctx, bin, work, db)
		// This machine's speed drifts with its other work by up to a
		// third within minutes, so each storm is held against the
		// ceiling measured just before it, and the ratio is the median
		// of those pairs.
		var rates, p99s, ratios, ceilings []float64
		var cpu cpuPerOp
		var cmd string
		for range *runs {
			pair := ceil
			if !*quick {
				pair = measureCeiling(ctx, "1")
			}
			rep, c := s.sim(ctx, bin, "--devices", strconv.Itoa(*stormN), "--scenario", "storm", "--concurrency", "64")
			o := opOf(rep, "attest+certificate")
			rates, p99s, cmd = append(rates, o.PerSecond), append(p99s, float64(o.P99)), c
			ratios, ceilings = append(ratios, o.PerSecond/pair.perSecond()), append(ceilings, pair.perSecond())
			cpu.add(rep)
		}
		r := median(rates)
		figs = append(figs, figure{"attestation storm, new TLS per device" + on(s), fmt.Sprintf("%.0f /s, p99 %s", r, ms(time.Duration(median(p99s)))),
			"≥ 60 % of the raw ceiling", fmt.Sprintf("%.0f %% (each run against the ceiling measured just before it, %.0f /s median)", 100*median(ratios), median(ceilings)), cmd})
		figs = append(figs, cpu.figure("attestation in the storm"+on(s), cmd))
		s.stop()
	}
	// Renewal and update checks with connection reuse, in a large fleet.
	if want("reuse") {
		s := startService(ctx, bin, work, db)
		dur := duration.String()
		// checks runs the update-check scenario *runs times and adds its
		// figures; the first run sets up the large fleet.
		setUp := false
		checks := func(name, one string, extra ...string) {
			var rates, p99s []float64
			var cpu cpuPerOp
			var cmd string
			for i := range *runs {
				first := i == 0 && !setUp // this run sets up the large fleet
				args := append([]string{"--devices", strconv.Itoa(*reuseN), "--scenario", "update-check", "--concurrency", "64", "--reuse-connections", "--duration", dur}, extra...)
				if first {
					args = append(args, "--population", strconv.Itoa(*population))
				}
				rep, c := s.sim(ctx, bin, args...)
				o := opOf(rep, "update-check")
				rates, p99s, cmd = append(rates, o.PerSecond), append(p99s, float64(o.P99)), c
				cpu.add(rep)
				if first {
					setUp = true
					figs = append(figs, figure{fmt.Sprintf("fleet set-up: %d devices registered and claimed in bulk, plus %d with agents", *population, *reuseN) + on(s),
						rep.Setup.Round(time.Second).String(), "100,000 in minutes", "", c})
				}
			}
			r, p99 := median(rates), time.Duration(median(p99s))
			figs = append(figs,
				figure{fmt.Sprintf("%s, reused connections, %d devices in the database", name, *population+*reuseN) + on(s), fmt.Sprintf("%.0f /s", r), "≥ 20,000 /s", fmt.Sprintf("%.2f", r/20000), cmd},
				figure{name + ", p99" + on(s), ms(p99), "< 20 ms", fmt.Sprintf("%.2f", float64(p99)/float64(20*time.Millisecond)), cmd},
				cpu.figure(one+on(s), cmd))
		}
		checks("update checks (each device again within the hour: read only)", "update check")
		checks("update checks that write (each recorded, as for a fleet checking less often than hourly)", "update check that writes", "--check-writes")
		var rates []float64
		var cpu cpuPerOp
		var cmd string
		for range *runs {
			rep, c := s.sim(ctx, bin, "--devices", strconv.Itoa(*reuseN), "--scenario", "renewal", "--concurrency", "64", "--reuse-connections", "--duration", dur)
			rates, cmd = append(rates, opOf(rep, "renewal").PerSecond), c
			cpu.add(rep)
		}
		r := median(rates)
		figs = append(figs, figure{"renewal (attestation + certificate), reused connections" + on(s), fmt.Sprintf("%.0f /s", r), "≥ 3,000 /s", fmt.Sprintf("%.2f", r/3000), cmd},
			cpu.figure("renewal"+on(s), cmd))
		s.stop()
	}
	// Idle connections on a fresh service, and the delta update.
	if want("idle") {
		s := startService(ctx, bin, work, db)
		rep, c := s.sim(ctx, bin, "--devices", strconv.Itoa(*idleN), "--scenario", "idle", "--concurrency", "64", "--duration", "10s")
		if i := rep.Idle; i != nil && i.RSSHeld > 0 {
			how := "measured"
			if i.Extrapolated {
				how = fmt.Sprintf("extrapolated from %d connections, %.1f KiB each", i.Connections, float64(i.PerConnection)/1024)
			}
			gib := float64(i.At100k) / (1 << 30)
			how += fmt.Sprintf("; peak while connecting %.0f MiB", float64(i.RSSPeak)/(1<<20))
			figs = append(figs, figure{"service memory with 100,000 idle mutual-TLS connections" + on(s), fmt.Sprintf("%.2f GiB (%s)", gib, how), "≤ 2 GiB", fmt.Sprintf("%.2f", gib/2), c})
		}
		var ratios []float64
		var reqs []float64
		for range *runs {
			rep, c = s.sim(ctx, bin, "--scenario", "delta", "--delta-mib", "64", "--delta-places", "8")
			if rep.Delta != nil {
				ratios, reqs = append(ratios, rep.Delta.Ratio), append(reqs, float64(rep.Delta.Requests))
			}
		}
		r := median(ratios)
		figs = append(figs, figure{"delta update: 64 MiB image, 5 % changed in place in 8 places, bytes over the full package" + on(s),
			fmt.Sprintf("%.1f %% (%.0f requests)", 100*r, median(reqs)), "≤ 10 %", fmt.Sprintf("%.2f", r/0.10), c})
		for _, places := range []string{"16", "64"} {
			rep, c = s.sim(ctx, bin, "--scenario", "delta", "--delta-mib", "64", "--delta-places", places)
			if rep.Delta != nil {
				figs = append(figs, figure{"the same in " + places + " places" + on(s), fmt.Sprintf("%.1f %%", 100*rep.Delta.Ratio), "≤ 10 %", fmt.Sprintf("%.2f", rep.Delta.Ratio/0.10), c})
			}
		}
		s.stop()
	}
	// Failure-report ingest: every device uploads its on-disk queue at once.
	if want("reports") {
		s := startService(ctx, bin, work, db)
		var rates, cpu []float64
		var cmd string
		for range *runs {
			rep, c := s.sim(ctx, bin, "--devices", strconv.Itoa(*reportsN), "--scenario", "reports", "--report-events", "1000", "--concurrency", "16")
			if rep.Reports != nil {
				rates = append(rates, rep.Reports.PerSecond)
			}
			if rep.Server != nil && rep.Reports != nil && rep.Reports.Accepted > 0 {
				cpu = append(cpu, float64(rep.Server.CPU)/float64(rep.Reports.Accepted))
			}
			cmd = c
		}
		r := median(rates)
		figs = append(figs, figure{fmt.Sprintf("failure-report ingest, %d devices uploading 1,000 events each", *reportsN) + on(s),
			fmt.Sprintf("%.0f events/s (service CPU %s per event)", r, time.Duration(median(cpu)).Round(100*time.Nanosecond)), "≥ 50,000 /s", fmt.Sprintf("%.2f", r/50000), cmd})
		s.stop()
	}
	return figs
}

// cpuPerOp collects, over the runs of a scenario, the CPU time per
// operation of the service and of the simulator (the devices' side), which
// share this host's cores, and the part of each side's CPU spent in the
// kernel.
type cpuPerOp struct{ service, fleet, serviceKernel, fleetKernel []float64 }

func (c *cpuPerOp) add(rep sim.Report) {
	if u := rep.Server; u != nil && u.CPUPerOp > 0 {
		c.service = append(c.service, float64(u.CPUPerOp))
		c.serviceKernel = append(c.serviceKernel, u.KernelShare())
	}
	if u := rep.Fleet; u != nil && u.CPUPerOp > 0 {
		c.fleet = append(c.fleet, float64(u.CPUPerOp))
		c.fleetKernel = append(c.fleetKernel, u.KernelShare())
	}
}

// figure is the line for what: the medians, and the rate the service
// would reach with every core of this host to itself.
func (c *cpuPerOp) figure(what, cmd string) figure {
	svc, fleet := time.Duration(median(c.service)), time.Duration(median(c.fleet))
	alone := ""
	if svc > 0 {
		alone = fmt.Sprintf("%.0f /s on %d cores if the service had them alone", float64(runtime.NumCPU())/svc.Seconds(), runtime.NumCPU())
	}
	return figure{"CPU per " + what + ": service; simulated devices (each with its share in the kernel)",
		fmt.Sprintf("%s (%.0f %%); %s (%.0f %%)", svc.Round(time.Microsecond), 100*median(c.serviceKernel),
			fleet.Round(time.Microsecond), 100*median(c.fleetKernel)), "", alone, cmd}
}

// agentIdle runs `sphere agent` with a soft root of trust against a local
// service and samples its memory and CPU once it is idle. It builds the
// agent as a device gets it (CGO_ENABLED=0: a cgo build maps libc too):
// the full binary, and the agent-only one as built and stripped, each run
// as a device of its own (they measure different binaries).
func agentIdle(ctx context.Context, bin, work string) []figure {
	s := startService(ctx, bin, work, "")
	defer s.stop()
	run(ctx, s.env(), bin, "product", "create", "--name", "Bench Agent")
	var figs []figure
	for i, b := range []struct{ label, tags, ldflags string }{
		{"full build", "", ""},
		{"-tags agentonly", "agentonly", ""},
		{"-tags agentonly, stripped", "agentonly", "-s -w"},
	} {
		agentBin := filepath.Join(work, fmt.Sprintf("sphere-device-%d", i))
		shown := build(ctx, []string{"CGO_ENABLED=0"}, agentBin, b.tags, b.ldflags)
		figs = append(figs, idleAgent(ctx, s, bin, agentBin, agentBin+"-state", b.label, "sphere agent ("+shown+")")...)
	}
	return figs
}

// idleAgent enrolls a device whose agent is agentBin (bin is the admin
// CLI), runs the agent until it is idle, and samples it.
func idleAgent(ctx context.Context, s *service, bin, agentBin, state, label, shown string) []figure {
	rec := run(ctx, nil, agentBin, "agent", "identity", "--rot", "soft", "--state-dir", state)
	recFile := state + "-record.json"
	check(os.WriteFile(recFile, rec, 0o600))
	var d struct {
		ID string `json:"id"`
	}
	check(json.Unmarshal(run(ctx, s.env(), bin, "device", "register", "--file", recFile, "--output", "json"), &d))
	run(ctx, s.env(), bin, "device", "claim", "--device", d.ID, "--device-group", "Bench Agent/Development")
	agentFlags := []string{"--rot", "soft", "--state-dir", state, "--server", s.url, "--ca-file", s.caFile}
	var events []struct{ Type, Digest, Name string }
	check(json.Unmarshal(run(ctx, s.env(), agentBin, append([]string{"agent", "measurements", "--output", "json"}, agentFlags...)...), &events))
	for _, e := range events {
		run(ctx, s.env(), bin, "measurement", "allow", "--type", e.Type, "--digest", e.Digest, "--name", e.Name)
	}
	cmd := exec.CommandContext(ctx, agentBin, append([]string{"agent", "--log-level", "warn"}, agentFlags...)...)
	cmd.Stderr = os.Stderr
	check(cmd.Start())
	defer func() { cmd.Process.Signal(os.Interrupt); cmd.Wait() }()
	shown += " --rot soft --state-dir DIR --server URL --ca-file FILE"
	// Idle: attested, certificate in hand, nothing due for hours.
	deadline := time.Now().Add(time.Minute)
	for time.Now().Before(deadline) {
		if _, err := os.Stat(filepath.Join(state, "device.crt")); err == nil {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	time.Sleep(3 * time.Second)
	a, err := sim.ReadProc(cmd.Process.Pid)
	check(err)
	time.Sleep(*agentSample)
	b, err := sim.ReadProc(cmd.Process.Pid)
	if err != nil {
		check(errors.New("the agent stopped while idle"))
	}
	rss := float64(b.RSS) / (1 << 20)
	cpu := (b.CPU - a.CPU).Seconds() / agentSample.Seconds()
	anon, file := rssParts(cmd.Process.Pid)
	return []figure{
		{"agent idle RSS (soft root of trust, after attesting), " + label, fmt.Sprintf("%.1f MiB (anonymous %.1f, file %.1f; peak %.1f)", rss, anon, file, float64(b.HWM)/(1<<20)), "≤ 15 MiB", fmt.Sprintf("%.2f", rss/15), shown},
		{fmt.Sprintf("agent idle CPU over %s, %s", *agentSample, label), fmt.Sprintf("%.4f cores", cpu), "~0", fmt.Sprintf("%.0f ms of CPU", 1000*(b.CPU-a.CPU).Seconds()), shown},
	}
}

// rssParts reads how much of a process's resident memory is anonymous
// (heap, stacks) and how much is file pages (mostly its own binary), in MiB.
func rssParts(pid int) (anon, file float64) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	check(err)
	for _, line := range strings.Split(string(b), "\n") {
		k, v, _ := strings.Cut(line, ":")
		var kb float64
		fmt.Sscanf(strings.TrimSpace(v), "%f kB", &kb)
		switch k {
		case "RssAnon":
			anon = kb / 1024
		case "RssFile":
			file = kb / 1024
		}
	}
	return anon, file
}
