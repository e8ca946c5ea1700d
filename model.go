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
	// TenantID is empty while the device is unclaimed.
	TenantID string `json:"tenant_id,omitempty"`
	// DeviceGroupID and ProductID are empty while the device is unassigned.
	DeviceGroupID string     `json:"device_group_id,omitempty"`
	ProductID     string     `json:"product_id,omitempty"`
	RegisteredAt  time.Time  `json:"registered_at"`
	ClaimedAt     *time.Time `json:"claimed_at,omitempty"`
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
