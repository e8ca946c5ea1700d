//go:build !linux

package sandbox

import (
	"errors"
	"os/exec"
	"runtime"
)

var errUnsupported = errors.New("sandbox: app compartments need Linux (Landlock, seccomp, namespaces); this is " + runtime.GOOS)

// Init does nothing outside Linux.
func Init() {}

// Probe reports every protection as missing outside Linux.
func Probe(mkfs string) Status {
	var s Status
	for _, p := range []string{ProtUID, ProtNoNewPrivs, ProtLandlockFS, ProtDevices, ProtLandlockTCP, ProtUDPPorts,
		ProtLandlockScope, ProtUnixSockets, ProtSeccomp, ProtMountNS, ProtPIDNS, ProtIPCNS, ProtUTSNS, ProtNetNS, ProtNetworkEgress, ProtStorageQuota} {
		s.add(p, false, "%v", errUnsupported)
	}
	return s
}

// Command refuses outside Linux: there is nothing to enforce a compartment
// with.
func (s *Sandbox) Command(spec Spec) (*exec.Cmd, func(), error) {
	return nil, nil, errUnsupported
}
