package sphere

import "time"

// Tenant is the top-level owner of products, device groups and devices.
type Tenant struct {
	ID        string    `json:"id"`
	Name      string    `json:"name"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
}

// User is a principal that holds API tokens. Operators run the service: they
// create tenants and register devices at manufacture. Everyone else acts
// only through per-tenant roles.
type User struct {
	ID        string    `json:"id"`
	Name      string    `json:"name"`
	Operator  bool      `json:"operator"`
	CreatedAt time.Time `json:"created_at"`
}

// Token describes an API bearer token. The secret itself is shown once, at
// creation, and stored only as a SHA-256 hash.
type Token struct {
	ID        string     `json:"id"`
	UserID    string     `json:"user_id"`
	Name      string     `json:"name"`
	CreatedAt time.Time  `json:"created_at"`
	ExpiresAt *time.Time `json:"expires_at,omitempty"`
}

// RoleAssignment grants a user a role in one tenant.
type RoleAssignment struct {
	TenantID  string    `json:"tenant_id"`
	UserID    string    `json:"user_id"`
	UserName  string    `json:"user"`
	Role      Role      `json:"role"`
	CreatedAt time.Time `json:"created_at"`
}

// Product is one device model; its name is unique in the tenant.
type Product struct {
	ID          string    `json:"id"`
	TenantID    string    `json:"tenant_id"`
	Name        string    `json:"name"`
	Description string    `json:"description"`
	CreatedAt   time.Time `json:"created_at"`
	UpdatedAt   time.Time `json:"updated_at"`
}

// DeviceGroup belongs to one product and holds devices that share update
// settings. Its name is unique within the product.
type DeviceGroup struct {
	ID           string       `json:"id"`
	TenantID     string       `json:"tenant_id"`
	ProductID    string       `json:"product_id"`
	Name         string       `json:"name"`
	Description  string       `json:"description"`
	OSFeed       OSFeed       `json:"os_feed"`
	UpdatePolicy UpdatePolicy `json:"update_policy"`
	// RequireHardwareRoT refuses attestation from devices whose root of
	// trust is software. The Production groups set it by default.
	RequireHardwareRoT bool      `json:"require_hardware_rot"`
	CreatedAt          time.Time `json:"created_at"`
	UpdatedAt          time.Time `json:"updated_at"`
}

// Device is a piece of hardware known by its identity key. It is registered
// at manufacture (public keys only) and later claimed by exactly one tenant.
type Device struct {
	// ID is the lowercase hex SHA-256 of the identity key's
	// SubjectPublicKeyInfo DER: 64 characters.
	ID string `json:"id"`
	// IdentityPublicKey and AttestationPublicKey are PEM "PUBLIC KEY" blocks.
	IdentityPublicKey    string `json:"identity_public_key"`
	AttestationPublicKey string `json:"attestation_public_key"`
	// EKCertificate is the TPM endorsement key certificate (PEM), if any.
	EKCertificate string `json:"ek_certificate,omitempty"`
	// RoT is the kind of root of trust the manufacturer registered:
	// "tpm" or "soft". Attestation trusts this, never the device's claim.
	RoT string `json:"rot"`
	// TenantID is empty while the device is unclaimed.
	TenantID string `json:"tenant_id,omitempty"`
	// DeviceGroupID and ProductID are empty while the device is unassigned.
	DeviceGroupID string     `json:"device_group_id,omitempty"`
	ProductID     string     `json:"product_id,omitempty"`
	RegisteredAt  time.Time  `json:"registered_at"`
	ClaimedAt     *time.Time `json:"claimed_at,omitempty"`
	// RevokedAt is set while the device is revoked: attestation is refused.
	RevokedAt     *time.Time `json:"revoked_at,omitempty"`
	RevokedReason string     `json:"revoked_reason,omitempty"`
	// LastAttestation is the outcome of the device's latest attestation.
	LastAttestation *Attestation `json:"last_attestation,omitempty"`
	// CertNotAfter is when the device's newest certificate expires.
	CertNotAfter *time.Time `json:"cert_not_after,omitempty"`
}

// Attestation results.
const (
	AttestHealthy = "healthy" // certificate issued
	AttestStale   = "stale"   // genuine but out of date: no certificate, updates only
	AttestRefused = "refused" // not trusted; Reason says why
)

// Attestation is the outcome of one attestation.
type Attestation struct {
	At     time.Time `json:"at"`
	Result string    `json:"result"`
	// Reason is a machine code (see package attest) when Result is not
	// healthy, with Detail for people.
	Reason string `json:"reason,omitempty"`
	Detail string `json:"detail,omitempty"`
}

// AuditEntry records one mutating API call: who, what, when and the result.
type AuditEntry struct {
	Seq       int64     `json:"seq"`
	Time      time.Time `json:"time"`
	TenantID  string    `json:"tenant_id,omitempty"`
	ActorID   string    `json:"actor_id,omitempty"`
	Actor     string    `json:"actor"`
	Action    string    `json:"action"`
	Target    string    `json:"target,omitempty"`
	Result    string    `json:"result"` // "ok" or an error code
	Status    int       `json:"status"`
	RequestID string    `json:"request_id,omitempty"`
}

// Page is one page of a list. NextPageToken is empty on the last page;
// otherwise pass it back as page_token to get the next one.
type Page[T any] struct {
	Items         []T    `json:"items"`
	NextPageToken string `json:"next_page_token,omitempty"`
}

// Measurement statuses in a tenant's allowlist.
const (
	MeasurementAllowed    = "allowed"    // devices running it are healthy
	MeasurementDeprecated = "deprecated" // genuine but out of date: devices are stale
)

// AllowedMeasurement is software a tenant allows its devices to run,
// identified by the SHA-256 that the device's agent measures: its own
// binary ("agent") or its configuration ("config"). Image measurements
// come from images themselves once they exist.
type AllowedMeasurement struct {
	ID        string    `json:"id"`
	TenantID  string    `json:"tenant_id"`
	Type      string    `json:"type"`
	Digest    string    `json:"digest"`
	Name      string    `json:"name"`
	Status    string    `json:"status"`
	CreatedAt time.Time `json:"created_at"`
}

// SigningKey is a key that signs image packages: a publisher key whose
// uploads the tenant accepts, or the tenant's own service key with which
// the service re-signs every image it stores.
type SigningKey struct {
	ID        string     `json:"id"`
	TenantID  string     `json:"tenant_id,omitempty"`
	KeyID     string     `json:"key_id"` // hex SHA-256 of the public key's SubjectPublicKeyInfo
	Role      string     `json:"role"`   // "publisher" or "service"
	Name      string     `json:"name"`
	PublicKey string     `json:"public_key"` // PEM
	CreatedAt time.Time  `json:"created_at"`
	RevokedAt *time.Time `json:"revoked_at,omitempty"`
}

// Signing key roles.
const (
	KeyPublisher = "publisher"
	KeyService   = "service"
)

// Image is an immutable, content-addressed image package: an OS or an app.
type Image struct {
	ID              string    `json:"id"` // hex SHA-256 of the package metadata
	TenantID        string    `json:"tenant_id,omitempty"`
	Kind            string    `json:"kind"` // "os" or "app"
	ComponentID     string    `json:"component_id"`
	Name            string    `json:"name"`
	Version         string    `json:"version"`
	SecurityVersion uint32    `json:"security_version"`
	BuildTime       time.Time `json:"build_time"`
	// BlobSHA256 and Size describe the stored (service-signed) package.
	BlobSHA256  string    `json:"blob_sha256"`
	Size        int64     `json:"size"`
	SignerKeyID string    `json:"signer_key_id"`
	UploadedBy  string    `json:"uploaded_by,omitempty"`
	CreatedAt   time.Time `json:"created_at"`
	// Metadata is the package metadata as signed (JSON).
	Metadata []byte `json:"-"`
}

// OSRelease is an OS image published by the platform on the feeds:
// RetailEval groups get it at EvalAt, Retail groups at RetailAt.
type OSRelease struct {
	Image
	EvalAt      time.Time  `json:"eval_at"`
	RetailAt    time.Time  `json:"retail_at"`
	RetractedAt *time.Time `json:"retracted_at,omitempty"`
}

// Deployment states.
const (
	DeploymentActive     = "active"
	DeploymentPaused     = "paused"
	DeploymentHalted     = "halted"     // stopped by itself (failures) or by an operator
	DeploymentSuperseded = "superseded" // a newer deployment of the group replaced it
)

// Deployment is a set of images for a device group, rolled out in waves.
type Deployment struct {
	ID            string   `json:"id"`
	TenantID      string   `json:"tenant_id"`
	DeviceGroupID string   `json:"device_group_id"`
	ImageIDs      []string `json:"image_ids"`
	State         string   `json:"state"`
	StateReason   string   `json:"state_reason,omitempty"`
	// Waves are cumulative percentages of the group, e.g. [1, 10, 50, 100].
	Waves []int `json:"waves"`
	// Dwell is how long a wave runs before the next one starts.
	DwellSeconds int64 `json:"dwell_seconds"`
	// FailurePermille halts the rollout when failed devices per thousand
	// of those that finished in the current wave exceed it, once at least
	// MinSample devices finished.
	FailurePermille int `json:"failure_permille"`
	MinSample       int `json:"min_sample"`
	// CrashRatioPercent halts the rollout when devices on it crash more
	// often than this percentage of the rate of the devices still on the
	// previous deployment (200: twice as often); 0 turns it off.
	CrashRatioPercent int       `json:"crash_ratio_percent"`
	CurrentWave       int       `json:"current_wave"` // index into Waves
	WaveStartedAt     time.Time `json:"wave_started_at"`
	CreatedBy         string    `json:"created_by"`
	CreatedAt         time.Time `json:"created_at"`
	UpdatedAt         time.Time `json:"updated_at"`
}

// Per-device update states.
const (
	UpdatePending     = "pending"     // in the rollout, not started
	UpdateDownloading = "downloading" // reported by the device
	UpdateInstalled   = "installed"   // reported by the device
	UpdateVerified    = "verified"    // attestation measured the new images
	UpdateFailed      = "failed"
	UpdateRolledBack  = "rolled_back"
)

// DeviceUpdate is how far one device got with one deployment.
type DeviceUpdate struct {
	DeviceID     string    `json:"device_id"`
	DeploymentID string    `json:"deployment_id"`
	State        string    `json:"state"`
	Reason       string    `json:"reason,omitempty"`
	UpdatedAt    time.Time `json:"updated_at"`
}
