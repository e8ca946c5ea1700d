//go:build !agentonly

package cli

import (
	"net/url"

	"github.com/spf13/cobra"

	"github.com/opensphere/sphere"
	"github.com/opensphere/sphere/api"
	"github.com/opensphere/sphere/client"
)

func (a *app) roleCommand() *cobra.Command {
	cmd := a.tenantFlag(&cobra.Command{
		Use:   "role",
		Short: "Give users roles in the tenant: Administrator, Contributor (no deletes) or Reader",
	})
	cmd.AddCommand(a.roleAdd(), a.roleList(), a.roleRemove())
	return cmd
}

func (a *app) roleAdd() *cobra.Command {
	var in api.AddRole
	var role string
	cmd := &cobra.Command{
		Use:   "add",
		Short: "Give a user a role in the tenant (needs Administrator)",
		Long: `Give a user a role in the tenant, replacing any role it held there. A user that
does not exist yet is created, and its first API token is printed once: hand it
to that person, who logs in with it and can make more with ` + "`sphere token create`" + `.`,
		Example: `  sphere role add --user alice@example.com --role Contributor`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			in.Role = sphere.Role(role)
			return a.tenantCall(cmd.Context(), func(c *client.Client, tp string) error {
				var out api.RoleAdded
				if err := c.Do(cmd.Context(), "POST", tp+"/roles", nil, in, &out); err != nil {
					return err
				}
				if a.output == "json" {
					return a.show(out, nil, nil)
				}
				a.note("%s is now %s.", out.Assignment.UserName, out.Assignment.Role)
				if out.Secret != "" {
					a.note("New user %s: its API token, shown only this once:\n\n  %s\n", out.Assignment.UserName, out.Secret)
				}
				return nil
			})
		},
	}
	cmd.Flags().StringVar(&in.User, "user", "", "user name (letters, digits and . _ @ + -)")
	cmd.Flags().StringVar(&role, "role", "", "Administrator, Contributor or Reader")
	requireFlags(cmd, "user", "role")
	return cmd
}

func (a *app) roleList() *cobra.Command {
	return &cobra.Command{
		Use:   "list",
		Short: "List the tenant's users and their roles",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.tenantCall(cmd.Context(), func(c *client.Client, tp string) error {
				rs, err := listAll[sphere.RoleAssignment](cmd.Context(), c, tp+"/roles", nil)
				if err != nil {
					return err
				}
				rows := make([][]string, len(rs))
				for i, r := range rs {
					rows[i] = []string{r.UserName, string(r.Role), ts(r.CreatedAt)}
				}
				return a.show(rs, []string{"USER", "ROLE", "SINCE"}, rows)
			})
		},
	}
}

func (a *app) roleRemove() *cobra.Command {
	var user string
	cmd := &cobra.Command{
		Use:   "remove",
		Short: "Take a user's role in the tenant away (needs Administrator; the last Administrator stays)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.tenantCall(cmd.Context(), func(c *client.Client, tp string) error {
				if err := c.Do(cmd.Context(), "DELETE", tp+"/roles/"+url.PathEscape(user), nil, nil, nil); err != nil {
					return err
				}
				a.note("Removed %s's role.", user)
				return nil
			})
		},
	}
	cmd.Flags().StringVar(&user, "user", "", "user name")
	requireFlags(cmd, "user")
	return cmd
}
