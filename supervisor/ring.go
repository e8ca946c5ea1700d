package supervisor

import "sync"

// maxLine is the longest line kept; longer output is split.
const maxLine = 4096

// ring keeps the last lines an app wrote; it is the app's stdout and stderr.
type ring struct {
	mu      sync.Mutex
	lines   []string
	next    int // where the next line goes once full
	full    bool
	partial []byte
}

func newRing(n int) *ring { return &ring{lines: make([]string, n)} }

// Write implements io.Writer, splitting output into lines.
func (r *ring) Write(b []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, c := range b {
		if c == '\n' {
			r.push()
			continue
		}
		r.partial = append(r.partial, c)
		if len(r.partial) >= maxLine {
			r.push()
		}
	}
	return len(b), nil
}

func (r *ring) push() {
	r.lines[r.next] = string(r.partial)
	r.partial = r.partial[:0]
	r.next++
	if r.next == len(r.lines) {
		r.next, r.full = 0, true
	}
}

// last returns the last n lines, oldest first (all when n <= 0), with a
// line not yet ended by a newline at the end.
func (r *ring) last(n int) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var all []string
	if r.full {
		all = append(all, r.lines[r.next:]...)
	}
	all = append(all, r.lines[:r.next]...)
	if len(r.partial) > 0 {
		all = append(all, string(r.partial))
	}
	if n > 0 && len(all) > n {
		all = all[len(all)-n:]
	}
	return all
}
