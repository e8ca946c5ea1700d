// Package childtest runs one test of the current test binary again in a
// child process, for tests that kill a process in the middle of its writes
// (SIGKILL, as a power cut would stop it) and then check what it left on
// disk. The test tells the child from the parent by an environment
// variable that only the child has.
package childtest

import (
	"io"
	"os"
	"os/exec"
	"regexp"
	"testing"
)

// Start starts the current test binary running only the test named test,
// with env ("KEY=value") added to this process's environment and the
// child's standard error on this process's, and returns the child and its
// standard output.
func Start(t testing.TB, test string, env ...string) (*exec.Cmd, io.Reader) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^"+regexp.QuoteMeta(test)+"$", "-test.count=1", "-test.v=false")
	cmd.Env = append(os.Environ(), env...)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	return cmd, out
}
