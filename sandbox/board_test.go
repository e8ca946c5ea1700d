package sandbox

import (
	"slices"
	"strings"
	"testing"

	"github.com/opensphere/sphere/image"
)

const exampleBoard = `{
  "Gpio": [{"Chip": "/dev/gpiochip0", "First": 0, "Count": 32}, {"Chip": "/dev/gpiochip1", "First": 32, "Count": 16}],
  "Uart": {"ISU0": "/dev/ttyS1", "ISU1": "/dev/ttyS2"},
  "I2cMaster": {"ISU2": "/dev/i2c-1"},
  "SpiMaster": {"ISU3": "/dev/spidev0.0"},
  "Pwm": {"PWM0": "/sys/class/pwm/pwmchip0"},
  "Adc": {"ADC0": "/sys/bus/iio/devices/iio:device0"}
}`

func TestParseBoard(t *testing.T) {
	for _, tc := range []struct{ name, in, err string }{
		{"ok", exampleBoard, ""},
		{"ok/empty", `{}`, ""},
		{"error/unknown field", `{"Uarts": {}}`, `unknown field "Uarts"`},
		{"error/relative path", `{"Uart": {"ISU0": "dev/ttyS1"}}`, "Uart.ISU0"},
		{"error/unclean path", `{"Uart": {"ISU0": "/dev/../etc/shadow"}}`, "absolute clean path"},
		{"error/bad name", `{"Pwm": {"PWM 0": "/dev/pwm0"}}`, "not a peripheral name"},
		{"error/gpio overlap", `{"Gpio": [{"Chip": "/dev/gpiochip0", "First": 0, "Count": 32}, {"Chip": "/dev/gpiochip1", "First": 31, "Count": 2}]}`, "overlaps Gpio[0]"},
		{"error/gpio count", `{"Gpio": [{"Chip": "/dev/gpiochip0", "First": 0, "Count": 0}]}`, "Gpio[0]"},
		{"error/gpio range", `{"Gpio": [{"Chip": "/dev/gpiochip0", "First": 65535, "Count": 2}]}`, "within 0 to 65535"},
		{"error/trailing", `{} {}`, "text after"},
		{"error/not json", `uart`, "board file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseBoard([]byte(tc.in))
			if tc.err == "" && err != nil || tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)) {
				t.Errorf("got %v, want %q", err, tc.err)
			}
		})
	}
}

func TestBoardDevices(t *testing.T) {
	b, err := ParseBoard([]byte(exampleBoard))
	if err != nil {
		t.Fatal(err)
	}
	got, err := b.Devices(image.Capabilities{Gpio: []int{1, 5, 40}, Uart: []string{"ISU1"}, Pwm: []string{"PWM0"}})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"/dev/gpiochip0", "/dev/gpiochip1", "/dev/ttyS2", "/sys/class/pwm/pwmchip0"}
	if !slices.Equal(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
	for _, tc := range []struct {
		name string
		caps image.Capabilities
		err  string
	}{
		{"error/gpio", image.Capabilities{Gpio: []int{48}}, "GPIO 48 is not on this board (the board file maps GPIOs 0-31, 32-47)"},
		{"error/uart", image.Capabilities{Uart: []string{"ISU9"}}, `Uart "ISU9" is not on this board (the board file maps ISU0, ISU1)`},
		{"error/adc", image.Capabilities{Adc: []string{"ADC1"}}, `Adc "ADC1" is not on this board (the board file maps ADC0)`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := b.Devices(tc.caps); err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("got %v, want %q", err, tc.err)
			}
		})
	}
	var none *Board
	if got, err := none.Devices(image.Capabilities{}); err != nil || len(got) != 0 {
		t.Errorf("nil board, no peripherals: %v, %v", got, err)
	}
	if _, err := none.Devices(image.Capabilities{I2cMaster: []string{"ISU2"}}); err == nil || !strings.Contains(err.Error(), "maps none") {
		t.Errorf("nil board, a peripheral: %v", err)
	}
}

func FuzzParseBoard(f *testing.F) {
	f.Add([]byte(exampleBoard))
	f.Add([]byte(`{}`))
	f.Add([]byte(`{"Gpio": [{"Chip": "/dev/gpiochip0", "First": 0, "Count": 1}]}`))
	f.Add([]byte(`{"Uart": {"A": "/a"}, "Adc": {"B": "/b/c"}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		b, err := ParseBoard(data)
		if err != nil {
			return
		}
		// What parses is valid, and every peripheral it names resolves.
		if err := b.validate(); err != nil {
			t.Fatalf("parsed board fails validation: %v", err)
		}
		var caps image.Capabilities
		for _, g := range b.Gpio {
			caps.Gpio = append(caps.Gpio, g.First, g.First+g.Count-1)
		}
		for name := range b.Uart {
			caps.Uart = append(caps.Uart, name)
		}
		if _, err := b.Devices(caps); err != nil {
			t.Fatalf("Devices on a parsed board: %v", err)
		}
	})
}
