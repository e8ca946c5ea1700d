// Package report is the agent's side of failure reporting: a bounded
// on-disk queue of failure events that keeps every event it acknowledged
// across power cuts, and an uploader that sends the queue to the security
// service at least daily over mutual TLS. It does not decide what is a
// failure (the agent, update engine and app supervisor record events), and
// it knows nothing of how the agent reaches the service beyond a Post call.
package report

import (
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode"

	"github.com/opensphere/sphere"
	"github.com/opensphere/sphere/tlsutil"
)

// QueueConfig configures a Queue.
type QueueConfig struct {
	// Dir holds the queue's files. Required.
	Dir string
	// MaxEvents bounds the events held; zero means 2000.
	MaxEvents int
	// MaxBytes bounds the bytes of the events held; zero means 1 MiB.
	MaxBytes int64
	// SegmentBytes is the size at which a new segment file is started;
	// zero means 64 KiB.
	SegmentBytes int64
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Logger receives warnings (a torn record found at open); nil discards
	// them.
	Logger *slog.Logger
}

// Queue is a bounded, durable queue of failure events. Record returns only
// once the event is on disk (written and synced), so an event it
// acknowledged survives a power cut. When the queue is full it drops its
// oldest events and counts them; the count is uploaded as an
// events_dropped event.
//
// On disk: append-only segment files (seg-<first seq>.log) of records, each
// framed by its length and CRC-32C, so that a record torn by a power cut is
// found and cut off at open; and a state file, replaced atomically, that
// holds the head (every event below it was uploaded or dropped) and the
// drop counters. Segments wholly below the head are deleted.
type Queue struct {
	cfg  QueueConfig
	log  *slog.Logger
	now  func() time.Time
	mu   sync.Mutex
	st   queueState
	live []entry // events at or above the head, oldest first
	size int64   // bytes of live
	next uint64  // seq of the next event

	seg      *os.File // the segment being appended to
	segStart uint64
	segSize  int64

	// Coalescing: an event recorded by this process and not yet handed
	// out by Pending may take in later events alike (same category,
	// description, component and image). An event from an earlier run may
	// have been uploaded already, and its id must not change meaning.
	open     map[string]uint64 // coalescing key -> seq
	handedTo uint64            // seqs below this were handed out by Pending

	changed chan struct{}
}

type entry struct {
	seq  uint64
	size int64
	ev   sphere.FailureEvent
}

// queueState is the state file.
type queueState struct {
	Head uint64 `json:"head"`
	// DroppedNew counts events dropped since the last drop report was
	// made; DroppedSent is the count of the drop report DroppedID, made by
	// Pending and kept until acknowledged, so that a re-sent report keeps
	// its id and count.
	DroppedNew  int64  `json:"dropped_new"`
	DroppedSent int64  `json:"dropped_sent"`
	DroppedID   string `json:"dropped_id,omitempty"`
	DroppedAt   int64  `json:"dropped_at,omitempty"` // unix micro of the first drop counted
}

// record is one framed record's payload: an event added, or a coalescing
// update of an earlier event (Update: its seq, count and last time).
type record struct {
	Seq    uint64               `json:"seq"`
	Event  *sphere.FailureEvent `json:"event,omitempty"`
	Update bool                 `json:"update,omitempty"`
	Count  int64                `json:"count,omitempty"`
	Last   time.Time            `json:"last,omitzero"`
}

const (
	stateFile   = "state.json"
	frameHeader = 8 // length, CRC-32C
	maxRecord   = 64 << 10
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// OpenQueue opens (or creates) the queue in cfg.Dir, cutting off a record
// torn by a power cut.
func OpenQueue(cfg QueueConfig) (*Queue, error) {
	if cfg.Dir == "" {
		return nil, errors.New("report.OpenQueue: no directory")
	}
	if cfg.MaxEvents <= 0 {
		cfg.MaxEvents = 2000
	}
	if cfg.MaxBytes <= 0 {
		cfg.MaxBytes = 1 << 20
	}
	if cfg.SegmentBytes <= 0 {
		cfg.SegmentBytes = 64 << 10
	}
	q := &Queue{cfg: cfg, log: cfg.Logger, now: cfg.Now, open: map[string]uint64{}, changed: make(chan struct{}, 1)}
	if q.log == nil {
		q.log = slog.New(slog.DiscardHandler)
	}
	if q.now == nil {
		q.now = time.Now
	}
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("report.OpenQueue: %w", err)
	}
	if err := q.load(); err != nil {
		return nil, fmt.Errorf("report.OpenQueue: %w", err)
	}
	return q, nil
}

// Close closes the segment file.
func (q *Queue) Close() error {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.seg == nil {
		return nil
	}
	err := q.seg.Close()
	q.seg = nil
	return err
}

func (q *Queue) load() error {
	data, err := os.ReadFile(filepath.Join(q.cfg.Dir, stateFile))
	switch {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		return err
	default:
		if err := json.Unmarshal(data, &q.st); err != nil {
			return fmt.Errorf("%s: %w", stateFile, err)
		}
	}
	segs, err := q.segments()
	if err != nil {
		return err
	}
	q.next = q.st.Head
	byseq := map[uint64]int{}
	for i, start := range segs {
		last := i == len(segs)-1
		size, err := q.readSegment(start, last, func(r record) {
			switch {
			case r.Update:
				if k, ok := byseq[r.Seq]; ok {
					q.live[k].ev.Count, q.live[k].ev.LastTime = r.Count, r.Last
				}
			case r.Event != nil && r.Seq >= q.st.Head:
				byseq[r.Seq] = len(q.live)
				q.live = append(q.live, entry{seq: r.Seq, ev: *r.Event})
			}
			q.next = max(q.next, r.Seq+1)
		})
		if err != nil {
			return err
		}
		if last {
			q.segStart, q.segSize = start, size
		}
	}
	for i := range q.live {
		q.live[i].size = recordSize(q.live[i].ev)
		q.size += q.live[i].size
	}
	if len(segs) > 0 {
		f, err := os.OpenFile(q.segPath(q.segStart), os.O_WRONLY|os.O_APPEND, 0o600)
		if err != nil {
			return err
		}
		q.seg = f
	}
	// A smaller bound than the queue was written with takes effect now.
	if q.trim(0) {
		if err := q.saveState(); err != nil {
			return err
		}
	}
	return q.removeOldSegments()
}

// segments lists the segment files' first seqs, in order.
func (q *Queue) segments() ([]uint64, error) {
	ents, err := os.ReadDir(q.cfg.Dir)
	if err != nil {
		return nil, err
	}
	var out []uint64
	for _, e := range ents {
		name, ok := strings.CutPrefix(e.Name(), "seg-")
		name, ok2 := strings.CutSuffix(name, ".log")
		if !ok || !ok2 {
			continue
		}
		n, err := strconv.ParseUint(name, 10, 64)
		if err != nil {
			continue
		}
		out = append(out, n)
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out, nil
}

func (q *Queue) segPath(start uint64) string {
	return filepath.Join(q.cfg.Dir, fmt.Sprintf("seg-%020d.log", start))
}

// readSegment calls fn for each whole record of a segment and returns the
// size of its good prefix. A torn or corrupt record ends the segment: in
// the last segment it is cut off so that appends follow good records.
func (q *Queue) readSegment(start uint64, last bool, fn func(record)) (int64, error) {
	path := q.segPath(start)
	data, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	off := 0
	for off < len(data) {
		r, n, err := decodeFrame(data[off:])
		if err != nil {
			q.log.Warn("failure-report queue: cutting off a torn or corrupt record", "segment", filepath.Base(path), "offset", off, "err", err)
			if last {
				if err := truncateSync(path, int64(off)); err != nil {
					return 0, err
				}
			}
			break
		}
		fn(r)
		off += n
	}
	return int64(off), nil
}

func truncateSync(path string, size int64) error {
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := f.Truncate(size); err != nil {
		return err
	}
	return f.Sync()
}

// decodeFrame reads one framed record and returns it and the bytes it took.
func decodeFrame(b []byte) (record, int, error) {
	var r record
	if len(b) < frameHeader {
		return r, 0, io.ErrUnexpectedEOF
	}
	n := binary.BigEndian.Uint32(b)
	sum := binary.BigEndian.Uint32(b[4:])
	if n == 0 || n > maxRecord {
		return r, 0, fmt.Errorf("record length %d out of range", n)
	}
	if len(b)-frameHeader < int(n) {
		return r, 0, io.ErrUnexpectedEOF
	}
	payload := b[frameHeader : frameHeader+int(n)]
	if crc32.Checksum(payload, castagnoli) != sum {
		return r, 0, errors.New("checksum mismatch")
	}
	if err := json.Unmarshal(payload, &r); err != nil {
		return r, 0, err
	}
	return r, frameHeader + int(n), nil
}

func encodeFrame(r record) ([]byte, error) {
	payload, err := json.Marshal(r)
	if err != nil {
		return nil, err
	}
	if len(payload) > maxRecord {
		return nil, fmt.Errorf("record of %d bytes is too large", len(payload))
	}
	b := make([]byte, frameHeader, frameHeader+len(payload))
	binary.BigEndian.PutUint32(b, uint32(len(payload)))
	binary.BigEndian.PutUint32(b[4:], crc32.Checksum(payload, castagnoli))
	return append(b, payload...), nil
}

func recordSize(ev sphere.FailureEvent) int64 {
	b, _ := json.Marshal(ev)
	return int64(len(b)) + frameHeader + 32
}

// NewEventID returns a new event id: 32 lowercase hex digits, the first 12
// the time in milliseconds since 1970 and the other 20 random (the layout
// of a UUID version 7, less its version bits). The ids a device makes
// later sort after its earlier ones, so that the service's unique index
// of (device, event id) grows at the end of the device's range rather
// than at random places in it: an upload then changes a few index pages
// instead of about one per event. 80 random bits keep ids of the same
// millisecond apart.
func NewEventID() string {
	var b [16]byte
	ms := uint64(time.Now().UnixMilli())
	for i := range 6 {
		b[i] = byte(ms >> (8 * (5 - i)))
	}
	if _, err := rand.Read(b[6:]); err != nil {
		panic(err) // crypto/rand does not fail on Linux
	}
	return hex.EncodeToString(b[:])
}

// cleanText makes free text fit the service's rules: valid UTF-8, no
// control characters (a panic's stack has newlines), at most n characters.
func cleanText(s string, n int) string {
	s = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return ' '
		}
		return r
	}, strings.ToValidUTF8(s, "?"))
	if r := []rune(s); len(r) > n {
		s = string(r[:n])
	}
	return s
}

func coalesceKey(e sphere.FailureEvent) string {
	return strings.Join([]string{e.Class, e.Category, e.Description, e.ComponentID, e.ImageID, e.Version, e.Signal}, "\x00")
}

// Record adds an event to the queue and returns once it is on disk. Empty
// fields are filled in: ID (random), Count (1), times (now), Class (the
// category's). An event like one this process recorded and has not yet
// handed out for upload is counted into it instead.
func (q *Queue) Record(ev sphere.FailureEvent) error {
	now := q.now().UTC()
	if ev.ID == "" {
		ev.ID = NewEventID()
	}
	if ev.Count == 0 {
		ev.Count = 1
	}
	if ev.FirstTime.IsZero() {
		ev.FirstTime = now
	}
	if ev.LastTime.IsZero() {
		ev.LastTime = ev.FirstTime
	}
	if ev.LastTime.Before(ev.FirstTime) { // a clock set back between the two
		ev.FirstTime = ev.LastTime
	}
	if ev.Class == "" {
		ev.Class = sphere.FailureCategories[ev.Category]
	}
	ev.Description = cleanText(ev.Description, sphere.MaxFailureDescription)
	for _, f := range []*string{&ev.ComponentID, &ev.ImageID, &ev.Version, &ev.Signal} {
		*f = cleanText(*f, 128)
	}
	if err := sphere.ValidateFailureEvent(ev, now); err != nil {
		return fmt.Errorf("report.Record: %w", err)
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	if err := q.record(ev); err != nil {
		return fmt.Errorf("report.Record: %w", err)
	}
	select {
	case q.changed <- struct{}{}:
	default:
	}
	return nil
}

func (q *Queue) record(ev sphere.FailureEvent) error {
	key := coalesceKey(ev)
	if seq, ok := q.open[key]; ok && seq >= q.handedTo {
		if k := q.find(seq); k >= 0 {
			old := &q.live[k].ev
			count, last := old.Count+ev.Count, ev.LastTime
			if last.Before(old.LastTime) {
				last = old.LastTime
			}
			if err := q.append(record{Seq: seq, Update: true, Count: count, Last: last}); err != nil {
				return err
			}
			old.Count, old.LastTime = count, last
			return nil
		}
	}
	size := recordSize(ev)
	if q.trim(size) {
		if err := q.saveState(); err != nil {
			return err
		}
		if err := q.removeOldSegments(); err != nil {
			return err
		}
	}
	seq := q.next
	if err := q.append(record{Seq: seq, Event: &ev}); err != nil {
		return err
	}
	q.next++
	q.live = append(q.live, entry{seq: seq, size: size, ev: ev})
	q.size += size
	q.open[key] = seq
	return nil
}

// find returns the index in live of seq, or -1.
func (q *Queue) find(seq uint64) int {
	k := sort.Search(len(q.live), func(i int) bool { return q.live[i].seq >= seq })
	if k < len(q.live) && q.live[k].seq == seq {
		return k
	}
	return -1
}

// trim drops the oldest events until one more of size fits, counting
// them; it reports whether it dropped any.
func (q *Queue) trim(size int64) bool {
	dropped := 0
	for len(q.live) > 0 && (len(q.live)+boolInt(size > 0) > q.cfg.MaxEvents || q.size+size > q.cfg.MaxBytes) {
		q.size -= q.live[0].size
		q.st.Head = q.live[0].seq + 1
		q.live = q.live[1:]
		dropped++
	}
	if dropped == 0 {
		return false
	}
	if q.st.DroppedNew == 0 {
		q.st.DroppedAt = q.now().UTC().UnixMicro()
	}
	q.st.DroppedNew += int64(dropped)
	q.pruneOpen(q.st.Head)
	return true
}

// pruneOpen forgets the coalescing keys of events below seq (gone, or
// handed out), so that the map stays as small as the queue.
func (q *Queue) pruneOpen(seq uint64) {
	for k, s := range q.open {
		if s < seq {
			delete(q.open, k)
		}
	}
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// append writes one record to the current segment and syncs it, starting
// a new segment (and syncing the directory) when the current one is full.
func (q *Queue) append(r record) error {
	frame, err := encodeFrame(r)
	if err != nil {
		return err
	}
	// A segment is named by the first seq it may hold: roll over only
	// when a new name is free (a segment may have filled with coalescing
	// updates before any new event).
	if q.seg == nil || q.segSize >= q.cfg.SegmentBytes && q.segStart != q.next {
		if q.seg != nil {
			q.seg.Close()
			q.seg = nil
		}
		start := q.next
		f, err := os.OpenFile(q.segPath(start), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
		if err != nil {
			return err
		}
		if err := tlsutil.SyncDir(q.cfg.Dir); err != nil {
			f.Close()
			return err
		}
		q.seg, q.segStart, q.segSize = f, start, 0
	}
	if _, err := q.seg.Write(frame); err != nil {
		// Cut a partial write off, so that later records follow good ones;
		// if even that fails, the next open cuts it off.
		if terr := q.seg.Truncate(q.segSize); terr != nil {
			q.seg.Close()
			q.seg = nil
		}
		return err
	}
	q.segSize += int64(len(frame))
	return q.seg.Sync()
}

func (q *Queue) saveState() error {
	b, err := json.Marshal(q.st)
	if err != nil {
		return err
	}
	return tlsutil.WriteFileAtomic(filepath.Join(q.cfg.Dir, stateFile), b, 0o600)
}

// removeOldSegments deletes the segments whose events are all below the
// head. A segment's events end where the next segment starts.
func (q *Queue) removeOldSegments() error {
	segs, err := q.segments()
	if err != nil {
		return err
	}
	removed := false
	for i := 0; i+1 < len(segs); i++ {
		if segs[i+1] > q.st.Head || segs[i] == q.segStart {
			break
		}
		if err := os.Remove(q.segPath(segs[i])); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
		removed = true
	}
	if removed {
		return tlsutil.SyncDir(q.cfg.Dir)
	}
	return nil
}

// Batch is a set of events handed out for upload; Ack removes them.
type Batch struct {
	Events []sphere.FailureEvent
	// upTo is the seq after the batch's last queued event; dropped is the
	// drop report in the batch, if any.
	upTo    uint64
	dropped bool
}

// Pending returns up to limit of the oldest events, and the report of
// dropped events if there were drops (it counts toward max). Until they
// are acknowledged, Pending returns the same events with the same ids
// again, so a batch sent again is recognised by the service.
func (q *Queue) Pending(limit int) (Batch, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	var b Batch
	if q.st.DroppedSent == 0 && q.st.DroppedNew > 0 {
		q.st.DroppedSent, q.st.DroppedNew, q.st.DroppedID = q.st.DroppedNew, 0, NewEventID()
		if err := q.saveState(); err != nil {
			return b, fmt.Errorf("report.Pending: %w", err)
		}
	}
	if q.st.DroppedSent > 0 && limit > 0 {
		at, last := time.UnixMicro(q.st.DroppedAt).UTC(), q.now().UTC()
		if last.Before(at) {
			last = at
		}
		b.Events = append(b.Events, sphere.FailureEvent{ID: q.st.DroppedID, Class: sphere.FailureClassOS, Category: sphere.FailureEventsDropped,
			Description: fmt.Sprintf("the failure-report queue was full and dropped its %d oldest events", q.st.DroppedSent),
			Count:       q.st.DroppedSent, FirstTime: at, LastTime: last})
		b.dropped = true
	}
	b.upTo = q.st.Head
	for _, e := range q.live {
		if len(b.Events) >= limit {
			break
		}
		b.Events = append(b.Events, e.ev)
		b.upTo = e.seq + 1
	}
	q.handedTo = max(q.handedTo, b.upTo)
	q.pruneOpen(q.handedTo)
	return b, nil
}

// Ack removes a batch's events for good (the service stored them). Events
// of the batch that were dropped meanwhile are already gone.
func (q *Queue) Ack(b Batch) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	if b.upTo <= q.st.Head && !b.dropped {
		return nil
	}
	for len(q.live) > 0 && q.live[0].seq < b.upTo {
		q.size -= q.live[0].size
		q.live = q.live[1:]
	}
	q.st.Head = max(q.st.Head, b.upTo)
	if b.dropped {
		q.st.DroppedSent, q.st.DroppedID = 0, ""
		if q.st.DroppedNew > 0 {
			q.st.DroppedAt = q.now().UTC().UnixMicro()
		} else {
			q.st.DroppedAt = 0
		}
	}
	if err := q.saveState(); err != nil {
		return fmt.Errorf("report.Ack: %w", err)
	}
	if err := q.removeOldSegments(); err != nil {
		return fmt.Errorf("report.Ack: %w", err)
	}
	return nil
}

// Stats describes the queue.
type Stats struct {
	Events  int   // events held
	Bytes   int64 // their size
	Dropped int64 // events dropped and not yet reported
	// Fill is the fuller of Events/MaxEvents and Bytes/MaxBytes, 0 to 1.
	Fill float64
}

// Stats returns the queue's size and fill.
func (q *Queue) Stats() Stats {
	q.mu.Lock()
	defer q.mu.Unlock()
	fill := max(float64(len(q.live))/float64(q.cfg.MaxEvents), float64(q.size)/float64(q.cfg.MaxBytes))
	return Stats{Events: len(q.live), Bytes: q.size, Dropped: q.st.DroppedNew + q.st.DroppedSent, Fill: min(fill, 1)}
}

// Changed is signalled (without blocking, at most once until read) after
// every Record, so that the uploader can look at the fill.
func (q *Queue) Changed() <-chan struct{} { return q.changed }

// IDs returns the ids of the events held, oldest first (for tests and
// diagnosis).
func (q *Queue) IDs() []string {
	q.mu.Lock()
	defer q.mu.Unlock()
	out := make([]string, len(q.live))
	for i, e := range q.live {
		out[i] = e.ev.ID
	}
	return out
}
