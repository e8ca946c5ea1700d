package rot

// The shared root-of-trust tests also run against swtpm, a software TPM
// that labs reach over a socket ("tcp:HOST:PORT"), started by the test on
// a loopback port. Without swtpm they skip, unless SPHERE_TEST_SWTPM=1
// (CI) makes that a failure.

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

func init() {
	impls = append(impls, impl{name: "swtpm", newDevice: swtpmDevice})
}

// freePort asks the kernel for a free loopback port.
func freePort(t *testing.T) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func swtpmDevice(t *testing.T) func() RootOfTrust {
	t.Helper()
	if _, err := exec.LookPath("swtpm"); err != nil {
		if os.Getenv("SPHERE_TEST_SWTPM") != "" {
			t.Fatal("swtpm is not installed (apt-get install swtpm swtpm-tools) and SPHERE_TEST_SWTPM is set")
		}
		t.Skip("swtpm is not installed (apt-get install swtpm swtpm-tools); set SPHERE_TEST_SWTPM=1 to make this a failure")
	}
	stateDir := t.TempDir()
	port := freePort(t)
	cmd := exec.Command("swtpm", "socket", "--tpm2", "--tpmstate", "dir="+stateDir,
		"--server", fmt.Sprintf("type=tcp,port=%d,bindaddr=127.0.0.1", port),
		"--ctrl", fmt.Sprintf("type=tcp,port=%d,bindaddr=127.0.0.1", freePort(t)),
		"--flags", "not-need-init,startup-clear")
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("start swtpm: %v", err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	for deadline := time.Now().Add(10 * time.Second); ; {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("swtpm did not listen on %s: %v", addr, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	keys := filepath.Join(t.TempDir(), "keys")
	return func() RootOfTrust {
		t.Helper()
		r, err := OpenTPM(TPMConfig{StateDir: keys, Device: "tcp:" + addr})
		if err != nil {
			t.Fatalf("OpenTPM over swtpm: %v", err)
		}
		t.Cleanup(func() { r.Close() })
		return r
	}
}
