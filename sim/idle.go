package sim

import (
	"context"
	"fmt"
	"net/http/httptrace"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/opensphere/sphere/api"
)

// IdleReport is the outcome of the idle scenario: the service's memory
// while every device holds an open mutual-TLS connection to it.
type IdleReport struct {
	// Connections is how many were open at once; Kept how many of them
	// still served a request after the hold, without a new handshake.
	Connections int           `json:"connections"`
	Kept        int64         `json:"kept"`
	Hold        time.Duration `json:"hold_ns"`
	// The service's RSS before the devices attested, at the end of the
	// hold (the steady state of holding them: the service parks idle
	// connections and returns the memory they no longer need), and at its
	// highest during the hold (bytes; zero when the service is not local).
	RSSBefore int64 `json:"rss_before_bytes"`
	RSSHeld   int64 `json:"rss_held_bytes"`
	RSSPeak   int64 `json:"rss_peak_bytes"`
	// PerConnection is (RSSHeld - RSSBefore) / Connections, and At100k the
	// service's RSS for 100,000 connections: measured when Connections is
	// 100,000, else RSSBefore + 100,000 * PerConnection (Extrapolated).
	PerConnection int64 `json:"rss_per_connection_bytes"`
	At100k        int64 `json:"rss_at_100k_bytes"`
	Extrapolated  bool  `json:"extrapolated"`
}

// openFileLimit is this process's limit on open files.
func openFileLimit() uint64 {
	var rl syscall.Rlimit
	if syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl) != nil {
		return 0
	}
	return rl.Cur
}

// runIdle has every device ask "who am I" over mutual TLS and keep the
// connection open, holds them all for cfg.Duration (default 10 s) while
// sampling the service's RSS every second, then asks again over the same
// connections.
// rssBefore is the service's RSS before the devices attested: what the
// connections add is counted from there, attestation's garbage included,
// so the figure errs high.
func runIdle(ctx context.Context, cfg Config, devs []*device, rssBefore int64, rep *Report) (*IdleReport, error) {
	if lim := openFileLimit(); lim > 0 && uint64(len(devs))+256 > lim {
		return nil, fmt.Errorf("%d idle connections need more open files than this process may have (%d; the service needs as many): run fewer devices, or raise the limit (ulimit -n) for both", len(devs), lim)
	}
	hold := cfg.Duration
	if hold <= 0 {
		hold = 10 * time.Second
	}
	ir := &IdleReport{Connections: len(devs), Hold: hold, RSSBefore: rssBefore}
	whoami := func(name string, kept *atomic.Int64) {
		rec := newRecorder()
		each(ctx, devs, cfg.Concurrency, 0, 0, func(d *device) {
			c := ctx
			if kept != nil {
				c = httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{GotConn: func(i httptrace.GotConnInfo) {
					if i.Reused {
						kept.Add(1)
					}
				}})
			}
			t := time.Now()
			var self api.DeviceSelf
			err := d.agent.Get(c, "/device/v1/whoami", &self)
			rec.observe(t, err)
		})
		rep.Ops = append(rep.Ops, rec.op(name))
	}
	whoami("connect (whoami)", nil)
	cfg.Progress("%d connections open; holding them %s", len(devs), hold)
	deadline := time.Now().Add(hold)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		if cfg.ServerPID > 0 {
			if st, err := ReadProc(cfg.ServerPID); err == nil {
				ir.RSSHeld, ir.RSSPeak = st.RSS, max(ir.RSSPeak, st.RSS)
			}
		}
		select {
		case <-ctx.Done():
		case <-time.After(min(time.Second, time.Until(deadline))):
		}
	}
	var kept atomic.Int64
	whoami("after the hold (whoami)", &kept)
	ir.Kept = kept.Load()
	if ir.RSSHeld > 0 && len(devs) > 0 {
		ir.PerConnection = max(0, ir.RSSHeld-ir.RSSBefore) / int64(len(devs))
		ir.At100k = ir.RSSHeld
		if len(devs) != 100_000 {
			ir.At100k, ir.Extrapolated = ir.RSSBefore+100_000*ir.PerConnection, true
		}
	}
	return ir, nil
}
