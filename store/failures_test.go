package store

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"testing"
	"time"

	"github.com/opensphere/sphere"
)

func failureEvent(category, description, image string, at time.Time) sphere.FailureEvent {
	id := make([]byte, 16)
	rand.Read(id)
	return sphere.FailureEvent{ID: hex.EncodeToString(id), Class: sphere.FailureCategories[category], Category: category,
		Description: description, ImageID: image, Version: "1.0", Count: 1, FirstTime: at, LastTime: at}
}

func TestFailureReports(t *testing.T) {
	clk := newTestClock()
	eachStoreWith(t, Config{Now: clk.Now}, func(t *testing.T, s *Store) {
		ctx := context.Background()
		a, b := s.Tenant(mustTenant(t, s, "A").ID), s.Tenant(mustTenant(t, s, "B").ID)
		p := mustProduct(t, a, "Lamp")
		g := groupNamed(t, a, p.ID, "Field Test")
		d1 := mustClaimedDevice(t, s, a, g.ID)
		d2 := mustClaimedDevice(t, s, a, g.ID)
		at := clk.Now().Add(-time.Hour)

		// One upload of 1,234 events: more than one multi-row insert.
		var batch []sphere.FailureEvent
		for i := range 1234 {
			e := failureEvent(sphere.FailureAppCrash, "signal SIGSEGV", "img1", at.Add(time.Duration(i)*time.Microsecond))
			code := 139
			e.ExitCode, e.Signal = &code, "SIGSEGV"
			batch = append(batch, e)
		}
		n, err := s.AddFailureReports(ctx, d1, batch)
		if err != nil || n != len(batch) {
			t.Fatalf("AddFailureReports = %d, %v; want %d", n, err, len(batch))
		}
		// The same batch again (a lost answer): nothing new.
		if n, err := s.AddFailureReports(ctx, d1, batch); err != nil || n != 0 {
			t.Fatalf("AddFailureReports again = %d, %v; want 0 new", n, err)
		}
		// Half old, half new.
		more := append([]sphere.FailureEvent{}, batch[:10]...)
		more = append(more, failureEvent(sphere.FailureAppExit, "exit code 1", "img2", at), failureEvent(sphere.FailureUncleanShutdown, "power cut", "", at))
		if n, err := s.AddFailureReports(ctx, d2, more[10:]); err != nil || n != 2 {
			t.Fatalf("AddFailureReports = %d, %v; want 2", n, err)
		}
		// Event ids are per device: d2 may use an id d1 used.
		if n, err := s.AddFailureReports(ctx, d2, more[:1]); err != nil || n != 1 {
			t.Fatalf("another device's event id = %d, %v; want 1", n, err)
		}

		// Paging through everything, in arrival order.
		var all []sphere.FailureReport
		err = Each(func(p PageRequest) (sphere.Page[sphere.FailureReport], error) {
			p.Size = 100
			return a.ListFailureReports(ctx, FailureFilter{}, p)
		}, func(r sphere.FailureReport) error { all = append(all, r); return nil })
		if err != nil || len(all) != 1234+3 {
			t.Fatalf("listed %d reports, %v; want %d", len(all), err, 1234+3)
		}
		first := all[0]
		if first.DeviceID != d1.ID || first.DeviceGroupID != g.ID || first.ProductID != p.ID || first.ID != batch[0].ID ||
			first.ExitCode == nil || *first.ExitCode != 139 || !first.FirstTime.Equal(batch[0].FirstTime) || !first.ReceivedAt.Equal(clk.Now()) {
			t.Errorf("first report = %+v; want batch[0] of %s in group %s", first, d1.ID, g.ID)
		}
		for i := 1; i < len(all); i++ {
			if all[i].Seq <= all[i-1].Seq {
				t.Fatalf("reports out of order at %d", i)
			}
		}
		// Filters.
		for name, c := range map[string]struct {
			f    FailureFilter
			want int
		}{
			"category":     {FailureFilter{Category: sphere.FailureAppExit}, 1},
			"class os":     {FailureFilter{Class: sphere.FailureClassOS}, 1},
			"device":       {FailureFilter{DeviceID: d2.ID}, 3},
			"group":        {FailureFilter{DeviceGroupID: g.ID}, 1237},
			"other group":  {FailureFilter{DeviceGroupID: "nope"}, 0},
			"until":        {FailureFilter{Until: at.Add(time.Microsecond)}, 4},
			"since":        {FailureFilter{Since: at.Add(1000 * time.Microsecond)}, 234},
			"since, until": {FailureFilter{Since: at, Until: at.Add(10 * time.Microsecond)}, 13},
		} {
			pg, err := a.ListFailureReports(ctx, c.f, PageRequest{Size: MaxPageSize})
			n := len(pg.Items)
			for err == nil && pg.NextPageToken != "" {
				pg, err = a.ListFailureReports(ctx, c.f, PageRequest{Size: MaxPageSize, Token: pg.NextPageToken})
				n += len(pg.Items)
			}
			if err != nil || n != c.want {
				t.Errorf("%s: %d reports, %v; want %d", name, n, err, c.want)
			}
		}
		// Another tenant sees none of them.
		if pg, err := b.ListFailureReports(ctx, FailureFilter{}, PageRequest{}); err != nil || len(pg.Items) != 0 {
			t.Errorf("tenant B lists %d of A's reports, %v", len(pg.Items), err)
		}
		if _, err := a.ListFailureReports(ctx, FailureFilter{}, PageRequest{Token: pageToken("devices", "5")}); codeOf(err) != sphere.EInvalid {
			t.Errorf("another list's token: %v; want invalid", err)
		}

		// Summary.
		rows, more2, err := a.SummarizeFailureReports(ctx, FailureFilter{}, []string{"category", "image"}, 10)
		if err != nil || more2 || len(rows) != 3 {
			t.Fatalf("summary = %+v, %v, %v", rows, more2, err)
		}
		if r := rows[0]; r.Key[0] != sphere.FailureAppCrash || r.Key[1] != "img1" || r.Failures != 1235 || r.Events != 1235 || r.Devices != 2 {
			t.Errorf("top summary row = %+v; want app_crash on img1: 1235 failures, 2 devices", r)
		}
		if rows, more, err := a.SummarizeFailureReports(ctx, FailureFilter{}, []string{"category"}, 1); err != nil || !more || len(rows) != 1 {
			t.Errorf("limited summary = %+v, %v, %v; want 1 row and more", rows, more, err)
		}
		if _, _, err := a.SummarizeFailureReports(ctx, FailureFilter{}, []string{"tenant_id; DROP TABLE x"}, 10); codeOf(err) != sphere.EInvalid {
			t.Errorf("bad dimension: %v; want invalid", err)
		}

		// Crash rates for rollouts.
		if n, err := a.CrashingDevices(ctx, g.ID, []string{"img1", "img2"}, at); err != nil || n != 2 {
			t.Errorf("CrashingDevices = %d, %v; want 2", n, err)
		}
		if n, err := a.CrashingDevices(ctx, g.ID, []string{"img2"}, at.Add(time.Second)); err != nil || n != 0 {
			t.Errorf("CrashingDevices later = %d, %v; want 0", n, err)
		}

		// Retention: reports received before the cut go; the rest stay.
		clk.Advance(time.Hour)
		late := failureEvent(sphere.FailureAgentPanic, "nil map", "", clk.Now())
		if _, err := s.AddFailureReports(ctx, d1, []sphere.FailureEvent{late}); err != nil {
			t.Fatal(err)
		}
		gone, err := s.PurgeFailureReports(ctx, clk.Now().Add(-time.Minute))
		if err != nil || gone != 1237 {
			t.Fatalf("PurgeFailureReports = %d, %v; want 1237", gone, err)
		}
		if pg, _ := a.ListFailureReports(ctx, FailureFilter{}, PageRequest{}); len(pg.Items) != 1 || pg.Items[0].ID != late.ID {
			t.Errorf("after retention: %+v; want only the late report", pg.Items)
		}
	})
}
