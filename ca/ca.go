// Package ca is the service's certificate authority: a root CA (P-384)
// made on first start, a CA per tenant (P-256, two years) that rotates by
// itself, and the 24-hour device certificates issued after a healthy
// attestation. Private keys live in the store sealed with the KEK and are
// opened only in memory here; nothing in this package returns one.
//
// Tenant CA rotation (DESIGN.md): a successor is made 90 days before the
// active CA expires and becomes active 45 days later; relying parties trust
// every unexpired, unrevoked tenant CA (the chain bundle), so devices with
// certificates from either CA keep working through the overlap. All of it
// runs off an injectable clock.
package ca

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"net/url"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/opensphere/sphere"
	"github.com/opensphere/sphere/store"
)

// Lifetimes and the rotation schedule.
const (
	RootLifetime     = 20 * 365 * 24 * time.Hour
	TenantCALifetime = 730 * 24 * time.Hour
	RotateBefore     = 90 * 24 * time.Hour // make a successor this long before expiry
	ActivateAfter    = 45 * 24 * time.Hour // the successor becomes active this long after it is made
	DeviceLifetime   = 24 * time.Hour
	Backdate         = 5 * time.Minute // NotBefore is set this far back for clock skew
	ProofLifetime    = 7 * 24 * time.Hour
)

// CA states.
const (
	StateActive   = "Active"
	StateInactive = "Inactive"
	StateExpired  = "Expired"
	StateRevoked  = "Revoked"
)

// Config configures an Authority.
type Config struct {
	Store *store.Store // required
	KEK   *KEK         // required
	// Now is the clock; nil means time.Now.
	Now    func() time.Time
	Logger *slog.Logger
}

// Authority issues and rotates certificates.
type Authority struct {
	st       *store.Store
	kek      *KEK
	now      func() time.Time
	log      *slog.Logger
	root     *x509.Certificate
	rootKey  *ecdsa.PrivateKey
	mu       sync.Mutex
	keyCache map[string]*ecdsa.PrivateKey // tenant CA id -> opened key
	// certCache holds parsed tenant CA certificates by CA id: a CA's
	// certificate never changes, and every issuance reads the tenant's
	// CAs (their states must be current, so the records are read each
	// time; only the parsing is kept).
	certCache map[string]*x509.Certificate
}

// New loads the root CA, creating it on the first start.
func New(ctx context.Context, cfg Config) (*Authority, error) {
	if cfg.Store == nil || cfg.KEK == nil {
		return nil, errors.New("ca.New: store and KEK are required")
	}
	a := &Authority{st: cfg.Store, kek: cfg.KEK, now: cfg.Now, log: cfg.Logger, keyCache: map[string]*ecdsa.PrivateKey{},
		certCache: map[string]*x509.Certificate{}}
	if a.now == nil {
		a.now = time.Now
	}
	if a.log == nil {
		a.log = slog.New(slog.DiscardHandler)
	}
	rec, err := a.st.ServiceCA(ctx)
	if sphere.ErrorCode(err) == sphere.ENotFound {
		certDER, sealed, err := a.newRoot()
		if err != nil {
			return nil, err
		}
		if rec, err = a.st.CreateServiceCA(ctx, certDER, sealed); err != nil {
			return nil, err
		}
		a.log.Info("created the service root CA")
	} else if err != nil {
		return nil, err
	}
	if a.root, err = x509.ParseCertificate(rec.CertDER); err != nil {
		return nil, fmt.Errorf("ca.New: root certificate: %w", err)
	}
	if a.rootKey, err = a.openKey(rec.KeySealed, "root"); err != nil {
		return nil, fmt.Errorf("ca.New: root key: %w", err)
	}
	return a, nil
}

func (a *Authority) newRoot() (certDER, sealed []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	now := a.now()
	tmpl := &x509.Certificate{
		SerialNumber:          randomSerial(),
		Subject:               pkix.Name{CommonName: "OpenSphere Service Root CA", Organization: []string{"OpenSphere"}},
		NotBefore:             now.Add(-Backdate),
		NotAfter:              now.Add(RootLifetime),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLen:            1,
	}
	if certDER, err = x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key); err != nil {
		return nil, nil, fmt.Errorf("ca: create root: %w", err)
	}
	return certDER, a.sealKey(key, "root"), nil
}

func (a *Authority) sealKey(k *ecdsa.PrivateKey, label string) []byte {
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		panic(err) // an ECDSA key always marshals
	}
	return a.kek.Seal(der, label)
}

func (a *Authority) openKey(sealed []byte, label string) (*ecdsa.PrivateKey, error) {
	der, err := a.kek.Open(sealed, label)
	if err != nil {
		return nil, err
	}
	k, err := x509.ParsePKCS8PrivateKey(der)
	if err != nil {
		return nil, err
	}
	ek, ok := k.(*ecdsa.PrivateKey)
	if !ok {
		return nil, errors.New("sealed key is not ECDSA")
	}
	return ek, nil
}

// Root returns the service root CA certificate.
func (a *Authority) Root() *x509.Certificate { return a.root }

func randomSerial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		panic(err)
	}
	return n.Add(n, big.NewInt(1)) // never zero
}

// Thumbprint is the lowercase hex SHA-256 of a certificate's DER, the form
// clouds show.
func Thumbprint(c *x509.Certificate) string {
	sum := sha256.Sum256(c.Raw)
	return hex.EncodeToString(sum[:])
}

// TenantCA is a tenant CA as operators see it.
type TenantCA struct {
	ID          string            `json:"id"`
	Thumbprint  string            `json:"thumbprint"`
	State       string            `json:"state"`
	NotBefore   time.Time         `json:"not_before"`
	NotAfter    time.Time         `json:"not_after"`
	ActivatesAt time.Time         `json:"activates_at"`
	RevokedAt   *time.Time        `json:"revoked_at,omitempty"`
	Subject     string            `json:"subject"`
	Cert        *x509.Certificate `json:"-"`
	rec         store.CARecord
}

// states assigns each CA its state at now: Revoked and Expired first; the
// newest CA whose activation time has come is Active; the rest Inactive.
func (a *Authority) states(recs []store.CARecord, now time.Time) ([]TenantCA, error) {
	out := make([]TenantCA, len(recs))
	active := -1
	for i, r := range recs {
		c, err := a.parseCA(r)
		if err != nil {
			return nil, fmt.Errorf("tenant CA %s: %w", r.ID, err)
		}
		out[i] = TenantCA{ID: r.ID, Thumbprint: r.Thumbprint, NotBefore: r.NotBefore, NotAfter: r.NotAfter,
			ActivatesAt: r.ActivatesAt, RevokedAt: r.RevokedAt, Subject: c.Subject.String(), Cert: c, rec: r, State: StateInactive}
		switch {
		case r.RevokedAt != nil:
			out[i].State = StateRevoked
		case !now.Before(r.NotAfter):
			out[i].State = StateExpired
		case !now.Before(r.ActivatesAt):
			if active < 0 || !r.ActivatesAt.Before(recs[active].ActivatesAt) {
				active = i
			}
		}
	}
	if active >= 0 {
		out[active].State = StateActive
	}
	return out, nil
}

// TenantCAs lists a tenant's CAs with their states, oldest first.
func (a *Authority) TenantCAs(ctx context.Context, tenantID string) ([]TenantCA, error) {
	recs, err := a.st.TenantCAs(ctx, tenantID)
	if err != nil {
		return nil, err
	}
	return a.states(recs, a.now())
}

// Rotate makes sure the tenant has an Active CA and, once the active one is
// within RotateBefore of expiry, a successor. It is cheap when there is
// nothing to do; the service calls it before issuing and periodically.
func (a *Authority) Rotate(ctx context.Context, tenantID string) error {
	cas, err := a.TenantCAs(ctx, tenantID)
	if err != nil {
		return err
	}
	if due, _ := rotationDue(cas, a.now()); !due {
		return nil
	}
	rec, err := a.newTenantCA(tenantID, cas)
	if err != nil {
		return err
	}
	added, err := a.st.AddTenantCA(ctx, rec, func(existing []store.CARecord) bool {
		cur, err := a.states(existing, a.now())
		if err != nil {
			return false
		}
		due, _ := rotationDue(cur, a.now())
		return due
	})
	if err != nil {
		return err
	}
	if added {
		a.log.Info("created a tenant CA", "tenant", tenantID, "ca", rec.ID, "activates_at", rec.ActivatesAt, "not_after", rec.NotAfter)
	}
	return nil
}

// rotationDue says whether a new CA is needed, and which CA is active.
func rotationDue(cas []TenantCA, now time.Time) (bool, *TenantCA) {
	var active *TenantCA
	for i := range cas {
		if cas[i].State == StateActive {
			active = &cas[i]
		}
	}
	if active == nil {
		// No active CA: due unless a successor is already waiting.
		for _, c := range cas {
			if c.State == StateInactive && c.ActivatesAt.After(now) {
				return false, nil
			}
		}
		return true, nil
	}
	if now.Before(active.NotAfter.Add(-RotateBefore)) {
		return false, active
	}
	for _, c := range cas {
		if c.State == StateInactive && c.ActivatesAt.After(active.ActivatesAt) {
			return false, active // the successor exists
		}
	}
	return true, active
}

func (a *Authority) newTenantCA(tenantID string, cas []TenantCA) (store.CARecord, error) {
	now := a.now()
	activates := now
	if _, active := rotationDue(cas, now); active != nil {
		// The successor becomes active ActivateAfter from now, but never
		// after the current CA expires: if the service was down for long,
		// it takes over halfway through the time that is left.
		activates = now.Add(ActivateAfter)
		if left := active.NotAfter.Sub(now); activates.After(active.NotAfter.Add(-left / 2)) {
			activates = now.Add(left / 2)
		}
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return store.CARecord{}, err
	}
	id := uuid.Must(uuid.NewV7()).String()
	tmpl := &x509.Certificate{
		SerialNumber:          randomSerial(),
		Subject:               pkix.Name{CommonName: "OpenSphere Tenant CA " + tenantID, Organization: []string{"OpenSphere"}, OrganizationalUnit: []string{id}},
		NotBefore:             now.Add(-Backdate),
		NotAfter:              now.Add(TenantCALifetime),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
		URIs:                  []*url.URL{{Scheme: "urn", Opaque: "opensphere:tenant:" + tenantID}},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, a.root, &key.PublicKey, a.rootKey)
	if err != nil {
		return store.CARecord{}, fmt.Errorf("ca: create tenant CA: %w", err)
	}
	c, _ := x509.ParseCertificate(der)
	return store.CARecord{ID: id, TenantID: tenantID, CertDER: der, KeySealed: a.sealKey(key, "tenant-ca:"+id),
		Thumbprint: Thumbprint(c), NotBefore: c.NotBefore, NotAfter: c.NotAfter, ActivatesAt: activates}, nil
}

// parseCA parses a tenant CA's certificate once per CA.
func (a *Authority) parseCA(r store.CARecord) (*x509.Certificate, error) {
	a.mu.Lock()
	c, ok := a.certCache[r.ID]
	a.mu.Unlock()
	if ok && bytes.Equal(c.Raw, r.CertDER) {
		return c, nil
	}
	c, err := x509.ParseCertificate(r.CertDER)
	if err != nil {
		return nil, err
	}
	a.mu.Lock()
	if len(a.certCache) >= maxCertCache {
		clear(a.certCache)
	}
	a.certCache[r.ID] = c
	a.mu.Unlock()
	return c, nil
}

// maxCertCache bounds the parsed CA certificates kept (a few per tenant).
const maxCertCache = 100_000

// signer returns the active CA of a tenant with its opened key, rotating
// first if needed.
func (a *Authority) signer(ctx context.Context, tenantID string) (TenantCA, *ecdsa.PrivateKey, error) {
	cas, err := a.TenantCAs(ctx, tenantID)
	if err != nil {
		return TenantCA{}, nil, err
	}
	if due, _ := rotationDue(cas, a.now()); due {
		if err := a.Rotate(ctx, tenantID); err != nil {
			return TenantCA{}, nil, err
		}
		if cas, err = a.TenantCAs(ctx, tenantID); err != nil {
			return TenantCA{}, nil, err
		}
	}
	for _, c := range cas {
		if c.State == StateActive {
			k, err := a.caKey(c)
			return c, k, err
		}
	}
	return TenantCA{}, nil, fmt.Errorf("ca: tenant %s has no active CA", tenantID)
}

func (a *Authority) caKey(c TenantCA) (*ecdsa.PrivateKey, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if k, ok := a.keyCache[c.ID]; ok {
		return k, nil
	}
	k, err := a.openKey(c.rec.KeySealed, "tenant-ca:"+c.ID)
	if err != nil {
		return nil, fmt.Errorf("ca: tenant CA %s key: %w", c.ID, err)
	}
	a.keyCache[c.ID] = k
	return k, nil
}

// Issued is a device certificate and the chain to give with it.
type Issued struct {
	Cert *x509.Certificate
	// Chain is the issuing tenant CA, then the root.
	Chain    []*x509.Certificate
	CAID     string
	TenantID string
}

// Record is what the store keeps of an issued certificate.
func (i Issued) Record() *store.IssuedCert {
	return &store.IssuedCert{Serial: i.Cert.SerialNumber.Text(16), TenantID: i.TenantID, CAID: i.CAID,
		NotBefore: i.Cert.NotBefore, NotAfter: i.Cert.NotAfter}
}

// IssueDevice issues a device certificate for pub: P-256, 24 hours
// (never past the issuing CA), NotBefore backdated, CN = device id, URI SAN
// naming tenant and device, EKU clientAuth, KU digitalSignature. The caller
// stores Issued.Record() (attestation does, with its result).
func (a *Authority) IssueDevice(ctx context.Context, tenantID, deviceID string, pub crypto.PublicKey) (Issued, error) {
	ek, ok := pub.(*ecdsa.PublicKey)
	if !ok || ek.Curve != elliptic.P256() {
		return Issued{}, sphere.Errorf(sphere.EInvalid, "device keys must be ECDSA P-256")
	}
	if err := sphere.ValidateDeviceID(deviceID); err != nil {
		return Issued{}, err
	}
	ca, key, err := a.signer(ctx, tenantID)
	if err != nil {
		return Issued{}, err
	}
	now := a.now()
	notAfter := now.Add(DeviceLifetime)
	if notAfter.After(ca.NotAfter) {
		notAfter = ca.NotAfter
	}
	tmpl := &x509.Certificate{
		SerialNumber: randomSerial(),
		Subject:      pkix.Name{CommonName: deviceID},
		NotBefore:    now.Add(-Backdate),
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		URIs:         []*url.URL{sphere.DeviceURI(tenantID, deviceID)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, ek, key)
	if err != nil {
		return Issued{}, fmt.Errorf("ca: issue device certificate: %w", err)
	}
	cert, _ := x509.ParseCertificate(der)
	return Issued{Cert: cert, Chain: []*x509.Certificate{ca.Cert, a.root}, CAID: ca.ID, TenantID: tenantID}, nil
}

// Bundle returns what relying parties (brokers, clouds, the service's own
// mTLS) should trust for a tenant: every tenant CA that is neither expired
// nor revoked, then the root.
func (a *Authority) Bundle(ctx context.Context, tenantID string) ([]*x509.Certificate, error) {
	out, err := a.TenantTrust(ctx, tenantID)
	if err != nil {
		return nil, err
	}
	return append(out, a.root), nil
}

// TenantTrust returns the tenant CAs that device certificates of the
// tenant may chain to: every one neither expired nor revoked. The root is
// left out on purpose: trusting it would accept other tenants' devices.
func (a *Authority) TenantTrust(ctx context.Context, tenantID string) ([]*x509.Certificate, error) {
	cas, err := a.TenantCAs(ctx, tenantID)
	if err != nil {
		return nil, err
	}
	var out []*x509.Certificate
	for _, c := range cas {
		if c.State == StateActive || c.State == StateInactive {
			out = append(out, c.Cert)
		}
	}
	return out, nil
}

// Proof makes a proof-of-possession certificate for a tenant CA: subject CN
// = code (the verification or registration code a cloud hands out),
// signed by that CA's private key, as AWS IoT and Azure DPS expect when
// registering a CA.
func (a *Authority) Proof(ctx context.Context, tenantID, caID, code string) (*x509.Certificate, error) {
	if code == "" || len(code) > 64 {
		return nil, sphere.Errorf(sphere.EInvalid, "verification code must be 1 to 64 characters")
	}
	for _, r := range code {
		if r < 0x20 || r > 0x7e {
			return nil, sphere.Errorf(sphere.EInvalid, "verification code must be printable ASCII")
		}
	}
	cas, err := a.TenantCAs(ctx, tenantID)
	if err != nil {
		return nil, err
	}
	var ca *TenantCA
	for i := range cas {
		if cas[i].ID == caID || (caID == "" && cas[i].State == StateActive) {
			ca = &cas[i]
		}
	}
	if ca == nil {
		return nil, sphere.Errorf(sphere.ENotFound, "no such CA in this tenant")
	}
	if ca.State == StateExpired || ca.State == StateRevoked {
		return nil, sphere.Errorf(sphere.EPrecondition, "CA %s is %s; proofs are only made for usable CAs", ca.ID, ca.State)
	}
	key, err := a.caKey(*ca)
	if err != nil {
		return nil, err
	}
	leafKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	now := a.now()
	tmpl := &x509.Certificate{
		SerialNumber: randomSerial(),
		Subject:      pkix.Name{CommonName: code},
		NotBefore:    now.Add(-Backdate),
		NotAfter:     now.Add(ProofLifetime),
		KeyUsage:     x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, &leafKey.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("ca: proof of possession: %w", err)
	}
	return x509.ParseCertificate(der)
}

// RotateAll runs Rotate for every tenant.
func (a *Authority) RotateAll(ctx context.Context) error {
	return a.st.EachTenant(ctx, store.TenantFilter{}, func(t sphere.Tenant) error {
		if err := a.Rotate(ctx, t.ID); err != nil {
			return fmt.Errorf("tenant %s: %w", t.ID, err)
		}
		return nil
	})
}
