package store

import (
	"context"
	"testing"
)

func TestSmoke(t *testing.T) {
	eachStore(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		sec, err := s.Bootstrap(ctx, "admin", "Default")
		if err != nil || sec == "" {
			t.Fatal(err, sec)
		}
		u, err := s.Authenticate(ctx, sec)
		if err != nil || !u.Operator {
			t.Fatal(err, u)
		}
		tn, err := s.GetTenant(ctx, "default")
		if err != nil {
			t.Fatal(err)
		}
		ts := s.Tenant(tn.ID)
		p, err := ts.CreateProduct(ctx, "Coffee Maker", "x")
		if err != nil {
			t.Fatal(err)
		}
		gs, err := ts.ListDeviceGroups(ctx, DeviceGroupFilter{Product: p.Name}, PageRequest{Size: 2})
		if err != nil || len(gs.Items) != 2 || gs.NextPageToken == "" {
			t.Fatal(err, gs)
		}
		if n, err := s.Migrate(ctx); err != nil || n != 0 {
			t.Fatal(n, err)
		}
	})
}
