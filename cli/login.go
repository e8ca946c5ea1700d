//go:build !agentonly

package cli

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/opensphere/sphere/api"
	"github.com/opensphere/sphere/client"
)

func (a *app) loginCommand() *cobra.Command {
	var cfg Config
	cmd := &cobra.Command{
		Use:   "login",
		Short: "Save the service address and an API token for the other commands",
		Long: `Check a token against the service and save it, with the service address, in the
CLI config file (mode 0600). If the token's user holds a role in exactly one
tenant, that tenant is selected.

The self-signed certificate of a default ` + "`sphere serve`" + ` is in
sphere-data/tls/server.crt: pass it with --ca-file. --insecure skips
certificate checks altogether and is only for a first look in a lab.`,
		Example: `  sphere login --server https://127.0.0.1:8443 --ca-file sphere-data/tls/server.crt --token sph_...`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := client.New(client.Config{Server: cfg.Server, Token: cfg.Token, CAFile: cfg.CAFile, Insecure: cfg.Insecure})
			if err != nil {
				return err
			}
			var me api.Me
			if err := c.Do(cmd.Context(), "GET", "/api/v1/me", nil, nil, &me); err != nil {
				return fmt.Errorf("login failed: %w", err)
			}
			path, err := a.configFile()
			if err != nil {
				return err
			}
			// Keep the tenant selected before if this user still holds a
			// role there; otherwise select the only tenant, if just one.
			if old, err := loadConfig(path); err == nil {
				for _, r := range me.Roles {
					if r.TenantID == old.Tenant {
						cfg.Tenant = old.Tenant
					}
				}
			}
			if cfg.Tenant == "" && len(me.Roles) == 1 {
				cfg.Tenant = me.Roles[0].TenantID
			}
			if err := saveConfig(path, &cfg); err != nil {
				return err
			}
			kind := "user"
			if me.User.Operator {
				kind = "operator"
			}
			a.note("Logged in to %s as %s (%s). Saved to %s.", cfg.Server, me.User.Name, kind, path)
			for _, r := range me.Roles {
				sel := ""
				if r.TenantID == cfg.Tenant {
					sel = " (selected)"
				}
				a.note("  %s in tenant %q%s", r.Role, r.TenantName, sel)
			}
			if a.output == "json" {
				return a.show(me, nil, nil)
			}
			return nil
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&cfg.Server, "server", "", "service URL, e.g. https://127.0.0.1:8443")
	fl.StringVar(&cfg.Token, "token", "", "API token (sph_...)")
	fl.StringVar(&cfg.CAFile, "ca-file", "", "PEM file with the service's certificate or its CA")
	fl.BoolVar(&cfg.Insecure, "insecure", false, "do not verify the service's certificate (lab use only)")
	requireFlags(cmd, "server", "token")
	return cmd
}
