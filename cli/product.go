//go:build !agentonly

package cli

import (
	"net/url"

	"github.com/spf13/cobra"

	"github.com/opensphere/sphere"
	"github.com/opensphere/sphere/api"
	"github.com/opensphere/sphere/client"
)

func (a *app) productCommand() *cobra.Command {
	cmd := a.tenantFlag(&cobra.Command{
		Use:   "product",
		Short: "Manage products (device models); each gets five default device groups",
	})
	cmd.AddCommand(a.productCreate(), a.productList(), a.productShow(), a.productUpdate(), a.productDelete())
	return cmd
}

func (a *app) showProduct(p sphere.Product) error {
	return a.showFields(p, [][2]string{{"Name", p.Name}, {"ID", p.ID}, {"Description", orDash(p.Description)},
		{"Created", ts(p.CreatedAt)}, {"Updated", ts(p.UpdatedAt)}})
}

func productPath(tp, p string) string { return tp + "/products/" + url.PathEscape(p) }

func (a *app) productCreate() *cobra.Command {
	var in api.CreateProduct
	cmd := &cobra.Command{
		Use:   "create",
		Short: "Create a product with the default device groups (needs Contributor)",
		Long: `Create a product and its five default device groups: Development, Field Test,
Field Test OS Evaluation, Production and Production OS Evaluation.`,
		Example: `  sphere product create --name "Coffee Maker" --description "Model CM-1"`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.tenantCall(cmd.Context(), func(c *client.Client, tp string) error {
				var p sphere.Product
				if err := c.Do(cmd.Context(), "POST", tp+"/products", nil, in, &p); err != nil {
					return err
				}
				return a.showProduct(p)
			})
		},
	}
	cmd.Flags().StringVar(&in.Name, "name", "", "1 to 50 letters, digits and spaces; unique in the tenant")
	cmd.Flags().StringVar(&in.Description, "description", "", "up to 256 characters")
	requireFlags(cmd, "name")
	return cmd
}

func (a *app) productList() *cobra.Command {
	var name string
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List products",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.tenantCall(cmd.Context(), func(c *client.Client, tp string) error {
				q := url.Values{}
				if name != "" {
					q.Set("name", name)
				}
				ps, err := listAll[sphere.Product](cmd.Context(), c, tp+"/products", q)
				if err != nil {
					return err
				}
				rows := make([][]string, len(ps))
				for i, p := range ps {
					rows[i] = []string{p.Name, p.ID, orDash(p.Description)}
				}
				return a.show(ps, []string{"NAME", "ID", "DESCRIPTION"}, rows)
			})
		},
	}
	cmd.Flags().StringVar(&name, "name", "", "only products whose name contains this")
	return cmd
}

func (a *app) productShow() *cobra.Command {
	var product string
	cmd := &cobra.Command{
		Use:   "show",
		Short: "Show a product",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.tenantCall(cmd.Context(), func(c *client.Client, tp string) error {
				var p sphere.Product
				if err := c.Do(cmd.Context(), "GET", productPath(tp, product), nil, nil, &p); err != nil {
					return err
				}
				return a.showProduct(p)
			})
		},
	}
	cmd.Flags().StringVar(&product, "product", "", "product name or id")
	requireFlags(cmd, "product")
	return cmd
}

func (a *app) productUpdate() *cobra.Command {
	var product, name, desc string
	cmd := &cobra.Command{
		Use:   "update",
		Short: "Rename a product or change its description (needs Contributor)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var in api.UpdateProduct
			if cmd.Flags().Changed("name") {
				in.Name = &name
			}
			if cmd.Flags().Changed("description") {
				in.Description = &desc
			}
			return a.tenantCall(cmd.Context(), func(c *client.Client, tp string) error {
				var p sphere.Product
				if err := c.Do(cmd.Context(), "PATCH", productPath(tp, product), nil, in, &p); err != nil {
					return err
				}
				return a.showProduct(p)
			})
		},
	}
	cmd.Flags().StringVar(&product, "product", "", "product name or id")
	cmd.Flags().StringVar(&name, "name", "", "new name")
	cmd.Flags().StringVar(&desc, "description", "", "new description")
	requireFlags(cmd, "product")
	return cmd
}

func (a *app) productDelete() *cobra.Command {
	var product string
	cmd := &cobra.Command{
		Use:   "delete",
		Short: "Delete a product and its device groups (needs Administrator; they must hold no devices)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.tenantCall(cmd.Context(), func(c *client.Client, tp string) error {
				if err := c.Do(cmd.Context(), "DELETE", productPath(tp, product), nil, nil, nil); err != nil {
					return err
				}
				a.note("Deleted product %s.", product)
				return nil
			})
		},
	}
	cmd.Flags().StringVar(&product, "product", "", "product name or id")
	requireFlags(cmd, "product")
	return cmd
}
