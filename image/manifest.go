package image

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"path"
	"regexp"
	"strconv"
	"strings"
	"unicode"
)

// Limits of an app manifest. They bound what a device has to parse and
// enforce, far above what a real app needs.
const (
	MaxManifestSize = 64 << 10 // bytes of app_manifest.json
	MaxListLen      = 256      // entries in any list of the manifest
	MaxNameLen      = 64       // bytes of a name
	maxPathLen      = 1024     // bytes of EntryPoint
	maxArgLen       = 4096     // bytes of one CmdArgs entry
	maxStorageKB    = 1 << 20  // MutableStorage.SizeKB: 1 GiB
	maxGpio         = 65535
)

// PowerControls values an app may ask for.
const (
	PowerForceReboot     = "ForceReboot"
	PowerForcePowerDown  = "ForcePowerDown"
	PowerSetPowerProfile = "SetPowerProfile"
)

// AppManifest is an app's app_manifest.json, in the shape Azure Sphere used:
// who the app is (Name, ComponentId), what to run (EntryPoint, CmdArgs) and
// what it may touch (Capabilities). Nothing is allowed unless a capability
// names it; the agent enforces the capabilities with the kernel's own
// mechanisms. Build one with ParseManifest, which validates every field.
type AppManifest struct {
	// SchemaVersion is the manifest format; it must be 1.
	SchemaVersion int `json:"SchemaVersion"`
	// Name is shown to people: 1 to 64 bytes of printable text.
	Name string `json:"Name"`
	// ComponentId identifies the app across versions: a GUID in canonical
	// lowercase form (8-4-4-4-12 hex digits).
	ComponentId string `json:"ComponentId"`
	// EntryPoint is the program to run, an absolute clean path inside the app
	// image, such as "/bin/app".
	EntryPoint string `json:"EntryPoint"`
	// CmdArgs are the arguments passed to EntryPoint (without argv[0]).
	CmdArgs []string `json:"CmdArgs,omitempty"`
	// Capabilities is what the app may use; the zero value allows nothing.
	Capabilities Capabilities `json:"Capabilities"`
}

// Capabilities lists what an app may use. Every list holds at most 256
// entries and no duplicates.
type Capabilities struct {
	// AllowedConnections are the hosts the app may connect to: DNS names
	// (optionally with a leading "*." wildcard), IPv4 or IPv6 literals, each
	// optionally with ":port" (IPv6 with a port as "[::1]:443").
	AllowedConnections []string `json:"AllowedConnections,omitempty"`
	// AllowedTcpServerPorts and AllowedUdpServerPorts are the ports (1 to
	// 65535) the app may listen on.
	AllowedTcpServerPorts []int `json:"AllowedTcpServerPorts,omitempty"`
	AllowedUdpServerPorts []int `json:"AllowedUdpServerPorts,omitempty"`
	// DeviceAuthentication, when set, is the tenant id (a GUID) whose device
	// certificate the app may use to authenticate to clouds.
	DeviceAuthentication string `json:"DeviceAuthentication,omitempty"`
	// Gpio are the GPIO numbers (0 to 65535) the app may use.
	Gpio []int `json:"Gpio,omitempty"`
	// Uart, I2cMaster, SpiMaster, Pwm and Adc name peripherals such as
	// "ISU0": 1 to 32 letters, digits or underscores.
	Uart      []string `json:"Uart,omitempty"`
	I2cMaster []string `json:"I2cMaster,omitempty"`
	SpiMaster []string `json:"SpiMaster,omitempty"`
	Pwm       []string `json:"Pwm,omitempty"`
	Adc       []string `json:"Adc,omitempty"`
	// MutableStorage, when set, gives the app persistent storage.
	MutableStorage *MutableStorage `json:"MutableStorage,omitempty"`
	// SoftwareUpdateDeferral lets the app defer updates for a while.
	SoftwareUpdateDeferral bool `json:"SoftwareUpdateDeferral,omitempty"`
	// SystemEventNotifications lets the app receive system events such as
	// pending updates.
	SystemEventNotifications bool `json:"SystemEventNotifications,omitempty"`
	// PowerControls are from "ForceReboot", "ForcePowerDown" and
	// "SetPowerProfile".
	PowerControls []string `json:"PowerControls,omitempty"`
	// NetworkConfig lets the app change the device's network configuration.
	NetworkConfig bool `json:"NetworkConfig,omitempty"`
}

// MutableStorage is an app's persistent storage.
type MutableStorage struct {
	// SizeKB is its size in KiB, 1 to 1048576 (1 GiB).
	SizeKB int `json:"SizeKB"`
}

// ParseManifest parses and validates app_manifest.json. It is strict: an
// unknown or misspelled field is an error that names it (field names are
// case-sensitive, as in Azure Sphere), and so is a field that appears twice,
// a value of the wrong type, or any value out of its range.
func ParseManifest(data []byte) (*AppManifest, error) {
	m, err := parseManifest(data)
	if err != nil {
		return nil, fmt.Errorf("app manifest: %w", err)
	}
	return m, nil
}

func parseManifest(data []byte) (*AppManifest, error) {
	if len(data) > MaxManifestSize {
		return nil, fmt.Errorf("%d bytes, more than the limit of %d", len(data), MaxManifestSize)
	}
	var m manifestJSON
	if err := decodeStrict(data, &m); err != nil {
		var ue *unknownFieldError
		if errors.As(err, &ue) && ue.Parent == "Capabilities" {
			msg := fmt.Sprintf("unknown capability %q", ue.Key)
			if ue.Hint != "" {
				msg += fmt.Sprintf(" (did you mean %q? names are case-sensitive)", ue.Hint)
			}
			return nil, errors.New(msg)
		}
		return nil, err
	}
	am := AppManifest(m)
	if err := am.validate(); err != nil {
		return nil, err
	}
	return &am, nil
}

// manifestJSON has AppManifest's fields without its UnmarshalJSON method.
type manifestJSON AppManifest

// UnmarshalJSON parses a manifest embedded in other JSON (such as package
// metadata) exactly as ParseManifest does.
func (m *AppManifest) UnmarshalJSON(data []byte) error {
	p, err := parseManifest(data)
	if err != nil {
		return err
	}
	*m = *p
	return nil
}

// Marshal returns the canonical encoding of a valid manifest: compact JSON,
// fields in a fixed order, empty capabilities left out. Package metadata
// embeds this form, so equal manifests embed as equal bytes.
func (m *AppManifest) Marshal() ([]byte, error) {
	if err := m.Validate(); err != nil {
		return nil, err
	}
	return json.Marshal((*manifestJSON)(m))
}

// Validate checks every field of m, returning an error that names the first
// field that is wrong and what is wrong with it.
func (m *AppManifest) Validate() error {
	if err := m.validate(); err != nil {
		return fmt.Errorf("app manifest: %w", err)
	}
	return nil
}

func (m *AppManifest) validate() error {
	if m.SchemaVersion != 1 {
		return fmt.Errorf("SchemaVersion must be 1, not %d", m.SchemaVersion)
	}
	if err := checkName(m.Name); err != nil {
		return fmt.Errorf("Name: %w", err)
	}
	if err := checkGUID(m.ComponentId); err != nil {
		return fmt.Errorf("ComponentId: %w", err)
	}
	if err := checkEntryPoint(m.EntryPoint); err != nil {
		return fmt.Errorf("EntryPoint %q: %w", m.EntryPoint, err)
	}
	if len(m.CmdArgs) > MaxListLen {
		return fmt.Errorf("CmdArgs: %d entries, more than %d", len(m.CmdArgs), MaxListLen)
	}
	for i, a := range m.CmdArgs {
		if len(a) > maxArgLen {
			return fmt.Errorf("CmdArgs[%d]: %d bytes, more than %d", i, len(a), maxArgLen)
		}
		if strings.IndexByte(a, 0) >= 0 {
			return fmt.Errorf("CmdArgs[%d]: contains a NUL byte", i)
		}
	}
	return m.Capabilities.validate()
}

func (c *Capabilities) validate() error {
	if err := checkList("AllowedConnections", c.AllowedConnections, checkConnection, strings.ToLower); err != nil {
		return err
	}
	port := func(p int) error {
		if p < 1 || p > 65535 {
			return fmt.Errorf("%d is not a port number (1 to 65535)", p)
		}
		return nil
	}
	if err := checkList("AllowedTcpServerPorts", c.AllowedTcpServerPorts, port, nil); err != nil {
		return err
	}
	if err := checkList("AllowedUdpServerPorts", c.AllowedUdpServerPorts, port, nil); err != nil {
		return err
	}
	if c.DeviceAuthentication != "" {
		if err := checkGUID(c.DeviceAuthentication); err != nil {
			return fmt.Errorf("Capabilities.DeviceAuthentication: must be empty or a tenant id: %w", err)
		}
	}
	gpio := func(g int) error {
		if g < 0 || g > maxGpio {
			return fmt.Errorf("%d is not a GPIO number (0 to %d)", g, maxGpio)
		}
		return nil
	}
	if err := checkList("Gpio", c.Gpio, gpio, nil); err != nil {
		return err
	}
	for _, l := range []struct {
		name  string
		names []string
	}{{"Uart", c.Uart}, {"I2cMaster", c.I2cMaster}, {"SpiMaster", c.SpiMaster}, {"Pwm", c.Pwm}, {"Adc", c.Adc}} {
		if err := checkList(l.name, l.names, checkPeripheral, nil); err != nil {
			return err
		}
	}
	if c.MutableStorage != nil && (c.MutableStorage.SizeKB < 1 || c.MutableStorage.SizeKB > maxStorageKB) {
		return fmt.Errorf("Capabilities.MutableStorage.SizeKB: %d is out of range (1 to %d)", c.MutableStorage.SizeKB, maxStorageKB)
	}
	power := func(p string) error {
		switch p {
		case PowerForceReboot, PowerForcePowerDown, PowerSetPowerProfile:
			return nil
		}
		return fmt.Errorf("%q is not one of %q, %q, %q", p, PowerForceReboot, PowerForcePowerDown, PowerSetPowerProfile)
	}
	return checkList("PowerControls", c.PowerControls, power, nil)
}

// checkList checks a capability list: its length, each entry, and that no
// entry appears twice (compared after fold, when given).
func checkList[T comparable](name string, list []T, check func(T) error, fold func(T) T) error {
	if len(list) > MaxListLen {
		return fmt.Errorf("Capabilities.%s: %d entries, more than %d", name, len(list), MaxListLen)
	}
	seen := make(map[T]bool, len(list))
	for i, v := range list {
		if err := check(v); err != nil {
			return fmt.Errorf("Capabilities.%s[%d]: %w", name, i, err)
		}
		k := v
		if fold != nil {
			k = fold(v)
		}
		if seen[k] {
			return fmt.Errorf("Capabilities.%s[%d]: %v is listed twice", name, i, v)
		}
		seen[k] = true
	}
	return nil
}

var guidRE = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)

// checkGUID accepts a GUID in canonical lowercase form, other than the
// all-zero one.
func checkGUID(s string) error {
	if s == "" {
		return errors.New("missing; want a GUID such as 3f0c2b5e-7d4a-4c1e-9b8f-2a6d5e4c3b21")
	}
	if !guidRE.MatchString(s) {
		if guidRE.MatchString(strings.ToLower(s)) {
			return fmt.Errorf("%q must be written in lowercase", s)
		}
		return fmt.Errorf("%q is not a GUID in the form xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx (lowercase hex)", s)
	}
	if s == "00000000-0000-0000-0000-000000000000" {
		return errors.New("the all-zero GUID is not allowed")
	}
	return nil
}

// checkName accepts 1 to 64 bytes of printable text.
func checkName(s string) error {
	if s == "" {
		return errors.New("missing")
	}
	if len(s) > MaxNameLen {
		return fmt.Errorf("%d bytes, more than %d", len(s), MaxNameLen)
	}
	for _, r := range s {
		if !unicode.IsPrint(r) {
			return fmt.Errorf("%q contains a character that is not printable", s)
		}
	}
	return nil
}

func checkEntryPoint(p string) error {
	switch {
	case p == "":
		return errors.New("missing; want an absolute path inside the app image such as /bin/app")
	case len(p) > maxPathLen:
		return fmt.Errorf("%d bytes, more than %d", len(p), maxPathLen)
	case strings.IndexByte(p, 0) >= 0:
		return errors.New("contains a NUL byte")
	case !strings.HasPrefix(p, "/"):
		return errors.New("must be an absolute path inside the app image, such as /bin/app")
	case p == "/":
		return errors.New("must name a file, not the image root")
	case path.Clean(p) != p:
		return fmt.Errorf("must be a clean path (%s)", path.Clean(p))
	}
	return nil
}

var peripheralRE = regexp.MustCompile(`^[A-Za-z0-9_]{1,32}$`)

func checkPeripheral(s string) error {
	if !peripheralRE.MatchString(s) {
		return fmt.Errorf("%q is not a peripheral name (1 to 32 letters, digits or underscores, such as ISU0)", s)
	}
	return nil
}

// checkConnection accepts a host name (optionally "*."-prefixed), an IPv4
// or IPv6 literal, each optionally followed by ":port"; IPv6 with a port is
// written "[addr]:port".
func checkConnection(s string) error {
	if s == "" {
		return errors.New("empty host")
	}
	if len(s) > 261 {
		return fmt.Errorf("%q is too long for a host and port", s)
	}
	host, port := s, ""
	switch {
	case strings.HasPrefix(s, "["):
		end := strings.IndexByte(s, ']')
		if end < 0 {
			return fmt.Errorf("%q: missing ] after the IPv6 address", s)
		}
		host = s[1:end]
		if rest := s[end+1:]; rest != "" {
			p, ok := strings.CutPrefix(rest, ":")
			if !ok {
				return fmt.Errorf("%q: want [IPv6]:port", s)
			}
			port = p
		}
		if a, err := netip.ParseAddr(host); err != nil || !a.Is6() || a.Zone() != "" {
			return fmt.Errorf("%q: %q is not an IPv6 address", s, host)
		}
	case strings.Count(s, ":") > 1:
		if a, err := netip.ParseAddr(s); err != nil || !a.Is6() || a.Zone() != "" {
			return fmt.Errorf("%q is not an IPv6 address (write an IPv6 address with a port as [addr]:port)", s)
		}
		return nil
	default:
		if h, p, ok := strings.Cut(s, ":"); ok {
			host, port = h, p
		}
		if a, err := netip.ParseAddr(host); err == nil && a.Is4() {
			break
		}
		if err := checkHostname(host); err != nil {
			return fmt.Errorf("%q: %w", s, err)
		}
	}
	if port != "" || strings.HasSuffix(s, ":") {
		n, err := strconv.Atoi(port)
		if err != nil || n < 1 || n > 65535 || port[0] == '+' || port[0] == '0' {
			return fmt.Errorf("%q: %q is not a port number (1 to 65535)", s, port)
		}
	}
	return nil
}

func checkHostname(h string) error {
	name := strings.TrimPrefix(h, "*.")
	if name == "" {
		return errors.New("empty host name")
	}
	if len(name) > 253 {
		return errors.New("host name longer than 253 characters")
	}
	labels := strings.Split(name, ".")
	if h != name && len(labels) < 2 {
		return errors.New("a wildcard must cover a domain of at least two labels, such as *.example.com")
	}
	for _, l := range labels {
		if l == "" {
			return errors.New("host name has an empty label (two dots in a row, or a dot at either end)")
		}
		if len(l) > 63 {
			return fmt.Errorf("label %q is longer than 63 characters", l)
		}
		if l[0] == '-' || l[len(l)-1] == '-' {
			return fmt.Errorf("label %q starts or ends with a hyphen", l)
		}
		for i := 0; i < len(l); i++ {
			c := l[i]
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-') {
				return fmt.Errorf("host name %q may hold only letters, digits, hyphens and dots (and a leading *.)", h)
			}
		}
	}
	if tld := labels[len(labels)-1]; strings.Trim(tld, "0123456789") == "" {
		return fmt.Errorf("%q is neither an IPv4 address nor a host name", h)
	}
	return nil
}
