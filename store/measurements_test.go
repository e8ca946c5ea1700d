package store

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"testing"

	"github.com/opensphere/sphere"
)

func digestOf(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

// TestLookupMeasurements: one read finds the tenant's entries among many
// items (more than one query's worth), with their status; items not on
// the tenant's list, another tenant's entries and the other type of the
// same digest are absent; repeated items are found once.
func TestLookupMeasurements(t *testing.T) {
	eachStore(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		a := s.Tenant(mustTenant(t, s, "Contoso").ID)
		b := s.Tenant(mustTenant(t, s, "Fabrikam").ID)
		var keys []MeasurementKey
		want := map[MeasurementKey]string{}
		for i := range 450 {
			k := MeasurementKey{Type: "agent", Digest: digestOf(fmt.Sprint("agent ", i))}
			keys = append(keys, k)
			switch {
			case i%3 == 0:
				status := sphere.MeasurementAllowed
				if i%2 == 0 {
					status = sphere.MeasurementDeprecated
				}
				if _, err := a.AllowMeasurement(ctx, k.Type, k.Digest, fmt.Sprint("agent ", i), status); err != nil {
					t.Fatal(err)
				}
				want[k] = status
			case i%3 == 1: // another tenant's only
				if _, err := b.AllowMeasurement(ctx, k.Type, k.Digest, "theirs", ""); err != nil {
					t.Fatal(err)
				}
			}
		}
		// The same digest allowed as config is not the agent's.
		if _, err := a.AllowMeasurement(ctx, "config", keys[1].Digest, "settings", ""); err != nil {
			t.Fatal(err)
		}
		keys = append(keys, keys[0], keys[3]) // repeated

		got, err := a.LookupMeasurements(ctx, keys)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != len(want) {
			t.Errorf("found %d entries, want %d", len(got), len(want))
		}
		for k, status := range want {
			if m, ok := got[k]; !ok || m.Status != status || m.TenantID != a.ID() {
				t.Errorf("%s: got %+v (found %v), want status %s in tenant %s", k.Digest, m, ok, status, a.ID())
			}
		}
		if none, err := a.LookupMeasurements(ctx, nil); err != nil || len(none) != 0 {
			t.Errorf("no items: %v, %v", none, err)
		}
	})
}
