//go:build !agentonly

package cli

import (
	"crypto/tls"
	"io"
	"net/http"
	"strings"
	"testing"
)

// TestServeMemoryReleaseMetric: `sphere serve` runs the spare-heap releaser
// by default and serves its counter; --release-idle-memory=false turns it
// off.
func TestServeMemoryReleaseMetric(t *testing.T) {
	for _, c := range []struct {
		args []string
		want bool
	}{{nil, true}, {[]string{"--release-idle-memory=false"}, false}} {
		svc := startService(t, t.TempDir(), c.args...)
		pool, err := readPool("--ca-file", svc.caFile)
		if err != nil {
			t.Fatal(err)
		}
		hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
		resp, err := hc.Get(svc.url + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !strings.Contains(string(body), "go_goroutines") {
			t.Fatalf("GET /metrics: %s\n%.300s", resp.Status, body)
		}
		if got := strings.Contains(string(body), "sphere_memory_releases_total"); got != c.want {
			t.Errorf("serve %v: sphere_memory_releases_total served = %v, want %v", c.args, got, c.want)
		}
		svc.stop()
	}
}
