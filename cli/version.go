package cli

import (
	"fmt"
	"runtime"
	"runtime/debug"

	"github.com/spf13/cobra"
)

// versionCommand is in every build, the agent-only one too.
func (a *app) versionCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the sphere version",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			v := map[string]string{"version": Version, "go": runtime.Version(), "platform": runtime.GOOS + "/" + runtime.GOARCH}
			if bi, ok := debug.ReadBuildInfo(); ok {
				for _, s := range bi.Settings {
					switch s.Key {
					case "vcs.revision":
						v["commit"] = s.Value
					case "vcs.modified":
						v["modified"] = s.Value
					}
				}
			}
			if a.output == "json" {
				return a.show(v, nil, nil)
			}
			fmt.Fprintf(a.stdout, "sphere %s (%s, %s", v["version"], v["go"], v["platform"])
			if c := v["commit"]; c != "" {
				fmt.Fprintf(a.stdout, ", commit %.12s", c)
				if v["modified"] == "true" {
					fmt.Fprint(a.stdout, "+dirty")
				}
			}
			fmt.Fprintln(a.stdout, ")")
			return nil
		},
	}
}
