package server

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sync"
	"testing"

	"github.com/opensphere/sphere"
	"github.com/opensphere/sphere/api"
)

// TestConcurrentClaims races two tenants' Administrators to claim the same
// devices. A device belongs to one tenant: exactly one claim wins and every
// other is told 409 conflict, never a success, a 404 or a 500.
func TestConcurrentClaims(t *testing.T) {
	t.Parallel()
	eachDialect(t, func(t *testing.T, e *env) {
		const devices, perTenant = 6, 3
		for i := range devices {
			d := e.registerDevice(t)
			type result struct {
				tenant string
				status int
				code   string
				err    error
			}
			results := make(chan result, 2*perTenant)
			var wg sync.WaitGroup
			for j := range 2 * perTenant {
				u, f := e.adminA, &e.A
				if j%2 == 1 {
					u, f = e.adminB, &e.B
				}
				wg.Go(func() {
					status, code, err := e.post(u, f.path("/devices/"+d.ID+"/claim"), api.ClaimDevice{DeviceGroup: f.Group.ID})
					results <- result{f.Tenant.ID, status, code, err}
				})
			}
			wg.Wait()
			close(results)
			var winners []string
			for r := range results {
				switch {
				case r.err != nil:
					t.Errorf("device %d: %v", i, r.err)
				case r.status == 200:
					winners = append(winners, r.tenant)
				case r.status != 409 || r.code != sphere.EConflict:
					t.Errorf("device %d: a losing claim got %d %s; want 409 %s", i, r.status, r.code, sphere.EConflict)
				}
			}
			if len(winners) != 1 {
				t.Fatalf("device %d: %d claims succeeded; want exactly one", i, len(winners))
			}
			var got sphere.Device
			e.must(t, e.operator, "GET", "/api/v1/devices/"+d.ID, nil, 200, &got)
			if got.TenantID != winners[0] {
				t.Errorf("device %d is in tenant %s; the winning claim was tenant %s's", i, got.TenantID, winners[0])
			}
		}
	})
}

// TestConcurrentCreates races Contributors to create products of one name:
// exactly one is created and the rest are told 409 conflict.
func TestConcurrentCreates(t *testing.T) {
	t.Parallel()
	eachDialect(t, func(t *testing.T, e *env) {
		const n = 6
		statuses := make(chan int, n)
		var wg sync.WaitGroup
		for range n {
			wg.Go(func() {
				status, _, err := e.post(e.contribA, e.A.path("/products"), api.CreateProduct{Name: "Raced"})
				if err != nil {
					t.Error(err)
				}
				statuses <- status
			})
		}
		wg.Wait()
		close(statuses)
		count := map[int]int{}
		for s := range statuses {
			count[s]++
		}
		if count[201] != 1 || count[409] != n-1 {
			t.Errorf("statuses %v; want one 201 and %d 409", count, n-1)
		}
		var p sphere.Page[sphere.Product]
		e.must(t, e.readerA, "GET", e.A.path("/products?name=raced"), nil, 200, &p)
		if len(p.Items) != 1 {
			t.Errorf("%d products named Raced; want 1", len(p.Items))
		}
	})
}

// post sends a JSON POST as u from any goroutine (it reports problems
// instead of failing the test) and returns the status and error code.
func (e *env) post(u user, path string, body any) (int, string, error) {
	b, err := json.Marshal(body)
	if err != nil {
		return 0, "", err
	}
	req, err := http.NewRequest("POST", e.url+path, bytes.NewReader(b))
	if err != nil {
		return 0, "", err
	}
	req.Header.Set("Authorization", u.auth())
	req.Header.Set("Content-Type", "application/json")
	resp, err := e.http.Do(req)
	if err != nil {
		return 0, "", fmt.Errorf("POST %s: %w", path, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, "", fmt.Errorf("POST %s: %w", path, err)
	}
	var eb api.ErrorBody
	if resp.StatusCode >= 400 {
		if err := json.Unmarshal(raw, &eb); err != nil {
			return resp.StatusCode, "", fmt.Errorf("POST %s: %d with a body not in the error shape: %s", path, resp.StatusCode, raw)
		}
	}
	return resp.StatusCode, eb.Error.Code, nil
}
