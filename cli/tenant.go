//go:build !agentonly

package cli

import (
	"net/url"

	"github.com/spf13/cobra"

	"github.com/opensphere/sphere"
	"github.com/opensphere/sphere/api"
	"github.com/opensphere/sphere/client"
)

func (a *app) tenantCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "tenant", Short: "Create, list, show, rename and select tenants"}
	cmd.AddCommand(a.tenantCreate(), a.tenantList(), a.tenantShow(), a.tenantUpdate(), a.tenantSelect())
	return cmd
}

func (a *app) showTenants(tenants []sphere.Tenant, selected string) error {
	rows := make([][]string, len(tenants))
	for i, t := range tenants {
		mark := ""
		if t.ID == selected {
			mark = "*"
		}
		rows[i] = []string{mark, t.Name, t.ID, ts(t.CreatedAt)}
	}
	return a.show(tenants, []string{"", "NAME", "ID", "CREATED"}, rows)
}

func (a *app) showTenant(t sphere.Tenant) error {
	return a.showFields(t, [][2]string{{"Name", t.Name}, {"ID", t.ID}, {"Created", ts(t.CreatedAt)}, {"Updated", ts(t.UpdatedAt)}})
}

func (a *app) tenantCreate() *cobra.Command {
	var name string
	cmd := &cobra.Command{
		Use:   "create",
		Short: "Create a tenant (operators only); you become its Administrator",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, _, err := a.client()
			if err != nil {
				return err
			}
			var t sphere.Tenant
			if err := c.Do(cmd.Context(), "POST", "/api/v1/tenants", nil, api.CreateTenant{Name: name}, &t); err != nil {
				return err
			}
			return a.showTenant(t)
		},
	}
	cmd.Flags().StringVar(&name, "name", "", "tenant name: 1 to 50 letters, digits and spaces")
	requireFlags(cmd, "name")
	return cmd
}

func (a *app) tenantList() *cobra.Command {
	var name string
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List the tenants you hold a role in (every tenant, for an operator); * marks the selected one",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, cfg, err := a.client()
			if err != nil {
				return err
			}
			q := url.Values{}
			if name != "" {
				q.Set("name", name)
			}
			ts, err := listAll[sphere.Tenant](cmd.Context(), c, "/api/v1/tenants", q)
			if err != nil {
				return err
			}
			return a.showTenants(ts, cfg.Tenant)
		},
	}
	cmd.Flags().StringVar(&name, "name", "", "only tenants whose name contains this")
	return cmd
}

func (a *app) tenantShow() *cobra.Command {
	return a.tenantFlag(&cobra.Command{
		Use:   "show",
		Short: "Show the selected tenant (or --tenant)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.tenantCall(cmd.Context(), func(c *client.Client, tp string) error {
				var t sphere.Tenant
				if err := c.Do(cmd.Context(), "GET", tp, nil, nil, &t); err != nil {
					return err
				}
				return a.showTenant(t)
			})
		},
	})
}

func (a *app) tenantUpdate() *cobra.Command {
	var name string
	cmd := a.tenantFlag(&cobra.Command{
		Use:   "update",
		Short: "Rename the selected tenant (or --tenant); needs Administrator",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.tenantCall(cmd.Context(), func(c *client.Client, tp string) error {
				var t sphere.Tenant
				if err := c.Do(cmd.Context(), "PATCH", tp, nil, api.UpdateTenant{Name: name}, &t); err != nil {
					return err
				}
				return a.showTenant(t)
			})
		},
	})
	cmd.Flags().StringVar(&name, "name", "", "new tenant name")
	requireFlags(cmd, "name")
	return cmd
}

func (a *app) tenantSelect() *cobra.Command {
	var tenant string
	cmd := &cobra.Command{
		Use:   "select",
		Short: "Choose the tenant that later commands act in",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, cfg, err := a.client()
			if err != nil {
				return err
			}
			var t sphere.Tenant
			if err := c.Do(cmd.Context(), "GET", "/api/v1/tenants/"+url.PathEscape(tenant), nil, nil, &t); err != nil {
				return err
			}
			cfg.Tenant = t.ID
			path, err := a.configFile()
			if err != nil {
				return err
			}
			if err := saveConfig(path, cfg); err != nil {
				return err
			}
			a.note("Selected tenant %q (%s).", t.Name, t.ID)
			if a.output == "json" {
				return a.show(t, nil, nil)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&tenant, "tenant", "", "tenant name or id")
	requireFlags(cmd, "tenant")
	return cmd
}
