package bootloader

import (
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// rig is one backend under test, with the bootloader's own part played by
// the test: reboot does what U-Boot's bootcount code and altbootcmd, the
// grub.cfg snippet, or File.Boot do at power-on, through the same real
// tools, and for uboot and grub passes sphere.slot= on a kernel command
// line file as the boot scripts in docs/bootloader.md do.
type rig struct {
	b      Bootloader
	reboot func(t *testing.T) Slot
	reopen func(t *testing.T) Bootloader          // the agent restarted
	setRaw func(t *testing.T, name, value string) // a variable written behind the package's back
}

// toolPackage is the Debian package of each tool the tests run.
var toolPackage = map[string]string{
	"fw_printenv": "libubootenv-tool", "fw_setenv": "libubootenv-tool", "mkenvimage": "u-boot-tools",
	"grub-editenv": "grub-common", "grub-emu": "grub-emu", "mkfs.vfat": "dosfstools", "mcopy": "mtools",
}

// needTools skips the test when a tool is missing, unless
// SPHERE_TEST_BOOTLOADER is set (CI sets it), when it fails instead.
func needTools(t *testing.T, tools ...string) {
	t.Helper()
	for _, name := range tools {
		if _, err := exec.LookPath(name); err != nil {
			msg := name + " not installed (apt-get install -y " + toolPackage[name] + ")"
			if os.Getenv("SPHERE_TEST_BOOTLOADER") != "" {
				t.Fatal(msg + "; SPHERE_TEST_BOOTLOADER is set, so this is a failure")
			}
			t.Skip(msg + "; set SPHERE_TEST_BOOTLOADER=1 to make this a failure")
		}
	}
}

func runTool(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v: %s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

func writeFile(t *testing.T, path, data string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}

const testBootLimit = 3

func fileRig(t *testing.T) *rig {
	cfg := Config{Backend: BackendFile, StateFile: filepath.Join(t.TempDir(), "bootloader.json"), BootLimit: testBootLimit}
	b, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	f := b.(*File)
	return &rig{
		b: b,
		reboot: func(t *testing.T) Slot {
			s, err := f.Boot()
			if err != nil {
				t.Fatalf("Boot: %v", err)
			}
			return s
		},
		reopen: func(t *testing.T) Bootloader {
			b, err := New(cfg)
			if err != nil {
				t.Fatal(err)
			}
			return b
		},
		setRaw: func(t *testing.T, name, value string) {
			doc := map[string]any{"slot": "a", "upgrade_available": false, "bootcount": 0, "bootlimit": 0}
			if data, err := os.ReadFile(cfg.StateFile); err == nil {
				if err := json.Unmarshal(data, &doc); err != nil {
					t.Fatal(err)
				}
			}
			key := map[string]string{DefaultSlotVar: "slot", varUpgrade: "upgrade_available"}[name]
			if key == "" {
				key = name
			}
			switch {
			case key == "upgrade_available" && (value == "0" || value == "1"):
				doc[key] = value == "1"
			case key != "slot" && value != "" && strings.Trim(value, "-0123456789") == "":
				doc[key] = json.Number(value)
			default:
				doc[key] = value // a string where a number or bool belongs is bad too
			}
			data, _ := json.Marshal(doc)
			writeFile(t, cfg.StateFile, string(data))
		},
	}
}

// envRig completes a rig for the uboot and grub backends: the simulated
// boot runs bootStep over the store and writes the kernel command line.
func envRig(t *testing.T, cfg Config, setRaw func(t *testing.T, name, value string)) *rig {
	b, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	var st store
	switch b := b.(type) {
	case *UBoot:
		st = b.st
	case *Grub:
		st = b.st
	}
	return &rig{
		b: b,
		reboot: func(t *testing.T) Slot {
			v, _, err := st.load()
			if err != nil {
				t.Fatalf("bootloader's boot: %v", err)
			}
			v, booted := bootStep(v)
			if err := st.save(v, booted); err != nil {
				t.Fatalf("bootloader's boot: %v", err)
			}
			writeFile(t, cfg.Cmdline, "console=ttyS0,115200 rootwait ro "+cmdlineParam+"="+string(booted)+"\n")
			return booted
		},
		reopen: func(t *testing.T) Bootloader {
			b, err := New(cfg)
			if err != nil {
				t.Fatal(err)
			}
			return b
		},
		setRaw: setRaw,
	}
}

// ubootEnv makes a file-backed U-Boot environment with mkenvimage and the
// fw_env.config for it: one copy, or two for a redundant environment.
func ubootEnv(t *testing.T, redundant bool) (config string) {
	needTools(t, "fw_printenv", "fw_setenv", "mkenvimage")
	dir := t.TempDir()
	initial := filepath.Join(dir, "initial-env.txt")
	writeFile(t, initial, "bootcmd=run sphere_boot\nbootdelay=0\n")
	config = filepath.Join(dir, "fw_env.config")
	if !redundant {
		runTool(t, "mkenvimage", "-s", "0x4000", "-o", filepath.Join(dir, "env.bin"), initial)
		writeFile(t, config, filepath.Join(dir, "env.bin")+" 0x0 0x4000\n")
		return config
	}
	runTool(t, "mkenvimage", "-r", "-s", "0x4000", "-o", filepath.Join(dir, "env1.bin"), initial)
	runTool(t, "mkenvimage", "-r", "-s", "0x4000", "-o", filepath.Join(dir, "env2.bin"), initial)
	writeFile(t, config, filepath.Join(dir, "env1.bin")+" 0x0 0x4000\n"+filepath.Join(dir, "env2.bin")+" 0x0 0x4000\n")
	return config
}

func ubootRig(redundant bool) func(t *testing.T) *rig {
	return func(t *testing.T) *rig {
		config := ubootEnv(t, redundant)
		cfg := Config{
			Backend: BackendUBoot, FwEnvConfig: config, BootLimit: testBootLimit,
			Cmdline: filepath.Join(t.TempDir(), "cmdline"), TempDir: t.TempDir(),
		}
		return envRig(t, cfg, func(t *testing.T, name, value string) {
			// A script, not argv: fw_setenv would take a value of -1 for an option.
			script := filepath.Join(t.TempDir(), "script")
			writeFile(t, script, name+"="+value+"\n")
			runTool(t, "fw_setenv", "-c", config, "-s", script)
		})
	}
}

func grubEnv(t *testing.T) string {
	needTools(t, "grub-editenv")
	file := filepath.Join(t.TempDir(), "grubenv")
	runTool(t, "grub-editenv", file, "create")
	runTool(t, "grub-editenv", file, "set", "saved_entry=sphere")
	return file
}

func grubRig(t *testing.T) *rig {
	file := grubEnv(t)
	cfg := Config{Backend: BackendGrub, GrubEnv: file, BootLimit: testBootLimit, Cmdline: filepath.Join(t.TempDir(), "cmdline")}
	return envRig(t, cfg, func(t *testing.T, name, value string) {
		runTool(t, "grub-editenv", file, "set", name+"="+value)
	})
}

var rigs = []struct {
	name string
	open func(t *testing.T) *rig
}{
	{"file", fileRig},
	{"uboot", ubootRig(false)},
	{"uboot/redundant", ubootRig(true)},
	{"grub", grubRig},
}

func wantState(t *testing.T, b Bootloader, want State) {
	t.Helper()
	got, err := b.State()
	if err != nil {
		t.Fatalf("State: %v", err)
	}
	if got != want {
		t.Fatalf("State:\n got %+v\nwant %+v", got, want)
	}
}

func wantErr(t *testing.T, what string, err, want error) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Fatalf("%s: got error %v, want %v", what, err, want)
	}
}

func must(t *testing.T, what string, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

func wantSlot(t *testing.T, what string, got Slot, err error, want Slot) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	if got != want {
		t.Fatalf("%s = %q, want %q", what, got, want)
	}
}

var conformance = []struct {
	name string
	run  func(t *testing.T, r *rig)
}{
	{"initial state", func(t *testing.T, r *rig) {
		wantState(t, r.b, State{Booted: SlotA, Committed: SlotA, Next: SlotA})
		s, err := r.b.Active()
		wantSlot(t, "Active", s, err, SlotA)
		s, err = r.b.Inactive()
		wantSlot(t, "Inactive", s, err, SlotB)
		must(t, "Commit with nothing on trial (a no-op)", r.b.Commit())
		wantErr(t, "Rollback with nothing on trial", r.b.Rollback(), ErrNoTrial)
		if s := r.reboot(t); s != SlotA {
			t.Fatalf("reboot started %s, want a", s)
		}
		wantState(t, r.b, State{Booted: SlotA, Committed: SlotA, Next: SlotA})
	}},
	{"TryNext(b) makes the next boot a trial of b", func(t *testing.T, r *rig) {
		must(t, "TryNext(b)", r.b.TryNext(SlotB))
		wantState(t, r.b, State{Booted: SlotA, Committed: SlotA, Next: SlotB, BootLimit: testBootLimit})
		must(t, "TryNext(b) again before the reboot", r.b.TryNext(SlotB))
		wantState(t, r.reopen(t), State{Booted: SlotA, Committed: SlotA, Next: SlotB, BootLimit: testBootLimit})
		if s := r.reboot(t); s != SlotB {
			t.Fatalf("reboot started %s, want b", s)
		}
		wantState(t, r.b, State{Booted: SlotB, Committed: SlotA, Next: SlotB, Trial: true, BootCount: 1, BootLimit: testBootLimit})
		s, err := r.b.Active()
		wantSlot(t, "Active", s, err, SlotB)
		_, err = r.b.Inactive()
		wantErr(t, "Inactive during the trial", err, ErrTrial)
		wantErr(t, "TryNext(a) during the trial", r.b.TryNext(SlotA), ErrTrial)
	}},
	{"trial boots count up and revert after the limit", func(t *testing.T, r *rig) {
		must(t, "TryNext(b)", r.b.TryNext(SlotB))
		for n := 1; n <= testBootLimit; n++ {
			if s := r.reboot(t); s != SlotB {
				t.Fatalf("trial boot %d started %s, want b", n, s)
			}
			wantState(t, r.b, State{Booted: SlotB, Committed: SlotA, Next: SlotB, Trial: true, BootCount: n, BootLimit: testBootLimit})
		}
		if s := r.reboot(t); s != SlotA {
			t.Fatalf("boot past the limit started %s, want the fallback a", s)
		}
		wantState(t, r.b, State{Booted: SlotA, Committed: SlotA, Next: SlotA, BootLimit: testBootLimit})
		if s := r.reboot(t); s != SlotA {
			t.Fatalf("next boot started %s, want a", s)
		}
		s, err := r.b.Inactive()
		wantSlot(t, "Inactive after the fallback", s, err, SlotB)
		must(t, "TryNext(b) once more", r.b.TryNext(SlotB))
	}},
	{"Commit after a successful trial", func(t *testing.T, r *rig) {
		must(t, "TryNext(b)", r.b.TryNext(SlotB))
		r.reboot(t)
		r.reboot(t) // a trial may take more than one boot to get healthy
		must(t, "Commit", r.b.Commit())
		wantState(t, r.b, State{Booted: SlotB, Committed: SlotB, Next: SlotB, BootLimit: testBootLimit})
		must(t, "Commit again", r.b.Commit())
		for range testBootLimit + 1 {
			if s := r.reboot(t); s != SlotB {
				t.Fatalf("reboot after Commit started %s, want b", s)
			}
		}
		wantState(t, r.b, State{Booted: SlotB, Committed: SlotB, Next: SlotB, BootLimit: testBootLimit})
		s, err := r.b.Inactive()
		wantSlot(t, "Inactive", s, err, SlotA)
		// And the other way round.
		must(t, "TryNext(a)", r.b.TryNext(SlotA))
		r.reboot(t)
		wantState(t, r.b, State{Booted: SlotA, Committed: SlotB, Next: SlotA, Trial: true, BootCount: 1, BootLimit: testBootLimit})
		must(t, "Commit a", r.b.Commit())
		wantState(t, r.b, State{Booted: SlotA, Committed: SlotA, Next: SlotA, BootLimit: testBootLimit})
	}},
	{"Rollback during a trial", func(t *testing.T, r *rig) {
		must(t, "TryNext(b)", r.b.TryNext(SlotB))
		r.reboot(t)
		must(t, "Rollback", r.b.Rollback())
		wantState(t, r.b, State{Booted: SlotB, Committed: SlotA, Next: SlotA, BootLimit: testBootLimit})
		_, err := r.b.Inactive()
		wantErr(t, "Inactive before the reboot", err, ErrRebootRequired)
		wantErr(t, "TryNext(a) before the reboot", r.b.TryNext(SlotA), ErrRebootRequired)
		wantErr(t, "Commit before the reboot", r.b.Commit(), ErrRebootRequired)
		must(t, "Rollback again", r.b.Rollback())
		if s := r.reboot(t); s != SlotA {
			t.Fatalf("reboot after Rollback started %s, want a", s)
		}
		wantState(t, r.b, State{Booted: SlotA, Committed: SlotA, Next: SlotA, BootLimit: testBootLimit})
	}},
	{"Rollback cancels an armed TryNext", func(t *testing.T, r *rig) {
		must(t, "TryNext(b)", r.b.TryNext(SlotB))
		wantErr(t, "Commit before the trial boot", r.b.Commit(), ErrNoTrial)
		must(t, "Rollback", r.b.Rollback())
		wantState(t, r.b, State{Booted: SlotA, Committed: SlotA, Next: SlotA, BootLimit: testBootLimit})
		if s := r.reboot(t); s != SlotA {
			t.Fatalf("reboot started %s, want a", s)
		}
	}},
	{"bad slot names refused", func(t *testing.T, r *rig) {
		for _, s := range []Slot{"", "c", "A", "B", " a", "a\n", "b=1", "ab", "slot_b"} {
			wantErr(t, "TryNext("+string(s)+")", r.b.TryNext(s), ErrInvalidSlot)
		}
		wantErr(t, "TryNext(a), the booted slot", r.b.TryNext(SlotA), ErrBootedSlot)
		wantState(t, r.b, State{Booted: SlotA, Committed: SlotA, Next: SlotA})
	}},
	{"bad values in the environment refused", func(t *testing.T, r *rig) {
		for _, c := range []struct{ name, value string }{
			{DefaultSlotVar, "c"}, {DefaultSlotVar, "A"},
			{varUpgrade, "2"}, {varBootCount, "x"}, {varBootLimit, "-1"},
		} {
			r.setRaw(t, c.name, c.value)
			_, err := r.b.State()
			wantErr(t, c.name+"="+c.value, err, ErrEnvironment)
			if c.name == DefaultSlotVar && !strings.Contains(err.Error(), strconv.Quote(c.value)) {
				t.Errorf("error %q does not show the bad value %q", err, c.value)
			}
			wantErr(t, "TryNext with "+c.name+"="+c.value, r.b.TryNext(SlotB), ErrEnvironment)
			reset := "0"
			if c.name == DefaultSlotVar {
				reset = "a"
			}
			r.setRaw(t, c.name, reset)
			wantState(t, r.b, State{Booted: SlotA, Committed: SlotA, Next: SlotA})
		}
	}},
	{"concurrent calls are serialized", func(t *testing.T, r *rig) {
		var wg sync.WaitGroup
		errs := make(chan error, 100)
		for g := range 6 {
			wg.Go(func() {
				for i := range 5 {
					var err error
					switch (g + i) % 4 {
					case 0:
						err = r.b.TryNext(SlotB)
					case 1:
						if err = r.b.Rollback(); errors.Is(err, ErrNoTrial) {
							err = nil
						}
					case 2:
						var st State
						if st, err = r.b.State(); err == nil && (st.Booted != SlotA || st.Committed != SlotA || st.Trial || st.BootCount != 0) {
							t.Errorf("State mid-way: %+v", st)
						}
					case 3:
						var s Slot
						if s, err = r.b.Active(); err == nil && s != SlotA {
							t.Errorf("Active mid-way: %s", s)
						}
					}
					if err != nil {
						errs <- err
					}
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
	}},
}

func TestConformance(t *testing.T) {
	for _, backend := range rigs {
		t.Run(backend.name, func(t *testing.T) {
			for _, c := range conformance {
				t.Run(c.name, func(t *testing.T) { c.run(t, backend.open(t)) })
			}
		})
	}
}
