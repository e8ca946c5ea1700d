package sandbox

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// initArg0 marks the re-executed program as a compartment's init.
const initArg0 = "sphere-sandbox-init"

// childSpec is what the compartment's init needs, passed in a memfd on
// file descriptor 3.
type childSpec struct {
	App          string
	Entry        string   // host path of the program
	Args         []string // argv, argv[0] included
	Env          []string
	UID, GID     uint32
	ImageDir     string
	StorageDir   string // "" without MutableStorage
	StorageImage string // "" without a quota
	Devices      []string
	RuntimeDirs  []string
	TCPPorts     []uint16
	Landlock     bool
	Seccomp      bool
	OwnUTS       bool // in a UTS namespace of its own
}

// Command returns the command that runs the app in its compartment, not yet
// started; the caller sets Stdin, Stdout and Stderr, starts and waits for it,
// and then calls release to remove the host state (network rules) the app
// needed. release is safe to call more than once and also when the command
// never started.
//
// The app runs as spec.UID/GID with no groups, in new mount, PID, IPC and
// UTS namespaces (and network namespace when it declares no network use),
// with no_new_privs, Landlock and seccomp, as far as Probe found them. The
// process Command starts is the compartment's init: it forwards SIGTERM,
// SIGINT, SIGHUP, SIGQUIT, SIGUSR1 and SIGUSR2 to the app, reaps orphans,
// and exits with the app's exit code (128+N when signal N killed it), or
// ExitSetup when the compartment could not be set up.
func (s *Sandbox) Command(spec Spec) (cmd *exec.Cmd, release func(), err error) {
	if err := spec.check(); err != nil {
		return nil, nil, err
	}
	if !s.status.Active(ProtUID) {
		return nil, nil, fmt.Errorf("sandbox: app %s: the agent is not root, so it cannot run an app as its own uid", spec.ComponentID)
	}
	m := spec.Manifest
	entry, err := entryPath(spec.ImageDir, m.EntryPoint)
	if err != nil {
		return nil, nil, fmt.Errorf("sandbox: app %s: %w", spec.ComponentID, err)
	}
	devices, err := s.cfg.Board.Devices(m.Capabilities)
	if err != nil {
		return nil, nil, fmt.Errorf("sandbox: app %s: %w", spec.ComponentID, err)
	}
	cs := childSpec{
		App: spec.ComponentID, Entry: entry, Args: append([]string{m.EntryPoint}, m.CmdArgs...), Env: spec.Env,
		UID: spec.UID, GID: spec.GID, ImageDir: spec.ImageDir, Devices: devices, RuntimeDirs: s.cfg.RuntimeDirs,
		Landlock: s.status.Active(ProtLandlockFS), Seccomp: s.status.Active(ProtSeccomp),
	}
	if cs.Env == nil {
		cs.Env = []string{}
	}
	for _, p := range m.Capabilities.AllowedTcpServerPorts {
		cs.TCPPorts = append(cs.TCPPorts, uint16(p))
	}
	if m.Capabilities.MutableStorage != nil {
		cs.StorageDir = spec.StorageDir
		if cs.StorageImage, err = s.prepareStorage(&spec); err != nil {
			return nil, nil, err
		}
	}

	var flags uintptr
	for _, ns := range []struct {
		prot string
		flag uintptr
	}{{ProtMountNS, unix.CLONE_NEWNS}, {ProtPIDNS, unix.CLONE_NEWPID}, {ProtIPCNS, unix.CLONE_NEWIPC}, {ProtUTSNS, unix.CLONE_NEWUTS}} {
		if s.status.Active(ns.prot) {
			flags |= ns.flag
		}
	}
	cs.OwnUTS = flags&unix.CLONE_NEWUTS != 0
	if flags&unix.CLONE_NEWNS == 0 {
		return nil, nil, fmt.Errorf("sandbox: app %s: no mount namespace, so no private /proc or storage mount", spec.ComponentID)
	}
	// An app that declares no network use gets an empty network namespace;
	// otherwise (or without network namespaces) nftables rules on its uid
	// allow only what it declares, which for such an app is nothing.
	var eg *egress
	switch {
	case !usesNetwork(m) && s.status.Active(ProtNetNS):
		flags |= unix.CLONE_NEWNET
	case s.status.Active(ProtNetworkEgress):
		if eg, err = s.startEgress(&spec); err != nil {
			return nil, nil, err
		}
	default:
		s.log.Error("sandbox: network egress NOT restricted for this app", "app", spec.ComponentID)
	}

	specFile, err := writeSpec(&cs)
	if err == nil {
		cmd = initCommand(specFile, flags, spec.ComponentID)
	}
	release = sync.OnceFunc(func() {
		if specFile != nil {
			specFile.Close()
		}
		if eg != nil {
			if err := eg.close(); err != nil {
				s.log.Error("sandbox: removing network rules", "app", spec.ComponentID, "err", err)
			}
		}
	})
	if err != nil {
		release()
		return nil, nil, fmt.Errorf("sandbox: app %s: %w", spec.ComponentID, err)
	}
	return cmd, release, nil
}

// entryPath returns the host path of the entry point, which must be an
// executable regular file inside the image even after following symlinks.
func entryPath(imageDir, entryPoint string) (string, error) {
	root, err := filepath.EvalSymlinks(imageDir)
	if err != nil {
		return "", fmt.Errorf("image dir: %w", err)
	}
	p, err := filepath.EvalSymlinks(filepath.Join(root, entryPoint))
	if err != nil {
		return "", fmt.Errorf("EntryPoint %s: %w", entryPoint, err)
	}
	if !strings.HasPrefix(p, root+"/") {
		return "", fmt.Errorf("EntryPoint %s leads outside the image (to %s)", entryPoint, p)
	}
	fi, err := os.Stat(p)
	if err != nil {
		return "", err
	}
	if !fi.Mode().IsRegular() || fi.Mode().Perm()&0o111 == 0 {
		return "", fmt.Errorf("EntryPoint %s is not an executable file (%v)", entryPoint, fi.Mode())
	}
	return p, nil
}

func writeSpec(cs *childSpec) (*os.File, error) {
	data, err := json.Marshal(cs)
	if err != nil {
		return nil, err
	}
	fd, err := unix.MemfdCreate("sphere-sandbox-spec", unix.MFD_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("memfd_create: %w", err)
	}
	f := os.NewFile(uintptr(fd), "sphere-sandbox-spec")
	if _, err := f.Write(data); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// initCommand re-executes this program as the compartment's init, through
// /proc/self/exe, which still works after an update replaced the file.
func initCommand(specFile *os.File, flags uintptr, app string) *exec.Cmd {
	return &exec.Cmd{
		Path:       "/proc/self/exe",
		Args:       []string{initArg0, app},
		Env:        []string{},
		ExtraFiles: []*os.File{specFile},
		// If the agent dies, its apps die with it rather than run on
		// unsupervised. The signal comes when the starting OS thread exits,
		// so start compartments from goroutines that do not LockOSThread.
		SysProcAttr: &syscall.SysProcAttr{Cloneflags: flags, Pdeathsig: syscall.SIGKILL},
	}
}
