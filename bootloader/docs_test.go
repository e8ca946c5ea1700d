package bootloader

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// docBlock returns the fenced block that follows "<!-- test: NAME -->" in
// docs/bootloader.md, so the tests run what the page tells people to use.
func docBlock(t *testing.T, name string) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("..", "docs", "bootloader.md"))
	if err != nil {
		t.Fatal(err)
	}
	doc := string(data)
	_, after, ok := strings.Cut(doc, "<!-- test: "+name+" -->\n```\n")
	if !ok {
		t.Fatalf("docs/bootloader.md has no block marked %q", name)
	}
	block, _, ok := strings.Cut(after, "```\n")
	if !ok {
		t.Fatalf("docs/bootloader.md: block %q is not closed", name)
	}
	return block
}

// The U-Boot environment on the page is well-formed name=value text,
// makes a valid image with mkenvimage, and reads as slot a committed.
func TestDocUBootEnvironment(t *testing.T) {
	needTools(t, "fw_printenv", "fw_setenv", "mkenvimage")
	text := docBlock(t, "uboot env")
	env, err := parseEnvLines([]byte(text))
	if err != nil {
		t.Fatalf("the page's environment is not name=value lines: %v", err)
	}
	for _, name := range []string{"bootcmd", "altbootcmd", "bootlimit", DefaultSlotVar} {
		if env[name] == "" {
			t.Errorf("the page's environment sets no %s", name)
		}
	}
	dir := t.TempDir()
	initial := filepath.Join(dir, "env.txt")
	writeFile(t, initial, text)
	runTool(t, "mkenvimage", "-r", "-s", "0x4000", "-o", filepath.Join(dir, "env1.bin"), initial)
	runTool(t, "mkenvimage", "-r", "-s", "0x4000", "-o", filepath.Join(dir, "env2.bin"), initial)
	config := filepath.Join(dir, "fw_env.config")
	writeFile(t, config, filepath.Join(dir, "env1.bin")+" 0x0 0x4000\n"+filepath.Join(dir, "env2.bin")+" 0x0 0x4000\n")
	u, err := NewUBoot(Config{FwEnvConfig: config, Cmdline: filepath.Join(dir, "cmdline")})
	if err != nil {
		t.Fatal(err)
	}
	wantState(t, u, State{Booted: SlotA, Committed: SlotA, Next: SlotA, BootLimit: 3})
	must(t, "TryNext(b)", u.TryNext(SlotB))
	if got := runTool(t, "fw_printenv", "-c", config, "-n", "altbootcmd"); got != env["altbootcmd"]+"\n" {
		t.Errorf("altbootcmd after TryNext:\n%s\nwant\n%s", got, env["altbootcmd"])
	}
}

// grubEmuRig is the grub backend with the real GRUB as the bootloader:
// each reboot runs the grub.cfg snippet from docs/bootloader.md in
// grub-emu, with the grubenv on a FAT image that GRUB's save_env writes.
func grubEmuRig(t *testing.T) *rig {
	needTools(t, "grub-editenv", "grub-emu", "mkfs.vfat", "mcopy")
	dir := t.TempDir()
	file := grubEnv(t)
	disk := filepath.Join(dir, "disk.img")
	if err := os.WriteFile(disk, make([]byte, 4<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	runTool(t, "mkfs.vfat", disk)
	deviceMap := filepath.Join(dir, "device.map")
	writeFile(t, deviceMap, "(hd0) "+disk+"\n")
	grubDir := filepath.Join(dir, "grub")
	if err := os.Mkdir(grubDir, 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(grubDir, "grub.cfg"),
		"set sphere_env=(hd0)/grubenv\n"+docBlock(t, "grub.cfg")+"echo \"SPHERE_BOOTED=${sphere_slot}\"\nhalt\n")
	cfg := Config{Backend: BackendGrub, GrubEnv: file, BootLimit: testBootLimit, Cmdline: filepath.Join(dir, "cmdline")}
	r := envRig(t, cfg, func(t *testing.T, name, value string) {
		runTool(t, "grub-editenv", file, "set", name+"="+value)
	})
	booted := regexp.MustCompile(`SPHERE_BOOTED=(\S*)`)
	r.reboot = func(t *testing.T) Slot {
		t.Helper()
		t.Setenv("MTOOLS_SKIP_CHECK", "1")
		runTool(t, "mcopy", "-o", "-i", disk, file, "::grubenv")
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		out, err := exec.CommandContext(ctx, "grub-emu", "-d", grubDir, "-m", deviceMap, "-r", "host").CombinedOutput()
		if err != nil {
			t.Fatalf("grub-emu: %v: %q", err, out)
		}
		if strings.Contains(string(out), "error:") {
			t.Fatalf("grub-emu reported an error: %q", out)
		}
		m := booted.FindSubmatch(out)
		if m == nil {
			t.Fatalf("grub-emu printed no SPHERE_BOOTED: %q", out)
		}
		runTool(t, "mcopy", "-o", "-i", disk, "::grubenv", file)
		slot := Slot(m[1])
		writeFile(t, cfg.Cmdline, "BOOT_IMAGE=/boot/vmlinuz ro "+cmdlineParam+"="+string(slot)+"\n")
		return slot
	}
	return r
}

func init() {
	rigs = append(rigs, struct {
		name string
		open func(t *testing.T) *rig
	}{"grub+grub-emu", grubEmuRig})
}

// The grub.cfg snippet counts only to 10; a bootlimit above that, which
// this package never writes, must still end in a fallback, not in trial
// boots for ever.
func TestDocGrubSnippetFallsBackWithLargeBootLimit(t *testing.T) {
	r := grubEmuRig(t)
	must(t, "TryNext(b)", r.b.TryNext(SlotB))
	r.setRaw(t, varBootLimit, "12")
	for n := 1; n <= 9; n++ {
		if s := r.reboot(t); s != SlotB {
			t.Fatalf("trial boot %d started %s, want b", n, s)
		}
	}
	if s := r.reboot(t); s != SlotA {
		t.Fatalf("trial boot 10 started %s, want the fallback a", s)
	}
	wantState(t, r.b, State{Booted: SlotA, Committed: SlotA, Next: SlotA, BootLimit: 12})
}
