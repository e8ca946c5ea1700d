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
	// Prepare readies the source for finding chunks cut with ch, the
	// chunking of the package being assembled (its header says which).
	// Assemble calls it once it has the header, before any Lookup; if it
	// fails, Assemble fetches every chunk instead.
	Prepare(ch image.Chunking) error
	// Lookup returns where a chunk with this SHA-256 (lowercase hex) is:
	// size bytes at off in r.
	Lookup(sha256 string) (r io.ReaderAt, off, size int64, ok bool)
}

// Index is a ChunkSource over local files, such as the payload of the image
// the device runs. Prepare cuts them into chunks with the package's
// chunking, so an old payload yields the same chunks as an old package cut
// the same way, whatever chunking the old package itself used. It keeps
// the files it opened open until Close.
type Index struct {
	sources []source
	// chunks are the sources' chunks cut with chunking, by SHA-256.
	chunking image.Chunking
	chunks   map[image.Digest]location
	files    []*os.File
}

type source struct {
	r    io.ReaderAt
	size int64
}

type location struct {
	r         io.ReaderAt
	off, size int64
}

// NewIndex returns an empty Index.
func NewIndex() *Index { return &Index{} }

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

// AddFile adds the whole file at path.
func (x *Index) AddFile(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("fetch.Index.AddFile: %w", err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return fmt.Errorf("fetch.Index.AddFile: %s: %w", path, err)
	}
	x.files = append(x.files, f)
	x.Add(f, fi.Size())
	return nil
}

// Add adds the first size bytes of r. Use it for what is not a plain file,
// or is longer than the payload it holds: a block device whose partition
// is larger than the image written to it, for one, whose size os.Stat does
// not give. r must stay readable while x is used.
func (x *Index) Add(r io.ReaderAt, size int64) {
	x.sources = append(x.sources, source{r: r, size: size})
	x.chunks = nil // cut again at the next Prepare
}

// Prepare implements ChunkSource: it reads every source through and cuts
// it with ch, unless it did so last time.
func (x *Index) Prepare(ch image.Chunking) error {
	if x.chunks != nil && x.chunking == ch {
		return nil
	}
	x.chunks = nil
	chunks := map[image.Digest]location{}
	for _, s := range x.sources {
		cs, err := ch.Chunks(io.NewSectionReader(s.r, 0, s.size))
		if err != nil {
			return fmt.Errorf("fetch.Index.Prepare: %w", err)
		}
		for _, c := range cs {
			if _, dup := chunks[c.Digest()]; !dup {
				chunks[c.Digest()] = location{r: s.r, off: c.Offset, size: c.Size}
			}
		}
	}
	x.chunking, x.chunks = ch, chunks
	return nil
}

// Lookup implements ChunkSource. It finds nothing before Prepare.
func (x *Index) Lookup(sha256 string) (io.ReaderAt, int64, int64, bool) {
	k, ok := image.ParseDigest(sha256)
	if !ok {
		return nil, 0, 0, false
	}
	l, ok := x.chunks[k]
	return l.r, l.off, l.size, ok
}

// Len returns the number of distinct chunks found by the last Prepare.
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
