// Package bootloader is the device's A/B boot switch: it tells the agent's
// update engine which slot the system booted from, arms a trial boot of the
// other slot, and commits or rolls back that trial. The bootloader itself
// counts trial boots and falls back to the committed slot after the boot
// limit, so a new OS that never comes up far enough to commit is undone
// without any help from the agent.
//
// Three backends share one state machine: File (a JSON file, for tests,
// simulation and supervised devices; it can also play the bootloader with
// Boot), UBoot (the U-Boot environment through fw_printenv/fw_setenv) and
// Grub (a grubenv file through grub-editenv). docs/bootloader.md has the
// boot scripts the real bootloaders need.
//
// It is not the update engine: it does not write images, check health or
// reboot, and it knows nothing of versions or anti-rollback counters.
package bootloader

import (
	"errors"
	"fmt"
	"log/slog"
	"time"
)

// Slot names one of the two OS slots: "a" or "b".
type Slot string

// The two slots.
const (
	SlotA Slot = "a"
	SlotB Slot = "b"
)

// Valid reports whether s is "a" or "b".
func (s Slot) Valid() bool { return s == SlotA || s == SlotB }

// Other returns the other slot of a valid slot, and "" for an invalid one.
func (s Slot) Other() Slot {
	switch s {
	case SlotA:
		return SlotB
	case SlotB:
		return SlotA
	}
	return ""
}

// ParseSlot returns s as a Slot, or an error wrapping ErrInvalidSlot. It is
// exact: "A", " a" and "slot_a" are refused.
func ParseSlot(s string) (Slot, error) {
	if Slot(s).Valid() {
		return Slot(s), nil
	}
	return "", fmt.Errorf("%q: %w", s, ErrInvalidSlot)
}

// State is the A/B state as the bootloader's variables and the running
// system show it.
type State struct {
	// Booted is the slot the running system started from.
	Booted Slot
	// Committed is the slot the bootloader falls back to: the last one
	// committed.
	Committed Slot
	// Next is the slot the next boot starts: Committed, unless a trial is
	// armed (TryNext) or running.
	Next Slot
	// Trial is true when Booted is on trial: not committed, and the
	// bootloader will go back to Committed by itself once BootCount passes
	// BootLimit. The engine commits or rolls it back.
	Trial bool
	// BootCount is how many times the bootloader has started the trial slot
	// (upgrade_available=1); 0 when no trial is armed.
	BootCount int
	// BootLimit is how many trial boots the bootloader allows before it
	// falls back; 0 means the environment has none (never fall back).
	BootLimit int
}

// Bootloader is the A/B boot switch the update engine drives. Its methods
// are safe for concurrent use; each one is a whole read-modify-write of the
// bootloader's state, serialized within the process.
type Bootloader interface {
	// Active is the slot the system booted from (committed or on trial).
	Active() (Slot, error)
	// Inactive is the other slot: where the next OS image is written. It
	// fails with ErrTrial while a trial runs (the other slot is then the
	// fallback) and with ErrRebootRequired after a rollback that has not
	// been rebooted yet (the other slot is then the committed one).
	Inactive() (Slot, error)
	// TryNext arranges for the next boot (only) to try slot s:
	// upgrade_available=1, bootcount=0, bootlimit set, default slot s. If
	// that boot is not committed, the bootloader falls back to the previous
	// slot by itself after the boot limit. s must be the inactive slot;
	// arming it again before the reboot is allowed and resets the count.
	TryNext(s Slot) error
	// State reports whether the current boot is a trial (not yet
	// committed) and the boot count so far.
	State() (State, error)
	// Commit makes the booted trial slot permanent: it clears
	// upgrade_available and sets bootcount=0. It is a no-op when the booted
	// slot is already committed and nothing is armed.
	Commit() error
	// Rollback makes the committed (previous) slot the default again at
	// once, during a trial or to cancel an armed TryNext; the engine
	// reboots afterwards. A second Rollback before that reboot is a no-op.
	Rollback() error
}

// Errors the backends wrap; test for them with errors.Is.
var (
	// ErrInvalidSlot: a slot name other than "a" or "b", given or found.
	ErrInvalidSlot = errors.New(`invalid slot: want "a" or "b"`)
	// ErrBootedSlot: TryNext was given the slot that is running.
	ErrBootedSlot = errors.New("slot is the booted slot")
	// ErrTrial: the call needs the trial to be committed or rolled back first.
	ErrTrial = errors.New("a trial boot is in progress")
	// ErrNoTrial: Commit or Rollback with no trial to act on.
	ErrNoTrial = errors.New("no trial boot")
	// ErrRebootRequired: the booted slot was rolled back; reboot first.
	ErrRebootRequired = errors.New("reboot required")
	// ErrToolMissing: fw_printenv, fw_setenv or grub-editenv is not installed.
	ErrToolMissing = errors.New("bootloader tool not installed")
	// ErrEnvironment: the bootloader's environment cannot be read, or holds
	// values this package does not accept.
	ErrEnvironment = errors.New("bootloader environment unreadable")
)

// Backend names a Bootloader implementation.
type Backend string

// The backends.
const (
	BackendFile  Backend = "file"
	BackendUBoot Backend = "uboot"
	BackendGrub  Backend = "grub"
)

// Defaults of Config's empty fields.
const (
	DefaultStateFile   = "/var/lib/sphere/bootloader.json"
	DefaultFwEnvConfig = "/etc/fw_env.config"
	DefaultGrubEnv     = "/boot/grub/grubenv"
	DefaultSlotVar     = "sphere_slot"
	DefaultCmdline     = "/proc/cmdline"
	DefaultBootLimit   = 3
	DefaultTimeout     = 30 * time.Second
	// MaxGrubBootLimit is the largest boot limit the grub.cfg snippet in
	// docs/bootloader.md can count to (GRUB's script has no arithmetic).
	MaxGrubBootLimit = 9
)

// Config selects and configures a backend. The zero value of each field
// except Backend means the default stated on it.
type Config struct {
	// Backend is "file", "uboot" or "grub". It must be set.
	Backend Backend

	// StateFile is the file backend's JSON state. Empty means
	// DefaultStateFile. A missing file is the initial state: slot a,
	// committed and booted; the first change creates it.
	StateFile string

	// FwEnvConfig is the fw_env.config given to fw_printenv and fw_setenv
	// with -c. Empty means DefaultFwEnvConfig.
	FwEnvConfig string
	// FwPrintenv and FwSetenv are the tools' paths or names looked up in
	// PATH. Empty means "fw_printenv" and "fw_setenv".
	FwPrintenv, FwSetenv string

	// GrubEnv is the grubenv file. Empty means DefaultGrubEnv. It must
	// exist (grub-editenv FILE create).
	GrubEnv string
	// GrubEditenv is grub-editenv's path or name looked up in PATH. Empty
	// means "grub-editenv".
	GrubEditenv string

	// SlotVar is the uboot and grub variable holding the default slot.
	// Empty means DefaultSlotVar. Letters, digits and '_' only.
	SlotVar string
	// Cmdline is the kernel command line read for sphere.slot=a|b, which
	// the boot scripts pass so that the uboot and grub backends know the
	// booted slot for certain. Empty means DefaultCmdline. Without the
	// parameter the booted slot is inferred from the environment (see
	// docs/bootloader.md).
	Cmdline string

	// BootLimit is the bootlimit TryNext writes: how many times the
	// bootloader starts a trial slot before it falls back. 0 means
	// DefaultBootLimit; the grub backend allows at most MaxGrubBootLimit.
	BootLimit int
	// Timeout bounds each run of a tool. 0 means DefaultTimeout.
	Timeout time.Duration
	// TempDir holds fw_setenv's script files. Empty means os.TempDir().
	TempDir string
	// Logger receives the warnings the tools print (such as "using default
	// environment"). Nil discards them.
	Logger *slog.Logger
}

// New returns the Bootloader cfg.Backend selects.
func New(cfg Config) (Bootloader, error) {
	switch cfg.Backend {
	case BackendFile:
		return asBootloader(NewFile(cfg))
	case BackendUBoot:
		return asBootloader(NewUBoot(cfg))
	case BackendGrub:
		return asBootloader(NewGrub(cfg))
	case "":
		return nil, errors.New(`bootloader: Config.Backend is empty: want "file", "uboot" or "grub"`)
	default:
		return nil, fmt.Errorf(`bootloader: unknown backend %q: want "file", "uboot" or "grub"`, cfg.Backend)
	}
}

// asBootloader returns a nil Bootloader with an error: a nil *File in the
// interface would not compare equal to nil.
func asBootloader[B Bootloader](b B, err error) (Bootloader, error) {
	if err != nil {
		return nil, err
	}
	return b, nil
}

func (c Config) bootLimit(max int) (int, error) {
	switch {
	case c.BootLimit == 0:
		return DefaultBootLimit, nil
	case c.BootLimit < 0 || c.BootLimit > max:
		return 0, fmt.Errorf("bootloader: Config.BootLimit %d: want 1 to %d (0 means %d)", c.BootLimit, max, DefaultBootLimit)
	}
	return c.BootLimit, nil
}

func (c Config) slotVar() (string, error) {
	v := c.SlotVar
	if v == "" {
		return DefaultSlotVar, nil
	}
	if !validVarName(v) {
		return "", fmt.Errorf("bootloader: Config.SlotVar %q: use letters, digits and '_' only", v)
	}
	for _, reserved := range []string{varUpgrade, varBootCount, varBootLimit} {
		if v == reserved {
			return "", fmt.Errorf("bootloader: Config.SlotVar %q is one of the bootcount variables", v)
		}
	}
	return v, nil
}

func (c Config) logger() *slog.Logger {
	if c.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return c.Logger
}

func (c Config) timeout() time.Duration {
	if c.Timeout <= 0 {
		return DefaultTimeout
	}
	return c.Timeout
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

func validVarName(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c == '_' || c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z') {
			return false
		}
	}
	return true
}
