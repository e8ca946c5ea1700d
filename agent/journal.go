package agent

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"time"

	"github.com/opensphere/sphere/api"
	"github.com/opensphere/sphere/bootloader"
	"github.com/opensphere/sphere/tlsutil"
)

// The update journal is the engine's whole state in one small JSON file,
// replaced atomically (temporary file, fsync, rename, fsync of the
// directory) at every step of an install. Whatever moment the power dies,
// it is either the state before a step or the state after it, and
// resume() turns either into the same outcome.

// Steps of an install transaction, in order. An OS install goes
// downloading -> verified -> written -> armed (reboot) -> committing; an
// app install goes downloading -> verified -> written -> trial ->
// committing. Rolling back happens from written, armed or trial.
const (
	stepDownloading = "downloading" // the package is being fetched into staging
	stepVerified    = "verified"    // staged, signature and security version checked
	stepWritten     = "written"     // the inactive slot (or app slot) holds it, synced
	stepArmed       = "armed"       // OS: the bootloader tries the slot at the next boot
	stepTrial       = "trial"       // app: the supervisor runs the new version
	stepCommitting  = "committing"  // healthy: the bootloader committed, counter next
	stepRollingBack = "rolling_back"
)

var validSteps = map[string]bool{stepDownloading: true, stepVerified: true, stepWritten: true, stepArmed: true,
	stepTrial: true, stepCommitting: true, stepRollingBack: true}

// installed is an image the device runs (or keeps as the previous one).
type installed struct {
	Kind            string `json:"kind"` // "os" or "app"
	ComponentID     string `json:"component_id"`
	ImageID         string `json:"image_id"`
	Name            string `json:"name"`
	Version         string `json:"version"`
	SecurityVersion uint32 `json:"security_version"`
	PayloadSize     int64  `json:"payload_size"`
	// Slot is the OS slot ("a" or "b") that holds an OS image.
	Slot bootloader.Slot `json:"slot,omitempty"`
}

// txn is the install in progress.
type txn struct {
	DeploymentID string                `json:"deployment_id,omitempty"`
	Target       api.UpdateCheckTarget `json:"target"`
	Step         string                `json:"step"`
	// Slot is where an OS image goes (the inactive slot at the start).
	Slot bootloader.Slot `json:"slot,omitempty"`
	// Image is what is being installed, filled in once verified.
	Image installed `json:"image"`
	// Reason says why a rollback happens.
	Reason string `json:"reason,omitempty"`
}

// journal is the update engine's persistent state.
type journal struct {
	Format int `json:"format"` // 1
	// Components are the committed images, by component id.
	Components map[string]installed `json:"components"`
	// Floors are the lowest security version each component may install
	// from now on: the highest it has committed. The OS's floor is also
	// the root of trust's anti-rollback counter.
	Floors map[string]uint32 `json:"floors"`
	Txn    *txn              `json:"txn,omitempty"`
	// Failed lists images that failed or rolled back, so that the engine
	// does not install them again for the same deployment.
	Failed map[string]string `json:"failed,omitempty"` // image id -> deployment id
	// DeferUntil is, by kind ("os", "app"), until when apps deferred
	// installs; Offered is when each image was first offered, which bounds
	// how long it can be deferred.
	DeferUntil map[string]time.Time `json:"defer_until,omitempty"`
	Offered    map[string]time.Time `json:"offered,omitempty"`
	// Last* are the outcome of the latest install, for the update check.
	LastUpdate       string    `json:"last_update,omitempty"`
	LastError        string    `json:"last_error,omitempty"`
	LastDeploymentID string    `json:"last_deployment_id,omitempty"`
	LastUpdateAt     time.Time `json:"last_update_at,omitzero"`
}

// maxJournalBytes bounds the journal file: a few hundred components fit.
const maxJournalBytes = 1 << 20

var (
	hexID     = regexp.MustCompile(`^[0-9a-f]{64}$`)
	guidShape = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)
)

func newJournal() *journal {
	return &journal{Format: 1, Components: map[string]installed{}, Floors: map[string]uint32{}, Failed: map[string]string{},
		DeferUntil: map[string]time.Time{}, Offered: map[string]time.Time{}}
}

// readJournal loads the journal at path; a missing file is a fresh one.
func readJournal(path string) (*journal, error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return newJournal(), nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxJournalBytes+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	if len(data) > maxJournalBytes {
		return nil, fmt.Errorf("%s is larger than %d bytes", path, maxJournalBytes)
	}
	j, err := parseJournal(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return j, nil
}

// parseJournal decodes and checks a journal.
func parseJournal(data []byte) (*journal, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	j := newJournal()
	if err := dec.Decode(j); err != nil {
		return nil, fmt.Errorf("update journal: %w", err)
	}
	if dec.More() {
		return nil, errors.New("update journal: data after the JSON document")
	}
	if err := j.validate(); err != nil {
		return nil, fmt.Errorf("update journal: %w", err)
	}
	if j.Components == nil {
		j.Components = map[string]installed{}
	}
	if j.Floors == nil {
		j.Floors = map[string]uint32{}
	}
	if j.Failed == nil {
		j.Failed = map[string]string{}
	}
	if j.DeferUntil == nil {
		j.DeferUntil = map[string]time.Time{}
	}
	if j.Offered == nil {
		j.Offered = map[string]time.Time{}
	}
	return j, nil
}

func (j *journal) validate() error {
	if j.Format != 1 {
		return fmt.Errorf("format %d is not supported (want 1)", j.Format)
	}
	if len(j.Components) > 256 || len(j.Floors) > 256 || len(j.Failed) > 1024 || len(j.Offered) > 1024 || len(j.DeferUntil) > 2 {
		return errors.New("too many entries")
	}
	for id, c := range j.Components {
		if err := c.validate(); err != nil {
			return fmt.Errorf("component %q: %w", id, err)
		}
		if c.ComponentID != id {
			return fmt.Errorf("component %q holds component %q", id, c.ComponentID)
		}
	}
	for id := range j.Floors {
		if !guidShape.MatchString(id) {
			return fmt.Errorf("floor of %q: not a component id", id)
		}
	}
	for kind := range j.DeferUntil {
		if kind != "os" && kind != "app" {
			return fmt.Errorf("defer_until of %q: not os or app", kind)
		}
	}
	for id := range j.Offered {
		if !hexID.MatchString(id) {
			return fmt.Errorf("offered image %q: not an image id", id)
		}
	}
	for id := range j.Failed {
		if !hexID.MatchString(id) {
			return fmt.Errorf("failed image %q: not an image id", id)
		}
	}
	if t := j.Txn; t != nil {
		if !validSteps[t.Step] {
			return fmt.Errorf("txn step %q is unknown", t.Step)
		}
		if !hexID.MatchString(t.Target.ImageID) || !guidShape.MatchString(t.Target.ComponentID) {
			return errors.New("txn target has no valid image and component id")
		}
		if t.Target.Kind != "os" && t.Target.Kind != "app" {
			return fmt.Errorf("txn target kind %q is not os or app", t.Target.Kind)
		}
		if t.Target.Kind == "os" && !t.Slot.Valid() {
			return fmt.Errorf("txn slot %q is not a or b", t.Slot)
		}
		if t.Step != stepDownloading {
			if err := t.Image.validate(); err != nil {
				return fmt.Errorf("txn image: %w", err)
			}
			if t.Image.ImageID != t.Target.ImageID {
				return errors.New("txn image is not its target")
			}
		}
	}
	return nil
}

func (c installed) validate() error {
	switch {
	case c.Kind != "os" && c.Kind != "app":
		return fmt.Errorf("kind %q is not os or app", c.Kind)
	case !guidShape.MatchString(c.ComponentID):
		return fmt.Errorf("component id %q is not a GUID", c.ComponentID)
	case !hexID.MatchString(c.ImageID):
		return fmt.Errorf("image id %q is not a SHA-256", c.ImageID)
	case c.PayloadSize < 0:
		return errors.New("negative payload size")
	case c.Kind == "os" && !c.Slot.Valid():
		return fmt.Errorf("OS slot %q is not a or b", c.Slot)
	}
	return nil
}

// writeJournal replaces the journal atomically.
func writeJournal(path string, j *journal) error {
	data, err := json.MarshalIndent(j, "", " ")
	if err != nil {
		return err
	}
	return tlsutil.WriteFileAtomic(path, append(data, '\n'), 0o600)
}
