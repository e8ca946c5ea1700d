package store

import (
	"context"
	"database/sql"
	"fmt"
	"strconv"
	"time"

	"github.com/opensphere/sphere"
)

// AppendAudit records one audit entry. Seq and, if zero, Time are filled in.
func (s *Store) AppendAudit(ctx context.Context, e sphere.AuditEntry) error {
	if err := appendAudit(ctx, s, e, s.now()); err != nil {
		return fmt.Errorf("store.AppendAudit: %w", err)
	}
	return nil
}

// execer runs a statement: the Store, or a querier inside a transaction.
type execer interface {
	exec(ctx context.Context, query string, args ...any) (sql.Result, error)
}

func appendAudit(ctx context.Context, x execer, e sphere.AuditEntry, now time.Time) error {
	if e.Time.IsZero() {
		e.Time = now
	}
	_, err := x.exec(ctx, "INSERT INTO audit_log (time, tenant_id, actor_id, actor, action, target, result, status, request_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
		e.Time.UTC().UnixMicro(), nullString(e.TenantID), e.ActorID, e.Actor, e.Action, e.Target, e.Result, e.Status, e.RequestID)
	return err
}

// auditEach appends, for each device of a batch, a copy of e that names it,
// in the batch's transaction; a nil e appends nothing.
func auditEach(ctx context.Context, q *querier, e *sphere.AuditEntry, ids []string, now time.Time) error {
	if e == nil {
		return nil
	}
	for _, id := range ids {
		one := *e
		one.Target = id
		if err := appendAudit(ctx, q, one, now); err != nil {
			return err
		}
	}
	return nil
}

// AuditFilter narrows an audit listing. Zero fields match everything.
type AuditFilter struct {
	Actor  string    // user name, exact
	Action string    // action, exact (e.g. "product.create")
	Target string    // target id, exact
	Result string    // "ok", "error" (any failure) or an exact error code
	Since  time.Time // inclusive
	Until  time.Time // exclusive
}

// ListAudit lists the tenant's audit entries, newest first.
func (t *TenantStore) ListAudit(ctx context.Context, f AuditFilter, p PageRequest) (sphere.Page[sphere.AuditEntry], error) {
	return t.s.listAudit(ctx, true, t.id, f, p)
}

// ListAllAudit lists every audit entry, newest first (operators only).
func (s *Store) ListAllAudit(ctx context.Context, f AuditFilter, p PageRequest) (sphere.Page[sphere.AuditEntry], error) {
	return s.listAudit(ctx, false, "", f, p)
}

func (s *Store) listAudit(ctx context.Context, scoped bool, tenant string, f AuditFilter, p PageRequest) (sphere.Page[sphere.AuditEntry], error) {
	size, after, err := p.cursor("audit")
	if err != nil {
		return sphere.Page[sphere.AuditEntry]{}, err
	}
	q := "SELECT seq, time, tenant_id, actor_id, actor, action, target, result, status, request_id FROM audit_log WHERE 1 = 1"
	var args []any
	if after != "" {
		seq, err := strconv.ParseInt(after, 10, 64)
		if err != nil {
			return sphere.Page[sphere.AuditEntry]{}, sphere.Errorf(sphere.EInvalid, "page_token is not valid for this list")
		}
		q += " AND seq < ?"
		args = append(args, seq)
	}
	if scoped {
		q += " AND tenant_id = ?"
		args = append(args, tenant)
	}
	for _, c := range []struct{ col, val string }{{"actor", f.Actor}, {"action", f.Action}, {"target", f.Target}} {
		if c.val != "" {
			q += " AND " + c.col + " = ?"
			args = append(args, c.val)
		}
	}
	switch f.Result {
	case "":
	case "error":
		q += " AND result <> 'ok'"
	default:
		q += " AND result = ?"
		args = append(args, f.Result)
	}
	if !f.Since.IsZero() {
		q += " AND time >= ?"
		args = append(args, f.Since.UTC().UnixMicro())
	}
	if !f.Until.IsZero() {
		q += " AND time < ?"
		args = append(args, f.Until.UTC().UnixMicro())
	}
	q += " ORDER BY seq DESC LIMIT ?"
	items, err := collect(ctx, s, q, append(args, size+1), func(row interface{ Scan(...any) error }) (sphere.AuditEntry, error) {
		var e sphere.AuditEntry
		var ts int64
		var tenant *string
		err := row.Scan(&e.Seq, &ts, &tenant, &e.ActorID, &e.Actor, &e.Action, &e.Target, &e.Result, &e.Status, &e.RequestID)
		e.Time = fromMicro(ts)
		if tenant != nil {
			e.TenantID = *tenant
		}
		return e, err
	})
	if err != nil {
		return sphere.Page[sphere.AuditEntry]{}, fmt.Errorf("store.ListAudit: %w", err)
	}
	return finishPage(items, size, "audit", func(e sphere.AuditEntry) string { return strconv.FormatInt(e.Seq, 10) }), nil
}
