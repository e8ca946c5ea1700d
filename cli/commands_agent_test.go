//go:build agentonly

package cli

import (
	"bytes"
	"strings"
	"testing"
)

// TestAgentOnlyCommands: the device build has the agent and version
// commands and refuses the service's and the admin CLI's with a clear error.
func TestAgentOnlyCommands(t *testing.T) {
	run := func(args ...string) (string, error) {
		var out, errOut bytes.Buffer
		err := Run(t.Context(), args, strings.NewReader(""), &out, &errOut)
		return out.String() + errOut.String(), err
	}
	for _, c := range []struct{ name, want string }{{"agent", "Run the device agent"}, {"version", "sphere dev"}} {
		args := []string{c.name}
		if c.name == "agent" {
			args = append(args, "--help")
		}
		if out, err := run(args...); err != nil || !strings.Contains(out, c.want) {
			t.Errorf("sphere %s: %v, output %q; want it to contain %q", strings.Join(args, " "), err, out, c.want)
		}
	}
	for _, cmd := range []string{"serve", "login", "device", "image-package", "sim", "admin"} {
		out, err := run(cmd)
		if err == nil || !strings.Contains(out, `unknown command "`+cmd+`"`) {
			t.Errorf("sphere %s in the agentonly build: %v, %q; want an unknown command error", cmd, err, out)
		}
	}
}
