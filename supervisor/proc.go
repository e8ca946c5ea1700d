package supervisor

import (
	"fmt"
	"os/exec"
	"sync"
	"time"
)

// stopGrace is how long an app has to exit after SIGTERM before SIGKILL.
const stopGrace = 5 * time.Second

// proc is one installed app and the goroutine that keeps it running.
type proc struct {
	s   *Supervisor
	app App
	out *ring

	mu        sync.Mutex
	state     string
	pid       int
	startedAt time.Time
	restarts  int
	lastExit  string
	quit      chan struct{} // closed to stop the running loop; nil when none runs
	exited    chan struct{} // closed when the loop has returned
}

func newProc(s *Supervisor, a App) *proc {
	return &proc{s: s, app: a, out: newRing(s.cfg.LogLines), state: StateStopped}
}

// start runs the loop unless it already runs. The caller holds s.mu.
func (p *proc) start() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.quit != nil {
		return
	}
	p.quit, p.exited = make(chan struct{}), make(chan struct{})
	p.restarts, p.lastExit = 0, ""
	p.s.wg.Add(1)
	go p.loop(p.quit, p.exited)
}

// stop ends the loop and waits for the app to exit.
func (p *proc) stop() {
	p.mu.Lock()
	quit, exited := p.quit, p.exited
	p.quit = nil
	p.mu.Unlock()
	if quit == nil {
		return
	}
	close(quit)
	<-exited
}

func (p *proc) status() AppStatus {
	p.mu.Lock()
	defer p.mu.Unlock()
	return AppStatus{App: p.app, State: p.state, PID: p.pid, StartedAt: p.startedAt, Restarts: p.restarts, LastExit: p.lastExit}
}

func (p *proc) set(f func()) {
	p.mu.Lock()
	f()
	p.mu.Unlock()
}

func (p *proc) loop(quit, exited chan struct{}) {
	defer p.s.wg.Done()
	defer close(exited)
	defer p.set(func() { p.state, p.pid = StateStopped, 0 })
	cfg, log := p.s.cfg, p.s.log.With("app", p.app.ComponentID, "image", p.app.ImageID)
	backoff := cfg.BackoffMin
	var exits []time.Time
	looping := false
	for {
		started := p.s.now()
		code, sig, desc, ok := p.runOnce(quit)
		if !ok {
			return // stopped
		}
		now := p.s.now()
		if now.Sub(started) >= cfg.StableAfter {
			backoff, exits, looping = cfg.BackoffMin, exits[:0], false
		} else {
			backoff = min(backoff*2, cfg.BackoffMax)
		}
		exits = append(exits, now)
		for len(exits) > 0 && now.Sub(exits[0]) > cfg.LoopWindow {
			exits = exits[1:]
		}
		p.set(func() { p.state, p.pid, p.lastExit = StateBackoff, 0, desc; p.restarts++ })
		log.Warn("app exited; restarting", "how", desc, "in", backoff)
		switch {
		case sig != "":
			p.emit(Event{Kind: EventCrash, Signal: sig, ExitCode: code, Description: desc})
		case code != 0:
			p.emit(Event{Kind: EventExit, ExitCode: code, Description: desc})
		}
		if len(exits) >= cfg.LoopExits && !looping {
			looping = true
			p.emit(Event{Kind: EventRestartLoop, ExitCode: code, Signal: sig,
				Description: fmt.Sprintf("exited %d times within %s; last it %s", len(exits), cfg.LoopWindow, desc)})
		}
		t := time.NewTimer(backoff)
		select {
		case <-quit:
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// runOnce starts the app and waits for it to exit (ok) or for quit (not
// ok, after the app has been made to exit).
func (p *proc) runOnce(quit chan struct{}) (code int, sig, desc string, ok bool) {
	launch := plainCommand
	if p.s.cfg.Launcher != nil {
		launch = p.s.cfg.Launcher.Command
	}
	cmd, release, err := launch(p.app)
	if err == nil {
		cmd.Stdout, cmd.Stderr = p.out, p.out
		prepare(cmd)
		if err = cmd.Start(); err != nil {
			release()
		}
	}
	if err != nil {
		return 127, "", "could not start: " + err.Error(), !closed(quit)
	}
	p.set(func() { p.state, p.pid, p.startedAt = StateRunning, cmd.Process.Pid, p.s.now() })
	waited := make(chan error, 1)
	go func() { waited <- cmd.Wait() }()
	select {
	case <-waited:
	case <-quit:
		terminate(cmd, waited)
		release()
		return 0, "", "", false
	}
	release()
	code, sig = exitInfo(cmd)
	switch {
	case sig != "":
		desc = "was killed by signal " + sig
	default:
		desc = fmt.Sprintf("exited with code %d", code)
	}
	return code, sig, desc, true
}

// terminate asks the app to exit, then kills it.
func terminate(cmd *exec.Cmd, waited chan error) {
	signalTerm(cmd)
	t := time.NewTimer(stopGrace)
	defer t.Stop()
	select {
	case <-waited:
	case <-t.C:
		signalKill(cmd)
		<-waited
	}
}

func (p *proc) emit(ev Event) {
	if p.s.cfg.OnEvent == nil {
		return
	}
	ev.Time, ev.App = p.s.now(), p.app
	p.s.cfg.OnEvent(ev)
}

func closed(c chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}
