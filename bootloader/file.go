package bootloader

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/opensphere/sphere/tlsutil"
)

// File keeps the A/B state in a JSON file, written whole or not at all
// (temporary file, fsync, rename, fsync of the directory). It serves tests,
// simulation, and devices where a supervisor plays the bootloader's part:
// the supervisor calls Boot at each start of the system, which is what a
// real bootloader does at power-on.
type File struct {
	machine
	fs *fileStore
}

// fileState is the JSON document. Booted is recorded by Boot, so unlike the
// real bootloaders File always knows the booted slot.
type fileState struct {
	Slot             Slot `json:"slot"`
	UpgradeAvailable bool `json:"upgrade_available"`
	BootCount        int  `json:"bootcount"`
	BootLimit        int  `json:"bootlimit"`
	Booted           Slot `json:"booted"`
}

// NewFile returns the file backend for cfg.StateFile. It reads nothing
// yet: a missing file is the initial state.
func NewFile(cfg Config) (*File, error) {
	limit, err := cfg.bootLimit(1 << 20)
	if err != nil {
		return nil, err
	}
	fs := &fileStore{path: orDefault(cfg.StateFile, DefaultStateFile)}
	return &File{machine: machine{st: fs, bootLimit: limit}, fs: fs}, nil
}

// Boot simulates a (re)boot by the bootloader: while a trial is armed it
// counts the boot (bootcount++), and once bootcount passes bootlimit it
// falls back to the committed slot and clears upgrade_available. It records
// and returns the slot booted.
func (f *File) Boot() (Slot, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	v, _, err := f.fs.load()
	if err != nil {
		return "", fmt.Errorf("bootloader: Boot: %w", err)
	}
	v, booted := bootStep(v)
	if err := f.fs.save(v, booted); err != nil {
		return "", fmt.Errorf("bootloader: Boot: %w", err)
	}
	return booted, nil
}

type fileStore struct{ path string }

// maxStateFile bounds what load reads; the document is under 200 bytes.
const maxStateFile = 64 << 10

func (s *fileStore) load() (vars, Slot, error) {
	f, err := os.Open(s.path)
	if errors.Is(err, os.ErrNotExist) {
		return vars{Slot: SlotA}, SlotA, nil
	}
	if err != nil {
		return vars{}, "", fmt.Errorf("%w: %v", ErrEnvironment, err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxStateFile+1))
	if err != nil {
		return vars{}, "", fmt.Errorf("%w: %v", ErrEnvironment, err)
	}
	v, booted, err := decodeFileState(data)
	if err != nil {
		return vars{}, "", fmt.Errorf("%w: %s: %v (fix or remove the file; a missing file means slot a, committed)", ErrEnvironment, s.path, err)
	}
	return v, booted, nil
}

func (s *fileStore) save(v vars, booted Slot) error {
	data, err := json.MarshalIndent(fileState{
		Slot: v.Slot, UpgradeAvailable: v.Upgrade, BootCount: v.BootCount, BootLimit: v.BootLimit, Booted: booted,
	}, "", "  ")
	if err != nil {
		return err
	}
	return tlsutil.WriteFileAtomic(s.path, append(data, '\n'), 0o644)
}

// decodeFileState parses and checks the JSON document strictly: unknown
// fields, trailing data and out-of-range values are errors.
func decodeFileState(data []byte) (vars, Slot, error) {
	if len(data) > maxStateFile {
		return vars{}, "", fmt.Errorf("larger than %d bytes", maxStateFile)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var fs fileState
	if err := dec.Decode(&fs); err != nil {
		return vars{}, "", err
	}
	if _, err := dec.Token(); err != io.EOF {
		return vars{}, "", errors.New("data after the JSON object")
	}
	if !fs.Slot.Valid() {
		return vars{}, "", fmt.Errorf("slot %q: %w", fs.Slot, ErrInvalidSlot)
	}
	if fs.Booted != "" && !fs.Booted.Valid() {
		return vars{}, "", fmt.Errorf("booted %q: %w", fs.Booted, ErrInvalidSlot)
	}
	if fs.BootCount < 0 || fs.BootLimit < 0 || fs.BootCount > 1e9 || fs.BootLimit > 1e9 {
		return vars{}, "", fmt.Errorf("bootcount %d, bootlimit %d: want counts from 0 to 10^9", fs.BootCount, fs.BootLimit)
	}
	return vars{Slot: fs.Slot, Upgrade: fs.UpgradeAvailable, BootCount: fs.BootCount, BootLimit: fs.BootLimit}, fs.Booted, nil
}
