package server

import (
	"encoding/base64"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/opensphere/sphere"
	"github.com/opensphere/sphere/api"
	"github.com/opensphere/sphere/store"
)

// routeTable is the admin API. Each row says who may call it and what it
// changes; handle(...) fixes its input and output types. The route test
// (routes_test.go) has one row per entry here and fails on a missing one.
func (s *Server) routeTable() []*route {
	const (
		get, post, patch, del = http.MethodGet, http.MethodPost, http.MethodPatch, http.MethodDelete
		t                     = "/api/v1/tenants/{tenant}"
	)
	rows := []struct {
		route
		h func(*route)
	}{
		// The caller.
		{route{Method: get, Path: "/api/v1/me", Summary: "Show the caller and its roles", Access: AccessUser}, handle(s.getMe)},
		{route{Method: get, Path: "/api/v1/me/tokens", Summary: "List the caller's API tokens", Access: AccessUser}, handle(s.listTokens)},
		{route{Method: post, Path: "/api/v1/me/tokens", Summary: "Create an API token for the caller", Access: AccessUser, Action: "token.create", Status: 201}, handle(s.createToken)},
		{route{Method: del, Path: "/api/v1/me/tokens/{token}", Summary: "Revoke one of the caller's API tokens", Access: AccessUser, Action: "token.delete"}, handle(s.deleteToken)},

		// Tenants.
		{route{Method: get, Path: "/api/v1/tenants", Summary: "List the tenants the caller holds a role in (all, for an operator)", Access: AccessUser}, handle(s.listTenants)},
		{route{Method: post, Path: "/api/v1/tenants", Summary: "Create a tenant; the operator becomes its Administrator", Access: AccessOperator, Action: "tenant.create", Status: 201}, handle(s.createTenant)},
		{route{Method: get, Path: t, Summary: "Show a tenant", Access: AccessTenant, Role: sphere.RoleReader}, handle(s.getTenant)},
		{route{Method: patch, Path: t, Summary: "Rename a tenant", Access: AccessTenant, Role: sphere.RoleAdministrator, Action: "tenant.update"}, handle(s.updateTenant)},

		// Roles.
		{route{Method: get, Path: t + "/roles", Summary: "List the tenant's role assignments", Access: AccessTenant, Role: sphere.RoleReader}, handle(s.listRoles)},
		{route{Method: post, Path: t + "/roles", Summary: "Give a user a role in the tenant (creating the user with a first token if new)", Access: AccessTenant, Role: sphere.RoleAdministrator, Action: "role.add", Status: 201}, handle(s.addRole)},
		{route{Method: del, Path: t + "/roles/{user}", Summary: "Take a user's role in the tenant away", Access: AccessTenant, Role: sphere.RoleAdministrator, Action: "role.remove"}, handle(s.removeRole)},

		// Products.
		{route{Method: get, Path: t + "/products", Summary: "List products", Access: AccessTenant, Role: sphere.RoleReader}, handle(s.listProducts)},
		{route{Method: post, Path: t + "/products", Summary: "Create a product and its five default device groups", Access: AccessTenant, Role: sphere.RoleContributor, Action: "product.create", Status: 201}, handle(s.createProduct)},
		{route{Method: get, Path: t + "/products/{product}", Summary: "Show a product (by id or name)", Access: AccessTenant, Role: sphere.RoleReader}, handle(s.getProduct)},
		{route{Method: patch, Path: t + "/products/{product}", Summary: "Change a product's name or description", Access: AccessTenant, Role: sphere.RoleContributor, Action: "product.update"}, handle(s.updateProduct)},
		{route{Method: del, Path: t + "/products/{product}", Summary: "Delete a product and its device groups (none may hold devices)", Access: AccessTenant, Role: sphere.RoleAdministrator, Action: "product.delete"}, handle(s.deleteProduct)},

		// Device groups.
		{route{Method: get, Path: t + "/device-groups", Summary: "List device groups", Access: AccessTenant, Role: sphere.RoleReader}, handle(s.listDeviceGroups)},
		{route{Method: post, Path: t + "/device-groups", Summary: "Create a device group in a product", Access: AccessTenant, Role: sphere.RoleContributor, Action: "device_group.create", Status: 201}, handle(s.createDeviceGroup)},
		{route{Method: get, Path: t + "/device-groups/{group}", Summary: "Show a device group", Access: AccessTenant, Role: sphere.RoleReader}, handle(s.getDeviceGroup)},
		{route{Method: patch, Path: t + "/device-groups/{group}", Summary: "Change a device group's settings", Access: AccessTenant, Role: sphere.RoleContributor, Action: "device_group.update"}, handle(s.updateDeviceGroup)},
		{route{Method: del, Path: t + "/device-groups/{group}", Summary: "Delete an empty device group", Access: AccessTenant, Role: sphere.RoleAdministrator, Action: "device_group.delete"}, handle(s.deleteDeviceGroup)},

		// Devices: registration at manufacture (operators), then tenant claims.
		{route{Method: post, Path: "/api/v1/devices", Summary: "Register a device's public keys at manufacture", Access: AccessOperator, Action: "device.register", Status: 201}, handle(s.registerDevice)},
		{route{Method: post, Path: "/api/v1/device-batches", Summary: "Register up to 10,000 devices in one call, all or none (an audit entry per device)", Access: AccessOperator, Action: "device.register_batch", Status: 201, MaxBody: 8 << 20}, handle(s.registerDevices)},
		{route{Method: get, Path: "/api/v1/devices", Summary: "List every registered device", Access: AccessOperator}, handle(s.listAllDevices)},
		{route{Method: get, Path: "/api/v1/devices/{device}", Summary: "Show any registered device", Access: AccessOperator}, handle(s.getAnyDevice)},
		{route{Method: get, Path: t + "/devices", Summary: "List the tenant's devices", Access: AccessTenant, Role: sphere.RoleReader}, handle(s.listDevices)},
		{route{Method: get, Path: t + "/devices/{device}", Summary: "Show a device", Access: AccessTenant, Role: sphere.RoleReader}, handle(s.getDevice)},
		{route{Method: post, Path: t + "/devices/{device}/claim", Summary: "Claim a registered device into the tenant", Access: AccessTenant, Role: sphere.RoleContributor, Action: "device.claim"}, handle(s.claimDevice)},
		{route{Method: post, Path: t + "/device-claims", Summary: "Claim up to 10,000 registered devices into a device group in one call, all or none (an audit entry per device)", Access: AccessTenant, Role: sphere.RoleContributor, Action: "device.claim_batch", MaxBody: 2 << 20}, handle(s.claimDevices)},
		{route{Method: patch, Path: t + "/devices/{device}", Summary: "Move a device to another device group", Access: AccessTenant, Role: sphere.RoleContributor, Action: "device.update"}, handle(s.updateDevice)},
		{route{Method: post, Path: t + "/devices/{device}/release", Summary: "Release the tenant's claim on a device (needs confirm: true)", Access: AccessTenant, Role: sphere.RoleAdministrator, Action: "device.release"}, handle(s.releaseDevice)},

		// Audit.
		{route{Method: get, Path: t + "/audit", Summary: "List the tenant's audit log, newest first", Access: AccessTenant, Role: sphere.RoleReader}, handle(s.listTenantAudit)},
		{route{Method: get, Path: "/api/v1/audit", Summary: "List the whole audit log, newest first", Access: AccessOperator}, handle(s.listAllAudit)},
	}
	return finishRoutes(rows)
}

// finishRoutes fills in each row's handler types and default status.
func finishRoutes(rows []struct {
	route
	h func(*route)
}) []*route {
	out := make([]*route, len(rows))
	for i := range rows {
		rt := rows[i].route
		if rt.Status == 0 {
			rt.Status = http.StatusOK
		}
		rows[i].h(&rt)
		rt.in.maxBody = rt.MaxBody
		if rt.out == noContentType {
			rt.Status = http.StatusNoContent
		}
		out[i] = &rt
	}
	return out
}

// setTarget names what a create made as the audit target. A create that
// failed made nothing (the store may still hand back an unused new id), so
// it keeps the target taken from the path, as a call refused before its
// handler ran does.
func setTarget(c *call, id string, err error) {
	if err == nil {
		c.target = id
	}
}

func page(p api.Paging) store.PageRequest {
	return store.PageRequest{Size: p.PageSize, Token: p.PageToken}
}

// ---- the caller ----

func (s *Server) getMe(c *call, _ *api.Empty) (api.Me, error) {
	me := api.Me{User: c.user, Roles: []api.TenantRole{}}
	err := s.store.EachTenant(c.ctx, store.TenantFilter{MemberID: c.user.ID}, func(t sphere.Tenant) error {
		role, err := s.store.RoleIn(c.ctx, c.user.ID, t.ID)
		me.Roles = append(me.Roles, api.TenantRole{TenantID: t.ID, TenantName: t.Name, Role: role})
		return err
	})
	return me, err
}

func (s *Server) listTokens(c *call, in *api.Paging) (sphere.Page[sphere.Token], error) {
	return s.store.ListTokens(c.ctx, c.user.ID, page(*in))
}

func (s *Server) createToken(c *call, in *api.CreateToken) (api.NewToken, error) {
	var exp *time.Time
	switch {
	case in.ExpiresInHours < 0 || in.ExpiresInHours > 24*3650:
		return api.NewToken{}, sphere.Errorf(sphere.EInvalid, "expires_in_hours must be between 0 (never) and %d", 24*3650)
	case in.ExpiresInHours > 0:
		e := s.now().Add(time.Duration(in.ExpiresInHours) * time.Hour)
		exp = &e
	}
	tok, secret, err := s.store.CreateToken(c.ctx, c.user.ID, in.Name, exp)
	setTarget(c, tok.ID, err)
	return api.NewToken{Token: tok, Secret: secret}, err
}

func (s *Server) deleteToken(c *call, _ *api.Empty) (api.NoContent, error) {
	return api.NoContent{}, s.store.DeleteToken(c.ctx, c.user.ID, c.r.PathValue("token"))
}

// ---- tenants ----

func (s *Server) listTenants(c *call, in *api.ListTenants) (sphere.Page[sphere.Tenant], error) {
	f := store.TenantFilter{NameContains: in.Name}
	if !c.user.Operator {
		f.MemberID = c.user.ID
	}
	return s.store.ListTenants(c.ctx, f, page(in.Paging))
}

func (s *Server) createTenant(c *call, in *api.CreateTenant) (sphere.Tenant, error) {
	t, err := s.store.CreateTenant(c.ctx, in.Name, c.user.ID)
	setTarget(c, t.ID, err)
	return t, err
}

func (s *Server) getTenant(c *call, _ *api.Empty) (sphere.Tenant, error) {
	return s.store.GetTenant(c.ctx, c.tenant.ID())
}

func (s *Server) updateTenant(c *call, in *api.UpdateTenant) (sphere.Tenant, error) {
	return s.store.RenameTenant(c.ctx, c.tenant.ID(), in.Name)
}

// ---- roles ----

func (s *Server) listRoles(c *call, in *api.ListRoles) (sphere.Page[sphere.RoleAssignment], error) {
	return c.tenant.ListRoles(c.ctx, page(in.Paging))
}

func (s *Server) addRole(c *call, in *api.AddRole) (api.RoleAdded, error) {
	c.target = in.User
	role, err := sphere.ParseRole(string(in.Role))
	if err != nil {
		return api.RoleAdded{}, err
	}
	ra, secret, err := c.tenant.AddRole(c.ctx, in.User, role)
	return api.RoleAdded{Assignment: ra, Secret: secret}, err
}

func (s *Server) removeRole(c *call, _ *api.Empty) (api.NoContent, error) {
	return api.NoContent{}, c.tenant.RemoveRole(c.ctx, c.r.PathValue("user"))
}

// ---- products ----

func (s *Server) listProducts(c *call, in *api.ListProducts) (sphere.Page[sphere.Product], error) {
	return c.tenant.ListProducts(c.ctx, store.ProductFilter{NameContains: in.Name}, page(in.Paging))
}

func (s *Server) createProduct(c *call, in *api.CreateProduct) (sphere.Product, error) {
	p, err := c.tenant.CreateProduct(c.ctx, in.Name, in.Description)
	setTarget(c, p.ID, err)
	return p, err
}

func (s *Server) getProduct(c *call, _ *api.Empty) (sphere.Product, error) {
	return c.tenant.GetProduct(c.ctx, c.r.PathValue("product"))
}

func (s *Server) updateProduct(c *call, in *api.UpdateProduct) (sphere.Product, error) {
	if in.Name == nil && in.Description == nil {
		return sphere.Product{}, sphere.Errorf(sphere.EInvalid, "nothing to change: give name and/or description")
	}
	return c.tenant.UpdateProduct(c.ctx, c.r.PathValue("product"), store.ProductUpdate{Name: in.Name, Description: in.Description})
}

func (s *Server) deleteProduct(c *call, _ *api.Empty) (api.NoContent, error) {
	p, err := c.tenant.GetProduct(c.ctx, c.r.PathValue("product"))
	if err != nil {
		return api.NoContent{}, err
	}
	groups, err := c.tenant.ListDeviceGroups(c.ctx, store.DeviceGroupFilter{Product: p.ID}, store.PageRequest{Size: store.MaxPageSize})
	if err != nil {
		return api.NoContent{}, err
	}
	if err := c.tenant.DeleteProduct(c.ctx, p.ID); err != nil {
		return api.NoContent{}, err
	}
	for _, g := range groups.Items {
		if err := s.updates.TUF().RemoveGroup(c.ctx, c.tenant.ID(), g.ID); err != nil {
			return api.NoContent{}, err
		}
	}
	return api.NoContent{}, nil
}

// ---- device groups ----

func (s *Server) listDeviceGroups(c *call, in *api.ListDeviceGroups) (sphere.Page[sphere.DeviceGroup], error) {
	return c.tenant.ListDeviceGroups(c.ctx, store.DeviceGroupFilter{Product: in.Product, Name: in.Name}, page(in.Paging))
}

func (s *Server) createDeviceGroup(c *call, in *api.CreateDeviceGroup) (sphere.DeviceGroup, error) {
	g, err := c.tenant.CreateDeviceGroup(c.ctx, store.DeviceGroupSpec{
		Product: in.Product, Name: in.Name, Description: in.Description,
		OSFeed: in.OSFeed, UpdatePolicy: in.UpdatePolicy, RequireHardwareRoT: in.RequireHardwareRoT,
	})
	setTarget(c, g.ID, err)
	return g, err
}

func (s *Server) getDeviceGroup(c *call, _ *api.Empty) (sphere.DeviceGroup, error) {
	return c.tenant.GetDeviceGroup(c.ctx, c.r.PathValue("group"))
}

func (s *Server) updateDeviceGroup(c *call, in *api.UpdateDeviceGroup) (sphere.DeviceGroup, error) {
	if in.Name == nil && in.Description == nil && in.OSFeed == nil && in.UpdatePolicy == nil && in.RequireHardwareRoT == nil {
		return sphere.DeviceGroup{}, sphere.Errorf(sphere.EInvalid, "nothing to change: give name, description, os_feed, update_policy or require_hardware_rot")
	}
	return c.tenant.UpdateDeviceGroup(c.ctx, c.r.PathValue("group"), store.DeviceGroupUpdate{
		Name: in.Name, Description: in.Description, OSFeed: in.OSFeed, UpdatePolicy: in.UpdatePolicy, RequireHardwareRoT: in.RequireHardwareRoT,
	})
}

func (s *Server) deleteDeviceGroup(c *call, _ *api.Empty) (api.NoContent, error) {
	if err := c.tenant.DeleteDeviceGroup(c.ctx, c.r.PathValue("group")); err != nil {
		return api.NoContent{}, err
	}
	// Its devices are gone with it; its TUF role goes too.
	return api.NoContent{}, s.updates.TUF().RemoveGroup(c.ctx, c.tenant.ID(), c.r.PathValue("group"))
}

// ---- devices ----

// keyBytes accepts PEM text as it is and anything else as base64 DER.
func keyBytes(what, s string) ([]byte, error) {
	s = strings.TrimSpace(s)
	if s == "" || strings.HasPrefix(s, "-----BEGIN") {
		return []byte(s), nil
	}
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return nil, sphere.Errorf(sphere.EInvalid, "%s is neither PEM nor base64 DER", what)
	}
	return b, nil
}

func (s *Server) registerDevice(c *call, in *api.RegisterDevice) (sphere.Device, error) {
	reg, err := registration(in)
	if err != nil {
		return sphere.Device{}, err
	}
	d, err := s.store.RegisterDevice(c.ctx, reg)
	c.target = d.ID
	return d, err
}

func (s *Server) registerDevices(c *call, in *api.RegisterDevices) (api.DeviceBatch, error) {
	if len(in.Devices) == 0 || len(in.Devices) > store.MaxBatch {
		return api.DeviceBatch{}, sphere.Errorf(sphere.EInvalid, "devices: give 1 to %d device records, not %d", store.MaxBatch, len(in.Devices))
	}
	regs := make([]store.Registration, len(in.Devices))
	for i, d := range in.Devices {
		reg, err := registration(&d)
		if err != nil {
			return api.DeviceBatch{}, sphere.Errorf(sphere.EInvalid, "devices[%d]: %s", i, sphere.ErrorMessage(err))
		}
		regs[i] = reg
	}
	ids, err := s.store.RegisterDevices(c.ctx, regs, s.batchAudit(c, "device.register"))
	c.target = fmt.Sprintf("%d devices", len(ids))
	return api.DeviceBatch{Count: len(ids), DeviceIDs: ids}, err
}

func (s *Server) claimDevices(c *call, in *api.ClaimDevices) (api.DeviceBatch, error) {
	err := c.tenant.ClaimDevices(c.ctx, in.DeviceIDs, in.DeviceGroup, s.batchAudit(c, "device.claim"))
	if err != nil {
		return api.DeviceBatch{}, err
	}
	c.target = fmt.Sprintf("%d devices", len(in.DeviceIDs))
	return api.DeviceBatch{Count: len(in.DeviceIDs), DeviceIDs: in.DeviceIDs}, nil
}

// batchAudit is the audit entry a bulk call writes for each of its devices,
// as the single call would (action), with the call's own request id.
func (s *Server) batchAudit(c *call, action string) *sphere.AuditEntry {
	return &sphere.AuditEntry{Time: s.now(), ActorID: c.user.ID, Actor: c.user.Name, Action: action, Result: "ok", Status: http.StatusOK, RequestID: requestID(c.ctx)}
}

// registration decodes the keys of a device record.
func registration(in *api.RegisterDevice) (store.Registration, error) {
	reg := store.Registration{RoT: in.RoT}
	var err error
	if reg.IdentityPublicKey, err = keyBytes("identity_public_key", in.IdentityPublicKey); err != nil {
		return reg, err
	}
	if reg.AttestationPublicKey, err = keyBytes("attestation_public_key", in.AttestationPublicKey); err != nil {
		return reg, err
	}
	reg.EKCertificate, err = keyBytes("ek_certificate", in.EKCertificate)
	return reg, err
}

func (s *Server) listAllDevices(c *call, in *api.ListAllDevices) (sphere.Page[sphere.Device], error) {
	return s.store.ListAllDevices(c.ctx, in.Unclaimed, page(in.Paging))
}

func (s *Server) getAnyDevice(c *call, _ *api.Empty) (sphere.Device, error) {
	return s.store.GetDevice(c.ctx, c.r.PathValue("device"))
}

func (s *Server) listDevices(c *call, in *api.ListDevices) (sphere.Page[sphere.Device], error) {
	return c.tenant.ListDevices(c.ctx, store.DeviceFilter{Product: in.Product, DeviceGroup: in.DeviceGroup, Unassigned: in.Unassigned}, page(in.Paging))
}

func (s *Server) getDevice(c *call, _ *api.Empty) (sphere.Device, error) {
	return c.tenant.GetDevice(c.ctx, c.r.PathValue("device"))
}

func (s *Server) claimDevice(c *call, in *api.ClaimDevice) (sphere.Device, error) {
	return c.tenant.ClaimDevice(c.ctx, c.r.PathValue("device"), in.DeviceGroup)
}

func (s *Server) updateDevice(c *call, in *api.UpdateDevice) (sphere.Device, error) {
	return c.tenant.MoveDevice(c.ctx, c.r.PathValue("device"), in.DeviceGroup)
}

func (s *Server) releaseDevice(c *call, in *api.ReleaseDevice) (sphere.Device, error) {
	if !in.Confirm {
		return sphere.Device{}, sphere.Errorf(sphere.EInvalid, "releasing a device removes it from this tenant and is audited; send confirm: true to go ahead")
	}
	return c.tenant.ReleaseDevice(c.ctx, c.r.PathValue("device"))
}

// ---- audit ----

func auditFilter(in *api.ListAudit) store.AuditFilter {
	return store.AuditFilter{Actor: in.Actor, Action: in.Action, Target: in.Target, Result: in.Result, Since: in.Since, Until: in.Until}
}

func (s *Server) listTenantAudit(c *call, in *api.ListAudit) (sphere.Page[sphere.AuditEntry], error) {
	return c.tenant.ListAudit(c.ctx, auditFilter(in), page(in.Paging))
}

func (s *Server) listAllAudit(c *call, in *api.ListAudit) (sphere.Page[sphere.AuditEntry], error) {
	return s.store.ListAllAudit(c.ctx, auditFilter(in), page(in.Paging))
}
