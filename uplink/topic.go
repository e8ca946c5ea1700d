package uplink

import (
	"errors"
	"strings"
)

// validTopic checks a topic name to publish to (MQTT 5 section 4.7).
func validTopic(t string) error {
	switch {
	case t == "":
		return errors.New("empty topic")
	case len(t) > 65535:
		return errors.New("topic longer than 65535 bytes")
	case strings.ContainsAny(t, "+#\x00"):
		return errors.New("a topic name to publish to cannot contain +, # or NUL")
	}
	return nil
}

// validFilter checks a topic filter to subscribe to.
func validFilter(f string) error {
	if f == "" || len(f) > 65535 || strings.ContainsRune(f, 0) {
		return errors.New("topic filter must be 1 to 65535 bytes without NUL")
	}
	levels := strings.Split(f, "/")
	for i, l := range levels {
		switch {
		case l == "#" && i != len(levels)-1:
			return errors.New("# must be the last level of a topic filter")
		case l != "#" && l != "+" && strings.ContainsAny(l, "+#"):
			return errors.New("+ and # must stand alone in a topic filter level")
		}
	}
	return nil
}

// match reports whether topic matches filter; topics starting with $ do
// not match filters starting with a wildcard (MQTT 5 section 4.7.2).
func match(filter, topic string) bool {
	if strings.HasPrefix(topic, "$") && (strings.HasPrefix(filter, "+") || strings.HasPrefix(filter, "#")) {
		return false
	}
	fl, tl := strings.Split(filter, "/"), strings.Split(topic, "/")
	for i, f := range fl {
		if f == "#" {
			return true
		}
		if i >= len(tl) || (f != "+" && f != tl[i]) {
			return false
		}
	}
	return len(fl) == len(tl)
}
