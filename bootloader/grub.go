package bootloader

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
)

// Grub keeps the A/B state in a grubenv file, read and written with
// grub-editenv, using the same variables as UBoot; the grub.cfg snippet in
// docs/bootloader.md counts the trial boots and falls back.
//
// grub-editenv rewrites a grubenv in place (truncate, write, fsync), so a
// power cut at the wrong moment could leave it empty, and GRUB would then
// boot slot a whatever was committed. Grub therefore edits a copy next to
// the file, reads the copy back, and renames it over the original.
type Grub struct {
	machine
}

type grubStore struct {
	editenv tool
	file    string
	slotVar string
	cmdline string
	log     *slog.Logger
}

// NewGrub returns the grub backend. It fails at once when grub-editenv is
// missing or cfg.BootLimit is more than the grub.cfg snippet counts to; it
// does not read the grubenv yet.
func NewGrub(cfg Config) (*Grub, error) {
	limit, err := cfg.bootLimit(MaxGrubBootLimit)
	if err != nil {
		return nil, err
	}
	slotVar, err := cfg.slotVar()
	if err != nil {
		return nil, err
	}
	editenv, err := lookTool(cfg.GrubEditenv, "grub-editenv", grubToolHint)
	if err != nil {
		return nil, err
	}
	s := &grubStore{
		editenv: tool{path: editenv, hint: grubToolHint, timeout: cfg.timeout()},
		file:    orDefault(cfg.GrubEnv, DefaultGrubEnv),
		slotVar: slotVar,
		cmdline: orDefault(cfg.Cmdline, DefaultCmdline),
		log:     cfg.logger(),
	}
	return &Grub{machine{st: s, bootLimit: limit}}, nil
}

func (s *grubStore) load() (vars, Slot, error) {
	// grub-editenv lists a missing file as empty; that must not read as
	// "slot a, committed".
	if _, err := os.Stat(s.file); errors.Is(err, fs.ErrNotExist) {
		return vars{}, "", fmt.Errorf("%w: grubenv %s does not exist: create it with grub-editenv %s create", ErrEnvironment, s.file, s.file)
	} else if err != nil {
		return vars{}, "", fmt.Errorf("%w: %v", ErrEnvironment, err)
	}
	v, err := s.list(s.file)
	if err != nil {
		return vars{}, "", err
	}
	booted, err := bootedFromCmdline(s.cmdline)
	if err != nil {
		return vars{}, "", err
	}
	return v, booted, nil
}

func (s *grubStore) list(file string) (vars, error) {
	out, errOut, err := s.editenv.run(file, "list")
	if err != nil {
		if errors.Is(err, ErrToolMissing) {
			return vars{}, err
		}
		return vars{}, fmt.Errorf("%w: grub-editenv %s list: %v: %s", ErrEnvironment, file, err, oneLine(errOut))
	}
	if len(errOut) > 0 {
		s.log.Warn("grub-editenv", "file", file, "stderr", oneLine(errOut))
	}
	env, err := parseEnvLines(out)
	if err != nil {
		return vars{}, fmt.Errorf("%w: grub-editenv %s list: %v", ErrEnvironment, file, err)
	}
	return parseVars(env, s.slotVar)
}

func (s *grubStore) save(v vars, _ Slot) error {
	orig, err := os.ReadFile(s.file)
	if err != nil {
		return err
	}
	info, err := os.Stat(s.file)
	if err != nil {
		return err
	}
	dir := filepath.Dir(s.file)
	f, err := os.CreateTemp(dir, "."+filepath.Base(s.file)+".tmp-*")
	if err != nil {
		return fmt.Errorf("write %s: %w", s.file, err)
	}
	tmp := f.Name()
	defer os.Remove(tmp) // a no-op after the rename
	_, err = f.Write(orig)
	if err == nil {
		err = f.Chmod(info.Mode().Perm())
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("write %s: %w", s.file, err)
	}
	// One grub-editenv run writes every variable in one 1024-byte block,
	// and fsyncs it.
	args := append([]string{tmp, "set"}, envLines(v, s.slotVar)...)
	if _, errOut, err := s.editenv.run(args...); err != nil {
		return fmt.Errorf("grub-editenv %s set: %w: %s", tmp, err, oneLine(errOut))
	}
	got, err := s.list(tmp)
	if err != nil {
		return fmt.Errorf("reading back after grub-editenv: %w", err)
	}
	if got != v {
		return fmt.Errorf("grub-editenv set exited 0, but the copy reads %s, not %s",
			strings.Join(envLines(got, s.slotVar), " "), strings.Join(envLines(v, s.slotVar), " "))
	}
	if err := os.Rename(tmp, s.file); err != nil {
		return fmt.Errorf("write %s: %w", s.file, err)
	}
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("write %s: sync directory: %w", s.file, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("write %s: sync directory: %w", s.file, err)
	}
	return nil
}
