package report

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/opensphere/sphere"
	"github.com/opensphere/sphere/internal/backoff"
	"github.com/opensphere/sphere/internal/childtest"
)

func openQueue(t *testing.T, cfg QueueConfig) *Queue {
	t.Helper()
	q, err := OpenQueue(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { q.Close() })
	return q
}

func crash(desc string) sphere.FailureEvent {
	return sphere.FailureEvent{Category: sphere.FailureAppCrash, Description: desc, ComponentID: "blinky", ImageID: "img1", Version: "1.0", Signal: "SIGSEGV"}
}

func TestQueueRecordPendingAck(t *testing.T) {
	dir := t.TempDir()
	q := openQueue(t, QueueConfig{Dir: dir, SegmentBytes: 600})
	for i := range 20 {
		if err := q.Record(crash(fmt.Sprintf("crash %d", i))); err != nil {
			t.Fatal(err)
		}
	}
	want := q.IDs()
	q.Close()

	q = openQueue(t, QueueConfig{Dir: dir, SegmentBytes: 600})
	if got := q.IDs(); !slices.Equal(got, want) {
		t.Fatalf("after reopen: %d events; want the %d recorded", len(got), len(want))
	}
	b, err := q.Pending(8)
	if err != nil || len(b.Events) != 8 || b.Events[0].ID != want[0] {
		t.Fatalf("Pending(8) = %d events, %v", len(b.Events), err)
	}
	again, _ := q.Pending(8)
	if !slices.Equal(eventIDs(again.Events), eventIDs(b.Events)) {
		t.Errorf("Pending again before Ack gave other events")
	}
	if err := q.Ack(b); err != nil {
		t.Fatal(err)
	}
	if err := q.Ack(b); err != nil {
		t.Errorf("acknowledging a batch twice: %v", err)
	}
	q.Close()
	q = openQueue(t, QueueConfig{Dir: dir, SegmentBytes: 600})
	if got := q.IDs(); !slices.Equal(got, want[8:]) {
		t.Fatalf("after Ack and reopen: %v; want %v", got, want[8:])
	}
	segs, _ := filepath.Glob(filepath.Join(dir, "seg-*.log"))
	b, _ = q.Pending(100)
	q.Ack(b)
	if st := q.Stats(); st.Events != 0 || st.Bytes != 0 {
		t.Errorf("after acknowledging everything: %+v", st)
	}
	left, _ := filepath.Glob(filepath.Join(dir, "seg-*.log"))
	if len(segs) < 3 || len(left) != 1 {
		t.Errorf("segments: %d before, %d after acknowledging everything; want several, then only the current one", len(segs), len(left))
	}
	// Seqs go on after everything was acknowledged and the queue reopened.
	q.Close()
	q = openQueue(t, QueueConfig{Dir: dir, SegmentBytes: 600})
	q.Record(crash("after"))
	if b, _ := q.Pending(10); len(b.Events) != 1 || b.Events[0].Description != "after" {
		t.Errorf("after reopening an empty queue: %+v", b.Events)
	}
}

func eventIDs(evs []sphere.FailureEvent) []string {
	out := make([]string, len(evs))
	for i, e := range evs {
		out[i] = e.ID
	}
	return out
}

func TestQueueTornRecord(t *testing.T) {
	for name, garbage := range map[string][]byte{
		"half a header":       {0, 0},
		"short payload":       {0, 0, 0, 50, 1, 2, 3, 4, '{'},
		"bad checksum":        append([]byte{0, 0, 0, 2, 0, 0, 0, 0}, "{}"...),
		"length out of bound": {0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0},
	} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			q := openQueue(t, QueueConfig{Dir: dir})
			q.Record(crash("one"))
			q.Record(crash("two"))
			want := q.IDs()
			q.Close()
			segs, _ := filepath.Glob(filepath.Join(dir, "seg-*.log"))
			f, err := os.OpenFile(segs[len(segs)-1], os.O_WRONLY|os.O_APPEND, 0)
			if err != nil {
				t.Fatal(err)
			}
			f.Write(garbage)
			f.Close()
			q = openQueue(t, QueueConfig{Dir: dir})
			if got := q.IDs(); !slices.Equal(got, want) {
				t.Fatalf("after a torn record: %v; want %v", got, want)
			}
			q.Record(crash("three"))
			want = q.IDs()
			q.Close()
			q = openQueue(t, QueueConfig{Dir: dir})
			if got := q.IDs(); !slices.Equal(got, want) || len(got) != 3 {
				t.Fatalf("a record after the cut-off one: %v; want %v", got, want)
			}
		})
	}
}

func TestQueueFullDropsOldest(t *testing.T) {
	dir := t.TempDir()
	q := openQueue(t, QueueConfig{Dir: dir, MaxEvents: 10})
	for i := range 15 {
		if err := q.Record(crash(fmt.Sprintf("crash %d", i))); err != nil {
			t.Fatal(err)
		}
	}
	if st := q.Stats(); st.Events != 10 || st.Dropped != 5 || st.Fill != 1 {
		t.Fatalf("stats = %+v; want 10 events, 5 dropped", st)
	}
	q.Close()
	q = openQueue(t, QueueConfig{Dir: dir, MaxEvents: 10})
	b, err := q.Pending(4)
	if err != nil || len(b.Events) != 4 {
		t.Fatalf("Pending = %+v, %v", b, err)
	}
	d := b.Events[0]
	if d.Category != sphere.FailureEventsDropped || d.Count != 5 || b.Events[1].Description != "crash 5" {
		t.Fatalf("first pending = %+v, then %q; want the drop report of 5, then crash 5", d, b.Events[1].Description)
	}
	// More drops before the batch is acknowledged: the drop report sent
	// again keeps its id and count; the new drops go in the next one.
	q.Record(crash("crash 15"))
	q.Close()
	q = openQueue(t, QueueConfig{Dir: dir, MaxEvents: 10})
	again, _ := q.Pending(4)
	if again.Events[0].ID != d.ID || again.Events[0].Count != 5 {
		t.Errorf("drop report sent again = %+v; want id %s, count 5", again.Events[0], d.ID)
	}
	if err := q.Ack(again); err != nil {
		t.Fatal(err)
	}
	next, _ := q.Pending(100)
	if next.Events[0].Category != sphere.FailureEventsDropped || next.Events[0].Count != 1 || next.Events[0].ID == d.ID {
		t.Errorf("next drop report = %+v; want a new one of 1", next.Events[0])
	}
	if n := len(next.Events); n != 1+10-3 {
		t.Errorf("next batch has %d events; want the new drop report and 7 events", n)
	}
	q.Ack(next)
	if st := q.Stats(); st.Events != 0 || st.Dropped != 0 {
		t.Errorf("after everything was acknowledged: %+v", st)
	}
}

func TestQueueCoalesces(t *testing.T) {
	q := openQueue(t, QueueConfig{Dir: t.TempDir()})
	q.Record(crash("same"))
	q.Record(crash("same"))
	q.Record(crash("other"))
	b, _ := q.Pending(10)
	if len(b.Events) != 2 || b.Events[0].Count != 2 || b.Events[1].Count != 1 {
		t.Fatalf("pending = %+v; want 'same' twice in one event, then 'other'", b.Events)
	}
	if len(q.open) != 0 {
		t.Errorf("%d coalescing keys kept for events handed out", len(q.open))
	}
	// Handed out for upload: a new one alike is a new event, so the count
	// of an event the service may have stored never changes.
	q.Record(crash("same"))
	b2, _ := q.Pending(10)
	if len(b2.Events) != 3 || b2.Events[0].Count != 2 || b2.Events[2].Count != 1 {
		t.Fatalf("after Pending: %+v; want a third event", b2.Events)
	}
	// A reopened queue does not coalesce into events of the last run.
	dir := t.TempDir()
	q = openQueue(t, QueueConfig{Dir: dir})
	q.Record(crash("same"))
	q.Close()
	q = openQueue(t, QueueConfig{Dir: dir})
	q.Record(crash("same"))
	if n := len(q.IDs()); n != 2 {
		t.Errorf("after reopen: %d events; want 2", n)
	}
	q.Close()
	q = openQueue(t, QueueConfig{Dir: dir})
	if b, _ := q.Pending(10); len(b.Events) != 2 || b.Events[0].Count != 1 {
		t.Errorf("coalesced count after reopen = %+v", b.Events)
	}
}

func TestQueueRefusesBadEvents(t *testing.T) {
	q := openQueue(t, QueueConfig{Dir: t.TempDir()})
	for name, e := range map[string]sphere.FailureEvent{
		"unknown category": {Category: "meltdown"},
		"bad id":           {ID: "xyz", Category: sphere.FailureAppCrash},
		"negative count":   {Category: sphere.FailureAppCrash, Count: -1},
	} {
		if err := q.Record(e); err == nil {
			t.Errorf("%s: recorded", name)
		}
	}
	if err := q.Record(sphere.FailureEvent{Category: sphere.FailureAgentPanic, Description: "panic: boom\n\ngoroutine 1 [running]:\n\tmain.go:1"}); err != nil {
		t.Errorf("a description with newlines: %v", err)
	}
	if n := len(q.IDs()); n != 1 {
		t.Errorf("%d events held; want 1", n)
	}
}

// TestPowerCut kills a process that records and acknowledges events, with
// SIGKILL at random moments, several times over the same queue: after each
// kill, every event whose Record returned and whose Ack did not start is
// in the queue, and every event whose Ack returned is not.
func TestPowerCut(t *testing.T) {
	if dir := os.Getenv("REPORT_POWERCUT_CHILD"); dir != "" {
		powerCutChild(dir)
		return
	}
	if testing.Short() {
		t.Skip("-short")
	}
	dir := t.TempDir()
	recorded, acked, maybe := map[string]bool{}, map[string]bool{}, map[string]bool{}
	for round := range 6 {
		cmd, out := childtest.Start(t, "TestPowerCut", "REPORT_POWERCUT_CHILD="+dir)
		lines := make(chan string, 1024)
		go func() {
			sc := bufio.NewScanner(out)
			for sc.Scan() {
				lines <- sc.Text()
			}
			close(lines)
		}()
		// Kill after a random number of acknowledged records (30 to 300),
		// so that the kill lands at a random point of a write.
		n := 30 + int(backoff.Random(270))
		timeout := time.After(60 * time.Second)
		seen := 0
	read:
		for seen < n {
			select {
			case l, ok := <-lines:
				if !ok {
					break read
				}
				seen += apply(l, recorded, acked, maybe)
			case <-timeout:
				t.Fatalf("round %d: the child recorded only %d events in a minute", round, seen)
			}
		}
		cmd.Process.Signal(syscall.SIGKILL)
		for l := range lines { // what the child said before it died
			apply(l, recorded, acked, maybe)
		}
		cmd.Wait()

		q, err := OpenQueue(QueueConfig{Dir: dir, MaxEvents: 1 << 20, MaxBytes: 1 << 30})
		if err != nil {
			t.Fatalf("round %d: open after kill: %v", round, err)
		}
		held := map[string]bool{}
		for _, id := range q.IDs() {
			held[id] = true
		}
		q.Close()
		lost, back := 0, 0
		for id := range recorded {
			if !acked[id] && !maybe[id] && !held[id] {
				lost++
			}
		}
		for id := range acked {
			if held[id] {
				back++
			}
		}
		if lost > 0 || back > 0 {
			t.Fatalf("round %d: %d acknowledged events lost, %d acknowledged removals undone", round, lost, back)
		}
		t.Logf("round %d: %d recorded, %d removed, %d held after the kill", round, len(recorded), len(acked), len(held))
	}
}

// apply reads one line of the child: "rec ID" after Record returned,
// "acking ID..." before Ack, "acked" after it returned. It returns 1 for
// a record.
func apply(l string, recorded, acked, maybe map[string]bool) int {
	f := strings.Fields(l)
	if len(f) == 0 {
		return 0
	}
	switch f[0] {
	case "rec":
		recorded[f[1]] = true
		return 1
	case "acking":
		for _, id := range f[1:] {
			maybe[id] = true
		}
	case "acked":
		for id := range maybe {
			acked[id] = true
			delete(maybe, id)
		}
	}
	return 0
}

func powerCutChild(dir string) {
	q, err := OpenQueue(QueueConfig{Dir: dir, MaxEvents: 1 << 20, MaxBytes: 1 << 30, SegmentBytes: 4096})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	w := bufio.NewWriter(os.Stdout)
	for i := 0; i < 100000; i++ {
		ev := crash(fmt.Sprintf("crash %d of pid %d", i, os.Getpid()))
		ev.ID = NewEventID()
		if err := q.Record(ev); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		fmt.Fprintln(w, "rec", ev.ID)
		w.Flush()
		if i%25 == 24 {
			b, err := q.Pending(10)
			if err != nil {
				os.Exit(2)
			}
			fmt.Fprintln(w, "acking", strings.Join(eventIDs(b.Events), " "))
			w.Flush()
			if err := q.Ack(b); err != nil {
				os.Exit(2)
			}
			fmt.Fprintln(w, "acked")
			w.Flush()
		}
	}
	os.Exit(0)
}

// Event ids are 32 lowercase hex digits that the service accepts, and a
// later id sorts after an earlier one (the service's index of them grows
// at its end).
func TestNewEventIDOrdered(t *testing.T) {
	prev := NewEventID()
	seen := map[string]bool{prev: true}
	for i := range 200 {
		if i%50 == 0 {
			time.Sleep(2 * time.Millisecond)
		}
		id := NewEventID()
		if err := sphere.ValidateFailureEvent(sphere.FailureEvent{ID: id, Class: "os", Category: sphere.FailureAgentPanic, Count: 1,
			FirstTime: time.Now(), LastTime: time.Now()}, time.Now()); err != nil {
			t.Fatalf("id %s: %v", id, err)
		}
		if seen[id] {
			t.Fatalf("id %s made twice", id)
		}
		seen[id] = true
		if i%50 == 0 && id <= prev {
			t.Fatalf("id %s made 2ms after %s sorts before it", id, prev)
		}
		prev = id
	}
	ms := time.Now().UnixMilli()
	if got := NewEventID()[:12]; got != fmt.Sprintf("%012x", ms) && got != fmt.Sprintf("%012x", ms+1) {
		t.Errorf("id starts %s; want the time %012x", got, ms)
	}
}
