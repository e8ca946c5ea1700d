package fetch

import (
	"context"
	"errors"
	"fmt"
	"hash"
	"io"
	"net/http"
	"os"
	"path/filepath"

	"github.com/opensphere/sphere/tlsutil"
)

// Download fetches url into the file dst, which it creates or replaces once
// the whole file is there and matches want.
//
// It writes to dst+".part" first and resumes from what that file holds,
// whether an earlier call was interrupted or the device lost power: it asks
// for the bytes after it (Range: bytes=N-). A 206 answer continues the
// file; a 200 (a server without ranges) starts it again from zero; a 416
// means the server has nothing more, and the check decides. A .part longer
// than want.Size is discarded.
//
// At the end the size and SHA-256 must match want. If they do not and some
// bytes came from an earlier .part, which may be what is wrong (a stale or
// damaged file), Download starts once more from zero; otherwise
// it deletes the .part and returns an error wrapping ErrDigest. On success
// it syncs the file, renames it to dst and syncs the directory, so after a
// crash dst is either absent, the old file, or the whole new one.
//
// It streams: memory use does not grow with the file. A nil client means
// http.DefaultClient.
func Download(ctx context.Context, client *http.Client, url, dst string, want Want, opt Options) error {
	if err := want.validate(); err != nil {
		return fmt.Errorf("fetch.Download: %w", err)
	}
	var st Stats
	if err := download(ctx, newFetcher(client, url, opt, &st), dst, want); err != nil {
		return fmt.Errorf("fetch.Download: %w", err)
	}
	return nil
}

func download(ctx context.Context, fe *fetcher, dst string, want Want) (err error) {
	p, err := openPart(dst+".part", want.Size, fe)
	if err != nil {
		return err
	}
	defer func() {
		if p.f != nil {
			p.f.Close()
		}
	}()
	for {
		err := fe.do(ctx, func() (bool, error) { return p.fetchRest(ctx, fe, want) })
		if err != nil {
			if errors.Is(err, ErrDigest) {
				p.discard()
			}
			return err
		}
		got := sumHex(p.sum)
		if p.size == want.Size && got == want.SHA256 {
			break
		}
		if p.size > p.fresh { // some bytes are from before
			fe.log.Info("fetch: resumed download does not match; starting over", "file", p.name)
			if err := p.reset(); err != nil {
				return err
			}
			continue
		}
		p.discard()
		return fmt.Errorf("GET %s: %w: got %d bytes with SHA-256 %s, want %d bytes with SHA-256 %s",
			fe.url, ErrDigest, p.size, got, want.Size, want.SHA256)
	}
	fe.stats.BytesResumed += p.size - p.fresh
	err = commit(p.f, p.name, dst)
	p.f = nil
	if err == nil {
		// Left by an Assemble that fell back to a whole download.
		os.Remove(dst + ".journal")
	}
	return err
}

// part is a partial download: a file holding a prefix of the file wanted,
// and the SHA-256 state over that prefix.
type part struct {
	name  string
	f     *os.File
	size  int64
	fresh int64 // bytes appended since the file was last empty
	sum   hash.Hash
}

// openPart opens or creates name and hashes what it holds, emptying it
// first if it is longer than size.
func openPart(name string, size int64, fe *fetcher) (*part, error) {
	f, err := os.OpenFile(name, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	p := &part{name: name, f: f, sum: newHash()}
	fi, err := f.Stat()
	if err == nil && fi.Size() > size {
		fe.log.Info("fetch: partial file is longer than the file wanted; starting over", "file", name, "size", fi.Size(), "want", size)
		err = f.Truncate(0)
	}
	if err == nil {
		p.size, err = io.Copy(p.sum, f)
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("read %s: %w", name, err)
	}
	return p, nil
}

func (p *part) reset() error {
	if err := p.f.Truncate(0); err != nil {
		return err
	}
	p.size, p.fresh = 0, 0
	p.sum.Reset()
	return nil
}

// discard deletes the partial file.
func (p *part) discard() {
	p.f.Close()
	p.f = nil
	os.Remove(p.name)
}

// fetchRest requests the bytes after what p holds, as long as answers make
// progress, until the server has no more. It reports whether it stored any.
func (p *part) fetchRest(ctx context.Context, fe *fetcher, want Want) (progress bool, err error) {
	for p.size < want.Size {
		n, done, err := p.fetchOnce(ctx, fe, want)
		progress = progress || n > 0
		switch {
		case err != nil:
			return progress, err
		case done:
			return progress, nil
		case n == 0:
			return progress, &retryable{fmt.Errorf("GET %s: the server sent no bytes", fe.url)}
		}
	}
	return progress, nil
}

// fetchOnce sends one request for the bytes from p.size on and appends what
// it gets. done means the server says the file ends at p.size (416).
func (p *part) fetchOnce(ctx context.Context, fe *fetcher, want Want) (n int64, done bool, err error) {
	resp, err := fe.get(ctx, p.size, -1)
	if err != nil {
		return 0, false, err
	}
	defer resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusPartialContent:
		cr, err := parseContentRange(resp.Header.Get("Content-Range"))
		if err != nil {
			return 0, false, err
		}
		if cr.first != p.size {
			return 0, false, fmt.Errorf("GET %s: asked for the bytes from %d on, got bytes %d-%d", fe.url, p.size, cr.first, cr.last)
		}
		if cr.total >= 0 && cr.total != want.Size {
			return 0, false, fmt.Errorf("GET %s: %w: the server's file is %d bytes, want %d", fe.url, ErrDigest, cr.total, want.Size)
		}
	case http.StatusOK:
		if resp.ContentLength >= 0 && resp.ContentLength != want.Size {
			return 0, false, fmt.Errorf("GET %s: %w: the server's file is %d bytes, want %d", fe.url, ErrDigest, resp.ContentLength, want.Size)
		}
		if p.size > 0 {
			fe.log.Info("fetch: the server does not resume (200 to a range request); starting over", "url", fe.url, "had", p.size)
			if err := p.reset(); err != nil {
				return 0, false, err
			}
		}
	case http.StatusRequestedRangeNotSatisfiable:
		return 0, true, nil
	default:
		return 0, false, statusError(resp)
	}
	n, err = p.append(&body{ctx: ctx, r: resp.Body, fe: fe}, want.Size)
	return n, false, err
}

// append copies r to the end of p, refusing to grow it past size.
func (p *part) append(r io.Reader, size int64) (int64, error) {
	buf := make([]byte, 64<<10)
	var n int64
	for {
		m, rerr := r.Read(buf)
		if m > 0 {
			if int64(m) > size-p.size {
				return n, fmt.Errorf("%w: the server sent more than the %d bytes wanted", ErrDigest, size)
			}
			if _, err := p.f.WriteAt(buf[:m], p.size); err != nil {
				// Not retryable, and p.sum no longer matches the file:
				// the next call hashes the file again.
				return n, err
			}
			p.sum.Write(buf[:m])
			p.size += int64(m)
			p.fresh += int64(m)
			n += int64(m)
		}
		if rerr == io.EOF {
			return n, nil
		}
		if rerr != nil {
			return n, rerr
		}
	}
}

// commit makes the complete file f, named part, durable as dst.
func commit(f *os.File, part, dst string) error {
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(part, dst); err != nil {
		return err
	}
	if err := tlsutil.SyncDir(filepath.Dir(dst)); err != nil {
		return fmt.Errorf("sync directory of %s: %w", dst, err)
	}
	return nil
}
