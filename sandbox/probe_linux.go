package sandbox

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"

	"github.com/google/nftables"
	"golang.org/x/sys/unix"
)

// Probe reports which protections this kernel and system give an app, each
// with how it is enforced or why it is missing. mkfs is the mkfs.ext4
// program ("" means PATH's).
func Probe(mkfs string) Status {
	var s Status
	root := os.Geteuid() == 0
	if root {
		s.add(ProtUID, true, "each app runs as its own uid and gid with no supplementary groups")
	} else {
		s.add(ProtUID, false, "the agent is not root (euid %d), so it cannot switch an app to its own uid; run the agent as root", os.Geteuid())
	}
	if _, err := unix.PrctlRetInt(unix.PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0); err == nil {
		s.add(ProtNoNewPrivs, true, "set before exec: setuid binaries and file capabilities give an app nothing")
	} else {
		s.add(ProtNoNewPrivs, false, "prctl(PR_GET_NO_NEW_PRIVS): %v (kernel older than 3.5)", err)
	}

	abi, llErr := landlockABI()
	s.LandlockABI = abi
	switch {
	case llErr != nil:
		s.add(ProtLandlockFS, false, "%v", llErr)
		s.add(ProtDevices, false, "needs Landlock: every app can open every device file its uid may")
	default:
		s.add(ProtLandlockFS, true, "Landlock ABI %d: read and execute only the app image and runtime libraries, write only the storage dir", abi)
		s.add(ProtDevices, true, "Landlock: only /dev/null, zero, full, random, urandom and the declared, board-mapped device files")
	}
	if abi >= 4 {
		s.add(ProtLandlockTCP, true, "Landlock ABI %d: bind only AllowedTcpServerPorts", abi)
	} else {
		s.add(ProtLandlockTCP, false, "Landlock ABI %d < 4 cannot restrict TCP bind: apps may listen on any unprivileged TCP port", abi)
	}
	s.add(ProtUDPPorts, false, "not restricted: an app may receive on any unprivileged UDP port; nftables lets it answer only from declared ports or to AllowedConnections (Landlock restricts UDP from ABI 10, this kernel has %d, and the sandbox does not use it yet)", abi)
	if abi >= 6 {
		s.add(ProtLandlockScope, true, "Landlock ABI %d: no signals to and no abstract unix sockets of processes outside the compartment", abi)
	} else {
		s.add(ProtLandlockScope, false, "Landlock ABI %d < 6: apps may signal and reach abstract unix sockets of other processes of the same uid", abi)
	}
	if abi >= 9 {
		s.add(ProtUnixSockets, true, "Landlock ABI %d: no connections to pathname unix sockets", abi)
	} else {
		s.add(ProtUnixSockets, false, "Landlock ABI %d < 9 cannot restrict connecting to pathname unix sockets: /run, /tmp, /var/tmp and /dev/shm are hidden from apps, but an app may use a socket file elsewhere that its uid may write (such as /dev/log)", abi)
	}

	if err := unix.Prctl(unix.PR_SET_SECCOMP, unix.SECCOMP_MODE_FILTER, 0, 0, 0); errors.Is(err, unix.EFAULT) {
		s.add(ProtSeccomp, true, "denies ptrace, mount, kexec, bpf, modules, reboot, swap, keyrings, perf, namespaces, io_uring, foreign syscall ABIs; socket families and protocols limited")
	} else {
		s.add(ProtSeccomp, false, "kernel without seccomp filters (CONFIG_SECCOMP_FILTER): %v", err)
	}

	for _, ns := range []struct{ prot, file, what string }{
		{ProtMountNS, "mnt", "private mounts: its own /proc, storage mounted only for it, image read-only"},
		{ProtPIDNS, "pid", "the app sees only its own processes; a small init reaps and forwards signals"},
		{ProtIPCNS, "ipc", "no System V IPC or POSIX queues shared with other processes"},
		{ProtUTSNS, "uts", "its own host name"},
		{ProtNetNS, "net", "an app that declares no network use gets an empty network namespace"},
	} {
		switch _, err := os.Stat("/proc/self/ns/" + ns.file); {
		case err != nil:
			s.add(ns.prot, false, "kernel without %s namespaces: %v", ns.file, err)
		case !root:
			s.add(ns.prot, false, "the agent is not root, so it cannot create %s namespaces", ns.file)
		default:
			s.add(ns.prot, true, "%s", ns.what)
		}
	}

	if err := probeNftables(); err != nil {
		s.add(ProtNetworkEgress, false, "nftables unavailable (%v): apps that declare network use can connect anywhere", err)
	} else {
		s.add(ProtNetworkEgress, true, "nftables table inet %s: per-app output chain on the app's uid allows only AllowedConnections (and DNS servers)", nftTable)
	}

	if err := probeQuota(mkfs); err != nil {
		s.add(ProtStorageQuota, false, "%v: MutableStorage is a plain directory and an app can fill the disk", err)
	} else {
		s.add(ProtStorageQuota, true, "each app's storage is an ext4 image of its declared size, loop-mounted only in its mount namespace")
	}
	return s
}

// landlockABI returns the kernel's Landlock ABI version.
func landlockABI() (int, error) {
	v, _, e := unix.Syscall(unix.SYS_LANDLOCK_CREATE_RULESET, 0, 0, unix.LANDLOCK_CREATE_RULESET_VERSION)
	switch {
	case e == unix.ENOSYS:
		return 0, errors.New("kernel without Landlock (needs 5.13 and CONFIG_SECURITY_LANDLOCK)")
	case e == unix.EOPNOTSUPP:
		return 0, errors.New("Landlock is built in but not enabled: add landlock to the lsm= boot parameter")
	case e != 0:
		return 0, fmt.Errorf("landlock_create_ruleset: %v", e)
	}
	return int(v), nil
}

func probeNftables() error {
	if os.Geteuid() != 0 {
		return errors.New("the agent is not root")
	}
	c, err := nftables.New()
	if err != nil {
		return err
	}
	_, err = c.ListTablesOfFamily(nftables.TableFamilyINet)
	return err
}

func probeQuota(mkfs string) error {
	if _, err := findMkfs(mkfs); err != nil {
		return err
	}
	if _, err := os.Stat("/dev/loop-control"); err != nil {
		return fmt.Errorf("no loop devices (%v)", err)
	}
	fs, err := os.ReadFile("/proc/filesystems")
	if err != nil || !strings.Contains(string(fs), "\text4\n") {
		return errors.New("kernel without ext4")
	}
	if os.Geteuid() != 0 {
		return errors.New("the agent is not root, so it cannot mount")
	}
	return nil
}

func findMkfs(mkfs string) (string, error) {
	if mkfs == "" {
		mkfs = "mkfs.ext4"
	}
	p, err := exec.LookPath(mkfs)
	if err != nil {
		return "", fmt.Errorf("%s not found (install e2fsprogs)", mkfs)
	}
	return p, nil
}
