package agent

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"

	"github.com/opensphere/sphere/sandbox"
	"github.com/opensphere/sphere/supervisor"
	"github.com/opensphere/sphere/tlsutil"
)

// Compartments runs the supervisor's apps in sandbox compartments, each
// under a uid of its own. The uid a component gets is kept in the state
// dir, so that it never moves once the app owns files; the apps' socket
// tells callers apart by it.
type Compartments struct {
	sb       *sandbox.Sandbox
	ids      sandbox.IDRange
	stateDir string
	appEnv   []string

	mu    sync.Mutex
	byApp map[string]uint32 // component id -> uid
	sup   *supervisor.Supervisor
}

const appIDsFile = "app-ids.json"

// NewCompartments loads the uid assignments kept in stateDir. appEnv is
// added to every app's environment (e.g. where the apps' socket is).
func NewCompartments(sb *sandbox.Sandbox, ids sandbox.IDRange, stateDir string, appEnv []string) (*Compartments, error) {
	stateDir, err := filepath.Abs(stateDir)
	if err != nil {
		return nil, fmt.Errorf("agent: %w", err)
	}
	c := &Compartments{sb: sb, ids: ids, stateDir: stateDir, appEnv: appEnv, byApp: map[string]uint32{}}
	data, err := os.ReadFile(filepath.Join(stateDir, appIDsFile))
	switch {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		return nil, fmt.Errorf("agent: app ids: %w", err)
	default:
		if err := json.Unmarshal(data, &c.byApp); err != nil {
			return nil, fmt.Errorf("agent: %s is damaged (%v); fix or remove it (apps then get new uids and may lose access to their storage)", appIDsFile, err)
		}
	}
	return c, nil
}

// Attach tells the compartments which supervisor runs the apps, for AppByUID.
func (c *Compartments) Attach(sup *supervisor.Supervisor) {
	c.mu.Lock()
	c.sup = sup
	c.mu.Unlock()
}

// uid returns the component's uid, assigning and saving one the first time.
func (c *Compartments) uid(component string) (uint32, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if id, ok := c.byApp[component]; ok {
		return id, nil
	}
	taken := map[uint32]bool{}
	for _, id := range c.byApp {
		taken[id] = true
	}
	id, err := c.ids.Assign(component, taken)
	if err != nil {
		return 0, err
	}
	c.byApp[component] = id
	data, _ := json.MarshalIndent(c.byApp, "", "  ")
	if err := tlsutil.WriteFileAtomic(filepath.Join(c.stateDir, appIDsFile), data, 0o600); err != nil {
		delete(c.byApp, component)
		return 0, fmt.Errorf("agent: save app ids: %w", err)
	}
	return id, nil
}

// Command implements supervisor.Launcher.
func (c *Compartments) Command(app supervisor.App) (*exec.Cmd, func(), error) {
	id, err := c.uid(app.ComponentID)
	if err != nil {
		return nil, nil, err
	}
	// The compartment needs absolute paths; the agent may have been given
	// a relative state dir.
	if app.Dir, err = filepath.Abs(app.Dir); err != nil {
		return nil, nil, err
	}
	if app.StorageDir != "" {
		if app.StorageDir, err = filepath.Abs(app.StorageDir); err != nil {
			return nil, nil, err
		}
	}
	if err := c.searchable(app.Dir); err != nil {
		return nil, nil, err
	}
	storage := app.StorageDir
	if storage == "" && app.Manifest.Capabilities.MutableStorage != nil {
		storage = filepath.Join(c.stateDir, "storage", app.ComponentID)
		if err := os.MkdirAll(filepath.Dir(storage), 0o711); err != nil {
			return nil, nil, err
		}
		if err := c.searchable(storage); err != nil {
			return nil, nil, err
		}
	}
	env := append([]string{"PATH=/usr/bin:/bin", "SPHERE_COMPONENT_ID=" + app.ComponentID}, c.appEnv...)
	if storage != "" {
		env = append(env, "SPHERE_STORAGE_DIR="+storage)
	}
	m := app.Manifest
	return c.sb.Command(sandbox.Spec{ComponentID: app.ComponentID, ImageDir: app.Dir, StorageDir: storage, Manifest: &m, UID: id, GID: id, Env: env})
}

// searchable lets app uids pass through the directories between the state
// dir and path (execute bit only: they cannot list them). The files that
// must stay private, keys and the certificate, are mode 0600 themselves.
func (c *Compartments) searchable(path string) error {
	rel, err := filepath.Rel(c.stateDir, filepath.Dir(path))
	if err != nil || strings.HasPrefix(rel, "..") {
		return nil // outside the state dir: the operator's layout
	}
	dir := c.stateDir
	for _, part := range append([]string{""}, strings.Split(rel, string(filepath.Separator))...) {
		dir = filepath.Join(dir, part)
		fi, err := os.Stat(dir)
		if err != nil {
			return fmt.Errorf("agent: %w", err)
		}
		if fi.Mode().Perm()&0o011 != 0o011 {
			if err := os.Chmod(dir, fi.Mode().Perm()|0o011); err != nil {
				return fmt.Errorf("agent: %w", err)
			}
		}
	}
	return nil
}

// AppByUID says which installed app runs as uid.
func (c *Compartments) AppByUID(uid int) (supervisor.App, bool) {
	c.mu.Lock()
	sup := c.sup
	component := ""
	for comp, id := range c.byApp {
		if int(id) == uid {
			component = comp
		}
	}
	c.mu.Unlock()
	if component == "" || sup == nil {
		return supervisor.App{}, false
	}
	for _, st := range sup.Status() {
		if st.App.ComponentID == component {
			return st.App, true
		}
	}
	return supervisor.App{}, false
}
