// Package sandbox runs an app in a compartment the kernel enforces: its own
// uid and gid, no_new_privs, Landlock (read its image, write only its
// storage, open only the device files it declares, bind only its declared
// TCP ports), a seccomp filter that denies what an app never needs, private
// mount, PID, IPC and UTS namespaces, a network namespace of its own when it
// declares no network use, nftables egress rules keyed on its uid when it
// does, and a size-limited storage filesystem.
//
// It is not the supervisor: it builds the command that starts one app and
// undoes the host state that app needed; restarting, logging and reporting
// belong to the caller. Probe says which protections this kernel offers;
// what it lacks is reported, never pretended.
//
// Go cannot run code between fork and exec, so the command re-executes the
// current program with a marker; every program that uses Command must call
// Init first thing in main (and in TestMain).
package sandbox

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"path/filepath"
	"strings"
	"time"

	"github.com/opensphere/sphere/image"
)

// ExitSetup is the exit code of a compartment that failed before the app
// started (a mount, Landlock or seccomp failure); the reason is on stderr.
const ExitSetup = 125

// Spec describes one app to run in its compartment.
type Spec struct {
	// ComponentID is the app's component id (its manifest's ComponentId).
	ComponentID string
	// ImageDir is the app's unpacked, read-only image; the manifest's
	// EntryPoint is a path inside it. It and its parents must be searchable
	// by UID.
	ImageDir string
	// StorageDir is where the app's MutableStorage lives; required when the
	// manifest declares MutableStorage, ignored otherwise. When the storage
	// quota is enforced, StorageDir+".img" holds an ext4 image of the
	// declared size that is mounted on StorageDir inside the compartment.
	StorageDir string
	// Manifest is the app's validated manifest.
	Manifest *image.AppManifest
	// UID and GID are the app's own ids (see IDRange); never 0.
	UID, GID uint32
	// Env is the app's whole environment; nil means an empty one.
	Env []string
}

// Config configures a Sandbox. The zero value is usable: a board without
// peripherals, no DNS servers, the system resolver.
type Config struct {
	// Board maps manifest peripheral names to device files; nil means a
	// board without peripherals (any declared peripheral is an error).
	Board *Board
	// Logger receives the loud warnings about missing protections; nil
	// discards them.
	Logger *slog.Logger
	// RuntimeDirs are readable and executable by every app, for the dynamic
	// loader and shared libraries; nil means DefaultRuntimeDirs.
	RuntimeDirs []string
	// DNSServers are the addresses apps may send DNS queries to (port 53).
	// Nil means none: apps that declare host names cannot resolve them
	// themselves. The agent passes the servers of /etc/resolv.conf.
	DNSServers []netip.Addr
	// Lookup resolves AllowedConnections host names to addresses; nil means
	// net.DefaultResolver.LookupNetIP with "ip".
	Lookup func(ctx context.Context, host string) ([]netip.Addr, error)
	// ResolveEvery is how often host names are resolved again while an app
	// runs; zero means 5 minutes.
	ResolveEvery time.Duration
	// Mkfs is the mkfs.ext4 program that formats storage images; empty
	// means "mkfs.ext4" found in PATH.
	Mkfs string
}

// DefaultRuntimeDirs are the directories a dynamically linked program needs
// to read and map; missing ones are skipped.
var DefaultRuntimeDirs = []string{"/lib", "/lib32", "/lib64", "/usr/lib", "/usr/lib32", "/usr/lib64"}

// runtimeFiles are readable by every app: what libc's loader, resolver and
// TLS stacks read. Missing ones are skipped.
var runtimeFiles = []string{
	"/etc/ld.so.cache", "/etc/resolv.conf", "/etc/hosts", "/etc/nsswitch.conf", "/etc/host.conf",
	"/etc/gai.conf", "/etc/localtime", "/etc/services", "/etc/protocols", "/etc/passwd", "/etc/group",
}

// runtimeData are directories every app may read but not execute from.
var runtimeData = []string{"/etc/ssl", "/etc/pki", "/etc/ca-certificates", "/usr/share/ca-certificates", "/usr/share/zoneinfo"}

// SharedDirs hold other programs' sockets and temporary files. Landlock
// before ABI 9 does not stop connecting to a socket file (such as
// PostgreSQL's in /run/postgresql), so the compartment covers these with
// empty read-only mounts, unless something the app needs lies in them.
// A socket apps must reach (the agent's app socket) must lie elsewhere.
var SharedDirs = []string{"/run", "/var/run", "/tmp", "/var/tmp", "/dev/shm", "/dev/mqueue"}

// HiddenFromApps reports whether path lies in one of the SharedDirs, which
// compartments cover.
func HiddenFromApps(path string) bool {
	for _, d := range SharedDirs {
		if path == d || strings.HasPrefix(path, d+"/") {
			return true
		}
	}
	return false
}

// commonDevices are the device files every app may read and write.
var commonDevices = []string{"/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom"}

// check validates what Command needs from a spec.
func (s *Spec) check() error {
	if s.Manifest == nil {
		return errors.New("sandbox: spec has no manifest")
	}
	if err := s.Manifest.Validate(); err != nil {
		return fmt.Errorf("sandbox: %w", err)
	}
	if s.ComponentID != s.Manifest.ComponentId {
		return fmt.Errorf("sandbox: component id %q differs from the manifest's %q", s.ComponentID, s.Manifest.ComponentId)
	}
	if s.UID == 0 || s.GID == 0 {
		return fmt.Errorf("sandbox: app %s: uid and gid must not be 0 (root); allocate them from an IDRange", s.ComponentID)
	}
	if !filepath.IsAbs(s.ImageDir) || filepath.Clean(s.ImageDir) != s.ImageDir {
		return fmt.Errorf("sandbox: app %s: image dir %q must be an absolute clean path", s.ComponentID, s.ImageDir)
	}
	if s.Manifest.Capabilities.MutableStorage != nil {
		if !filepath.IsAbs(s.StorageDir) || filepath.Clean(s.StorageDir) != s.StorageDir {
			return fmt.Errorf("sandbox: app %s declares MutableStorage: storage dir %q must be an absolute clean path", s.ComponentID, s.StorageDir)
		}
	}
	return nil
}

// usesNetwork reports whether the manifest declares any network use; an app
// that declares none gets a network namespace of its own with nothing in it.
func usesNetwork(m *image.AppManifest) bool {
	c := m.Capabilities
	return len(c.AllowedConnections) > 0 || len(c.AllowedTcpServerPorts) > 0 || len(c.AllowedUdpServerPorts) > 0
}

// Sandbox starts apps in compartments. It is safe for concurrent use.
type Sandbox struct {
	cfg    Config
	log    *slog.Logger
	status Status
}

// New probes the kernel and returns a Sandbox. Every protection the kernel
// lacks is logged at error level, once, here: an operator must be able to
// see that an app runs with less isolation than its manifest promises.
func New(cfg Config) *Sandbox {
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if cfg.RuntimeDirs == nil {
		cfg.RuntimeDirs = DefaultRuntimeDirs
	}
	if cfg.ResolveEvery <= 0 {
		cfg.ResolveEvery = 5 * time.Minute
	}
	s := &Sandbox{cfg: cfg, log: log, status: Probe(cfg.Mkfs)}
	for _, p := range s.status.Missing() {
		log.Error("sandbox: protection MISSING on this device", "protection", p.Name, "why", p.Detail)
	}
	return s
}

// Status returns what Probe found when the Sandbox was made.
func (s *Sandbox) Status() Status { return s.status }
