package supervisor

import (
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/opensphere/sphere/image"
)

// app writes a shell script as the app's EntryPoint in a directory of its
// own; the plain launcher runs it with /bin/sh.
func app(t *testing.T, id, imageID, script string) App {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "run.sh"), []byte("#!/bin/sh\n"+script+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	return App{ComponentID: id, ImageID: imageID, Version: "1.0.0", Dir: dir,
		Manifest: image.AppManifest{SchemaVersion: 1, Name: id, ComponentId: id, EntryPoint: "/run.sh"}}
}

// events collects what the supervisor reports.
type events struct {
	mu  sync.Mutex
	got []Event
}

func (e *events) add(ev Event) { e.mu.Lock(); e.got = append(e.got, ev); e.mu.Unlock() }

func (e *events) of(kind string) []Event {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []Event
	for _, ev := range e.got {
		if ev.Kind == kind {
			out = append(out, ev)
		}
	}
	return out
}

// eventually waits (bounded) for cond; it asserts no speed, only that the
// condition comes about.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatalf("timed out waiting for %s", what)
}

func newSup(t *testing.T, ev *events) *Supervisor {
	s := New(Config{OnEvent: ev.add, BackoffMin: 10 * time.Millisecond, BackoffMax: 50 * time.Millisecond, LoopExits: 3, LoopWindow: time.Minute})
	t.Cleanup(s.Close)
	return s
}

func state(s *Supervisor, id string) AppStatus {
	for _, st := range s.Status() {
		if st.App.ComponentID == id {
			return st
		}
	}
	return AppStatus{}
}

func TestRunsAppsAndKeepsOutput(t *testing.T) {
	ev := &events{}
	s := newSup(t, ev)
	a := app(t, "a", "img1", `echo hello from a; echo "args: $*" >&2; exec sleep 60`)
	a.Manifest.CmdArgs = []string{"x", "y"}
	s.Set([]App{a})
	eventually(t, "the app to print", func() bool { l, _ := s.Logs("a", 0); return len(l) == 2 })
	logs, err := s.Logs("a", 0)
	if err != nil || logs[0] != "hello from a" || logs[1] != "args: x y" {
		t.Fatalf("logs = %q, %v", logs, err)
	}
	st := state(s, "a")
	if st.State != StateRunning || st.PID == 0 || st.Restarts != 0 {
		t.Fatalf("status = %+v", st)
	}
	if ok, why := s.Healthy("a", "img1", 0); !ok {
		t.Fatalf("Healthy = false: %s", why)
	}
	if ok, why := s.Healthy("a", "img1", time.Hour); ok || !strings.Contains(why, "up for") {
		t.Fatalf("Healthy for an hour = %v %q", ok, why)
	}
	if ok, why := s.Healthy("a", "img2", 0); ok || !strings.Contains(why, "runs image img1") {
		t.Fatalf("Healthy of another image = %v %q", ok, why)
	}
	if ok, _ := s.Healthy("b", "img1", 0); ok {
		t.Fatal("an app not installed is healthy")
	}
	if len(ev.got) != 0 {
		t.Fatalf("events for a healthy app: %+v", ev.got)
	}
	if _, err := s.Logs("nope", 0); err == nil {
		t.Fatal("logs of an unknown app")
	}
}

func TestExitsCrashesAndRestartLoops(t *testing.T) {
	ev := &events{}
	s := newSup(t, ev)
	s.Set([]App{app(t, "exits", "i1", "exit 3"), app(t, "crashes", "i2", "kill -SEGV $$")})
	eventually(t, "restart loops of both", func() bool { return len(ev.of(EventRestartLoop)) == 2 })
	exit := ev.of(EventExit)[0]
	if exit.App.ComponentID != "exits" || exit.ExitCode != 3 || exit.Description != "exited with code 3" {
		t.Fatalf("exit event = %+v", exit)
	}
	crash := ev.of(EventCrash)[0]
	if crash.App.ComponentID != "crashes" || crash.Signal != "SIGSEGV" || !strings.Contains(crash.Description, "SIGSEGV") {
		t.Fatalf("crash event = %+v", crash)
	}
	for _, l := range ev.of(EventRestartLoop) {
		if !strings.Contains(l.Description, "exited 3 times") {
			t.Fatalf("restart loop event = %+v", l)
		}
	}
	st := state(s, "exits")
	if st.Restarts < 3 || st.LastExit != "exited with code 3" {
		t.Fatalf("status = %+v", st)
	}
	if ok, why := s.Healthy("exits", "i1", 0); ok || !strings.Contains(why, "exited with code 3") {
		t.Fatalf("Healthy of a crashing app = %v %q", ok, why)
	}
	// One restart-loop event per loop, not one per exit.
	time.Sleep(200 * time.Millisecond)
	if n := len(ev.of(EventRestartLoop)); n != 2 {
		t.Fatalf("%d restart-loop events, want 2", n)
	}
}

func TestSetStopStart(t *testing.T) {
	s := newSup(t, &events{})
	v1 := app(t, "a", "v1", "exec sleep 60")
	s.Set([]App{v1})
	eventually(t, "v1 to run", func() bool { return state(s, "a").State == StateRunning })
	pid1 := state(s, "a").PID

	// The same image again leaves it alone; a new image replaces it.
	s.Set([]App{v1})
	if st := state(s, "a"); st.PID != pid1 {
		t.Fatalf("Set with the same image restarted the app: %+v", st)
	}
	v2 := app(t, "a", "v2", "exec sleep 60")
	s.Set([]App{v2})
	eventually(t, "v2 to run", func() bool { st := state(s, "a"); return st.State == StateRunning && st.App.ImageID == "v2" })
	if alive(pid1) {
		t.Fatalf("v1 (pid %d) still runs after v2 replaced it", pid1)
	}

	if err := s.Stop("a"); err != nil {
		t.Fatal(err)
	}
	if st := state(s, "a"); st.State != StateStopped || st.PID != 0 {
		t.Fatalf("after Stop: %+v", st)
	}
	s.Set([]App{v2}) // unchanged: stays stopped
	if st := state(s, "a"); st.State != StateStopped {
		t.Fatalf("Set restarted a stopped app: %+v", st)
	}
	if err := s.Start("a"); err != nil {
		t.Fatal(err)
	}
	eventually(t, "a to run again", func() bool { return state(s, "a").State == StateRunning })
	pid2 := state(s, "a").PID
	s.Set(nil)
	if len(s.Status()) != 0 || alive(pid2) {
		t.Fatalf("Set(nil) left %+v (pid %d alive: %v)", s.Status(), pid2, alive(pid2))
	}
	if err := s.Start("a"); err == nil {
		t.Fatal("Start of a removed app")
	}
}

func TestCannotStart(t *testing.T) {
	ev := &events{}
	s := newSup(t, ev)
	a := app(t, "a", "i", "")
	a.Manifest.EntryPoint = "/missing"
	s.Set([]App{a})
	eventually(t, "an exit event", func() bool { return len(ev.of(EventExit)) > 0 })
	if e := ev.of(EventExit)[0]; e.ExitCode != 127 || !strings.Contains(e.Description, "could not start") {
		t.Fatalf("event = %+v", e)
	}
}

func TestRing(t *testing.T) {
	r := newRing(3)
	r.Write([]byte("a\nb\nc\nd\ne"))
	if got := strings.Join(r.last(0), ","); got != "b,c,d,e" {
		t.Fatalf("last(0) = %s", got)
	}
	if got := strings.Join(r.last(2), ","); got != "d,e" {
		t.Fatalf("last(2) = %s", got)
	}
	r.Write([]byte("\n" + strings.Repeat("x", maxLine+1)))
	if got := r.last(2); len(got[0]) != maxLine || got[1] != "x" {
		t.Fatalf("long line kept as %d,%d bytes", len(got[0]), len(got[1]))
	}
}
