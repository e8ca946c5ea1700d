package server

import (
	"encoding/pem"
	"net/http"

	"github.com/opensphere/sphere"
	"github.com/opensphere/sphere/api"
	"github.com/opensphere/sphere/ca"
)

// attestAdminRoutes are the admin routes of attestation: the tenant's
// certificate authorities, device revocation and the measurement allowlist.
func (s *Server) attestAdminRoutes() []*route {
	const t = "/api/v1/tenants/{tenant}"
	get, post, del := http.MethodGet, http.MethodPost, http.MethodDelete
	rows := []struct {
		route
		h func(*route)
	}{
		{route{Method: get, Path: t + "/ca-certificates", Summary: "List the tenant's CAs with their states", Access: AccessTenant, Role: sphere.RoleReader}, handle(s.listCAs)},
		{route{Method: get, Path: t + "/ca-certificates/chain", Summary: "The chain bundle relying parties should trust: every usable tenant CA and the root", Access: AccessTenant, Role: sphere.RoleReader}, handle(s.caChain)},
		{route{Method: get, Path: t + "/ca-certificates/{ca}", Summary: "Show one tenant CA with its certificate", Access: AccessTenant, Role: sphere.RoleReader}, handle(s.getCA)},
		{route{Method: post, Path: t + "/ca-certificates/{ca}/proof", Summary: "Make a proof-of-possession certificate (CN = code) for registering the CA with a cloud", Access: AccessTenant, Role: sphere.RoleAdministrator, Action: "ca.proof"}, handle(s.caProof)},
		{route{Method: post, Path: t + "/devices/{device}/revoke", Summary: "Revoke a device: its attestation is refused from now on", Access: AccessTenant, Role: sphere.RoleAdministrator, Action: "device.revoke"}, handle(s.revokeDevice)},
		{route{Method: post, Path: t + "/devices/{device}/unrevoke", Summary: "Lift a device's revocation", Access: AccessTenant, Role: sphere.RoleAdministrator, Action: "device.unrevoke"}, handle(s.unrevokeDevice)},
		{route{Method: get, Path: t + "/measurements", Summary: "List the software the tenant allows its devices to run", Access: AccessTenant, Role: sphere.RoleReader}, handle(s.listMeasurements)},
		{route{Method: post, Path: t + "/measurements", Summary: "Allow (or deprecate) a measured agent binary or configuration", Access: AccessTenant, Role: sphere.RoleContributor, Action: "measurement.allow", Status: http.StatusCreated}, handle(s.allowMeasurement)},
		{route{Method: del, Path: t + "/measurements/{measurement}", Summary: "Remove software from the allowlist", Access: AccessTenant, Role: sphere.RoleAdministrator, Action: "measurement.remove"}, handle(s.removeMeasurement)},
	}
	return finishRoutes(rows)
}

func certPEM(der []byte) string {
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
}

func caView(c ca.TenantCA) api.CACertificate {
	return api.CACertificate{ID: c.ID, Thumbprint: c.Thumbprint, State: c.State, Subject: c.Subject, NotBefore: c.NotBefore,
		NotAfter: c.NotAfter, ActivatesAt: c.ActivatesAt, RevokedAt: c.RevokedAt, PEM: certPEM(c.Cert.Raw)}
}

func (s *Server) listCAs(c *call, _ *api.Empty) (sphere.Page[api.CACertificate], error) {
	if err := s.ca.Rotate(c.ctx, c.tenant.ID()); err != nil {
		return sphere.Page[api.CACertificate]{}, err
	}
	cas, err := s.ca.TenantCAs(c.ctx, c.tenant.ID())
	if err != nil {
		return sphere.Page[api.CACertificate]{}, err
	}
	out := sphere.Page[api.CACertificate]{Items: make([]api.CACertificate, len(cas))}
	for i, x := range cas {
		out.Items[i] = caView(x)
	}
	return out, nil
}

func (s *Server) caChain(c *call, _ *api.Empty) (api.PEMBundle, error) {
	if err := s.ca.Rotate(c.ctx, c.tenant.ID()); err != nil {
		return api.PEMBundle{}, err
	}
	certs, err := s.ca.Bundle(c.ctx, c.tenant.ID())
	if err != nil {
		return api.PEMBundle{}, err
	}
	var b api.PEMBundle
	for _, x := range certs {
		b.PEM += certPEM(x.Raw)
	}
	return b, nil
}

// findCA resolves {ca}: a CA id, or "active" for the Active one.
func (s *Server) findCA(c *call) (ca.TenantCA, error) {
	if err := s.ca.Rotate(c.ctx, c.tenant.ID()); err != nil {
		return ca.TenantCA{}, err
	}
	cas, err := s.ca.TenantCAs(c.ctx, c.tenant.ID())
	if err != nil {
		return ca.TenantCA{}, err
	}
	want := c.r.PathValue("ca")
	for _, x := range cas {
		if x.ID == want || (want == "active" && x.State == ca.StateActive) {
			return x, nil
		}
	}
	return ca.TenantCA{}, sphere.Errorf(sphere.ENotFound, "CA %q not found in this tenant", want)
}

func (s *Server) getCA(c *call, _ *api.Empty) (api.CACertificate, error) {
	x, err := s.findCA(c)
	if err != nil {
		return api.CACertificate{}, err
	}
	return caView(x), nil
}

func (s *Server) caProof(c *call, in *api.CreateProof) (api.PEMBundle, error) {
	x, err := s.findCA(c)
	if err != nil {
		return api.PEMBundle{}, err
	}
	c.target = x.ID
	proof, err := s.ca.Proof(c.ctx, c.tenant.ID(), x.ID, in.Code)
	if err != nil {
		return api.PEMBundle{}, err
	}
	return api.PEMBundle{PEM: certPEM(proof.Raw)}, nil
}

func (s *Server) revokeDevice(c *call, in *api.RevokeDevice) (sphere.Device, error) {
	return c.tenant.RevokeDevice(c.ctx, c.r.PathValue("device"), in.Reason)
}

func (s *Server) unrevokeDevice(c *call, _ *api.Empty) (sphere.Device, error) {
	return c.tenant.UnrevokeDevice(c.ctx, c.r.PathValue("device"))
}

func (s *Server) listMeasurements(c *call, in *api.ListMeasurements) (sphere.Page[sphere.AllowedMeasurement], error) {
	return c.tenant.ListMeasurements(c.ctx, page(in.Paging))
}

func (s *Server) allowMeasurement(c *call, in *api.AllowMeasurement) (sphere.AllowedMeasurement, error) {
	m, err := c.tenant.AllowMeasurement(c.ctx, in.Type, in.Digest, in.Name, in.Status)
	c.target = m.ID
	return m, err
}

func (s *Server) removeMeasurement(c *call, _ *api.Empty) (api.NoContent, error) {
	return api.NoContent{}, c.tenant.RemoveMeasurement(c.ctx, c.r.PathValue("measurement"))
}
