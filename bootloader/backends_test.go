package bootloader

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

func TestNewRefusesBadConfig(t *testing.T) {
	dir := t.TempDir()
	for _, c := range []struct {
		name string
		cfg  Config
		want string
	}{
		{"error/no backend", Config{}, "Config.Backend is empty"},
		{"error/unknown backend", Config{Backend: "lilo"}, `unknown backend "lilo"`},
		{"error/negative boot limit", Config{Backend: BackendFile, BootLimit: -1}, "Config.BootLimit -1"},
		{"error/grub boot limit above the grub.cfg chain", Config{Backend: BackendGrub, BootLimit: MaxGrubBootLimit + 1}, "Config.BootLimit 10: want 1 to 9"},
		{"error/slot variable with a blank", Config{Backend: BackendUBoot, SlotVar: "sphere slot"}, `Config.SlotVar "sphere slot"`},
		{"error/slot variable is bootcount", Config{Backend: BackendGrub, SlotVar: "bootcount"}, "one of the bootcount variables"},
		{"error/fw_printenv missing", Config{Backend: BackendUBoot, FwPrintenv: filepath.Join(dir, "fw_printenv")},
			"fw_printenv not found: install u-boot-tools"},
		{"error/fw_setenv missing", Config{Backend: BackendUBoot, FwPrintenv: "/bin/true", FwSetenv: filepath.Join(dir, "fw_setenv")},
			"fw_setenv not found: install u-boot-tools"},
		{"error/grub-editenv missing", Config{Backend: BackendGrub, GrubEditenv: filepath.Join(dir, "grub-editenv")},
			"grub-editenv not found: install grub-common"},
		{"error/fw_env.config missing", Config{Backend: BackendUBoot, FwPrintenv: "/bin/true", FwSetenv: "/bin/true", FwEnvConfig: filepath.Join(dir, "fw_env.config")},
			"fw_env config: stat " + filepath.Join(dir, "fw_env.config") + ": no such file"},
	} {
		t.Run(c.name, func(t *testing.T) {
			b, err := New(c.cfg)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("New: got %v, want an error with %q", err, c.want)
			}
			if b != nil {
				t.Fatalf("New returned %#v with the error, want a nil Bootloader", b)
			}
			if strings.Contains(c.want, "not found") && !errors.Is(err, ErrToolMissing) {
				t.Fatalf("error %v is not ErrToolMissing", err)
			}
		})
	}
}

func TestParseSlot(t *testing.T) {
	for _, c := range []struct {
		in   string
		want Slot
		ok   bool
	}{{"a", SlotA, true}, {"b", SlotB, true}, {"", "", false}, {"A", "", false}, {"a ", "", false}, {"c", "", false}} {
		got, err := ParseSlot(c.in)
		if got != c.want || (err == nil) != c.ok {
			t.Errorf("ParseSlot(%q) = %q, %v; want %q, ok=%v", c.in, got, err, c.want, c.ok)
		}
		if err != nil && !errors.Is(err, ErrInvalidSlot) {
			t.Errorf("ParseSlot(%q): %v is not ErrInvalidSlot", c.in, err)
		}
	}
	if SlotA.Other() != SlotB || SlotB.Other() != SlotA || Slot("c").Other() != "" {
		t.Error("Other is wrong")
	}
}

// Boot's read-modify-write holds the same lock as the engine's calls: 40
// concurrent boots count 40.
func TestFileBootSerialized(t *testing.T) {
	f, err := NewFile(Config{StateFile: filepath.Join(t.TempDir(), "state.json"), BootLimit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	must(t, "TryNext(b)", f.TryNext(SlotB))
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 5 {
				if _, err := f.Boot(); err != nil {
					t.Error(err)
				}
				if _, err := f.State(); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	wantState(t, f, State{Booted: SlotB, Committed: SlotA, Next: SlotB, Trial: true, BootCount: 40, BootLimit: 1000})
}

func TestFileStateRefusesGarbage(t *testing.T) {
	for _, c := range []struct{ name, data string }{
		{"not JSON", "slot=a\n"},
		{"unknown field", `{"slot":"a","extra":1}`},
		{"trailing data", `{"slot":"a"}{"slot":"b"}`},
		{"trailing brace", `{"slot":"a"}}`},
		{"missing slot", `{"upgrade_available":false}`},
		{"bad booted", `{"slot":"a","booted":"c"}`},
		{"negative count", `{"slot":"a","bootcount":-1}`},
		{"empty file", ``},
	} {
		t.Run("error/"+c.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "state.json")
			writeFile(t, path, c.data)
			f, err := NewFile(Config{StateFile: path})
			if err != nil {
				t.Fatal(err)
			}
			_, err = f.State()
			wantErr(t, "State", err, ErrEnvironment)
			if !strings.Contains(err.Error(), "fix or remove the file") {
				t.Errorf("error %q does not say what to do", err)
			}
		})
	}
}

// Without sphere.slot= on the kernel command line the booted slot is
// inferred: an armed trial that no boot has counted yet is not running.
func TestUBootInfersBootedSlotWithoutCmdline(t *testing.T) {
	config := ubootEnv(t, false)
	cmdline := filepath.Join(t.TempDir(), "cmdline")
	writeFile(t, cmdline, "console=ttyS0 root=/dev/mmcblk0p2\n")
	u, err := NewUBoot(Config{FwEnvConfig: config, Cmdline: cmdline})
	if err != nil {
		t.Fatal(err)
	}
	must(t, "TryNext(b)", u.TryNext(SlotB))
	wantState(t, u, State{Booted: SlotA, Committed: SlotA, Next: SlotB, BootLimit: DefaultBootLimit})
	v, _, err := u.st.load()
	must(t, "load", err)
	v, _ = bootStep(v)
	must(t, "the bootloader's boot", u.st.save(v, ""))
	wantState(t, u, State{Booted: SlotB, Committed: SlotA, Next: SlotB, Trial: true, BootCount: 1, BootLimit: DefaultBootLimit})
	must(t, "Commit", u.Commit())
	wantState(t, u, State{Booted: SlotB, Committed: SlotB, Next: SlotB, BootLimit: DefaultBootLimit})

	writeFile(t, cmdline, "console=ttyS0 sphere.slot=c\n")
	_, err = u.State()
	wantErr(t, "State with sphere.slot=c", err, ErrInvalidSlot)
}

// The rest of the environment (bootcmd, bootdelay) is left as it was, in
// both copies of a redundant environment.
func TestUBootKeepsOtherVariables(t *testing.T) {
	for _, redundant := range []bool{false, true} {
		config := ubootEnv(t, redundant)
		u, err := NewUBoot(Config{FwEnvConfig: config, Cmdline: filepath.Join(t.TempDir(), "cmdline")})
		if err != nil {
			t.Fatal(err)
		}
		must(t, "TryNext(b)", u.TryNext(SlotB))
		must(t, "Rollback", u.Rollback())
		must(t, "TryNext(b)", u.TryNext(SlotB))
		out := runTool(t, "fw_printenv", "-c", config)
		for _, want := range []string{"bootcmd=run sphere_boot\n", "bootdelay=0\n", "sphere_slot=b\n", "upgrade_available=1\n", "bootcount=0\n", "bootlimit=3\n"} {
			if !strings.Contains(out, want) {
				t.Errorf("redundant=%v: fw_printenv shows\n%s\nwithout %q", redundant, out, want)
			}
		}
	}
}

func TestUBootUnreadableEnvironment(t *testing.T) {
	needTools(t, "fw_printenv", "fw_setenv")
	dir := t.TempDir()
	env := filepath.Join(dir, "env.bin")
	writeFile(t, env, strings.Repeat("\x00", 0x4000)) // erased, no valid CRC
	config := filepath.Join(dir, "fw_env.config")
	writeFile(t, config, env+" 0x0 0x4000\n")
	if _, err := os.Stat("/etc/u-boot-initial-env"); err == nil {
		t.Skip("/etc/u-boot-initial-env exists: libubootenv would read it as the default environment")
	}
	u, err := NewUBoot(Config{FwEnvConfig: config})
	if err != nil {
		t.Fatal(err)
	}
	_, err = u.State()
	wantErr(t, "State", err, ErrEnvironment)
	if !strings.Contains(err.Error(), "fw_printenv -c "+config) || !strings.Contains(err.Error(), "Cannot read environment") {
		t.Errorf("error %q does not name the command and the tool's complaint", err)
	}
	wantErr(t, "TryNext", u.TryNext(SlotB), ErrEnvironment)
}

// A FAKE fw_setenv that exits 0 and writes nothing, as a tool that skips
// script lines it does not understand does: the read-back catches it.
func TestUBootCatchesIgnoredScript(t *testing.T) {
	config := ubootEnv(t, false)
	fake := filepath.Join(t.TempDir(), "fw_setenv")
	writeFile(t, fake, "#!/bin/sh\nexit 0\n")
	must(t, "chmod", os.Chmod(fake, 0o755))
	u, err := NewUBoot(Config{FwEnvConfig: config, FwSetenv: fake, Cmdline: filepath.Join(t.TempDir(), "cmdline")})
	if err != nil {
		t.Fatal(err)
	}
	err = u.TryNext(SlotB)
	if err == nil || !strings.Contains(err.Error(), "does this fw_setenv read name=value script lines?") {
		t.Fatalf("TryNext with a fw_setenv that ignores its script: got %v", err)
	}
}

func TestUBootScriptFilesRemoved(t *testing.T) {
	config := ubootEnv(t, false)
	tmp := t.TempDir()
	u, err := NewUBoot(Config{FwEnvConfig: config, TempDir: tmp, Cmdline: filepath.Join(t.TempDir(), "cmdline")})
	if err != nil {
		t.Fatal(err)
	}
	must(t, "TryNext(b)", u.TryNext(SlotB))
	if left, _ := os.ReadDir(tmp); len(left) != 0 {
		t.Fatalf("left in TempDir: %v", left)
	}
}

func TestGrubEnvironmentProblems(t *testing.T) {
	needTools(t, "grub-editenv")
	dir := t.TempDir()
	missing := filepath.Join(dir, "missing")
	g, err := NewGrub(Config{GrubEnv: missing})
	if err != nil {
		t.Fatal(err)
	}
	_, err = g.State()
	wantErr(t, "State of a missing grubenv", err, ErrEnvironment)
	if !strings.Contains(err.Error(), "create it with grub-editenv "+missing+" create") {
		t.Errorf("error %q does not say how to create the file", err)
	}
	junk := filepath.Join(dir, "junk")
	writeFile(t, junk, strings.Repeat("x", 1024))
	g, err = NewGrub(Config{GrubEnv: junk})
	if err != nil {
		t.Fatal(err)
	}
	_, err = g.State()
	wantErr(t, "State of a junk grubenv", err, ErrEnvironment)
	if !strings.Contains(err.Error(), "invalid environment block") {
		t.Errorf("error %q does not pass on grub-editenv's complaint", err)
	}
	wantErr(t, "TryNext on a junk grubenv", g.TryNext(SlotB), ErrEnvironment)
	if data, _ := os.ReadFile(junk); string(data) != strings.Repeat("x", 1024) {
		t.Error("the junk grubenv was changed")
	}
}

// A change replaces the grubenv whole: same size and mode, other variables
// kept, no temporary file left beside it.
func TestGrubWriteReplacesFile(t *testing.T) {
	file := grubEnv(t)
	must(t, "chmod", os.Chmod(file, 0o640))
	g, err := NewGrub(Config{GrubEnv: file, Cmdline: filepath.Join(t.TempDir(), "cmdline")})
	if err != nil {
		t.Fatal(err)
	}
	must(t, "TryNext(b)", g.TryNext(SlotB))
	info, err := os.Stat(file)
	must(t, "stat", err)
	if info.Size() != 1024 || info.Mode().Perm() != 0o640 {
		t.Errorf("grubenv is %d bytes, mode %v; want 1024 bytes, mode 0640", info.Size(), info.Mode().Perm())
	}
	out := runTool(t, "grub-editenv", file, "list")
	want := "saved_entry=sphere\nsphere_slot=b\nupgrade_available=1\nbootcount=0\nbootlimit=3\n"
	if out != want {
		t.Errorf("grub-editenv list:\n%s\nwant\n%s", out, want)
	}
	if left, _ := os.ReadDir(filepath.Dir(file)); len(left) != 1 {
		t.Errorf("directory holds %v, want only grubenv", left)
	}
}
