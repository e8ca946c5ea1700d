package bootloader

import (
	"encoding/json"
	"errors"
	"maps"
	"os/exec"
	"slices"
	"strings"
	"testing"
)

func TestParseEnvLines(t *testing.T) {
	for _, c := range []struct {
		name, out string
		want      map[string]string
		err       string
	}{
		{"ok/empty", "", map[string]string{}, ""},
		{"ok/libubootenv with unset variables", "sphere_slot=\nupgrade_available=1\nbootcount=\n",
			map[string]string{"sphere_slot": "", "upgrade_available": "1", "bootcount": ""}, ""},
		{"ok/value with = and blanks", "bootargs=console=ttyS0 root=/dev/mmcblk0p2\n",
			map[string]string{"bootargs": "console=ttyS0 root=/dev/mmcblk0p2"}, ""},
		{"ok/U-Boot names", "serial#=1234\n.flags=bootcount:dw\n", map[string]string{"serial#": "1234", ".flags": "bootcount:dw"}, ""},
		{"error/cut short", "sphere_slot=a", nil, "does not end with a newline"},
		{"error/value with a newline", "a=1\nb=x\ny\n", nil, `line 3 "y": want name=value`},
		{"error/no name", "=1\n", nil, "want name=value"},
		{"error/blank line", "a=1\n\n", nil, "want name=value"},
		{"error/blank in name", "sphere slot=a\n", nil, "blank or control character"},
		{"error/control character in name", "a\x01=1\n", nil, "blank or control character"},
		{"error/NUL in value", "a=1\x00\n", nil, "NUL"},
		{"error/twice", "a=1\na=2\n", nil, "variable a given twice"},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, err := parseEnvLines([]byte(c.out))
			if c.err != "" {
				if err == nil || !strings.Contains(err.Error(), c.err) {
					t.Fatalf("got %v, %v; want an error with %q", got, err, c.err)
				}
				return
			}
			if err != nil || !maps.Equal(got, c.want) {
				t.Fatalf("got %v, %v; want %v", got, err, c.want)
			}
		})
	}
}

// exitError returns a real *exec.ExitError with the given status.
func exitError(t *testing.T, status string) error {
	err := exec.Command("/bin/sh", "-c", "exit "+status).Run()
	var exit *exec.ExitError
	if !errors.As(err, &exit) {
		t.Fatalf("sh exit %s: %v", status, err)
	}
	return err
}

func TestParsePrintenv(t *testing.T) {
	names := []string{"sphere_slot", "upgrade_available", "bootcount", "bootlimit"}
	for _, c := range []struct {
		name           string
		stdout, stderr string
		exit           string
		want           map[string]string
		err            string
	}{
		{name: "ok/libubootenv, all unset", stdout: "sphere_slot=\nupgrade_available=\nbootcount=\nbootlimit=\n",
			want: map[string]string{"sphere_slot": "", "upgrade_available": "", "bootcount": "", "bootlimit": ""}},
		{name: "ok/libubootenv using its default environment", stdout: "sphere_slot=b\n", stderr: "Cannot read environment, using default\n",
			want: map[string]string{"sphere_slot": "b"}},
		{name: "ok/U-Boot's fw_printenv, two unset", stdout: "sphere_slot=b\nbootlimit=3\n",
			stderr: "## Error: \"upgrade_available\" not defined\n## Error: \"bootcount\" not defined\n", exit: "1",
			want: map[string]string{"sphere_slot": "b", "bootlimit": "3"}},
		{name: "error/unreadable", stderr: "Cannot read environment, using default\nCannot read default environment from file\n", exit: "243",
			err: "Cannot read default environment from file"},
		{name: "error/failed without a word", exit: "1", err: "exit status 1: no message"},
		{name: "error/not defined, but not asked for", stderr: "## Error: \"bootcmd\" not defined\n", exit: "1", err: "not defined"},
		{name: "error/a variable not asked for", stdout: "bootcmd=boot\n", err: `printed variable "bootcmd"`},
		{name: "error/garbage", stdout: "Segmentation fault\n", err: "want name=value"},
	} {
		t.Run(c.name, func(t *testing.T) {
			var runErr error
			if c.exit != "" {
				runErr = exitError(t, c.exit)
			}
			got, err := parsePrintenv([]byte(c.stdout), []byte(c.stderr), runErr, names)
			if c.err != "" {
				if err == nil || !strings.Contains(err.Error(), c.err) || !errors.Is(err, ErrEnvironment) {
					t.Fatalf("got %v, %v; want an ErrEnvironment with %q", got, err, c.err)
				}
				return
			}
			if err != nil || !maps.Equal(got, c.want) {
				t.Fatalf("got %v, %v; want %v", got, err, c.want)
			}
		})
	}
}

func TestParseCmdline(t *testing.T) {
	for _, c := range []struct {
		in   string
		want Slot
		ok   bool
	}{
		{"", "", true},
		{"console=ttyS0 root=/dev/mmcblk0p2 rootwait\n", "", true},
		{"console=ttyS0 sphere.slot=b rootwait\n", SlotB, true},
		{"sphere.slot=a sphere.slot=b", SlotB, true}, // the last one, as the kernel does
		{`sphere.slot="a"`, SlotA, true},
		{"xsphere.slot=a", "", true},
		{"sphere.slot=", "", false},
		{"sphere.slot=c", "", false},
		{"sphere.slot=A", "", false},
	} {
		got, err := parseCmdline([]byte(c.in))
		if got != c.want || (err == nil) != c.ok {
			t.Errorf("parseCmdline(%q) = %q, %v; want %q, ok=%v", c.in, got, err, c.want, c.ok)
		}
	}
}

// The bootloader's side of the scheme, as U-Boot's bootcount code and
// altbootcmd (and the grub.cfg snippet) do it.
func TestBootStep(t *testing.T) {
	for _, c := range []struct {
		name   string
		in     vars
		want   vars
		booted Slot
	}{
		{"no trial: nothing counted", vars{Slot: SlotB, BootCount: 7, BootLimit: 3}, vars{Slot: SlotB, BootCount: 7, BootLimit: 3}, SlotB},
		{"trial boot 1", vars{Slot: SlotB, Upgrade: true, BootLimit: 3}, vars{Slot: SlotB, Upgrade: true, BootCount: 1, BootLimit: 3}, SlotB},
		{"trial boot 3 of 3", vars{Slot: SlotB, Upgrade: true, BootCount: 2, BootLimit: 3}, vars{Slot: SlotB, Upgrade: true, BootCount: 3, BootLimit: 3}, SlotB},
		{"past the limit: fall back", vars{Slot: SlotB, Upgrade: true, BootCount: 3, BootLimit: 3}, vars{Slot: SlotA, BootLimit: 3}, SlotA},
		{"no bootlimit: never fall back (U-Boot's rule)", vars{Slot: SlotA, Upgrade: true, BootCount: 50}, vars{Slot: SlotA, Upgrade: true, BootCount: 51}, SlotA},
	} {
		got, booted := bootStep(c.in)
		if got != c.want || booted != c.booted {
			t.Errorf("%s: bootStep(%+v) = %+v, %s; want %+v, %s", c.name, c.in, got, booted, c.want, c.booted)
		}
	}
}

func FuzzParseEnvLines(f *testing.F) {
	for _, s := range []string{"", "a=1\n", "sphere_slot=\nbootcount=3\n", "a=1\nb=x\ny\n", "=\n", "a=b=c\n", "a=1\na=2\n", "x"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, out []byte) {
		env, err := parseEnvLines(out)
		if err != nil {
			return
		}
		// What parses is what the tools print: rendering it again in any
		// order parses to the same variables, and the A/B reading of it
		// either fails or gives values this package can write.
		var b strings.Builder
		for _, k := range slices.Sorted(maps.Keys(env)) {
			if k == "" || strings.ContainsAny(k, "=\n \t") || strings.ContainsAny(env[k], "\n\x00") {
				t.Fatalf("parsed %q=%q from %q", k, env[k], out)
			}
			b.WriteString(k + "=" + env[k] + "\n")
		}
		again, err := parseEnvLines([]byte(b.String()))
		if err != nil || !maps.Equal(env, again) {
			t.Fatalf("round trip of %q: %v, %v", out, again, err)
		}
		v, err := parseVars(env, DefaultSlotVar)
		if err != nil {
			if !errors.Is(err, ErrEnvironment) {
				t.Fatalf("parseVars error %v is not ErrEnvironment", err)
			}
			return
		}
		if !v.Slot.Valid() || v.BootCount < 0 || v.BootLimit < 0 {
			t.Fatalf("parseVars(%v) = %+v", env, v)
		}
		lines := envLines(v, DefaultSlotVar)
		written, err := parseEnvLines([]byte(strings.Join(lines, "\n") + "\n"))
		if err != nil {
			t.Fatal(err)
		}
		if v2, err := parseVars(written, DefaultSlotVar); err != nil || v2 != v {
			t.Fatalf("vars %+v written as %q read back as %+v, %v", v, lines, v2, err)
		}
	})
}

func FuzzParseCmdline(f *testing.F) {
	for _, s := range []string{"", "sphere.slot=a", "console=ttyS0 sphere.slot=b\n", `sphere.slot="b"`, "sphere.slot=", "sphere.slot=\"", "sphere.slot=c"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := parseCmdline(data)
		if err != nil {
			if !errors.Is(err, ErrInvalidSlot) {
				t.Fatalf("error %v is not ErrInvalidSlot", err)
			}
			return
		}
		if s != "" && !s.Valid() {
			t.Fatalf("parseCmdline(%q) = %q", data, s)
		}
	})
}

func FuzzDecodeFileState(f *testing.F) {
	for _, s := range []string{
		`{"slot":"a","upgrade_available":false,"bootcount":0,"bootlimit":0,"booted":"a"}`,
		`{"slot":"b","upgrade_available":true,"bootcount":2,"bootlimit":3}`,
		`{"slot":"c"}`, `{"slot":"a"}}`, `{}`, `null`, `[]`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		v, booted, err := decodeFileState(data)
		if err != nil {
			return
		}
		if !v.Slot.Valid() || (booted != "" && !booted.Valid()) || v.BootCount < 0 || v.BootLimit < 0 {
			t.Fatalf("decodeFileState(%q) = %+v, %q", data, v, booted)
		}
		out, err := json.Marshal(fileState{Slot: v.Slot, UpgradeAvailable: v.Upgrade, BootCount: v.BootCount, BootLimit: v.BootLimit, Booted: booted})
		if err != nil {
			t.Fatal(err)
		}
		v2, booted2, err := decodeFileState(out)
		if err != nil || v2 != v || booted2 != booted {
			t.Fatalf("round trip of %q: %+v %q %v", data, v2, booted2, err)
		}
	})
}
