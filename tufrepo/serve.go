package tufrepo

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata"
)

// Metadata returns the metadata file that a device asks for by name under
// the tenant's metadata URL:
//
//	root.json, N.root.json           the latest root, root version N
//	timestamp.json                   the latest timestamp (never versioned)
//	N.snapshot.json, snapshot.json   snapshot version N, the latest
//	N.targets.json, targets.json     likewise for targets
//	N.group-<id>.json, group-<id>.json  likewise for a device group's role
//
// Anything else, and any version that does not exist, is ErrNotFound.
// The versioned files never change once published and may be cached for
// good; timestamp.json and the unversioned names must not be.
func (r *Repo) Metadata(ctx context.Context, tenant, filename string) ([]byte, error) {
	if !isUUID(tenant) {
		return nil, ErrNotFound
	}
	role, version, ok := parseMetadataName(filename)
	if !ok {
		return nil, ErrNotFound
	}
	var f MetadataFile
	var err error
	if version == 0 {
		f, err = r.st.LatestMetadata(ctx, tenant, role)
	} else {
		f, err = r.st.MetadataVersion(ctx, tenant, role, version)
	}
	if errors.Is(err, ErrNotFound) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("tufrepo.Metadata: %s: %w", filename, err)
	}
	return f.JSON, nil
}

// TrustedRoot returns the tenant's current root, which a device pins at
// enrollment: from it, its updater walks forward through every later
// root version.
func (r *Repo) TrustedRoot(ctx context.Context, tenant string) ([]byte, error) {
	if err := checkTenant(tenant); err != nil {
		return nil, err
	}
	f, err := r.st.LatestMetadata(ctx, tenant, metadata.ROOT)
	if err != nil {
		return nil, fmt.Errorf("tufrepo.TrustedRoot: %w", err)
	}
	return f.JSON, nil
}

// maxMetadataName is longer than any valid name: "N.group-<36>.json" with
// a 19-digit N.
const maxMetadataName = 80

// parseMetadataName splits "N.role.json" or "role.json" into role and
// version (0 for the latest). It accepts only the names Metadata serves.
func parseMetadataName(name string) (role string, version int64, ok bool) {
	if len(name) > maxMetadataName {
		return "", 0, false
	}
	base, ok := strings.CutSuffix(name, ".json")
	if !ok {
		return "", 0, false
	}
	if n, rest, versioned := strings.Cut(base, "."); versioned {
		// A version is decimal without sign or leading zeros, at least 1.
		if n == "" || n[0] < '1' || n[0] > '9' {
			return "", 0, false
		}
		v, err := strconv.ParseInt(n, 10, 64)
		if err != nil {
			return "", 0, false
		}
		version, base = v, rest
	}
	switch {
	case base == metadata.ROOT, base == metadata.SNAPSHOT, base == metadata.TARGETS:
	case base == metadata.TIMESTAMP:
		if version != 0 {
			return "", 0, false
		}
	case strings.HasPrefix(base, "group-") && isUUID(strings.TrimPrefix(base, "group-")):
	default:
		return "", 0, false
	}
	return base, version, true
}

// Status is the state of a tenant's repository, for operators.
type Status struct {
	// RootKeyOnline is false once the root key was removed.
	RootKeyOnline bool `json:"root_key_online"`
	// PendingRoot is true when a next root waits for an operator's
	// signatures (PendingRoot returns it).
	PendingRoot bool         `json:"pending_root"`
	Roles       []RoleStatus `json:"roles"` // root, targets, snapshot, timestamp
	Groups      int          `json:"groups"`
}

// RoleStatus describes the latest version of a top-level role.
type RoleStatus struct {
	Role    string    `json:"role"`
	Version int64     `json:"version"`
	Expires time.Time `json:"expires"`
	KeyIDs  []string  `json:"key_ids"`
}

// Status reports the tenant's repository state.
func (r *Repo) Status(ctx context.Context, tenant string) (Status, error) {
	if err := checkTenant(tenant); err != nil {
		return Status{}, err
	}
	st, err := r.load(ctx, tenant)
	if err != nil {
		return Status{}, fmt.Errorf("tufrepo.Status: %w", err)
	}
	_, p, err := r.pending(ctx, tenant, st.root)
	if err != nil {
		return Status{}, fmt.Errorf("tufrepo.Status: %w", err)
	}
	out := Status{RootKeyOnline: rootOnline(st), PendingRoot: p != nil, Groups: len(groupRoles(st.targets))}
	keys := func(role string) []string { return st.root.Signed.Roles[role].KeyIDs }
	out.Roles = []RoleStatus{
		{metadata.ROOT, st.root.Signed.Version, st.root.Signed.Expires, keys(metadata.ROOT)},
		{metadata.TARGETS, st.targets.Signed.Version, st.targets.Signed.Expires, keys(metadata.TARGETS)},
		{metadata.SNAPSHOT, st.snapshot.Signed.Version, st.snapshot.Signed.Expires, keys(metadata.SNAPSHOT)},
		{metadata.TIMESTAMP, st.timestamp.Signed.Version, st.timestamp.Signed.Expires, keys(metadata.TIMESTAMP)},
	}
	return out, nil
}
