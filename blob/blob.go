// Package blob stores the service's large immutable objects (image
// packages) by the SHA-256 of their content. Store is the interface the
// service uses; FS keeps blobs in a directory (the embedded default), and
// an S3-compatible implementation can fill the same interface to scale
// out. Blobs are written whole or not at all: a crash mid-upload leaves a
// temporary file that the next start removes, never a partial blob.
package blob

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// ErrNotFound is returned for a blob that is not stored.
var ErrNotFound = errors.New("blob: not found")

// ErrTooLarge is returned when a blob exceeds the limit given to Put.
var ErrTooLarge = errors.New("blob: too large")

// Store keeps content-addressed blobs.
type Store interface {
	// Put streams r into the store, never holding it all in memory, and
	// returns its SHA-256 (hex) and size. Storing content that is already
	// there is a no-op. More than max bytes (if max > 0) fails with
	// ErrTooLarge and stores nothing.
	Put(ctx context.Context, r io.Reader, max int64) (sha string, size int64, err error)
	// Open returns a blob for reading, with random access for HTTP Range.
	Open(ctx context.Context, sha string) (Object, error)
	// Delete removes a blob; deleting a missing blob is not an error.
	Delete(ctx context.Context, sha string) error
}

// Object is an open blob.
type Object interface {
	io.ReadSeekCloser
	io.ReaderAt
	Size() int64
	ModTime() time.Time
}

// FS is a Store in a local directory: dir/ab/abcdef... (the SHA-256).
type FS struct {
	dir string
}

// NewFS opens (creating) a blob directory and removes temporary files
// left by interrupted uploads.
func NewFS(dir string) (*FS, error) {
	if err := os.MkdirAll(filepath.Join(dir, "tmp"), 0o700); err != nil {
		return nil, fmt.Errorf("blob: %w", err)
	}
	tmps, _ := filepath.Glob(filepath.Join(dir, "tmp", "*"))
	for _, t := range tmps {
		os.Remove(t)
	}
	return &FS{dir: dir}, nil
}

// validSHA reports whether s is 64 lowercase hex characters.
func validSHA(s string) bool {
	if len(s) != 64 {
		return false
	}
	_, err := hex.DecodeString(s)
	return err == nil && strings.ToLower(s) == s
}

func (f *FS) path(sha string) string { return filepath.Join(f.dir, sha[:2], sha) }

// Put implements Store.
func (f *FS) Put(ctx context.Context, r io.Reader, max int64) (string, int64, error) {
	tmp, err := os.CreateTemp(filepath.Join(f.dir, "tmp"), "put-*")
	if err != nil {
		return "", 0, fmt.Errorf("blob: %w", err)
	}
	defer os.Remove(tmp.Name())
	defer tmp.Close()
	h := sha256.New()
	src := r
	if max > 0 {
		src = io.LimitReader(r, max+1)
	}
	n, err := io.Copy(io.MultiWriter(tmp, h), ctxReader{ctx, src})
	if err != nil {
		return "", 0, fmt.Errorf("blob: %w", err)
	}
	if max > 0 && n > max {
		return "", 0, ErrTooLarge
	}
	if err := tmp.Sync(); err != nil {
		return "", 0, fmt.Errorf("blob: %w", err)
	}
	sha := hex.EncodeToString(h.Sum(nil))
	dst := f.path(sha)
	if _, err := os.Stat(dst); err == nil {
		return sha, n, nil
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o700); err != nil {
		return "", 0, fmt.Errorf("blob: %w", err)
	}
	if err := os.Rename(tmp.Name(), dst); err != nil {
		return "", 0, fmt.Errorf("blob: %w", err)
	}
	if d, err := os.Open(filepath.Dir(dst)); err == nil {
		d.Sync()
		d.Close()
	}
	return sha, n, nil
}

// ctxReader stops a long copy when its context ends.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

type fileObject struct {
	*os.File
	size int64
	mod  time.Time
}

func (o fileObject) Size() int64        { return o.size }
func (o fileObject) ModTime() time.Time { return o.mod }

// Open implements Store.
func (f *FS) Open(_ context.Context, sha string) (Object, error) {
	if !validSHA(sha) {
		return nil, ErrNotFound
	}
	file, err := os.Open(f.path(sha))
	if errors.Is(err, os.ErrNotExist) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("blob: %w", err)
	}
	fi, err := file.Stat()
	if err != nil {
		file.Close()
		return nil, fmt.Errorf("blob: %w", err)
	}
	return fileObject{File: file, size: fi.Size(), mod: fi.ModTime()}, nil
}

// Delete implements Store.
func (f *FS) Delete(_ context.Context, sha string) error {
	if !validSHA(sha) {
		return nil
	}
	err := os.Remove(f.path(sha))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	return err
}
