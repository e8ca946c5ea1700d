package uplink

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"

	"github.com/opensphere/sphere/tlsutil"
)

// outbox is the on-disk queue of QoS 1 messages not yet acknowledged by
// the broker: one file per message, named by a sequence number so that
// the directory order is the publish order. A message is on disk (written
// to a temporary file, synced, renamed, directory synced) before Publish
// returns, and its file is removed only after the broker's PUBACK.
type outbox struct {
	dir  string
	max  int
	mu   sync.Mutex
	seqs []uint64 // pending messages, oldest first
	next uint64
	wake chan struct{} // signalled (non-blocking) when a message is added
}

// message is one outbox file's content.
type message struct {
	Topic   string `json:"topic"`
	Payload []byte `json:"payload"`
}

const msgSuffix = ".msg"

// errOutboxFull is returned by add when max messages are pending.
var errOutboxFull = errors.New("outbox full")

// openOutbox loads the pending messages in dir, creating it if needed,
// and removes temporary files left by a crash mid-write.
func openOutbox(dir string, max int) (*outbox, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	o := &outbox{dir: dir, max: max, next: 1, wake: make(chan struct{}, 1)}
	for _, e := range entries { // ReadDir sorts by name: oldest first
		name := e.Name()
		if strings.HasPrefix(name, ".") && strings.Contains(name, ".tmp-") {
			os.Remove(filepath.Join(dir, name)) // never renamed: Publish did not return nil for it
			continue
		}
		seq, ok := parseName(name)
		if !ok {
			continue
		}
		o.seqs = append(o.seqs, seq)
		o.next = seq + 1
	}
	return o, nil
}

func fileName(seq uint64) string { return fmt.Sprintf("%020d%s", seq, msgSuffix) }

func parseName(name string) (uint64, bool) {
	digits, ok := strings.CutSuffix(name, msgSuffix)
	if !ok || len(digits) != 20 {
		return 0, false
	}
	seq, err := strconv.ParseUint(digits, 10, 64)
	return seq, err == nil
}

// add stores a message durably at the end of the queue.
func (o *outbox) add(m message) error {
	data, err := json.Marshal(m)
	if err != nil {
		return err
	}
	// The lock is held across the write so that sequence numbers reach
	// the disk in order: a crash can never leave a gap that a later,
	// smaller number fills.
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.max > 0 && len(o.seqs) >= o.max {
		return errOutboxFull
	}
	seq := o.next
	if err := tlsutil.WriteFileAtomic(filepath.Join(o.dir, fileName(seq)), data, 0o600); err != nil {
		return err
	}
	o.next++
	o.seqs = append(o.seqs, seq)
	select {
	case o.wake <- struct{}{}:
	default:
	}
	return nil
}

// head returns the oldest pending message.
func (o *outbox) head() (seq uint64, m message, ok bool, err error) {
	o.mu.Lock()
	if len(o.seqs) == 0 {
		o.mu.Unlock()
		return 0, message{}, false, nil
	}
	seq = o.seqs[0]
	o.mu.Unlock()
	data, err := os.ReadFile(filepath.Join(o.dir, fileName(seq)))
	if err != nil {
		return seq, message{}, true, err
	}
	m, err = decodeMessage(data)
	return seq, m, true, err
}

// decodeMessage parses an outbox file.
func decodeMessage(data []byte) (message, error) {
	var m message
	if err := json.Unmarshal(data, &m); err != nil {
		return message{}, fmt.Errorf("outbox message: %w", err)
	}
	if err := validTopic(m.Topic); err != nil {
		return message{}, fmt.Errorf("outbox message: %w", err)
	}
	return m, nil
}

// done removes the oldest message, which the broker acknowledged (or
// refused for good).
func (o *outbox) done(seq uint64) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if len(o.seqs) == 0 || o.seqs[0] != seq {
		return fmt.Errorf("outbox: %d is not the oldest message", seq)
	}
	if err := os.Remove(filepath.Join(o.dir, fileName(seq))); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	o.seqs = o.seqs[1:]
	return nil
}

// quarantine moves an unreadable message aside so that it does not block
// the queue, keeping it for a human to look at.
func (o *outbox) quarantine(seq uint64) error {
	name := filepath.Join(o.dir, fileName(seq))
	if err := os.Rename(name, name+".bad"); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if len(o.seqs) > 0 && o.seqs[0] == seq {
		o.seqs = o.seqs[1:]
	}
	return nil
}

// len is the number of pending messages.
func (o *outbox) len() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return len(o.seqs)
}
