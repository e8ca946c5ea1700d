//go:build !windows

package agent

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/opensphere/sphere/bootloader"
	"github.com/opensphere/sphere/image"
	"github.com/opensphere/sphere/rot"
	"github.com/opensphere/sphere/supervisor"
)

const testOS = "0c2d0e4f-1a2b-4c3d-8e4f-5a6b7c8d9e0f"

// The power-loss test runs the device in a child process (this test
// binary again, TestPowerLossDevice), which a failpoint kills with SIGKILL
// at one step boundary of an OS install. The parent then plays the
// bootloader at power-on (bootloader.File.Boot), checks that the booted
// slot holds exactly one of the images, whole, and restarts the device
// until it runs the target.

// Environment of the child.
const (
	envChild    = "SPHERE_TEST_POWERLOSS_DEVICE"
	envServer   = "SPHERE_TEST_POWERLOSS_SERVER"
	envCA       = "SPHERE_TEST_POWERLOSS_CA"
	envFail     = "SPHERE_TEST_POWERLOSS_FAILPOINT"
	envFailN    = "SPHERE_TEST_POWERLOSS_FAILPOINT_N"
	envApps     = "SPHERE_TEST_POWERLOSS_APPS"
	exitReboot  = 3
	osImageSize = 3 << 20
)

// TestPowerLossDevice is the device side; it only runs as the child.
func TestPowerLossDevice(t *testing.T) {
	if os.Getenv(envChild) == "" {
		t.Skip("the device process of TestUpdatePowerLoss")
	}
	dir := os.Getenv(envChild)
	fail := func(format string, args ...any) {
		fmt.Fprintf(os.Stderr, format+"\n", args...)
		os.Exit(1)
	}
	r, err := rot.OpenSoft(dir)
	if err != nil {
		fail("rot: %v", err)
	}
	caPEM, err := os.ReadFile(os.Getenv(envCA))
	if err != nil {
		fail("ca: %v", err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	a, err := New(Config{Server: os.Getenv(envServer), StateDir: dir, RoT: r, ServerRoots: pool})
	if err != nil {
		fail("agent: %v", err)
	}
	bl, err := bootloader.NewFile(bootloader.Config{StateFile: filepath.Join(dir, "boot.json")})
	if err != nil {
		fail("bootloader: %v", err)
	}
	point, n := os.Getenv(envFail), 0
	want, _ := strconv.Atoi(os.Getenv(envFailN))
	var apps AppRunner
	if os.Getenv(envApps) != "" {
		sup := supervisor.New(supervisor.Config{})
		defer sup.Close()
		apps = sup
	}
	u, err := NewUpdater(a, UpdateConfig{Bootloader: bl, Apps: apps, HealthWindow: 200 * time.Millisecond,
		Slots:  map[bootloader.Slot]string{bootloader.SlotA: filepath.Join(dir, "slot-a"), bootloader.SlotB: filepath.Join(dir, "slot-b")},
		Reboot: func() error { os.Exit(exitReboot); return nil },
		Failpoint: func(name string) {
			if name == point {
				if n++; n == want {
					syscall.Kill(os.Getpid(), syscall.SIGKILL)
				}
			}
		}})
	if err != nil {
		fail("updater: %v", err)
	}
	ctx := context.Background()
	if err := a.Measure(); err != nil {
		fail("measure: %v", err)
	}
	if _, err := a.Attest(ctx); err != nil {
		fail("attest: %v", err)
	}
	u.StartApps()
	if err := u.Check(ctx); err != nil {
		fail("check: %v", err)
	}
}

// cutPoint is the n-th pass of a failpoint.
type cutPoint struct {
	name string
	n    int
}

// withFirstInstall puts a first install without a cut before cuts, so
// that every cut interrupts an update from one version to the next.
func withFirstInstall(cuts []cutPoint) []cutPoint { return append([]cutPoint{{}}, cuts...) }

// cutPoints are where the install is killed: every step boundary, one
// in the middle of writing the slot (after its first MiB), and some inside
// the health check and commit after the trial boot.
var cutPoints = []cutPoint{
	{"checked", 1}, {"begun", 1}, {"downloaded", 1}, {"verified", 1}, {"slot-write", 2}, {"slot-written", 1},
	{"written", 1}, {"armed-bootloader", 1}, {"armed", 1}, {"reboot", 1}, {"healthy", 1},
	{"bootloader-committed", 1}, {"counter-raised", 1},
}

// osPayload is version v of a 3 MiB OS image: the same random base with
// 64 KiB of it rewritten in place per version.
func osPayload(base []byte, v int) []byte {
	p := append([]byte(nil), base...)
	rng := rand.New(rand.NewPCG(uint64(v), 7))
	off := (v * 257 << 10) % (len(p) - 64<<10)
	for i := off; i < off+64<<10; i++ {
		p[i] = byte(rng.Uint32())
	}
	return p
}

func packOS(t testing.TB, signer *ecdsa.PrivateKey, v int, payload []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	md := image.Metadata{Kind: image.KindOS, ComponentID: testOS, Name: "sphere-os", Version: fmt.Sprintf("%d.0", v),
		SecurityVersion: uint32(v), BuildTime: time.Now()}
	if _, err := image.Pack(&buf, md, bytes.NewReader(payload), signer); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestUpdatePowerLoss(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the device process dozens of times")
	}
	svc := startService(t)
	pd := newPowerLossDevice(t, svc)
	dir := pd.dir
	bl, err := bootloader.NewFile(bootloader.Config{StateFile: filepath.Join(dir, "boot.json")})
	if err != nil {
		t.Fatal(err)
	}
	pub := svc.publisher(t)
	base := make([]byte, osImageSize)
	for i := range base {
		base[i] = byte(rand.Uint32())
	}
	factory := osPayload(base, 0)
	os.WriteFile(filepath.Join(dir, "slot-a"), factory, 0o600)
	payloadSHA := map[string]int{sum(factory): 0}

	run := func(point string, n int) (killed, reboot bool) { return pd.run(t, point, n, false) }
	// boot powers the device on and checks that the booted slot holds one
	// of the old and new images, whole; it returns that version.
	boot := func(old, new int) int {
		t.Helper()
		s, err := bl.Boot()
		if err != nil {
			t.Fatal(err)
		}
		data, _ := os.ReadFile(filepath.Join(dir, "slot-"+string(s)))
		if len(data) < osImageSize {
			t.Fatalf("booted slot %s holds %d bytes, not a whole image", s, len(data))
		}
		v, ok := payloadSHA[sum(data[:osImageSize])]
		if !ok || (v != old && v != new) {
			t.Fatalf("booted slot %s holds neither v%d nor v%d (a mix?): known %v, version %d", s, old, new, ok, v)
		}
		return v
	}
	// converge boots and runs the device until it runs version want.
	converge := func(old, want int, point string, n int) {
		t.Helper()
		killed := point == ""
		for range 8 {
			boot(old, want)
			k, reboot := false, false
			if !killed {
				k, reboot = run(point, n)
				killed = k
			} else {
				_, reboot = run("", 0)
			}
			if k || reboot {
				continue
			}
			if !killed {
				t.Fatalf("v%d: the device never reached failpoint %q #%d", want, point, n)
			}
			if got := boot(old, want); got != want {
				t.Fatalf("the device settled on v%d, want v%d", got, want)
			}
			j, err := readJournal(filepath.Join(dir, "update", journalFile))
			if err != nil || j.Txn != nil || j.Components[testOS].SecurityVersion != uint32(want) {
				t.Fatalf("journal after v%d: %+v, %v", want, j, err)
			}
			return
		}
		t.Fatalf("v%d: the device did not converge (killed at %s: %v)", want, point, killed)
	}

	old := 0
	for i, cut := range withFirstInstall(cutPoints) {
		v := i + 1
		payload := osPayload(base, v)
		payloadSHA[sum(payload)] = v
		svc.deploy(t, "Field Test", packOS(t, pub, v, payload))
		t.Logf("v%d -> v%d, power cut at %q #%d", old, v, cut.name, cut.n)
		converge(old, v, cut.name, cut.n)
		old = v
	}
	r, err := rot.OpenSoft(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if c, _ := r.Counter(); c != uint64(old) {
		t.Errorf("anti-rollback counter %d, want %d", c, old)
	}
}

// powerLossDevice is an enrolled device whose agent runs in child processes.
type powerLossDevice struct {
	svc         *service
	dir, caFile string
}

func newPowerLossDevice(t *testing.T, svc *service) *powerLossDevice {
	dir := t.TempDir()
	r, err := rot.OpenSoft(dir)
	if err != nil {
		t.Fatal(err)
	}
	d := svc.newDevice(t, r, dir)
	svc.enroll(t, d, "Field Test")
	r.Close()
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: svc.rootCert.Raw}), 0o600)
	return &powerLossDevice{svc: svc, dir: dir, caFile: caFile}
}

// run starts the device once (one boot), killed at the n-th pass of
// failpoint point, and returns how it ended.
func (pd *powerLossDevice) run(t *testing.T, point string, n int, apps bool) (killed, reboot bool) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestPowerLossDevice$", "-test.v")
	cmd.Env = append(os.Environ(), envChild+"="+pd.dir, envServer+"="+pd.svc.url, envCA+"="+pd.caFile,
		envFail+"="+point, envFailN+"="+strconv.Itoa(n))
	if apps {
		cmd.Env = append(cmd.Env, envApps+"=1")
	}
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return false, false
	case errors.As(err, &ee) && ee.ExitCode() == exitReboot:
		return false, true
	case errors.As(err, &ee) && ee.Sys().(syscall.WaitStatus).Signal() == syscall.SIGKILL:
		return true, false
	}
	t.Fatalf("device failed: %v\n%s", err, out)
	return false, false
}

func sum(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// appCutPoints are where an app install is killed.
var appCutPoints = []cutPoint{
	{"checked", 1}, {"begun", 1}, {"downloaded", 1}, {"verified", 1}, {"slot-write", 1}, {"slot-written", 1},
	{"written", 1}, {"switched", 1}, {"healthy", 1},
}

// TestUpdatePowerLossApp kills an app install at each of its step
// boundaries. After every cut the journal reads, the committed app's slot
// holds one whole version (never part of one, never a mix), and the next
// starts converge to the new version.
func TestUpdatePowerLossApp(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the device process dozens of times")
	}
	svc := startService(t)
	pd := newPowerLossDevice(t, svc)
	pub := svc.publisher(t)
	script := func(v int) string { return fmt.Sprintf("exec sleep 3 # v%d %s", v, bytes.Repeat([]byte("x"), 1000*v)) }
	// check says which version the committed app slot holds, whole.
	check := func(old, new int) int {
		t.Helper()
		j, err := readJournal(filepath.Join(pd.dir, "update", journalFile))
		if err != nil {
			t.Fatalf("journal after a power cut: %v", err)
		}
		c, ok := j.Components[testApp]
		if !ok {
			if old != 0 {
				t.Fatalf("no app committed; v%d was", old)
			}
			return 0
		}
		got, err := os.ReadFile(filepath.Join(pd.dir, "update", appsDir, testApp, c.ImageID, "bin", "app"))
		if err != nil {
			t.Fatalf("committed app %s: %v", c.Version, err)
		}
		for _, v := range []int{old, new} {
			if string(got) == "#!/bin/sh\n"+script(v)+"\n" && c.Version == fmt.Sprintf("%d.0.0", v) {
				return v
			}
		}
		t.Fatalf("committed app slot %s holds neither v%d nor v%d whole", c.Version, old, new)
		return 0
	}
	old := 0
	for i, cut := range withFirstInstall(appCutPoints) {
		v := i + 1
		svc.deploy(t, "Field Test", packApp(t, pub, fmt.Sprintf("%d.0.0", v), uint32(v), script(v), false))
		t.Logf("app v%d -> v%d, power cut at %q #%d", old, v, cut.name, cut.n)
		killed := cut.name == ""
		converged := false
		for range 6 {
			k, _ := pd.run(t, map[bool]string{false: cut.name}[killed], cut.n, true)
			killed = killed || k
			if got := check(old, v); !k && got == v {
				converged = true
				break
			}
		}
		if !killed || !converged {
			t.Fatalf("app v%d: killed %v, converged %v", v, killed, converged)
		}
		old = v
	}
}
