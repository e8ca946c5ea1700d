package image

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strings"

	chunkers "github.com/PlakarKorp/go-cdc-chunkers"
	_ "github.com/PlakarKorp/go-cdc-chunkers/chunkers/fastcdc" // registers ChunkAlgorithm
)

// ChunkAlgorithm names the chunking algorithm: FastCDC (Xia et al., USENIX
// ATC 2016) with normalized chunking (level 2), as implemented and frozen
// under this name by github.com/PlakarKorp/go-cdc-chunkers, including its
// Gear table. docs/image-package.md gives the exact algorithm and
// TestChunkerPinned pins the table and the cut points, so an upgrade of the
// module that moved a boundary fails the tests instead of quietly spoiling
// delta reuse between images packed by different builds.
const ChunkAlgorithm = "fastcdc-v1.0.0"

// Chunking is a content-defined chunking of payloads: ChunkAlgorithm with
// an average (normal) chunk size of Avg bytes. A chunk is never larger than
// Max, and only the last chunk of a payload may be smaller than Min.
//
// The smaller the chunks, the less a changed place costs a delta update
// beyond the change (about one average chunk on each side) and the larger
// the chunk index in the metadata (about 100 bytes per chunk).
type Chunking struct {
	Min, Avg, Max int64
}

// The chunkings packages use: format 1 always Chunking64K; format 2 the
// one its chunk_size names (see DefaultChunkSize).
var (
	Chunking16K = Chunking{Min: 4 << 10, Avg: 16 << 10, Max: 64 << 10}
	Chunking64K = Chunking{Min: 16 << 10, Avg: 64 << 10, Max: 256 << 10}
)

// MaxChunkSize is the largest chunk of any chunking a package may use.
const MaxChunkSize = 256 << 10

// ChunkingOf returns the chunking whose average chunk size is avg bytes
// (a package's chunk_size), or false if packages do not use one.
func ChunkingOf(avg int64) (Chunking, bool) {
	for _, c := range []Chunking{Chunking16K, Chunking64K} {
		if c.Avg == avg {
			return c, true
		}
	}
	return Chunking{}, false
}

// smallChunksUpTo is the largest payload Pack cuts into 16 KiB chunks by
// default: about 65,536 chunks, a chunk index of about 7 MB, within
// MaxMetadataSize. Larger payloads get 64 KiB chunks.
const smallChunksUpTo = 1 << 30

// DefaultChunkSize is the chunk_size Pack gives a format-2 package of a
// payload of size bytes when the metadata names none: 16 KiB up to 1 GiB,
// 64 KiB beyond, so that the chunk index stays within MaxMetadataSize.
func DefaultChunkSize(size int64) int64 {
	if size <= smallChunksUpTo {
		return Chunking16K.Avg
	}
	return Chunking64K.Avg
}

// Chunk is one content-defined chunk of a payload. A device fetches only the
// chunks whose SHA256 it does not already hold.
type Chunk struct {
	Offset int64  `json:"offset"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"` // lowercase hex
}

// Digest is a chunk's SHA-256 as bytes, the key to look a chunk up by.
type Digest [sha256.Size]byte

// ParseDigest parses a chunk's SHA-256 as chunk indexes write it: 64
// lowercase hex digits. Anything else is not a digest.
func ParseDigest(s string) (Digest, bool) {
	var d Digest
	if len(s) != 2*len(d) || strings.ToLower(s) != s {
		return d, false
	}
	_, err := hex.Decode(d[:], []byte(s))
	return d, err == nil
}

// Digest returns c's SHA-256 as bytes; the zero Digest if c.SHA256 is not
// 64 lowercase hex digits (a valid index's never is).
func (c Chunk) Digest() Digest {
	d, _ := ParseDigest(c.SHA256)
	return d
}

// Chunks splits what r yields into content-defined chunks and returns their
// index. It streams: at most c.Max bytes of r are held at a time. An empty
// input has no chunks.
func (c Chunking) Chunks(r io.Reader) ([]Chunk, error) {
	var out []Chunk
	err := c.stream(r, func(ch Chunk, _ []byte) error {
		out = append(out, ch)
		return nil
	})
	return out, err
}

// stream calls fn for each chunk of r in order, with the chunk's bytes
// (valid only during the call).
func (c Chunking) stream(r io.Reader, fn func(Chunk, []byte) error) error {
	buf := make([]byte, c.Max)
	opts := &chunkers.ChunkerOpts{MinSize: int(c.Min), NormalSize: int(c.Avg), MaxSize: int(c.Max)}
	ch, err := chunkers.NewChunkerBuffer(ChunkAlgorithm, r, opts, buf)
	if err != nil {
		return fmt.Errorf("image: chunker: %w", err)
	}
	var off int64
	for {
		data, err := ch.Next()
		if err != nil && !errors.Is(err, io.EOF) {
			return err
		}
		if len(data) > 0 {
			sum := sha256.Sum256(data)
			c := Chunk{Offset: off, Size: int64(len(data)), SHA256: hex.EncodeToString(sum[:])}
			if ferr := fn(c, data); ferr != nil {
				return ferr
			}
			off += c.Size
		}
		if err != nil { // io.EOF
			return nil
		}
	}
}
