package api

import (
	"time"

	"github.com/opensphere/sphere"
)

// MaxFailureBatch bounds the events of one upload, and MaxFailureUploadBytes
// its body.
const (
	MaxFailureBatch       = 1000
	MaxFailureUploadBytes = 4 << 20
)

// FailureUpload is a device's batch of failure events
// (POST /device/v1/failure-reports).
type FailureUpload struct {
	Events []sphere.FailureEvent `json:"events" doc:"at most 1000 events; an event already stored (same device and id) is counted once"`
}

// Validate checks a batch from a device against the clock now; nothing of a
// batch with one bad event is stored.
func (u *FailureUpload) Validate(now time.Time) error {
	if len(u.Events) > MaxFailureBatch {
		return sphere.Errorf(sphere.EInvalid, "a batch holds at most %d events, got %d; send the rest in another batch", MaxFailureBatch, len(u.Events))
	}
	seen := make(map[string]bool, len(u.Events))
	for _, e := range u.Events {
		if err := sphere.ValidateFailureEvent(e, now); err != nil {
			return err
		}
		if seen[e.ID] {
			return sphere.Errorf(sphere.EInvalid, "event id %s is given twice in the batch", e.ID)
		}
		seen[e.ID] = true
	}
	return nil
}

// FailureUploadResult says what became of an upload: Accepted events were
// stored now, Duplicates had been stored before (a batch sent again).
type FailureUploadResult struct {
	Accepted   int `json:"accepted"`
	Duplicates int `json:"duplicates"`
}

// FailureFilter is the filter shared by the failure-report routes.
type FailureFilter struct {
	Since       time.Time `json:"-" query:"since" doc:"RFC 3339 time: only failures whose last occurrence is at or after it"`
	Until       time.Time `json:"-" query:"until" doc:"RFC 3339 time: only failures whose last occurrence is before it"`
	DeviceGroup string    `json:"-" query:"device_group" doc:"only failures of devices in this device group (id) when they uploaded"`
	Device      string    `json:"-" query:"device" doc:"only failures of this device"`
	Category    string    `json:"-" query:"category" doc:"only this category, e.g. app_crash"`
	Class       string    `json:"-" query:"class" doc:"os or app"`
}

// ListFailureReports lists a tenant's failure reports in arrival order.
type ListFailureReports struct {
	Paging
	FailureFilter
}

// SummarizeFailureReports aggregates a tenant's failure reports.
type SummarizeFailureReports struct {
	FailureFilter
	By    string `json:"-" query:"by" doc:"comma-separated dimensions: product, device_group, device, component, image, version, class, category, description; default class,category,description"`
	Limit int    `json:"-" query:"limit" doc:"at most this many rows, the most frequent first, 1 to 10000; default 1000"`
}

// FailureSummary is the answer of the summary route.
type FailureSummary struct {
	By   []string            `json:"by"`
	Rows []FailureSummaryRow `json:"rows"`
	More bool                `json:"more,omitempty"` // rows were left out by the limit
}

// FailureSummaryRow is one combination of the chosen dimensions: how many
// failures (the sum of the events' counts), in how many events, on how
// many devices, first and last seen.
type FailureSummaryRow struct {
	Key       map[string]string `json:"key"`
	Failures  int64             `json:"failures"`
	Events    int64             `json:"events"`
	Devices   int64             `json:"devices"`
	FirstTime time.Time         `json:"first_time"`
	LastTime  time.Time         `json:"last_time"`
}
