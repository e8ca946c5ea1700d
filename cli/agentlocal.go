package cli

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/url"
	"strconv"

	"github.com/spf13/cobra"

	"github.com/opensphere/sphere/agent"
	"github.com/opensphere/sphere/localapi"
)

// defaultAdminSocket is where `sphere agent` serves its admin API.
const defaultAdminSocket = "/run/sphere-agent/admin.sock"

func adminSocketFlag(cmd *cobra.Command, p *string) {
	cmd.Flags().StringVar(p, "admin-socket", defaultAdminSocket, "the running agent's admin socket (root only)")
}

// agentStatus is `sphere agent status`.
func (a *app) agentStatus() *cobra.Command {
	var socket string
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show the running agent's state: certificate, attestation, protections, apps",
		Long: `Ask the running agent, over its admin socket (root only), for its state: the device
id, the device certificate's expiry, the last attestation, which compartment
protections this kernel enforces (and why any is missing), the apps and the
update engine.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var st localapi.Status
			if err := localapi.Call(cmd.Context(), socket, "GET", "/v1/status", &st); err != nil {
				return err
			}
			if a.output == "json" {
				return a.show(st, nil, nil)
			}
			cert := "none"
			if st.CertificateNotAfter != nil {
				cert = "valid until " + ts(*st.CertificateNotAfter)
			}
			last := orDash(st.LastAttestation)
			if st.LastAttestationReason != "" {
				last += " (" + st.LastAttestationReason + ")"
			}
			if err := a.showFields(st, [][2]string{{"Device", st.DeviceID}, {"Server", st.Server}, {"Root of trust", st.RoT},
				{"Certificate", cert}, {"Last attestation", last}}); err != nil {
				return err
			}
			fmt.Fprintln(a.stdout, "\nProtections:")
			rows := [][]string{}
			for _, p := range st.Protections {
				state := "ACTIVE"
				if !p.Active {
					state = "MISSING"
				}
				rows = append(rows, []string{p.Name, state, orDash(p.Detail)})
			}
			if err := a.show(nil, []string{"PROTECTION", "STATE", "DETAIL"}, rows); err != nil {
				return err
			}
			fmt.Fprintln(a.stdout, "\nApps:")
			if err := a.showApps(st.Apps); err != nil {
				return err
			}
			return a.showUpdate(st.Update)
		},
	}
	adminSocketFlag(cmd, &socket)
	return cmd
}

func (a *app) showApps(apps []localapi.App) error {
	rows := [][]string{}
	for _, p := range apps {
		pid := "-"
		if p.PID != 0 {
			pid = strconv.Itoa(p.PID)
		}
		rows = append(rows, []string{p.ComponentID, p.Name, p.Version, p.State, pid, tsPtr(p.StartedAt), strconv.Itoa(p.Restarts), orDash(p.LastExit)})
	}
	return a.show(apps, []string{"COMPONENT", "NAME", "VERSION", "STATE", "PID", "STARTED", "RESTARTS", "LAST EXIT"}, rows)
}

// agentApp is `sphere agent app list|start|stop|logs`.
func (a *app) agentApp() *cobra.Command {
	var socket string
	cmd := &cobra.Command{
		Use:   "app",
		Short: "List, start, stop the running agent's apps and read their output (root only)",
	}
	cmd.PersistentFlags().StringVar(&socket, "admin-socket", defaultAdminSocket, "the running agent's admin socket (root only)")
	list := &cobra.Command{
		Use: "list", Short: "List the installed apps and their state", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var apps []localapi.App
			if err := localapi.Call(cmd.Context(), socket, "GET", "/v1/apps", &apps); err != nil {
				return err
			}
			return a.showApps(apps)
		},
	}
	action := func(verb, done, short string) *cobra.Command {
		return &cobra.Command{
			Use: verb + " COMPONENT_ID", Short: short, Args: cobra.ExactArgs(1),
			RunE: func(cmd *cobra.Command, args []string) error {
				if err := localapi.Call(cmd.Context(), socket, "POST", "/v1/apps/"+url.PathEscape(args[0])+"/"+verb, nil); err != nil {
					return err
				}
				a.note("%s: %s", args[0], done)
				return nil
			},
		}
	}
	var lines int
	logs := &cobra.Command{
		Use: "logs COMPONENT_ID", Short: "Print the app's latest output (stdout and stderr)", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var out struct{ Lines []string }
			if err := localapi.Call(cmd.Context(), socket, "GET", fmt.Sprintf("/v1/apps/%s/logs?lines=%d", url.PathEscape(args[0]), lines), &out); err != nil {
				return err
			}
			if a.output == "json" {
				return a.show(out, nil, nil)
			}
			for _, l := range out.Lines {
				fmt.Fprintln(a.stdout, l)
			}
			return nil
		},
	}
	logs.Flags().IntVarP(&lines, "lines", "n", 100, "how many of the latest lines (0: all the agent keeps)")
	cmd.AddCommand(list, action("start", "started", "Start a stopped app"), action("stop", "stopped", "Stop an app; it stays stopped until started or updated"), logs)
	return cmd
}

// agentUpdateCheck is `sphere agent update-check`.
func (a *app) agentUpdateCheck() *cobra.Command {
	var socket string
	cmd := &cobra.Command{
		Use:   "update-check",
		Short: "Make the running agent check for updates now",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var res json.RawMessage
			if err := localapi.Call(cmd.Context(), socket, "POST", "/v1/update-check", &res); err != nil {
				return err
			}
			var out bytes.Buffer
			json.Indent(&out, res, "", "  ")
			fmt.Fprintln(a.stdout, out.String())
			return nil
		},
	}
	adminSocketFlag(cmd, &socket)
	return cmd
}

// showUpdate prints the update engine's part of `sphere agent status`.
func (a *app) showUpdate(raw any) error {
	if raw == nil {
		return nil
	}
	var u agent.UpdateStatus
	b, _ := json.Marshal(raw)
	if err := json.Unmarshal(b, &u); err != nil {
		return err
	}
	last := orDash(u.LastUpdate)
	if !u.LastUpdateAt.IsZero() {
		last += " at " + ts(u.LastUpdateAt)
	}
	if u.LastError != "" {
		last += ": " + u.LastError
	}
	progress := "-"
	if u.InProgress != nil {
		progress = fmt.Sprintf("%s %s %s (%s)", u.InProgress.Kind, u.InProgress.Name, u.InProgress.Version, u.Step)
	}
	fmt.Fprintln(a.stdout, "\nUpdates:")
	rows := [][]string{}
	for _, c := range u.Components {
		rows = append(rows, []string{c.Kind, c.ComponentID, c.Version, strconv.FormatUint(uint64(c.SecurityVersion), 10), c.ImageID})
	}
	if err := a.show(nil, []string{"KIND", "COMPONENT", "VERSION", "SECURITY", "IMAGE"}, rows); err != nil {
		return err
	}
	return a.showFields(u, [][2]string{{"Last update", last}, {"In progress", progress}})
}
