package sim

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// ProcStats is what /proc says of a process on this host.
type ProcStats struct {
	PID int `json:"pid"`
	// RSS is the resident set now, HWM its peak (VmRSS, VmHWM), in bytes.
	RSS int64 `json:"rss_bytes"`
	HWM int64 `json:"rss_peak_bytes"`
	// CPU is user plus system time since the process started; System is
	// the part spent in the kernel (system calls, and on loopback the
	// TCP work of both ends of a connection that the sender's call does).
	CPU    time.Duration `json:"cpu_ns"`
	System time.Duration `json:"cpu_system_ns"`
}

// clockTicks is USER_HZ, 100 on every Linux this runs on.
const clockTicks = 100

// ReadProc reads a local process's memory and CPU from /proc.
func ReadProc(pid int) (ProcStats, error) {
	st := ProcStats{PID: pid}
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return st, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok || (k != "VmRSS" && k != "VmHWM") {
			continue
		}
		fields := strings.Fields(v)
		if len(fields) != 2 || fields[1] != "kB" {
			continue
		}
		n, _ := strconv.ParseInt(fields[0], 10, 64)
		if k == "VmRSS" {
			st.RSS = n << 10
		} else {
			st.HWM = n << 10
		}
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return st, err
	}
	// The command name may hold spaces; the fields after its ")" are fixed.
	i := strings.LastIndexByte(string(b), ')')
	fields := strings.Fields(string(b[i+1:]))
	if len(fields) < 13 {
		return st, fmt.Errorf("/proc/%d/stat: too few fields", pid)
	}
	utime, _ := strconv.ParseInt(fields[11], 10, 64)
	stime, _ := strconv.ParseInt(fields[12], 10, 64)
	st.CPU = time.Duration(utime+stime) * time.Second / clockTicks
	st.System = time.Duration(stime) * time.Second / clockTicks
	return st, nil
}
