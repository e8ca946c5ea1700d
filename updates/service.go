package updates

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sort"
	"time"

	"github.com/opensphere/sphere"
	"github.com/opensphere/sphere/blob"
	"github.com/opensphere/sphere/ca"
	"github.com/opensphere/sphere/image"
	"github.com/opensphere/sphere/store"
	"github.com/opensphere/sphere/tufrepo"
)

// Config configures a Service.
type Config struct {
	Store *store.Store  // required
	Blobs blob.Store    // required
	TUF   *tufrepo.Repo // nil: a repository kept in Store
	KEK   *ca.KEK       // required: seals the service's image signing keys
	Now   func() time.Time
	Log   *slog.Logger
	// RetailEvalLead is how much earlier RetailEval groups get an OS
	// release than Retail groups; zero means 14 days.
	RetailEvalLead time.Duration
	// MaxImageBytes bounds an uploaded package; zero means 4 GiB.
	MaxImageBytes int64
	// GroupCacheTTL is how long an update check may use a group's
	// targets and deployment as read before (zero reads them at every
	// check). Changes made through this Service are seen at once; those of
	// other replicas, or made in the store directly, within the TTL.
	GroupCacheTTL time.Duration
}

// Service is the service side of updates.
type Service struct {
	st    *store.Store
	blobs blob.Store
	tuf   *tufrepo.Repo
	kek   *ca.KEK
	now   func() time.Time
	log   *slog.Logger
	lead  time.Duration
	max   int64
	views viewCache
	// chunks caches each package's chunk index by the package's SHA-256
	// (packages are immutable, so an entry never goes stale).
	chunks chunkCache
}

// New makes a Service. A nil cfg.TUF gets a repository kept in cfg.Store.
func New(cfg Config) (*Service, error) {
	if cfg.Store == nil || cfg.Blobs == nil || cfg.KEK == nil {
		return nil, errors.New("updates.New: store, blobs and KEK are required")
	}
	if cfg.TUF == nil {
		repo, err := tufrepo.New(tufrepo.Config{Storage: TUFStorage{St: cfg.Store}, KEK: cfg.KEK, Now: cfg.Now, Logger: cfg.Log})
		if err != nil {
			return nil, err
		}
		cfg.TUF = repo
	}
	s := &Service{st: cfg.Store, blobs: cfg.Blobs, tuf: cfg.TUF, kek: cfg.KEK, now: cfg.Now, log: cfg.Log, lead: cfg.RetailEvalLead, max: cfg.MaxImageBytes,
		views: viewCache{ttl: cfg.GroupCacheTTL}}
	if s.now == nil {
		s.now = time.Now
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.lead == 0 {
		s.lead = 14 * 24 * time.Hour
	}
	if s.max == 0 {
		s.max = 4 << 30
	}
	return s, nil
}

// Blobs returns the blob store (the device API serves image blobs from it).
func (s *Service) Blobs() blob.Store { return s.blobs }

// TUF returns the TUF repository.
func (s *Service) TUF() *tufrepo.Repo { return s.tuf }

// ---- signing keys ----

// AddPublisherKey registers a key whose signed uploads the tenant ("" for
// the platform's OS releases) accepts.
func (s *Service) AddPublisherKey(ctx context.Context, tenantID, name string, public []byte) (sphere.SigningKey, error) {
	pub, der, err := sphere.ParsePublicKey("signing key", public)
	if err != nil {
		return sphere.SigningKey{}, err
	}
	if k, ok := pub.(*ecdsa.PublicKey); !ok || k.Curve != elliptic.P256() {
		return sphere.SigningKey{}, sphere.Errorf(sphere.EInvalid, "image signing keys are ECDSA P-256")
	}
	return s.st.AddSigningKey(ctx, tenantID, sphere.KeyPublisher, name, der, nil)
}

// serviceSigner returns the tenant's ("" for the platform) own signing
// key, making it on first use; its private half is stored sealed.
func (s *Service) serviceSigner(ctx context.Context, tenantID string) (crypto.Signer, error) {
	id, sealed, err := s.st.ServiceKeySealed(ctx, tenantID)
	if sphere.ErrorCode(err) == sphere.ENotFound {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return nil, err
		}
		der, _ := x509.MarshalPKIXPublicKey(&key.PublicKey)
		pk, _ := x509.MarshalPKCS8PrivateKey(key)
		if _, err := s.st.AddSigningKey(ctx, tenantID, sphere.KeyService, "OpenSphere service key", der, s.kek.Seal(pk, "image-signing:"+tenantID)); err != nil {
			if sphere.ErrorCode(err) != sphere.EConflict {
				return nil, err
			}
		}
		return s.serviceSigner(ctx, tenantID)
	}
	if err != nil {
		return nil, err
	}
	pk, err := s.kek.Open(sealed, "image-signing:"+tenantID)
	if err != nil {
		return nil, fmt.Errorf("updates: service signing key %s: %w", id, err)
	}
	k, err := x509.ParsePKCS8PrivateKey(pk)
	if err != nil {
		return nil, err
	}
	return k.(*ecdsa.PrivateKey), nil
}

// ServicePublicKey returns the PEM public key that devices of the tenant
// check image signatures with.
func (s *Service) ServicePublicKey(ctx context.Context, tenantID string) (sphere.SigningKey, error) {
	if _, err := s.serviceSigner(ctx, tenantID); err != nil {
		return sphere.SigningKey{}, err
	}
	ks, err := s.st.SigningKeys(ctx, tenantID, sphere.KeyService)
	if err != nil {
		return sphere.SigningKey{}, err
	}
	for i := len(ks) - 1; i >= 0; i-- {
		if ks[i].RevokedAt == nil {
			return ks[i], nil
		}
	}
	return sphere.SigningKey{}, sphere.Errorf(sphere.ENotFound, "no service signing key")
}

// ---- uploads ----

// verified is an uploaded package that passed every check and was
// re-signed by the service: its header and the stored blob.
type verified struct {
	header *image.Header
	sha    string
	size   int64
	keyID  string
}

// ingest streams an upload into the blob store, checks it (format,
// signature by one of the owner's publisher keys, payload digest),
// re-signs it with the owner's service key into a new blob, and removes
// the raw upload. Nothing is left behind on any failure.
func (s *Service) ingest(ctx context.Context, tenantID string, r io.Reader, wantKind image.Kind) (verified, error) {
	rawSHA, _, err := s.blobs.Put(ctx, r, s.max)
	if errors.Is(err, blob.ErrTooLarge) {
		return verified{}, sphere.Errorf(sphere.ETooLarge, "the image package is larger than %d bytes", s.max)
	}
	if err != nil {
		return verified{}, err
	}
	defer func() {
		if rawSHA != "" {
			s.blobs.Delete(context.WithoutCancel(ctx), rawSHA)
		}
	}()
	obj, err := s.blobs.Open(ctx, rawSHA)
	if err != nil {
		return verified{}, err
	}
	defer obj.Close()
	h, err := image.ReadHeader(obj)
	if err != nil {
		return verified{}, sphere.Errorf(sphere.EInvalid, "%v", err)
	}
	if wantKind != "" && h.Metadata.Kind != wantKind {
		return verified{}, sphere.Errorf(sphere.EInvalid, "this takes an %s image, not %s", wantKind, h.Metadata.Kind)
	}
	keys, err := s.st.SigningKeys(ctx, tenantID, sphere.KeyPublisher)
	if err != nil {
		return verified{}, err
	}
	var pub *ecdsa.PublicKey
	for _, k := range keys {
		if k.KeyID == h.Signature.KeyID && k.RevokedAt == nil {
			p, _, err := sphere.ParsePublicKey("signing key", []byte(k.PublicKey))
			if err != nil {
				return verified{}, err
			}
			pub = p.(*ecdsa.PublicKey)
		}
	}
	if pub == nil {
		return verified{}, sphere.Errorf(sphere.EInvalid, "the package is signed by key %s, which is not a registered publisher key here; register it with `sphere image signing-key add` (or it was revoked)", h.Signature.KeyID)
	}
	if err := h.VerifySignature(pub); err != nil {
		return verified{}, sphere.Errorf(sphere.EInvalid, "%v", err)
	}
	if err := image.VerifyPayload(obj, h); err != nil {
		return verified{}, sphere.Errorf(sphere.EInvalid, "%v", err)
	}
	signer, err := s.serviceSigner(ctx, tenantID)
	if err != nil {
		return verified{}, err
	}
	if _, err := obj.Seek(0, io.SeekStart); err != nil {
		return verified{}, err
	}
	pr, pw := io.Pipe()
	go func() {
		_, err := image.Resign(pw, obj, signer)
		pw.CloseWithError(err)
	}()
	sha, size, err := s.blobs.Put(ctx, pr, s.max+1<<20)
	pr.CloseWithError(err)
	if err != nil {
		return verified{}, fmt.Errorf("updates: re-signing: %w", err)
	}
	keyID, _ := image.KeyID(signer.Public().(*ecdsa.PublicKey))
	if sha == rawSHA { // the same bytes after re-signing: keep the blob
		rawSHA = ""
	}
	return verified{header: h, sha: sha, size: size, keyID: keyID}, nil
}

func imageOf(v verified, actor string) sphere.Image {
	md := v.header.Metadata
	return sphere.Image{ID: v.header.ImageID(), Kind: string(md.Kind), ComponentID: md.ComponentID, Name: md.Name, Version: md.Version,
		SecurityVersion: md.SecurityVersion, BuildTime: md.BuildTime.UTC(), Metadata: v.header.MetadataJSON, BlobSHA256: v.sha,
		Size: v.size, SignerKeyID: v.keyID, UploadedBy: actor}
}

// AddImage accepts an image package upload for a tenant.
func (s *Service) AddImage(ctx context.Context, tenantID, actor string, r io.Reader) (sphere.Image, error) {
	v, err := s.ingest(ctx, tenantID, r, "")
	if err != nil {
		return sphere.Image{}, err
	}
	ts := s.st.Tenant(tenantID)
	if old, err := ts.GetImage(ctx, v.header.ImageID()); err == nil {
		// Uploaded before: keep the stored package, drop this copy.
		if old.BlobSHA256 != v.sha {
			s.blobs.Delete(ctx, v.sha)
		}
		return old, nil
	}
	im, err := ts.AddImage(ctx, imageOf(v, actor))
	if err != nil {
		return im, err
	}
	s.log.Info("image added", "tenant", tenantID, "image", im.ID, "component", im.ComponentID, "version", im.Version)
	return im, nil
}

// PublishOSRelease accepts an OS image from the platform publisher: it is
// on the RetailEval feed from now and on Retail RetailEvalLead later.
func (s *Service) PublishOSRelease(ctx context.Context, actor string, r io.Reader) (sphere.OSRelease, error) {
	v, err := s.ingest(ctx, "", r, image.KindOS)
	if err != nil {
		return sphere.OSRelease{}, err
	}
	now := s.now()
	rel, err := s.st.PublishOSRelease(ctx, sphere.OSRelease{Image: imageOf(v, actor), EvalAt: now, RetailAt: now.Add(s.lead)})
	if err != nil {
		s.blobs.Delete(ctx, v.sha)
		return rel, err
	}
	s.log.Info("OS release published", "image", rel.ID, "version", rel.Version, "retail_at", rel.RetailAt)
	// Groups on RetailEval get it now; Retail groups get it from the
	// hourly maintenance once their time comes.
	return rel, s.syncGroups(ctx, sphere.FeedRetailEval)
}

// ---- what a group should run ----

// TargetPath is the TUF target path of an image for a group.
func TargetPath(groupID, imageID string) string { return tufrepo.TargetPath(groupID, imageID+".pkg") }

// groupTargets is what a group's devices may fetch: the images of its
// current deployment and the OS release of its feed.
func (s *Service) groupTargets(ctx context.Context, tenantID string, g sphere.DeviceGroup) ([]Target, *sphere.Deployment, error) {
	ts := s.st.Tenant(tenantID)
	var out []Target
	dep, err := ts.CurrentDeployment(ctx, g.ID)
	switch sphere.ErrorCode(err) {
	case "":
		for _, id := range dep.ImageIDs {
			im, err := ts.GetImage(ctx, id)
			if err != nil {
				return nil, nil, err
			}
			out = append(out, targetOf(g.ID, im, false))
		}
	case sphere.ENotFound:
		dep = sphere.Deployment{}
	default:
		return nil, nil, err
	}
	rel, err := s.st.LatestOSRelease(ctx, g.OSFeed, s.now())
	switch sphere.ErrorCode(err) {
	case "":
		out = append(out, targetOf(g.ID, rel.Image, true))
	case sphere.ENotFound:
	default:
		return nil, nil, err
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Path < out[j].Path })
	if dep.ID == "" {
		return out, nil, nil
	}
	return out, &dep, nil
}

func targetOf(groupID string, im sphere.Image, osRelease bool) Target {
	return Target{Path: TargetPath(groupID, im.ID), ImageID: im.ID, Kind: im.Kind, ComponentID: im.ComponentID, Name: im.Name,
		Version: im.Version, SecurityVersion: im.SecurityVersion, SHA256: im.BlobSHA256, Size: im.Size, OSRelease: osRelease}
}

// SyncGroup publishes a group's targets in the tenant's TUF repository.
func (s *Service) SyncGroup(ctx context.Context, tenantID, groupID string) error {
	s.views.forget(tenantID, groupID)
	g, err := s.st.Tenant(tenantID).GetDeviceGroup(ctx, groupID)
	if err != nil {
		return err
	}
	targets, _, err := s.groupTargets(ctx, tenantID, g)
	if err != nil {
		return err
	}
	if err := s.tuf.Init(ctx, tenantID); err != nil {
		return err
	}
	tt := make([]tufrepo.Target, len(targets))
	for i, t := range targets {
		custom, _ := json.Marshal(t)
		tt[i] = tufrepo.Target{Name: t.ImageID + ".pkg", Length: t.Size, SHA256: t.SHA256, Custom: custom}
	}
	return s.tuf.SetGroupTargets(ctx, tenantID, groupID, tt)
}

// syncGroups republishes the groups of every tenant on feed.
func (s *Service) syncGroups(ctx context.Context, feed sphere.OSFeed) error {
	return s.st.EachTenant(ctx, store.TenantFilter{}, func(t sphere.Tenant) error { return s.syncTenant(ctx, t.ID, feed) })
}

// syncTenant republishes the tenant's groups on feed ("" for all).
func (s *Service) syncTenant(ctx context.Context, tenantID string, feed sphere.OSFeed) error {
	ts := s.st.Tenant(tenantID)
	return store.Each(func(p store.PageRequest) (sphere.Page[sphere.DeviceGroup], error) {
		return ts.ListDeviceGroups(ctx, store.DeviceGroupFilter{}, p)
	}, func(g sphere.DeviceGroup) error {
		if feed != "" && g.OSFeed != feed {
			return nil
		}
		return s.SyncGroup(ctx, tenantID, g.ID)
	})
}

// GroupHasBlob reports whether a group's devices may fetch the blob sha as
// image imageID now: it is one of the group's current targets.
func (s *Service) GroupHasBlob(ctx context.Context, tenantID, groupID, sha, imageID string) (bool, error) {
	g, err := s.st.Tenant(tenantID).GetDeviceGroup(ctx, groupID)
	if err != nil {
		return false, err
	}
	targets, _, err := s.groupTargets(ctx, tenantID, g)
	if err != nil {
		return false, err
	}
	for _, t := range targets {
		if t.SHA256 == sha && t.ImageID == imageID {
			return true, nil
		}
	}
	return false, nil
}
