package bootloader

import (
	"bytes"
	"fmt"
	"strconv"
)

// parseEnvLines parses the "name=value" lines that fw_printenv NAME... and
// grub-editenv FILE list print. It is strict: output cut short (no final
// newline), a line that is not name=value (such as the second line of a
// value holding a newline), a name with blanks or control characters, a NUL
// in a value and a name given twice are all errors. An empty value is kept
// as "" (libubootenv prints "name=" for a variable that is not set).
func parseEnvLines(out []byte) (map[string]string, error) {
	m := make(map[string]string)
	if len(out) == 0 {
		return m, nil
	}
	if out[len(out)-1] != '\n' {
		return nil, fmt.Errorf("output does not end with a newline (cut short?)")
	}
	for i, line := range bytes.Split(out[:len(out)-1], []byte{'\n'}) {
		eq := bytes.IndexByte(line, '=')
		if eq <= 0 {
			return nil, fmt.Errorf("line %d %q: want name=value (a value with a newline in it?)", i+1, truncate(line))
		}
		name, value := line[:eq], line[eq+1:]
		for _, c := range name {
			if c <= ' ' || c >= 0x7f {
				return nil, fmt.Errorf("line %d %q: variable name has a blank or control character", i+1, truncate(line))
			}
		}
		if bytes.IndexByte(value, 0) >= 0 {
			return nil, fmt.Errorf("line %d %q: value has a NUL byte", i+1, truncate(line))
		}
		if _, dup := m[string(name)]; dup {
			return nil, fmt.Errorf("line %d: variable %s given twice", i+1, name)
		}
		m[string(name)] = string(value)
	}
	return m, nil
}

func truncate(b []byte) string {
	if len(b) > 80 {
		return string(b[:80]) + "..."
	}
	return string(b)
}

// parseVars reads the A/B variables from an environment. Unset (or empty)
// variables take the values the boot scripts give them: slot a, no trial,
// bootcount 0, no bootlimit. Set ones must be exactly what this package
// writes; anything else is an error wrapping ErrEnvironment rather than a
// guess at what the bootloader will make of it.
func parseVars(env map[string]string, slotVar string) (vars, error) {
	var v vars
	switch s := env[slotVar]; s {
	case "":
		v.Slot = SlotA
	case string(SlotA), string(SlotB):
		v.Slot = Slot(s)
	default:
		return vars{}, fmt.Errorf("%w: %s=%q: want \"a\" or \"b\"", ErrEnvironment, slotVar, s)
	}
	switch s := env[varUpgrade]; s {
	case "", "0":
	case "1":
		v.Upgrade = true
	default:
		return vars{}, fmt.Errorf("%w: %s=%q: want 0 or 1", ErrEnvironment, varUpgrade, s)
	}
	var err error
	if v.BootCount, err = parseCount(env, varBootCount); err != nil {
		return vars{}, err
	}
	if v.BootLimit, err = parseCount(env, varBootLimit); err != nil {
		return vars{}, err
	}
	return v, nil
}

// parseCount parses a decimal count as U-Boot's env_set_ulong writes it.
func parseCount(env map[string]string, name string) (int, error) {
	s := env[name]
	if s == "" {
		return 0, nil
	}
	if len(s) > 9 {
		return 0, fmt.Errorf("%w: %s=%q: want a decimal count below 10^9", ErrEnvironment, name, s)
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, fmt.Errorf("%w: %s=%q: want a decimal count", ErrEnvironment, name, s)
		}
	}
	n, err := strconv.Atoi(s)
	if err != nil {
		return 0, fmt.Errorf("%w: %s=%q: %v", ErrEnvironment, name, s, err)
	}
	return n, nil
}

// envLines renders the A/B variables as fw_setenv script lines and
// grub-editenv set arguments: name=value, in a fixed order.
func envLines(v vars, slotVar string) []string {
	up := "0"
	if v.Upgrade {
		up = "1"
	}
	return []string{
		slotVar + "=" + string(v.Slot),
		varUpgrade + "=" + up,
		varBootCount + "=" + strconv.Itoa(v.BootCount),
		varBootLimit + "=" + strconv.Itoa(v.BootLimit),
	}
}

// cmdlineParam is the kernel parameter the boot scripts set to the slot
// they booted.
const cmdlineParam = "sphere.slot"

// parseCmdline returns the slot named by the last sphere.slot= parameter
// of a kernel command line, "" when there is none, and an error when its
// value is not a slot.
func parseCmdline(data []byte) (Slot, error) {
	var found []byte
	for _, f := range bytes.Fields(data) {
		if v, ok := bytes.CutPrefix(f, []byte(cmdlineParam+"=")); ok {
			found = v
			if found == nil {
				found = []byte{}
			}
		}
	}
	if found == nil {
		return "", nil
	}
	if len(found) >= 2 && found[0] == '"' && found[len(found)-1] == '"' {
		found = found[1 : len(found)-1]
	}
	s := Slot(found)
	if !s.Valid() {
		return "", fmt.Errorf("kernel command line %s=%q: %w", cmdlineParam, truncate(found), ErrInvalidSlot)
	}
	return s, nil
}
