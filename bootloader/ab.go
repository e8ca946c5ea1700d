package bootloader

import (
	"fmt"
	"sync"
)

// The bootcount variables of U-Boot's standard scheme (CONFIG_BOOTCOUNT_LIMIT
// with CONFIG_BOOTCOUNT_ENV); the grub backend uses the same names.
const (
	varUpgrade   = "upgrade_available"
	varBootCount = "bootcount"
	varBootLimit = "bootlimit"
)

// vars is the A/B state as the bootloader keeps it.
type vars struct {
	Slot      Slot // the slot the bootloader boots (sphere_slot)
	Upgrade   bool // upgrade_available: Slot is on trial, Slot.Other() is the fallback
	BootCount int  // trial boots so far; meaningful only with Upgrade
	BootLimit int  // trial boots allowed; 0 means no fallback
}

// store is where a backend keeps vars.
type store interface {
	// load returns the vars and, when the store knows it for certain, the
	// booted slot ("" otherwise).
	load() (v vars, booted Slot, err error)
	// save writes all of v at once; booted is what load returned.
	save(v vars, booted Slot) error
}

// machine is the A/B state machine over a store, shared by the backends.
// mu serializes every operation's read-modify-write within the process.
type machine struct {
	mu        sync.Mutex
	st        store
	bootLimit int
}

// inferBooted is the booted slot when nothing says it for certain: a trial
// armed but never counted (bootcount 0) has not been booted yet, so the
// running slot is still the committed one.
func inferBooted(v vars) Slot {
	if v.Upgrade && v.BootCount == 0 {
		return v.Slot.Other()
	}
	return v.Slot
}

// stateOf computes the State from the vars and the booted slot.
func stateOf(v vars, booted Slot) State {
	if booted == "" {
		booted = inferBooted(v)
	}
	s := State{Booted: booted, Committed: v.Slot, Next: v.Slot, BootLimit: v.BootLimit}
	if v.Upgrade {
		s.Committed = v.Slot.Other()
		s.Trial = booted == v.Slot
		s.BootCount = v.BootCount
	}
	return s
}

// bootStep is what the bootloader does on each boot (U-Boot's bootcount_inc
// and altbootcmd; the grub.cfg snippet): while a trial is armed it counts
// the boot, and past the limit it goes back to the committed slot and
// clears the trial. It returns the new vars and the slot it boots.
func bootStep(v vars) (vars, Slot) {
	if v.Upgrade {
		v.BootCount++
		if v.BootLimit > 0 && v.BootCount > v.BootLimit {
			v = vars{Slot: v.Slot.Other(), BootLimit: v.BootLimit}
		}
	}
	return v, v.Slot
}

func (m *machine) current() (vars, Slot, State, error) {
	v, booted, err := m.st.load()
	if err != nil {
		return vars{}, "", State{}, err
	}
	return v, booted, stateOf(v, booted), nil
}

func (m *machine) Active() (Slot, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	_, _, st, err := m.current()
	if err != nil {
		return "", fmt.Errorf("bootloader: Active: %w", err)
	}
	return st.Booted, nil
}

func (m *machine) Inactive() (Slot, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	_, _, st, err := m.current()
	if err != nil {
		return "", fmt.Errorf("bootloader: Inactive: %w", err)
	}
	switch {
	case st.Trial:
		return "", fmt.Errorf("bootloader: Inactive: slot %s is on trial and slot %s is its fallback; Commit or Rollback first: %w", st.Booted, st.Committed, ErrTrial)
	case st.Booted != st.Committed:
		return "", fmt.Errorf("bootloader: Inactive: booted slot %s was rolled back and slot %s is the committed one; reboot into it first: %w", st.Booted, st.Committed, ErrRebootRequired)
	}
	return st.Booted.Other(), nil
}

func (m *machine) State() (State, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	_, _, st, err := m.current()
	if err != nil {
		return State{}, fmt.Errorf("bootloader: State: %w", err)
	}
	return st, nil
}

func (m *machine) TryNext(s Slot) error {
	if !s.Valid() {
		return fmt.Errorf("bootloader: TryNext(%q): %w", s, ErrInvalidSlot)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	_, booted, st, err := m.current()
	if err != nil {
		return fmt.Errorf("bootloader: TryNext(%s): %w", s, err)
	}
	switch {
	case st.Trial:
		return fmt.Errorf("bootloader: TryNext(%s): slot %s is on trial; Commit or Rollback it first: %w", s, st.Booted, ErrTrial)
	case st.Booted != st.Committed:
		return fmt.Errorf("bootloader: TryNext(%s): booted slot %s was rolled back to slot %s; reboot first: %w", s, st.Booted, st.Committed, ErrRebootRequired)
	case s == st.Booted:
		return fmt.Errorf("bootloader: TryNext(%s): slot %s is running; try the inactive slot %s: %w", s, s, s.Other(), ErrBootedSlot)
	}
	next := vars{Slot: s, Upgrade: true, BootCount: 0, BootLimit: m.bootLimit}
	if err := m.st.save(next, booted); err != nil {
		return fmt.Errorf("bootloader: TryNext(%s): %w", s, err)
	}
	return nil
}

func (m *machine) Commit() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	v, booted, st, err := m.current()
	if err != nil {
		return fmt.Errorf("bootloader: Commit: %w", err)
	}
	switch {
	case st.Trial:
		v = vars{Slot: st.Booted, BootLimit: v.BootLimit}
		if err := m.st.save(v, booted); err != nil {
			return fmt.Errorf("bootloader: Commit: %w", err)
		}
		return nil
	case st.Booted != st.Committed:
		return fmt.Errorf("bootloader: Commit: booted slot %s was rolled back to slot %s; reboot first: %w", st.Booted, st.Committed, ErrRebootRequired)
	case v.Upgrade:
		return fmt.Errorf("bootloader: Commit: slot %s is armed for the next boot but not booted yet (booted slot %s is committed); reboot into it first, or Rollback to cancel it: %w", st.Next, st.Booted, ErrNoTrial)
	}
	return nil // the booted slot is committed already
}

func (m *machine) Rollback() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	v, booted, st, err := m.current()
	if err != nil {
		return fmt.Errorf("bootloader: Rollback: %w", err)
	}
	switch {
	case v.Upgrade: // a running trial, or an armed one to cancel
		v = vars{Slot: st.Committed, BootLimit: v.BootLimit}
		if err := m.st.save(v, booted); err != nil {
			return fmt.Errorf("bootloader: Rollback: %w", err)
		}
		return nil
	case st.Booted != st.Committed:
		return nil // rolled back already, waiting for the reboot
	}
	return fmt.Errorf("bootloader: Rollback: booted slot %s is committed and no trial is armed: %w", st.Booted, ErrNoTrial)
}
