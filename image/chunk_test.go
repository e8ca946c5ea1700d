package image

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"io"
	"math/rand/v2"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/PlakarKorp/go-cdc-chunkers/chunkers/fastcdc"
)

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

// chunkings are the chunkings packages use, each test runs with all.
var chunkings = map[string]Chunking{"16K": Chunking16K, "64K": Chunking64K}

// checkCover fails unless chunks cover data exactly, in order, with the
// sizes ch allows and the right digests.
func checkCover(t testing.TB, ch Chunking, data []byte, chunks []Chunk) {
	t.Helper()
	var off int64
	for i, c := range chunks {
		if c.Offset != off {
			t.Fatalf("chunk %d: offset %d, want %d", i, c.Offset, off)
		}
		if c.Size < 1 || c.Size > ch.Max {
			t.Fatalf("chunk %d: size %d out of range", i, c.Size)
		}
		if c.Size < ch.Min && i != len(chunks)-1 {
			t.Fatalf("chunk %d of %d: size %d below the minimum and not the last", i, len(chunks), c.Size)
		}
		sum := sha256.Sum256(data[c.Offset : c.Offset+c.Size])
		if got := hex.EncodeToString(sum[:]); got != c.SHA256 {
			t.Fatalf("chunk %d: sha256 %s, want %s", i, c.SHA256, got)
		}
		off += c.Size
	}
	if off != int64(len(data)) {
		t.Fatalf("chunks cover %d bytes, input has %d", off, len(data))
	}
}

func TestChunksCoverAndDeterministic(t *testing.T) {
	for name, ch := range chunkings {
		for _, n := range []int64{0, 1, ch.Min - 1, ch.Min, ch.Min + 1, ch.Avg, ch.Max, ch.Max + 1, 3*ch.Max + 12345, 4 << 20} {
			data := randomBytes(uint64(n), int(n))
			a, err := ch.Chunks(bytes.NewReader(data))
			if err != nil {
				t.Fatal(err)
			}
			checkCover(t, ch, data, a)
			// Reads of one byte at a time give the same chunks: the cut
			// points depend on the content only, not on how it arrives.
			b, err := ch.Chunks(iotest.OneByteReader(bytes.NewReader(data)))
			if err != nil {
				t.Fatal(err)
			}
			if !equalChunks(a, b) {
				t.Fatalf("%s, n=%d: chunking is not deterministic", name, n)
			}
			if n == 0 && len(a) != 0 {
				t.Fatalf("%s, empty input: %d chunks, want none", name, len(a))
			}
		}
	}
}

func TestChunksZeros(t *testing.T) {
	for name, ch := range chunkings {
		// Data without content to cut at (zeros) is cut at ch.Max.
		data := make([]byte, 5*ch.Max+7)
		cs, err := ch.Chunks(bytes.NewReader(data))
		if err != nil {
			t.Fatal(err)
		}
		checkCover(t, ch, data, cs)
		if len(cs) != 6 || cs[0].Size != ch.Max || cs[5].Size != 7 {
			t.Fatalf("%s: got %d chunks (first %d bytes), want 5 of %d and one of 7", name, len(cs), cs[0].Size, ch.Max)
		}
	}
}

func TestChunksReadError(t *testing.T) {
	boom := errors.New("disk on fire")
	r := io.MultiReader(bytes.NewReader(randomBytes(1, 1<<20)), iotest.ErrReader(boom))
	if _, err := Chunking16K.Chunks(r); !errors.Is(err, boom) {
		t.Fatalf("got %v, want the read error", err)
	}
}

func TestChunkingOf(t *testing.T) {
	for _, tc := range []struct {
		avg  int64
		want Chunking
		ok   bool
	}{
		{16384, Chunking16K, true},
		{65536, Chunking64K, true},
		{0, Chunking{}, false},
		{32768, Chunking{}, false},
		{8192, Chunking{}, false}, // the module's legacy masks: never
	} {
		if got, ok := ChunkingOf(tc.avg); got != tc.want || ok != tc.ok {
			t.Errorf("ChunkingOf(%d) = %+v, %v; want %+v, %v", tc.avg, got, ok, tc.want, tc.ok)
		}
	}
	for _, tc := range []struct{ size, want int64 }{{0, 16384}, {64 << 20, 16384}, {1 << 30, 16384}, {1<<30 + 1, 65536}, {8 << 30, 65536}} {
		if got := DefaultChunkSize(tc.size); got != tc.want {
			t.Errorf("DefaultChunkSize(%d) = %d, want %d", tc.size, got, tc.want)
		}
	}
}

func equalChunks(a, b []Chunk) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// reuse returns the fraction of newData's bytes that lie in chunks whose
// digest is among old's: what a device holding old need not download.
func reuse(old, newChunks []Chunk) float64 {
	have := map[string]bool{}
	for _, c := range old {
		have[c.SHA256] = true
	}
	var total, reused int64
	for _, c := range newChunks {
		total += c.Size
		if have[c.SHA256] {
			reused += c.Size
		}
	}
	if total == 0 {
		return 1
	}
	return float64(reused) / float64(total)
}

func mustChunks(t testing.TB, ch Chunking, data []byte) []Chunk {
	t.Helper()
	cs, err := ch.Chunks(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	return cs
}

func TestChunksInsertNearStart(t *testing.T) {
	data := randomBytes(7, 16<<20)
	edited := append(append(append([]byte{}, data[:1000]...), []byte("a few inserted bytes")...), data[1000:]...)
	for name, ch := range chunkings {
		old := mustChunks(t, ch, data)
		cs := mustChunks(t, ch, edited)
		checkCover(t, ch, edited, cs)
		r := reuse(old, cs)
		t.Logf("%s: 16 MiB, 20 bytes inserted at offset 1000: %d chunks, %.2f%% of bytes reused", name, len(cs), 100*r)
		if r < 0.97 {
			t.Errorf("%s: only %.2f%% of bytes reused after a small insertion; chunk boundaries should resynchronise", name, 100*r)
		}
	}
}

func TestChunksDeltaReuse(t *testing.T) {
	const size = 16 << 20
	data := randomBytes(11, size)
	// Change 5% of the bytes in four places: two overwritten regions, one
	// insertion and one deletion, as a rebuilt image with a few changed
	// files would.
	region := size * 5 / 100 / 4
	edited := append([]byte{}, data...)
	copy(edited[1<<20:], randomBytes(12, region))
	copy(edited[6<<20:], randomBytes(13, region))
	edited = append(edited[:10<<20], append(randomBytes(14, region), edited[10<<20:]...)...)
	edited = append(edited[:13<<20], edited[13<<20+region:]...)
	// Each changed place costs about one chunk on either side beyond the
	// change itself: with 64 KiB chunks four places cost ~4 % of 16 MiB,
	// with 16 KiB chunks ~1 %.
	for _, tc := range []struct {
		ch       Chunking
		minReuse float64
	}{{Chunking64K, 0.85}, {Chunking16K, 0.93}} {
		old := mustChunks(t, tc.ch, data)
		cs := mustChunks(t, tc.ch, edited)
		checkCover(t, tc.ch, edited, cs)
		r := reuse(old, cs)
		t.Logf("%d-byte chunks: 16 MiB with 5%% of bytes changed in 4 places: %d chunks (%d before), %.1f%% of bytes reused, %.1f%% to fetch",
			tc.ch.Avg, len(cs), len(old), 100*r, 100*(1-r))
		if r < tc.minReuse {
			t.Errorf("%d-byte chunks: only %.1f%% of bytes reused; want at least %.0f%%", tc.ch.Avg, 100*r, 100*tc.minReuse)
		}
	}
}

// TestChunkerPinned pins the chunking (the module's Gear table and the cut
// points it gives for our sizes). Cut points are part of the format's
// behaviour: if an upgrade of the chunking module moves them, images packed
// before and after share no chunks. Change these values only on purpose,
// and say so in docs/image-package.md.
func TestChunkerPinned(t *testing.T) {
	h := sha256.New()
	for _, g := range fastcdc.G {
		binary.Write(h, binary.BigEndian, g)
	}
	if got, want := hex.EncodeToString(h.Sum(nil)), pinnedGearSHA256; got != want {
		t.Errorf("Gear table SHA-256 = %s, want %s", got, want)
	}
	for _, tc := range []struct {
		ch    Chunking
		input []byte
		want  []int64
	}{
		{Chunking64K, randomBytes(42, 2<<20), pinnedSizes64K},
		{Chunking16K, randomBytes(42, 512<<10), pinnedSizes16K},
	} {
		var sizes []int64
		for _, c := range mustChunks(t, tc.ch, tc.input) {
			sizes = append(sizes, c.Size)
		}
		if !equalInts(sizes, tc.want) {
			t.Errorf("%d-byte chunks: chunk sizes of the pinned input = %#v\nwant %#v", tc.ch.Avg, sizes, tc.want)
		}
	}
}

func equalInts(a, b []int64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

var (
	pinnedGearSHA256 = "ed8ddd78db5b997b1b80ca00701ad1c01a339f805de852cc229edd147cd251b2"
	pinnedSizes16K   = []int64{22493, 9843, 6346, 17681, 4599, 23749, 16553, 23022, 16401, 8292, 17310, 23947, 20796, 21776, 18503, 19581, 19659,
		8514, 16414, 17742, 21187, 32912, 17246, 22337, 20747, 19297, 15581, 19523, 19610, 2627}
	pinnedSizes64K = []int64{66509, 73643, 72292, 86621, 124315, 85790, 42063, 107657, 73424, 117302, 81315, 71970, 58337,
		94107, 68261, 84370, 65620, 72729, 66920, 72955, 90823, 94554, 96724, 104364, 124487}
)

func BenchmarkChunks(b *testing.B) {
	data := randomBytes(3, 64<<20)
	for name, ch := range chunkings {
		b.Run(name, func(b *testing.B) {
			b.SetBytes(int64(len(data)))
			for b.Loop() {
				if _, err := ch.Chunks(bytes.NewReader(data)); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// specMasks are the masks docs/image-package.md gives for each chunking,
// by average chunk size.
var specMasks = map[int64][2]uint64{
	16 << 10: {0x8888888888888888, 0x8421084210842100},
	64 << 10: {0x9249249249249000, 0x8888888888888800},
}

// specChunkSizes cuts data exactly as docs/image-package.md describes, so
// that the document is checked against the code.
func specChunkSizes(ch Chunking, data []byte) []int64 {
	maskS, maskL := specMasks[ch.Avg][0], specMasks[ch.Avg][1]
	var sizes []int64
	for len(data) > 0 {
		n := min(len(data), int(ch.Max))
		cut := n
		if n > int(ch.Min) {
			normal := min(int(ch.Avg), n)
			var fp uint64
			for i := int(ch.Min); i < n; i++ {
				mask := maskS
				if i >= normal {
					mask = maskL
				}
				fp = (fp << 1) + fastcdc.G[data[i]]
				if fp&mask == 0 {
					cut = i
					break
				}
			}
		}
		sizes = append(sizes, int64(cut))
		data = data[cut:]
	}
	return sizes
}

func TestChunkerMatchesSpec(t *testing.T) {
	for cname, ch := range chunkings {
		inputs := map[string][]byte{
			"random 4 MiB": randomBytes(8, 4<<20),
			"zeros":        make([]byte, 3*ch.Max+100),
			"small":        randomBytes(9, int(ch.Min)+1),
			"text":         bytes.Repeat([]byte("the quick brown fox jumps over the lazy dog\n"), 40000),
		}
		for name, data := range inputs {
			var got []int64
			for _, c := range mustChunks(t, ch, data) {
				got = append(got, c.Size)
			}
			if want := specChunkSizes(ch, data); !equalInts(got, want) {
				t.Errorf("%s, %s: chunk sizes %v\nthe documented algorithm gives %v", cname, name, got, want)
			}
		}
	}
}

func TestParseDigest(t *testing.T) {
	sum := sha256.Sum256([]byte("chunk"))
	good := hex.EncodeToString(sum[:])
	for _, tc := range []struct {
		in string
		ok bool
	}{
		{good, true},
		{strings.ToUpper(good), false}, // chunk indexes write lowercase
		{good[:62], false},
		{good + "00", false},
		{strings.Repeat("zz", 32), false},
		{"", false},
	} {
		d, ok := ParseDigest(tc.in)
		if ok != tc.ok || ok && d != Digest(sum) {
			t.Errorf("ParseDigest(%q) = %x, %v; want ok=%v", tc.in, d, ok, tc.ok)
		}
	}
	if got := (Chunk{SHA256: good}).Digest(); got != Digest(sum) {
		t.Errorf("Chunk.Digest = %x, want %x", got, sum)
	}
}
