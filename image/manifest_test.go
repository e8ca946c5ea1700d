package image

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
)

// manifestWith returns a manifest whose Capabilities object is caps.
func manifestWith(caps string) string {
	return fmt.Sprintf(`{"SchemaVersion":1,"Name":"Blink","ComponentId":%q,"EntryPoint":"/bin/app","Capabilities":%s}`, testAppID, caps)
}

func TestParseManifestValid(t *testing.T) {
	full := `{
  "SchemaVersion": 1,
  "Name": "Coffee maker UI",
  "ComponentId": "3f0c2b5e-7d4a-4c1e-9b8f-2a6d5e4c3b21",
  "EntryPoint": "/bin/app",
  "CmdArgs": ["--interval", "5", ""],
  "Capabilities": {
    "AllowedConnections": ["contoso.azure-devices.net", "*.contoso.com", "10.0.0.1", "10.0.0.2:8883",
                           "fd00::1", "[fd00::2]:443", "global.azure-devices-provisioning.net:443", "localhost"],
    "AllowedTcpServerPorts": [1, 8080, 65535],
    "AllowedUdpServerPorts": [5353],
    "DeviceAuthentication": "77304f1f-9530-4157-8598-30bc1f3d66f0",
    "Gpio": [0, 8, 12, 65535],
    "Uart": ["ISU0"],
    "I2cMaster": ["ISU1", "i2c_2"],
    "SpiMaster": ["ISU2"],
    "Pwm": ["PWM_CONTROLLER0"],
    "Adc": ["ADC_CONTROLLER0"],
    "MutableStorage": {"SizeKB": 8},
    "SoftwareUpdateDeferral": true,
    "SystemEventNotifications": true,
    "PowerControls": ["ForceReboot", "ForcePowerDown", "SetPowerProfile"],
    "NetworkConfig": true
  }
}`
	m, err := ParseManifest([]byte(full))
	if err != nil {
		t.Fatalf("ParseManifest: %v", err)
	}
	c := m.Capabilities
	if m.Name != "Coffee maker UI" || m.EntryPoint != "/bin/app" || len(m.CmdArgs) != 3 || len(c.AllowedConnections) != 8 ||
		len(c.AllowedTcpServerPorts) != 3 || c.DeviceAuthentication != "77304f1f-9530-4157-8598-30bc1f3d66f0" ||
		len(c.Gpio) != 4 || c.Uart[0] != "ISU0" || len(c.I2cMaster) != 2 || c.SpiMaster[0] != "ISU2" || c.Pwm[0] != "PWM_CONTROLLER0" ||
		c.Adc[0] != "ADC_CONTROLLER0" || c.MutableStorage == nil || c.MutableStorage.SizeKB != 8 || !c.SoftwareUpdateDeferral ||
		!c.SystemEventNotifications || len(c.PowerControls) != 3 || !c.NetworkConfig {
		t.Errorf("parsed %+v", m)
	}

	// The canonical form is compact, stable and parses back to itself.
	enc, err := m.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	m2, err := ParseManifest(enc)
	if err != nil {
		t.Fatalf("canonical form does not parse: %v\n%s", err, enc)
	}
	enc2, _ := m2.Marshal()
	if !bytes.Equal(enc, enc2) {
		t.Errorf("canonical form is not stable:\n%s\n%s", enc, enc2)
	}

	// Nothing allowed is a valid manifest; its canonical form leaves out
	// every capability.
	m, err = ParseManifest([]byte(manifestWith(`{}`)))
	if err != nil {
		t.Fatal(err)
	}
	enc, _ = m.Marshal()
	want := `{"SchemaVersion":1,"Name":"Blink","ComponentId":"` + testAppID + `","EntryPoint":"/bin/app","Capabilities":{}}`
	if string(enc) != want {
		t.Errorf("canonical form = %s\nwant %s", enc, want)
	}
}

func TestParseManifestCapabilities(t *testing.T) {
	long := strings.Repeat("a", 63)
	tests := []struct {
		name string
		caps string
		want string // "" when valid
	}{
		{"ok/no capabilities", `{}`, ""},
		{"ok/null lists", `{"Gpio":null,"Uart":null,"MutableStorage":null}`, ""},

		{"ok/AllowedConnections host", `{"AllowedConnections":["example.com"]}`, ""},
		{"ok/AllowedConnections host:port", `{"AllowedConnections":["mqtt.example.com:8883"]}`, ""},
		{"ok/AllowedConnections wildcard", `{"AllowedConnections":["*.example.com"]}`, ""},
		{"ok/AllowedConnections IPv4", `{"AllowedConnections":["192.0.2.1"]}`, ""},
		{"ok/AllowedConnections IPv4:port", `{"AllowedConnections":["192.0.2.1:443"]}`, ""},
		{"ok/AllowedConnections IPv6", `{"AllowedConnections":["2001:db8::1"]}`, ""},
		{"ok/AllowedConnections [IPv6]:port", `{"AllowedConnections":["[2001:db8::1]:443"]}`, ""},
		{"ok/AllowedConnections 63-char label", `{"AllowedConnections":["` + long + `.com"]}`, ""},
		{"error/AllowedConnections empty", `{"AllowedConnections":[""]}`, "Capabilities.AllowedConnections[0]: empty host"},
		{"error/AllowedConnections URL", `{"AllowedConnections":["https://example.com"]}`, `Capabilities.AllowedConnections[0]: "https://example.com"`},
		{"error/AllowedConnections path", `{"AllowedConnections":["example.com/x"]}`, "may hold only letters, digits, hyphens and dots"},
		{"error/AllowedConnections underscore", `{"AllowedConnections":["my_host.example.com"]}`, "may hold only letters"},
		{"error/AllowedConnections port 0", `{"AllowedConnections":["example.com:0"]}`, `"0" is not a port number`},
		{"error/AllowedConnections port too big", `{"AllowedConnections":["example.com:65536"]}`, `"65536" is not a port number`},
		{"error/AllowedConnections empty port", `{"AllowedConnections":["example.com:"]}`, `"" is not a port number`},
		{"error/AllowedConnections port with sign", `{"AllowedConnections":["example.com:+80"]}`, `"+80" is not a port number`},
		{"error/AllowedConnections bad IPv4", `{"AllowedConnections":["192.0.2.300"]}`, "is neither an IPv4 address nor a host name"},
		{"error/AllowedConnections bad IPv6", `{"AllowedConnections":["2001:db8::g"]}`, "is not an IPv6 address"},
		{"error/AllowedConnections IPv6 zone", `{"AllowedConnections":["fe80::1%eth0"]}`, "is not an IPv6 address"},
		{"error/AllowedConnections bracketed IPv4", `{"AllowedConnections":["[192.0.2.1]:80"]}`, "is not an IPv6 address"},
		{"error/AllowedConnections unclosed bracket", `{"AllowedConnections":["[::1:80"]}`, "missing ]"},
		{"error/AllowedConnections wildcard in middle", `{"AllowedConnections":["a.*.example.com"]}`, "may hold only letters"},
		{"error/AllowedConnections wildcard of a TLD", `{"AllowedConnections":["*.com"]}`, "at least two labels"},
		{"error/AllowedConnections trailing dot", `{"AllowedConnections":["example.com."]}`, "empty label"},
		{"error/AllowedConnections hyphen", `{"AllowedConnections":["-a.example.com"]}`, "starts or ends with a hyphen"},
		{"error/AllowedConnections long label", `{"AllowedConnections":["` + long + `a.com"]}`, "longer than 63"},
		{"error/AllowedConnections duplicate", `{"AllowedConnections":["example.com","EXAMPLE.com"]}`, "Capabilities.AllowedConnections[1]: EXAMPLE.com is listed twice"},
		{"error/AllowedConnections not a list", `{"AllowedConnections":"example.com"}`, `field "Capabilities.AllowedConnections": expected a list, got string`},

		{"ok/AllowedTcpServerPorts", `{"AllowedTcpServerPorts":[1,443,65535]}`, ""},
		{"error/AllowedTcpServerPorts 0", `{"AllowedTcpServerPorts":[0]}`, "Capabilities.AllowedTcpServerPorts[0]: 0 is not a port number (1 to 65535)"},
		{"error/AllowedTcpServerPorts 65536", `{"AllowedTcpServerPorts":[80,65536]}`, "Capabilities.AllowedTcpServerPorts[1]: 65536 is not a port number"},
		{"error/AllowedTcpServerPorts duplicate", `{"AllowedTcpServerPorts":[80,80]}`, "Capabilities.AllowedTcpServerPorts[1]: 80 is listed twice"},
		{"error/AllowedTcpServerPorts string", `{"AllowedTcpServerPorts":["80"]}`, `field "Capabilities.AllowedTcpServerPorts": expected an integer, got string`},
		{"error/AllowedTcpServerPorts fraction", `{"AllowedTcpServerPorts":[80.5]}`, `expected an integer, got number 80.5`},
		{"ok/AllowedUdpServerPorts", `{"AllowedUdpServerPorts":[53,5353]}`, ""},
		{"error/AllowedUdpServerPorts negative", `{"AllowedUdpServerPorts":[-1]}`, "Capabilities.AllowedUdpServerPorts[0]: -1 is not a port number"},
		{"error/AllowedUdpServerPorts duplicate", `{"AllowedUdpServerPorts":[53,53]}`, "listed twice"},

		{"ok/DeviceAuthentication tenant", `{"DeviceAuthentication":"77304f1f-9530-4157-8598-30bc1f3d66f0"}`, ""},
		{"ok/DeviceAuthentication empty", `{"DeviceAuthentication":""}`, ""},
		{"error/DeviceAuthentication uppercase", `{"DeviceAuthentication":"77304F1F-9530-4157-8598-30BC1F3D66F0"}`, "Capabilities.DeviceAuthentication: must be empty or a tenant id: \"77304F1F-9530-4157-8598-30BC1F3D66F0\" must be written in lowercase"},
		{"error/DeviceAuthentication braces", `{"DeviceAuthentication":"{77304f1f-9530-4157-8598-30bc1f3d66f0}"}`, "is not a GUID"},
		{"error/DeviceAuthentication true", `{"DeviceAuthentication":true}`, `field "Capabilities.DeviceAuthentication": expected a string, got bool`},

		{"ok/Gpio", `{"Gpio":[0,1,65535]}`, ""},
		{"error/Gpio negative", `{"Gpio":[-1]}`, "Capabilities.Gpio[0]: -1 is not a GPIO number (0 to 65535)"},
		{"error/Gpio too big", `{"Gpio":[65536]}`, "65536 is not a GPIO number"},
		{"error/Gpio duplicate", `{"Gpio":[4,5,4]}`, "Capabilities.Gpio[2]: 4 is listed twice"},
		{"error/Gpio names", `{"Gpio":["GPIO4"]}`, `field "Capabilities.Gpio": expected an integer, got string`},

		{"ok/Uart", `{"Uart":["ISU0","ISU1"]}`, ""},
		{"error/Uart device path", `{"Uart":["/dev/ttyS0"]}`, `Capabilities.Uart[0]: "/dev/ttyS0" is not a peripheral name`},
		{"error/Uart duplicate", `{"Uart":["ISU0","ISU0"]}`, "Capabilities.Uart[1]: ISU0 is listed twice"},
		{"ok/I2cMaster", `{"I2cMaster":["ISU2"]}`, ""},
		{"error/I2cMaster empty name", `{"I2cMaster":[""]}`, `Capabilities.I2cMaster[0]: "" is not a peripheral name`},
		{"ok/SpiMaster", `{"SpiMaster":["ISU3"]}`, ""},
		{"error/SpiMaster long name", `{"SpiMaster":["` + strings.Repeat("S", 33) + `"]}`, "Capabilities.SpiMaster[0]"},
		{"ok/Pwm", `{"Pwm":["PWM_CONTROLLER0"]}`, ""},
		{"error/Pwm hyphen", `{"Pwm":["PWM-0"]}`, `Capabilities.Pwm[0]: "PWM-0" is not a peripheral name`},
		{"ok/Adc", `{"Adc":["ADC_CONTROLLER0"]}`, ""},
		{"error/Adc space", `{"Adc":["ADC 0"]}`, "Capabilities.Adc[0]"},

		{"ok/MutableStorage", `{"MutableStorage":{"SizeKB":1}}`, ""},
		{"ok/MutableStorage 1 GiB", `{"MutableStorage":{"SizeKB":1048576}}`, ""},
		{"error/MutableStorage zero", `{"MutableStorage":{"SizeKB":0}}`, "Capabilities.MutableStorage.SizeKB: 0 is out of range (1 to 1048576)"},
		{"error/MutableStorage missing size", `{"MutableStorage":{}}`, "Capabilities.MutableStorage.SizeKB: 0 is out of range"},
		{"error/MutableStorage too big", `{"MutableStorage":{"SizeKB":1048577}}`, "1048577 is out of range"},
		{"error/MutableStorage unknown field", `{"MutableStorage":{"SizeMB":8}}`, `unknown field "SizeMB" in Capabilities.MutableStorage`},
		{"error/MutableStorage number", `{"MutableStorage":8}`, `field "Capabilities.MutableStorage": expected an object, got number`},

		{"ok/SoftwareUpdateDeferral", `{"SoftwareUpdateDeferral":true}`, ""},
		{"error/SoftwareUpdateDeferral string", `{"SoftwareUpdateDeferral":"yes"}`, `field "Capabilities.SoftwareUpdateDeferral": expected true or false, got string`},
		{"ok/SystemEventNotifications", `{"SystemEventNotifications":true}`, ""},
		{"error/SystemEventNotifications number", `{"SystemEventNotifications":1}`, "expected true or false, got number"},
		{"ok/NetworkConfig", `{"NetworkConfig":false}`, ""},
		{"error/NetworkConfig list", `{"NetworkConfig":[]}`, "expected true or false, got array"},

		{"ok/PowerControls", `{"PowerControls":["SetPowerProfile"]}`, ""},
		{"error/PowerControls unknown", `{"PowerControls":["Hibernate"]}`, `Capabilities.PowerControls[0]: "Hibernate" is not one of "ForceReboot", "ForcePowerDown", "SetPowerProfile"`},
		{"error/PowerControls duplicate", `{"PowerControls":["ForceReboot","ForceReboot"]}`, "listed twice"},

		{"error/unknown capability", `{"Gpios":[1]}`, `app manifest: unknown capability "Gpios"`},
		{"error/capability in wrong case", `{"gpio":[1]}`, `unknown capability "gpio" (did you mean "Gpio"? names are case-sensitive)`},
		{"error/Azure Sphere capability we lack", `{"WifiConfig":true}`, `unknown capability "WifiConfig"`},
		{"error/capability twice", `{"Gpio":[1],"Gpio":[2]}`, `field "Capabilities.Gpio" appears twice`},
		{"error/too many entries", `{"Gpio":[` + strings.TrimSuffix(strings.Repeat("1,", 257), ",") + `]}`, "Capabilities.Gpio: 257 entries, more than 256"},
		{"error/capabilities not an object", `[]`, `field "Capabilities": expected an object, got array`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			checkParse(t, manifestWith(tc.caps), tc.want)
		})
	}
}

func TestParseManifestFields(t *testing.T) {
	base := map[string]string{
		"SchemaVersion": `1`, "Name": `"Blink"`, "ComponentId": `"` + testAppID + `"`, "EntryPoint": `"/bin/app"`,
	}
	with := func(field, value string) string {
		var parts []string
		for _, k := range []string{"SchemaVersion", "Name", "ComponentId", "EntryPoint"} {
			v := base[k]
			if k == field {
				if value == "" {
					continue
				}
				v = value
			}
			parts = append(parts, fmt.Sprintf("%q:%s", k, v))
		}
		if field == "CmdArgs" || field == "Extra" {
			parts = append(parts, value)
		}
		return "{" + strings.Join(parts, ",") + "}"
	}
	tests := []struct {
		name, json, want string
	}{
		{"ok/minimal", with("", ""), ""},
		{"error/SchemaVersion missing", with("SchemaVersion", ""), "SchemaVersion must be 1, not 0"},
		{"error/SchemaVersion 2", with("SchemaVersion", "2"), "SchemaVersion must be 1, not 2"},
		{"error/SchemaVersion string", with("SchemaVersion", `"1"`), `field "SchemaVersion": expected an integer, got string`},
		{"error/Name missing", with("Name", ""), "app manifest: Name: missing"},
		{"error/Name too long", with("Name", `"`+strings.Repeat("n", 65)+`"`), "Name: 65 bytes, more than 64"},
		{"error/Name control character", with("Name", `"a\nb"`), "Name: \"a\\nb\" contains a character that is not printable"},
		{"ok/Name unicode", with("Name", `"Kaffeemaschine Straße"`), ""},
		{"error/ComponentId missing", with("ComponentId", ""), "ComponentId: missing; want a GUID"},
		{"error/ComponentId uppercase", with("ComponentId", `"3F0C2B5E-7D4A-4C1E-9B8F-2A6D5E4C3B21"`), "must be written in lowercase"},
		{"error/ComponentId not a GUID", with("ComponentId", `"blink"`), `ComponentId: "blink" is not a GUID`},
		{"error/ComponentId zero", with("ComponentId", `"00000000-0000-0000-0000-000000000000"`), "all-zero GUID"},
		{"error/EntryPoint missing", with("EntryPoint", ""), "EntryPoint \"\": missing"},
		{"error/EntryPoint relative", with("EntryPoint", `"bin/app"`), "must be an absolute path inside the app image"},
		{"error/EntryPoint root", with("EntryPoint", `"/"`), "must name a file"},
		{"error/EntryPoint unclean", with("EntryPoint", `"/bin/../etc/app"`), "must be a clean path (/etc/app)"},
		{"error/EntryPoint trailing slash", with("EntryPoint", `"/bin/"`), "must be a clean path"},
		{"error/EntryPoint NUL", with("EntryPoint", `"/bin/a\u0000"`), "contains a NUL byte"},
		{"ok/CmdArgs", with("CmdArgs", `"CmdArgs":["-v","--port=80"]`), ""},
		{"error/CmdArgs NUL", with("CmdArgs", `"CmdArgs":["a\u0000b"]`), "CmdArgs[0]: contains a NUL byte"},
		{"error/CmdArgs string", with("CmdArgs", `"CmdArgs":"-v"`), `field "CmdArgs": expected a list, got string`},
		{"error/unknown field", with("Extra", `"ApplicationType":"Default"`), `app manifest: unknown field "ApplicationType"`},
		{"error/field in wrong case", with("Extra", `"entrypoint":"/bin/x"`), `unknown field "entrypoint" (did you mean "EntryPoint"?`},
		{"error/field twice", with("Extra", `"Name":"Other"`), `field "Name" appears twice`},
		{"error/not JSON", `SchemaVersion: 1`, "app manifest: invalid JSON"},
		{"error/truncated", `{"SchemaVersion":1`, "unexpected end of input"},
		{"error/not an object", `[1]`, "app manifest: expected an object, got array"},
		{"error/trailing data", with("", "") + `{}`, "unexpected data after the JSON value"},
		{"error/not UTF-8", "{\"Name\":\"\xff\"}", "not valid UTF-8"},
		{"error/too big", `{"Name":"` + strings.Repeat(" ", MaxManifestSize) + `"}`, "more than the limit of 65536"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			checkParse(t, tc.json, tc.want)
		})
	}
}

func checkParse(t *testing.T, doc, want string) {
	t.Helper()
	m, err := ParseManifest([]byte(doc))
	if want == "" {
		if err != nil {
			t.Fatalf("ParseManifest(%s): %v", doc, err)
		}
		if _, err := m.Marshal(); err != nil {
			t.Fatalf("Marshal: %v", err)
		}
		return
	}
	if err == nil {
		t.Fatalf("ParseManifest(%s) succeeded, want an error saying %q", doc, want)
	}
	if !strings.Contains(err.Error(), want) {
		t.Fatalf("got error %q\nwant it to say %q", err, want)
	}
	if !strings.HasPrefix(err.Error(), "app manifest: ") {
		t.Errorf("error %q does not say it is about the app manifest", err)
	}
}

func TestMarshalInvalid(t *testing.T) {
	m := testManifest()
	m.Capabilities.Gpio = []int{-3}
	if _, err := m.Marshal(); err == nil || !strings.Contains(err.Error(), "Capabilities.Gpio[0]") {
		t.Fatalf("Marshal of an invalid manifest: got %v", err)
	}
}
