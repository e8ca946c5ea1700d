package sandbox

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"

	"github.com/landlock-lsm/go-landlock/landlock"
	llsys "github.com/landlock-lsm/go-landlock/landlock/syscall"
	"golang.org/x/sys/unix"
)

// Init runs the compartment's init when this process was started by
// Command, and returns at once otherwise. Call it first thing in main and
// in TestMain of any test that starts compartments.
func Init() {
	if len(os.Args) == 0 || os.Args[0] != initArg0 {
		return
	}
	err := runInit()
	fmt.Fprintf(os.Stderr, "sandbox: compartment setup failed: %v\n", err)
	os.Exit(ExitSetup)
}

// runInit sets up the compartment, starts the app and then never returns:
// it exits with the app's status. It returns only setup errors.
//
// Everything that restricts the app (no_new_privs, Landlock, seccomp) is
// applied to this goroutine's locked thread and inherited by the app forked
// from it; init's other threads stay as they were and are out of the app's
// reach (another uid, ptrace denied).
func runInit() error {
	runtime.LockOSThread()
	specFile := os.NewFile(3, "spec")
	data, err := io.ReadAll(io.NewSectionReader(specFile, 0, 1<<24))
	specFile.Close()
	if err != nil {
		return fmt.Errorf("reading the spec: %w", err)
	}
	var cs childSpec
	if err := json.Unmarshal(data, &cs); err != nil {
		return fmt.Errorf("reading the spec: %w", err)
	}
	if err := setupMounts(&cs); err != nil {
		return err
	}
	if cs.OwnUTS { // never rename the device itself
		if err := unix.Sethostname([]byte("sphere-app")); err != nil {
			return fmt.Errorf("setting the host name: %w", err)
		}
	}
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("no_new_privs: %w", err)
	}
	if cs.Landlock {
		if err := applyLandlock(&cs); err != nil {
			return fmt.Errorf("landlock: %w", err)
		}
	}
	if cs.Seccomp {
		filter, err := seccompFilter("")
		if err == nil {
			err = loadSeccomp(filter)
		}
		if err != nil {
			return err
		}
	}
	sigs := make(chan os.Signal, 16)
	signal.Notify(sigs, unix.SIGTERM, unix.SIGINT, unix.SIGHUP, unix.SIGQUIT, unix.SIGUSR1, unix.SIGUSR2)
	pid, err := syscall.ForkExec(cs.Entry, cs.Args, &syscall.ProcAttr{
		Dir: cs.ImageDir, Env: cs.Env, Files: []uintptr{0, 1, 2},
		Sys: &syscall.SysProcAttr{
			Credential: &syscall.Credential{Uid: cs.UID, Gid: cs.GID, Groups: []uint32{}},
			Pdeathsig:  unix.SIGKILL,
		},
	})
	if err != nil {
		return fmt.Errorf("starting %s: %w", cs.Args[0], err)
	}
	go func() {
		for sig := range sigs {
			_ = unix.Kill(pid, sig.(syscall.Signal))
		}
	}()
	// As PID 1 of the namespace, init inherits every orphan: reap them all
	// until the app itself exits, then exit with its status (the kernel
	// then kills whatever the app left behind).
	for {
		var ws unix.WaitStatus
		p, err := unix.Wait4(-1, &ws, 0, nil)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return fmt.Errorf("waiting for the app: %w", err)
		}
		if p != pid {
			continue
		}
		switch {
		case ws.Exited():
			os.Exit(ws.ExitStatus())
		case ws.Signaled():
			os.Exit(128 + int(ws.Signal()))
		}
	}
}

// setupMounts makes the compartment's mounts private, gives it its own
// /proc (only its own processes), makes the image read-only and mounts the
// storage image.
func setupMounts(cs *childSpec) error {
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return fmt.Errorf("making mounts private: %w", err)
	}
	if err := unix.Mount("proc", "/proc", "proc", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""); err != nil {
		return fmt.Errorf("mounting /proc: %w", err)
	}
	if err := unix.Mount(cs.ImageDir, cs.ImageDir, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		return fmt.Errorf("binding the image: %w", err)
	}
	if err := unix.Mount("", cs.ImageDir, "", unix.MS_BIND|unix.MS_REMOUNT|unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NODEV, ""); err != nil {
		return fmt.Errorf("making the image read-only: %w", err)
	}
	if cs.StorageImage != "" {
		if err := mountStorage(cs.StorageImage, cs.StorageDir); err != nil {
			return fmt.Errorf("mounting storage: %w", err)
		}
	}
	return hideShared(cs)
}

func hideShared(cs *childSpec) error {
	var needed []string
	for _, list := range [][]string{{cs.ImageDir, cs.StorageDir, cs.StorageImage}, cs.Devices, cs.RuntimeDirs, runtimeFiles, runtimeData} {
		for _, p := range list {
			if p == "" {
				continue
			}
			if r, err := filepath.EvalSymlinks(p); err == nil {
				p = r
			}
			needed = append(needed, p)
		}
	}
	hidden := map[string]bool{}
	for _, d := range SharedDirs {
		r, err := filepath.EvalSymlinks(d)
		if err != nil || hidden[r] {
			continue
		}
		if fi, err := os.Stat(r); err != nil || !fi.IsDir() {
			continue
		}
		if slices.ContainsFunc(needed, func(p string) bool { return p == r || strings.HasPrefix(p, r+"/") }) {
			continue
		}
		if err := unix.Mount("tmpfs", r, "tmpfs", unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "size=4k,mode=0755"); err != nil {
			return fmt.Errorf("hiding %s: %w", r, err)
		}
		hidden[r] = true
	}
	return nil
}

// readOnly is reading files and listing directories, without execute.
const readOnly = llsys.AccessFSReadFile | llsys.AccessFSReadDir

// applyLandlock restricts the calling thread (and so the app forked from it)
// to: read and execute the image and runtime libraries; read the runtime
// files, certificates and its own /proc; read and write its storage, the
// harmless devices and its declared devices; bind only its declared TCP
// ports; no signals or abstract unix sockets outside the compartment.
func applyLandlock(cs *childSpec) error {
	cfg := landlock.Config{HandledAccessFS: landlock.V11.HandledAccessFS, Scoped: landlock.V11.Scoped}
	cfg.HandledAccessNet = llsys.AccessNetBindTCP
	rules := []landlock.Rule{
		landlock.RODirs(cs.ImageDir),
		landlock.RODirs(cs.RuntimeDirs...).IgnoreIfMissing(),
		landlock.ROFiles(runtimeFiles...).IgnoreIfMissing(),
		landlock.PathAccess(readOnly, runtimeData...).IgnoreIfMissing(),
		landlock.PathAccess(readOnly, "/proc"),
		landlock.RWFiles(commonDevices...).WithIoctlDev().IgnoreIfMissing(),
	}
	if cs.StorageDir != "" {
		rules = append(rules, landlock.RWDirs(cs.StorageDir))
	}
	for _, d := range cs.Devices {
		fi, err := os.Stat(d)
		switch {
		case err != nil:
			return fmt.Errorf("declared device: %w", err)
		case fi.IsDir():
			rules = append(rules, landlock.RWDirs(d))
		default:
			rules = append(rules, landlock.RWFiles(d).WithIoctlDev())
		}
	}
	for _, p := range cs.TCPPorts {
		rules = append(rules, landlock.BindTCP(p))
	}
	fd, flags, err := cfg.BestEffort().NewRulesetFD(rules...)
	if err != nil {
		return err
	}
	if fd < 0 {
		return nil
	}
	defer unix.Close(fd)
	if _, _, e := unix.Syscall(unix.SYS_LANDLOCK_RESTRICT_SELF, uintptr(fd), uintptr(flags), 0); e != 0 {
		return fmt.Errorf("landlock_restrict_self: %w", e)
	}
	return nil
}
