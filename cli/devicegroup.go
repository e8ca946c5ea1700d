//go:build !agentonly

package cli

import (
	"context"
	"fmt"
	"net/url"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/opensphere/sphere"
	"github.com/opensphere/sphere/api"
	"github.com/opensphere/sphere/client"
)

func (a *app) deviceGroupCommand() *cobra.Command {
	cmd := a.tenantFlag(&cobra.Command{
		Use:   "device-group",
		Short: "Manage device groups: OS feed, update policy and hardware requirement for the devices in them",
		Long: `Device groups belong to a product and hold its devices. Name a group by its id
or as "Product/Group", e.g. "Coffee Maker/Field Test".`,
	})
	cmd.AddCommand(a.groupCreate(), a.groupList(), a.groupShow(), a.groupUpdate(), a.groupDelete())
	return cmd
}

// resolveGroup turns "Product/Group" into a device group id; an id is
// returned as it is.
func resolveGroup(ctx context.Context, c *client.Client, tp, ref string) (string, error) {
	prod, name, ok := strings.Cut(ref, "/")
	if !ok {
		return ref, nil
	}
	q := url.Values{"product": {prod}, "name": {name}}
	var p sphere.Page[sphere.DeviceGroup]
	if err := c.Do(ctx, "GET", tp+"/device-groups", q, nil, &p); err != nil {
		return "", err
	}
	if len(p.Items) == 0 {
		return "", fmt.Errorf("product %q has no device group %q", prod, name)
	}
	return p.Items[0].ID, nil
}

// productNames maps the tenant's product ids to names, for tables.
func productNames(ctx context.Context, c *client.Client, tp string) (map[string]string, error) {
	ps, err := listAll[sphere.Product](ctx, c, tp+"/products", nil)
	if err != nil {
		return nil, err
	}
	names := make(map[string]string, len(ps))
	for _, p := range ps {
		names[p.ID] = p.Name
	}
	return names, nil
}

// groupNames maps the tenant's device group ids to "Product/Group", for
// tables.
func groupNames(ctx context.Context, c *client.Client, tp string) (map[string]string, error) {
	prods, err := productNames(ctx, c, tp)
	if err != nil {
		return nil, err
	}
	gs, err := listAll[sphere.DeviceGroup](ctx, c, tp+"/device-groups", nil)
	if err != nil {
		return nil, err
	}
	names := make(map[string]string, len(gs))
	for _, g := range gs {
		names[g.ID] = prods[g.ProductID] + "/" + g.Name
	}
	return names, nil
}

func (a *app) showGroups(ctx context.Context, c *client.Client, tp string, gs []sphere.DeviceGroup) error {
	if a.output == "json" {
		return a.show(gs, nil, nil)
	}
	names, err := productNames(ctx, c, tp)
	if err != nil {
		return err
	}
	rows := make([][]string, len(gs))
	for i, g := range gs {
		rows[i] = []string{names[g.ProductID], g.Name, g.ID, string(g.OSFeed), string(g.UpdatePolicy), strconv.FormatBool(g.RequireHardwareRoT)}
	}
	return a.show(gs, []string{"PRODUCT", "NAME", "ID", "OS FEED", "UPDATE POLICY", "HARDWARE ROT"}, rows)
}

func (a *app) showGroup(g sphere.DeviceGroup) error {
	return a.showFields(g, [][2]string{{"Name", g.Name}, {"ID", g.ID}, {"Product ID", g.ProductID},
		{"Description", orDash(g.Description)}, {"OS feed", string(g.OSFeed)}, {"Update policy", string(g.UpdatePolicy)},
		{"Requires hardware root of trust", strconv.FormatBool(g.RequireHardwareRoT)},
		{"Created", ts(g.CreatedAt)}, {"Updated", ts(g.UpdatedAt)}})
}

func (a *app) groupCreate() *cobra.Command {
	var in api.CreateDeviceGroup
	cmd := &cobra.Command{
		Use:     "create",
		Short:   "Create a device group in a product (needs Contributor)",
		Example: `  sphere device-group create --product "Coffee Maker" --name "Beta" --os-feed RetailEval --update-policy UpdateAll`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.tenantCall(cmd.Context(), func(c *client.Client, tp string) error {
				var g sphere.DeviceGroup
				if err := c.Do(cmd.Context(), "POST", tp+"/device-groups", nil, in, &g); err != nil {
					return err
				}
				return a.showGroup(g)
			})
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&in.Product, "product", "", "product name or id")
	fl.StringVar(&in.Name, "name", "", "1 to 50 letters, digits and spaces; unique in the product")
	fl.StringVar(&in.Description, "description", "", "up to 256 characters")
	fl.StringVar(&in.OSFeed, "os-feed", "", "Retail (default) or RetailEval (gets OS releases early)")
	fl.StringVar(&in.UpdatePolicy, "update-policy", "", "UpdateAll (default), No3rdPartyAppUpdates or NoUpdates")
	fl.BoolVar(&in.RequireHardwareRoT, "require-hardware-rot", false, "refuse devices whose root of trust is software")
	requireFlags(cmd, "product", "name")
	return cmd
}

func (a *app) groupList() *cobra.Command {
	var product string
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List device groups",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.tenantCall(cmd.Context(), func(c *client.Client, tp string) error {
				q := url.Values{}
				if product != "" {
					q.Set("product", product)
				}
				gs, err := listAll[sphere.DeviceGroup](cmd.Context(), c, tp+"/device-groups", q)
				if err != nil {
					return err
				}
				return a.showGroups(cmd.Context(), c, tp, gs)
			})
		},
	}
	cmd.Flags().StringVar(&product, "product", "", "only this product's groups (name or id)")
	return cmd
}

func (a *app) groupShow() *cobra.Command {
	var ref string
	cmd := &cobra.Command{
		Use:   "show",
		Short: "Show a device group",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.tenantCall(cmd.Context(), func(c *client.Client, tp string) error {
				id, err := resolveGroup(cmd.Context(), c, tp, ref)
				if err != nil {
					return err
				}
				var g sphere.DeviceGroup
				if err := c.Do(cmd.Context(), "GET", tp+"/device-groups/"+url.PathEscape(id), nil, nil, &g); err != nil {
					return err
				}
				return a.showGroup(g)
			})
		},
	}
	cmd.Flags().StringVar(&ref, "device-group", "", `device group id or "Product/Group"`)
	requireFlags(cmd, "device-group")
	return cmd
}

func (a *app) groupUpdate() *cobra.Command {
	var ref, name, desc, feed, policy string
	var hw bool
	cmd := &cobra.Command{
		Use:     "update",
		Short:   "Change a device group's name, description, OS feed, update policy or hardware requirement (needs Contributor)",
		Example: `  sphere device-group update --device-group "Coffee Maker/Field Test" --update-policy NoUpdates`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var in api.UpdateDeviceGroup
			fl := cmd.Flags()
			if fl.Changed("name") {
				in.Name = &name
			}
			if fl.Changed("description") {
				in.Description = &desc
			}
			if fl.Changed("os-feed") {
				in.OSFeed = &feed
			}
			if fl.Changed("update-policy") {
				in.UpdatePolicy = &policy
			}
			if fl.Changed("require-hardware-rot") {
				in.RequireHardwareRoT = &hw
			}
			return a.tenantCall(cmd.Context(), func(c *client.Client, tp string) error {
				id, err := resolveGroup(cmd.Context(), c, tp, ref)
				if err != nil {
					return err
				}
				var g sphere.DeviceGroup
				if err := c.Do(cmd.Context(), "PATCH", tp+"/device-groups/"+url.PathEscape(id), nil, in, &g); err != nil {
					return err
				}
				return a.showGroup(g)
			})
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&ref, "device-group", "", `device group id or "Product/Group"`)
	fl.StringVar(&name, "name", "", "new name")
	fl.StringVar(&desc, "description", "", "new description")
	fl.StringVar(&feed, "os-feed", "", "Retail or RetailEval")
	fl.StringVar(&policy, "update-policy", "", "UpdateAll, No3rdPartyAppUpdates or NoUpdates")
	fl.BoolVar(&hw, "require-hardware-rot", false, "refuse devices whose root of trust is software")
	requireFlags(cmd, "device-group")
	return cmd
}

func (a *app) groupDelete() *cobra.Command {
	var ref string
	cmd := &cobra.Command{
		Use:   "delete",
		Short: "Delete an empty device group (needs Administrator)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.tenantCall(cmd.Context(), func(c *client.Client, tp string) error {
				id, err := resolveGroup(cmd.Context(), c, tp, ref)
				if err != nil {
					return err
				}
				if err := c.Do(cmd.Context(), "DELETE", tp+"/device-groups/"+url.PathEscape(id), nil, nil, nil); err != nil {
					return err
				}
				a.note("Deleted device group %s.", ref)
				return nil
			})
		},
	}
	cmd.Flags().StringVar(&ref, "device-group", "", `device group id or "Product/Group"`)
	requireFlags(cmd, "device-group")
	return cmd
}
