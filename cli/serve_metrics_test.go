//go:build !agentonly

package cli

import (
	"context"
	"crypto/tls"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestServeMemoryMetrics: `sphere serve` runs the spare-heap releaser by
// default and serves its counter (--release-idle-memory=false turns it
// off), and paces the collector for its small test heap at 400 %
// (--gc-headroom-mib 0 keeps Go's 100 %), as go_gc_gogc_percent shows.
func TestServeMemoryMetrics(t *testing.T) {
	if os.Getenv("GOGC") != "" {
		t.Skip("GOGC is set in the environment, so the service leaves the collector's pacing alone")
	}
	for _, c := range []struct {
		args []string
		want bool
		gogc string
	}{
		{nil, true, "go_gc_gogc_percent 400"},
		{[]string{"--release-idle-memory=false", "--gc-headroom-mib", "0"}, false, "go_gc_gogc_percent 100"},
	} {
		svc := startService(t, t.TempDir(), c.args...)
		pool, err := readPool("--ca-file", svc.caFile)
		if err != nil {
			t.Fatal(err)
		}
		hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
		// The pacer runs beside the listener, and a service stopped just
		// before puts the percentage back from its own goroutine: poll.
		var body string
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
			resp, err := hc.Get(svc.url + "/metrics")
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if body = string(b); resp.StatusCode != 200 || !strings.Contains(body, "go_goroutines") {
				t.Fatalf("GET /metrics: %s\n%.300s", resp.Status, body)
			}
			if strings.Contains(body, "\n"+c.gogc+"\n") || time.Now().After(deadline) {
				break
			}
		}
		if got := strings.Contains(body, "sphere_memory_releases_total"); got != c.want {
			t.Errorf("serve %v: sphere_memory_releases_total served = %v, want %v", c.args, got, c.want)
		}
		if !strings.Contains(body, "\n"+c.gogc+"\n") {
			i := strings.Index(body, "\ngo_gc_gogc_percent")
			t.Errorf("serve %v: want %q in /metrics, got %.40q", c.args, c.gogc, body[max(i, 0):])
		}
		svc.stop()
	}
}

// TestServeRefusesBadFlags: a serve flag out of range is refused with a
// message naming it, before anything is created in the data directory.
func TestServeRefusesBadFlags(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--gc-headroom-mib", "-1"}, "--gc-headroom-mib must be 0 or more"},
		{[]string{"--idle-timeout", "0s"}, "--idle-timeout must be positive"},
		{[]string{"--tls-cert", "x.pem"}, "--tls-cert and --tls-key go together"},
	} {
		dir := filepath.Join(t.TempDir(), "data")
		args := append([]string{"serve", "--addr", "127.0.0.1:0", "--data-dir", dir}, c.args...)
		var out, errOut strings.Builder
		err := Run(context.Background(), args, strings.NewReader(""), &out, &errOut)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("serve %v: error %v, want one saying %q", c.args, err, c.want)
		}
		if _, statErr := os.Stat(dir); !os.IsNotExist(statErr) {
			t.Errorf("serve %v: the data directory was created (%v)", c.args, statErr)
		}
	}
}

// TestGCHeadroom: the flag in MiB becomes bytes, and GOGC in the
// environment turns the pacing off.
func TestGCHeadroom(t *testing.T) {
	t.Setenv("GOGC", "")
	if got := gcHeadroom(256); got != 256<<20 {
		t.Errorf("gcHeadroom(256) = %d", got)
	}
	if got := gcHeadroom(0); got != 0 {
		t.Errorf("gcHeadroom(0) = %d", got)
	}
	t.Setenv("GOGC", "150")
	if got := gcHeadroom(256); got != 0 {
		t.Errorf("with GOGC=150, gcHeadroom(256) = %d, want 0", got)
	}
}
