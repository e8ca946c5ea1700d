package store

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/opensphere/sphere"
)

func TestAudit(t *testing.T) {
	clock := newTestClock()
	eachStoreWith(t, Config{Now: clock.Now}, func(t *testing.T, s *Store) {
		ctx := context.Background()
		a := s.Tenant(mustTenant(t, s, "Contoso").ID)
		b := s.Tenant(mustTenant(t, s, "Fabrikam").ID)
		t0 := clock.Now()
		at := func(min int) time.Time { return t0.Add(time.Duration(min) * time.Minute) }
		// RequestID names each entry for the got/want lists below.
		entries := []sphere.AuditEntry{
			{Time: at(0), TenantID: a.ID(), ActorID: "u-alice", Actor: "alice", Action: "product.create", Target: "p1", Result: "ok", Status: 201, RequestID: "r1"},
			{Time: at(1), TenantID: a.ID(), ActorID: "u-bob", Actor: "bob", Action: "product.delete", Target: "p1", Result: sphere.ENotFound, Status: 404, RequestID: "r2"},
			{Time: at(2), TenantID: b.ID(), ActorID: "u-carol", Actor: "carol", Action: "product.create", Target: "p2", Result: "ok", Status: 201, RequestID: "r3"},
			{Time: at(3), TenantID: a.ID(), ActorID: "u-alice", Actor: "alice", Action: "device.claim", Target: "d1", Result: sphere.EConflict, Status: 409, RequestID: "r4"},
			{Time: at(4), Actor: "admin", ActorID: "u-admin", Action: "tenant.create", Target: a.ID(), Result: "ok", Status: 201, RequestID: "r5"},
			// No time: the store's clock fills it in.
			{TenantID: a.ID(), ActorID: "u-alice", Actor: "alice", Action: "product.update", Target: "p1", Result: "ok", Status: 200, RequestID: "r6"},
			{Time: at(6), TenantID: a.ID(), Actor: "anonymous", Action: "login", Result: sphere.EUnauthenticated, Status: 401, RequestID: "r7"},
		}
		clock.Advance(5 * time.Minute)
		for _, e := range entries {
			if err := s.AppendAudit(ctx, e); err != nil {
				t.Fatal(err)
			}
		}

		all, err := s.ListAllAudit(ctx, AuditFilter{}, PageRequest{})
		if err != nil {
			t.Fatal(err)
		}
		if len(all.Items) != len(entries) {
			t.Fatalf("ListAllAudit: got %d entries, want %d", len(all.Items), len(entries))
		}
		for i, got := range all.Items {
			want := entries[len(entries)-1-i]
			if want.Time.IsZero() {
				want.Time = at(5)
			}
			want.Seq = got.Seq
			if got != want {
				t.Errorf("entry %d:\ngot  %+v\nwant %+v", i, got, want)
			}
			if i > 0 && got.Seq >= all.Items[i-1].Seq {
				t.Errorf("entry %d has seq %d after seq %d; want newest first", i, got.Seq, all.Items[i-1].Seq)
			}
		}

		tests := []struct {
			name   string
			list   func(context.Context, AuditFilter, PageRequest) (sphere.Page[sphere.AuditEntry], error)
			filter AuditFilter
			want   []string
		}{
			{"tenant/no filter", a.ListAudit, AuditFilter{}, []string{"r7", "r6", "r4", "r2", "r1"}},
			{"tenant/actor", a.ListAudit, AuditFilter{Actor: "alice"}, []string{"r6", "r4", "r1"}},
			{"tenant/actor of another tenant", a.ListAudit, AuditFilter{Actor: "carol"}, nil},
			{"tenant/actor is exact", a.ListAudit, AuditFilter{Actor: "ali"}, nil},
			{"tenant/action", a.ListAudit, AuditFilter{Action: "product.create"}, []string{"r1"}},
			{"tenant/target", a.ListAudit, AuditFilter{Target: "p1"}, []string{"r6", "r2", "r1"}},
			{"tenant/target of another tenant", a.ListAudit, AuditFilter{Target: "p2"}, nil},
			{"tenant/result ok", a.ListAudit, AuditFilter{Result: "ok"}, []string{"r6", "r1"}},
			{"tenant/result error", a.ListAudit, AuditFilter{Result: "error"}, []string{"r7", "r4", "r2"}},
			{"tenant/result code", a.ListAudit, AuditFilter{Result: sphere.ENotFound}, []string{"r2"}},
			{"tenant/result code conflict", a.ListAudit, AuditFilter{Result: sphere.EConflict}, []string{"r4"}},
			{"tenant/since is inclusive", a.ListAudit, AuditFilter{Since: at(3)}, []string{"r7", "r6", "r4"}},
			{"tenant/until is exclusive", a.ListAudit, AuditFilter{Until: at(3)}, []string{"r2", "r1"}},
			{"tenant/since and until", a.ListAudit, AuditFilter{Since: at(1), Until: at(5)}, []string{"r4", "r2"}},
			{"tenant/since in another time zone", a.ListAudit, AuditFilter{Since: at(5).In(time.FixedZone("UTC+9", 9*3600))}, []string{"r7", "r6"}},
			{"tenant/empty window", a.ListAudit, AuditFilter{Since: at(3), Until: at(3)}, nil},
			{"tenant/actor and result", a.ListAudit, AuditFilter{Actor: "alice", Result: "error"}, []string{"r4"}},
			{"tenant/everything", a.ListAudit, AuditFilter{Actor: "alice", Action: "product.update", Target: "p1", Result: "ok", Since: at(5), Until: at(6)}, []string{"r6"}},
			{"other tenant/no filter", b.ListAudit, AuditFilter{}, []string{"r3"}},
			{"other tenant/actor of the first", b.ListAudit, AuditFilter{Actor: "alice"}, nil},
			{"other tenant/result ok", b.ListAudit, AuditFilter{Result: "ok"}, []string{"r3"}},
			{"unknown tenant", s.Tenant(newID()).ListAudit, AuditFilter{}, nil},
			{"all/no filter", s.ListAllAudit, AuditFilter{}, []string{"r7", "r6", "r5", "r4", "r3", "r2", "r1"}},
			{"all/action", s.ListAllAudit, AuditFilter{Action: "product.create"}, []string{"r3", "r1"}},
			{"all/result ok", s.ListAllAudit, AuditFilter{Result: "ok"}, []string{"r6", "r5", "r3", "r1"}},
			{"all/target", s.ListAllAudit, AuditFilter{Target: a.ID()}, []string{"r5"}},
			{"all/until", s.ListAllAudit, AuditFilter{Until: at(2)}, []string{"r2", "r1"}},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				page, err := tt.list(ctx, tt.filter, PageRequest{})
				if err != nil {
					t.Fatal(err)
				}
				got := ids(page.Items, func(e sphere.AuditEntry) string { return e.RequestID })
				if !slices.Equal(got, tt.want) && !(len(got) == 0 && len(tt.want) == 0) {
					t.Fatalf("got %v, want %v", got, tt.want)
				}
				if page.Items == nil {
					t.Fatalf("got nil items, want an empty list (it is JSON [])")
				}
			})
		}
	})
}
