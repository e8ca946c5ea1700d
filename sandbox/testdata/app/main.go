// Command app is the program the sandbox tests run inside compartments. It
// performs the one operation its arguments name and prints "ok", a result,
// or "error: " and what the kernel said; it always exits 0 unless asked to
// exit otherwise.
package main

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Println("error: no operation")
		return
	}
	arg := func(i int) string {
		if len(os.Args) > i {
			return os.Args[i]
		}
		return ""
	}
	out, err := run(os.Args[1], arg(2), arg(3))
	if err != nil {
		fmt.Println("error:", err)
		return
	}
	fmt.Println(out)
}

func run(op, a, b string) (string, error) {
	switch op {
	case "write":
		return "ok", os.WriteFile(a, []byte("hello"), 0o600)
	case "read":
		d, err := os.ReadFile(a)
		return string(d), err
	case "open":
		return closed(os.OpenFile(a, os.O_RDWR, 0))
	case "fill": // write b KiB to a
		kb, _ := strconv.Atoi(b)
		f, err := os.Create(a)
		if err != nil {
			return "", err
		}
		defer f.Close()
		buf := make([]byte, 1024)
		for range kb {
			if _, err := f.Write(buf); err != nil {
				return "", err
			}
		}
		return "ok", f.Sync()
	case "connect":
		return closed(net.DialTimeout("tcp", a, 5*time.Second))
	case "dialuntil": // a connection to a succeeds, within 500 tries
		var err error
		for range 500 {
			var c net.Conn
			if c, err = net.DialTimeout("tcp", a, time.Second); err == nil {
				c.Close()
				return "ok", nil
			}
			time.Sleep(20 * time.Millisecond)
		}
		return "", err
	case "udp":
		c, err := net.Dial("udp", a)
		if err != nil {
			return "", err
		}
		defer c.Close()
		_, err = c.Write([]byte("ping"))
		return "ok", err
	case "listen":
		return closed(net.Listen("tcp", a))
	case "listenudp":
		return closed(net.ListenPacket("udp", a))
	case "unix":
		return closed(net.Dial("unix", a))
	case "mptcp":
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM, 262)
		if err == nil {
			unix.Close(fd)
		}
		return "ok", err
	case "ptrace":
		_, _, e := unix.Syscall(unix.SYS_PTRACE, unix.PTRACE_TRACEME, 0, 0)
		return "ok", errno(e)
	case "mount":
		return "ok", unix.Mount("tmpfs", a, "tmpfs", 0, "")
	case "unshare":
		return "ok", unix.Unshare(unix.CLONE_NEWUSER)
	case "id":
		g, _ := os.Getgroups()
		return fmt.Sprintf("uid=%d gid=%d groups=%v", os.Getuid(), os.Getgid(), g), nil
	case "nnp":
		return statusField("NoNewPrivs")
	case "pids":
		ents, err := os.ReadDir("/proc")
		if err != nil {
			return "", err
		}
		var pids []int
		for _, e := range ents {
			if n, err := strconv.Atoi(e.Name()); err == nil {
				pids = append(pids, n)
			}
		}
		sort.Ints(pids)
		return strings.Trim(fmt.Sprint(pids), "[]"), nil
	case "ns":
		return os.Readlink("/proc/self/ns/" + a)
	case "mountopts": // the options of the mount at a
		return mountOpts(a)
	case "wait": // until SIGTERM
		c := make(chan os.Signal, 1)
		signal.Notify(c, syscall.SIGTERM)
		fmt.Println("ready")
		select {
		case <-c:
			return "term", nil
		case <-time.After(time.Minute):
			return "", fmt.Errorf("no SIGTERM within a minute")
		}
	case "exit":
		n, _ := strconv.Atoi(a)
		os.Exit(n)
	}
	return "", fmt.Errorf("unknown operation %q", op)
}

// closed closes what an operation opened and reports whether it could.
func closed[C io.Closer](c C, err error) (string, error) {
	if err != nil {
		return "", err
	}
	c.Close()
	return "ok", nil
}

func errno(e syscall.Errno) error {
	if e == 0 {
		return nil
	}
	return e
}

func statusField(name string) (string, error) {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return "", err
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if v, ok := strings.CutPrefix(s.Text(), name+":"); ok {
			return strings.TrimSpace(v), nil
		}
	}
	return "", fmt.Errorf("no %s in /proc/self/status", name)
}

func mountOpts(dir string) (string, error) {
	d, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return "", err
	}
	opts := ""
	for _, line := range strings.Split(string(d), "\n") {
		f := strings.Fields(line)
		if len(f) > 5 && f[4] == dir {
			opts = f[5] // the last mount on dir wins
		}
	}
	if opts == "" {
		return "", fmt.Errorf("nothing mounted on %s", dir)
	}
	return opts, nil
}
