package cli

import (
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/spf13/cobra"

	"github.com/opensphere/sphere/sim"
)

func (a *app) simCommand() *cobra.Command {
	var cfg sim.Config
	cmd := &cobra.Command{
		Use:   "sim",
		Short: "Simulate a fleet of devices against a service and measure it",
		Long: `Run N virtual devices in this process, each with the agent's real code (software
root of trust, attestation, mutual TLS, update checks), against a security
service. The fleet is set up through the admin API with the saved login (an
operator who is Administrator of --tenant): a new product, its Field Test group,
N registered and claimed devices, and their measurements allowed.

Scenarios:
  storm         every device attests at once (after a power cut), each on new TLS connections
  renewal       attestations at a steady --rate for --duration, as daily renewal spreads them
  update-check  every device attests, then checks for updates over mutual TLS (at --rate for --duration)

Output: per operation the count, rate, latency p50/p90/p99/max and errors by kind.
Point it only at a service you run: it is a load generator.`,
		Example: `  sphere sim --devices 500 --scenario storm --concurrency 64`,
		Args:    cobra.NoArgs,
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
			rep, err := sim.Run(cmd.Context(), cfg)
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
				fmt.Fprintf(a.stdout, "\n%d devices, set up in %s; %d hold a valid certificate.\n", rep.Devices, rep.Setup.Round(time.Millisecond), rep.Certified)
			}
			return nil
		},
	}
	fl := cmd.Flags()
	fl.IntVar(&cfg.Devices, "devices", 100, "number of virtual devices")
	fl.StringVar(&cfg.Scenario, "scenario", sim.ScenarioStorm, "storm, renewal or update-check")
	fl.IntVar(&cfg.Concurrency, "concurrency", 0, "operations in flight (default 4 per CPU)")
	fl.Float64Var(&cfg.Rate, "rate", 0, "operations per second for renewal and update-check (0: as fast as concurrency allows)")
	fl.DurationVar(&cfg.Duration, "duration", 0, "keep going round the fleet this long (0: once)")
	fl.StringVar(&cfg.Tenant, "tenant", "", "tenant to set the fleet up in (default: the selected one)")
	fl.BoolVar(&cfg.Reuse, "reuse-connections", false, "keep each device's TLS connections between its operations (default: new TLS for every operation)")
	fl.StringVar(&cfg.Dir, "dir", "", "where the devices keep their keys (default: a temporary directory)")
	return cmd
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1fms", float64(d)/float64(time.Millisecond)) }
