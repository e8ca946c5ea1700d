// Package verifier is the service side of remote attestation: stateless,
// single-use challenges; verification of a device's evidence link by link
// (challenge, registration and claim, root-of-trust kind, quote, event
// log, identity certification, CSR); the policy that decides healthy,
// stale or refused; and, when healthy, the device certificate from package
// ca. The wire types and the pure cryptographic checks it shares with the
// agent are in package attest, which links no database.
package verifier

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/opensphere/sphere"
	"github.com/opensphere/sphere/attest"
	"github.com/opensphere/sphere/ca"
	"github.com/opensphere/sphere/rot"
	"github.com/opensphere/sphere/store"
)

// Config configures a Service.
type Config struct {
	Store *store.Store  // required
	CA    *ca.Authority // required
	// MACKey authenticates challenges; every replica needs the same one
	// (derive it from the KEK). Required, at least 32 bytes.
	MACKey []byte
	// Images judges measured OS and app images ("os-image" and
	// "app-image" events, whose digest is the image id) against the
	// device's deployments and OS feed, and learns from a healthy
	// attestation that a device runs its deployment (package updates
	// implements it). Nil refuses every image measurement as unknown.
	Images ImageJudge
	// Now is the clock; nil means time.Now.
	Now    func() time.Time
	Logger *slog.Logger
}

// ImageJudge decides about the images a device measured.
type ImageJudge interface {
	// ImageAllowed reports whether dev may run the image: it is in its
	// group's current or previous deployment, or a published OS release.
	ImageAllowed(ctx context.Context, dev sphere.Device, kind, imageID string) (bool, error)
	// Verified tells that a healthy attestation measured these images.
	Verified(ctx context.Context, dev sphere.Device, imageIDs []string) error
}

// Service verifies evidence and issues certificates.
type Service struct {
	st     *store.Store
	ca     *ca.Authority
	images ImageJudge
	macKey []byte
	now    func() time.Time
	log    *slog.Logger
}

// New makes a Service.
func New(cfg Config) (*Service, error) {
	if cfg.Store == nil || cfg.CA == nil || len(cfg.MACKey) < 32 {
		return nil, errors.New("verifier.New: store, CA and a 32-byte MAC key are required")
	}
	s := &Service{st: cfg.Store, ca: cfg.CA, images: cfg.Images, macKey: cfg.MACKey, now: cfg.Now, log: cfg.Logger}
	if s.now == nil {
		s.now = time.Now
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	return s, nil
}

// Attest verifies evidence and decides. Refusals are results, not errors;
// an error means the service could not decide (a database failure) and the
// device should retry. Every decision about a registered device is
// recorded on it.
func (s *Service) Attest(ctx context.Context, ev *attest.Evidence) (attest.Result, error) {
	res, at, issued, nonce, err := s.decide(ctx, ev)
	if err != nil {
		return attest.Result{}, err
	}
	var dev *sphere.Device
	if at != nil {
		dev = &at.Device
		// "Check now" reaches the device at its next contact: this one.
		res.CheckNow = at.CheckNow && res.Result != sphere.AttestRefused
	}
	res.DeviceID = ev.DeviceID
	res.At = s.now().UTC()
	if dev != nil {
		var cert *store.IssuedCert
		if issued != nil {
			cert = issued.Record()
		}
		// One commit marks the challenge used and records the result.
		fresh, err := s.st.RecordAnswer(ctx, nonce, dev.ID, res.Attestation, cert)
		if err != nil {
			return attest.Result{}, err
		}
		if !fresh {
			// A replay: the certificate made for it is dropped unseen.
			res = attest.Refuse(attest.ReasonNonceReplayed, "this challenge was already answered")
			res.DeviceID, res.At = ev.DeviceID, s.now().UTC()
			if err := s.st.RecordAttestation(ctx, dev.ID, res.Attestation, nil); err != nil {
				return attest.Result{}, err
			}
		}
		if res.Result == sphere.AttestHealthy && s.images != nil {
			if err := s.images.Verified(ctx, *dev, measuredImages(ev.EventLog)); err != nil {
				return attest.Result{}, err
			}
		}
	}
	lvl := slog.LevelInfo
	if res.Result == sphere.AttestRefused {
		lvl = slog.LevelWarn
	}
	s.log.Log(ctx, lvl, "attestation", "device", ev.DeviceID, "result", res.Result, "reason", res.Reason, "detail", res.Detail)
	return res, nil
}

// measuredImages lists the OS and app image ids of an event log.
func measuredImages(events []rot.Event) []string {
	var out []string
	for _, e := range events {
		if e.Type == attest.EventOSImage || e.Type == attest.EventAppImage {
			out = append(out, e.Digest)
		}
	}
	return out
}

// decide judges evidence. The challenge it checks is marked used by Attest
// when it records the result (n, nil when the challenge is not ours), so
// that an attestation costs one commit; a replay is caught there. The
// device is read once, with its group's policy (at, nil when it is not
// registered).
func (s *Service) decide(ctx context.Context, ev *attest.Evidence) (res attest.Result, at *store.Attestee, iss *ca.Issued, n *store.Nonce, err error) {
	// 1. The challenge: ours, for this device, and fresh (Attest checks
	// that it is unused).
	challenge, expires, reason := s.checkChallenge(ev.Challenge, ev.DeviceID)
	if reason != "" {
		at, err := s.registered(ctx, ev.DeviceID)
		return attest.Refuse(reason, "the challenge is not valid for this device or has expired; ask for a new one"), at, nil, nil, err
	}
	n = &store.Nonce{Hash: nonceHash(challenge), Expires: expires}
	res, at, iss, err = s.judge(ctx, ev, challenge)
	return res, at, iss, n, err
}

// judge runs steps 2 to 7 of the decision for a valid challenge.
func (s *Service) judge(ctx context.Context, ev *attest.Evidence, challenge []byte) (attest.Result, *store.Attestee, *ca.Issued, error) {
	// 2. The device: registered, claimed, in a group, not revoked.
	at, err := s.registered(ctx, ev.DeviceID)
	if err != nil {
		return attest.Result{}, nil, nil, err
	}
	if at == nil {
		return attest.Refuse(attest.ReasonUnregistered, "device %s is not registered", ev.DeviceID), nil, nil, nil
	}
	dev := &at.Device
	switch {
	case dev.TenantID == "":
		return attest.Refuse(attest.ReasonUnclaimed, "the device is not claimed by any tenant"), at, nil, nil
	case dev.RevokedAt != nil:
		return attest.Refuse(attest.ReasonRevoked, "the device was revoked: %s", dev.RevokedReason), at, nil, nil
	case dev.DeviceGroupID == "":
		return attest.Refuse(attest.ReasonUnassigned, "the device is in no device group; assign it to one"), at, nil, nil
	}
	tenant := s.st.Tenant(dev.TenantID)

	// 3. The root of trust: what the manufacturer registered, and what
	// the group demands.
	if string(ev.RoT) != dev.RoT {
		return attest.Refuse(attest.ReasonRoTMismatch, "the evidence claims a %s root of trust but the device was registered with %s", ev.RoT, dev.RoT), at, nil, nil
	}
	if at.RequireHardwareRoT && dev.RoT != string(rot.KindTPM) {
		return attest.Refuse(attest.ReasonHardwareRequired, "device group %q requires a hardware root of trust; this device's is %s", at.GroupName, dev.RoT), at, nil, nil
	}

	// 4 and 5. The cryptographic chain from the registered keys to the CSR.
	ak, _, err := sphere.ParsePublicKey("attestation key", []byte(dev.AttestationPublicKey))
	if err != nil {
		return attest.Result{}, nil, nil, fmt.Errorf("verifier: stored attestation key of %s: %w", dev.ID, err)
	}
	regID, _, err := sphere.ParsePublicKey("identity key", []byte(dev.IdentityPublicKey))
	if err != nil {
		return attest.Result{}, nil, nil, fmt.Errorf("verifier: stored identity key of %s: %w", dev.ID, err)
	}
	csrKey, refusal := attest.VerifyChain(ak, regID, ev, challenge)
	if refusal != nil {
		return *refusal, at, nil, nil
	}

	// 6. The software: every measurement allowed by the tenant.
	if res, ok, err := s.judgeMeasurements(ctx, tenant, *dev, ev.EventLog); err != nil || !ok {
		return res, at, nil, err
	}

	// 7. Healthy: the certificate.
	iss, err := s.ca.IssueDevice(ctx, dev.TenantID, dev.ID, csrKey)
	if err != nil {
		return attest.Result{}, nil, nil, err
	}
	res := attest.Result{Attestation: sphere.Attestation{Result: sphere.AttestHealthy}, NotAfter: iss.Cert.NotAfter,
		Certificate: pemCert(iss.Cert)}
	for _, c := range iss.Chain {
		res.Chain += pemCert(c)
	}
	return res, at, &iss, nil
}

// registered returns the device, or nil if it is not registered.
func (s *Service) registered(ctx context.Context, id string) (*store.Attestee, error) {
	a, err := s.st.GetAttestee(ctx, id)
	switch sphere.ErrorCode(err) {
	case "":
		return &a, nil
	case sphere.ENotFound, sphere.EInvalid:
		return nil, nil
	}
	return nil, err
}

// judgeMeasurements applies the tenant's allowlist to every measured
// item: an unknown one refuses the device, a deprecated one makes it stale
// (genuine, may fetch updates, gets no certificate). Image measurements
// will be judged against the device's deployments here as well.
func (s *Service) judgeMeasurements(ctx context.Context, tenant *store.TenantStore, dev sphere.Device, events []rot.Event) (attest.Result, bool, error) {
	// The allowlist entries of every item that is not an image, in one
	// read; the events are then judged in their order.
	var keys []store.MeasurementKey
	for _, e := range events {
		if e.Type != attest.EventOSImage && e.Type != attest.EventAppImage {
			keys = append(keys, store.MeasurementKey{Type: e.Type, Digest: e.Digest})
		}
	}
	allowed, err := tenant.LookupMeasurements(ctx, keys)
	if err != nil {
		return attest.Result{}, false, err
	}
	sawAgent := false
	var stale []string
	for _, e := range events {
		sawAgent = sawAgent || e.Type == "agent"
		if e.Type == attest.EventOSImage || e.Type == attest.EventAppImage {
			ok := false
			if s.images != nil {
				var err error
				if ok, err = s.images.ImageAllowed(ctx, dev, strings.TrimSuffix(e.Type, "-image"), e.Digest); err != nil {
					return attest.Result{}, false, err
				}
			}
			if !ok {
				return attest.Refuse(attest.ReasonUnknownSoftware, "%s %q (image %s) is neither in the device group's deployments nor an OS release", e.Type, e.Name, e.Digest), false, nil
			}
			continue
		}
		m, ok := allowed[store.MeasurementKey{Type: e.Type, Digest: e.Digest}]
		if !ok {
			return attest.Refuse(attest.ReasonUnknownSoftware, "%s %q with SHA-256 %s is not allowed in this tenant", e.Type, e.Name, e.Digest), false, nil
		}
		if m.Status == sphere.MeasurementDeprecated {
			stale = append(stale, fmt.Sprintf("%s %q", e.Type, e.Name))
		}
	}
	if !sawAgent {
		return attest.Refuse(attest.ReasonUnknownSoftware, "the event log has no measurement of the agent"), false, nil
	}
	if len(stale) > 0 {
		return attest.Result{Attestation: sphere.Attestation{Result: sphere.AttestStale, Reason: attest.ReasonStaleSoftware,
			Detail: fmt.Sprintf("deprecated software: %v; update the device", stale)}}, false, nil
	}
	return attest.Result{}, true, nil
}

func pemCert(c *x509.Certificate) string {
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw}))
}
