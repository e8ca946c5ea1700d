package cli

import (
	"testing"
	"time"

	"github.com/opensphere/sphere"
	"github.com/opensphere/sphere/supervisor"
)

// TestAppFailure: the supervisor's exits, crashes and restart loops become
// failure reports of the app's component, image and version.
func TestAppFailure(t *testing.T) {
	at := time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)
	app := supervisor.App{ComponentID: "blinky", ImageID: "img-3", Version: "3.0"}
	for _, c := range []struct {
		ev       supervisor.Event
		category string
	}{
		{supervisor.Event{Kind: supervisor.EventExit, ExitCode: 3, Description: "exited with code 3"}, sphere.FailureAppExit},
		{supervisor.Event{Kind: supervisor.EventCrash, Signal: "SIGSEGV", Description: "killed by SIGSEGV"}, sphere.FailureAppCrash},
		{supervisor.Event{Kind: supervisor.EventRestartLoop, Description: "exited 5 times within 5m0s"}, sphere.FailureAppRestartLoop},
	} {
		c.ev.App, c.ev.Time = app, at
		f := appFailure(c.ev)
		if f.Category != c.category || f.Class != sphere.FailureClassApp || f.ComponentID != "blinky" || f.ImageID != "img-3" || f.Version != "3.0" ||
			f.Description != c.ev.Description || !f.FirstTime.Equal(at) || f.Signal != c.ev.Signal {
			t.Errorf("%s: %+v; want %s of blinky 3.0", c.ev.Kind, f, c.category)
		}
		if (f.ExitCode != nil) != (c.category == sphere.FailureAppExit) || f.ExitCode != nil && *f.ExitCode != 3 {
			t.Errorf("%s: exit code %v", c.ev.Kind, f.ExitCode)
		}
	}
}
