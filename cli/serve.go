//go:build !agentonly

package cli

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/cobra"

	"github.com/opensphere/sphere"
	"github.com/opensphere/sphere/blob"
	"github.com/opensphere/sphere/ca"
	"github.com/opensphere/sphere/internal/gcpace"
	"github.com/opensphere/sphere/internal/memrelease"
	"github.com/opensphere/sphere/server"
	"github.com/opensphere/sphere/store"
	"github.com/opensphere/sphere/tlsutil"
	"github.com/opensphere/sphere/updates"
	"github.com/opensphere/sphere/verifier"
)

// serveFlags are the options of `sphere serve`.
type serveFlags struct {
	addr, dataDir, db      string
	tlsCert, tlsKey        string
	kekFile                string
	retailEvalLead         time.Duration
	hosts                  []string
	logLevel, logFormat    string
	adminUser, firstTenant string
	shutdownTimeout        time.Duration
	parkIdleAfter          time.Duration
	idleTimeout            time.Duration
	failureRetention       time.Duration
	pprofAddr              string
	releaseIdleMemory      bool
	gcHeadroomMiB          int
}

func (a *app) serveCommand() *cobra.Command {
	var f serveFlags
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the OpenSphere security service",
		Long: `Run the security service: the admin API under /api/v1, /healthz, /readyz and
/metrics, over HTTPS.

With no flags it keeps everything under ./sphere-data: a SQLite database
(sphere.db) and a self-signed server certificate (tls/server.crt, made on first
start). Pass --db postgres://... to keep state in PostgreSQL instead (any number
of replicas may share it), and --tls-cert/--tls-key to use your own certificate.

On the first start against an empty database it creates the operator user
"admin", a first tenant "Default" where admin is Administrator, and prints
admin's API token once. Only its hash is stored. If it is lost, run
` + "`sphere admin recover-token`" + ` on the service's host.

SIGINT or SIGTERM stops taking new requests and drains those in flight.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return a.serve(cmd, f) },
	}
	fl := cmd.Flags()
	fl.StringVar(&f.addr, "addr", "127.0.0.1:8443", "address to listen on; use :8443 to accept devices and admins from other hosts")
	fl.StringVar(&f.dataDir, "data-dir", "./sphere-data", "directory for the SQLite database and generated TLS material")
	fl.StringVar(&f.db, "db", "", "database: empty for SQLite in --data-dir, or postgres://user@host:5432/db")
	fl.StringVar(&f.tlsCert, "tls-cert", "", "server certificate chain (PEM); empty makes a self-signed one in --data-dir/tls")
	fl.StringVar(&f.tlsKey, "tls-key", "", "server private key (PEM) for --tls-cert")
	fl.StringVar(&f.kekFile, "kek-file", "", "key-encryption key that seals CA keys at rest (64 hex characters, mode 0600); default --data-dir/kek, made on the first start")
	fl.StringSliceVar(&f.hosts, "hostname", nil, "extra DNS names or IPs for the self-signed certificate (localhost, 127.0.0.1 and ::1 are always in)")
	fl.StringVar(&f.logLevel, "log-level", "info", "debug, info, warn or error")
	fl.StringVar(&f.logFormat, "log-format", "text", "text or json")
	fl.StringVar(&f.adminUser, "bootstrap-user", "admin", "name of the operator user created on first start")
	fl.StringVar(&f.firstTenant, "bootstrap-tenant", "Default", "name of the tenant created on first start")
	fl.DurationVar(&f.retailEvalLead, "retail-eval-lead", 14*24*time.Hour, "how much earlier RetailEval device groups get an OS release than Retail groups")
	fl.DurationVar(&f.shutdownTimeout, "shutdown-timeout", 20*time.Second, "how long to drain requests in flight on SIGINT/SIGTERM")
	fl.DurationVar(&f.idleTimeout, "idle-timeout", 2*time.Minute, "close a keep-alive connection idle this long (devices that hold their connection need more)")
	fl.DurationVar(&f.parkIdleAfter, "park-idle-after", time.Second, "park an idle device connection (HTTP/1.1) after this long, freeing its goroutine and buffers until its next request (Linux); 0 never parks")
	fl.DurationVar(&f.failureRetention, "failure-report-retention", 90*24*time.Hour, "how long failure reports are kept after they arrive (checked hourly)")
	fl.BoolVar(&f.releaseIdleMemory, "release-idle-memory", true, "when the service goes quiet with much spare heap (after a fleet reconnected, say), collect it and return it to the system")
	fl.IntVar(&f.gcHeadroomMiB, "gc-headroom-mib", 256, "let the heap grow this many MiB beyond its live data between collections (up to 5x a small heap; Go's default pacing once the live heap is larger), so that a busy service collects less often; 0 keeps Go's default, and so does GOGC set in the environment")
	fl.StringVar(&f.pprofAddr, "pprof-addr", "", "serve Go's pprof profiles on this loopback address (e.g. 127.0.0.1:6060) for profiling; off by default")
	return cmd
}

// gcHeadroom is the collector's headroom in bytes for a --gc-headroom-mib
// of mib: none when GOGC is set in the environment, whose setting wins.
func gcHeadroom(mib int) uint64 {
	if os.Getenv("GOGC") != "" || mib <= 0 {
		return 0
	}
	return uint64(mib) << 20
}

// dsnFor returns the database to open: --db, or SQLite in the data dir.
func dsnFor(dataDir, db string) string {
	if db != "" {
		return db
	}
	return filepath.Join(dataDir, "sphere.db")
}

func (a *app) serve(cmd *cobra.Command, f serveFlags) error {
	ctx := cmd.Context()
	log, err := newLogger(a.stderr, f.logLevel, f.logFormat)
	if err != nil {
		return err
	}
	if (f.tlsCert == "") != (f.tlsKey == "") {
		return errors.New("--tls-cert and --tls-key go together")
	}
	if f.idleTimeout <= 0 {
		return fmt.Errorf("--idle-timeout must be positive, got %s", f.idleTimeout)
	}
	if f.gcHeadroomMiB < 0 {
		return fmt.Errorf("--gc-headroom-mib must be 0 or more, not %d", f.gcHeadroomMiB)
	}
	if err := os.MkdirAll(f.dataDir, 0o700); err != nil {
		return fmt.Errorf("data dir: %w", err)
	}
	st, err := store.Open(ctx, store.Config{DSN: dsnFor(f.dataDir, f.db), Logger: log})
	if err != nil {
		return err
	}
	defer st.Close()

	var cert tls.Certificate
	caHint := ""
	if f.tlsCert != "" {
		if cert, err = tls.LoadX509KeyPair(f.tlsCert, f.tlsKey); err != nil {
			return fmt.Errorf("TLS certificate: %w", err)
		}
	} else {
		var info tlsutil.SelfSigned
		cert, info, err = tlsutil.LoadOrCreateSelfSigned(filepath.Join(f.dataDir, "tls"), f.hosts, time.Now())
		if err != nil {
			return err
		}
		if info.Created {
			log.Info("created a self-signed server certificate", "cert", info.CertFile)
		}
		caHint = info.CertFile
	}

	authority, kek, err := openAuthority(ctx, st, f.dataDir, f.kekFile, log)
	if err != nil {
		return err
	}
	blobs, err := blob.NewFS(filepath.Join(f.dataDir, "blobs"))
	if err != nil {
		return err
	}
	upd, err := updates.New(updates.Config{Store: st, Blobs: blobs, KEK: kek, Log: log, RetailEvalLead: f.retailEvalLead, GroupCacheTTL: time.Second})
	if err != nil {
		return err
	}
	att, err := verifier.New(verifier.Config{Store: st, CA: authority, MACKey: kek.Derive("challenge mac"), Images: upd, Logger: log})
	if err != nil {
		return err
	}
	secret, err := st.Bootstrap(ctx, f.adminUser, f.firstTenant)
	if err != nil {
		return err
	}
	reg := server.NewRegistry()
	srv, err := server.New(server.Config{Store: st, CA: authority, Attest: att, Updates: upd, Logger: log, Version: Version, ShutdownTimeout: f.shutdownTimeout, ParkIdleAfter: parkAfter(f.parkIdleAfter), IdleTimeout: f.idleTimeout, Registry: reg})
	if err != nil {
		return err
	}
	if f.releaseIdleMemory {
		releases := prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sphere_memory_releases_total",
			Help: "Times the quiet service collected its spare heap and returned it to the system (--release-idle-memory).",
		})
		reg.MustRegister(releases)
		go memrelease.Run(ctx, memrelease.Config{OnRelease: func(spare uint64, took time.Duration) {
			releases.Inc()
			log.Debug("returned spare heap to the system", "spare_mib", spare>>20, "took", took)
		}})
	}
	go gcpace.Run(ctx, gcpace.Config{Headroom: gcHeadroom(f.gcHeadroomMiB), OnChange: func(percent int) {
		log.Debug("collector pacing", "gogc", percent)
	}})
	if f.pprofAddr != "" {
		if err := servePprof(ctx, f.pprofAddr, log); err != nil {
			return err
		}
	}
	ln, err := net.Listen("tcp", f.addr)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	url := "https://" + listenURLHost(ln.Addr())
	fmt.Fprintf(a.stdout, "OpenSphere %s listening on %s (database: %s)\n", Version, url, st.Dialect())
	if secret != "" {
		login := fmt.Sprintf("sphere login --server %s --token %s", url, secret)
		if caHint != "" {
			login += " --ca-file " + caHint
		}
		fmt.Fprintf(a.stdout, `
First start: created operator %q, Administrator of tenant %q.
Its API token is shown only this once and stored only as a hash:

  %s

Log in with:

  %s

`, f.adminUser, f.firstTenant, secret, login)
	}
	tc := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	// Devices present their certificate to the same listener; the device
	// API verifies it per request against the tenant's CAs.
	tc.ClientAuth = tls.RequestClientCert
	log.Info("serving", "addr", ln.Addr().String(), "db", st.Dialect(), "version", Version)
	if f.failureRetention < time.Hour {
		return fmt.Errorf("--failure-report-retention must be at least 1h, got %s", f.failureRetention)
	}
	go maintain(ctx, st, authority, upd, f.failureRetention, log)
	err = srv.Serve(ctx, ln, tc)
	log.Info("stopped")
	return err
}

// parkAfter maps --park-idle-after to server.Config.ParkIdleAfter, where
// zero means the default and negative never.
func parkAfter(d time.Duration) time.Duration {
	if d <= 0 {
		return -1
	}
	return d
}

// listenURLHost turns a listener address into the host:port to put in a
// URL: a wildcard address becomes 127.0.0.1 so that the printed login
// command works on this host.
func listenURLHost(addr net.Addr) string {
	host, port, _ := net.SplitHostPort(addr.String())
	if ip := net.ParseIP(host); ip == nil || ip.IsUnspecified() {
		host = "127.0.0.1"
	}
	if strings.Contains(host, ":") {
		host = "[" + host + "]"
	}
	return host + ":" + port
}

// openAuthority opens the key-encryption key and the certificate authority.
// The KEK file is made only on the very first start (no root CA in the
// database yet); later a missing file is an error, so that a replica with
// the wrong or no KEK never starts.
func openAuthority(ctx context.Context, st *store.Store, dataDir, kekFile string, log *slog.Logger) (*ca.Authority, *ca.KEK, error) {
	if kekFile == "" {
		kekFile = filepath.Join(dataDir, "kek")
	}
	_, err := st.ServiceCA(ctx)
	first := sphere.ErrorCode(err) == sphere.ENotFound
	if err != nil && !first {
		return nil, nil, err
	}
	kek, created, err := ca.LoadOrCreateKEK(kekFile, first)
	if err != nil {
		if !first {
			err = fmt.Errorf("%w; this database's CA keys are sealed with the key-encryption key made on its first start: pass it with --kek-file", err)
		}
		return nil, nil, err
	}
	if created {
		log.Warn("created the key-encryption key; back it up: without it the CA keys cannot be opened", "file", kekFile)
	}
	authority, err := ca.New(ctx, ca.Config{Store: st, KEK: kek, Logger: log})
	return authority, kek, err
}

// maintain rotates tenant CAs, forgets expired challenges, moves rollouts
// on, keeps TUF metadata fresh and deletes failure reports older than
// retention, hourly.
func maintain(ctx context.Context, st *store.Store, authority *ca.Authority, upd *updates.Service, retention time.Duration, log *slog.Logger) {
	t := time.NewTicker(time.Hour)
	defer t.Stop()
	for {
		if err := authority.RotateAll(ctx); err != nil && ctx.Err() == nil {
			log.Error("tenant CA rotation", "err", err)
		}
		if _, err := st.PurgeNonces(ctx); err != nil && ctx.Err() == nil {
			log.Error("purging used challenges", "err", err)
		}
		if err := upd.Maintain(ctx); err != nil && ctx.Err() == nil {
			log.Error("update maintenance (rollouts, OS feeds, TUF timestamps)", "err", err)
		}
		if n, err := st.PurgeFailureReports(ctx, time.Now().Add(-retention)); err != nil && ctx.Err() == nil {
			log.Error("failure-report retention", "err", err)
		} else if n > 0 {
			log.Info("deleted failure reports past retention", "reports", n, "retention", retention)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// servePprof serves net/http/pprof on a loopback address until ctx ends.
// Profiles show the service's internals, so it refuses any other address.
func servePprof(ctx context.Context, addr string, log *slog.Logger) error {
	host, _, err := net.SplitHostPort(addr)
	if ip := net.ParseIP(host); err != nil || ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("--pprof-addr %q must be a loopback IP and port, such as 127.0.0.1:6060", addr)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("pprof listen: %w", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	hs := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		<-ctx.Done()
		hs.Close()
	}()
	go hs.Serve(ln)
	log.Info("serving pprof", "addr", ln.Addr().String())
	return nil
}
