package store

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"sync"
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
		if pg, _ := a.ListFailureReports(ctx, FailureFilter{}, PageRequest{}); len(pg.Items) != 1 || pg.Items[0].ID != late.ID || pg.Items[0].ExitCode != nil {
			t.Errorf("after retention: %+v; want only the late report", pg.Items)
		}
	})
}

// Retention finds its cut on the primary key: across many uploads and
// more than one delete batch it deletes exactly the reports received
// before the cut, and never a later one when the clock stepped back.
func TestPurgeFailureReportsBySeq(t *testing.T) {
	clk := newTestClock()
	eachStoreWith(t, Config{Now: clk.Now}, func(t *testing.T, s *Store) {
		ctx := context.Background()
		a := s.Tenant(mustTenant(t, s, "A").ID)
		g := groupNamed(t, a, mustProduct(t, a, "Lamp").ID, "Field Test")
		d := mustClaimedDevice(t, s, a, g.ID)
		t0 := clk.Now()
		upload := func(n int) []sphere.FailureEvent {
			t.Helper()
			batch := make([]sphere.FailureEvent, n)
			for i := range batch {
				batch[i] = failureEvent(sphere.FailureAppExit, "exit code 1", "img1", t0.Add(-time.Hour))
			}
			if got, err := s.AddFailureReports(ctx, d, batch); err != nil || got != n {
				t.Fatalf("AddFailureReports = %d, %v; want %d", got, err, n)
			}
			return batch
		}
		count := func() int {
			t.Helper()
			var n int
			if err := s.queryRow(ctx, "SELECT COUNT(*) FROM failure_events").Scan(&n); err != nil {
				t.Fatal(err)
			}
			return n
		}
		if n, err := s.PurgeFailureReports(ctx, t0); err != nil || n != 0 {
			t.Fatalf("purge of an empty table = %d, %v", n, err)
		}
		// One upload a minute; one of them is sent twice (a lost answer),
		// which leaves a gap in seq on PostgreSQL.
		sizes := []int{700, 1, 4000, 2500, 1, 3000, 999}
		for i, n := range sizes {
			clk.Set(t0.Add(time.Duration(i) * time.Minute))
			b := upload(n)
			if i == 2 {
				if got, err := s.AddFailureReports(ctx, d, b); err != nil || got != 0 {
					t.Fatalf("resent batch = %d, %v", got, err)
				}
			}
		}
		total := 0
		for _, n := range sizes {
			total += n
		}
		// Cuts between and on the uploads' times, each deleting what the
		// uploads before it added (more than one batch of purgeBatch).
		deleted := 0
		for _, c := range []struct {
			cut  time.Duration
			want int
		}{{-time.Minute, 0}, {0, 0}, {time.Minute, 700}, {90 * time.Second, 1}, {4*time.Minute + time.Second, 4000 + 2500 + 1}, {time.Hour, 3000 + 999}} {
			n, err := s.PurgeFailureReports(ctx, t0.Add(c.cut))
			if err != nil || n != int64(c.want) {
				t.Fatalf("purge before %v = %d, %v; want %d", c.cut, n, err, c.want)
			}
			deleted += c.want
			if got := count(); got != total-deleted {
				t.Fatalf("after the purge before %v: %d reports; want %d", c.cut, got, total-deleted)
			}
		}

		// The clock steps back: reports received later sit before older
		// ones in seq. Nothing received at or after the cut goes.
		clk.Set(t0.Add(2 * time.Hour))
		upload(10)
		clk.Set(t0.Add(time.Hour))
		upload(20)
		clk.Set(t0.Add(3 * time.Hour))
		upload(30)
		n, err := s.PurgeFailureReports(ctx, t0.Add(90*time.Minute))
		if err != nil || n > 20 {
			t.Fatalf("purge after a clock step = %d, %v; want at most the 20 older reports", n, err)
		}
		var newer int
		if err := s.queryRow(ctx, "SELECT COUNT(*) FROM failure_events WHERE received_at >= ?", t0.Add(90*time.Minute).UnixMicro()).Scan(&newer); err != nil || newer != 40 {
			t.Fatalf("%d reports received after the cut are left, %v; want 40", newer, err)
		}
		// A later cut takes the rest of the older ones.
		if n, err := s.PurgeFailureReports(ctx, t0.Add(150*time.Minute)); err != nil || count() != 30 {
			t.Fatalf("purge before 2h30 = %d, %v; %d reports left, want 30", n, err, count())
		}
	})
}

// TestMigrateFailureEvents: failure reports stored under schema version 5
// (text ids in every row) read back the same and in the same order after
// version 6 moved them to narrow rows; each tenant still sees only its
// own, the crash count and the summaries agree, and an event sent again is
// still a duplicate.
func TestMigrateFailureEvents(t *testing.T) {
	dsns := map[string]func(t *testing.T) string{
		"sqlite": func(t *testing.T) string { return filepath.Join(t.TempDir(), "sphere.db") },
		"postgres": func(t *testing.T) string {
			dsn := os.Getenv("SPHERE_TEST_POSTGRES")
			if dsn == "" {
				t.Skip("SPHERE_TEST_POSTGRES is not set; skipping the PostgreSQL run")
			}
			return newPostgresSchema(t, dsn)
		},
	}
	for name, newDSN := range dsns {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			dsn := newDSN(t)
			s5, err := open(ctx, Config{DSN: dsn}, 5)
			if err != nil {
				t.Fatal(err)
			}
			at := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
			code := 139
			// Tenant A: device d1 reports from group g1, then from g2 (it
			// moved); d2 from g1. Tenant B: d3. Rows are inserted out of
			// tenant order, as uploads arrive.
			type row struct {
				tenant, product, group, device string
				ev                             sphere.FailureEvent
			}
			var rows []row
			add := func(tenant, product, group, device string, e sphere.FailureEvent) {
				rows = append(rows, row{tenant, product, group, device, e})
			}
			crash := failureEvent(sphere.FailureAppCrash, "signal SIGSEGV", "img1", at)
			crash.ExitCode, crash.Signal = &code, "SIGSEGV"
			add("tA", "p1", "g1", "d1", crash)
			add("tB", "p9", "g9", "d3", failureEvent(sphere.FailureAppExit, "exit code 1", "img9", at.Add(time.Second)))
			add("tA", "p1", "g1", "d2", failureEvent(sphere.FailureAppCrash, "signal SIGABRT", "img1", at.Add(2*time.Second)))
			add("tA", "p1", "g2", "d1", failureEvent(sphere.FailureUncleanShutdown, "power cut", "", at.Add(3*time.Second)))
			for i, r := range rows {
				var c any
				if r.ev.ExitCode != nil {
					c = int64(*r.ev.ExitCode)
				}
				_, err := s5.exec(ctx, "INSERT INTO failure_reports (tenant_id, product_id, device_group_id, device_id, event_id, class, category, description,"+
					" component_id, image_id, version, exit_code, signal, count, first_time, last_time, received_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
					r.tenant, r.product, r.group, r.device, r.ev.ID, r.ev.Class, r.ev.Category, r.ev.Description, "comp", r.ev.ImageID, r.ev.Version,
					c, r.ev.Signal, int64(i+1), r.ev.FirstTime.UnixMicro(), r.ev.LastTime.UnixMicro(), at.Add(time.Duration(i)*time.Minute).UnixMicro())
				if err != nil {
					t.Fatal(err)
				}
			}
			s5.Close()

			s, err := Open(ctx, Config{DSN: dsn})
			if err != nil {
				t.Fatalf("migrating to the newest schema: %v", err)
			}
			defer s.Close()
			if v, _ := s.SchemaVersion(ctx); v < 6 {
				t.Fatalf("schema version %d after Open", v)
			}
			list := func(tenant string, f FailureFilter) []sphere.FailureReport {
				t.Helper()
				pg, err := s.Tenant(tenant).ListFailureReports(ctx, f, PageRequest{})
				if err != nil {
					t.Fatal(err)
				}
				return pg.Items
			}
			a := list("tA", FailureFilter{})
			if len(a) != 3 {
				t.Fatalf("tenant A has %d reports after the migration, want 3", len(a))
			}
			for i, want := range []row{rows[0], rows[2], rows[3]} {
				got := a[i]
				wantCount := map[int]int64{0: 1, 1: 3, 2: 4}[i]
				if got.TenantID != "tA" || got.ProductID != want.product || got.DeviceGroupID != want.group || got.DeviceID != want.device ||
					got.ID != want.ev.ID || got.Category != want.ev.Category || got.Description != want.ev.Description || got.ImageID != want.ev.ImageID ||
					got.ComponentID != "comp" || got.Count != wantCount || !got.LastTime.Equal(want.ev.LastTime) || (got.ExitCode == nil) != (want.ev.ExitCode == nil) {
					t.Errorf("report %d = %+v\nwant %+v from %s/%s/%s", i, got, want.ev, want.product, want.group, want.device)
				}
				if i > 0 && got.Seq <= a[i-1].Seq {
					t.Errorf("report %d has seq %d after %d: not in arrival order", i, got.Seq, a[i-1].Seq)
				}
			}
			if a[0].ExitCode == nil || *a[0].ExitCode != 139 || a[0].Signal != "SIGSEGV" {
				t.Errorf("exit code and signal lost: %+v", a[0])
			}
			if b := list("tB", FailureFilter{}); len(b) != 1 || b[0].DeviceID != "d3" {
				t.Errorf("tenant B sees %+v", b)
			}
			if got := list("tA", FailureFilter{DeviceGroupID: "g1"}); len(got) != 2 {
				t.Errorf("group g1 of tenant A: %d reports, want 2", len(got))
			}
			if got := list("tA", FailureFilter{DeviceID: "d1"}); len(got) != 2 {
				t.Errorf("device d1: %d reports, want 2", len(got))
			}
			if got := list("tB", FailureFilter{DeviceID: "d1"}); len(got) != 0 {
				t.Errorf("tenant B sees tenant A's device d1: %+v", got)
			}
			if n, err := s.Tenant("tA").CrashingDevices(ctx, "g1", []string{"img1"}, at.Add(-time.Hour)); err != nil || n != 2 {
				t.Errorf("CrashingDevices = %d, %v; want 2", n, err)
			}
			sum, _, err := s.Tenant("tA").SummarizeFailureReports(ctx, FailureFilter{}, []string{"device_group"}, 10)
			// Both groups sum to 4 failures; ties go by the key.
			if err != nil || len(sum) != 2 || sum[0].Key[0] != "g1" || sum[0].Failures != 4 || sum[0].Events != 2 || sum[0].Devices != 2 ||
				sum[1].Key[0] != "g2" || sum[1].Failures != 4 || sum[1].Events != 1 || sum[1].Devices != 1 {
				t.Errorf("summary by group = %+v, %v", sum, err)
			}
			// The device sends its first event again, and a new one, from
			// where it stands now.
			d1 := sphere.Device{ID: "d1", TenantID: "tA", ProductID: "p1", DeviceGroupID: "g2"}
			fresh := failureEvent(sphere.FailureAppExit, "exit code 2", "img1", at.Add(time.Hour))
			if n, err := s.AddFailureReports(ctx, d1, []sphere.FailureEvent{rows[0].ev, fresh}); err != nil || n != 1 {
				t.Fatalf("AddFailureReports after the migration = %d, %v; want 1 new", n, err)
			}
			if a2 := list("tA", FailureFilter{}); len(a2) != 4 || a2[3].ID != fresh.ID || a2[3].Seq <= a[2].Seq || a2[3].DeviceGroupID != "g2" {
				t.Errorf("after a new upload: %+v", a2)
			}
		})
	}
}

// The first uploads of a tenant's devices, all at once, each add the
// tenant's, the place's and the device's keys if they are missing: none
// fails, and each key is stored once.
// TestFailureReportsConcurrentBulkUploads: a fleet's devices upload
// batches of a thousand events at the same time, as after an outage, and
// one device sends the same batch twice at once (a retry racing the
// first). Every upload succeeds, every event is stored once, and the two
// copies of the same batch store it once between them. On PostgreSQL these
// uploads once ran SERIALIZABLE, where a transaction of thousands of rows
// escalates its predicate locks to whole relations: concurrent uploads
// failed one another until their retries ran out (HTTP 500 in the reports
// scenario). And they prepared their inserts inside the transaction, on a
// second connection: with every connection held by an upload waiting for
// the first one's new key row, the first waited for a connection for ever.
func TestFailureReportsConcurrentBulkUploads(t *testing.T) {
	eachStore(t, func(t *testing.T, s *Store) {
		// More uploads at once than the pool has connections (32 on
		// PostgreSQL), bounded in time: uploads that wait for one another
		// for ever fail the test instead of hanging it.
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		a := s.Tenant(mustTenant(t, s, "A").ID)
		g := groupNamed(t, a, mustProduct(t, a, "Lamp").ID, "Field Test")
		const devices, batches, size = 32, 2, 1000
		devs := make([]sphere.Device, devices)
		for i := range devs {
			devs[i] = mustClaimedDevice(t, s, a, g.ID)
		}
		batch := func() []sphere.FailureEvent {
			b := make([]sphere.FailureEvent, size)
			for i := range b {
				b[i] = failureEvent(sphere.FailureAppExit, fmt.Sprintf("exit code %d", i%7), "", time.Now().UTC().Add(-time.Minute))
			}
			return b
		}
		twice := batch() // sent twice at once by devs[0]
		type result struct {
			twice    bool
			accepted int
			err      error
		}
		results := make(chan result, devices*batches+2)
		var wg sync.WaitGroup
		for i := range devices * batches {
			b := batch()
			wg.Go(func() {
				n, err := s.AddFailureReports(ctx, devs[i%devices], b)
				results <- result{false, n, err}
			})
		}
		for range 2 {
			wg.Go(func() {
				n, err := s.AddFailureReports(ctx, devs[0], twice)
				results <- result{true, n, err}
			})
		}
		wg.Wait()
		close(results)
		twiceAccepted := 0
		for r := range results {
			switch {
			case r.err != nil:
				t.Errorf("concurrent upload: %v", r.err)
			case r.twice:
				twiceAccepted += r.accepted
			case r.accepted != size:
				t.Errorf("an upload of %d new events stored %d", size, r.accepted)
			}
		}
		if twiceAccepted != size {
			t.Errorf("the batch sent twice at once was stored %d times over its %d events", twiceAccepted, size)
		}
		if got, want := countRows(t, s, "failure_events", ""), (devices*batches+1)*size; got != want {
			t.Errorf("failure_events holds %d rows, want %d", got, want)
		}
	})
}

func TestFailureReportsConcurrentFirstUploads(t *testing.T) {
	eachStore(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		a := s.Tenant(mustTenant(t, s, "A").ID)
		g := groupNamed(t, a, mustProduct(t, a, "Lamp").ID, "Field Test")
		const n = 8
		devs := make([]sphere.Device, n)
		for i := range devs {
			devs[i] = mustClaimedDevice(t, s, a, g.ID)
		}
		errs := make(chan error, 2*n)
		var wg sync.WaitGroup
		for i := range 2 * n { // each device twice, at the same time
			wg.Go(func() {
				_, err := s.AddFailureReports(ctx, devs[i%n], []sphere.FailureEvent{failureEvent(sphere.FailureAppExit, "exit code 1", "", time.Now().UTC().Add(-time.Minute))})
				errs <- err
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Errorf("concurrent first upload: %v", err)
			}
		}
		for _, c := range []struct {
			table string
			want  int
		}{{"failure_tenants", 1}, {"failure_places", 1}, {"failure_devices", n}, {"failure_events", 2 * n}} {
			if got := countRows(t, s, c.table, ""); got != c.want {
				t.Errorf("%s holds %d rows, want %d", c.table, got, c.want)
			}
		}
	})
}
