//go:build agentonly

package cli

import "github.com/spf13/cobra"

// long is the root command's help in the agent-only (device) build.
const long = `OpenSphere's device runtime: this sphere was built with -tags agentonly and
has only the agent; the security service and the admin commands are in the
full build.

  sphere agent --server URL ...            attest, run apps, install updates
  sphere agent identity|measurements ...   what to register and allow
  sphere agent status|app|update-check ... ask the running agent

Every command has --help. Output is a table, or JSON with --output json.`

// commands are the device build's commands.
func (a *app) commands() []*cobra.Command {
	return []*cobra.Command{
		a.agentCommand(),
		a.versionCommand(),
	}
}
