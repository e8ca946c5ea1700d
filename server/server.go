// Package server is OpenSphere's security service over HTTP: the admin REST
// API under /api/v1 (bearer tokens, JSON, one error shape), the device API
// under /device/v1 (attestation, then mutual TLS with the device
// certificate), their OpenAPI document, /healthz, /readyz and /metrics.
// Every route is one row of a table (routes.go, attest_routes.go,
// device.go), which drives authentication, the role check, tenant scoping,
// input decoding, auditing, metrics and the OpenAPI document, so no handler
// does any of those by itself.
package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/opensphere/sphere/ca"
	"github.com/opensphere/sphere/store"
	"github.com/opensphere/sphere/updates"
	"github.com/opensphere/sphere/verifier"
)

// Config configures a Server.
type Config struct {
	// Store holds the service's state. Required.
	Store *store.Store
	// Logger receives request and error logs; nil discards them.
	Logger *slog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Version is reported by /healthz; empty means "dev".
	Version string
	// Registry receives the server's Prometheus metrics and is served at
	// /metrics; nil means a new registry with the Go and process collectors.
	Registry *prometheus.Registry
	// CA and Attest serve the device API (/device/v1) and the tenant CA
	// routes. Required.
	CA      *ca.Authority
	Attest  *verifier.Service
	Updates *updates.Service
	// ShutdownTimeout bounds how long Serve waits for requests in flight
	// after its context ends; zero means 20 seconds.
	ShutdownTimeout time.Duration
	// ParkIdleAfter is how long an idle HTTP/1.1 connection keeps its
	// goroutine and buffers before Serve parks it until its next request
	// (listener.go); zero means one second, negative never.
	ParkIdleAfter time.Duration
	// IdleTimeout closes a connection idle this long, parked or not; zero
	// means two minutes.
	IdleTimeout time.Duration
}

// Server is the security service's HTTP front.
type Server struct {
	store   *store.Store
	ca      *ca.Authority
	attest  *verifier.Service
	updates *updates.Service
	trust   *trustCache
	log     *slog.Logger
	now     func() time.Time
	version string
	routes  []*route // the admin API
	// deviceRoutes is the device API under /device/v1.
	deviceRoutes []*route
	handler      http.Handler
	metrics      *metrics
	reg          *prometheus.Registry
	ready        atomic.Bool
	stopIn       time.Duration
	parkAfter    time.Duration
	idleTimeout  time.Duration
	// crashChecked holds, by device group id, when an upload last checked
	// the group's rollout crash rate (failure_routes.go).
	crashChecked sync.Map
}

// New builds a Server and its route table.
func New(cfg Config) (*Server, error) {
	if cfg.Store == nil {
		return nil, errors.New("server.New: no store")
	}
	if cfg.CA == nil || cfg.Attest == nil || cfg.Updates == nil {
		return nil, errors.New("server.New: the CA, attestation and update services are required")
	}
	s := &Server{store: cfg.Store, ca: cfg.CA, attest: cfg.Attest, updates: cfg.Updates, log: cfg.Logger, now: cfg.Now, version: cfg.Version, reg: cfg.Registry, stopIn: cfg.ShutdownTimeout, parkAfter: cfg.ParkIdleAfter, idleTimeout: cfg.IdleTimeout}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.version == "" {
		s.version = "dev"
	}
	if s.stopIn == 0 {
		s.stopIn = 20 * time.Second
	}
	if s.idleTimeout <= 0 {
		s.idleTimeout = 2 * time.Minute
	}
	if s.parkAfter == 0 {
		s.parkAfter = defaultParkIdleAfter
	}
	if s.reg == nil {
		s.reg = NewRegistry()
	}
	var err error
	if s.metrics, err = newMetrics(s.reg); err != nil {
		return nil, fmt.Errorf("server.New: %w", err)
	}
	s.trust = newTrustCache(s.ca, s.now)
	mux := http.NewServeMux()
	s.routes = append(append(append(s.routeTable(), s.attestAdminRoutes()...), s.updateAdminRoutes()...), s.failureAdminRoutes()...)
	s.deviceRoutes = append(append(s.deviceRouteTable(), s.updateDeviceRoutes()...), s.failureDeviceRoutes()...)
	for _, rt := range append(s.routes, s.deviceRoutes...) {
		mux.Handle(rt.Method+" "+rt.Path, s.serveRoute(rt))
	}
	s.handleSystem(mux)
	mux.Handle("/", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeError(w, r, s.log, notFoundRoute(r))
	}))
	s.handler = s.withRequestID(s.withRecover(s.withAccessLog(mux)))
	s.ready.Store(true)
	return s, nil
}

// NewRegistry returns a Prometheus registry with the Go and process
// collectors, the default of Config.Registry.
func NewRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}

// Handler returns the server's HTTP handler.
func (s *Server) Handler() http.Handler { return s.handler }

// Serve answers HTTPS on ln until ctx ends, then stops taking requests and
// waits up to the shutdown timeout for those in flight. /readyz fails from
// the moment shutdown starts so that load balancers drain this replica.
// Idle HTTP/1.1 connections are parked after Config.ParkIdleAfter
// (listener.go). A nil tlsConfig serves plain HTTP, without parking.
func (s *Server) Serve(ctx context.Context, ln net.Listener, tlsConfig *tls.Config) error {
	const handshakeTimeout = 10 * time.Second
	hs := &http.Server{
		Handler:           s.handler,
		ReadHeaderTimeout: handshakeTimeout,
		ReadTimeout:       60 * time.Second,
		WriteTimeout:      120 * time.Second,
		IdleTimeout:       s.idleTimeout,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
		BaseContext:       func(net.Listener) context.Context { return context.WithoutCancel(ctx) },
	}
	var tl *tlsListener
	if tlsConfig != nil {
		var err error
		if tl, err = newTLSListener(ln, tlsConfig, handshakeTimeout, s.parkAfter, s.log, s.metrics); err != nil {
			return fmt.Errorf("server.Serve: %w", err)
		}
		ln = tl
		hs.ConnState, hs.ConnContext = connState, connContext
		defer tl.closeParked()
	}
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("server.Serve: %w", err)
	case <-ctx.Done():
	}
	s.ready.Store(false)
	s.log.Info("shutting down; draining requests in flight", "timeout", s.stopIn)
	sctx, cancel := context.WithTimeout(context.Background(), s.stopIn)
	defer cancel()
	if err := hs.Shutdown(sctx); err != nil {
		hs.Close()
		return fmt.Errorf("server.Serve: shutdown: %w", err)
	}
	return nil
}
