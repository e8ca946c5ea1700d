//go:build !agentonly

package cli

import (
	"context"
	"errors"
	"fmt"
	"os"
	"runtime/pprof"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/opensphere/sphere/internal/gcpace"
	"github.com/opensphere/sphere/sim"
)

func (a *app) simCommand() *cobra.Command {
	var cfg sim.Config
	var sourceAddrs, cpuProfile string
	cmd := &cobra.Command{
		Use:   "sim",
		Short: "Simulate a fleet of devices against a service and measure it",
		Long: `Run N virtual devices in this process, each with the agent's real code (software
root of trust, attestation, mutual TLS, update checks), against a security
service. The fleet is set up through the admin API with the saved login (an
operator who is Administrator of --tenant): a new product, its Field Test group,
N registered and claimed devices, and their measurements allowed.

Devices are registered and claimed through the bulk routes, 10,000 a call.

Scenarios:
  storm         every device attests at once (after a power cut), each on new TLS connections
  renewal       attestations at a steady --rate for --duration, as daily renewal spreads them
  update-check  every device attests, then checks for updates over mutual TLS (at --rate for --duration)
  idle          every device attests, then holds an open mutual-TLS connection for --duration
                (default 10s); with --server-pid, the service's memory per connection
  delta         one device holding a 64 MiB image assembles version 2 (5 % changed in place)
                from its chunks; bytes transferred against the full package
  reports       every device attests, queues --report-events failure events in its on-disk queue
                (not measured), then all upload at once with the agent's uploader; events/s ingested

Output: per operation the count, rate, latency p50/p90/p99/max and errors by kind;
with --server-pid (a service on this host) its RSS and CPU over the scenario.
The simulator paces its own collector as sphere serve does by default (a
heap of up to 256 MiB beyond its live data; GOGC in the environment wins), so
that its garbage collection takes less of the cores it shares with the service.
Sockets come from --source-addrs (loopback addresses, taken in turn; one with no
ephemeral port left gives way to the next). Point it only at a service you run:
it is a load generator.`,
		Example: `  sphere sim --devices 500 --scenario storm --concurrency 64
  sphere sim --devices 10000 --scenario idle --server-pid "$(pgrep -n -f 'sphere serve')" --source-addrs 127.0.0.1-127.0.0.4`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, saved, err := a.client()
			if err != nil {
				return err
			}
			if saved.Insecure {
				return errors.New("sim needs the service's CA (sphere login --ca-file), not --insecure")
			}
			cfg.Server, cfg.CAFile, cfg.Token = saved.Server, saved.CAFile, saved.Token
			if cfg.Tenant == "" {
				cfg.Tenant = saved.Tenant
			}
			cfg.Progress = func(format string, args ...any) { fmt.Fprintf(a.stderr, format+"\n", args...) }
			if sourceAddrs != "" {
				if cfg.SourceAddrs, err = sim.ParseSourceAddrs(sourceAddrs); err != nil {
					return err
				}
			}
			if cpuProfile != "" {
				f, err := os.Create(cpuProfile)
				if err != nil {
					return err
				}
				defer f.Close()
				if err := pprof.StartCPUProfile(f); err != nil {
					return err
				}
				defer pprof.StopCPUProfile()
			}
			ctx, stop := context.WithCancel(cmd.Context())
			defer stop()
			go gcpace.Run(ctx, gcpace.Config{Headroom: gcHeadroom(256)})
			rep, err := sim.Run(ctx, cfg)
			if err != nil {
				return err
			}
			rows := make([][]string, len(rep.Ops))
			for i, o := range rep.Ops {
				kinds := "-"
				if len(o.ErrorKinds) > 0 {
					kinds = fmt.Sprint(o.ErrorKinds)
				}
				rows[i] = []string{o.Name, strconv.Itoa(o.Count), strconv.Itoa(o.Errors), fmt.Sprintf("%.0f", o.PerSecond),
					ms(o.P50), ms(o.P90), ms(o.P99), ms(o.Max), kinds}
			}
			if err := a.show(rep, []string{"OPERATION", "OK", "ERRORS", "PER SECOND", "P50", "P90", "P99", "MAX", "ERROR KINDS"}, rows); err != nil {
				return err
			}
			if a.output != "json" {
				a.simSummary(rep)
			}
			return nil
		},
	}
	fl := cmd.Flags()
	fl.IntVar(&cfg.Devices, "devices", 100, "number of virtual devices")
	fl.StringVar(&cfg.Scenario, "scenario", sim.ScenarioStorm, strings.Join(sim.Scenarios, ", "))
	fl.IntVar(&cfg.Concurrency, "concurrency", 0, "operations in flight (default 4 per CPU)")
	fl.Float64Var(&cfg.Rate, "rate", 0, "operations per second for renewal and update-check (0: as fast as concurrency allows)")
	fl.DurationVar(&cfg.Duration, "duration", 0, "keep going round the fleet this long (0: once)")
	fl.StringVar(&cfg.Tenant, "tenant", "", "tenant to set the fleet up in (default: the selected one)")
	fl.BoolVar(&cfg.Reuse, "reuse-connections", false, "keep each device's TLS connections between its operations (default: new TLS for every operation)")
	fl.BoolVar(&cfg.CheckWrites, "check-writes", false, "update-check: every check reports a changed component, so the service records each one (as for a fleet checking less often than hourly); default: repeated checks within the hour, which the service only reads")
	fl.StringVar(&cfg.Dir, "dir", "", "where the devices keep their keys and certificates (default: a temporary directory in /dev/shm, else $TMPDIR)")
	fl.StringVar(&sourceAddrs, "source-addrs", "", "loopback source addresses for the sockets, 127.0.0.1-127.0.0.20 or a comma list (default: one per 20,000 devices)")
	fl.IntVar(&cfg.ServerPID, "server-pid", 0, "process id of the service when it runs on this host: its RSS and CPU are read from /proc")
	fl.IntVar(&cfg.Population, "population", 0, "register and claim this many more devices (keys only) first, for a large fleet's database")
	fl.IntVar(&cfg.DeltaMiB, "delta-mib", 64, "image size of the delta scenario, MiB")
	fl.IntVar(&cfg.DeltaPlaces, "delta-places", 16, "places the delta scenario changes (5 % of the image in all)")
	fl.StringVar(&cpuProfile, "cpuprofile", "", "write the simulator's own CPU profile (the devices' side) to this file, for go tool pprof")
	fl.IntVar(&cfg.ReportEvents, "report-events", 1000, "failure events each device queues and uploads in the reports scenario")
	return cmd
}

// simSummary prints what the table of operations does not show.
func (a *app) simSummary(rep sim.Report) {
	w := a.stdout
	fmt.Fprintf(w, "\n%d devices, set up in %s; %d hold a valid certificate; sockets from %d source addresses", rep.Devices, rep.Setup.Round(time.Millisecond), rep.Certified, rep.SourceAddrs)
	if rep.AddrFallbacks > 0 {
		fmt.Fprintf(w, " (%d dials moved to the next one, out of ports)", rep.AddrFallbacks)
	}
	fmt.Fprintln(w, ".")
	if u := rep.Server; u != nil {
		fmt.Fprintf(w, "Service (pid %d) over the scenario: CPU %.1fs (%.2f cores, %.0f %% in the kernel), %s per operation; RSS %s (peak %s).\n",
			u.After.PID, u.CPU.Seconds(), u.Cores, 100*u.KernelShare(), u.CPUPerOp.Round(time.Microsecond), mib(u.After.RSS), mib(u.After.HWM))
	}
	if u := rep.Fleet; u != nil {
		fmt.Fprintf(w, "Simulator (the devices' side) over the same phase: CPU %.1fs (%.2f cores, %.0f %% in the kernel), %s per operation.\n",
			u.CPU.Seconds(), u.Cores, 100*u.KernelShare(), u.CPUPerOp.Round(time.Microsecond))
	}
	if i := rep.Idle; i != nil {
		fmt.Fprintf(w, "Idle: %d connections held %s, %d still open after it.", i.Connections, i.Hold, i.Kept)
		if i.RSSHeld > 0 {
			how := "measured"
			if i.Extrapolated {
				how = "extrapolated"
			}
			fmt.Fprintf(w, " Service RSS %s before, %s held (peak %s): %.1f KiB per connection; at 100,000: %s (%s).", mib(i.RSSBefore), mib(i.RSSHeld), mib(i.RSSPeak), float64(i.PerConnection)/1024, mib(i.At100k), how)
		}
		fmt.Fprintln(w)
	}
	if r := rep.Reports; r != nil {
		fmt.Fprintf(w, "Reports: %d events queued, %d stored (%d duplicates) in %s: %.0f events/s.\n",
			r.Events, r.Accepted, r.Duplicates, r.Wall.Round(time.Millisecond), r.PerSecond)
	}
	if d := rep.Delta; d != nil {
		fmt.Fprintf(w, "Delta: %s image, %s changed in %d places; fetched %s of the %s package (%.1f %%) in %d requests.\n",
			mib(d.ImageBytes), mib(d.ChangedBytes), d.Places, mib(d.Transferred), mib(d.PackageBytes), 100*d.Ratio, d.Requests)
	}
}

func mib(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }

func ms(d time.Duration) string { return fmt.Sprintf("%.1fms", float64(d)/float64(time.Millisecond)) }
