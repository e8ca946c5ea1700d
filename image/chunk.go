package image

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"

	chunkers "github.com/PlakarKorp/go-cdc-chunkers"
	_ "github.com/PlakarKorp/go-cdc-chunkers/chunkers/fastcdc" // registers ChunkAlgorithm
)

// Chunk sizes of the content-defined chunking, in bytes. A chunk is never
// larger than MaxChunkSize, and only the last chunk of a payload may be
// smaller than MinChunkSize.
const (
	MinChunkSize = 16 << 10
	AvgChunkSize = 64 << 10
	MaxChunkSize = 256 << 10
)

// ChunkAlgorithm names the chunking algorithm: FastCDC (Xia et al., USENIX
// ATC 2016) with normalized chunking (level 2), as implemented and frozen
// under this name by github.com/PlakarKorp/go-cdc-chunkers, including its
// Gear table. docs/image-package.md gives the exact algorithm and
// TestChunkerPinned pins the table and the cut points, so an upgrade of the
// module that moved a boundary fails the tests instead of quietly spoiling
// delta reuse between images packed by different builds.
const ChunkAlgorithm = "fastcdc-v1.0.0"

// Chunk is one content-defined chunk of a payload. A device fetches only the
// chunks whose SHA256 it does not already hold.
type Chunk struct {
	Offset int64  `json:"offset"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"` // lowercase hex
}

// Chunks splits what r yields into content-defined chunks and returns their
// index. It streams: at most MaxChunkSize bytes of r are held at a time. An
// empty input has no chunks.
func Chunks(r io.Reader) ([]Chunk, error) {
	var out []Chunk
	err := chunkStream(r, func(c Chunk, _ []byte) error {
		out = append(out, c)
		return nil
	})
	return out, err
}

// chunkStream calls fn for each chunk of r in order, with the chunk's bytes
// (valid only during the call).
func chunkStream(r io.Reader, fn func(Chunk, []byte) error) error {
	buf := make([]byte, MaxChunkSize)
	opts := &chunkers.ChunkerOpts{MinSize: MinChunkSize, NormalSize: AvgChunkSize, MaxSize: MaxChunkSize}
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
