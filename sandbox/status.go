package sandbox

import (
	"fmt"
	"strings"
	"text/tabwriter"
)

// Names of the protections Probe reports, in the order it reports them.
const (
	ProtUID           = "uid separation"
	ProtNoNewPrivs    = "no_new_privs"
	ProtLandlockFS    = "landlock filesystem"
	ProtDevices       = "device files"
	ProtLandlockTCP   = "tcp server ports"
	ProtUDPPorts      = "udp server ports"
	ProtLandlockScope = "landlock ipc scopes"
	ProtUnixSockets   = "unix sockets"
	ProtSeccomp       = "seccomp filter"
	ProtMountNS       = "mount namespace"
	ProtPIDNS         = "pid namespace"
	ProtIPCNS         = "ipc namespace"
	ProtUTSNS         = "uts namespace"
	ProtNetNS         = "network namespace"
	ProtNetworkEgress = "network egress"
	ProtStorageQuota  = "storage quota"
)

// Protection is one protection of the compartment and whether this kernel
// and system give it.
type Protection struct {
	Name   string `json:"name"`
	Active bool   `json:"active"`
	// Detail says how it is enforced when active and why not when inactive.
	Detail string `json:"detail"`
}

// Status is what Probe found: every protection, active or not.
type Status struct {
	// LandlockABI is the kernel's Landlock ABI version, 0 when absent.
	LandlockABI int          `json:"landlock_abi"`
	Protections []Protection `json:"protections"`
}

// Active reports whether the named protection is active.
func (s Status) Active(name string) bool {
	for _, p := range s.Protections {
		if p.Name == name {
			return p.Active
		}
	}
	return false
}

// Missing returns the protections that are not active.
func (s Status) Missing() []Protection {
	var m []Protection
	for _, p := range s.Protections {
		if !p.Active {
			m = append(m, p)
		}
	}
	return m
}

// String formats the status as a table: protection, active or MISSING, and
// the detail.
func (s Status) String() string {
	var b strings.Builder
	w := tabwriter.NewWriter(&b, 0, 4, 2, ' ', 0)
	fmt.Fprintf(w, "PROTECTION\tSTATE\tDETAIL\n")
	for _, p := range s.Protections {
		state := "active"
		if !p.Active {
			state = "MISSING"
		}
		fmt.Fprintf(w, "%s\t%s\t%s\n", p.Name, state, p.Detail)
	}
	w.Flush()
	return b.String()
}

func (s *Status) add(name string, active bool, format string, args ...any) {
	s.Protections = append(s.Protections, Protection{Name: name, Active: active, Detail: fmt.Sprintf(format, args...)})
}
