//go:build cgo

package agent

import (
	"testing"

	"github.com/google/go-tpm/tpm2/transport/simulator"

	"github.com/opensphere/sphere/rot"
)

// The Microsoft TPM 2.0 reference simulator (cgo, tests only). It is a
// process-wide singleton, so tests that use it never run in parallel.
func init() {
	roots = append(roots, rootImpl{name: "tpm", hardware: true, open: func(t *testing.T, dir string) rot.RootOfTrust {
		sim, err := simulator.OpenSimulator()
		if err != nil {
			t.Fatalf("open TPM simulator: %v", err)
		}
		r, err := rot.OpenTPM(rot.TPMConfig{StateDir: dir, Transport: sim})
		if err != nil {
			sim.Close()
			t.Fatalf("OpenTPM: %v", err)
		}
		t.Cleanup(func() { r.Close(); sim.Close() })
		return r
	}})
}
