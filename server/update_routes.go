package server

import (
	"bytes"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/opensphere/sphere"
	"github.com/opensphere/sphere/api"
	"github.com/opensphere/sphere/blob"
	"github.com/opensphere/sphere/store"
	"github.com/opensphere/sphere/updates"
)

// updateAdminRoutes are the admin routes of renewable security: image
// signing keys, images, deployments, OS releases, the TUF repository and
// the "why is my device not updating" explanation.
func (s *Server) updateAdminRoutes() []*route {
	const t = "/api/v1/tenants/{tenant}"
	get, post, del := http.MethodGet, http.MethodPost, http.MethodDelete
	r, c, a := sphere.RoleReader, sphere.RoleContributor, sphere.RoleAdministrator
	rows := []struct {
		route
		h func(*route)
	}{
		{route{Method: get, Path: t + "/signing-keys", Summary: "List image signing keys: publisher keys and the tenant's service key", Access: AccessTenant, Role: r}, handle(s.listSigningKeys)},
		{route{Method: post, Path: t + "/signing-keys", Summary: "Register a publisher key whose signed image packages the tenant accepts", Access: AccessTenant, Role: a, Action: "signing_key.add", Status: http.StatusCreated}, handle(s.addSigningKey)},
		{route{Method: del, Path: t + "/signing-keys/{key}", Summary: "Revoke a publisher key: its uploads are refused from now on", Access: AccessTenant, Role: a, Action: "signing_key.revoke"}, handle(s.revokeSigningKey)},
		{route{Method: post, Path: t + "/images", Summary: "Upload a signed image package (application/octet-stream); the service checks and re-signs it", Access: AccessTenant, Role: c, Action: "image.add", Status: http.StatusCreated}, handle(s.addImage)},
		{route{Method: get, Path: t + "/images", Summary: "List images", Access: AccessTenant, Role: r}, handle(s.listImages)},
		{route{Method: get, Path: t + "/images/{image}", Summary: "Show an image", Access: AccessTenant, Role: r}, handle(s.getImage)},
		{route{Method: get, Path: t + "/images/{image}/download", Summary: "Download an image package as the service signed it", Access: AccessTenant, Role: r}, handle(s.downloadImage)},
		{route{Method: post, Path: t + "/deployments", Summary: "Deploy images to a device group, rolled out in waves", Access: AccessTenant, Role: c, Action: "deployment.create", Status: http.StatusCreated}, handle(s.createDeployment)},
		{route{Method: get, Path: t + "/deployments", Summary: "List deployments", Access: AccessTenant, Role: r}, handle(s.listDeployments)},
		{route{Method: get, Path: t + "/deployments/{deployment}", Summary: "Show a deployment, its rollout and how its devices fare", Access: AccessTenant, Role: r}, handle(s.getDeployment)},
		{route{Method: get, Path: t + "/deployments/{deployment}/devices", Summary: "List the state of each device in a deployment", Access: AccessTenant, Role: r}, handle(s.deploymentDevices)},
		{route{Method: post, Path: t + "/deployments/{deployment}/pause", Summary: "Pause a rollout", Access: AccessTenant, Role: c, Action: "deployment.pause"}, handle(s.deploymentAction("pause"))},
		{route{Method: post, Path: t + "/deployments/{deployment}/resume", Summary: "Resume a paused or halted rollout", Access: AccessTenant, Role: c, Action: "deployment.resume"}, handle(s.deploymentAction("resume"))},
		{route{Method: post, Path: t + "/deployments/{deployment}/halt", Summary: "Halt a rollout", Access: AccessTenant, Role: c, Action: "deployment.halt"}, handle(s.deploymentAction("halt"))},
		{route{Method: get, Path: t + "/devices/{device}/update-status", Summary: "Why is this device (not) updating: policy, deployment, rollout wave, last check and error", Access: AccessTenant, Role: r}, handle(s.deviceUpdateStatus)},
		{route{Method: post, Path: t + "/devices/{device}/check-now", Summary: "Ask a device to check for updates at its next contact", Access: AccessTenant, Role: c, Action: "device.check_now", Status: http.StatusNoContent}, handle(s.checkNow)},
		{route{Method: get, Path: t + "/tuf/root.json", Summary: "The tenant's current TUF root: what devices pin at enrollment", Access: AccessTenant, Role: r}, handle(s.tufRoot)},
		{route{Method: post, Path: t + "/tuf/rotate", Summary: "Rotate an online key (targets, snapshot or timestamp) of the tenant's TUF repository", Access: AccessTenant, Role: a, Action: "tuf.rotate"}, handle(s.tufRotate)},
		{route{Method: post, Path: t + "/tuf/root-key/export", Summary: "Export the TUF root private key (PEM) to keep it offline; the one route that returns a private key", Access: AccessTenant, Role: a, Action: "tuf.root_key_export"}, handle(s.tufExportRootKey)},
		{route{Method: del, Path: t + "/tuf/root-key", Summary: "Forget the TUF root private key for good (export it first); needs confirm: true", Access: AccessTenant, Role: a, Action: "tuf.root_key_remove"}, handle(s.tufRemoveRootKey)},
		{route{Method: post, Path: t + "/tuf/root/prepare", Summary: "The next root waiting for offline signatures (made if there is none)", Access: AccessTenant, Role: a, Action: "tuf.root_prepare"}, handle(s.tufPrepareRoot)},
		{route{Method: post, Path: t + "/tuf/root/signed", Summary: "Publish a root signed offline", Access: AccessTenant, Role: a, Action: "tuf.root_import"}, handle(s.tufImportRoot)},
		{route{Method: post, Path: "/api/v1/os-releases", Summary: "Publish an OS release (application/octet-stream): RetailEval now, Retail later", Access: AccessOperator, Action: "os_release.publish", Status: http.StatusCreated}, handle(s.publishOS)},
		{route{Method: get, Path: "/api/v1/os-releases", Summary: "List OS releases", Access: AccessUser}, handle(s.listOS)},
		{route{Method: get, Path: "/api/v1/signing-keys", Summary: "List the platform's signing keys (for OS releases)", Access: AccessOperator}, handle(s.listPlatformKeys)},
		{route{Method: post, Path: "/api/v1/signing-keys", Summary: "Register a platform publisher key for OS releases", Access: AccessOperator, Action: "signing_key.add", Status: http.StatusCreated}, handle(s.addPlatformKey)},
		{route{Method: del, Path: "/api/v1/signing-keys/{key}", Summary: "Revoke a platform publisher key: OS releases it signs are refused from now on", Access: AccessOperator, Action: "signing_key.revoke"}, handle(s.revokePlatformKey)},
	}
	return finishRoutes(rows)
}

func (s *Server) listSigningKeys(c *call, _ *api.Empty) (sphere.Page[sphere.SigningKey], error) {
	if _, err := s.updates.ServicePublicKey(c.ctx, c.tenant.ID()); err != nil {
		return sphere.Page[sphere.SigningKey]{}, err
	}
	ks, err := s.store.SigningKeys(c.ctx, c.tenant.ID(), "")
	return sphere.Page[sphere.SigningKey]{Items: ks}, err
}

func (s *Server) addSigningKey(c *call, in *api.AddSigningKey) (sphere.SigningKey, error) {
	k, err := s.updates.AddPublisherKey(c.ctx, c.tenant.ID(), in.Name, []byte(in.PublicKey))
	setTarget(c, k.ID, err)
	return k, err
}

func (s *Server) revokeSigningKey(c *call, _ *api.Empty) (sphere.SigningKey, error) {
	return s.revokePublisherKey(c, c.tenant.ID(), "publisher key %q not found in this tenant")
}

// revokePublisherKey revokes the publisher key {key} of a tenant ("" for
// the platform); notFound names what is missing.
func (s *Server) revokePublisherKey(c *call, tenantID, notFound string) (sphere.SigningKey, error) {
	id := c.r.PathValue("key")
	ks, err := s.store.SigningKeys(c.ctx, tenantID, sphere.KeyPublisher)
	if err != nil {
		return sphere.SigningKey{}, err
	}
	for _, k := range ks {
		if k.ID != id {
			continue
		}
		if err := s.store.RevokeSigningKey(c.ctx, tenantID, id); err != nil {
			return k, err
		}
		now := s.now().UTC()
		k.RevokedAt = &now
		return k, nil
	}
	return sphere.SigningKey{}, sphere.Errorf(sphere.ENotFound, notFound, id)
}

func (s *Server) addImage(c *call, _ *api.RawBody) (sphere.Image, error) {
	im, err := s.updates.AddImage(c.ctx, c.tenant.ID(), c.user.Name, c.r.Body)
	setTarget(c, im.ID, err)
	return im, err
}

func (s *Server) listImages(c *call, in *api.ListImages) (sphere.Page[sphere.Image], error) {
	if in.Kind != "" && in.Kind != "os" && in.Kind != "app" {
		return sphere.Page[sphere.Image]{}, sphere.Errorf(sphere.EInvalid, "query parameter \"kind\" must be os or app, got %q", in.Kind)
	}
	return c.tenant.ListImages(c.ctx, store.ImageFilter{ComponentID: in.ComponentID, Kind: in.Kind}, page(in.Paging))
}

func (s *Server) getImage(c *call, _ *api.Empty) (sphere.Image, error) {
	return c.tenant.GetImage(c.ctx, c.r.PathValue("image"))
}

func (s *Server) downloadImage(c *call, _ *api.Empty) (*rawContent, error) {
	im, err := c.tenant.GetImage(c.ctx, c.r.PathValue("image"))
	if err != nil {
		return nil, err
	}
	return s.blobContent(c, im.BlobSHA256, im.ID+".pkg")
}

func (s *Server) blobContent(c *call, sha, name string) (*rawContent, error) {
	obj, err := s.updates.Blobs().Open(c.ctx, sha)
	if err == blob.ErrNotFound {
		return nil, sphere.Errorf(sphere.ENotFound, "the image's package is missing from the blob store")
	}
	if err != nil {
		return nil, err
	}
	return &rawContent{name: name, contentType: "application/octet-stream", modTime: obj.ModTime(), body: obj, close: obj.Close}, nil
}

func (s *Server) createDeployment(c *call, in *api.CreateDeployment) (sphere.Deployment, error) {
	d, err := s.updates.CreateDeployment(c.ctx, c.tenant.ID(), in.DeviceGroup, in.ImageIDs, updates.RolloutOptions{
		Waves: in.Waves, Dwell: time.Duration(in.DwellSeconds) * time.Second, FailurePermille: in.FailurePermille, MinSample: in.MinSample,
		CrashRatioPercent: in.CrashRatioPercent,
	}, c.user.Name)
	setTarget(c, d.ID, err)
	return d, err
}

func (s *Server) listDeployments(c *call, in *api.ListDeployments) (sphere.Page[sphere.Deployment], error) {
	// Like the other lists, a filter naming a group this tenant lacks is
	// not found rather than an empty list.
	if in.DeviceGroup != "" {
		if _, err := c.tenant.GetDeviceGroup(c.ctx, in.DeviceGroup); err != nil {
			return sphere.Page[sphere.Deployment]{}, err
		}
	}
	return c.tenant.ListDeployments(c.ctx, in.DeviceGroup, page(in.Paging))
}

func (s *Server) getDeployment(c *call, _ *api.Empty) (api.DeploymentState, error) {
	d, err := c.tenant.GetDeployment(c.ctx, c.r.PathValue("deployment"))
	if err != nil {
		return api.DeploymentState{}, err
	}
	if d, err = s.updates.Advance(c.ctx, c.tenant.ID(), d); err != nil {
		return api.DeploymentState{}, err
	}
	counts, err := s.store.UpdateCounts(c.ctx, d.ID, time.Time{})
	if err != nil {
		return api.DeploymentState{}, err
	}
	n, err := c.tenant.GroupDeviceCount(c.ctx, d.DeviceGroupID)
	return api.DeploymentState{Deployment: d, Counts: counts, GroupDevices: n}, err
}

func (s *Server) deploymentDevices(c *call, in *api.ListDeviceUpdates) (sphere.Page[sphere.DeviceUpdate], error) {
	if _, err := c.tenant.GetDeployment(c.ctx, c.r.PathValue("deployment")); err != nil {
		return sphere.Page[sphere.DeviceUpdate]{}, err
	}
	return c.tenant.DeviceUpdates(c.ctx, c.r.PathValue("deployment"), page(in.Paging))
}

func (s *Server) deploymentAction(action string) func(c *call, in *api.DeploymentAction) (sphere.Deployment, error) {
	return func(c *call, in *api.DeploymentAction) (sphere.Deployment, error) {
		c.target = c.r.PathValue("deployment") // pathTarget knows no {deployment}
		if err := sphere.ValidateText("reason", in.Reason, sphere.MaxDescriptionLen); err != nil {
			return sphere.Deployment{}, err
		}
		return s.updates.SetState(c.ctx, c.tenant.ID(), c.r.PathValue("deployment"), action, in.Reason, c.user.Name)
	}
}

func (s *Server) deviceUpdateStatus(c *call, _ *api.Empty) (updates.Explanation, error) {
	d, err := c.tenant.GetDevice(c.ctx, c.r.PathValue("device"))
	if err != nil {
		return updates.Explanation{}, err
	}
	return s.updates.Explain(c.ctx, d)
}

func (s *Server) checkNow(c *call, _ *api.Empty) (api.NoContent, error) {
	if err := sphere.ValidateDeviceID(c.r.PathValue("device")); err != nil {
		return api.NoContent{}, err
	}
	return api.NoContent{}, c.tenant.SetCheckNow(c.ctx, c.r.PathValue("device"))
}

func (s *Server) tufRoot(c *call, _ *api.Empty) (*rawContent, error) {
	if err := s.updates.TUF().Init(c.ctx, c.tenant.ID()); err != nil {
		return nil, err
	}
	b, err := s.updates.TUF().TrustedRoot(c.ctx, c.tenant.ID())
	if err != nil {
		return nil, err
	}
	return &rawContent{name: "root.json", contentType: "application/json", body: bytes.NewReader(b)}, nil
}

func (s *Server) tufRotate(c *call, in *api.RotateTUFKey) (api.NoContent, error) {
	switch in.Role {
	case "targets", "snapshot", "timestamp":
	default:
		return api.NoContent{}, sphere.Errorf(sphere.EInvalid, "role %q is not targets, snapshot or timestamp", in.Role)
	}
	if err := s.updates.TUF().Init(c.ctx, c.tenant.ID()); err != nil {
		return api.NoContent{}, err
	}
	return api.NoContent{}, s.updates.TUF().RotateKey(c.ctx, c.tenant.ID(), in.Role)
}

func (s *Server) tufExportRootKey(c *call, _ *api.Empty) (api.PEMBundle, error) {
	if err := s.updates.TUF().Init(c.ctx, c.tenant.ID()); err != nil {
		return api.PEMBundle{}, err
	}
	b, err := s.updates.TUF().ExportRootKey(c.ctx, c.tenant.ID())
	return api.PEMBundle{PEM: string(b)}, err
}

func (s *Server) tufRemoveRootKey(c *call, in *api.RemoveRootKey) (api.NoContent, error) {
	if !in.Confirm {
		return api.NoContent{}, sphere.Errorf(sphere.EInvalid, "without the exported root key nobody can sign a new root, and devices stop updating when the root expires; send confirm: true to go ahead")
	}
	// Without a repository there is no key to remove yet, and the next
	// Init would make a new one, online.
	if err := s.updates.TUF().Init(c.ctx, c.tenant.ID()); err != nil {
		return api.NoContent{}, err
	}
	return api.NoContent{}, s.updates.TUF().RemoveRootKey(c.ctx, c.tenant.ID())
}

func (s *Server) tufPrepareRoot(c *call, _ *api.Empty) (*rawContent, error) {
	if err := s.updates.TUF().Init(c.ctx, c.tenant.ID()); err != nil {
		return nil, err
	}
	b, err := s.updates.TUF().PrepareRoot(c.ctx, c.tenant.ID())
	if err != nil {
		return nil, err
	}
	return &rawContent{name: "root.json", contentType: "application/json", body: bytes.NewReader(b)}, nil
}

func (s *Server) tufImportRoot(c *call, in *api.SignedRoot) (api.NoContent, error) {
	if len(in.Root) == 0 {
		return api.NoContent{}, sphere.Errorf(sphere.EInvalid, "root is required")
	}
	return api.NoContent{}, s.updates.TUF().ImportSignedRoot(c.ctx, c.tenant.ID(), in.Root)
}

func (s *Server) publishOS(c *call, _ *api.RawBody) (sphere.OSRelease, error) {
	rel, err := s.updates.PublishOSRelease(c.ctx, c.user.Name, c.r.Body)
	setTarget(c, rel.ID, err)
	return rel, err
}

func (s *Server) listOS(c *call, _ *api.Empty) (sphere.Page[sphere.OSRelease], error) {
	rs, err := s.store.ListOSReleases(c.ctx)
	if rs == nil {
		rs = []sphere.OSRelease{}
	}
	return sphere.Page[sphere.OSRelease]{Items: rs}, err
}

func (s *Server) listPlatformKeys(c *call, _ *api.Empty) (sphere.Page[sphere.SigningKey], error) {
	ks, err := s.store.SigningKeys(c.ctx, "", "")
	if ks == nil {
		ks = []sphere.SigningKey{}
	}
	return sphere.Page[sphere.SigningKey]{Items: ks}, err
}

func (s *Server) revokePlatformKey(c *call, _ *api.Empty) (sphere.SigningKey, error) {
	return s.revokePublisherKey(c, "", "platform publisher key %q not found")
}

func (s *Server) addPlatformKey(c *call, in *api.AddSigningKey) (sphere.SigningKey, error) {
	k, err := s.updates.AddPublisherKey(c.ctx, "", in.Name, []byte(in.PublicKey))
	setTarget(c, k.ID, err)
	return k, err
}

// ---- the device side ----

// updateDeviceRoutes are the device routes of updates, all over mutual TLS.
func (s *Server) updateDeviceRoutes() []*route {
	rows := []struct {
		route
		h func(*route)
	}{
		{route{Method: http.MethodPost, Path: "/device/v1/updates/check", Summary: "Report what the device runs and learn what it should run", Access: AccessDevice}, handle(s.deviceCheck)},
		{route{Method: http.MethodGet, Path: "/device/v1/tuf/{file}", Summary: "The device's tenant's TUF metadata (root, timestamp, snapshot, targets, group roles)", Access: AccessDevice}, handle(s.deviceTUF)},
		{route{Method: http.MethodGet, Path: "/device/v1/targets/groups/{group}/{file}", Summary: "An image package of the device's group, by TUF target path (HTTP Range supported)", Access: AccessDevice}, handle(s.deviceTarget)},
		{route{Method: http.MethodGet, Path: "/device/v1/chunks/{sha256}", Summary: "One chunk of a package the device's group may fetch, by the chunk's SHA-256 (delta updates)", Access: AccessDevice}, handle(s.deviceChunk)},
		{route{Method: http.MethodGet, Path: "/device/v1/updates/signing-key", Summary: "The tenant's image signing key (PEM) that the device pins with the TUF root at its first healthy attestation", Access: AccessDevice}, handle(s.deviceSigningKey)},
	}
	return finishRoutes(rows)
}

func (s *Server) deviceCheck(c *call, in *updates.Report) (updates.CheckResult, error) {
	return s.updates.CheckAfter(c.ctx, *c.device, c.update, *in)
}

func (s *Server) deviceSigningKey(c *call, _ *api.Empty) (api.DeviceSigningKey, error) {
	if c.device.TenantID == "" {
		return api.DeviceSigningKey{}, sphere.Errorf(sphere.ENotFound, "the device is not claimed by a tenant")
	}
	k, err := s.updates.ServicePublicKey(c.ctx, c.device.TenantID)
	return api.DeviceSigningKey{KeyID: k.KeyID, PublicKey: k.PublicKey}, err
}

func (s *Server) deviceTUF(c *call, _ *api.Empty) (*rawContent, error) {
	name := c.r.PathValue("file")
	b, err := s.updates.TUF().Metadata(c.ctx, c.device.TenantID, name)
	if err != nil {
		if sphere.ErrorCode(err) == sphere.ENotFound || sphere.ErrorCode(err) == sphere.EInvalid {
			return nil, sphere.Errorf(sphere.ENotFound, "no TUF metadata %q", name)
		}
		return nil, err
	}
	return &rawContent{name: name, contentType: "application/json", body: bytes.NewReader(b)}, nil
}

// deviceChunk serves one chunk of a package the device may fetch, by its
// SHA-256; the device checks it against the signed chunk index it holds.
func (s *Server) deviceChunk(c *call, _ *api.Empty) (*rawContent, error) {
	sha := c.r.PathValue("sha256")
	cr, err := s.updates.Chunk(c.ctx, *c.device, sha)
	if err != nil {
		return nil, err
	}
	obj, err := s.updates.Blobs().Open(c.ctx, cr.Package)
	if err != nil {
		return nil, err
	}
	return &rawContent{name: sha, contentType: "application/octet-stream", modTime: obj.ModTime(),
		body: io.NewSectionReader(obj, cr.Offset, cr.Size), close: obj.Close}, nil
}

// deviceTarget serves a target file of the device's own group: consistent
// snapshots name it <sha256>.<image id>.pkg, and the blob store holds it
// under that SHA-256.
func (s *Server) deviceTarget(c *call, _ *api.Empty) (*rawContent, error) {
	group, file := c.r.PathValue("group"), c.r.PathValue("file")
	sha, name, ok := strings.Cut(file, ".")
	if group != c.device.DeviceGroupID || !ok {
		return nil, sphere.Errorf(sphere.ENotFound, "no target %s/%s for this device", group, file)
	}
	has, err := s.updates.GroupHasBlob(c.ctx, c.device.TenantID, group, sha, strings.TrimSuffix(name, ".pkg"))
	if err != nil {
		return nil, err
	}
	if !has {
		return nil, sphere.Errorf(sphere.ENotFound, "no target %s/%s for this device", group, file)
	}
	return s.blobContent(c, sha, name)
}
