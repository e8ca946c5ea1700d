package store

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/opensphere/sphere/internal/childtest"
)

// nonceRows returns which of the given used_nonces rows exist.
func nonceRows(t *testing.T, s *Store, hashes ...string) map[string]bool {
	t.Helper()
	got := map[string]bool{}
	for _, h := range hashes {
		var n int
		if err := s.db.QueryRow("SELECT COUNT(*) FROM used_nonces WHERE nonce_hash = ?", []byte(h)).Scan(&n); err != nil {
			t.Fatal(err)
		}
		got[h] = n == 1
	}
	return got
}

// TestGroupCommitBulkAlone: a bulk write is committed in a transaction of
// its own, between the groups of the small ones queued before and after it.
func TestGroupCommitBulkAlone(t *testing.T) {
	s := openSQLite(t, filepath.Join(t.TempDir(), "sphere.db"))
	ctx := context.Background()
	s.writeLock <- struct{}{}
	var wg sync.WaitGroup
	errs := make([]error, 5)
	for i, bulk := range []bool{false, false, true, false, false} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			write := func(q *querier) error {
				_, err := q.exec(ctx, "INSERT INTO used_nonces (nonce_hash, expires_at) VALUES (?, ?)", []byte{byte(i)}, int64(1))
				return err
			}
			if bulk {
				errs[i] = s.txAlone(ctx, write)
			} else {
				errs[i] = s.tx(ctx, write)
			}
		}()
		queued(t, s, i+1)
	}
	<-s.writeLock
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("transaction %d: %v", i, err)
		}
	}
	if g, n := s.groups.Load(), s.grouped.Load(); g != 2 || n != 4 {
		t.Errorf("group commits: %d of %d transactions, want 2 of 4 (the bulk write alone)", g, n)
	}
}

// insertNonce is a transaction that writes one row and then fails with
// failWith, if it is not nil.
func insertNonce(ctx context.Context, s *Store, hash string, failWith error) error {
	return s.tx(ctx, func(q *querier) error {
		if _, err := q.exec(ctx, "INSERT INTO used_nonces (nonce_hash, expires_at) VALUES (?, ?)", []byte(hash), time.Now().UnixMicro()); err != nil {
			return err
		}
		return failWith
	})
}

// queued waits until n transactions wait in s's queue.
func queued(t *testing.T, s *Store, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		s.groupMu.Lock()
		k := len(s.queue)
		s.groupMu.Unlock()
		if k == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d transactions queued, want %d", k, n)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestGroupCommitKeepsEachResult holds the write lock while transactions
// queue up, so that they commit as one group: the one that fails is rolled
// back alone, the one whose caller gave up is not run, and the rest are
// committed with their callers told so.
func TestGroupCommitKeepsEachResult(t *testing.T) {
	s := openSQLite(t, filepath.Join(t.TempDir(), "sphere.db"))
	ctx := context.Background()
	boom := errors.New("boom")
	canceled, cancel := context.WithCancel(ctx)

	s.writeLock <- struct{}{} // as if a batch were running
	type call struct {
		hash string
		ctx  context.Context
		fail error
		want error
	}
	calls := []call{
		{"a", ctx, nil, nil},
		{"b", ctx, boom, boom},                 // writes, then fails
		{"c", canceled, nil, context.Canceled}, // its caller gives up while it waits
		{"d", ctx, nil, nil},
		{"a", ctx, nil, errors.New("UNIQUE constraint")}, // a row an earlier one in the group wrote
		{"e", ctx, nil, nil},
	}
	errs := make([]error, len(calls))
	var wg sync.WaitGroup
	for i, c := range calls {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = insertNonce(c.ctx, s, c.hash, c.fail)
		}()
		queued(t, s, i+1) // in this order
	}
	cancel()
	<-s.writeLock
	wg.Wait()

	for i, c := range calls {
		switch {
		case c.want == nil && errs[i] != nil:
			t.Errorf("transaction %d (%s): %v, want success", i, c.hash, errs[i])
		case c.want != nil && errs[i] == nil:
			t.Errorf("transaction %d (%s) succeeded, want %v", i, c.hash, c.want)
		case c.want != nil && !errors.Is(errs[i], c.want) && !strings.Contains(errs[i].Error(), c.want.Error()):
			t.Errorf("transaction %d (%s): %v, want %v", i, c.hash, errs[i], c.want)
		}
	}
	want := map[string]bool{"a": true, "b": false, "c": false, "d": true, "e": true}
	if got := nonceRows(t, s, "a", "b", "c", "d", "e"); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("rows after the group commit: %v, want %v", got, want)
	}
	// Five callers were run together (the canceled one was not run).
	if g, n := s.groups.Load(), s.grouped.Load(); g != 1 || n != 5 {
		t.Errorf("group commits: %d of %d transactions, want 1 of 5", g, n)
	}
}

// TestGroupCommitPanic: a transaction that panics fails the others of its
// group instead of leaving them waiting, releases the write lock, and its
// panic reaches the caller that ran the group.
func TestGroupCommitPanic(t *testing.T) {
	s := openSQLite(t, filepath.Join(t.TempDir(), "sphere.db"))
	ctx := context.Background()
	s.writeLock <- struct{}{}
	errs := make([]error, 3)
	panics := make([]any, 3)
	var wg sync.WaitGroup
	for i := range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { panics[i] = recover() }()
			errs[i] = s.tx(ctx, func(q *querier) error {
				if _, err := q.exec(ctx, "INSERT INTO used_nonces (nonce_hash, expires_at) VALUES (?, ?)", []byte{byte(i)}, int64(1)); err != nil {
					return err
				}
				if i == 1 {
					panic("transaction 1")
				}
				return nil
			})
		}()
		queued(t, s, i+1)
	}
	<-s.writeLock
	wg.Wait()
	var panicked, failed int
	for i := range 3 {
		if panics[i] != nil {
			panicked++
		} else if errs[i] != nil {
			failed++
		}
	}
	if panicked != 1 || failed != 2 {
		t.Fatalf("panics %v, errors %v: want one caller to see the panic and the other two an error", panics, errs)
	}
	if got := nonceRows(t, s, "\x00", "\x01", "\x02"); got["\x00"] || got["\x01"] || got["\x02"] {
		t.Errorf("rows of a group that panicked were committed: %v", got)
	}
	// The write lock is free again.
	if err := insertNonce(ctx, s, "after", nil); err != nil {
		t.Fatal(err)
	}
}

// TestGroupCommitUnderLoad: many writers at once all get their rows
// committed, and they were in fact committed in groups.
func TestGroupCommitUnderLoad(t *testing.T) {
	s := openSQLite(t, filepath.Join(t.TempDir(), "sphere.db"))
	ctx := context.Background()
	const n = 400
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = insertNonce(ctx, s, fmt.Sprint("load-", i), nil)
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("writer %d: %v", i, err)
		}
	}
	var rows int
	if err := s.db.QueryRow("SELECT COUNT(*) FROM used_nonces").Scan(&rows); err != nil {
		t.Fatal(err)
	}
	if rows != n {
		t.Fatalf("%d rows, want %d", rows, n)
	}
	t.Logf("%d of %d transactions were committed in %d groups", s.grouped.Load(), n, s.groups.Load())
	if s.groups.Load() == 0 {
		t.Errorf("%d writers at once were committed one by one", n)
	}
}

// TestGroupCommitSurvivesKill runs writers in a child process, each
// transaction writing two rows, and kills the process with SIGKILL in the
// middle of their group commits: every transaction the child was told had
// committed is in the database, and no transaction is there in part.
func TestGroupCommitSurvivesKill(t *testing.T) {
	if path := os.Getenv("SPHERE_STORE_KILL_CHILD"); path != "" {
		killChild(path)
		return
	}
	if testing.Short() {
		t.Skip("starts a child process")
	}
	path := filepath.Join(t.TempDir(), "sphere.db")
	cmd, out := childtest.Start(t, "TestGroupCommitSurvivesKill", "SPHERE_STORE_KILL_CHILD="+path)
	acked := map[string]bool{}
	var groups int
	sc := bufio.NewScanner(out)
	deadline := time.Now().Add(30 * time.Second)
	for len(acked) < 3000 && time.Now().Before(deadline) && sc.Scan() {
		line := sc.Text()
		if g, ok := strings.CutPrefix(line, "groups "); ok {
			groups, _ = strconv.Atoi(g)
			continue
		}
		acked[line] = true
	}
	cmd.Process.Kill() // SIGKILL: no deferred function, no Close
	cmd.Wait()
	if len(acked) < 100 {
		t.Fatalf("the child acknowledged only %d transactions before the kill", len(acked))
	}
	if groups == 0 {
		t.Errorf("the child's %d transactions were never committed in groups", len(acked))
	}

	s := openSQLite(t, path)
	rows, err := s.db.Query("SELECT nonce_hash FROM used_nonces")
	if err != nil {
		t.Fatal(err)
	}
	present := map[string]int{}
	for rows.Next() {
		var h []byte
		if err := rows.Scan(&h); err != nil {
			t.Fatal(err)
		}
		id, _, _ := strings.Cut(string(h), "/")
		present[id]++
	}
	rows.Close()
	for id := range acked {
		if present[id] != 2 {
			t.Errorf("transaction %s was acknowledged, but %d of its 2 rows are in the database", id, present[id])
		}
	}
	for id, n := range present {
		if n != 2 {
			t.Errorf("transaction %s is in the database in part: %d of 2 rows", id, n)
		}
	}
	t.Logf("%d transactions acknowledged before the kill, %d in the database, committed in %d groups or more", len(acked), len(present), groups)
}

// killChild writes from 32 goroutines until it is killed, printing the id
// of each transaction once tx has returned and, now and then, how many
// group commits there were.
func killChild(path string) {
	s, err := Open(context.Background(), Config{DSN: path})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	var mu sync.Mutex
	n := 0
	for g := range 32 {
		go func() {
			for i := 0; ; i++ {
				id := fmt.Sprintf("g%d-%d", g, i)
				err := s.tx(context.Background(), func(q *querier) error {
					for _, part := range []string{"/a", "/b"} {
						if _, err := q.exec(context.Background(), "INSERT INTO used_nonces (nonce_hash, expires_at) VALUES (?, ?)", []byte(id+part), int64(1)); err != nil {
							return err
						}
					}
					return nil
				})
				if err != nil {
					fmt.Fprintln(os.Stderr, err)
					os.Exit(2)
				}
				mu.Lock()
				os.Stdout.WriteString(id + "\n")
				if n++; n%100 == 0 {
					fmt.Fprintf(os.Stdout, "groups %d\n", s.groups.Load())
				}
				mu.Unlock()
			}
		}()
	}
	select {}
}
