package server

import (
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/opensphere/sphere"
	"github.com/opensphere/sphere/api"
	"github.com/opensphere/sphere/store"
)

// failureAdminRoutes are the tenant's failure-report routes: list and
// summarise what its devices reported.
func (s *Server) failureAdminRoutes() []*route {
	const t = "/api/v1/tenants/{tenant}"
	rows := []struct {
		route
		h func(*route)
	}{
		{route{Method: http.MethodGet, Path: t + "/failure-reports", Summary: "List failure reports in arrival order, a page at a time (follow next_page_token for all of them)", Access: AccessTenant, Role: sphere.RoleReader}, handle(s.listFailureReports)},
		{route{Method: http.MethodGet, Path: t + "/failure-reports/summary", Summary: "Failure reports aggregated by the chosen dimensions: failures, events and devices", Access: AccessTenant, Role: sphere.RoleReader}, handle(s.summarizeFailureReports)},
	}
	return finishRoutes(rows)
}

// failureDeviceRoutes are the device's failure-report route: upload over
// mutual TLS.
func (s *Server) failureDeviceRoutes() []*route {
	rows := []struct {
		route
		h func(*route)
	}{
		{route{Method: http.MethodPost, Path: "/device/v1/failure-reports", Summary: "Upload failure events (at most 1000); an event sent again is counted once", Access: AccessDevice, MaxBody: api.MaxFailureUploadBytes}, handle(s.uploadFailureReports)},
	}
	return finishRoutes(rows)
}

func (s *Server) uploadFailureReports(c *call, in *api.FailureUpload) (api.FailureUploadResult, error) {
	if err := in.Validate(s.now()); err != nil {
		return api.FailureUploadResult{}, err
	}
	n, err := s.store.AddFailureReports(c.ctx, *c.device, in.Events)
	if err != nil {
		return api.FailureUploadResult{}, err
	}
	// New crashes may halt the group's rollout now rather than at the next
	// hourly maintenance; at most once per crashCheckEvery and group on
	// this replica, so that a fleet of crashing devices does not count
	// the same crashes on every upload.
	crashed := slices.ContainsFunc(in.Events, func(e sphere.FailureEvent) bool { return slices.Contains(sphere.CrashCategories, e.Category) })
	if n > 0 && crashed && c.device.DeviceGroupID != "" && s.crashCheckDue(c.device.DeviceGroupID) {
		if _, err := s.updates.CheckCrashes(c.ctx, c.device.TenantID, c.device.DeviceGroupID); err != nil {
			s.log.ErrorContext(c.ctx, "checking the rollout's crash rate", "err", err, "device", c.device.ID)
		}
	}
	return api.FailureUploadResult{Accepted: n, Duplicates: len(in.Events) - n}, nil
}

// failureFilter checks the filter of the failure-report routes.
func failureFilter(in api.FailureFilter) (store.FailureFilter, error) {
	f := store.FailureFilter{Since: in.Since, Until: in.Until, DeviceGroupID: in.DeviceGroup, DeviceID: in.Device, Category: in.Category, Class: in.Class}
	if _, ok := sphere.FailureCategories[in.Category]; in.Category != "" && !ok {
		return f, sphere.Errorf(sphere.EInvalid, "category %q is not a failure category, e.g. app_crash, app_exit, update_failed", in.Category)
	}
	if in.Class != "" && in.Class != sphere.FailureClassOS && in.Class != sphere.FailureClassApp {
		return f, sphere.Errorf(sphere.EInvalid, "class %q is not os or app", in.Class)
	}
	if !in.Since.IsZero() && !in.Until.IsZero() && !in.Until.After(in.Since) {
		return f, sphere.Errorf(sphere.EInvalid, "until must be after since")
	}
	return f, nil
}

func (s *Server) listFailureReports(c *call, in *api.ListFailureReports) (sphere.Page[sphere.FailureReport], error) {
	f, err := failureFilter(in.FailureFilter)
	if err != nil {
		return sphere.Page[sphere.FailureReport]{}, err
	}
	return c.tenant.ListFailureReports(c.ctx, f, store.PageRequest{Size: in.PageSize, Token: in.PageToken})
}

func (s *Server) summarizeFailureReports(c *call, in *api.SummarizeFailureReports) (api.FailureSummary, error) {
	f, err := failureFilter(in.FailureFilter)
	if err != nil {
		return api.FailureSummary{}, err
	}
	by := []string{"class", "category", "description"}
	if in.By != "" {
		by = strings.Split(in.By, ",")
		for i := range by {
			by[i] = strings.TrimSpace(by[i])
		}
	}
	if len(by) > len(store.FailureDimensions) {
		return api.FailureSummary{}, sphere.Errorf(sphere.EInvalid, "by names %d dimensions; there are only %d", len(by), len(store.FailureDimensions))
	}
	limit := in.Limit
	switch {
	case limit == 0:
		limit = 1000
	case limit < 0 || limit > 10000:
		return api.FailureSummary{}, sphere.Errorf(sphere.EInvalid, "limit must be between 1 and 10000, got %d", limit)
	}
	rows, more, err := c.tenant.SummarizeFailureReports(c.ctx, f, by, limit)
	if err != nil {
		return api.FailureSummary{}, err
	}
	out := api.FailureSummary{By: by, Rows: make([]api.FailureSummaryRow, len(rows)), More: more}
	for i, r := range rows {
		key := make(map[string]string, len(by))
		for j, d := range by {
			key[d] = r.Key[j]
		}
		out.Rows[i] = api.FailureSummaryRow{Key: key, Failures: r.Failures, Events: r.Events, Devices: r.Devices, FirstTime: r.FirstTime, LastTime: r.LastTime}
	}
	return out, nil
}

// crashCheckEvery spaces an upload's crash-rate checks of one group.
const crashCheckEvery = 10 * time.Second

// crashCheckDue reports whether an upload should check the group's crash
// rate now, and if so notes that it does.
func (s *Server) crashCheckDue(groupID string) bool {
	now := s.now()
	if last, ok := s.crashChecked.Load(groupID); ok && now.Sub(last.(time.Time)) < crashCheckEvery {
		return false
	}
	s.crashChecked.Store(groupID, now)
	return true
}
