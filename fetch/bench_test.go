package fetch

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// BenchmarkDelta64MiB measures a delta update as DESIGN.md states the
// target: a 64 MiB image with 5 % of its bytes changed, fetched by a device
// that holds the old payload, must transfer at most 10 % of the package.
// The changes are spread over a few places (overwritten, inserted and
// removed regions in turn); each place costs about one average chunk on
// either side beyond the change itself, so more places cost more.
//
//	go test ./fetch/ -run '^$' -bench Delta64MiB -benchtime 3x
//
// transferred-ratio is BytesDownloaded over the package size; ns/op and
// MB/s are the assembly's own speed over loopback.
func BenchmarkDelta64MiB(b *testing.B) {
	v1 := randomBytes(40, 64<<20)
	dir := b.TempDir()
	slot := filepath.Join(dir, "slot-a")
	if err := os.WriteFile(slot, v1, 0o600); err != nil {
		b.Fatal(err)
	}
	idx, err := IndexFiles(slot)
	if err != nil {
		b.Fatal(err)
	}
	defer idx.Close()
	for _, places := range []int{4, 16, 64} {
		b.Run(fmt.Sprintf("places=%d", places), func(b *testing.B) {
			pkg := packOS(b, "2", edit(v1, 41, 0.05, places, false))
			s := newTestServer(b, pkg)
			want := wantOf(pkg)
			dst := filepath.Join(b.TempDir(), "v2.pkg")
			b.SetBytes(int64(len(pkg)))
			var st Stats
			for b.Loop() {
				st, err = Assemble(context.Background(), s.Client(), s.URL, dst, want, idx, Options{})
				if err != nil {
					b.Fatal(err)
				}
				os.Remove(dst)
			}
			b.ReportMetric(float64(st.BytesDownloaded)/float64(len(pkg)), "transferred-ratio")
			b.ReportMetric(float64(st.BytesDownloaded), "transferred-B")
			b.ReportMetric(float64(st.Requests), "requests")
		})
	}
}
