package fetch

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// testServer serves one file over HTTP on 127.0.0.1 with net/http's own
// Range support (http.ServeContent, as the security service does), and
// counts what it serves. It can misbehave on demand.
type testServer struct {
	*httptest.Server
	content []byte

	served   atomic.Int64 // body bytes written
	requests atomic.Int64
	cutNext  atomic.Int64 // > 0: the next answer to a range from cutFrom on breaks the connection after this many body bytes
	cutFrom  atomic.Int64
	cutEvery atomic.Int64 // > 0: every answer does
	noRanges atomic.Bool  // answer 200 with the whole file, ignoring Range
	failNext atomic.Int64 // answer this many requests with 503

	mu     sync.Mutex
	ranges []string // the Range header of each request
}

func newTestServer(t testing.TB, content []byte) *testServer {
	t.Helper()
	s := &testServer{content: content}
	s.Server = httptest.NewServer(s)
	t.Cleanup(s.Close)
	return s
}

func (s *testServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.requests.Add(1)
	s.mu.Lock()
	s.ranges = append(s.ranges, r.Header.Get("Range"))
	s.mu.Unlock()
	if r.URL.Path == "/missing" {
		http.NotFound(w, r)
		return
	}
	if s.failNext.Add(-1) >= 0 {
		http.Error(w, "try later", http.StatusServiceUnavailable)
		return
	}
	s.failNext.Store(0)
	if s.noRanges.Load() {
		r.Header.Del("Range")
	}
	var cut int64
	if rangeStart(r) >= s.cutFrom.Load() {
		cut = s.cutNext.Swap(0)
	}
	if cut == 0 {
		cut = s.cutEvery.Load()
	}
	cw := &countingWriter{ResponseWriter: w, s: s, cut: cut}
	http.ServeContent(cw, r, "file", time.Time{}, bytes.NewReader(s.content))
}

// rangeStart returns the first byte r asks for: 0 without a Range header.
func rangeStart(r *http.Request) int64 { return rangeStartOf(r.Header.Get("Range")) }

func rangeStartOf(header string) int64 {
	spec, _ := strings.CutPrefix(header, "bytes=")
	first, _, _ := strings.Cut(spec, "-")
	n, _ := strconv.ParseInt(first, 10, 64)
	return n
}

// takeRanges returns the Range headers received since the last call.
func (s *testServer) takeRanges() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.ranges
	s.ranges = nil
	return r
}

// reset zeroes the counters.
func (s *testServer) reset() {
	s.served.Store(0)
	s.requests.Store(0)
	s.takeRanges()
}

// countingWriter counts body bytes, and when cut > 0 breaks the connection
// once cut of them are out, as a dropped link or a crashed proxy would.
type countingWriter struct {
	http.ResponseWriter
	s       *testServer
	cut     int64
	written int64
}

func (w *countingWriter) Write(p []byte) (int, error) {
	if w.cut > 0 && w.written+int64(len(p)) > w.cut {
		n, _ := w.ResponseWriter.Write(p[:w.cut-w.written])
		w.s.served.Add(int64(n))
		w.ResponseWriter.(http.Flusher).Flush()
		panic(http.ErrAbortHandler) // the server closes the connection
	}
	n, err := w.ResponseWriter.Write(p)
	w.written += int64(n)
	w.s.served.Add(int64(n))
	return n, err
}

// randomBytes returns n reproducible pseudo-random bytes.
func randomBytes(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	b := make([]byte, n)
	for i := 0; i+8 <= n; i += 8 {
		binary.LittleEndian.PutUint64(b[i:], r.Uint64())
	}
	for i := n &^ 7; i < n; i++ {
		b[i] = byte(r.Uint32())
	}
	return b
}

func wantOf(b []byte) Want {
	sum := sha256.Sum256(b)
	return Want{Size: int64(len(b)), SHA256: hex.EncodeToString(sum[:])}
}

func noBackoff(int) time.Duration { return 0 }

func checkFile(t *testing.T, path string, want []byte) {
	t.Helper()
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("%s: %d bytes, differs from the %d bytes wanted", path, len(got), len(want))
	}
}

func checkAbsent(t *testing.T, paths ...string) {
	t.Helper()
	for _, p := range paths {
		if _, err := os.Stat(p); !os.IsNotExist(err) {
			t.Errorf("%s: exists (or %v), want it absent", p, err)
		}
	}
}

func fileSize(t *testing.T, path string) int64 {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}
