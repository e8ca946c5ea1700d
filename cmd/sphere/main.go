// Command sphere is OpenSphere in one binary: the security service (sphere
// serve), the admin CLI and the device agent (sphere agent). Built with
// -tags agentonly it is the device binary, the agent alone (docs/agent.md).
// See package cli.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/opensphere/sphere/cli"
	"github.com/opensphere/sphere/sandbox"
)

func main() {
	sandbox.Init() // when started as an app compartment's init, this never returns
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := cli.Run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	if err != nil {
		os.Exit(1)
	}
}
