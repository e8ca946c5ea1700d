package fetch

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/opensphere/sphere/image"
)

var (
	keyOnce sync.Once
	testKey *ecdsa.PrivateKey
)

func signingKey(t testing.TB) *ecdsa.PrivateKey {
	keyOnce.Do(func() {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		testKey = k
	})
	return testKey
}

// packOS returns an OS image package of payload, signed by signingKey.
func packOS(t testing.TB, version string, payload []byte) []byte {
	return packOSFormat(t, version, payload, 0)
}

// packOSFormat is packOS in a given package format (0: the default).
func packOSFormat(t testing.TB, version string, payload []byte, format int) []byte {
	t.Helper()
	md := image.Metadata{FormatVersion: format, Kind: image.KindOS, ComponentID: "9d1e8f2a-4b3c-4d5e-8f6a-7b8c9d0e1f2a", Name: "Test Linux",
		Version: version, SecurityVersion: 1, BuildTime: time.Date(2026, 8, 1, 12, 0, 0, 0, time.UTC)}
	var buf bytes.Buffer
	if _, err := image.Pack(&buf, md, bytes.NewReader(payload), signingKey(t)); err != nil {
		t.Fatalf("image.Pack: %v", err)
	}
	return buf.Bytes()
}

// edit changes about frac of data's bytes in places spread evenly over it,
// as a rebuilt image with a few changed files would: regions overwritten,
// inserted and, with removals, removed in turn. Without removals all the
// changed bytes are new ones, which a device must fetch.
func edit(data []byte, seed uint64, frac float64, places int, removals bool) []byte {
	region := int(float64(len(data))*frac) / places
	kinds := 2
	if removals {
		kinds = 3
	}
	out := slices.Clone(data)
	for i := places - 1; i >= 0; i-- { // from the end, so positions hold
		at := (2*i + 1) * len(data) / (2 * places)
		switch i % kinds {
		case 0:
			copy(out[at:], randomBytes(seed+uint64(i), region))
		case 1:
			out = slices.Insert(out, at, randomBytes(seed+uint64(i), region)...)
		case 2:
			out = slices.Delete(out, at, at+region)
		}
	}
	return out
}

// headerSize returns the length of pkg's header.
func headerSize(t testing.TB, pkg []byte) int64 {
	t.Helper()
	n, exact := headerNeed(pkg)
	if !exact {
		t.Fatal("headerNeed: not exact on a whole package")
	}
	return n
}

// verifyPackage checks the package at path as the agent would.
func verifyPackage(t *testing.T, path string) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h, err := image.ReadHeader(f)
	if err != nil {
		t.Fatal(err)
	}
	if err := h.VerifySignature(&signingKey(t).PublicKey); err != nil {
		t.Fatal(err)
	}
	if err := image.VerifyPayload(f, h); err != nil {
		t.Fatal(err)
	}
}

// deltaFixture is an old payload on "disk" and a new package to fetch.
type deltaFixture struct {
	v1, v2Pkg []byte
	slot      string // file holding v1, the payload of the running image
	idx       *Index
}

var (
	fixtureOnce sync.Once
	fixture16   deltaFixture
)

// delta16 returns a 16 MiB payload and a new package of it with 5 % of the
// bytes changed in four places. It is built once: packing is the slow part.
func delta16(t *testing.T) (v1, v2Pkg []byte) {
	fixtureOnce.Do(func() {
		fixture16.v1 = randomBytes(20, 16<<20)
		fixture16.v2Pkg = packOS(t, "2", edit(fixture16.v1, 21, 0.05, 4, true))
	})
	return fixture16.v1, fixture16.v2Pkg
}

func indexOf(t *testing.T, data []byte) (*Index, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "slot")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	idx, err := IndexFiles(path)
	if err != nil {
		t.Fatalf("IndexFiles: %v", err)
	}
	t.Cleanup(func() { idx.Close() })
	return idx, path
}

func TestAssembleDelta(t *testing.T) {
	v1, pkg2 := delta16(t)
	pkg1 := packOS(t, "1", v1)
	// The same images in format 1 (64 KiB chunks): a device that installed
	// a format-1 package and is offered a format-2 one cuts its payload
	// with the new package's chunking, and the other way round.
	pkg1v1 := packOSFormat(t, "1", v1, 1)
	h2, _ := image.ReadHeader(bytes.NewReader(pkg2))
	pkg2v1 := packOSFormat(t, "2", pkg2[headerSize(t, pkg2):], 1)
	if h2.Metadata.Chunking() != image.Chunking16K {
		t.Fatalf("the default package cuts with %+v", h2.Metadata.Chunking())
	}
	tests := []struct {
		name     string
		pkg      []byte // the new package; nil: pkg2
		source   []byte // nil: no ChunkSource, or an unreadable one
		maxRatio float64
		// unreadable: a source that fails every read; it costs a full
		// download, not the update.
		unreadable bool
	}{
		{"source: old payload", nil, v1, 0.10, false},
		{"source: old package file", nil, pkg1, 0.10, false},
		{"source: old format-1 package file", nil, pkg1v1, 0.10, false},
		{"new package in format 1", pkg2v1, v1, 0.15, false},
		{"no source", nil, nil, 1.01, false},
		{"source unreadable", nil, nil, 1.01, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pkg2 := pkg2
			if tt.pkg != nil {
				pkg2 = tt.pkg
			}
			var src ChunkSource
			switch {
			case tt.source != nil:
				src, _ = indexOf(t, tt.source)
			case tt.unreadable:
				idx := NewIndex()
				idx.Add(failingReader{}, 1<<20)
				src = idx
			}
			s := newTestServer(t, pkg2)
			dst := filepath.Join(t.TempDir(), "v2.pkg")
			st, err := Assemble(context.Background(), s.Client(), s.URL, dst, wantOf(pkg2), src, Options{})
			if err != nil {
				t.Fatalf("Assemble: %v", err)
			}
			checkFile(t, dst, pkg2)
			checkAbsent(t, dst+".part", dst+".journal")
			verifyPackage(t, dst)
			ratio := float64(st.BytesDownloaded) / float64(len(pkg2))
			t.Logf("%d-byte package: downloaded %d (%.2f%%) in %d requests, reused %d", len(pkg2), st.BytesDownloaded, 100*ratio, st.Requests, st.BytesReused)
			if ratio > tt.maxRatio {
				t.Errorf("downloaded %.2f%% of the package, want at most %.0f%%", 100*ratio, 100*tt.maxRatio)
			}
			// Exactly the header and the chunks the source lacks are
			// fetched, give or take what the header requests overshoot.
			need := missingBytes(t, pkg2, tt.source)
			if st.BytesDownloaded < need || st.BytesDownloaded > need+firstHeaderFetch+image.MaxSignatureSize {
				t.Errorf("downloaded %d bytes; the header and the missing chunks are %d", st.BytesDownloaded, need)
			}
			if got := s.served.Load(); got != st.BytesDownloaded {
				t.Errorf("the server served %d bytes, Stats.BytesDownloaded says %d", got, st.BytesDownloaded)
			}
			if got := s.requests.Load(); got != int64(st.Requests) {
				t.Errorf("the server got %d requests, Stats.Requests says %d", got, st.Requests)
			}
			if hs := headerSize(t, pkg2); st.BytesReused+st.BytesDownloaded < int64(len(pkg2)) || st.BytesReused > int64(len(pkg2))-hs {
				t.Errorf("reused %d + downloaded %d bytes do not add up to the %d-byte package", st.BytesReused, st.BytesDownloaded, len(pkg2))
			}
		})
	}
}

// missingBytes returns the size of pkg's header plus that of its chunks
// that neither source nor an earlier chunk of pkg holds.
func missingBytes(t *testing.T, pkg, source []byte) int64 {
	t.Helper()
	h, err := image.ReadHeader(bytes.NewReader(pkg))
	if err != nil {
		t.Fatal(err)
	}
	have := map[string]bool{}
	if source != nil {
		cs, err := h.Metadata.Chunking().Chunks(bytes.NewReader(source))
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range cs {
			have[c.SHA256] = true
		}
	}
	n := headerSize(t, pkg)
	for _, c := range h.Metadata.Chunks {
		if !have[c.SHA256] {
			n += c.Size
			have[c.SHA256] = true
		}
	}
	return n
}

// An interrupted Assemble resumes without fetching the header or the
// chunks it had verified again, also after a crash that left the journal
// behind the .part and half a chunk at its end.
func TestAssembleResume(t *testing.T) {
	v1, pkg2 := delta16(t)
	hs := headerSize(t, pkg2)
	tests := []struct {
		name   string
		source []byte
		cut    int64 // bytes into the first payload answer
		crash  bool
	}{
		{"no source, cut at 5 MiB", nil, 5 << 20, false},
		{"no source, cut at 5 MiB, crash", nil, 5 << 20, true},
		{"delta, cut in the first run", v1, 100 << 10, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var src ChunkSource
			if tt.source != nil {
				src, _ = indexOf(t, tt.source)
			}
			s := newTestServer(t, pkg2)
			// What a download in one go costs.
			one, err := Assemble(context.Background(), s.Client(), s.URL, filepath.Join(t.TempDir(), "ref"), wantOf(pkg2), src, Options{})
			if err != nil {
				t.Fatalf("Assemble: %v", err)
			}
			s.reset()

			dst := filepath.Join(t.TempDir(), "v2.pkg")
			s.cutFrom.Store(hs)
			s.cutNext.Store(tt.cut)
			st1, err := Assemble(context.Background(), s.Client(), s.URL, dst, wantOf(pkg2), src, Options{})
			if err == nil || errors.Is(err, ErrDigest) {
				t.Fatalf("Assemble on a connection cut mid-way: %v, want a network error", err)
			}
			checkAbsent(t, dst)
			j := readJournal(dst + ".journal")
			if j == nil || j.VerifiedChunks == 0 || j.HeaderSize != hs {
				t.Fatalf("journal after the cut: %+v, want the header size %d and some chunks", j, hs)
			}
			part := fileSize(t, dst+".part")
			if tt.crash {
				// The last checkpoint was before the cut, and the .part
				// ends in the middle of a chunk.
				data, _ := json.Marshal(journal{PackageSHA256: j.PackageSHA256, PackageSize: j.PackageSize, HeaderSize: j.HeaderSize})
				if err := os.WriteFile(dst+".journal", data, 0o600); err != nil {
					t.Fatal(err)
				}
				f, err := os.OpenFile(dst+".part", os.O_WRONLY|os.O_APPEND, 0)
				if err != nil {
					t.Fatal(err)
				}
				f.Write(randomBytes(22, 10000))
				f.Close()
			}
			served1 := s.served.Load()
			s.reset()

			st2, err := Assemble(context.Background(), s.Client(), s.URL, dst, wantOf(pkg2), src, Options{})
			if err != nil {
				t.Fatalf("Assemble to resume: %v", err)
			}
			checkFile(t, dst, pkg2)
			checkAbsent(t, dst+".part", dst+".journal")
			if st2.BytesResumed != part {
				t.Errorf("resumed %d bytes, want the %d the .part held", st2.BytesResumed, part)
			}
			for _, r := range s.takeRanges() {
				if rangeStartOf(r) < hs {
					t.Errorf("the resume asked for %s: the header again", r)
				}
			}
			served2 := s.served.Load()
			t.Logf("in one go: %d bytes; cut: %d + resumed: %d (kept %d in the .part)", one.BytesDownloaded, served1, served2, part)
			if served1+served2 > one.BytesDownloaded+image.MaxChunkSize {
				t.Errorf("cut and resumed downloads fetched %d + %d bytes, want at most %d (in one go) + one chunk",
					served1, served2, one.BytesDownloaded)
			}
			if st1.BytesDownloaded != served1 || st2.BytesDownloaded != served2 {
				t.Errorf("Stats.BytesDownloaded %d and %d, the server served %d and %d", st1.BytesDownloaded, st2.BytesDownloaded, served1, served2)
			}
		})
	}
}

// Retries resume a cut run within one call.
func TestAssembleRetry(t *testing.T) {
	_, pkg2 := delta16(t)
	s := newTestServer(t, pkg2)
	s.cutEvery.Store(3 << 20)
	dst := filepath.Join(t.TempDir(), "v2.pkg")
	st, err := Assemble(context.Background(), s.Client(), s.URL, dst, wantOf(pkg2), nil, Options{Retries: 1, Backoff: noBackoff})
	if err != nil {
		t.Fatalf("Assemble through a link that drops every 3 MiB: %v", err)
	}
	checkFile(t, dst, pkg2)
	// Each cut loses at most the chunk it fell in.
	cuts := int64(len(pkg2)) / (3 << 20)
	if limit := int64(len(pkg2)) + cuts*image.MaxChunkSize + firstHeaderFetch; st.BytesDownloaded > limit {
		t.Errorf("downloaded %d bytes for a %d-byte package, want at most %d", st.BytesDownloaded, len(pkg2), limit)
	}
	t.Logf("%d requests, %d bytes downloaded for %d", st.Requests, st.BytesDownloaded, len(pkg2))
}

// Content that does not match what is wanted is deleted and reported as
// ErrDigest.
func TestAssembleDigest(t *testing.T) {
	_, pkg2 := delta16(t)
	hs := headerSize(t, pkg2)
	flipPayload := slices.Clone(pkg2)
	flipPayload[hs+(3<<20)] ^= 1
	flipMetadata := slices.Clone(pkg2)
	i := bytes.Index(flipMetadata, []byte("Test Linux"))
	flipMetadata[i] = 'B'
	small := packOS(t, "3", randomBytes(23, 100))
	flipSmall := slices.Clone(small)
	flipSmall[len(small)-10] ^= 1
	notPkg := randomBytes(24, 100000)
	tests := []struct {
		name   string
		served []byte
		want   Want
		is     error // besides ErrDigest
	}{
		{"error/a payload bit flipped", flipPayload, wantOf(pkg2), nil},
		{"error/a bit flipped in a payload fetched with the header", flipSmall, wantOf(small), nil},
		{"error/metadata altered", flipMetadata, wantOf(pkg2), nil},
		{"error/another package", small, wantOf(pkg2), nil},
		{"error/not a package", notPkg, wantOf(notPkg), image.ErrFormat},
		{"error/truncated header", pkg2[:hs-1], wantOf(pkg2[:hs-1]), image.ErrCorrupt},
		{"error/want of another file", pkg2, wantOf(small), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newTestServer(t, tt.served)
			dst := filepath.Join(t.TempDir(), "v2.pkg")
			_, err := Assemble(context.Background(), s.Client(), s.URL, dst, tt.want, nil, Options{Retries: 3, Backoff: noBackoff})
			if !errors.Is(err, ErrDigest) || tt.is != nil && !errors.Is(err, tt.is) {
				t.Fatalf("Assemble: %v, want ErrDigest (and %v)", err, tt.is)
			}
			checkAbsent(t, dst, dst+".part", dst+".journal")
		})
	}
}

// A local chunk that changed after it was indexed is fetched instead.
func TestAssembleSourceChanged(t *testing.T) {
	v1, pkg2 := delta16(t)
	idx, slot := indexOf(t, v1)
	f, err := os.OpenFile(slot, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteAt([]byte("changed"), 8<<20)
	f.Close()
	s := newTestServer(t, pkg2)
	dst := filepath.Join(t.TempDir(), "v2.pkg")
	st, err := Assemble(context.Background(), s.Client(), s.URL, dst, wantOf(pkg2), idx, Options{})
	if err != nil {
		t.Fatalf("Assemble: %v", err)
	}
	checkFile(t, dst, pkg2)
	t.Logf("downloaded %d bytes, reused %d", st.BytesDownloaded, st.BytesReused)
}

// A server without range support gets the whole package downloaded.
func TestAssembleNoRanges(t *testing.T) {
	v1, pkg2 := delta16(t)
	idx, _ := indexOf(t, v1)
	s := newTestServer(t, pkg2)
	s.noRanges.Store(true)
	dst := filepath.Join(t.TempDir(), "v2.pkg")
	st, err := Assemble(context.Background(), s.Client(), s.URL, dst, wantOf(pkg2), idx, Options{})
	if err != nil {
		t.Fatalf("Assemble: %v", err)
	}
	checkFile(t, dst, pkg2)
	checkAbsent(t, dst+".part", dst+".journal")
	if st.Requests != 2 {
		t.Errorf("%d requests, want 2 (the header, then the whole file)", st.Requests)
	}
}

// A small package comes in one request, and chunks that repeat within the
// payload are fetched once.
func TestAssembleSmallAndRepeated(t *testing.T) {
	small := packOS(t, "1", randomBytes(25, 3000))
	zeros := make([]byte, 2<<20)
	repeated := packOS(t, "1", slices.Concat(zeros, randomBytes(26, 100000), zeros))
	tests := []struct {
		name      string
		pkg       []byte
		requests  int
		minReused int64
	}{
		{"small", small, 1, 0},
		{"repeated", repeated, 4, 3 << 20},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newTestServer(t, tt.pkg)
			dst := filepath.Join(t.TempDir(), "p.pkg")
			st, err := Assemble(context.Background(), s.Client(), s.URL, dst, wantOf(tt.pkg), nil, Options{})
			if err != nil {
				t.Fatalf("Assemble: %v", err)
			}
			checkFile(t, dst, tt.pkg)
			if st.Requests > tt.requests || st.BytesReused < tt.minReused {
				t.Errorf("%d requests, reused %d bytes; want at most %d requests and at least %d bytes reused",
					st.Requests, st.BytesReused, tt.requests, tt.minReused)
			}
		})
	}
}

// TestIndexPrepare: an Index finds nothing before Prepare, then exactly
// the chunks of its sources cut with the chunking Prepare was given.
func TestIndexPrepare(t *testing.T) {
	data := randomBytes(28, 3<<20)
	idx, _ := indexOf(t, data)
	small, _ := image.Chunking16K.Chunks(bytes.NewReader(data))
	large, _ := image.Chunking64K.Chunks(bytes.NewReader(data))
	if _, _, _, ok := idx.Lookup(small[0].SHA256); ok || idx.Len() != 0 {
		t.Fatalf("found a chunk before Prepare (%d indexed)", idx.Len())
	}
	for _, tc := range []struct {
		ch           image.Chunking
		have, lack   []image.Chunk
		name         string
		wantDistinct int
	}{
		{image.Chunking16K, small, large, "16K", len(small)},
		{image.Chunking64K, large, small, "64K", len(large)},
	} {
		if err := idx.Prepare(tc.ch); err != nil {
			t.Fatalf("%s: Prepare: %v", tc.name, err)
		}
		if idx.Len() != tc.wantDistinct {
			t.Errorf("%s: %d chunks indexed, want %d", tc.name, idx.Len(), tc.wantDistinct)
		}
		for _, c := range tc.have {
			r, off, size, ok := idx.Lookup(c.SHA256)
			if !ok || off != c.Offset || size != c.Size || r == nil {
				t.Fatalf("%s: chunk at %d not found where it is (%v, %d, %d)", tc.name, c.Offset, ok, off, size)
			}
		}
		// The other chunking's first chunk is longer or shorter than this
		// one's: it is not a chunk of this cut.
		if _, _, _, ok := idx.Lookup(tc.lack[0].SHA256); ok {
			t.Errorf("%s: found a chunk of the other chunking", tc.name)
		}
	}
	for _, bad := range []string{"", "zz", strings.Repeat("g", 64), strings.Repeat("a", 63)} {
		if _, _, _, ok := idx.Lookup(bad); ok {
			t.Errorf("Lookup(%q) found something", bad)
		}
	}
}

// failingReader fails every read, like a slot on a dying disk.
type failingReader struct{}

func (failingReader) ReadAt([]byte, int64) (int, error) { return 0, errors.New("input/output error") }

func TestIndexFilesMissing(t *testing.T) {
	if _, err := IndexFiles(filepath.Join(t.TempDir(), "nope")); err == nil {
		t.Error("IndexFiles of a missing file: no error")
	}
}

// FuzzHeaderNeed checks headerNeed against image.ReadHeader: on any prefix
// that ReadHeader accepts, headerNeed must know the header's exact length.
func FuzzHeaderNeed(f *testing.F) {
	f.Add(packOS(f, "1", randomBytes(27, 500)))
	f.Add([]byte(image.Magic + "\x00\x00\x00\x05{}"))
	f.Add([]byte("OSPHPKG1\xff\xff\xff\xff"))
	f.Fuzz(func(t *testing.T, prefix []byte) {
		need, exact := headerNeed(prefix)
		if need < 0 {
			t.Fatalf("headerNeed = %d", need)
		}
		r := bytes.NewReader(prefix)
		if _, err := image.ReadHeader(r); err != nil {
			return
		}
		if n := int64(len(prefix) - r.Len()); !exact || need != n {
			t.Errorf("headerNeed = %d, %v; ReadHeader read %d bytes", need, exact, n)
		}
	})
}

// A .part and journal left by an interrupted Assemble of another package
// are not taken for this one.
func TestAssembleJournalOfAnotherPackage(t *testing.T) {
	_, pkg2 := delta16(t)
	other := packOS(t, "3", randomBytes(28, 1<<20))
	dst := filepath.Join(t.TempDir(), "next.pkg")
	s := newTestServer(t, pkg2)
	s.cutFrom.Store(headerSize(t, pkg2))
	s.cutNext.Store(2 << 20)
	if _, err := Assemble(context.Background(), s.Client(), s.URL, dst, wantOf(pkg2), nil, Options{}); err == nil {
		t.Fatal("Assemble on a connection cut mid-way: no error")
	}
	s2 := newTestServer(t, other)
	st, err := Assemble(context.Background(), s2.Client(), s2.URL, dst, wantOf(other), nil, Options{})
	if err != nil {
		t.Fatalf("Assemble: %v", err)
	}
	checkFile(t, dst, other)
	checkAbsent(t, dst+".part", dst+".journal")
	if st.BytesResumed != 0 {
		t.Errorf("resumed %d bytes of another package", st.BytesResumed)
	}
}
