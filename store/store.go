// Package store keeps the security service's state in SQL: SQLite
// (modernc.org/sqlite, pure Go, WAL) for the embedded default and
// PostgreSQL (pgx) to scale out. Both share one SQL layer; the few dialect
// differences live in dialect.go. Store methods that act inside a tenant are
// reachable only through a TenantStore, which adds the tenant to every query:
// that is the one place where tenant scoping is enforced.
//
// The store validates what it writes (names, roles, keys) so that no caller
// can put a bad row in, and returns *sphere.Error values for every failure a
// caller can cause.
package store

import (
	"context"
	"crypto/rand"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	_ "github.com/jackc/pgx/v5/stdlib" // registers the "pgx" database/sql driver
	_ "modernc.org/sqlite"             // registers the "sqlite" database/sql driver
)

// Config says which database to open.
type Config struct {
	// DSN is "postgres://..." (or "postgresql://...") for PostgreSQL, or
	// a SQLite file path, optionally prefixed with "sqlite:". Required.
	DSN string
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Logger receives migration and maintenance messages; nil discards them.
	Logger *slog.Logger
}

// Store is the service's database.
type Store struct {
	db    *sql.DB
	d     dialect
	now   func() time.Time
	log   *slog.Logger
	stmts stmtCache
	// writeLock (a channel of one) is SQLite's write lock in this
	// process, and queue the write transactions waiting for it: whoever
	// holds the lock commits every queued transaction together (group.go).
	// SQLite has one writer at a time anyway; waiting here is first come,
	// first served, where its busy handler polls with growing sleeps and
	// lets a crowd of writers (a fleet uploading at once) starve each
	// other into SQLITE_BUSY.
	writeLock chan struct{}
	groupMu   sync.Mutex
	queue     []*txReq
	// groups and grouped count the commits of more than one transaction
	// and the transactions in them.
	groups, grouped atomic.Int64
	// inserts holds the failure-report INSERTs by row count (see
	// failures.go), prepared on every dialect.
	inserts sync.Map
	// wrote nudges the SQLite checkpointer after a commit; done stops
	// it, and stopped says it has stopped.
	wrote         chan struct{}
	done, stopped chan struct{}
	stopOnce      sync.Once
}

// checkpointPause is the least time between two checkpoints of the
// background checkpointer: under a stream of writes it checkpoints a few
// times a second, not after every commit.
const checkpointPause = 200 * time.Millisecond

// checkpointer copies the WAL back into the database file in the
// background (SQLite). SQLite's automatic checkpoint runs inside the commit
// that crosses the WAL's size threshold, under the one writer's lock, so
// every writer queued behind it waits for the copy and the database file's
// fsync; here the writer only appends to the WAL, and a PASSIVE checkpoint,
// which blocks neither writers nor readers, runs beside it. Durability is
// the WAL's, fsynced at every commit (synchronous=FULL), as before.
func (s *Store) checkpointer() {
	defer close(s.stopped)
	for {
		select {
		case <-s.done:
			return
		case <-s.wrote:
		}
		if _, err := s.db.ExecContext(context.Background(), "PRAGMA wal_checkpoint(PASSIVE)"); err != nil {
			s.log.Warn("checkpointing the SQLite WAL", "err", err)
		}
		select {
		case <-s.done:
			return
		case <-time.After(checkpointPause):
		}
	}
}

// Open connects to the database and applies any pending migrations.
func Open(ctx context.Context, cfg Config) (*Store, error) {
	return open(ctx, cfg, 0)
}

// open is Open migrating up to schema version upTo (0: the newest); tests
// use it to fill an older schema before migrating it.
func open(ctx context.Context, cfg Config, upTo int) (*Store, error) {
	s := &Store{now: cfg.Now, log: cfg.Logger}
	if s.now == nil {
		s.now = time.Now
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	dsn := cfg.DSN
	var err error
	switch {
	case dsn == "":
		return nil, errors.New("store.Open: no database given")
	case strings.HasPrefix(dsn, "postgres://"), strings.HasPrefix(dsn, "postgresql://"):
		s.d = postgres
		s.db, err = sql.Open("pgx", dsn)
		if err == nil {
			s.db.SetMaxOpenConns(32)
			s.db.SetMaxIdleConns(32)
		}
	default:
		path := strings.TrimPrefix(dsn, "sqlite:")
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			return nil, fmt.Errorf("store.Open: %w", err)
		}
		s.d = sqlite
		// WAL lets readers run beside the writer; synchronous=FULL makes a
		// committed transaction survive a power cut; immediate transactions
		// take the write lock up front so that two writers never deadlock.
		s.db, err = sql.Open("sqlite", "file:"+path+
			"?_pragma=foreign_keys(1)&_pragma=journal_mode(WAL)&_pragma=synchronous(FULL)"+
			"&_pragma=busy_timeout(10000)&_pragma=wal_autocheckpoint(0)&_txlock=immediate")
		if err == nil {
			s.db.SetMaxOpenConns(8)
			s.db.SetMaxIdleConns(8)
			s.db.SetConnMaxIdleTime(0)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("store.Open: %w", err)
	}
	if err := s.db.PingContext(ctx); err != nil {
		s.db.Close()
		return nil, fmt.Errorf("store.Open: connect: %w", err)
	}
	if _, err := s.migrate(ctx, upTo); err != nil {
		s.db.Close()
		return nil, err
	}
	if s.d.name == "sqlite" {
		s.wrote, s.done, s.stopped = make(chan struct{}, 1), make(chan struct{}), make(chan struct{})
		s.writeLock = make(chan struct{}, 1)
		go s.checkpointer()
		s.nudge()
	}
	return s, nil
}

// Close closes the database.
func (s *Store) Close() error {
	if s.done != nil {
		s.stopOnce.Do(func() { close(s.done) })
		<-s.stopped
	}
	s.inserts.Range(func(_, st any) bool { st.(*sql.Stmt).Close(); return true })
	s.stmts.close()
	return s.db.Close()
}

// Ping checks that the database answers; /readyz uses it.
func (s *Store) Ping(ctx context.Context) error { return s.db.PingContext(ctx) }

// Dialect names the database in use: "sqlite" or "postgres".
func (s *Store) Dialect() string { return s.d.name }

// newID returns a time-ordered UUID (version 7), so that ordering by id is
// ordering by creation and ids make stable pagination cursors.
func newID() string {
	return uuid.Must(uuid.NewV7()).String()
}

// isUUID reports whether s is shaped like an id made by newID.
func isUUID(s string) bool {
	_, err := uuid.Parse(s)
	return err == nil && len(s) == 36
}

func (s *Store) nowMicro() int64 { return s.now().UTC().UnixMicro() }

func fromMicro(us int64) time.Time { return time.UnixMicro(us).UTC() }

func fromMicroPtr(us sql.NullInt64) *time.Time {
	if !us.Valid {
		return nil
	}
	t := fromMicro(us.Int64)
	return &t
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

func nullString(s string) sql.NullString { return sql.NullString{String: s, Valid: s != ""} }

// tx runs fn in a transaction and commits it if fn returns nil.
//
// Transactions are serializable on both databases (but txInsertOnly's and
// txBlind's), so that the check-then-write steps inside them (is the name
// free, is the device unclaimed, is this the last Administrator) hold under
// concurrency: SQLite takes its write lock at BEGIN (_txlock=immediate);
// PostgreSQL runs SERIALIZABLE and reports conflicts as serialization
// failures, on which fn is retried a few times from the start. On SQLite,
// transactions that wait for the writer at the same time are committed
// together (group.go): fn must not depend on committing alone.
func (s *Store) tx(ctx context.Context, fn func(q *querier) error) error {
	return s.txWith(ctx, false, fn)
}

// txAlone is tx for a bulk write (thousands of rows), which SQLite commits
// in a transaction of its own: its commit is already a small part of its
// cost, and a group holding it would keep the small ones behind it waiting.
func (s *Store) txAlone(ctx context.Context, fn func(q *querier) error) error {
	return s.txWith(ctx, true, fn)
}

// txInsertOnly is txAlone for a bulk write whose statements only add rows
// (INSERT ... ON CONFLICT DO NOTHING) and read rows that, once written, no
// transaction changes: the failure reports and their key tables. Such a
// transaction is correct at READ COMMITTED, where each statement sees what
// committed before it (a key row another upload just added included), and
// on PostgreSQL it runs there. SERIALIZABLE would add nothing to it but
// failures: a transaction of thousands of rows escalates its predicate
// locks to whole relations, so that concurrent uploads from different
// devices fail one another until their retries run out.
func (s *Store) txInsertOnly(ctx context.Context, fn func(q *querier) error) error {
	return s.txLevel(ctx, true, sql.LevelReadCommitted, fn)
}

// txBlind is tx for writes that depend on nothing the transaction reads:
// each statement inserts a row under a key that a unique index (not a
// read) keeps unique, or sets columns of one row chosen by its key. Such a
// transaction is correct at READ COMMITTED, and on PostgreSQL it runs
// there: SERIALIZABLE would add only predicate locks, and serialization
// failures against whatever else reads those rows. On SQLite it is tx, and
// shares its commit with the others waiting (group.go).
func (s *Store) txBlind(ctx context.Context, fn func(q *querier) error) error {
	return s.txLevel(ctx, false, sql.LevelReadCommitted, fn)
}

// execBlind runs one statement that txBlind could run: on SQLite in a
// transaction, so that it shares a commit; on PostgreSQL on its own, in one
// round trip rather than three.
func (s *Store) execBlind(ctx context.Context, query string, args ...any) (sql.Result, error) {
	if s.d.name != "sqlite" {
		return s.exec(ctx, query, args...)
	}
	var res sql.Result
	err := s.txBlind(ctx, func(q *querier) error {
		var err error
		res, err = q.exec(ctx, query, args...)
		return err
	})
	return res, err
}

func (s *Store) txWith(ctx context.Context, alone bool, fn func(q *querier) error) error {
	return s.txLevel(ctx, alone, sql.LevelSerializable, fn)
}

// txLevel runs fn in a transaction at level on PostgreSQL (SQLite's are
// always serializable), retrying it on serialization failures and
// deadlocks.
func (s *Store) txLevel(ctx context.Context, alone bool, level sql.IsolationLevel, fn func(q *querier) error) error {
	var opts *sql.TxOptions
	if s.d.name == "postgres" {
		opts = &sql.TxOptions{Isolation: level}
	}
	const attempts = 8
	for attempt := 1; ; attempt++ {
		var err error
		if s.d.name == "sqlite" {
			err = s.groupTx(ctx, alone, fn)
		} else {
			err = s.tryTx(ctx, opts, fn)
		}
		if err == nil || !isSerializationFailure(err) || attempt == attempts {
			return err
		}
		// Back off a little, with jitter, before running fn again.
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Duration(attempt) * time.Duration(1+randomBytes(1)[0]%8) * time.Millisecond):
		}
	}
}

// nudge tells the checkpointer that a write committed (on PostgreSQL it
// does nothing).
func (s *Store) nudge() {
	if s.wrote == nil {
		return
	}
	select {
	case s.wrote <- struct{}{}:
	default:
	}
}

func (s *Store) tryTx(ctx context.Context, opts *sql.TxOptions, fn func(q *querier) error) error {
	t, err := s.db.BeginTx(ctx, opts)
	if err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	if err := fn(&querier{tx: t, d: s.d, s: s}); err != nil {
		t.Rollback()
		return err
	}
	if err := t.Commit(); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	return nil
}

// querier runs dialect-rebound queries inside one transaction. On SQLite
// it runs them as the store's prepared statements (see Store.query), bound
// to the transaction: parsing the statements of a write costs about as
// much as running them.
type querier struct {
	tx *sql.Tx
	d  dialect
	s  *Store
	// detached: the transaction is a group commit's, whose statements run
	// without their caller's cancellation (group.go).
	detached bool
}

// stmt returns the store's prepared statement for query, bound to the
// transaction (closed with it), or nil to run query unprepared.
func (q *querier) stmt(ctx context.Context, query string) *sql.Stmt {
	ctx = q.ctx(ctx)
	if st := q.s.stmts.get(ctx, q.s, query); st != nil {
		return q.tx.StmtContext(ctx, st)
	}
	return nil
}

func (q *querier) exec(ctx context.Context, query string, args ...any) (sql.Result, error) {
	ctx = q.ctx(ctx)
	if st := q.stmt(ctx, query); st != nil {
		return st.ExecContext(ctx, args...)
	}
	return q.tx.ExecContext(ctx, q.d.rebind(query), args...)
}

func (q *querier) query(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	ctx = q.ctx(ctx)
	if st := q.stmt(ctx, query); st != nil {
		return st.QueryContext(ctx, args...)
	}
	return q.tx.QueryContext(ctx, q.d.rebind(query), args...)
}

func (q *querier) queryRow(ctx context.Context, query string, args ...any) *sql.Row {
	ctx = q.ctx(ctx)
	if st := q.stmt(ctx, query); st != nil {
		return st.QueryRowContext(ctx, args...)
	}
	return q.tx.QueryRowContext(ctx, q.d.rebind(query), args...)
}

// Queries outside a transaction. On SQLite they run as prepared
// statements kept between calls: parsing and planning a statement costs
// more than running the short ones of the device routes (PostgreSQL's
// driver keeps its own statement cache).
func (s *Store) query(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	if st := s.stmts.get(ctx, s, query); st != nil {
		return st.QueryContext(ctx, args...)
	}
	return s.db.QueryContext(ctx, s.d.rebind(query), args...)
}

// quick returns ctx for a statement that takes microseconds, such as a
// read by primary key on every device request: without ctx's cancellation
// and deadline, which database/sql and the SQLite driver would each watch
// with a goroutine of their own for the statement's lifetime (6 to 8 µs of
// CPU per statement, more than the read itself: BenchmarkDeviceReads).
// Such a statement ends long before a cancellation could matter.
func quick(ctx context.Context) context.Context { return context.WithoutCancel(ctx) }

func (s *Store) queryRow(ctx context.Context, query string, args ...any) *sql.Row {
	if st := s.stmts.get(ctx, s, query); st != nil {
		return st.QueryRowContext(ctx, args...)
	}
	return s.db.QueryRowContext(ctx, s.d.rebind(query), args...)
}

func (s *Store) exec(ctx context.Context, query string, args ...any) (sql.Result, error) {
	if st := s.stmts.get(ctx, s, query); st != nil {
		res, err := st.ExecContext(ctx, args...)
		s.nudge()
		return res, err
	}
	return s.db.ExecContext(ctx, s.d.rebind(query), args...)
}

// stmtCache holds prepared statements by their text, for SQLite. The
// queries of this package are constants (paging and filters only change
// arguments), so it stays small; maxStmts bounds it all the same.
type stmtCache struct {
	mu sync.RWMutex
	m  map[string]*sql.Stmt
}

const maxStmts = 512

// get returns the prepared statement for query, or nil to run it
// unprepared (PostgreSQL, a full cache, or a failed prepare, whose error
// the unprepared run then reports).
func (c *stmtCache) get(ctx context.Context, s *Store, query string) *sql.Stmt {
	if s.d.name != "sqlite" {
		return nil
	}
	c.mu.RLock()
	st, ok := c.m[query]
	c.mu.RUnlock()
	if ok {
		return st
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if st, ok := c.m[query]; ok {
		return st
	}
	if len(c.m) >= maxStmts {
		return nil
	}
	st, err := s.db.PrepareContext(ctx, query)
	if err != nil {
		return nil
	}
	if c.m == nil {
		c.m = map[string]*sql.Stmt{}
	}
	c.m[query] = st
	return st
}

func (c *stmtCache) close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, st := range c.m {
		st.Close()
	}
	c.m = nil
}

// randomBytes fills n bytes from the system CSPRNG.
func randomBytes(n int) []byte {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err) // crypto/rand never fails on Linux
	}
	return b
}
