// Package fetch is the device side of downloads: it fetches a file or an
// image package over HTTP into a local file, resuming after an interruption
// or a crash, within a bandwidth limit, and checks it against the size and
// SHA-256 that the update metadata (TUF targets) gives for it.
//
// Download fetches a whole file with HTTP range requests. Assemble builds an
// image package from the chunks the device already has (the payload of the
// image it runs, through a ChunkSource such as an Index) and fetches only
// the missing chunks, as DESIGN.md's "Deltas" asks.
//
// It is not the update engine: which image to fetch, checking its signature
// (image.Header.VerifySignature) and installing it are the agent's. Neither
// function may run twice at once for the same destination.
package fetch

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// ErrDigest means that what was downloaded is not the file wanted: its size
// or its SHA-256 differs from Want, or a chunk does not match the chunk
// index. The partial file is deleted, so the next try starts over.
var ErrDigest = errors.New("download does not match its expected size and SHA-256")

// Want is what the downloaded file must be, as the update metadata gives it.
type Want struct {
	Size   int64  // exact length in bytes
	SHA256 string // lowercase hex
}

var sha256RE = regexp.MustCompile(`^[0-9a-f]{64}$`)

func (w Want) validate() error {
	if w.Size < 0 {
		return fmt.Errorf("want size %d is negative", w.Size)
	}
	if !sha256RE.MatchString(w.SHA256) {
		return fmt.Errorf("want sha256 %q is not a SHA-256 in lowercase hex", w.SHA256)
	}
	return nil
}

// Options tune a download. The zero value downloads at full speed and gives
// up at the first failure.
type Options struct {
	// BytesPerSecond caps the rate at which response bodies are read, with
	// a token bucket holding a tenth of a second's worth (at least 1 KiB, at
	// most 64 KiB). 0 means unlimited.
	BytesPerSecond int64
	// Retries is how many times a failed request (a network error, a
	// connection cut mid-body, a 5xx, 408 or 429 answer) is retried. The
	// count starts again after every request that stored bytes, so a link
	// that keeps dropping but keeps making progress never runs out. Errors
	// that retrying cannot fix (ErrDigest, a 404, a full disk) are returned
	// at once. 0 means no retries.
	Retries int
	// Backoff returns how long to wait before retry n (1, 2, ...). Nil
	// means exponential from 1 s, doubling to at most 1 min, each wait
	// randomized to between half and all of it so a fleet does not retry
	// in step.
	Backoff func(n int) time.Duration
	// Log, when not nil, receives a line for every retry and restart.
	Log *slog.Logger
}

// Stats says where the bytes of a download came from.
type Stats struct {
	// BytesDownloaded is the bytes of response bodies read from the
	// network, the header of a package included.
	BytesDownloaded int64
	// BytesReused is the payload bytes copied from local chunks: the
	// ChunkSource, or an identical chunk already written earlier in the
	// same payload.
	BytesReused int64
	// BytesResumed is the bytes found complete and verified in the partial
	// file of an interrupted run, which were neither fetched nor copied.
	BytesResumed int64
	// Requests is the number of HTTP requests sent, failed ones included.
	Requests int
}

// fetcher sends the range requests of one download.
type fetcher struct {
	client *http.Client
	url    string
	opt    Options
	lim    *limiter // nil: unlimited
	stats  *Stats
	log    *slog.Logger
}

func newFetcher(client *http.Client, url string, opt Options, stats *Stats) *fetcher {
	if client == nil {
		client = http.DefaultClient
	}
	log := opt.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &fetcher{client: client, url: url, opt: opt, lim: newLimiter(opt.BytesPerSecond), stats: stats, log: log}
}

// errNoRanges means the server answered a range request with the whole
// file (200): it does not support ranges.
var errNoRanges = errors.New("the server ignored the range request")

// retryable marks an error that another attempt may not meet.
type retryable struct{ err error }

func (e *retryable) Error() string { return e.err.Error() }
func (e *retryable) Unwrap() error { return e.err }

func isRetryable(err error) bool {
	var r *retryable
	return errors.As(err, &r)
}

// get sends GET with Range: bytes=from-to (to < 0: to the end). The caller
// closes the body of the response it returns.
func (fe *fetcher) get(ctx context.Context, from, to int64) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, fe.url, nil)
	if err != nil {
		return nil, err
	}
	rng := "bytes=" + strconv.FormatInt(from, 10) + "-"
	if to >= 0 {
		rng += strconv.FormatInt(to, 10)
	}
	// A Range header also keeps the transport from asking for gzip, so
	// offsets are offsets in the file.
	req.Header.Set("Range", rng)
	fe.stats.Requests++
	resp, err := fe.client.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, &retryable{fmt.Errorf("GET %s: %w", fe.url, err)}
	}
	return resp, nil
}

// statusError returns the error for an answer that is neither 200, 206
// nor 416, and closes its body.
func statusError(resp *http.Response) error {
	io.Copy(io.Discard, io.LimitReader(resp.Body, 4<<10)) // lets the connection be reused
	resp.Body.Close()
	err := fmt.Errorf("GET %s: server answered %s", resp.Request.URL.Redacted(), resp.Status)
	switch c := resp.StatusCode; {
	case c >= 500, c == http.StatusRequestTimeout, c == http.StatusTooManyRequests:
		return &retryable{err}
	}
	return err
}

// contentRange is a parsed Content-Range header: bytes first-last/total,
// or bytes */total (first = last = -1). total is -1 when the server sent *.
type contentRange struct{ first, last, total int64 }

func parseContentRange(s string) (contentRange, error) {
	bad := fmt.Errorf("invalid Content-Range %q", s)
	rest, ok := strings.CutPrefix(s, "bytes ")
	if !ok {
		return contentRange{}, bad
	}
	span, total, ok := strings.Cut(rest, "/")
	if !ok {
		return contentRange{}, bad
	}
	cr := contentRange{first: -1, last: -1, total: -1}
	if total != "*" {
		n, err := strconv.ParseInt(total, 10, 64)
		if err != nil || n < 0 {
			return contentRange{}, bad
		}
		cr.total = n
	}
	if span == "*" {
		return cr, nil
	}
	a, b, ok := strings.Cut(span, "-")
	if !ok {
		return contentRange{}, bad
	}
	first, err1 := strconv.ParseInt(a, 10, 64)
	last, err2 := strconv.ParseInt(b, 10, 64)
	if err1 != nil || err2 != nil || first < 0 || last < first || (cr.total >= 0 && last >= cr.total) {
		return contentRange{}, bad
	}
	cr.first, cr.last = first, last
	return cr, nil
}

// do runs attempt until it succeeds, fails for good, or has failed
// Retries+1 times in a row without progress.
func (fe *fetcher) do(ctx context.Context, attempt func() (progress bool, err error)) error {
	failures := 0
	for {
		progress, err := attempt()
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if !isRetryable(err) {
			return err
		}
		if progress {
			failures = 0
		}
		failures++
		if failures > fe.opt.Retries {
			return err
		}
		wait := fe.backoff(failures)
		fe.log.Info("fetch: retrying", "url", fe.url, "retry", failures, "wait", wait, "err", err)
		if err := sleep(ctx, wait); err != nil {
			return err
		}
	}
}

func (fe *fetcher) backoff(n int) time.Duration {
	if fe.opt.Backoff != nil {
		return fe.opt.Backoff(n)
	}
	d := time.Minute
	if n < 7 {
		d = time.Second << (n - 1)
	}
	return d/2 + rand.N(d/2+1)
}

func sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// body wraps a response body: it throttles reads and counts the bytes in
// Stats.BytesDownloaded. Its read errors are retryable: the connection
// broke, not the file.
type body struct {
	ctx context.Context
	r   io.Reader
	fe  *fetcher
}

func (b *body) Read(p []byte) (int, error) {
	if b.fe.lim != nil && len(p) > b.fe.lim.burst {
		p = p[:b.fe.lim.burst]
	}
	n, err := b.r.Read(p)
	b.fe.stats.BytesDownloaded += int64(n)
	if b.fe.lim != nil && n > 0 {
		if werr := b.fe.lim.wait(b.ctx, n); werr != nil && err == nil {
			err = werr
		}
	}
	if err != nil && err != io.EOF {
		if b.ctx.Err() != nil {
			return n, b.ctx.Err()
		}
		return n, &retryable{fmt.Errorf("GET %s: reading the answer: %w", b.fe.url, err)}
	}
	return n, err
}

func sumHex(h hash.Hash) string { return hex.EncodeToString(h.Sum(nil)) }

func newHash() hash.Hash { return sha256.New() }
