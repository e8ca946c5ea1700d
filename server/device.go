package server

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"net/http"
	"sync"
	"time"

	"github.com/opensphere/sphere"
	"github.com/opensphere/sphere/api"
	"github.com/opensphere/sphere/attest"
	"github.com/opensphere/sphere/ca"
)

// deviceRouteTable is the device API. Devices first attest without a
// certificate (the evidence authenticates them); every later call uses the
// device certificate over mutual TLS.
func (s *Server) deviceRouteTable() []*route {
	rows := []struct {
		route
		h func(*route)
	}{
		{route{Method: http.MethodPost, Path: "/device/v1/challenge", Summary: "Get a single-use attestation challenge (valid 5 minutes)", Access: AccessDeviceOpen}, handle(s.deviceChallenge)},
		{route{Method: http.MethodPost, Path: "/device/v1/attest", Summary: "Send attestation evidence; a healthy device gets its 24-hour certificate", Access: AccessDeviceOpen, MaxBody: attest.MaxEvidenceBytes}, handle(s.deviceAttest)},
		{route{Method: http.MethodGet, Path: "/device/v1/whoami", Summary: "Describe the calling device (mutual TLS)", Access: AccessDevice}, handle(s.deviceWhoami)},
	}
	return finishRoutes(rows)
}

func (s *Server) deviceChallenge(c *call, in *api.ChallengeRequest) (attest.Challenge, error) {
	if err := sphere.ValidateDeviceID(in.DeviceID); err != nil {
		return attest.Challenge{}, err
	}
	return s.attest.NewChallenge(c.ctx, in.DeviceID), nil
}

func (s *Server) deviceAttest(c *call, in *attest.Evidence) (attest.Result, error) {
	if err := in.Validate(); err != nil {
		return attest.Result{}, sphere.Errorf(sphere.EInvalid, "%v", err)
	}
	return s.attest.Attest(c.ctx, in)
}

func (s *Server) deviceWhoami(c *call, _ *api.Empty) (api.DeviceSelf, error) {
	d := c.device
	out := api.DeviceSelf{DeviceID: d.ID, TenantID: d.TenantID, DeviceGroupID: d.DeviceGroupID, ProductID: d.ProductID}
	if len(c.r.TLS.PeerCertificates) > 0 {
		out.CertNotAfter = c.r.TLS.PeerCertificates[0].NotAfter
		out.PresentedCertificates = len(c.r.TLS.PeerCertificates)
	}
	return out, nil
}

// authDevice authenticates a device by its certificate: it must chain to a
// usable CA of the tenant named in its URI SAN (never just to the shared
// root, which would let one tenant's devices in as another's), be valid for
// client authentication now, name the device in its CN, and the device must
// still be claimed by that tenant and not revoked.
func (s *Server) authDevice(c *call) error {
	unauth := func(format string, args ...any) error {
		return sphere.Errorf(sphere.EUnauthenticated, "this route needs the device certificate over mutual TLS: "+format, args...)
	}
	if c.r.TLS == nil || len(c.r.TLS.PeerCertificates) == 0 {
		return unauth("none was presented; attest first to get one")
	}
	leaf := c.r.TLS.PeerCertificates[0]
	tenantID, deviceID, ok := sphere.ParseDeviceURI(leaf)
	if !ok || leaf.Subject.CommonName != deviceID {
		return unauth("it does not name a device")
	}
	trust, err := s.trust.entry(c.ctx, tenantID)
	if err != nil {
		return err
	}
	if err := s.trust.verify(trust, c.r.TLS.PeerCertificates, s.now()); err != nil {
		return unauth("it does not verify: %v", err)
	}
	dc, err := s.store.GetDeviceCaller(c.ctx, deviceID)
	if err != nil {
		if sphere.ErrorCode(err) == sphere.ENotFound {
			return unauth("the device is not registered")
		}
		return err
	}
	d := dc.Device
	if d.TenantID != tenantID {
		return unauth("the device no longer belongs to the tenant that certified it")
	}
	if d.RevokedAt != nil {
		return sphere.Errorf(sphere.EPermission, "the device was revoked: %s", d.RevokedReason)
	}
	c.device, c.update = &d, dc.Update
	return nil
}

// trustCache keeps each tenant's CA pool for a short while, so that mutual
// TLS does not read the database on every call; a new or revoked CA is seen
// within trustTTL. With each pool it remembers which device certificates
// (by their SHA-256) already verified against it, so that a device calling
// many times over one connection pays for the chain's signatures (a P-384
// verification, about a millisecond) once per trustTTL, not per request.
type trustCache struct {
	ca  *ca.Authority
	now func() time.Time
	mu  sync.Mutex
	m   map[string]*trustEntry
}

type trustEntry struct {
	pool    *x509.CertPool
	expires time.Time
	// verified maps a certificate's SHA-256 to its NotBefore and NotAfter;
	// guarded by trustCache.mu and bounded by maxVerified.
	verified map[[32]byte][2]time.Time
}

const (
	trustTTL = 30 * time.Second
	// maxVerified bounds the remembered certificates of one tenant: past
	// it, certificates are verified on every call until the pool renews.
	maxVerified = 250_000
)

func newTrustCache(a *ca.Authority, now func() time.Time) *trustCache {
	return &trustCache{ca: a, now: now, m: map[string]*trustEntry{}}
}

// entry returns the tenant's trust, read again after trustTTL.
func (t *trustCache) entry(ctx context.Context, tenantID string) (*trustEntry, error) {
	now := t.now()
	t.mu.Lock()
	e, ok := t.m[tenantID]
	t.mu.Unlock()
	if ok && now.Before(e.expires) {
		return e, nil
	}
	certs, err := t.ca.TenantTrust(ctx, tenantID)
	if err != nil {
		return nil, err
	}
	p := x509.NewCertPool()
	for _, c := range certs {
		p.AddCert(c)
	}
	e = &trustEntry{pool: p, expires: now.Add(trustTTL), verified: map[[32]byte][2]time.Time{}}
	t.mu.Lock()
	t.m[tenantID] = e
	t.mu.Unlock()
	return e, nil
}

// verify checks a presented chain (leaf first) for client authentication
// against a tenant's CAs (e) at now.
func (t *trustCache) verify(e *trustEntry, chain []*x509.Certificate, now time.Time) error {
	leaf := chain[0]
	sum := sha256.Sum256(leaf.Raw)
	t.mu.Lock()
	v, ok := e.verified[sum]
	t.mu.Unlock()
	if ok && !now.Before(v[0]) && !now.After(v[1]) {
		return nil
	}
	inter := x509.NewCertPool()
	for _, ic := range chain[1:] {
		inter.AddCert(ic)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: e.pool, Intermediates: inter, CurrentTime: now,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		return err
	}
	t.mu.Lock()
	if len(e.verified) < maxVerified {
		e.verified[sum] = [2]time.Time{leaf.NotBefore, leaf.NotAfter}
	}
	t.mu.Unlock()
	return nil
}
