package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
)

// Group commit (SQLite).
//
// SQLite has one writer, and at synchronous=FULL every commit appends the
// transaction's pages to the WAL and fsyncs it. Under a fleet's load (a
// storm of attestations, each ending in one small write) the commits, not
// the statements, are most of the writer's work, and writers queue for
// each other's fsync. So the SQLite writers of this process form a queue:
// whoever holds the write lock takes every transaction queued so far and
// runs them, one after another in arrival order, inside one SQLite
// transaction, each in a savepoint of its own, and commits once. Each
// caller gets its own result: a transaction that fails is rolled back to
// its savepoint and does not touch the others; one that succeeds returns
// only after the commit that makes it durable. Callers that arrived while
// a batch ran find their transaction done by the next holder of the lock.
//
// The result is the same as running them one by one in that order (the
// later ones see the earlier ones' writes, as they would have after their
// commits), except that they become durable together.
//
// Statements of a batch ignore the cancellation of their caller's context:
// SQLite answers an interrupted INSERT, UPDATE or DELETE inside a
// transaction by rolling back the whole transaction, which would take the
// other callers' work with it. A caller whose context is done before its
// turn is not run.

// maxGroup bounds the transactions committed together: enough to take a
// storm's commits down by an order of magnitude, few enough that one batch
// does not hold the writer for long.
const maxGroup = 64

// txReq is one caller's transaction in the queue.
type txReq struct {
	ctx   context.Context
	fn    func(*querier) error
	alone bool // a bulk write, committed on its own (Store.txAlone)
	err   error
	ready chan struct{} // closed once err is final
}

// groupTx runs fn as part of the next group commit and returns its result.
func (s *Store) groupTx(ctx context.Context, alone bool, fn func(*querier) error) error {
	r := &txReq{ctx: ctx, fn: fn, alone: alone, ready: make(chan struct{})}
	s.groupMu.Lock()
	s.queue = append(s.queue, r)
	s.groupMu.Unlock()
	for {
		select {
		case <-r.ready:
			return r.err
		case s.writeLock <- struct{}{}:
		}
		s.lead(r)
	}
}

// lead runs the queue while this caller holds the write lock: its own
// transaction is in the batch unless a batch that just ended had it (or
// more than maxGroup were queued before it; then it goes round again).
func (s *Store) lead(r *txReq) {
	defer func() { <-s.writeLock }()
	select {
	case <-r.ready:
		return
	default:
	}
	s.runQueued()
	s.nudge()
}

// runQueued runs the oldest queued transactions as one batch: up to
// maxGroup of them, and a bulk write only on its own. The caller holds the
// write lock.
func (s *Store) runQueued() {
	s.groupMu.Lock()
	n := 0
	for n < len(s.queue) && n < maxGroup {
		if s.queue[n].alone {
			n = max(n, 1)
			break
		}
		n++
	}
	batch := make([]*txReq, n)
	copy(batch, s.queue)
	rest := copy(s.queue, s.queue[n:])
	clear(s.queue[rest:])
	s.queue = s.queue[:rest]
	s.groupMu.Unlock()
	defer func() {
		// A transaction that panicked: the others of its batch fail
		// rather than wait for ever, and the panic goes on up this
		// caller's stack.
		if p := recover(); p != nil {
			for _, r := range batch {
				select {
				case <-r.ready:
				default:
					r.finish(fmt.Errorf("store: a transaction committed together with this one panicked: %v", p))
				}
			}
			panic(p)
		}
	}()

	var live []*txReq
	for _, r := range batch {
		if err := r.ctx.Err(); err != nil {
			r.finish(err)
			continue
		}
		live = append(live, r)
	}
	switch len(live) {
	case 0:
	case 1:
		// Alone: the caller's transaction as it is, bound to its context.
		r := live[0]
		r.finish(s.tryTx(r.ctx, nil, r.fn))
	default:
		s.runGroup(live)
	}
}

func (r *txReq) finish(err error) {
	r.err = err
	close(r.ready)
}

// runGroup runs batch in one transaction, each in a savepoint, and
// finishes every request.
func (s *Store) runGroup(batch []*txReq) {
	// The batch's context is none of its callers': one caller giving up
	// must not roll back the others.
	ctx := context.WithoutCancel(batch[0].ctx)
	errs := make([]error, len(batch))
	fail := func(err error) {
		for _, r := range batch {
			r.finish(err)
		}
	}
	t, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		fail(fmt.Errorf("begin: %w", err))
		return
	}
	defer t.Rollback() // after Commit, a no-op
	q := &querier{tx: t, d: s.d, s: s, detached: true}
	for i, r := range batch {
		if _, err := t.ExecContext(ctx, "SAVEPOINT grp"); err != nil {
			fail(fmt.Errorf("savepoint: %w", err))
			return
		}
		if errs[i] = r.fn(q); errs[i] != nil {
			// ROLLBACK TO fails only if SQLite has rolled the whole
			// transaction back (an I/O error, a full disk): then nothing
			// of the batch is left to commit.
			if _, err := t.ExecContext(ctx, "ROLLBACK TO grp"); err != nil {
				fail(errors.Join(fmt.Errorf("rolling back a failed transaction of a group commit: %w", err), errs[i]))
				return
			}
		}
		if _, err := t.ExecContext(ctx, "RELEASE grp"); err != nil {
			fail(fmt.Errorf("release savepoint: %w", err))
			return
		}
	}
	if err := t.Commit(); err != nil {
		fail(fmt.Errorf("commit: %w", err))
		return
	}
	s.groups.Add(1)
	s.grouped.Add(int64(len(batch)))
	for i, r := range batch {
		r.finish(errs[i])
	}
}

// execStmt runs a prepared statement of the store inside q's transaction.
func (q *querier) execStmt(ctx context.Context, st *sql.Stmt, args ...any) (sql.Result, error) {
	ctx = q.ctx(ctx)
	return q.tx.StmtContext(ctx, st).ExecContext(ctx, args...)
}

// ctx is the context for a statement of q: the caller's, or, inside a
// group commit, the caller's values without its cancellation.
func (q *querier) ctx(ctx context.Context) context.Context {
	if q.detached {
		return context.WithoutCancel(ctx)
	}
	return ctx
}
