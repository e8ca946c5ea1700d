package server

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/url"
	"testing"
	"time"

	"github.com/opensphere/sphere"
	"github.com/opensphere/sphere/api"
)

// addFailure stores a failure report of f's device as if it had uploaded
// it, and returns it.
func (e *env) addFailure(t *testing.T, f *fixture, category, description string) sphere.FailureEvent {
	t.Helper()
	id := make([]byte, 16)
	rand.Read(id)
	now := time.Now().UTC().Truncate(time.Second)
	ev := sphere.FailureEvent{ID: hex.EncodeToString(id), Class: sphere.FailureCategories[category], Category: category, Description: description,
		ImageID: f.Image.ID, Version: f.Image.Version, Count: 2, FirstTime: now.Add(-time.Minute), LastTime: now}
	if _, err := e.store.AddFailureReports(context.Background(), f.Device, []sphere.FailureEvent{ev}); err != nil {
		t.Fatal(err)
	}
	return ev
}

// failureRouteCases are the rows of routeCases (routes_test.go) for the
// failure-report routes in failure_routes.go.
func failureRouteCases() map[string]routeCase {
	return map[string]routeCase{
		"GET /api/v1/tenants/{tenant}/failure-reports": {
			status: 200,
			valid: func(t *testing.T, e *env) request {
				ev := e.addFailure(t, &e.A, sphere.FailureAppCrash, e.name("signal SIGSEGV"))
				return request{path: e.A.path("/failure-reports?category=app_crash&page_size=1000&device=" + e.A.Device.ID + "&since=" + url.QueryEscape(ev.FirstTime.Format(time.RFC3339)))}
			},
			check: func(t *testing.T, e *env, _ request, r response) {
				var p sphere.Page[sphere.FailureReport]
				decode(t, r, &p)
				if len(p.Items) == 0 {
					t.Fatalf("no failure reports listed")
				}
				for _, it := range p.Items {
					if it.TenantID != e.A.Tenant.ID || it.DeviceID != e.A.Device.ID || it.DeviceGroupID != e.A.Group.ID || it.Category != sphere.FailureAppCrash || it.Count != 2 {
						t.Errorf("listed %+v; want app crashes of tenant A's device in its group", it)
					}
				}
			},
			bad:         inA("/failure-reports?category=meltdown", nil),
			noForbidden: readerIsLowest,
			cross:       onlyThisTenantsFailures(sphere.FailureAppCrash, "/failure-reports?page_size=1000"),
		},
		"GET /api/v1/tenants/{tenant}/failure-reports/summary": {
			status: 200,
			valid: func(t *testing.T, e *env) request {
				e.addFailure(t, &e.A, sphere.FailureAppExit, "exit code 3")
				return request{path: e.A.path("/failure-reports/summary?by=category,device_group,image&class=app")}
			},
			check: func(t *testing.T, e *env, _ request, r response) {
				var s api.FailureSummary
				decode(t, r, &s)
				found := false
				for _, row := range s.Rows {
					if row.Key["category"] == sphere.FailureAppExit && row.Key["device_group"] == e.A.Group.ID && row.Key["image"] == e.A.Image.ID {
						found = row.Failures >= 2 && row.Devices == 1 && row.Events*2 == row.Failures
					}
				}
				if !found {
					t.Errorf("summary %+v has no row of app exits in tenant A's group", s)
				}
			},
			bad:         inA("/failure-reports/summary?by=tenant_id", nil),
			noForbidden: readerIsLowest,
			cross:       onlyThisTenantsFailures(sphere.FailureAppExit, "/failure-reports/summary?by=device,device_group,product"),
		},
	}
}

// onlyThisTenantsFailures stores a failure of tenant B's device, then has
// tenant A's Administrator read A's reports at suffix: the leak check looks
// for B's device, group and product in the answer.
func onlyThisTenantsFailures(category, suffix string) []crossCase {
	return []crossCase{{
		name: "only this tenant's reports",
		req: func(t *testing.T, e *env) request {
			e.addFailure(t, &e.B, category, "B's failure")
			return request{path: e.A.path(suffix)}
		},
		status: 200, reason: "reads the caller's tenant's reports only; the leak check looks for the other tenant's device, group and product",
	}}
}
