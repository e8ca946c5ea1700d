// Package agent is the device runtime's core: it measures what the device
// runs into the root of trust, attests to the security service, keeps the
// 24-hour device certificate fresh, and gives every later device call
// mutual TLS with that certificate, whose key never leaves the root of
// trust. The update engine, app supervisor and failure-report queue join
// it in their own files.
package agent

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/opensphere/sphere"
	"github.com/opensphere/sphere/api"
	"github.com/opensphere/sphere/attest"
	"github.com/opensphere/sphere/internal/backoff"
	"github.com/opensphere/sphere/report"
	"github.com/opensphere/sphere/rot"
	"github.com/opensphere/sphere/tlsutil"
)

// Config configures an Agent.
type Config struct {
	// Server is the security service's base URL, e.g. https://sphere.example.com:8443.
	Server string
	// StateDir holds the device certificate (and the root of trust's own
	// files when it is soft). Required.
	StateDir string
	// RoT is the device's root of trust. Required.
	RoT rot.RootOfTrust
	// ServerRoots are the CAs the device trusts for the service's TLS
	// certificate: provisioned with the device (see docs/agent.md). Nil
	// uses the system pool.
	ServerRoots *x509.CertPool
	// AgentBinary is the file measured as the agent; empty means the
	// running executable.
	AgentBinary string
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Logger receives the agent's logs; nil discards them.
	Logger *slog.Logger
	// HTTPTimeout bounds each call to the service; zero means 60 seconds.
	HTTPTimeout time.Duration
	// Reports is the failure-report queue (see reports.go); nil records
	// no failures.
	Reports *report.Queue
	// DialContext opens the agent's connections to the service; nil uses
	// the standard dialer (the fleet simulator spreads sockets over
	// several source addresses with it).
	DialContext func(ctx context.Context, network, addr string) (net.Conn, error)
}

// Agent is the device runtime.
type Agent struct {
	cfg      Config
	deviceID string
	log      *slog.Logger
	now      func() time.Time
	open     *http.Client // for attestation, before there is a certificate
	mtls     *http.Client // every later call: the device certificate over mutual TLS
	cert     atomic.Pointer[tls.Certificate]
	attestMu sync.Mutex // never two attestations at once
	// csr is the certificate request for the identity key, made at the
	// first attestation and sent at every one (guarded by attestMu).
	csr    []byte
	lastMu sync.Mutex
	last   attest.Result
	// images returns the OS and app images the update engine runs, for
	// Measurements; nil before there is an engine.
	images atomic.Pointer[func() []rot.Event]
	// onCheckNow is called when the service asks for an update check.
	onCheckNow atomic.Pointer[func()]
}

// certFile is where the current device certificate and its chain live.
const certFile = "device.crt"

// New makes an Agent and loads a still-valid certificate from the state dir.
func New(cfg Config) (*Agent, error) {
	if cfg.RoT == nil || cfg.StateDir == "" {
		return nil, errors.New("agent.New: a root of trust and a state dir are required")
	}
	if err := os.MkdirAll(cfg.StateDir, 0o700); err != nil {
		return nil, fmt.Errorf("agent.New: %w", err)
	}
	a := &Agent{cfg: cfg, log: cfg.Logger, now: cfg.Now}
	if a.log == nil {
		a.log = slog.New(slog.DiscardHandler)
	}
	if a.now == nil {
		a.now = time.Now
	}
	spki, err := x509.MarshalPKIXPublicKey(cfg.RoT.Identity().Public())
	if err != nil {
		return nil, fmt.Errorf("agent.New: identity key: %w", err)
	}
	a.deviceID = sphere.DeviceID(spki)
	timeout := cfg.HTTPTimeout
	if timeout == 0 {
		timeout = 60 * time.Second
	}
	base := &tls.Config{RootCAs: cfg.ServerRoots, MinVersion: tls.VersionTLS12}
	a.open = &http.Client{Timeout: timeout, Transport: transport(base, cfg.DialContext)}
	withCert := base.Clone()
	withCert.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
		if c := a.cert.Load(); c != nil {
			// The service verifies the leaf against the tenant's CAs,
			// which it holds: the chain would only cost both sides
			// bytes, and the service the memory of parsing it for as
			// long as the connection lasts. Brokers get the whole chain
			// (TLSCertificate).
			leaf := *c
			leaf.Certificate = c.Certificate[:1]
			return &leaf, nil
		}
		return &tls.Certificate{}, nil // none yet: the service answers 401
	}
	a.mtls = &http.Client{Timeout: timeout, Transport: transport(withCert, cfg.DialContext)}
	if err := a.loadCert(); err != nil {
		a.log.Warn("ignoring the stored device certificate", "err", err)
	}
	return a, nil
}

// transport is the agent's HTTP transport to its service. It speaks
// HTTP/1.1: a device makes one call at a time, so HTTP/2's multiplexing
// buys it nothing, while on the service every HTTP/2 connection costs a
// second goroutine, a frame reader and HPACK tables, which a fleet of
// connected devices multiplies (BENCHMARKS.md, the idle scenario).
func transport(tc *tls.Config, dial func(ctx context.Context, network, addr string) (net.Conn, error)) *http.Transport {
	t := http.DefaultTransport.(*http.Transport).Clone()
	tc = tc.Clone()
	tc.NextProtos = []string{"http/1.1"}
	t.TLSClientConfig = tc
	t.ForceAttemptHTTP2 = false
	t.Protocols = new(http.Protocols)
	t.Protocols.SetHTTP1(true)
	t.Proxy = nil // a device talks to its service directly
	if dial != nil {
		t.DialContext = dial
	}
	return t
}

// DeviceID is the device's id: the SHA-256 of its identity key.
func (a *Agent) DeviceID() string { return a.deviceID }

// Client is an HTTP client that authenticates as the device with its
// certificate (mutual TLS). The certificate is swapped in place at renewal.
func (a *Agent) Client() *http.Client { return a.mtls }

// TLSCertificate returns the current device certificate with its chain and
// the root of trust's identity key as its signer, for other mutual-TLS
// clients of the device (the cloud uplink); nil before the first healthy
// attestation. Call it at each handshake: renewal replaces it.
func (a *Agent) TLSCertificate() *tls.Certificate { return a.cert.Load() }

// CloseIdleConnections closes the agent's idle connections to the service.
func (a *Agent) CloseIdleConnections() {
	a.open.CloseIdleConnections()
	a.mtls.CloseIdleConnections()
}

// Certificate returns the current device certificate, or nil.
func (a *Agent) Certificate() *x509.Certificate {
	c := a.cert.Load()
	if c == nil {
		return nil
	}
	return c.Leaf
}

// LastResult returns the latest attestation result.
func (a *Agent) LastResult() attest.Result {
	a.lastMu.Lock()
	defer a.lastMu.Unlock()
	return a.last
}

// Record is the registration record a device prints at manufacture for
// `sphere device register --file`.
type Record struct {
	DeviceID             string `json:"device_id"`
	RoT                  string `json:"rot"`
	IdentityPublicKey    string `json:"identity_public_key"`
	AttestationPublicKey string `json:"attestation_public_key"`
	EKCertificate        string `json:"ek_certificate,omitempty"`
}

// IdentityRecord returns the device's registration record.
func IdentityRecord(r rot.RootOfTrust) (Record, error) {
	id, err := x509.MarshalPKIXPublicKey(r.Identity().Public())
	if err != nil {
		return Record{}, err
	}
	ak, err := x509.MarshalPKIXPublicKey(r.AttestationKey())
	if err != nil {
		return Record{}, err
	}
	rec := Record{DeviceID: sphere.DeviceID(id), RoT: string(r.Kind()),
		IdentityPublicKey: sphere.PublicKeyPEM(id), AttestationPublicKey: sphere.PublicKeyPEM(ak)}
	if ek := r.EKCertificate(); len(ek) > 0 {
		rec.EKCertificate = string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ek}))
	}
	return rec, nil
}

// Measurements returns what Measure records, without touching the root of
// trust: the agent binary and the agent's settings (service URL, kind of
// root of trust), so that a device pointed elsewhere measures differently.
// The update engine adds the OS and app images.
func (a *Agent) Measurements() ([]rot.Event, error) {
	bin := a.cfg.AgentBinary
	if bin == "" {
		var err error
		if bin, err = os.Executable(); err != nil {
			return nil, fmt.Errorf("agent: find own binary: %w", err)
		}
	}
	digest, err := fileSHA256(bin)
	if err != nil {
		return nil, fmt.Errorf("agent: measure own binary: %w", err)
	}
	settings, _ := json.Marshal(a.settings())
	sum := sha256.Sum256(settings)
	events := []rot.Event{
		{Type: "agent", Name: "sphere", Digest: digest},
		{Type: "config", Name: "agent-settings", Digest: hex.EncodeToString(sum[:])},
	}
	if images := a.images.Load(); images != nil {
		events = append(events, (*images)()...)
	}
	return events, nil
}

// setImages makes Measurements add what images returns.
func (a *Agent) setImages(images func() []rot.Event) { a.images.Store(&images) }

// OnCheckNow sets what runs when a healthy attestation's answer asks the
// device to check for updates now.
func (a *Agent) OnCheckNow(f func()) { a.onCheckNow.Store(&f) }

// Measure starts a fresh measurement log in the root of trust and records
// Measurements into it. The update engine measures again after a switch.
func (a *Agent) Measure() error {
	a.attestMu.Lock() // not while an attestation quotes the log
	defer a.attestMu.Unlock()
	events, err := a.Measurements()
	if err != nil {
		return err
	}
	if err := a.cfg.RoT.ResetMeasurements(); err != nil {
		return fmt.Errorf("agent: reset measurements: %w", err)
	}
	for _, e := range events {
		if err := a.cfg.RoT.Extend(e); err != nil {
			return fmt.Errorf("agent: measure %s: %w", e.Type, err)
		}
	}
	return nil
}

// settings is the measured part of the agent's configuration.
func (a *Agent) settings() map[string]string {
	return map[string]string{"server": strings.TrimRight(a.cfg.Server, "/"), "rot": string(a.cfg.RoT.Kind())}
}

func fileSHA256(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// Attest runs one attestation: challenge, evidence, result. A healthy
// result installs the new certificate. Stale and refused results come back
// with an *AttestError saying why.
func (a *Agent) Attest(ctx context.Context) (attest.Result, error) {
	a.attestMu.Lock()
	defer a.attestMu.Unlock()
	res, err := a.attest(ctx)
	if err != nil {
		a.log.Warn("attestation failed", "err", err)
		return res, err
	}
	a.lastMu.Lock()
	a.last = res
	a.lastMu.Unlock()
	if res.Result != sphere.AttestHealthy {
		a.log.Warn("attestation not healthy", "result", res.Result, "reason", res.Reason, "detail", res.Detail)
		a.recordAttestation(res)
		return res, &AttestError{Result: res}
	}
	if err := a.installCert(res); err != nil {
		return res, err
	}
	a.log.Info("attested; new device certificate", "not_after", res.NotAfter)
	if f := a.onCheckNow.Load(); res.CheckNow && f != nil {
		a.log.Info("the service asks for an update check now")
		(*f)()
	}
	return res, nil
}

// AttestError reports a stale or refused attestation.
type AttestError struct{ Result attest.Result }

func (e *AttestError) Error() string {
	return fmt.Sprintf("attestation %s: %s: %s", e.Result.Result, e.Result.Reason, e.Result.Detail)
}

func (a *Agent) attest(ctx context.Context) (attest.Result, error) {
	var ch attest.Challenge
	if err := a.call(ctx, a.open, "POST", "/device/v1/challenge", api.ChallengeRequest{DeviceID: a.deviceID}, &ch); err != nil {
		return attest.Result{}, fmt.Errorf("challenge: %w", err)
	}
	raw, err := attest.DecodeNonce(ch.Nonce)
	if err != nil {
		return attest.Result{}, fmt.Errorf("challenge: %w", err)
	}
	r := a.cfg.RoT
	quote, err := r.Quote(attest.QuoteNonce(raw))
	if err != nil {
		return attest.Result{}, fmt.Errorf("quote: %w", err)
	}
	certify, err := r.CertifyIdentity(attest.CertifyNonce(raw))
	if err != nil {
		return attest.Result{}, fmt.Errorf("certify: %w", err)
	}
	csr, err := a.request()
	if err != nil {
		return attest.Result{}, fmt.Errorf("csr: %w", err)
	}
	ev := attest.Evidence{DeviceID: a.deviceID, Challenge: ch.Nonce, RoT: r.Kind(), Quote: quote, EventLog: r.EventLog(),
		IdentityPublicArea: r.IdentityPublicArea(), Certify: certify, CSR: csr}
	var res attest.Result
	if err := a.call(ctx, a.open, "POST", "/device/v1/attest", ev, &res); err != nil {
		return attest.Result{}, fmt.Errorf("attest: %w", err)
	}
	return res, nil
}

// request returns the certificate request for the identity key. Its
// content never changes (CN = the device id, the identity key; the service
// takes nothing else from it), so it is signed once per process and sent
// again at each attestation: on a TPM that spares a TPM2_Sign at every
// renewal. Freshness is the quote's and the certification's, which sign
// the challenge; the request only proves that the key signs, and the
// service still checks its signature and that its key is the certified
// one. Called with attestMu held.
func (a *Agent) request() ([]byte, error) {
	if a.csr == nil {
		der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: a.deviceID}}, a.cfg.RoT.Identity())
		if err != nil {
			return nil, err
		}
		a.csr = der
	}
	return a.csr, nil
}

// call sends one JSON request to the service.
func (a *Agent) call(ctx context.Context, c *http.Client, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, strings.TrimRight(a.cfg.Server, "/")+path, body)
	if err != nil {
		return err
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode >= 300 {
		var eb api.ErrorBody
		if json.Unmarshal(data, &eb) == nil && eb.Error.Code != "" {
			return &ServiceError{Status: resp.StatusCode, Code: eb.Error.Code, Message: eb.Error.Message}
		}
		return &ServiceError{Status: resp.StatusCode, Code: "http_error", Message: strings.TrimSpace(string(data))}
	}
	if out != nil {
		return json.Unmarshal(data, out)
	}
	return nil
}

// ServiceError is an error answered by the service.
type ServiceError struct {
	Status        int
	Code, Message string
}

func (e *ServiceError) Error() string {
	return fmt.Sprintf("service: %s (%s, HTTP %d)", e.Message, e.Code, e.Status)
}

// Post sends JSON to a device API route with mutual TLS and decodes the
// answer.
func (a *Agent) Post(ctx context.Context, path string, in, out any) error {
	return a.call(ctx, a.mtls, "POST", path, in, out)
}

// getRaw fetches a device API route with mutual TLS as bytes.
func (a *Agent) getRaw(ctx context.Context, path string) ([]byte, error) {
	var raw json.RawMessage
	err := a.call(ctx, a.mtls, "GET", path, nil, &raw)
	return raw, err
}

// Get calls a device API route with mutual TLS and decodes the answer.
func (a *Agent) Get(ctx context.Context, path string, out any) error {
	return a.call(ctx, a.mtls, "GET", path, nil, out)
}

func (a *Agent) installCert(res attest.Result) error {
	pemData := []byte(res.Certificate + res.Chain)
	c, err := parseChain(pemData, a.cfg.RoT)
	if err != nil {
		return fmt.Errorf("agent: the service's certificate: %w", err)
	}
	if err := tlsutil.WriteFileAtomic(filepath.Join(a.cfg.StateDir, certFile), pemData, 0o600); err != nil {
		return err
	}
	a.cert.Store(c)
	// Connections made with the old certificate (or none) stay as they
	// were; new ones present the new certificate.
	a.mtls.CloseIdleConnections()
	return nil
}

// loadCert loads the stored certificate if it is still valid and matches
// the identity key.
func (a *Agent) loadCert() error {
	data, err := os.ReadFile(filepath.Join(a.cfg.StateDir, certFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	c, err := parseChain(data, a.cfg.RoT)
	if err != nil {
		return err
	}
	if !a.now().Before(c.Leaf.NotAfter) {
		return nil // expired: attest for a new one
	}
	a.cert.Store(c)
	return nil
}

// parseChain turns PEM (leaf first) into a tls.Certificate whose key is
// the root of trust's identity key.
func parseChain(data []byte, r rot.RootOfTrust) (*tls.Certificate, error) {
	var c tls.Certificate
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			break
		}
		if b.Type == "CERTIFICATE" {
			c.Certificate = append(c.Certificate, b.Bytes)
		}
	}
	if len(c.Certificate) == 0 {
		return nil, errors.New("no certificate")
	}
	leaf, err := x509.ParseCertificate(c.Certificate[0])
	if err != nil {
		return nil, err
	}
	if pub, ok := leaf.PublicKey.(interface{ Equal(crypto.PublicKey) bool }); !ok || !pub.Equal(r.Identity().Public()) {
		return nil, errors.New("the certificate is not for this device's identity key")
	}
	c.Leaf, c.PrivateKey = leaf, r.Identity()
	return &c, nil
}

// Schedule: attest daily (every 20 to 24 hours) and renew at about two
// thirds of the certificate's life, whichever comes first; on failure retry
// with exponential backoff and jitter.
const (
	dailyMin    = 20 * time.Hour
	dailyJitter = 4 * time.Hour
	backoffBase = 5 * time.Second
	backoffMax  = time.Hour
)

// nextAttestation is how long to wait after a healthy attestation.
func (a *Agent) nextAttestation() time.Duration {
	wait := dailyMin + backoff.Random(dailyJitter)
	if c := a.Certificate(); c != nil {
		life := c.NotAfter.Sub(c.NotBefore)
		renew := c.NotBefore.Add(life * 2 / 3).Add(-backoff.Random(life / 30))
		if d := renew.Sub(a.now()); d < wait {
			wait = d
		}
	}
	return max(wait, time.Second)
}

// retryAfter is the backoff after n consecutive failures (n >= 1).
func retryAfter(n int) time.Duration { return backoff.Exponential(n, backoffBase, backoffMax) }

// Run measures, attests at start and then on the schedule, until ctx ends.
func (a *Agent) Run(ctx context.Context) error {
	if err := a.Measure(); err != nil {
		return err
	}
	a.log.Info("agent started", "device", a.deviceID, "server", a.cfg.Server, "rot", a.cfg.RoT.Kind())
	failures := 0
	for {
		var wait time.Duration
		if _, err := a.Attest(ctx); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			failures++
			wait = retryAfter(failures)
			a.log.Info("will retry attestation", "in", wait.Round(time.Second), "failures", failures)
		} else {
			failures = 0
			wait = a.nextAttestation()
			a.log.Info("next attestation", "in", wait.Round(time.Minute))
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
	}
}
