package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/opensphere/sphere"
)

// failureColumns are what a failure report is read back from: the event,
// its place and device joined.
const failureColumns = "e.seq, p.product_id, p.device_group_id, d.device_id, e.event_id, e.class, e.category, e.description," +
	" e.component_id, e.image_id, e.version, e.exit_code, e.signal, e.count, e.first_time, e.last_time, e.received_at"

// failureFrom joins an event (e) to its place (p) and device (d).
const failureFrom = " FROM failure_events e JOIN failure_places p ON p.id = e.place JOIN failure_devices d ON d.id = e.device"

// failureChunks are the row counts of the INSERTs a batch is split into:
// the largest first, then powers of two, so that a few statements, each
// prepared once per connection (see Store.failureInsert), fit any batch.
// 512 rows of 12 parameters, and the batch's 4, stay under SQLite's and
// PostgreSQL's limits.
var failureChunks = []int{512, 256, 128, 64, 32, 16, 8, 4, 2, 1}

// failureBatchParams are the parameters an INSERT of failure reports binds
// once for all its rows: the upload's keys of tenant, place and device, and
// when it arrived. failureRowParams are the event's.
const (
	failureBatchParams = 4
	failureRowParams   = 12
)

// failureInsert returns the prepared INSERT of n rows. The first
// failureBatchParams parameters are the upload's and repeat in every row,
// so that they are bound once, not once per event. On PostgreSQL every
// parameter is numbered ($NNN). On SQLite only those are (?1 to ?4); the
// events' are plain ?, which SQLite numbers on from the highest so far: a
// numbered parameter gets a name, and the driver looks up every
// parameter's name at every execution, a linear search in SQLite.
func (s *Store) failureInsert(ctx context.Context, n int) (*sql.Stmt, error) {
	if st, ok := s.inserts.Load(n); ok {
		return st.(*sql.Stmt), nil
	}
	pg := s.d.name == "postgres"
	param := func(b *strings.Builder, i int) {
		switch {
		case pg:
			b.WriteByte('$')
			b.WriteString(strconv.Itoa(i))
		case i <= failureBatchParams:
			b.WriteByte('?')
			b.WriteString(strconv.Itoa(i))
		default:
			b.WriteByte('?')
		}
	}
	var b strings.Builder
	b.WriteString("INSERT INTO failure_events (tenant, place, device, received_at, event_id, class, category, description, component_id, image_id, version, exit_code, signal, count, first_time, last_time) VALUES ")
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteByte('(')
		for j := range failureBatchParams + failureRowParams {
			if j > 0 {
				b.WriteString(", ")
			}
			if j < failureBatchParams {
				param(&b, j+1)
			} else {
				param(&b, failureBatchParams+i*failureRowParams+j-failureBatchParams+1)
			}
		}
		b.WriteByte(')')
	}
	b.WriteString(" ON CONFLICT (device, event_id) DO NOTHING")
	st, err := s.db.PrepareContext(ctx, b.String())
	if err != nil {
		return nil, err
	}
	if prev, loaded := s.inserts.LoadOrStore(n, st); loaded {
		st.Close()
		return prev.(*sql.Stmt), nil
	}
	return st, nil
}

// keyTable is one of the tables that store a failure event's tenant,
// device or place once (failure_tenants, failure_devices, failure_places),
// with its statements: the row's id by its columns, and adding the row.
// Their rows are never changed or deleted.
type keyTable struct{ sel, ins string }

func newKeyTable(table string, cols ...string) keyTable {
	return keyTable{
		sel: "SELECT id FROM " + table + " WHERE " + strings.Join(cols, " = ? AND ") + " = ?",
		ins: "INSERT INTO " + table + " (" + strings.Join(cols, ", ") + ") VALUES (?" + strings.Repeat(", ?", len(cols)-1) + ") ON CONFLICT DO NOTHING",
	}
}

var (
	failureTenants = newKeyTable("failure_tenants", "tenant_id")
	failureDevices = newKeyTable("failure_devices", "device_id")
	failurePlaces  = newKeyTable("failure_places", "tenant_id", "device_group_id", "product_id")
)

// key returns the id of the row whose columns hold vals, adding the row
// if there is none.
func (k keyTable) key(ctx context.Context, q *querier, vals ...any) (int64, error) {
	var id int64
	err := q.queryRow(ctx, k.sel, vals...).Scan(&id)
	if errors.Is(err, sql.ErrNoRows) {
		if _, err := q.exec(ctx, k.ins, vals...); err != nil {
			return 0, err
		}
		err = q.queryRow(ctx, k.sel, vals...).Scan(&id)
	}
	return id, err
}

// AddFailureReports stores a device's failure events, in one transaction
// with multi-row inserts. An event the device sent before (same device and
// event id) is not stored again; it returns how many events were new. The
// device's tenant, product and group are recorded as they are now. The
// caller has validated the events.
//
// On PostgreSQL the transaction runs at READ COMMITTED (txInsertOnly says
// why that is enough), and the inserts are prepared before it begins:
// preparing one inside it would take a second connection from the pool
// while the transaction holds its own, and a burst of first uploads
// holding every connection, each waiting for the first one's new key row,
// would wait for ever.
func (s *Store) AddFailureReports(ctx context.Context, dev sphere.Device, events []sphere.FailureEvent) (int, error) {
	if dev.TenantID == "" {
		return 0, sphere.Errorf(sphere.EPrecondition, "device %s is not claimed by a tenant", dev.ID)
	}
	type chunk struct {
		events []sphere.FailureEvent
		st     *sql.Stmt
	}
	var chunks []chunk
	for rest := events; len(rest) > 0; {
		n := failureChunks[0]
		for _, c := range failureChunks {
			if n = c; c <= len(rest) {
				break
			}
		}
		st, err := s.failureInsert(ctx, n)
		if err != nil {
			return 0, fmt.Errorf("store.AddFailureReports: %w", err)
		}
		chunks = append(chunks, chunk{rest[:n], st})
		rest = rest[n:]
	}
	now := s.nowMicro()
	accepted := 0
	err := s.txInsertOnly(ctx, func(q *querier) error {
		accepted = 0
		tenant, err := failureTenants.key(ctx, q, dev.TenantID)
		if err != nil {
			return err
		}
		place, err := failurePlaces.key(ctx, q, dev.TenantID, dev.DeviceGroupID, dev.ProductID)
		if err != nil {
			return err
		}
		device, err := failureDevices.key(ctx, q, dev.ID)
		if err != nil {
			return err
		}
		args := make([]any, 0, failureBatchParams+min(len(events), failureChunks[0])*failureRowParams)
		for _, c := range chunks {
			args = append(args[:0], tenant, place, device, now)
			for _, e := range c.events {
				var code any // NULL
				if e.ExitCode != nil {
					code = int64(*e.ExitCode)
				}
				args = append(args, e.ID, e.Class, e.Category, e.Description,
					e.ComponentID, e.ImageID, e.Version, code, e.Signal, e.Count, e.FirstTime.UnixMicro(), e.LastTime.UnixMicro())
			}
			res, err := q.execStmt(ctx, c.st, args...)
			if err != nil {
				return err
			}
			added, err := res.RowsAffected()
			if err != nil {
				return err
			}
			accepted += int(added)
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("store.AddFailureReports: %w", err)
	}
	return accepted, nil
}

// FailureFilter narrows the failure-report lists and summaries. Since and
// Until bound the time of an event's last occurrence; zero means open.
type FailureFilter struct {
	Since, Until  time.Time
	DeviceGroupID string
	DeviceID      string
	Category      string
	Class         string
}

// where returns the conditions on an event (e) of the tenant's that f
// asks for, and their arguments.
func (f FailureFilter) where(tenantID string) (string, []any) {
	q := " WHERE e.tenant = (SELECT id FROM failure_tenants WHERE tenant_id = ?)"
	args := []any{tenantID}
	add := func(cond string, v ...any) {
		q += " AND " + cond
		args = append(args, v...)
	}
	if !f.Since.IsZero() {
		add("e.last_time >= ?", f.Since.UnixMicro())
	}
	if !f.Until.IsZero() {
		add("e.last_time < ?", f.Until.UnixMicro())
	}
	if f.DeviceGroupID != "" {
		add("e.place IN (SELECT id FROM failure_places WHERE tenant_id = ? AND device_group_id = ?)", tenantID, f.DeviceGroupID)
	}
	if f.DeviceID != "" {
		add("e.device = (SELECT id FROM failure_devices WHERE device_id = ?)", f.DeviceID)
	}
	if f.Category != "" {
		add("e.category = ?", f.Category)
	}
	if f.Class != "" {
		add("e.class = ?", f.Class)
	}
	return q, args
}

func scanFailure(row interface{ Scan(...any) error }) (sphere.FailureReport, error) {
	var r sphere.FailureReport
	var code sql.NullInt64
	var first, last, recv int64
	err := row.Scan(&r.Seq, &r.ProductID, &r.DeviceGroupID, &r.DeviceID, &r.ID, &r.Class, &r.Category, &r.Description,
		&r.ComponentID, &r.ImageID, &r.Version, &code, &r.Signal, &r.Count, &first, &last, &recv)
	if code.Valid {
		c := int(code.Int64)
		r.ExitCode = &c
	}
	r.FirstTime, r.LastTime, r.ReceivedAt = fromMicro(first), fromMicro(last), fromMicro(recv)
	return r, err
}

// ListFailureReports lists the tenant's failure reports in arrival order,
// a page at a time; any number of them can be read by following the
// cursor.
func (t *TenantStore) ListFailureReports(ctx context.Context, f FailureFilter, p PageRequest) (sphere.Page[sphere.FailureReport], error) {
	size, after, err := p.cursor("failure-reports")
	if err != nil {
		return sphere.Page[sphere.FailureReport]{}, err
	}
	var afterSeq int64
	if after != "" {
		if afterSeq, err = strconv.ParseInt(after, 10, 64); err != nil {
			return sphere.Page[sphere.FailureReport]{}, sphere.Errorf(sphere.EInvalid, "page_token is not valid for this list; pass back the next_page_token of the previous page unchanged")
		}
	}
	where, args := f.where(t.id)
	q := "SELECT " + failureColumns + failureFrom + where + " AND e.seq > ? ORDER BY e.seq LIMIT ?"
	items, err := collect(ctx, t.s, q, append(args, afterSeq, size+1), func(row interface{ Scan(...any) error }) (sphere.FailureReport, error) {
		r, err := scanFailure(row)
		r.TenantID = t.id
		return r, err
	})
	if err != nil {
		return sphere.Page[sphere.FailureReport]{}, fmt.Errorf("store.ListFailureReports: %w", err)
	}
	return finishPage(items, size, "failure-reports", func(r sphere.FailureReport) string { return strconv.FormatInt(r.Seq, 10) }), nil
}

// FailureDimensions are the dimensions a summary can group by, with their
// columns.
var FailureDimensions = map[string]string{
	"product": "p.product_id", "device_group": "p.device_group_id", "device": "d.device_id", "component": "e.component_id",
	"image": "e.image_id", "version": "e.version", "class": "e.class", "category": "e.category", "description": "e.description",
}

// FailureSummaryRow is one group of a summary: its values of the chosen
// dimensions, the sum of the events' counts, the number of events and of
// devices, and the first and last occurrence.
type FailureSummaryRow struct {
	Key                       []string
	Failures, Events, Devices int64
	FirstTime, LastTime       time.Time
}

// SummarizeFailureReports aggregates the tenant's failure reports by the
// dimensions in by (names of FailureDimensions), the most frequent first,
// at most limit rows; more says that rows were left out.
func (t *TenantStore) SummarizeFailureReports(ctx context.Context, f FailureFilter, by []string, limit int) (rows []FailureSummaryRow, more bool, err error) {
	if len(by) == 0 {
		return nil, false, sphere.Errorf(sphere.EInvalid, "name at least one dimension to summarize by")
	}
	cols := make([]string, len(by))
	for i, d := range by {
		c, ok := FailureDimensions[d]
		if !ok {
			return nil, false, sphere.Errorf(sphere.EInvalid, "%q is not a dimension; use product, device_group, device, component, image, version, class, category or description", d)
		}
		cols[i] = c
	}
	group := strings.Join(cols, ", ")
	where, args := f.where(t.id)
	q := "SELECT " + group + ", SUM(e.count), COUNT(*), COUNT(DISTINCT e.device), MIN(e.first_time), MAX(e.last_time)" + failureFrom + where +
		" GROUP BY " + group + " ORDER BY SUM(e.count) DESC, " + group + " LIMIT ?"
	rs, err := t.s.query(ctx, q, append(args, limit+1)...)
	if err != nil {
		return nil, false, fmt.Errorf("store.SummarizeFailureReports: %w", err)
	}
	defer rs.Close()
	for rs.Next() {
		r := FailureSummaryRow{Key: make([]string, len(cols))}
		var first, last int64
		dst := make([]any, 0, len(cols)+5)
		for i := range r.Key {
			dst = append(dst, &r.Key[i])
		}
		if err := rs.Scan(append(dst, &r.Failures, &r.Events, &r.Devices, &first, &last)...); err != nil {
			return nil, false, fmt.Errorf("store.SummarizeFailureReports: %w", err)
		}
		r.FirstTime, r.LastTime = fromMicro(first), fromMicro(last)
		rows = append(rows, r)
	}
	if err := rs.Err(); err != nil {
		return nil, false, fmt.Errorf("store.SummarizeFailureReports: %w", err)
	}
	if len(rows) > limit {
		return rows[:limit], true, nil
	}
	return rows, false, nil
}

// CrashingDevices counts the devices of a group that reported a crash
// (sphere.CrashCategories) on one of the images since a time.
func (t *TenantStore) CrashingDevices(ctx context.Context, groupID string, imageIDs []string, since time.Time) (int, error) {
	if len(imageIDs) == 0 {
		return 0, nil
	}
	q := "SELECT COUNT(DISTINCT e.device) FROM failure_events e WHERE e.tenant = (SELECT id FROM failure_tenants WHERE tenant_id = ?)" +
		" AND e.place IN (SELECT id FROM failure_places WHERE tenant_id = ? AND device_group_id = ?) AND e.last_time >= ?" +
		" AND e.image_id IN (?" + strings.Repeat(", ?", len(imageIDs)-1) + ")" +
		" AND e.category IN (?" + strings.Repeat(", ?", len(sphere.CrashCategories)-1) + ")"
	args := []any{t.id, t.id, groupID, since.UnixMicro()}
	for _, id := range imageIDs {
		args = append(args, id)
	}
	for _, c := range sphere.CrashCategories {
		args = append(args, c)
	}
	var n int
	if err := t.s.queryRow(ctx, q, args...).Scan(&n); err != nil {
		return 0, fmt.Errorf("store.CrashingDevices: %w", err)
	}
	return n, nil
}

// Retention deletes in batches of this many rows, and at most
// purgeMaxBatches of them per call, so that neither a transaction nor a
// call grows without bound; the next maintenance run goes on.
const (
	purgeBatch      = 5000
	purgeMaxBatches = 200
)

// PurgeFailureReports deletes failure reports received before a time and
// returns how many it deleted.
//
// Rows arrive in seq order, so received_at grows with seq: a binary search
// on the primary key finds the first row received at or after the cut,
// and the rows before it go, oldest first, in bounded batches; no index on
// received_at is needed. A row is never deleted early (every DELETE checks
// received_at too). Where the order does not hold exactly (transactions
// committing out of order, a clock stepping back) a row received before
// the cut may stay beyond the boundary until a later call deletes it.
func (s *Store) PurgeFailureReports(ctx context.Context, before time.Time) (int64, error) {
	cut := before.UnixMicro()
	end, err := s.failureCut(ctx, cut)
	if err != nil {
		return 0, fmt.Errorf("store.PurgeFailureReports: %w", err)
	}
	// Each batch is a range of the primary key holding at most purgeBatch
	// rows (a plain range, which PostgreSQL deletes by the index too).
	var total int64
	for from, batches := int64(0), 0; from < end && batches < purgeMaxBatches; batches++ {
		to := end
		var next int64
		err := s.queryRow(ctx, "SELECT seq FROM failure_events WHERE seq >= ? AND seq < ? ORDER BY seq LIMIT 1 OFFSET ?", from, end, purgeBatch).Scan(&next)
		switch {
		case err == nil:
			to = next
		case !errors.Is(err, sql.ErrNoRows):
			return total, fmt.Errorf("store.PurgeFailureReports: %w", err)
		}
		res, err := s.exec(ctx, "DELETE FROM failure_events WHERE seq >= ? AND seq < ? AND received_at < ?", from, to, cut)
		if err != nil {
			return total, fmt.Errorf("store.PurgeFailureReports: %w", err)
		}
		n, _ := res.RowsAffected()
		total += n
		from = to
	}
	return total, nil
}

// failureCut returns the seq of the first failure report received at or
// after cut (in microseconds), by a binary search on the primary key that
// takes received_at to grow with seq; one past the last seq when every row
// is older, 0 when there are no rows.
func (s *Store) failureCut(ctx context.Context, cut int64) (int64, error) {
	var first, last sql.NullInt64
	if err := s.queryRow(ctx, "SELECT MIN(seq), MAX(seq) FROM failure_events").Scan(&first, &last); err != nil {
		return 0, err
	}
	if !first.Valid {
		return 0, nil
	}
	// Rows before lo are older than the cut; the first row at or after hi
	// is not (or there is none).
	lo, hi := first.Int64, last.Int64+1
	for lo < hi {
		mid := lo + (hi-lo)/2
		var seq, recv int64
		err := s.queryRow(ctx, "SELECT seq, received_at FROM failure_events WHERE seq >= ? ORDER BY seq LIMIT 1", mid).Scan(&seq, &recv)
		switch {
		case errors.Is(err, sql.ErrNoRows):
			hi = mid
		case err != nil:
			return 0, err
		case recv < cut:
			lo = seq + 1
		default:
			hi = mid
		}
	}
	return lo, nil
}
