//go:build !agentonly

package cli

import "github.com/spf13/cobra"

// long is the root command's help in the full build.
const long = `OpenSphere gives Linux devices a hardware-rooted identity, daily attestation and
short-lived certificates, signed updates with rollback, sandboxed apps and
failure reporting, from a security service you run yourself.

  sphere serve                  run the security service (SQLite in ./sphere-data by default)
  sphere login --server URL ... point the CLI at a service
  sphere tenant|role|product|device-group|device|audit ...   manage it

Every command has --help. Output is a table, or JSON with --output json.`

// commands are the full build's commands: the service, the admin CLI,
// tooling and the agent.
func (a *app) commands() []*cobra.Command {
	return []*cobra.Command{
		a.serveCommand(),
		a.loginCommand(),
		a.tenantCommand(),
		a.roleCommand(),
		a.tokenCommand(),
		a.productCommand(),
		a.deviceGroupCommand(),
		a.deviceCommand(),
		a.auditCommand(),
		a.errorReportCommand(),
		a.caCertCommand(),
		a.measurementCommand(),
		a.agentCommand(),
		a.imagePackageCommand(),
		a.imageCommand(),
		a.deploymentCommand(),
		a.osReleaseCommand(),
		a.tufCommand(),
		a.simCommand(),
		a.adminCommand(),
		a.versionCommand(),
	}
}
