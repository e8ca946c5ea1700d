package fetch

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const fileSize1M = 1 << 20

func TestDownload(t *testing.T) {
	content := randomBytes(1, fileSize1M)
	s := newTestServer(t, content)
	dst := filepath.Join(t.TempDir(), "file")
	if err := Download(context.Background(), s.Client(), s.URL, dst, wantOf(content), Options{}); err != nil {
		t.Fatalf("Download: %v", err)
	}
	checkFile(t, dst, content)
	checkAbsent(t, dst+".part")
	if got := s.served.Load(); got != fileSize1M {
		t.Errorf("served %d bytes, want %d", got, fileSize1M)
	}
	if got := s.takeRanges(); len(got) != 1 || got[0] != "bytes=0-" {
		t.Errorf("requests with Range %q, want one with bytes=0-", got)
	}

	// A second download over an existing dst replaces it.
	other := randomBytes(2, 1000)
	s2 := newTestServer(t, other)
	if err := Download(context.Background(), s2.Client(), s2.URL, dst, wantOf(other), Options{}); err != nil {
		t.Fatalf("Download over an existing file: %v", err)
	}
	checkFile(t, dst, other)
}

func TestDownloadEmpty(t *testing.T) {
	s := newTestServer(t, nil)
	dst := filepath.Join(t.TempDir(), "file")
	if err := Download(context.Background(), s.Client(), s.URL, dst, wantOf(nil), Options{}); err != nil {
		t.Fatalf("Download: %v", err)
	}
	checkFile(t, dst, nil)
	if n := s.requests.Load(); n != 0 {
		t.Errorf("%d requests for an empty file, want 0", n)
	}
}

// An interrupted download leaves its .part; the next call fetches only the
// rest.
func TestDownloadResume(t *testing.T) {
	content := randomBytes(3, fileSize1M)
	s := newTestServer(t, content)
	dst := filepath.Join(t.TempDir(), "file")
	s.cutNext.Store(300 << 10)
	err := Download(context.Background(), s.Client(), s.URL, dst, wantOf(content), Options{})
	if err == nil || errors.Is(err, ErrDigest) {
		t.Fatalf("Download on a connection cut mid-way: %v, want a network error", err)
	}
	checkAbsent(t, dst)
	have := fileSize(t, dst+".part")
	if have <= 0 || have >= fileSize1M {
		t.Fatalf(".part holds %d bytes after the cut, want some of %d", have, fileSize1M)
	}
	s.reset()

	if err := Download(context.Background(), s.Client(), s.URL, dst, wantOf(content), Options{}); err != nil {
		t.Fatalf("Download to resume: %v", err)
	}
	checkFile(t, dst, content)
	checkAbsent(t, dst+".part")
	if got, want := s.served.Load(), fileSize1M-have; got != want {
		t.Errorf("resume served %d bytes, want the %d missing", got, want)
	}
	t.Logf("cut after %d bytes; the resume fetched %d", have, s.served.Load())
}

// Cancelling the context interrupts a download like a cut connection.
func TestDownloadResumeAfterCancel(t *testing.T) {
	content := randomBytes(4, 256<<10)
	s := newTestServer(t, content)
	dst := filepath.Join(t.TempDir(), "file")
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	err := Download(ctx, s.Client(), s.URL, dst, wantOf(content), Options{BytesPerSecond: 256 << 10})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Download with a context that expires: %v, want context.DeadlineExceeded", err)
	}
	have := fileSize(t, dst+".part")
	s.reset()
	if err := Download(context.Background(), s.Client(), s.URL, dst, wantOf(content), Options{}); err != nil {
		t.Fatalf("Download to resume: %v", err)
	}
	checkFile(t, dst, content)
	if got, want := s.served.Load(), int64(len(content))-have; got != want {
		t.Errorf("resume served %d bytes, want the %d missing", got, want)
	}
}

// Retries resume within one call, and a connection that keeps breaking but
// keeps delivering does not exhaust them.
func TestDownloadRetry(t *testing.T) {
	content := randomBytes(5, fileSize1M)
	s := newTestServer(t, content)
	dst := filepath.Join(t.TempDir(), "file")
	s.cutEvery.Store(100 << 10)
	if err := Download(context.Background(), s.Client(), s.URL, dst, wantOf(content), Options{Retries: 1, Backoff: noBackoff}); err != nil {
		t.Fatalf("Download through a link that drops every 100 KiB: %v", err)
	}
	checkFile(t, dst, content)
	ranges := s.takeRanges()
	if len(ranges) < 10 {
		t.Errorf("%d requests, want at least 10 for 1 MiB cut every 100 KiB", len(ranges))
	}
	for i, r := range ranges[1:] {
		if r == "bytes=0-" {
			t.Errorf("request %d starts over (%s), want it to resume", i+1, r)
		}
	}
	if got := s.served.Load(); got != fileSize1M {
		t.Errorf("served %d bytes in all, want %d: a byte was fetched twice", got, fileSize1M)
	}
}

func TestDownloadRetryStatus(t *testing.T) {
	content := randomBytes(6, 10000)
	tests := []struct {
		name     string
		fail     int64
		retries  int
		wantErr  string
		requests int64
	}{
		{"ok/two 503 then 206", 2, 2, "", 3},
		{"error/retries exhausted", 3, 2, "503", 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newTestServer(t, content)
			s.failNext.Store(tt.fail)
			dst := filepath.Join(t.TempDir(), "file")
			err := Download(context.Background(), s.Client(), s.URL, dst, wantOf(content), Options{Retries: tt.retries, Backoff: noBackoff})
			if tt.wantErr == "" && err != nil || tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
				t.Fatalf("Download: %v, want error containing %q", err, tt.wantErr)
			}
			if got := s.requests.Load(); got != tt.requests {
				t.Errorf("%d requests, want %d", got, tt.requests)
			}
		})
	}
}

func TestDownloadNotFoundIsNotRetried(t *testing.T) {
	s := newTestServer(t, nil)
	dst := filepath.Join(t.TempDir(), "file")
	want := wantOf(randomBytes(7, 100))
	err := Download(context.Background(), s.Client(), s.URL+"/missing", dst, want, Options{Retries: 5, Backoff: noBackoff})
	if err == nil || !strings.Contains(err.Error(), "404") {
		t.Fatalf("Download of a missing file: %v, want a 404 error", err)
	}
	if got := s.requests.Load(); got != 1 {
		t.Errorf("%d requests, want 1: a 404 is not retried", got)
	}
	checkAbsent(t, dst)
}

// A server that answers 200 to a range request makes the download start over.
func TestDownloadRestartsOn200(t *testing.T) {
	content := randomBytes(8, fileSize1M)
	s := newTestServer(t, content)
	s.noRanges.Store(true)
	dst := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(dst+".part", content[:fileSize1M/2], 0o600); err != nil {
		t.Fatal(err)
	}
	if err := Download(context.Background(), s.Client(), s.URL, dst, wantOf(content), Options{}); err != nil {
		t.Fatalf("Download: %v", err)
	}
	checkFile(t, dst, content)
	if got := s.served.Load(); got != fileSize1M {
		t.Errorf("served %d bytes, want the whole %d", got, fileSize1M)
	}
	if got := s.requests.Load(); got != 1 {
		t.Errorf("%d requests, want 1", got)
	}
}

// What the .part already holds decides what is fetched.
func TestDownloadExistingPart(t *testing.T) {
	content := randomBytes(9, 200000)
	tests := []struct {
		name   string
		part   []byte
		served int64
	}{
		{"complete: no request", content, 0},
		{"longer than wanted: start over", append(append([]byte{}, content...), 1, 2, 3), 200000},
		{"stale bytes: resume, mismatch, start over once", randomBytes(10, 50000), 150000 + 200000},
		{"stale and complete: check, start over once", randomBytes(11, 200000), 200000},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newTestServer(t, content)
			dst := filepath.Join(t.TempDir(), "file")
			if err := os.WriteFile(dst+".part", tt.part, 0o600); err != nil {
				t.Fatal(err)
			}
			if err := Download(context.Background(), s.Client(), s.URL, dst, wantOf(content), Options{}); err != nil {
				t.Fatalf("Download: %v", err)
			}
			checkFile(t, dst, content)
			if got := s.served.Load(); got != tt.served {
				t.Errorf("served %d bytes, want %d", got, tt.served)
			}
		})
	}
}

// Content that does not match is deleted and reported as ErrDigest.
func TestDownloadDigest(t *testing.T) {
	content := randomBytes(12, 300000)
	flipped := append([]byte{}, content...)
	flipped[123456] ^= 1
	tests := []struct {
		name   string
		served []byte
		ranges bool
	}{
		{"error/one bit flipped", flipped, true},
		{"error/server file longer", append(append([]byte{}, content...), 0), true},
		{"error/server file shorter", content[:len(content)-1], true},
		{"error/one bit flipped, no ranges", flipped, false},
		{"error/server file longer, no ranges", append(append([]byte{}, content...), 0), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newTestServer(t, tt.served)
			s.noRanges.Store(!tt.ranges)
			dst := filepath.Join(t.TempDir(), "file")
			err := Download(context.Background(), s.Client(), s.URL, dst, wantOf(content), Options{Retries: 3, Backoff: noBackoff})
			if !errors.Is(err, ErrDigest) {
				t.Fatalf("Download: %v, want ErrDigest", err)
			}
			checkAbsent(t, dst, dst+".part")
			if got := s.requests.Load(); got != 1 {
				t.Errorf("%d requests, want 1: a mismatch is not retried", got)
			}
		})
	}
}

// The bandwidth limit holds: 512 KiB at 256 KiB/s take about 2 s. Only a
// lower bound is checked; how much slower the machine makes it is not a
// property of the limiter.
func TestDownloadBandwidthLimit(t *testing.T) {
	const size, rate = 512 << 10, 256 << 10
	content := randomBytes(13, size)
	s := newTestServer(t, content)
	dst := filepath.Join(t.TempDir(), "file")
	start := time.Now()
	if err := Download(context.Background(), s.Client(), s.URL, dst, wantOf(content), Options{BytesPerSecond: rate}); err != nil {
		t.Fatalf("Download: %v", err)
	}
	elapsed := time.Since(start)
	// The bucket starts full with a tenth of a second's worth, so the
	// transfer takes at least (size - rate/10) / rate; 10 % off that for
	// rounding.
	minimum := time.Duration(size-rate/10) * time.Second / rate * 9 / 10
	if elapsed < minimum {
		t.Errorf("%d bytes at %d B/s took %v, want at least %v", size, rate, elapsed, minimum)
	}
	t.Logf("%d bytes at %d B/s took %v (at least %v)", size, rate, elapsed, minimum)
}

func TestDownloadBadWant(t *testing.T) {
	for _, w := range []Want{{Size: -1, SHA256: wantOf(nil).SHA256}, {Size: 1, SHA256: "ABC"}} {
		err := Download(context.Background(), nil, "http://127.0.0.1:1/", filepath.Join(t.TempDir(), "f"), w, Options{})
		if err == nil || !strings.Contains(err.Error(), "want") {
			t.Errorf("Download with want %+v: %v, want an error about it", w, err)
		}
	}
}

func TestParseContentRange(t *testing.T) {
	tests := []struct {
		in   string
		want contentRange
		ok   bool
	}{
		{"bytes 0-99/100", contentRange{0, 99, 100}, true},
		{"bytes 5-5/*", contentRange{5, 5, -1}, true},
		{"bytes */100", contentRange{-1, -1, 100}, true},
		{"bytes 0-100/100", contentRange{}, false},
		{"bytes 10-5/100", contentRange{}, false},
		{"bytes -1-5/100", contentRange{}, false},
		{"bytes 0-5", contentRange{}, false},
		{"items 0-5/10", contentRange{}, false},
		{"", contentRange{}, false},
	}
	for _, tt := range tests {
		got, err := parseContentRange(tt.in)
		if (err == nil) != tt.ok || tt.ok && got != tt.want {
			t.Errorf("parseContentRange(%q) = %+v, %v; want %+v, ok %v", tt.in, got, err, tt.want, tt.ok)
		}
	}
}

func FuzzParseContentRange(f *testing.F) {
	for _, s := range []string{"bytes 0-99/100", "bytes */5", "bytes 1-2/*", "bytes 9223372036854775807-9223372036854775807/*"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		cr, err := parseContentRange(s)
		if err != nil {
			return
		}
		if cr.first >= 0 && (cr.last < cr.first || cr.total >= 0 && cr.last >= cr.total) {
			t.Errorf("parseContentRange(%q) = %+v: inconsistent", s, cr)
		}
	})
}

// A server that has nothing after the .part (416) makes the check decide;
// here the server's file is a stale, shorter one.
func TestDownload416(t *testing.T) {
	content := randomBytes(14, 1000)
	s := newTestServer(t, content[:600])
	dst := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(dst+".part", content[:600], 0o600); err != nil {
		t.Fatal(err)
	}
	err := Download(context.Background(), s.Client(), s.URL, dst, wantOf(content), Options{})
	if !errors.Is(err, ErrDigest) {
		t.Fatalf("Download: %v, want ErrDigest", err)
	}
	checkAbsent(t, dst, dst+".part")
	// bytes=600- (416), then bytes=0- after starting over (a 600-byte file).
	if got := s.takeRanges(); len(got) != 2 || got[0] != "bytes=600-" || got[1] != "bytes=0-" {
		t.Errorf("requests with Range %q, want bytes=600- then bytes=0-", got)
	}
}
