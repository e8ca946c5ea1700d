package sandbox

import (
	"fmt"
	"runtime"
	"unsafe"

	"github.com/elastic/go-seccomp-bpf/arch"
	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

// deniedSyscalls fail with EPERM in every compartment: what an app never
// needs and what would let it reach past its compartment (debugging other
// processes, the mount table, the running kernel, namespaces, keyrings,
// io_uring, whose operations bypass this filter). Names missing on an
// architecture are skipped.
var deniedSyscalls = []string{
	"ptrace", "process_vm_readv", "process_vm_writev", "kcmp", "pidfd_getfd",
	"mount", "umount2", "pivot_root", "chroot", "fsopen", "fsconfig", "fsmount", "fspick",
	"move_mount", "open_tree", "open_tree_attr", "mount_setattr",
	"kexec_load", "kexec_file_load", "reboot", "init_module", "finit_module", "delete_module",
	"bpf", "perf_event_open", "swapon", "swapoff", "acct", "quotactl", "quotactl_fd",
	"keyctl", "add_key", "request_key", "unshare", "setns",
	"io_uring_setup", "io_uring_enter", "io_uring_register",
	"userfaultfd", "lookup_dcookie", "open_by_handle_at", "name_to_handle_at",
	"settimeofday", "clock_settime", "clock_settime64", "clock_adjtime", "clock_adjtime64", "adjtimex",
	"sethostname", "setdomainname", "iopl", "ioperm", "syslog", "vhangup", "nfsservctl", "uselib", "fanotify_init",
}

// nsCloneFlags are the clone flags that make namespaces; clone with any of
// them fails with EPERM.
const nsCloneFlags = unix.CLONE_NEWNS | unix.CLONE_NEWCGROUP | unix.CLONE_NEWUTS | unix.CLONE_NEWIPC |
	unix.CLONE_NEWUSER | unix.CLONE_NEWPID | unix.CLONE_NEWNET | unix.CLONE_NEWTIME

const (
	retAllow = unix.SECCOMP_RET_ALLOW
	retKill  = unix.SECCOMP_RET_KILL_PROCESS
)

func retErrno(e unix.Errno) uint32 { return unix.SECCOMP_RET_ERRNO | uint32(e) }

// seccomp_data offsets; arguments are read as their low 32 bits, which is
// where they are on the little-endian architectures the agent runs on.
const (
	offNr   = 0
	offArch = 4
)

func offArg(i uint32) uint32 { return 16 + 8*i }

// asm is a tiny assembler with labels, so the filter reads top to bottom.
type asm struct {
	ins    []bpf.Instruction
	labels map[string]int
	jumps  map[int][2]string // instruction index: true and false targets ("" = next)
}

func (a *asm) emit(i bpf.Instruction)    { a.ins = append(a.ins, i) }
func (a *asm) label(l string)            { a.labels[l] = len(a.ins) }
func (a *asm) ret(v uint32)              { a.emit(bpf.RetConstant{Val: v}) }
func (a *asm) load(off uint32)           { a.emit(bpf.LoadAbsolute{Off: off, Size: 4}) }
func (a *asm) jeq(v uint32, t, f string) { a.jump(bpf.JumpEqual, v, t, f) }
func (a *asm) jump(c bpf.JumpTest, v uint32, t, f string) {
	a.jumps[len(a.ins)] = [2]string{t, f}
	a.emit(bpf.JumpIf{Cond: c, Val: v})
}

func (a *asm) assemble() ([]bpf.RawInstruction, error) {
	for i, tf := range a.jumps {
		j := a.ins[i].(bpf.JumpIf)
		for k, l := range tf {
			if l == "" {
				continue
			}
			to, ok := a.labels[l]
			if !ok || to <= i || to-i-1 > 255 {
				return nil, fmt.Errorf("seccomp filter: bad jump to %q", l)
			}
			if k == 0 {
				j.SkipTrue = uint8(to - i - 1)
			} else {
				j.SkipFalse = uint8(to - i - 1)
			}
		}
		a.ins[i] = j
	}
	return bpf.Assemble(a.ins)
}

// seccompFilter builds the compartment's filter for goarch ("" means the
// running one). Syscalls of any other ABI (i386 or x32 on amd64, AArch32
// on arm64) kill the process: a deny list is only as good as its ABI check.
func seccompFilter(goarch string) ([]bpf.RawInstruction, error) {
	if goarch == "" {
		goarch = runtime.GOARCH
	}
	info, err := arch.GetInfo(goarch)
	if err != nil {
		return nil, fmt.Errorf("seccomp filter: %w", err)
	}
	nr := func(name string) (uint32, bool) {
		n, ok := info.SyscallNames[name]
		return uint32(n), ok
	}
	a := &asm{labels: map[string]int{}, jumps: map[int][2]string{}}
	a.load(offArch)
	a.jeq(uint32(info.ID), "native", "")
	a.ret(retKill)
	a.label("native")
	a.load(offNr)
	if goarch == "amd64" {
		a.jump(bpf.JumpGreaterOrEqual, 0x40000000, "kill", "") // x32
	}
	for _, name := range deniedSyscalls {
		if n, ok := nr(name); ok {
			a.jeq(n, "eperm", "")
		}
	}
	if n, ok := nr("clone3"); ok {
		a.jeq(n, "enosys", "") // its flags are in memory; libcs fall back to clone
	}
	if n, ok := nr("clone"); ok {
		a.jeq(n, "clone", "")
	}
	if n, ok := nr("socket"); ok {
		a.jeq(n, "socket", "")
	}
	a.ret(retAllow)

	a.label("clone")
	a.load(offArg(0))
	a.jump(bpf.JumpBitsSet, nsCloneFlags, "eperm", "allow")

	// socket(domain, type, protocol): unix, netlink route, and IPv4/IPv6
	// with the default, TCP, UDP or ICMP protocol. MPTCP and SCTP would get
	// around Landlock's TCP port rules.
	a.label("socket")
	a.load(offArg(0))
	a.jeq(unix.AF_UNIX, "allow", "")
	a.jeq(unix.AF_NETLINK, "netlink", "")
	a.jeq(unix.AF_INET, "inet", "")
	a.jeq(unix.AF_INET6, "inet", "eafnosupport")
	a.label("netlink")
	a.load(offArg(2))
	a.jeq(unix.NETLINK_ROUTE, "allow", "eprotonosupport")
	a.label("inet")
	a.load(offArg(2))
	for _, p := range []uint32{0, unix.IPPROTO_TCP, unix.IPPROTO_UDP, unix.IPPROTO_ICMP} {
		a.jeq(p, "allow", "")
	}
	a.jeq(unix.IPPROTO_ICMPV6, "allow", "eprotonosupport")

	a.label("allow")
	a.ret(retAllow)
	a.label("eperm")
	a.ret(retErrno(unix.EPERM))
	a.label("enosys")
	a.ret(retErrno(unix.ENOSYS))
	a.label("eafnosupport")
	a.ret(retErrno(unix.EAFNOSUPPORT))
	a.label("eprotonosupport")
	a.ret(retErrno(unix.EPROTONOSUPPORT))
	a.label("kill")
	a.ret(retKill)
	return a.assemble()
}

// loadSeccomp installs the filter on the calling thread, which must be
// locked to its goroutine and have no_new_privs set; children forked from
// it inherit the filter.
func loadSeccomp(raw []bpf.RawInstruction) error {
	f := make([]unix.SockFilter, len(raw))
	for i, r := range raw {
		f[i] = unix.SockFilter{Code: r.Op, Jt: r.Jt, Jf: r.Jf, K: r.K}
	}
	prog := unix.SockFprog{Len: uint16(len(f)), Filter: &f[0]}
	if _, _, e := unix.Syscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER, 0, uintptr(unsafe.Pointer(&prog))); e != 0 {
		return fmt.Errorf("seccomp(SET_MODE_FILTER): %w", e)
	}
	return nil
}
