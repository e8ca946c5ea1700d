//go:build !unix

package supervisor

import "os/exec"

func prepare(*exec.Cmd)                    {}
func signalTerm(cmd *exec.Cmd)             { cmd.Process.Kill() }
func signalKill(cmd *exec.Cmd)             { cmd.Process.Kill() }
func exitInfo(cmd *exec.Cmd) (int, string) { return cmd.ProcessState.ExitCode(), "" }
