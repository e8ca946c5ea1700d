package sim

import (
	"os"
	"syscall"
	"testing"
	"time"
)

// TestReadProc reads this test process: its memory, and CPU of which a
// loop of system calls puts a part in the kernel.
func TestReadProc(t *testing.T) {
	before, err := ReadProc(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if before.PID != os.Getpid() || before.RSS <= 0 || before.HWM < before.RSS {
		t.Fatalf("memory: %+v", before)
	}
	// System time is counted in ticks of 10 ms: make system calls until
	// one more tick is counted, for at most 5 s.
	after := before
	for deadline := time.Now().Add(5 * time.Second); after.System == before.System && time.Now().Before(deadline); {
		for range 10000 {
			syscall.Getppid()
		}
		if after, err = ReadProc(os.Getpid()); err != nil {
			t.Fatal(err)
		}
	}
	if after.System <= before.System {
		t.Fatalf("no system time counted after 5 s of system calls: before %+v, after %+v", before, after)
	}
	if after.CPU < after.System || after.CPU-before.CPU < after.System-before.System {
		t.Fatalf("user plus system (%v) is less than system (%v)", after.CPU, after.System)
	}
}

func TestReadProcGone(t *testing.T) {
	// Pid 0 is never a process of /proc.
	if _, err := ReadProc(0); err == nil {
		t.Fatal("ReadProc(0) succeeded")
	}
}

func TestKernelShare(t *testing.T) {
	for _, c := range []struct {
		cpu, system time.Duration
		want        float64
	}{{0, 0, 0}, {2 * time.Second, 500 * time.Millisecond, 0.25}, {time.Second, time.Second, 1}} {
		u := ServerUse{CPU: c.cpu, System: c.system}
		if got := u.KernelShare(); got != c.want {
			t.Errorf("CPU %v, system %v: share %v, want %v", c.cpu, c.system, got, c.want)
		}
	}
}
