package sphere

import (
	"time"
)

// Failure classes: what failed, the device's own software or an app.
const (
	FailureClassOS  = "os"
	FailureClassApp = "app"
)

// Failure categories a device reports.
const (
	FailureAppExit           = "app_exit"           // an app exited with a non-zero code
	FailureAppCrash          = "app_crash"          // an app was killed by a signal
	FailureAppRestartLoop    = "app_restart_loop"   // an app kept failing and was given up on
	FailureUpdateFailed      = "update_failed"      // an update could not be installed
	FailureUpdateRolledBack  = "update_rolled_back" // an update was installed, then rolled back
	FailureAttestRefused     = "attestation_refused"
	FailureAgentPanic        = "agent_panic"
	FailureUncleanShutdown   = "unclean_shutdown" // the agent stopped without a clean stop (power cut, kill)
	FailureEventsDropped     = "events_dropped"   // the device's queue was full and dropped Count events
	failureCategoryMaxLength = 64
)

// FailureCategories lists the known categories, with the class each
// belongs to when the device does not say.
var FailureCategories = map[string]string{
	FailureAppExit: FailureClassApp, FailureAppCrash: FailureClassApp, FailureAppRestartLoop: FailureClassApp,
	FailureUpdateFailed: FailureClassOS, FailureUpdateRolledBack: FailureClassOS, FailureAttestRefused: FailureClassOS,
	FailureAgentPanic: FailureClassOS, FailureUncleanShutdown: FailureClassOS, FailureEventsDropped: FailureClassOS,
}

// CrashCategories are the categories that count as a crash for a rollout's
// crash rate.
var CrashCategories = []string{FailureAppCrash, FailureAppExit, FailureAppRestartLoop}

// FailureEvent is one failure as a device records and uploads it. The
// device makes ID (32 lowercase hex digits, random), so that a batch sent
// again after a lost answer is stored once: the service keeps one event per
// device and ID. Count events alike were coalesced into it, the first at
// FirstTime and the last at LastTime.
type FailureEvent struct {
	ID          string    `json:"id"`
	Class       string    `json:"class"`
	Category    string    `json:"category"`
	Description string    `json:"description"`
	ComponentID string    `json:"component_id,omitempty"`
	ImageID     string    `json:"image_id,omitempty"`
	Version     string    `json:"version,omitempty"`
	ExitCode    *int      `json:"exit_code,omitempty"`
	Signal      string    `json:"signal,omitempty"`
	Count       int64     `json:"count"`
	FirstTime   time.Time `json:"first_time"`
	LastTime    time.Time `json:"last_time"`
}

// FailureReport is a failure event as the service stores it: with the
// device, and where the device stood (tenant, product, group) when it was
// uploaded. Seq orders reports by arrival.
type FailureReport struct {
	Seq           int64     `json:"seq"`
	TenantID      string    `json:"tenant_id"`
	ProductID     string    `json:"product_id,omitempty"`
	DeviceGroupID string    `json:"device_group_id,omitempty"`
	DeviceID      string    `json:"device_id"`
	ReceivedAt    time.Time `json:"received_at"`
	FailureEvent
}

// Limits of a failure event's fields.
const (
	MaxFailureDescription = 1024
	MaxFailureCount       = 1 << 40
)

// earliestFailure is the earliest time a failure event may carry: a device
// whose clock says 1970 has not set it yet, and its times mean nothing.
var earliestFailure = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)

// ValidateFailureEvent checks an event from a device; now bounds its times
// (a day of clock skew is allowed).
func ValidateFailureEvent(e FailureEvent, now time.Time) error {
	if len(e.ID) != 32 || !isLowerHex(e.ID) {
		return Errorf(EInvalid, "event id %q must be 32 lowercase hex digits", e.ID)
	}
	class, ok := FailureCategories[e.Category]
	if !ok {
		return Errorf(EInvalid, "event %s: category %q is not one of app_exit, app_crash, app_restart_loop, update_failed, update_rolled_back, attestation_refused, agent_panic, unclean_shutdown, events_dropped", e.ID, truncateRunes(e.Category, failureCategoryMaxLength))
	}
	if e.Class != FailureClassOS && e.Class != FailureClassApp {
		return Errorf(EInvalid, "event %s: class %q is not os or app (%s is usually %s)", e.ID, truncateRunes(e.Class, 16), e.Category, class)
	}
	// The message's label is built only for a text that is not plainly
	// valid: a batch checks thousands of them.
	if !plainText(e.Description, MaxFailureDescription) {
		if err := ValidateText("event "+e.ID+": description", e.Description, MaxFailureDescription); err != nil {
			return err
		}
	}
	for _, f := range [...][2]string{{"component_id", e.ComponentID}, {"image_id", e.ImageID}, {"version", e.Version}, {"signal", e.Signal}} {
		if plainText(f[1], 128) {
			continue
		}
		if err := ValidateText("event "+e.ID+": "+f[0], f[1], 128); err != nil {
			return err
		}
	}
	if e.Count < 1 || e.Count > MaxFailureCount {
		return Errorf(EInvalid, "event %s: count %d must be between 1 and %d", e.ID, e.Count, int64(MaxFailureCount))
	}
	latest := now.Add(24 * time.Hour)
	if e.FirstTime.Before(earliestFailure) || e.LastTime.After(latest) || e.LastTime.Before(e.FirstTime) {
		return Errorf(EInvalid, "event %s: times %s to %s must be in order, after 2000 and not in the future", e.ID,
			e.FirstTime.UTC().Format(time.RFC3339), e.LastTime.UTC().Format(time.RFC3339))
	}
	return nil
}

// plainText reports whether s is at most max bytes of printable ASCII,
// which ValidateText always accepts.
func plainText(s string, max int) bool {
	if len(s) > max {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x7f {
			return false
		}
	}
	return true
}

func isLowerHex(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

func truncateRunes(s string, n int) string {
	r := []rune(s)
	if len(r) > n {
		return string(r[:n]) + "..."
	}
	return s
}
