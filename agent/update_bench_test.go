//go:build !windows

package agent

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"
)

// BenchmarkEngineDelta64MiB is the delta figure as the agent gets it: a
// device runs OS v1 (a 64 MiB payload, committed in slot b); v2 has 5 % of
// its bytes rewritten in place, spread over N places; the update engine
// checks, gets the TUF targets, and fetch.Assemble builds v2 from the
// chunks of the booted slot, fetching only the others over HTTPS from the
// real service. transferred-ratio is the bytes downloaded over the
// package size.
//
//	go test ./agent/ -run '^$' -bench EngineDelta64MiB -benchtime 1x
func BenchmarkEngineDelta64MiB(b *testing.B) {
	for _, places := range []int{4, 16} {
		b.Run(fmt.Sprintf("places=%d", places), func(b *testing.B) {
			svc := startService(b)
			ctx := context.Background()
			pub := svc.publisher(b)
			rng := rand.New(rand.NewPCG(1, 2))
			v1 := make([]byte, 64<<20)
			for i := range v1 {
				v1[i] = byte(rng.Uint32())
			}
			v2 := append([]byte(nil), v1...)
			span := len(v1) / 20 / places // 5 % in all
			for p := range places {
				off := p * (len(v1) / places)
				for i := off; i < off+span; i++ {
					v2[i] = byte(rng.Uint32())
				}
			}
			o := newOSDevice(b, svc, nil)
			svc.deploy(b, "Field Test", packOS(b, pub, 1, v1))
			u := o.boot(b)
			for range 3 { // download, reboot into the trial, commit
				if err := u.Check(ctx); err != nil && !errors.Is(err, ErrReboot) {
					b.Fatal(err)
				}
				u = o.boot(b)
			}
			pkg := packOS(b, pub, 2, v2)
			svc.deploy(b, "Field Test", pkg)
			for b.Loop() {
				if err := u.Check(ctx); !errors.Is(err, ErrReboot) {
					b.Fatalf("check for v2: %v", err)
				}
			}
			st := u.lastFetch
			b.ReportMetric(float64(st.BytesDownloaded)/float64(len(pkg)), "transferred-ratio")
			b.ReportMetric(float64(st.BytesDownloaded), "transferred-B")
			b.ReportMetric(float64(st.BytesReused), "reused-B")
			b.ReportMetric(float64(st.Requests), "requests")
		})
	}
}
