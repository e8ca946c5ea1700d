// Package api holds the wire types of the admin REST API under /api/v1:
// the request structs that the server decodes and the CLI's client sends,
// and the few responses that are not plain domain types. A request struct
// carries its query parameters in fields tagged `query:"name"` (and
// json:"-") and its JSON body in json-tagged fields; the server derives
// both decoding and the OpenAPI document from these tags, so they are the
// single description of each route's input.
package api

import (
	"encoding/json"
	"time"

	"github.com/opensphere/sphere"
)

// ErrorBody is the one error shape every route returns.
type ErrorBody struct {
	Error ErrorDetail `json:"error"`
}

// ErrorDetail is a machine code (see sphere.E*) and a message for people.
type ErrorDetail struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// Paging is embedded in every list request.
type Paging struct {
	PageSize  int    `json:"-" query:"page_size" doc:"rows per page, 1 to 1000; default 100"`
	PageToken string `json:"-" query:"page_token" doc:"next_page_token of the previous page"`
}

// Empty is the request of a route that takes no input.
type Empty struct{}

// NoContent is the response of a route that answers 204 with no body.
type NoContent struct{}

// Me describes the caller.
type Me struct {
	User  sphere.User  `json:"user"`
	Roles []TenantRole `json:"roles"`
}

// TenantRole is one of the caller's roles.
type TenantRole struct {
	TenantID   string      `json:"tenant_id"`
	TenantName string      `json:"tenant_name"`
	Role       sphere.Role `json:"role"`
}

// CreateToken asks for a new API token for the caller.
type CreateToken struct {
	Name string `json:"name" doc:"a label to recognise the token by"`
	// ExpiresInHours, if above 0, makes the token expire.
	ExpiresInHours int `json:"expires_in_hours,omitempty" doc:"hours until the token expires; 0 means never"`
}

// NewToken is a created token with its secret, shown this once.
type NewToken struct {
	Token  sphere.Token `json:"token"`
	Secret string       `json:"secret"`
}

// ListTenants lists the tenants the caller holds a role in (all of them for
// an operator).
type ListTenants struct {
	Paging
	Name string `json:"-" query:"name" doc:"only tenants whose name contains this, any letter case"`
}

// CreateTenant creates a tenant; the calling operator becomes its Administrator.
type CreateTenant struct {
	Name string `json:"name" doc:"1 to 50 letters, digits and spaces; unique"`
}

// UpdateTenant renames a tenant.
type UpdateTenant struct {
	Name string `json:"name" doc:"1 to 50 letters, digits and spaces; unique"`
}

// AddRole gives a user a role in the tenant.
type AddRole struct {
	User string      `json:"user" doc:"user name; a new user is created with a first token"`
	Role sphere.Role `json:"role" doc:"Administrator, Contributor or Reader"`
}

// RoleAdded is the answer to AddRole. Secret is set only when the user was
// created by this call: it is the new user's first API token, shown once.
type RoleAdded struct {
	Assignment sphere.RoleAssignment `json:"assignment"`
	Secret     string                `json:"secret,omitempty"`
}

// ListRoles lists the tenant's role assignments.
type ListRoles struct {
	Paging
}

// CreateProduct creates a product with its five default device groups.
type CreateProduct struct {
	Name        string `json:"name" doc:"1 to 50 letters, digits and spaces; unique in the tenant"`
	Description string `json:"description,omitempty" doc:"at most 256 characters"`
}

// ListProducts lists the tenant's products.
type ListProducts struct {
	Paging
	Name string `json:"-" query:"name" doc:"only products whose name contains this, any letter case"`
}

// UpdateProduct changes the given fields of a product.
type UpdateProduct struct {
	Name        *string `json:"name,omitempty"`
	Description *string `json:"description,omitempty"`
}

// CreateDeviceGroup creates a device group in a product.
type CreateDeviceGroup struct {
	Product            string `json:"product" doc:"product id or name"`
	Name               string `json:"name" doc:"1 to 50 letters, digits and spaces; unique in the product"`
	Description        string `json:"description,omitempty"`
	OSFeed             string `json:"os_feed,omitempty" doc:"Retail (default) or RetailEval"`
	UpdatePolicy       string `json:"update_policy,omitempty" doc:"UpdateAll (default), No3rdPartyAppUpdates or NoUpdates"`
	RequireHardwareRoT bool   `json:"require_hardware_rot,omitempty" doc:"refuse devices whose root of trust is software"`
}

// ListDeviceGroups lists the tenant's device groups.
type ListDeviceGroups struct {
	Paging
	Product string `json:"-" query:"product" doc:"only groups of this product (id or name)"`
	Name    string `json:"-" query:"name" doc:"only groups with exactly this name, any letter case"`
}

// UpdateDeviceGroup changes the given fields of a device group.
type UpdateDeviceGroup struct {
	Name               *string `json:"name,omitempty"`
	Description        *string `json:"description,omitempty"`
	OSFeed             *string `json:"os_feed,omitempty"`
	UpdatePolicy       *string `json:"update_policy,omitempty"`
	RequireHardwareRoT *bool   `json:"require_hardware_rot,omitempty"`
}

// RegisterDevice records a device's public keys at manufacture.
type RegisterDevice struct {
	IdentityPublicKey    string `json:"identity_public_key" doc:"PEM PUBLIC KEY, or base64 SubjectPublicKeyInfo DER"`
	AttestationPublicKey string `json:"attestation_public_key" doc:"PEM PUBLIC KEY, or base64 SubjectPublicKeyInfo DER"`
	EKCertificate        string `json:"ek_certificate,omitempty" doc:"TPM endorsement key certificate, PEM or base64 DER"`
	RoT                  string `json:"rot,omitempty" doc:"root of trust: tpm (default) or soft (development; refused where hardware is required)"`
}

// RegisterDevices registers many devices in one call, all or none.
type RegisterDevices struct {
	Devices []RegisterDevice `json:"devices" doc:"1 to 10,000 device records, as for one registration"`
}

// ClaimDevices claims many registered devices into the tenant in one call,
// all or none.
type ClaimDevices struct {
	DeviceIDs   []string `json:"device_ids" doc:"1 to 10,000 device ids"`
	DeviceGroup string   `json:"device_group_id,omitempty" doc:"device group to put the devices in; empty leaves them unassigned"`
}

// DeviceBatch is the outcome of a bulk registration or claim: every device
// it names, in the order given.
type DeviceBatch struct {
	Count     int      `json:"count"`
	DeviceIDs []string `json:"device_ids"`
}

// ListAllDevices lists every registered device (operators).
type ListAllDevices struct {
	Paging
	Unclaimed bool `json:"-" query:"unclaimed" doc:"only devices no tenant has claimed"`
}

// ClaimDevice claims a registered device into the tenant.
type ClaimDevice struct {
	DeviceGroup string `json:"device_group_id,omitempty" doc:"device group to put the device in; empty leaves it unassigned"`
}

// ListDevices lists the tenant's devices.
type ListDevices struct {
	Paging
	Product     string `json:"-" query:"product" doc:"only devices in a group of this product (id or name)"`
	DeviceGroup string `json:"-" query:"device_group" doc:"only devices in this device group (id)"`
	Unassigned  bool   `json:"-" query:"unassigned" doc:"only devices in no group"`
}

// UpdateDevice moves a device to another device group.
type UpdateDevice struct {
	DeviceGroup string `json:"device_group_id" doc:"device group id"`
}

// ReleaseDevice gives up the tenant's claim on a device.
type ReleaseDevice struct {
	Confirm bool `json:"confirm" doc:"must be true: releasing is audited and the device leaves the tenant"`
}

// ListAudit lists audit entries, newest first.
type ListAudit struct {
	Paging
	Actor  string    `json:"-" query:"actor" doc:"user name"`
	Action string    `json:"-" query:"action" doc:"action, e.g. product.create"`
	Target string    `json:"-" query:"target" doc:"id of the resource acted on"`
	Result string    `json:"-" query:"result" doc:"ok, error (any failure) or an error code"`
	Since  time.Time `json:"-" query:"since" doc:"RFC 3339 time, inclusive"`
	Until  time.Time `json:"-" query:"until" doc:"RFC 3339 time, exclusive"`
}

// ---- certificate authorities ----

// CACertificate is a tenant CA as the API shows it: never its private key.
type CACertificate struct {
	ID          string     `json:"id"`
	Thumbprint  string     `json:"thumbprint" doc:"SHA-256 of the certificate DER, hex"`
	State       string     `json:"state" doc:"Active, Inactive, Expired or Revoked"`
	Subject     string     `json:"subject"`
	NotBefore   time.Time  `json:"not_before"`
	NotAfter    time.Time  `json:"not_after"`
	ActivatesAt time.Time  `json:"activates_at"`
	RevokedAt   *time.Time `json:"revoked_at,omitempty"`
	PEM         string     `json:"pem"`
}

// PEMBundle is one or more PEM certificates.
type PEMBundle struct {
	PEM string `json:"pem"`
}

// CreateProof asks for a proof-of-possession certificate for a tenant CA.
type CreateProof struct {
	Code string `json:"code" doc:"the verification or registration code the cloud gave (AWS IoT, Azure DPS)"`
}

// ---- device revocation and the measurement allowlist ----

// RevokeDevice revokes a device.
type RevokeDevice struct {
	Reason string `json:"reason" doc:"why; shown with every refused attestation"`
}

// AllowMeasurement adds software to the tenant's allowlist.
type AllowMeasurement struct {
	Type   string `json:"type" doc:"agent or config"`
	Digest string `json:"digest" doc:"SHA-256, 64 hex characters"`
	Name   string `json:"name,omitempty" doc:"a label, e.g. sphere-agent 1.4.0"`
	Status string `json:"status,omitempty" doc:"allowed (default) or deprecated (devices become stale)"`
}

// ListMeasurements lists the tenant's allowlist.
type ListMeasurements struct {
	Paging
}

// ---- the device API ----

// ChallengeRequest asks for an attestation challenge.
type ChallengeRequest struct {
	DeviceID string `json:"device_id"`
}

// DeviceSelf is what the device API says about the calling device.
type DeviceSelf struct {
	DeviceID      string    `json:"device_id"`
	TenantID      string    `json:"tenant_id"`
	DeviceGroupID string    `json:"device_group_id"`
	ProductID     string    `json:"product_id"`
	CertNotAfter  time.Time `json:"cert_not_after"`
	// PresentedCertificates is how many certificates the device sent in
	// its TLS handshake (its agent sends the leaf alone).
	PresentedCertificates int `json:"presented_certificates"`
}

// ---- images, deployments, updates ----

// RawBody is the request of a route whose body is not JSON but a file
// (an image package), streamed as application/octet-stream.
type RawBody struct{}

// AddSigningKey registers a publisher key whose signed uploads are accepted.
type AddSigningKey struct {
	Name      string `json:"name" doc:"a label, e.g. CI release key"`
	PublicKey string `json:"public_key" doc:"ECDSA P-256 public key, PEM"`
}

// ListImages lists the tenant's images.
type ListImages struct {
	Paging
	ComponentID string `json:"-" query:"component_id" doc:"only images of this component"`
	Kind        string `json:"-" query:"kind" doc:"os or app"`
}

// CreateDeployment deploys images to a device group.
type CreateDeployment struct {
	DeviceGroup     string   `json:"device_group_id"`
	ImageIDs        []string `json:"image_ids"`
	Waves           []int    `json:"waves,omitempty" doc:"cumulative percentages, default 1,10,50,100"`
	DwellSeconds    int64    `json:"dwell_seconds,omitempty" doc:"time between waves, default 86400"`
	FailurePermille int      `json:"failure_permille,omitempty" doc:"halt when failures per thousand finished devices exceed this; default 50"`
	MinSample       int      `json:"min_sample,omitempty" doc:"finished devices needed before the failure ratio counts; default 5"`
	// CrashRatioPercent halts the rollout when its devices crash more often
	// than this percentage of the previous deployment's crash rate.
	CrashRatioPercent int `json:"crash_ratio_percent,omitempty" doc:"halt when devices on the deployment crash more than this percentage of the previous deployment's rate (200: twice as often); default 200, negative turns it off"`
}

// ListDeployments lists deployments.
type ListDeployments struct {
	Paging
	DeviceGroup string `json:"-" query:"device_group" doc:"only this device group's deployments"`
}

// DeploymentState is a deployment with how its devices fare.
type DeploymentState struct {
	Deployment sphere.Deployment `json:"deployment"`
	// Counts are the devices by update state.
	Counts map[string]int `json:"counts"`
	// GroupDevices is how many devices the group holds.
	GroupDevices int `json:"group_devices"`
}

// ListDeviceUpdates lists the per-device states of a deployment.
type ListDeviceUpdates struct {
	Paging
}

// DeploymentAction pauses, resumes or halts a deployment.
type DeploymentAction struct {
	Reason string `json:"reason,omitempty"`
}

// RotateTUFKey rotates an online key of the tenant's TUF repository.
type RotateTUFKey struct {
	Role string `json:"role" doc:"targets, snapshot or timestamp"`
}

// SignedRoot is a TUF root signed on an operator's machine.
type SignedRoot struct {
	Root json.RawMessage `json:"root" doc:"the signed root metadata (JSON)"`
}

// RemoveRootKey confirms taking the TUF root key offline.
type RemoveRootKey struct {
	Confirm bool `json:"confirm" doc:"must be true: without the exported key nobody can sign a new root"`
}

// DeviceSigningKey is the tenant's image signing key as its devices get it:
// the key every image package they install must be signed with.
type DeviceSigningKey struct {
	KeyID     string `json:"key_id"`
	PublicKey string `json:"public_key"` // PEM
}
