// Package supervisor runs a device's installed apps as their manifests
// say: it starts each app's EntryPoint with its CmdArgs, restarts it with
// exponential backoff when it exits, keeps the tail of its output, and
// reports every exit, crash and restart loop. It does not decide which apps
// are installed (the update engine does, through Set) and it does not build
// the compartment an app runs in (a Launcher does: the sandbox).
package supervisor

import (
	"errors"
	"fmt"
	"log/slog"
	"os/exec"
	"path/filepath"
	"sort"
	"sync"
	"time"

	"github.com/opensphere/sphere/image"
)

// App is one installed app to run.
type App struct {
	ComponentID string // the manifest's ComponentId
	ImageID     string // the image it runs
	Version     string
	Dir         string // the unpacked app image (the app may only read it)
	StorageDir  string // its MutableStorage directory, "" when it has none
	Manifest    image.AppManifest
}

// Launcher makes the command that runs an app; the sandbox implements it.
type Launcher interface {
	// Command returns the app's command, not yet started, and a release
	// function the supervisor calls after the process has exited.
	Command(app App) (cmd *exec.Cmd, release func(), err error)
}

// Config configures a Supervisor.
type Config struct {
	// Launcher builds each app's command. Nil runs Dir+EntryPoint plainly,
	// without a compartment: for development only.
	Launcher Launcher
	// Logger receives the supervisor's logs; nil discards them.
	Logger *slog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// OnEvent is told of every non-zero exit, crash and restart loop. It
	// runs on the supervisor's goroutines and should not block for long.
	OnEvent func(Event)
	// LogLines is how many lines of output are kept per app; 0 means 1000.
	LogLines int
	// BackoffMin and BackoffMax bound the wait before a restart, which
	// doubles after each quick exit; zero means 1 s and 5 min.
	BackoffMin, BackoffMax time.Duration
	// StableAfter is how long an app must run for its backoff to reset;
	// zero means 1 minute.
	StableAfter time.Duration
	// LoopExits is how many exits within LoopWindow make a restart loop;
	// zero means 5 within 5 minutes.
	LoopExits  int
	LoopWindow time.Duration
}

// Event kinds.
const (
	EventExit        = "exit"         // the app exited with a non-zero code
	EventCrash       = "crash"        // the app was killed by a signal
	EventRestartLoop = "restart_loop" // the app keeps exiting soon after start
)

// Event is something that happened to an app.
type Event struct {
	Time        time.Time
	App         App
	Kind        string
	ExitCode    int
	Signal      string
	Description string
}

// App states.
const (
	StateRunning = "running"
	StateBackoff = "backoff" // exited; waiting to restart
	StateStopped = "stopped"
)

// AppStatus is an app's state now.
type AppStatus struct {
	App       App
	State     string
	PID       int
	StartedAt time.Time // of the current run
	Restarts  int
	LastExit  string
}

// Supervisor runs apps.
type Supervisor struct {
	cfg  Config
	log  *slog.Logger
	now  func() time.Time
	mu   sync.Mutex
	apps map[string]*proc
	wg   sync.WaitGroup
	done bool
}

// New makes a Supervisor that runs nothing until Set.
func New(cfg Config) *Supervisor {
	s := &Supervisor{cfg: cfg, log: cfg.Logger, now: cfg.Now, apps: map[string]*proc{}}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.cfg.LogLines <= 0 {
		s.cfg.LogLines = 1000
	}
	if s.cfg.BackoffMin <= 0 {
		s.cfg.BackoffMin = time.Second
	}
	if s.cfg.BackoffMax <= 0 {
		s.cfg.BackoffMax = 5 * time.Minute
	}
	if s.cfg.StableAfter <= 0 {
		s.cfg.StableAfter = time.Minute
	}
	if s.cfg.LoopExits <= 0 {
		s.cfg.LoopExits = 5
	}
	if s.cfg.LoopWindow <= 0 {
		s.cfg.LoopWindow = 5 * time.Minute
	}
	return s
}

// ErrUnknownApp is returned for a component id that is not installed.
var ErrUnknownApp = errors.New("no such app")

// Set makes apps the set of apps to run: it starts new ones, restarts
// those whose image changed, and stops those no longer in the set. An app
// stopped by Stop stays stopped unless its image changes.
func (s *Supervisor) Set(apps []App) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.done {
		return
	}
	want := map[string]App{}
	for _, a := range apps {
		want[a.ComponentID] = a
	}
	for id, p := range s.apps {
		if a, ok := want[id]; !ok || a.ImageID != p.app.ImageID {
			p.stop()
			delete(s.apps, id)
		}
	}
	for id, a := range want {
		if _, ok := s.apps[id]; ok {
			continue
		}
		p := newProc(s, a)
		s.apps[id] = p
		p.start()
	}
}

// Start starts an installed app that was stopped.
func (s *Supervisor) Start(componentID string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	p, ok := s.apps[componentID]
	if !ok || s.done {
		return fmt.Errorf("supervisor: start %s: %w", componentID, ErrUnknownApp)
	}
	p.start()
	return nil
}

// Stop stops an app and keeps it stopped until Start.
func (s *Supervisor) Stop(componentID string) error {
	s.mu.Lock()
	p, ok := s.apps[componentID]
	s.mu.Unlock()
	if !ok {
		return fmt.Errorf("supervisor: stop %s: %w", componentID, ErrUnknownApp)
	}
	p.stop()
	return nil
}

// Status returns every installed app's state, sorted by component id.
func (s *Supervisor) Status() []AppStatus {
	s.mu.Lock()
	ps := make([]*proc, 0, len(s.apps))
	for _, p := range s.apps {
		ps = append(ps, p)
	}
	s.mu.Unlock()
	out := make([]AppStatus, 0, len(ps))
	for _, p := range ps {
		out = append(out, p.status())
	}
	sort.Slice(out, func(i, j int) bool { return out[i].App.ComponentID < out[j].App.ComponentID })
	return out
}

// Logs returns the last n lines of an app's output (all kept when n <= 0).
func (s *Supervisor) Logs(componentID string, n int) ([]string, error) {
	s.mu.Lock()
	p, ok := s.apps[componentID]
	s.mu.Unlock()
	if !ok {
		return nil, fmt.Errorf("supervisor: logs of %s: %w", componentID, ErrUnknownApp)
	}
	return p.out.last(n), nil
}

// Healthy says whether the app of componentID runs imageID and has been up
// without exiting for at least minUp; reason says why not.
func (s *Supervisor) Healthy(componentID, imageID string, minUp time.Duration) (ok bool, reason string) {
	s.mu.Lock()
	p, found := s.apps[componentID]
	s.mu.Unlock()
	if !found {
		return false, "the app is not installed"
	}
	st := p.status()
	switch {
	case st.App.ImageID != imageID:
		return false, fmt.Sprintf("the app runs image %s, not %s", st.App.ImageID, imageID)
	case st.State != StateRunning:
		if st.LastExit != "" {
			return false, fmt.Sprintf("the app is %s after it %s (%d restarts)", st.State, st.LastExit, st.Restarts)
		}
		return false, "the app is " + st.State
	case st.Restarts > 0:
		return false, fmt.Sprintf("the app restarted %d times; last it %s", st.Restarts, st.LastExit)
	}
	if up := s.now().Sub(st.StartedAt); up < minUp {
		return false, fmt.Sprintf("the app has been up for %s of %s", up.Round(time.Millisecond), minUp)
	}
	return true, ""
}

// Close stops every app and waits for them to exit.
func (s *Supervisor) Close() {
	s.mu.Lock()
	s.done = true
	for _, p := range s.apps {
		p.stop()
	}
	s.mu.Unlock()
	s.wg.Wait()
}

// plainCommand runs an app without a compartment.
func plainCommand(a App) (*exec.Cmd, func(), error) {
	if a.Manifest.EntryPoint == "" {
		return nil, nil, errors.New("the manifest has no EntryPoint")
	}
	cmd := exec.Command(filepath.Join(a.Dir, filepath.FromSlash(a.Manifest.EntryPoint)), a.Manifest.CmdArgs...)
	cmd.Dir = a.Dir
	cmd.Env = []string{"PATH=/usr/bin:/bin"}
	if a.StorageDir != "" {
		cmd.Env = append(cmd.Env, "SPHERE_STORAGE_DIR="+a.StorageDir)
	}
	return cmd, func() {}, nil
}
