package sandbox

import (
	"testing"

	"github.com/elastic/go-seccomp-bpf/arch"
)

// TestSeccompFilterArches checks that every denied syscall exists on at
// least one of the agent's architectures (a typo would silently allow it)
// and that the filter assembles for each.
func TestSeccompFilterArches(t *testing.T) {
	for _, name := range deniedSyscalls {
		found := false
		for _, a := range []string{"amd64", "arm64", "arm"} {
			info, err := arch.GetInfo(a)
			if err != nil {
				t.Fatal(err)
			}
			_, ok := info.SyscallNames[name]
			found = found || ok
		}
		if !found {
			t.Errorf("denied syscall %q exists on no supported architecture", name)
		}
	}
	for _, a := range []string{"amd64", "arm64", "arm"} {
		if _, err := seccompFilter(a); err != nil {
			t.Errorf("%s: %v", a, err)
		}
	}
}
