package uplink

import "testing"

func TestMatch(t *testing.T) {
	for _, tc := range []struct {
		name, filter, topic string
		want                bool
	}{
		{"ok/exact", "a/b", "a/b", true},
		{"ok/plus", "a/+/c", "a/b/c", true},
		{"ok/hash", "a/#", "a/b/c", true},
		{"ok/hash matches parent", "a/#", "a", true},
		{"ok/plus empty level", "a/+", "a/", true},
		{"no/longer topic", "a/b", "a/b/c", false},
		{"no/shorter topic", "a/b/c", "a/b", false},
		{"no/plus one level", "a/+", "a/b/c", false},
		{"no/dollar and wildcard", "#", "$SYS/x", false},
		{"ok/dollar explicit", "$SYS/#", "$SYS/x", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := match(tc.filter, tc.topic); got != tc.want {
				t.Errorf("match(%q, %q) = %v; want %v", tc.filter, tc.topic, got, tc.want)
			}
		})
	}
}

func TestValidFilterAndTopic(t *testing.T) {
	for _, tc := range []struct {
		name, s       string
		filter, topic bool
	}{
		{"ok", "devices/abc/t", true, true},
		{"wildcards", "devices/+/#", true, false},
		{"error/empty", "", false, false},
		{"error/hash not last", "a/#/b", false, false},
		{"error/plus inside level", "a/b+/c", false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := validFilter(tc.s) == nil; got != tc.filter {
				t.Errorf("validFilter(%q) ok = %v; want %v", tc.s, got, tc.filter)
			}
			if got := validTopic(tc.s) == nil; got != tc.topic {
				t.Errorf("validTopic(%q) ok = %v; want %v", tc.s, got, tc.topic)
			}
		})
	}
}

func TestBrokerURL(t *testing.T) {
	for _, tc := range []struct{ name, in, want string }{
		{"ok", "mqtts://broker:8883", "broker:8883"},
		{"ok/default port", "mqtts://broker", "broker:8883"},
		{"ok/tls", "tls://127.0.0.1:1", "127.0.0.1:1"},
		{"error/plain", "mqtt://broker:1883", ""},
		{"error/no host", "mqtts://:8883", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			u, err := brokerURL(tc.in)
			got := ""
			if err == nil {
				got = u.Host
			}
			if got != tc.want {
				t.Errorf("brokerURL(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
			}
		})
	}
}
