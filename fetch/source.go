package fetch

import (
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/opensphere/sphere/image"
)

// ChunkSource finds chunks the device already has. Assemble checks the
// SHA-256 of every chunk it copies from one, so a source whose content
// changed after it was indexed costs a download, never a wrong image.
type ChunkSource interface {
	// Lookup returns where a chunk with this SHA-256 (lowercase hex) is:
	// size bytes at off in r.
	Lookup(sha256 string) (r io.ReaderAt, off, size int64, ok bool)
}

// Index is a ChunkSource over local files, such as the payload of the image
// the device runs. It cuts them into chunks with image.Chunks, the chunking
// that image packages use, so an old payload yields the same chunks as the
// old package's chunk index. It keeps the files it opened open until Close.
type Index struct {
	chunks map[string]location
	files  []*os.File
}

type location struct {
	r         io.ReaderAt
	off, size int64
}

// NewIndex returns an empty Index.
func NewIndex() *Index { return &Index{chunks: map[string]location{}} }

// IndexFiles returns an Index of the files at paths.
func IndexFiles(paths ...string) (*Index, error) {
	x := NewIndex()
	for _, p := range paths {
		if err := x.AddFile(p); err != nil {
			x.Close()
			return nil, err
		}
	}
	return x, nil
}

// AddFile adds the chunks of the whole file at path.
func (x *Index) AddFile(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("fetch.Index.AddFile: %w", err)
	}
	fi, err := f.Stat()
	if err == nil {
		err = x.add(f, fi.Size())
	}
	if err != nil {
		f.Close()
		return fmt.Errorf("fetch.Index.AddFile: %s: %w", path, err)
	}
	x.files = append(x.files, f)
	return nil
}

// Add adds the chunks of the first size bytes of r. Use it for what is
// not a plain file, or is longer than the payload it holds: a block device
// whose partition is larger than the image written to it, for one, whose
// size os.Stat does not give. r must stay readable while x is used.
func (x *Index) Add(r io.ReaderAt, size int64) error {
	if err := x.add(r, size); err != nil {
		return fmt.Errorf("fetch.Index.Add: %w", err)
	}
	return nil
}

func (x *Index) add(r io.ReaderAt, size int64) error {
	cs, err := image.Chunks(io.NewSectionReader(r, 0, size))
	if err != nil {
		return err
	}
	for _, c := range cs {
		if _, dup := x.chunks[c.SHA256]; !dup {
			x.chunks[c.SHA256] = location{r: r, off: c.Offset, size: c.Size}
		}
	}
	return nil
}

// Lookup implements ChunkSource.
func (x *Index) Lookup(sha256 string) (io.ReaderAt, int64, int64, bool) {
	l, ok := x.chunks[sha256]
	return l.r, l.off, l.size, ok
}

// Len returns the number of distinct chunks in x.
func (x *Index) Len() int { return len(x.chunks) }

// Close closes the files that AddFile opened.
func (x *Index) Close() error {
	var errs []error
	for _, f := range x.files {
		errs = append(errs, f.Close())
	}
	x.files = nil
	return errors.Join(errs...)
}
