//go:build !agentonly

package cli

import (
	"net/url"
	"time"

	"github.com/spf13/cobra"

	"github.com/opensphere/sphere"
	"github.com/opensphere/sphere/api"
)

func (a *app) tokenCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "token", Short: "Create, list and revoke your own API tokens"}
	cmd.AddCommand(a.tokenCreate(), a.tokenList(), a.tokenRevoke())
	return cmd
}

func (a *app) tokenCreate() *cobra.Command {
	var name string
	var expires time.Duration
	cmd := &cobra.Command{
		Use:     "create",
		Short:   "Create an API token for yourself; the secret is printed once",
		Example: `  sphere token create --name ci --expires-in 720h`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, _, err := a.client()
			if err != nil {
				return err
			}
			in := api.CreateToken{Name: name, ExpiresInHours: int(expires.Hours())}
			if expires > 0 && in.ExpiresInHours == 0 {
				in.ExpiresInHours = 1
			}
			var out api.NewToken
			if err := c.Do(cmd.Context(), "POST", "/api/v1/me/tokens", nil, in, &out); err != nil {
				return err
			}
			if a.output == "json" {
				return a.show(out, nil, nil)
			}
			a.note("Token %s (%s), shown only this once:\n\n  %s\n", out.Token.Name, out.Token.ID, out.Secret)
			return nil
		},
	}
	cmd.Flags().StringVar(&name, "name", "", "label for the token")
	cmd.Flags().DurationVar(&expires, "expires-in", 0, "lifetime, e.g. 720h; 0 never expires")
	requireFlags(cmd, "name")
	return cmd
}

func (a *app) tokenList() *cobra.Command {
	return &cobra.Command{
		Use:   "list",
		Short: "List your API tokens (never their secrets)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, _, err := a.client()
			if err != nil {
				return err
			}
			toks, err := listAll[sphere.Token](cmd.Context(), c, "/api/v1/me/tokens", nil)
			if err != nil {
				return err
			}
			rows := make([][]string, len(toks))
			for i, t := range toks {
				rows[i] = []string{t.Name, t.ID, ts(t.CreatedAt), tsPtr(t.ExpiresAt)}
			}
			return a.show(toks, []string{"NAME", "ID", "CREATED", "EXPIRES"}, rows)
		},
	}
}

func (a *app) tokenRevoke() *cobra.Command {
	var id string
	cmd := &cobra.Command{
		Use:   "revoke",
		Short: "Revoke one of your API tokens",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, _, err := a.client()
			if err != nil {
				return err
			}
			if err := c.Do(cmd.Context(), "DELETE", "/api/v1/me/tokens/"+url.PathEscape(id), nil, nil, nil); err != nil {
				return err
			}
			a.note("Revoked token %s.", id)
			return nil
		},
	}
	cmd.Flags().StringVar(&id, "token", "", "token id, from sphere token list")
	requireFlags(cmd, "token")
	return cmd
}
