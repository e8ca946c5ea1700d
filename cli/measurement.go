//go:build !agentonly

package cli

import (
	"net/url"

	"github.com/spf13/cobra"

	"github.com/opensphere/sphere"
	"github.com/opensphere/sphere/api"
	"github.com/opensphere/sphere/client"
)

func (a *app) measurementCommand() *cobra.Command {
	cmd := a.tenantFlag(&cobra.Command{
		Use:   "measurement",
		Short: "The software the tenant allows its devices to run (agent binary and configuration)",
		Long: `Attestation checks every measurement in a device's event log against this
allowlist: an unknown one refuses the device, a deprecated one makes it stale
(no certificate; it may still fetch updates). ` + "`sphere agent measurements`" + ` on a
device prints what it measures.`,
	})
	cmd.AddCommand(a.measurementAllow(), a.measurementList(), a.measurementRemove())
	return cmd
}

func (a *app) measurementAllow() *cobra.Command {
	var in api.AllowMeasurement
	cmd := &cobra.Command{
		Use:     "allow",
		Short:   "Allow (or with --status deprecated, deprecate) a measurement (needs Contributor)",
		Example: `  sphere measurement allow --type agent --digest 9f86d0... --name "sphere 1.0.0"`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.tenantCall(cmd.Context(), func(c *client.Client, tp string) error {
				var m sphere.AllowedMeasurement
				if err := c.Do(cmd.Context(), "POST", tp+"/measurements", nil, in, &m); err != nil {
					return err
				}
				return a.showFields(m, [][2]string{{"ID", m.ID}, {"Type", m.Type}, {"Digest", m.Digest}, {"Name", orDash(m.Name)}, {"Status", m.Status}})
			})
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&in.Type, "type", "", "agent or config")
	fl.StringVar(&in.Digest, "digest", "", "SHA-256 of the measured content, 64 hex characters")
	fl.StringVar(&in.Name, "name", "", "a label")
	fl.StringVar(&in.Status, "status", "allowed", "allowed or deprecated")
	requireFlags(cmd, "type", "digest")
	return cmd
}

func (a *app) measurementList() *cobra.Command {
	return &cobra.Command{
		Use:   "list",
		Short: "List the allowlist",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.tenantCall(cmd.Context(), func(c *client.Client, tp string) error {
				ms, err := listAll[sphere.AllowedMeasurement](cmd.Context(), c, tp+"/measurements", nil)
				if err != nil {
					return err
				}
				rows := make([][]string, len(ms))
				for i, m := range ms {
					rows[i] = []string{m.ID, m.Type, m.Status, orDash(m.Name), m.Digest}
				}
				return a.show(ms, []string{"ID", "TYPE", "STATUS", "NAME", "SHA-256"}, rows)
			})
		},
	}
}

func (a *app) measurementRemove() *cobra.Command {
	var id string
	cmd := &cobra.Command{
		Use:   "remove",
		Short: "Remove a measurement from the allowlist (needs Administrator)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.tenantCall(cmd.Context(), func(c *client.Client, tp string) error {
				if err := c.Do(cmd.Context(), "DELETE", tp+"/measurements/"+url.PathEscape(id), nil, nil, nil); err != nil {
					return err
				}
				a.note("Removed measurement %s.", id)
				return nil
			})
		},
	}
	cmd.Flags().StringVar(&id, "id", "", "measurement id, from sphere measurement list")
	requireFlags(cmd, "id")
	return cmd
}
