package sandbox_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/nftables"
	"golang.org/x/sys/unix"

	"github.com/opensphere/sphere/image"
	"github.com/opensphere/sphere/sandbox"
)

// strict is set by SPHERE_TEST_SANDBOX (CI sets it): the compartment tests
// then fail instead of skipping when not root, and every protection must be
// active but UDP ports (not implemented) and unix sockets (Landlock ABI 9,
// newer than CI's kernel).
var strict = os.Getenv("SPHERE_TEST_SANDBOX") != ""

// requireRoot skips tests that start compartments unless they run as root.
func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		msg := "starting compartments needs root (switching uid, namespaces, nftables, loop mounts); run the tests as root with SPHERE_TEST_SANDBOX=1, as CI does"
		if strict {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
}

var (
	appMu   sync.Mutex
	appBins = map[string]string{} // GOARCH: built test app
)

// testApp builds testdata/app for goarch ("" means this one), statically,
// once per test binary.
func testApp(t testing.TB, goarch string) string {
	t.Helper()
	appMu.Lock()
	defer appMu.Unlock()
	if bin, ok := appBins[goarch]; ok {
		return bin
	}
	dir, err := os.MkdirTemp("", "sandbox-app")
	if err != nil {
		t.Fatal(err)
	}
	afterAll = append(afterAll, func() { os.RemoveAll(dir) })
	bin := filepath.Join(dir, "app")
	cmd := exec.Command("go", "build", "-o", bin, "./testdata/app")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if goarch != "" {
		cmd.Env = append(cmd.Env, "GOARCH="+goarch)
	}
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building the test app: %v: %s", err, out)
	}
	appBins[goarch] = bin
	return bin
}

// openDir is a temporary directory the app uids can reach.
func openDir(t testing.TB) string {
	t.Helper()
	d := t.TempDir()
	for _, p := range []string{filepath.Dir(d), d} {
		if err := os.Chmod(p, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return d
}

func guid(t testing.TB) string {
	var b [16]byte
	rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:])
}

var nextID = struct {
	sync.Mutex
	n uint32
}{n: 41000}

// newSpec makes an app image holding the test app, with caps.
func newSpec(t testing.TB, caps image.Capabilities) sandbox.Spec {
	t.Helper()
	dir := openDir(t)
	img := filepath.Join(dir, "image")
	if err := os.MkdirAll(filepath.Join(img, "bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(testApp(t, ""))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(img, "bin", "app"), data, 0o755); err != nil {
		t.Fatal(err)
	}
	id := guid(t)
	m := &image.AppManifest{SchemaVersion: 1, Name: "test app", ComponentId: id, EntryPoint: "/bin/app", Capabilities: caps}
	nextID.Lock()
	nextID.n++
	uid := nextID.n
	nextID.Unlock()
	return sandbox.Spec{ComponentID: id, ImageDir: img, StorageDir: filepath.Join(dir, "storage"), Manifest: m, UID: uid, GID: uid}
}

// command returns the command that runs the app with args.
func command(t *testing.T, sb *sandbox.Sandbox, spec sandbox.Spec, args ...string) (*exec.Cmd, func()) {
	t.Helper()
	m := *spec.Manifest
	m.CmdArgs = args
	spec.Manifest = &m
	cmd, release, err := sb.Command(spec)
	if err != nil {
		t.Fatal(err)
	}
	return cmd, release
}

// run runs the app in its compartment with args and returns what it printed.
func run(t *testing.T, sb *sandbox.Sandbox, spec sandbox.Spec, args ...string) string {
	t.Helper()
	cmd, release := command(t, sb, spec, args...)
	defer release()
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("app %v: %v; stderr: %s", args, err, stderr.String())
	}
	return strings.TrimSpace(stdout.String())
}

// start starts the app with args and returns once it said "ready", with
// the rest of its output.
func start(t *testing.T, sb *sandbox.Sandbox, spec sandbox.Spec, args ...string) (*exec.Cmd, *bufio.Reader) {
	t.Helper()
	cmd, release := command(t, sb, spec, args...)
	t.Cleanup(release)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	r := bufio.NewReader(out)
	if line, err := r.ReadString('\n'); err != nil || line != "ready\n" {
		t.Fatalf("app said %q, %v", line, err)
	}
	return cmd, r
}

// want checks the app's output: "ok", or an error containing the text.
func want(t *testing.T, got, wantPrefix string) {
	t.Helper()
	if !strings.HasPrefix(got, wantPrefix) && !(strings.HasPrefix(wantPrefix, "error") && strings.HasPrefix(got, "error") && strings.Contains(got, strings.TrimPrefix(wantPrefix, "error: "))) {
		t.Errorf("got %q, want %q", got, wantPrefix)
	}
}

// server accepts TCP connections on addr until the test ends.
func server(t *testing.T, addr string) string {
	t.Helper()
	l, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	// The listener works for a process outside any compartment, so a
	// refusal seen by an app is the compartment's doing.
	c, err := net.DialTimeout("tcp", l.Addr().String(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	return l.Addr().String()
}

func freePort(t *testing.T) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func hostNS(t *testing.T, kind string) string {
	l, err := os.Readlink("/proc/self/ns/" + kind)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// demos show each protection at work; TestProtections runs the demo of
// every protection Probe claims, so a claim without enforcement fails.
var demos = map[string]func(t *testing.T, sb *sandbox.Sandbox){
	sandbox.ProtUID: func(t *testing.T, sb *sandbox.Sandbox) {
		spec := newSpec(t, image.Capabilities{})
		want(t, run(t, sb, spec, "id"), fmt.Sprintf("uid=%d gid=%d groups=[]", spec.UID, spec.GID))
	},
	sandbox.ProtNoNewPrivs: func(t *testing.T, sb *sandbox.Sandbox) {
		want(t, run(t, sb, newSpec(t, image.Capabilities{}), "nnp"), "1")
	},
	sandbox.ProtLandlockFS: func(t *testing.T, sb *sandbox.Sandbox) {
		spec := newSpec(t, image.Capabilities{MutableStorage: &image.MutableStorage{SizeKB: 256}})
		outside := filepath.Join(openDir(t), "x")
		os.Chmod(filepath.Dir(outside), 0o777) // only Landlock stands in the way
		want(t, run(t, sb, spec, "write", outside), "error: permission denied")
		want(t, run(t, sb, spec, "write", filepath.Join(spec.StorageDir, "x")), "ok")
		want(t, run(t, sb, spec, "read", filepath.Join(spec.StorageDir, "x")), "hello")
		want(t, run(t, sb, spec, "write", filepath.Join(spec.ImageDir, "x")), "error")
		want(t, run(t, sb, spec, "read", "/etc/hostname"), "error: permission denied")
	},
	sandbox.ProtDevices: func(t *testing.T, sb *sandbox.Sandbox) {
		dir := openDir(t)
		uart0, uart1 := filepath.Join(dir, "uart0"), filepath.Join(dir, "uart1")
		for _, p := range []string{uart0, uart1} {
			if err := unix.Mknod(p, unix.S_IFCHR|0o666, int(unix.Mkdev(1, 3))); err != nil {
				t.Fatal(err)
			}
			os.Chmod(p, 0o666)
		}
		board := &sandbox.Board{Uart: map[string]string{"ISU0": uart0, "ISU1": uart1}}
		sb = sandbox.New(sandbox.Config{Board: board})
		with := newSpec(t, image.Capabilities{Uart: []string{"ISU0"}})
		want(t, run(t, sb, with, "open", uart0), "ok")
		want(t, run(t, sb, with, "open", uart1), "error: permission denied")
		want(t, run(t, sb, with, "open", "/dev/null"), "ok")
		without := newSpec(t, image.Capabilities{})
		want(t, run(t, sb, without, "open", uart0), "error: permission denied")
	},
	sandbox.ProtLandlockTCP: func(t *testing.T, sb *sandbox.Sandbox) {
		declared, undeclared := freePort(t), freePort(t)
		spec := newSpec(t, image.Capabilities{AllowedTcpServerPorts: []int{declared}})
		want(t, run(t, sb, spec, "listen", fmt.Sprintf("127.0.0.1:%d", declared)), "ok")
		want(t, run(t, sb, spec, "listen", fmt.Sprintf("127.0.0.1:%d", undeclared)), "error: permission denied")
	},
	sandbox.ProtLandlockScope: func(t *testing.T, sb *sandbox.Sandbox) {
		name := "@sphere-sandbox-test-" + guid(t)
		l, err := net.Listen("unix", name)
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		spec := newSpec(t, image.Capabilities{AllowedConnections: []string{"127.0.0.1:1"}}) // host network namespace
		want(t, run(t, sb, spec, "unix", name), "error: operation not permitted")
	},
	sandbox.ProtUnixSockets: func(t *testing.T, sb *sandbox.Sandbox) {
		want(t, run(t, sb, newSpec(t, image.Capabilities{}), "unix", unixSocket(t, "")), "error: permission denied")
	},
	sandbox.ProtSeccomp: func(t *testing.T, sb *sandbox.Sandbox) {
		spec := newSpec(t, image.Capabilities{})
		want(t, run(t, sb, spec, "ptrace"), "error: operation not permitted")
		want(t, run(t, sb, spec, "unshare"), "error: operation not permitted")
		want(t, run(t, sb, spec, "mount", "/tmp"), "error: operation not permitted")
		want(t, run(t, sb, spec, "mptcp"), "error: protocol not supported")

		// A deny list is only as good as its ABI check: an i386 program on
		// amd64 would otherwise make the denied calls by their i386 numbers.
		if runtime.GOARCH == "amd64" {
			app386 := testApp(t, "386")
			if err := exec.Command(app386, "id").Run(); errors.Is(err, syscall.ENOEXEC) {
				t.Logf("this kernel cannot run i386 programs at all (no IA32 emulation), so there is no i386 ABI to check: %v", err)
				return
			}
			data, err := os.ReadFile(app386)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(spec.ImageDir, "bin", "app"), data, 0o755); err != nil {
				t.Fatal(err)
			}
			cmd, release := command(t, sb, spec, "id")
			defer release()
			var ee *exec.ExitError
			if err := cmd.Run(); !errors.As(err, &ee) || ee.ExitCode() != 128+int(unix.SIGSYS) {
				t.Errorf("i386 app: %v, want exit %d (killed by SIGSYS)", err, 128+int(unix.SIGSYS))
			}
		}
	},
	sandbox.ProtMountNS: func(t *testing.T, sb *sandbox.Sandbox) {
		spec := newSpec(t, image.Capabilities{})
		if got := run(t, sb, spec, "ns", "mnt"); got == hostNS(t, "mnt") || strings.HasPrefix(got, "error") {
			t.Errorf("app's mount namespace %q, host's %q", got, hostNS(t, "mnt"))
		}
		want(t, run(t, sb, spec, "mountopts", spec.ImageDir), "ro,")
	},
	sandbox.ProtPIDNS: func(t *testing.T, sb *sandbox.Sandbox) {
		// Init and the app, and no host PIDs.
		got := strings.Fields(run(t, sb, newSpec(t, image.Capabilities{}), "pids"))
		if len(got) != 2 || got[0] != "1" || got[1] == strconv.Itoa(os.Getpid()) {
			t.Errorf("app sees processes %v, want 1 (its init) and itself", got)
		}
	},
	sandbox.ProtIPCNS: func(t *testing.T, sb *sandbox.Sandbox) {
		if got := run(t, sb, newSpec(t, image.Capabilities{}), "ns", "ipc"); got == hostNS(t, "ipc") || strings.HasPrefix(got, "error") {
			t.Errorf("app's ipc namespace %q, host's %q", got, hostNS(t, "ipc"))
		}
	},
	sandbox.ProtUTSNS: func(t *testing.T, sb *sandbox.Sandbox) {
		if got := run(t, sb, newSpec(t, image.Capabilities{}), "ns", "uts"); got == hostNS(t, "uts") || strings.HasPrefix(got, "error") {
			t.Errorf("app's uts namespace %q, host's %q", got, hostNS(t, "uts"))
		}
	},
	sandbox.ProtNetNS: func(t *testing.T, sb *sandbox.Sandbox) {
		addr := server(t, "127.0.0.1:0")
		spec := newSpec(t, image.Capabilities{})
		want(t, run(t, sb, spec, "connect", addr), "error")
		if got := run(t, sb, spec, "ns", "net"); got == hostNS(t, "net") {
			t.Errorf("app without network capabilities shares the host's network namespace %s", got)
		}
	},
	sandbox.ProtNetworkEgress: func(t *testing.T, sb *sandbox.Sandbox) {
		allowed := server(t, "127.0.0.1:0")
		otherPort := server(t, "127.0.0.1:0")
		_, port, _ := net.SplitHostPort(allowed)
		otherHost := server(t, "127.0.0.2:"+port)
		spec := newSpec(t, image.Capabilities{AllowedConnections: []string{allowed}})
		want(t, run(t, sb, spec, "connect", allowed), "ok")
		want(t, run(t, sb, spec, "connect", otherPort), "error: connection refused")
		want(t, run(t, sb, spec, "connect", otherHost), "error: connection refused")
		want(t, run(t, sb, spec, "udp", otherPort), "error: operation not permitted")

		// A host name is allowed by the addresses it resolves to.
		named := sandbox.New(sandbox.Config{Lookup: func(ctx context.Context, host string) ([]netip.Addr, error) {
			if host == "service.test" {
				return []netip.Addr{netip.MustParseAddr("127.0.0.1")}, nil
			}
			return nil, errors.New("no such host")
		}})
		spec = newSpec(t, image.Capabilities{AllowedConnections: []string{"service.test:" + port}})
		want(t, run(t, named, spec, "connect", allowed), "ok")
		want(t, run(t, named, spec, "connect", otherHost), "error: connection refused")

		// Names are resolved again while the app runs.
		var answer sync.Mutex
		resolved := "127.0.0.2"
		refreshing := sandbox.New(sandbox.Config{ResolveEvery: 10 * time.Millisecond, Lookup: func(ctx context.Context, host string) ([]netip.Addr, error) {
			answer.Lock()
			defer answer.Unlock()
			return []netip.Addr{netip.MustParseAddr(resolved)}, nil
		}})
		spec = newSpec(t, image.Capabilities{AllowedConnections: []string{"service.test:" + port}})
		want(t, run(t, refreshing, spec, "connect", allowed), "error: connection refused")
		cmd, release := command(t, refreshing, spec, "dialuntil", allowed)
		defer release()
		answer.Lock()
		resolved = "127.0.0.1"
		answer.Unlock()
		if out, err := cmd.Output(); err != nil || string(out) != "ok\n" {
			t.Errorf("after the name moved to 127.0.0.1: %q, %v", out, err)
		}
		release()

		// release removed the apps' chains.
		c, err := nftables.New()
		if err != nil {
			t.Fatal(err)
		}
		chains, err := c.ListChainsOfTableFamily(nftables.TableFamilyINet)
		if err != nil {
			t.Fatal(err)
		}
		for _, ch := range chains {
			if strings.HasPrefix(ch.Name, fmt.Sprintf("app-%d", spec.UID)) {
				t.Errorf("chain %s left after release", ch.Name)
			}
		}
	},
	sandbox.ProtStorageQuota: func(t *testing.T, sb *sandbox.Sandbox) {
		spec := newSpec(t, image.Capabilities{MutableStorage: &image.MutableStorage{SizeKB: 256}})
		want(t, run(t, sb, spec, "fill", filepath.Join(spec.StorageDir, "small"), "64"), "ok")
		want(t, run(t, sb, spec, "fill", filepath.Join(spec.StorageDir, "big"), "1024"), "error: no space left on device")
		// The data persists in the image, not in the host directory.
		if ents, _ := os.ReadDir(spec.StorageDir); len(ents) != 0 {
			t.Errorf("host storage dir holds %d entries; the storage should live only in the image", len(ents))
		}
		want(t, run(t, sb, spec, "read", filepath.Join(spec.StorageDir, "small")), strings.Repeat("\x00", 8))

		// A second instance while the first runs would mount the image
		// twice: it is refused.
		first, _ := start(t, sb, spec, "wait")
		setupFails(t, sb, spec, "is in use")
		first.Process.Signal(syscall.SIGTERM)
		first.Wait()
	},
}

// unixSocket listens on a pathname unix socket anyone may connect to, so
// only the compartment can stand in an app's way; in a new directory under
// parent, or in a test directory when parent is "".
func unixSocket(t *testing.T, parent string) string {
	dir := openDir(t)
	if parent != "" {
		var err error
		if dir, err = os.MkdirTemp(parent, "sandbox-test"); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.RemoveAll(dir) })
		os.Chmod(dir, 0o755)
	}
	p := filepath.Join(dir, "sock")
	l, err := net.Listen("unix", p)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	os.Chmod(p, 0o777)
	return p
}

// missingDemos show that a protection Probe reports missing is indeed not
// enforced, so the report is not modest either.
var missingDemos = map[string]func(t *testing.T, sb *sandbox.Sandbox){
	sandbox.ProtUDPPorts: func(t *testing.T, sb *sandbox.Sandbox) {
		spec := newSpec(t, image.Capabilities{AllowedConnections: []string{"127.0.0.1:1"}})
		want(t, run(t, sb, spec, "listenudp", fmt.Sprintf("127.0.0.1:%d", freePort(t))), "ok")
	},
	sandbox.ProtUnixSockets: func(t *testing.T, sb *sandbox.Sandbox) {
		// Outside the hidden directories a socket file is reachable...
		want(t, run(t, sb, newSpec(t, image.Capabilities{}), "unix", unixSocket(t, "")), "ok")
		// ...in them, such as PostgreSQL's in /run/postgresql, it is not.
		want(t, run(t, sb, newSpec(t, image.Capabilities{}), "unix", unixSocket(t, "/run")), "error: no such file or directory")
	},
}

func TestProtections(t *testing.T) {
	requireRoot(t)
	sb := sandbox.New(sandbox.Config{})
	st := sb.Status()
	t.Logf("Landlock ABI %d\n%s", st.LandlockABI, st)
	for _, p := range st.Protections {
		t.Run(p.Name, func(t *testing.T) {
			demo := demos[p.Name]
			if !p.Active {
				demo = missingDemos[p.Name]
			}
			if !p.Active && strict && p.Name != sandbox.ProtUDPPorts && p.Name != sandbox.ProtUnixSockets {
				t.Errorf("SPHERE_TEST_SANDBOX is set but %s is missing: %s", p.Name, p.Detail)
			}
			if demo == nil {
				t.Skipf("reported %v with no demonstration here: %s", map[bool]string{true: "active", false: "missing"}[p.Active], p.Detail)
			}
			demo(t, sb)
		})
	}
}

func TestSignalsAndExit(t *testing.T) {
	requireRoot(t)
	sb := sandbox.New(sandbox.Config{})
	spec := newSpec(t, image.Capabilities{})

	cmd, out := start(t, sb, spec, "wait")
	// The app is PID 1's child in its namespace; init forwards SIGTERM.
	cmd.Process.Signal(syscall.SIGTERM)
	rest, _ := io.ReadAll(out)
	if err := cmd.Wait(); err != nil || string(rest) != "term\n" {
		t.Errorf("after SIGTERM: %q, %v", rest, err)
	}

	cmd, release := command(t, sb, spec, "exit", "7")
	defer release()
	var ee *exec.ExitError
	if err := cmd.Run(); !errors.As(err, &ee) || ee.ExitCode() != 7 {
		t.Errorf("exit 7: %v", err)
	}
}

func TestCommandRefuses(t *testing.T) {
	requireRoot(t)
	sb := sandbox.New(sandbox.Config{Board: &sandbox.Board{Uart: map[string]string{"ISU0": "/dev/null"}}})
	for _, tc := range []struct {
		name  string
		edit  func(s *sandbox.Spec)
		error string
	}{
		{"error/root uid", func(s *sandbox.Spec) { s.UID = 0 }, "must not be 0"},
		{"error/peripheral not on board", func(s *sandbox.Spec) { s.Manifest.Capabilities.Uart = []string{"ISU3"} }, `Uart "ISU3" is not on this board (the board file maps ISU0)`},
		{"error/gpio not on board", func(s *sandbox.Spec) { s.Manifest.Capabilities.Gpio = []int{4} }, "GPIO 4 is not on this board"},
		{"error/entry point escapes image", func(s *sandbox.Spec) {
			os.Remove(filepath.Join(s.ImageDir, "bin", "app"))
			os.Symlink("/bin/sh", filepath.Join(s.ImageDir, "bin", "app"))
		}, "leads outside the image"},
		{"error/entry point missing", func(s *sandbox.Spec) { s.Manifest.EntryPoint = "/bin/none" }, "no such file"},
		{"error/relative image", func(s *sandbox.Spec) { s.ImageDir = "image" }, "absolute clean path"},
		{"error/component id mismatch", func(s *sandbox.Spec) { s.ComponentID = guid(t) }, "differs from the manifest"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			spec := newSpec(t, image.Capabilities{})
			tc.edit(&spec)
			_, _, err := sb.Command(spec)
			if err == nil || !strings.Contains(err.Error(), tc.error) {
				t.Errorf("got %v, want an error containing %q", err, tc.error)
			}
		})
	}
}

func TestSetupFailureExitCode(t *testing.T) {
	requireRoot(t)
	sb := sandbox.New(sandbox.Config{Board: &sandbox.Board{Uart: map[string]string{"ISU0": "/nonexistent/uart"}}})
	setupFails(t, sb, newSpec(t, image.Capabilities{Uart: []string{"ISU0"}}), "/nonexistent/uart")
}

// setupFails checks that the compartment exits with ExitSetup and a reason
// containing why.
func setupFails(t *testing.T, sb *sandbox.Sandbox, spec sandbox.Spec, why string) {
	t.Helper()
	cmd, release := command(t, sb, spec)
	defer release()
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	var ee *exec.ExitError
	if err := cmd.Run(); !errors.As(err, &ee) || ee.ExitCode() != sandbox.ExitSetup || !strings.Contains(stderr.String(), why) {
		t.Errorf("got %v, stderr %q; want exit %d saying %q", err, stderr.String(), sandbox.ExitSetup, why)
	}
}

// BenchmarkStart measures starting an app in its compartment and waiting
// for it to exit, with and without network rules and a storage mount.
func BenchmarkStart(b *testing.B) {
	if os.Geteuid() != 0 {
		b.Skip("needs root")
	}
	sb := sandbox.New(sandbox.Config{})
	for _, bc := range []struct {
		name string
		caps image.Capabilities
	}{
		{"no network", image.Capabilities{}},
		{"network rules", image.Capabilities{AllowedConnections: []string{"127.0.0.1:443"}}},
		{"storage", image.Capabilities{MutableStorage: &image.MutableStorage{SizeKB: 1024}}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			spec := newSpec(b, bc.caps)
			for b.Loop() {
				cmd, release, err := sb.Command(spec)
				if err != nil {
					b.Fatal(err)
				}
				if err := cmd.Run(); err != nil {
					b.Fatal(err)
				}
				release()
			}
		})
	}
}
