package fetch

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"io"
	"net/http"
	"os"

	"github.com/opensphere/sphere/image"
)

// Assemble writes the image package at url to dst, taking every payload
// chunk it can from src and fetching only the others.
//
// want is the package file's size and SHA-256, as the TUF targets give
// them. Assemble fetches the package's header first (one or two range
// requests of a few KiB plus the header), then goes through the chunk index
// in order. A chunk whose SHA-256 src holds, or that appeared earlier in the
// same payload, is copied; each run of consecutive chunks that are missing
// is fetched with one range request, bytes=first-last: one range per
// request because multipart/byteranges answers are not served by every
// store (S3 and most CDNs ignore them) and a run boundary is a reused
// chunk, which a request spanning it would fetch for nothing. Every chunk is
// checked against its SHA-256 before it is written; at the end the payload
// must match the header's payload_sha256 and the whole file want.
//
// The package is written to dst+".part"; dst+".journal" records which
// package that is and how much of it is verified and synced (at least every
// 8 MiB, and when Assemble returns an error). A later call for the same
// want resumes from there, without fetching the header or those chunks
// again; it also keeps any complete, matching chunks written after the last
// record. A journal for another package, or none, means starting over.
//
// If the server answers a range request with the whole file (200),
// Assemble falls back to Download of the whole file. An error wrapping
// ErrDigest (a chunk, the payload or the file does not match, or the header
// is malformed: then it wraps image.ErrFormat or image.ErrCorrupt too)
// deletes the .part and the journal. Checking the header's signature is
// the caller's: the SHA-256 in want already covers the whole file.
//
// src may be nil, and a nil client means http.DefaultClient. The Stats
// count what was done, also when an error is returned.
func Assemble(ctx context.Context, client *http.Client, url, dst string, want Want, src ChunkSource, opt Options) (Stats, error) {
	var st Stats
	if err := want.validate(); err != nil {
		return st, fmt.Errorf("fetch.Assemble: %w", err)
	}
	a := &assembler{
		fe:      newFetcher(client, url, opt, &st),
		want:    want,
		src:     src,
		dst:     dst,
		part:    dst + ".part",
		journal: dst + ".journal",
		fileSum: newHash(),
		paySum:  newHash(),
		seen:    map[string]int64{},
	}
	if err := a.run(ctx); err != nil {
		return st, fmt.Errorf("fetch.Assemble: %w", err)
	}
	return st, nil
}

// checkpointEvery is how many bytes Assemble writes between two syncs of
// the .part and its journal: what a crash can cost, at most, beyond what
// the rescan of the .part recovers.
const checkpointEvery = 8 << 20

// firstHeaderFetch is how many bytes the first request for a package asks
// for: enough for the whole header of a small package.
const firstHeaderFetch = 8 << 10

type assembler struct {
	fe            *fetcher
	want          Want
	src           ChunkSource
	dst           string
	part, journal string // file names

	f        *os.File
	hdr      *image.Header
	hdrSize  int64
	chunks   []image.Chunk
	next     int              // chunks[:next] are written and verified
	fileSum  hash.Hash        // over the file up to the end of chunks[next-1]
	paySum   hash.Hash        // over the payload up to the same point
	seen     map[string]int64 // SHA-256 -> payload offset of a written chunk
	tail     []byte           // the first bytes of the payload, fetched with the header
	buf      []byte
	unsynced int64 // bytes written since the last checkpoint
}

func (a *assembler) run(ctx context.Context) error {
	f, err := os.OpenFile(a.part, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return err
	}
	a.f = f
	defer func() {
		if a.f != nil {
			a.f.Close()
		}
	}()
	a.buf = make([]byte, image.MaxChunkSize)
	if err := a.resume(); err != nil {
		return err
	}
	if a.hdr == nil {
		if err := a.start(ctx); err != nil {
			return a.fail(ctx, err)
		}
	}
	for a.next < len(a.chunks) {
		if err := a.step(ctx); err != nil {
			return a.fail(ctx, err)
		}
	}
	if got := sumHex(a.paySum); got != a.hdr.Metadata.PayloadSHA256 {
		a.discard()
		return fmt.Errorf("%s: %w: the payload's SHA-256 is %s, the header says %s", a.fe.url, ErrDigest, got, a.hdr.Metadata.PayloadSHA256)
	}
	if got := sumHex(a.fileSum); got != a.want.SHA256 {
		a.discard()
		return fmt.Errorf("%s: %w: the package's SHA-256 is %s, want %s", a.fe.url, ErrDigest, got, a.want.SHA256)
	}
	err = commit(a.f, a.part, a.dst)
	a.f = nil
	if err != nil {
		return err
	}
	os.Remove(a.journal)
	st := a.fe.stats
	a.fe.log.Info("fetch: assembled", "file", a.dst, "downloaded", st.BytesDownloaded, "reused", st.BytesReused, "resumed", st.BytesResumed, "requests", st.Requests)
	return nil
}

// fail handles an error that stops a run.
func (a *assembler) fail(ctx context.Context, err error) error {
	switch {
	case errors.Is(err, ErrDigest):
		a.discard()
	case errors.Is(err, errNoRanges):
		// What the .part holds is verified, so it is a good prefix of the
		// file for Download to resume from, which it will not: the server
		// answers 200.
		a.fe.log.Info("fetch: the server does not support range requests; downloading the whole package", "url", a.fe.url)
		os.Remove(a.journal)
		a.f.Close()
		a.f = nil
		return download(ctx, a.fe, a.dst, a.want)
	case a.hdr != nil:
		if cerr := a.checkpoint(); cerr != nil {
			return errors.Join(err, cerr)
		}
	}
	return err
}

func (a *assembler) discard() {
	if a.f != nil {
		a.f.Close()
		a.f = nil
	}
	os.Remove(a.part)
	os.Remove(a.journal)
}

// checkpoint syncs the .part and records in the journal what it holds.
func (a *assembler) checkpoint() error {
	if err := a.f.Sync(); err != nil {
		return err
	}
	a.unsynced = 0
	return writeJournal(a.journal, &journal{PackageSHA256: a.want.SHA256, PackageSize: a.want.Size, HeaderSize: a.hdrSize, VerifiedChunks: a.next})
}

// resume takes up the .part of an earlier run for the same package: its
// header, and the chunks after it, as far as they are complete and match
// the chunk index. Otherwise it leaves a.hdr nil.
func (a *assembler) resume() error {
	j := readJournal(a.journal)
	if j == nil || j.PackageSHA256 != a.want.SHA256 || j.PackageSize != a.want.Size || j.HeaderSize > a.want.Size ||
		j.HeaderSize > 16+image.MaxMetadataSize+image.MaxSignatureSize {
		return nil
	}
	fi, err := a.f.Stat()
	if err != nil {
		return err
	}
	if fi.Size() < j.HeaderSize {
		return nil
	}
	raw := make([]byte, j.HeaderSize)
	if _, err := a.f.ReadAt(raw, 0); err != nil {
		return fmt.Errorf("read %s: %w", a.part, err)
	}
	if n, exact := headerNeed(raw); !exact || n != j.HeaderSize {
		return nil
	}
	h, err := image.ReadHeader(bytes.NewReader(raw))
	if err != nil || j.HeaderSize+h.Metadata.PayloadSize != a.want.Size {
		return nil
	}
	a.setHeader(h, raw)
	a.fe.stats.BytesResumed += j.HeaderSize
	for a.next < len(a.chunks) {
		c := a.chunks[a.next]
		if a.hdrSize+c.Offset+c.Size > fi.Size() {
			break
		}
		data := a.buf[:c.Size]
		if _, err := a.f.ReadAt(data, a.hdrSize+c.Offset); err != nil {
			return fmt.Errorf("read %s: %w", a.part, err)
		}
		if !chunkIs(data, c.SHA256) {
			break
		}
		a.account(c, data)
		a.fe.stats.BytesResumed += c.Size
	}
	a.fe.log.Info("fetch: resuming", "file", a.part, "chunks", a.next, "of", len(a.chunks), "journal", j.VerifiedChunks)
	// Drop whatever follows the verified chunks: an unfinished or damaged
	// chunk is fetched or copied again.
	if err := a.f.Truncate(a.offset(a.next)); err != nil {
		return err
	}
	return nil
}

// start fetches the header and writes it as the start of a new .part.
func (a *assembler) start(ctx context.Context) error {
	if err := a.f.Truncate(0); err != nil {
		return err
	}
	var raw []byte
	err := a.fe.do(ctx, func() (bool, error) {
		n0 := len(raw)
		var err error
		raw, err = a.fetchHeader(ctx, raw)
		return len(raw) > n0, err
	})
	if err != nil {
		return err
	}
	r := bytes.NewReader(raw)
	h, err := image.ReadHeader(r)
	if err != nil {
		return fmt.Errorf("%s: %w: %w", a.fe.url, ErrDigest, err)
	}
	// The first request asked for more than a small header: what follows
	// it is the start of the payload.
	raw, a.tail = raw[:len(raw)-r.Len()], raw[len(raw)-r.Len():]
	if size := int64(len(raw)) + h.Metadata.PayloadSize; size != a.want.Size {
		return fmt.Errorf("%s: %w: the header makes the package %d bytes, want %d", a.fe.url, ErrDigest, size, a.want.Size)
	}
	if _, err := a.f.WriteAt(raw, 0); err != nil {
		return err
	}
	a.setHeader(h, raw)
	return a.checkpoint()
}

// setHeader takes h (whose bytes are raw) as the package's header and
// readies the chunk source for its chunking.
func (a *assembler) setHeader(h *image.Header, raw []byte) {
	a.hdr, a.hdrSize, a.chunks = h, int64(len(raw)), h.Metadata.Chunks
	a.fileSum.Write(raw)
	if a.src == nil {
		return
	}
	if err := a.src.Prepare(h.Metadata.Chunking()); err != nil {
		a.fe.log.Warn("fetch: local chunks unavailable; fetching every chunk", "err", err)
		a.src = nil
	}
}

// fetchHeader extends prefix, the first bytes of the package, until it
// holds the whole header, and returns it. It stops at the first error,
// returning what it has.
func (a *assembler) fetchHeader(ctx context.Context, prefix []byte) ([]byte, error) {
	for {
		need, exact := headerNeed(prefix)
		if exact && need <= int64(len(prefix)) {
			return prefix, nil
		}
		if int64(len(prefix)) >= a.want.Size {
			return prefix, nil // too short for a header: the caller's ReadHeader says why
		}
		to := min(need, a.want.Size) - 1
		from := int64(len(prefix))
		resp, cr, err := a.openRange(ctx, from, to)
		if err != nil {
			return prefix, err
		}
		n := min(cr.last, to) - from + 1
		b := &body{ctx: ctx, r: resp.Body, fe: a.fe}
		got, err := io.ReadAll(io.LimitReader(b, n))
		resp.Body.Close()
		prefix = append(prefix, got...)
		if err == nil && int64(len(got)) < n {
			err = &retryable{fmt.Errorf("GET %s: the answer ended after %d of %d bytes", a.fe.url, len(got), n)}
		}
		if err != nil {
			return prefix, err
		}
	}
}

// headerNeed tells how long the header that prefix starts is: exactly,
// when exact, else at most need (what to fetch next). For a malformed
// prefix it answers len(prefix), exact, and image.ReadHeader says what is
// wrong.
func headerNeed(prefix []byte) (need int64, exact bool) {
	const lenField = 4
	p := int64(len(prefix))
	mdStart := int64(len(image.Magic)) + lenField
	if p < mdStart {
		return firstHeaderFetch, false
	}
	md := int64(binary.BigEndian.Uint32(prefix[len(image.Magic):]))
	if string(prefix[:len(image.Magic)]) != image.Magic || md == 0 || md > image.MaxMetadataSize {
		return p, true
	}
	sigStart := mdStart + md + lenField
	if p < sigStart {
		return sigStart + image.MaxSignatureSize, false
	}
	sig := int64(binary.BigEndian.Uint32(prefix[sigStart-lenField:]))
	if sig == 0 || sig > image.MaxSignatureSize {
		return p, true
	}
	return sigStart + sig, true
}

// openRange requests bytes [from, to] of the package and checks that the
// answer starts at from. The caller closes the body.
func (a *assembler) openRange(ctx context.Context, from, to int64) (*http.Response, contentRange, error) {
	resp, err := a.fe.get(ctx, from, to)
	if err != nil {
		return nil, contentRange{}, err
	}
	switch resp.StatusCode {
	case http.StatusPartialContent:
		cr, err := parseContentRange(resp.Header.Get("Content-Range"))
		switch {
		case err != nil:
		case cr.first != from:
			err = fmt.Errorf("GET %s: asked for bytes %d-%d, got bytes %d-%d", a.fe.url, from, to, cr.first, cr.last)
		case cr.total >= 0 && cr.total != a.want.Size:
			err = fmt.Errorf("GET %s: %w: the server's file is %d bytes, want %d", a.fe.url, ErrDigest, cr.total, a.want.Size)
		}
		if err != nil {
			resp.Body.Close()
			return nil, contentRange{}, err
		}
		return resp, cr, nil
	case http.StatusOK:
		resp.Body.Close()
		return nil, contentRange{}, errNoRanges
	case http.StatusRequestedRangeNotSatisfiable:
		resp.Body.Close()
		return nil, contentRange{}, fmt.Errorf("GET %s: %w: the server's file ends before byte %d", a.fe.url, ErrDigest, from)
	default:
		return nil, contentRange{}, statusError(resp)
	}
}

// step adds the next chunk, copied, or fetched with the run of missing
// chunks it starts.
func (a *assembler) step(ctx context.Context) error {
	c := a.chunks[a.next]
	if c.Offset+c.Size <= int64(len(a.tail)) {
		data := a.tail[c.Offset : c.Offset+c.Size]
		if !chunkIs(data, c.SHA256) {
			return a.badChunk()
		}
		return a.write(c, data, nil)
	}
	a.tail = nil
	ok, err := a.copyLocal(c)
	if ok || err != nil {
		return err
	}
	// The run ends at a chunk that is here, or will be: one that repeats a
	// chunk of the run (as blocks of zeros do) is copied from the .part.
	run := map[string]bool{c.SHA256: true}
	end := a.next + 1
	for ; end < len(a.chunks); end++ {
		c := a.chunks[end]
		if run[c.SHA256] || a.haveLocal(c) {
			break
		}
		run[c.SHA256] = true
	}
	return a.fe.do(ctx, func() (bool, error) { return a.fetchRun(ctx, end) })
}

// haveLocal tells whether c looks available without fetching it.
func (a *assembler) haveLocal(c image.Chunk) bool {
	if _, ok := a.seen[c.SHA256]; ok {
		return true
	}
	if a.src == nil {
		return false
	}
	_, _, size, ok := a.src.Lookup(c.SHA256)
	return ok && size == c.Size
}

// copyLocal adds c from the .part or src if either has it and it matches.
// A source that cannot be read or has changed is passed over.
func (a *assembler) copyLocal(c image.Chunk) (bool, error) {
	data := a.buf[:c.Size]
	if off, ok := a.seen[c.SHA256]; ok {
		if _, err := a.f.ReadAt(data, a.hdrSize+off); err != nil {
			return false, fmt.Errorf("read %s: %w", a.part, err)
		}
		if chunkIs(data, c.SHA256) {
			return true, a.write(c, data, &a.fe.stats.BytesReused)
		}
	}
	if a.src == nil {
		return false, nil
	}
	r, off, size, ok := a.src.Lookup(c.SHA256)
	if !ok || size != c.Size {
		return false, nil
	}
	if n, err := r.ReadAt(data, off); n < len(data) {
		a.fe.log.Warn("fetch: local chunk unreadable; fetching it", "sha256", c.SHA256, "err", err)
		return false, nil
	}
	if !chunkIs(data, c.SHA256) {
		a.fe.log.Warn("fetch: local chunk changed since it was indexed; fetching it", "sha256", c.SHA256)
		return false, nil
	}
	return true, a.write(c, data, &a.fe.stats.BytesReused)
}

// fetchRun fetches chunks[a.next:end] with one range request, adding each
// chunk as it arrives. It reports whether it added any.
func (a *assembler) fetchRun(ctx context.Context, end int) (bool, error) {
	start := a.next
	from, to := a.offset(a.next), a.offset(end)-1
	resp, cr, err := a.openRange(ctx, from, to)
	if err != nil {
		return false, err
	}
	defer resp.Body.Close()
	b := &body{ctx: ctx, r: resp.Body, fe: a.fe}
	for a.next < end && a.offset(a.next+1)-1 <= cr.last {
		c := a.chunks[a.next]
		data := a.buf[:c.Size]
		if _, err := io.ReadFull(b, data); err != nil {
			if err == io.EOF || err == io.ErrUnexpectedEOF {
				err = &retryable{fmt.Errorf("GET %s: the answer ended early, in chunk %d", a.fe.url, a.next)}
			}
			return a.next > start, err
		}
		if !chunkIs(data, c.SHA256) {
			return a.next > start, a.badChunk()
		}
		if err := a.write(c, data, nil); err != nil {
			return true, err
		}
	}
	if a.next == start {
		// The server answered a shorter range than asked, without a whole chunk.
		return false, &retryable{fmt.Errorf("GET %s: the answer (bytes %d-%d) holds no whole chunk", a.fe.url, cr.first, cr.last)}
	}
	return true, nil
}

// badChunk is the error for fetched bytes of chunk a.next that do not match.
func (a *assembler) badChunk() error {
	return fmt.Errorf("GET %s: %w: chunk %d (bytes %d-%d) does not match the chunk index",
		a.fe.url, ErrDigest, a.next, a.offset(a.next), a.offset(a.next+1)-1)
}

// write stores chunk c, verified, at its place in the .part.
func (a *assembler) write(c image.Chunk, data []byte, counter *int64) error {
	if _, err := a.f.WriteAt(data, a.hdrSize+c.Offset); err != nil {
		return err
	}
	a.account(c, data)
	if counter != nil {
		*counter += c.Size
	}
	a.unsynced += c.Size
	if a.unsynced >= checkpointEvery {
		return a.checkpoint()
	}
	return nil
}

// account adds chunk a.next, whose bytes are data, to what the .part holds.
func (a *assembler) account(c image.Chunk, data []byte) {
	a.fileSum.Write(data)
	a.paySum.Write(data)
	if _, ok := a.seen[c.SHA256]; !ok {
		a.seen[c.SHA256] = c.Offset
	}
	a.next++
}

// offset returns where chunk i starts in the package file (i may be
// len(a.chunks): the end).
func (a *assembler) offset(i int) int64 {
	if i == len(a.chunks) {
		return a.want.Size
	}
	return a.hdrSize + a.chunks[i].Offset
}

func chunkIs(data []byte, sha string) bool {
	h := newHash()
	h.Write(data)
	return sumHex(h) == sha
}
