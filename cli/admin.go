//go:build !agentonly

package cli

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/opensphere/sphere/store"
)

func (a *app) adminCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "admin", Short: "Maintenance run on the service's own host, with direct database access"}
	var dataDir, db, user string
	recover := &cobra.Command{
		Use:   "recover-token",
		Short: "Issue a new operator token when every operator token is lost",
		Long: `Issue a new API token for an operator user, straight through the database: the way
back in when the bootstrap token and every other operator token are lost. It
needs the same --data-dir or --db as ` + "`sphere serve`" + ` and so only works for
whoever controls the service's host and database. The user is made an operator
(and created if it does not exist). The service may keep running meanwhile.`,
		Example: `  sphere admin recover-token --data-dir ./sphere-data`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			st, err := store.Open(cmd.Context(), store.Config{DSN: dsnFor(dataDir, db)})
			if err != nil {
				return err
			}
			defer st.Close()
			secret, err := st.RecoverOperator(cmd.Context(), user)
			if err != nil {
				return err
			}
			fmt.Fprintf(a.stdout, "New token for operator %q, shown only this once:\n\n  %s\n", user, secret)
			return nil
		},
	}
	recover.Flags().StringVar(&dataDir, "data-dir", "./sphere-data", "the service's data directory (SQLite)")
	recover.Flags().StringVar(&db, "db", "", "the service's database URL, if it uses PostgreSQL")
	recover.Flags().StringVar(&user, "user", "admin", "operator user name")
	cmd.AddCommand(recover)
	return cmd
}
