package sandbox

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"

	"github.com/opensphere/sphere/image"
)

// maxBoardSize bounds a board description file.
const maxBoardSize = 1 << 20

// Board describes a device's peripherals: which device file (or sysfs
// directory) stands behind each name a manifest may declare. The agent reads
// it from a board description file (see ParseBoard and docs/sandbox.md).
type Board struct {
	// Gpio maps ranges of GPIO numbers to the gpiochip device that holds
	// them. Landlock grants whole files, so declaring one GPIO of a chip
	// opens the chip, that is all of its lines.
	Gpio []GpioChip `json:"Gpio,omitempty"`
	// Uart, I2cMaster, SpiMaster, Pwm and Adc map peripheral names such as
	// "ISU0" to a device file or a directory (such as a pwmchip in sysfs).
	Uart      map[string]string `json:"Uart,omitempty"`
	I2cMaster map[string]string `json:"I2cMaster,omitempty"`
	SpiMaster map[string]string `json:"SpiMaster,omitempty"`
	Pwm       map[string]string `json:"Pwm,omitempty"`
	Adc       map[string]string `json:"Adc,omitempty"`
}

// GpioChip is a gpiochip device and the GPIO numbers it serves:
// First to First+Count-1.
type GpioChip struct {
	Chip  string `json:"Chip"`
	First int    `json:"First"`
	Count int    `json:"Count"`
}

var boardNameRE = regexp.MustCompile(`^[A-Za-z0-9_]{1,32}$`)

// ParseBoard parses and validates a board description file. Unknown fields
// are errors; every path must be absolute and clean; GPIO ranges must not
// overlap.
func ParseBoard(data []byte) (*Board, error) {
	if len(data) > maxBoardSize {
		return nil, fmt.Errorf("board file: %d bytes, more than %d", len(data), maxBoardSize)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var b Board
	if err := dec.Decode(&b); err != nil {
		return nil, fmt.Errorf("board file: %w", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("board file: text after the JSON object")
	}
	if err := b.validate(); err != nil {
		return nil, fmt.Errorf("board file: %w", err)
	}
	return &b, nil
}

func checkDevicePath(p string) error {
	if p == "" || !filepath.IsAbs(p) || filepath.Clean(p) != p || strings.IndexByte(p, 0) >= 0 || p == "/" {
		return fmt.Errorf("%q is not an absolute clean path of a device file", p)
	}
	return nil
}

func (b *Board) validate() error {
	for i, g := range b.Gpio {
		if err := checkDevicePath(g.Chip); err != nil {
			return fmt.Errorf("Gpio[%d].Chip: %w", i, err)
		}
		if g.First < 0 || g.Count < 1 || g.First+g.Count > 65536 {
			return fmt.Errorf("Gpio[%d]: First %d and Count %d must give GPIO numbers within 0 to 65535", i, g.First, g.Count)
		}
		for j := range i {
			o := b.Gpio[j]
			if g.First < o.First+o.Count && o.First < g.First+g.Count {
				return fmt.Errorf("Gpio[%d] (%d to %d) overlaps Gpio[%d]", i, g.First, g.First+g.Count-1, j)
			}
		}
	}
	for _, kind := range b.kinds() {
		for name, p := range kind.m {
			if !boardNameRE.MatchString(name) {
				return fmt.Errorf("%s: %q is not a peripheral name (1 to 32 letters, digits or underscores)", kind.name, name)
			}
			if err := checkDevicePath(p); err != nil {
				return fmt.Errorf("%s.%s: %w", kind.name, name, err)
			}
		}
	}
	return nil
}

type boardKind struct {
	name string
	m    map[string]string
}

func (b *Board) kinds() []boardKind {
	return []boardKind{{"Uart", b.Uart}, {"I2cMaster", b.I2cMaster}, {"SpiMaster", b.SpiMaster}, {"Pwm", b.Pwm}, {"Adc", b.Adc}}
}

// Devices returns the device paths the capabilities declare, sorted and
// without duplicates. A declared peripheral the board lacks is an error that
// names what the board has, so a manifest written for another board fails
// before the app starts.
func (b *Board) Devices(c image.Capabilities) ([]string, error) {
	if b == nil {
		b = &Board{}
	}
	var paths []string
	for _, n := range c.Gpio {
		i := slices.IndexFunc(b.Gpio, func(g GpioChip) bool { return n >= g.First && n < g.First+g.Count })
		if i < 0 {
			return nil, fmt.Errorf("sandbox: GPIO %d is not on this board (the board file maps %s)", n, b.gpioRanges())
		}
		paths = append(paths, b.Gpio[i].Chip)
	}
	kinds := b.kinds()
	declared := [][]string{c.Uart, c.I2cMaster, c.SpiMaster, c.Pwm, c.Adc}
	for i, k := range kinds {
		for _, name := range declared[i] {
			p, ok := k.m[name]
			if !ok {
				return nil, fmt.Errorf("sandbox: %s %q is not on this board (the board file maps %s)", k.name, name, keys(k.m))
			}
			paths = append(paths, p)
		}
	}
	sort.Strings(paths)
	return slices.Compact(paths), nil
}

func (b *Board) gpioRanges() string {
	if len(b.Gpio) == 0 {
		return "no GPIOs"
	}
	var s []string
	for _, g := range b.Gpio {
		s = append(s, fmt.Sprintf("%d-%d", g.First, g.First+g.Count-1))
	}
	return "GPIOs " + strings.Join(s, ", ")
}

func keys(m map[string]string) string {
	if len(m) == 0 {
		return "none"
	}
	k := make([]string, 0, len(m))
	for name := range m {
		k = append(k, name)
	}
	sort.Strings(k)
	return strings.Join(k, ", ")
}
