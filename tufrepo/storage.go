package tufrepo

import (
	"context"
	"time"

	"github.com/opensphere/sphere"
)

// ErrNotFound is returned (possibly wrapped) when a tenant has no such
// metadata file, version or repository. Storage implementations return it
// from LatestMetadata and MetadataVersion. It is a *sphere.Error with code
// not_found, so the server answers 404 without a special case.
var ErrNotFound = &sphere.Error{Code: sphere.ENotFound, Message: "no such TUF metadata"}

// ErrConflict is what a Storage returns (possibly wrapped) from
// PutMetadata when one of the files' (tenant, role, version) is already
// stored: another replica published first. Repo then reloads and retries.
var ErrConflict = &sphere.Error{Code: sphere.EConflict, Message: "the TUF repository changed concurrently; try again"}

// Storage keeps a tenant's TUF keys and metadata. The service implements
// it over its SQL store; tests use an in-memory fake. Every method is
// scoped by tenant: nothing of one tenant is ever visible to another.
type Storage interface {
	// PutKey stores a new signing key: its public part as TUF key JSON
	// and its private part sealed with the KEK (nil for a key whose
	// private part the service never holds). keyID is unique per tenant.
	PutKey(ctx context.Context, tenantID, role, keyID string, publicJSON, sealedPrivate []byte) error
	// Keys lists all of the tenant's keys, retired ones included, in any
	// order.
	Keys(ctx context.Context, tenantID string) ([]StoredKey, error)
	// RetireKey marks a key as no longer used by the repository.
	RetireKey(ctx context.Context, tenantID, keyID string) error
	// DropPrivateKey forgets a key's sealed private part for good (an
	// offline root key, a retired key). Its public part stays.
	DropPrivateKey(ctx context.Context, tenantID, keyID string) error

	// PutMetadata stores files in one transaction: all of them or none.
	// Metadata is append-only by (tenant, role, version): if any file's
	// (role, version) already exists, PutMetadata stores nothing and
	// returns an error wrapping ErrConflict.
	PutMetadata(ctx context.Context, tenantID string, files []MetadataFile) error
	// LatestMetadata returns the role's file with the highest version, or
	// an error wrapping ErrNotFound when there is none.
	LatestMetadata(ctx context.Context, tenantID, role string) (MetadataFile, error)
	// MetadataVersion returns one version of a role's file, or an error
	// wrapping ErrNotFound.
	MetadataVersion(ctx context.Context, tenantID, role string, version int64) (MetadataFile, error)
}

// StoredKey is a key as Storage keeps it.
type StoredKey struct {
	Role       string // root, targets, snapshot or timestamp
	KeyID      string // TUF key id: hex SHA-256 of the canonical public key JSON
	PublicJSON []byte // the TUF key object: {"keytype":..., "scheme":..., "keyval":{"public": PEM}}
	Sealed     []byte // PKCS#8 private key sealed with the KEK; nil once dropped
	Retired    bool
}

// MetadataFile is one version of one role's signed metadata, exactly the
// bytes devices download.
//
// Role is "root", "targets", "snapshot", "timestamp", "group-<uuid>", or
// the internal "pending-root", which holds unsigned proposals for the next
// root while the root key is offline; its Version is a sequence number, not
// the root's version, and it is never served.
type MetadataFile struct {
	Role    string
	Version int64
	JSON    []byte
	Expires time.Time
}
