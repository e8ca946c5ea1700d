package bootloader

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"strings"
	"time"
)

// Install hints for the missing-tool errors.
const (
	ubootToolHint = "install u-boot-tools (on Debian 12 and later fw_printenv and fw_setenv come from libubootenv-tool, which u-boot-tools recommends: apt-get install u-boot-tools libubootenv-tool)"
	grubToolHint  = "install grub-common (apt-get install grub-common)"
)

// lookTool resolves a tool's configured path or name, so that a missing
// tool is reported when the backend is made, not at the first update.
func lookTool(configured, name, hint string) (string, error) {
	p := orDefault(configured, name)
	resolved, err := exec.LookPath(p)
	if err != nil {
		if errors.Is(err, exec.ErrNotFound) || errors.Is(err, fs.ErrNotExist) {
			return "", fmt.Errorf("bootloader: %s not found: %s: %w", p, hint, ErrToolMissing)
		}
		return "", fmt.Errorf("bootloader: %s: %w", p, err)
	}
	return resolved, nil
}

// tool runs one bootloader tool with a time limit.
type tool struct {
	path, hint string
	timeout    time.Duration
}

// maxToolOutput bounds what is kept of a tool's stdout and stderr; an
// environment is at most a few hundred KiB and we ask for four variables.
const maxToolOutput = 1 << 20

// run runs the tool and returns its stdout and stderr. A non-zero exit is
// an *exec.ExitError; the caller decides what it means.
func (t tool) run(args ...string) (stdout, stderr []byte, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), t.timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, t.path, args...)
	// The C locale keeps the tools' messages the ones this package reads.
	cmd.Env = append(os.Environ(), "LC_ALL=C")
	cmd.WaitDelay = time.Second
	var out, errOut limitedBuffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err = cmd.Run()
	switch {
	case ctx.Err() != nil:
		return nil, nil, fmt.Errorf("%s: no answer within %v", t.path, t.timeout)
	case errors.Is(err, fs.ErrNotExist) || errors.Is(err, exec.ErrNotFound):
		return nil, nil, fmt.Errorf("%s not found: %s: %w", t.path, t.hint, ErrToolMissing)
	case out.overflow || errOut.overflow:
		return nil, nil, fmt.Errorf("%s: more than %d bytes of output", t.path, maxToolOutput)
	}
	return out.Bytes(), errOut.Bytes(), err
}

// limitedBuffer keeps the first maxToolOutput bytes written to it.
type limitedBuffer struct {
	bytes.Buffer
	overflow bool
}

func (b *limitedBuffer) Write(p []byte) (int, error) {
	n := len(p) // report all of it taken, so that the tool is not cut off
	if room := maxToolOutput - b.Len(); len(p) > room {
		b.overflow = true
		p = p[:max(room, 0)]
	}
	b.Buffer.Write(p)
	return n, nil
}

// oneLine condenses a tool's stderr for an error message or a log entry.
func oneLine(stderr []byte) string {
	s := strings.Join(strings.Fields(strings.ReplaceAll(string(stderr), "\n", " ; ")), " ")
	s = strings.Trim(s, " ;")
	if len(s) > 400 {
		s = s[:400] + "..."
	}
	if s == "" {
		return "no message"
	}
	return s
}

// bootedFromCmdline reads the booted slot from the kernel command line:
// "" when the file or the parameter is missing.
func bootedFromCmdline(path string) (Slot, error) {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, 64<<10))
	if err != nil {
		return "", fmt.Errorf("%s: %w", path, err)
	}
	s, err := parseCmdline(data)
	if err != nil {
		return "", fmt.Errorf("%s: %w", path, err)
	}
	return s, nil
}
