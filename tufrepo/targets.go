package tufrepo

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"

	"github.com/theupdateframework/go-tuf/v2/metadata"
)

// Limits on what one group role may hold, so that a device never has to
// download more than a few MiB of metadata (go-tuf's client refuses targets
// metadata over 5 MB by default).
const (
	MaxGroupTargets = 1000
	MaxCustomBytes  = 16 << 10
)

// Target is a file that a device group's devices should have.
type Target struct {
	// Name is the file name, e.g. "<image-id>.pkg": 1 to 200 of
	// A-Z a-z 0-9 . _ - , not starting with a dot. Its TUF target path is
	// TargetPath(group, Name).
	Name   string `json:"name"`
	Length int64  `json:"length"`
	// SHA256 is the file's SHA-256 as 64 hex digits.
	SHA256 string `json:"sha256"`
	// Custom is opaque metadata for the device (a JSON object, integers
	// only: the signatures are over canonical JSON, which has no floats).
	Custom json.RawMessage `json:"custom,omitempty"`
}

var targetNameRE = regexp.MustCompile(`^[A-Za-z0-9_-][A-Za-z0-9._-]{0,199}$`)

// GroupRole is the name of a device group's delegated targets role.
func GroupRole(groupID string) string { return "group-" + groupID }

// TargetPath is the TUF target path of a group's file: what a device
// passes to the updater's GetTargetInfo.
func TargetPath(groupID, name string) string { return "groups/" + groupID + "/" + name }

// ParseTargetFile checks a path that a device requests under the targets
// URL, "groups/<group-id>/<sha256>.<name>" (the consistent-snapshot form),
// and splits it, so that the server can serve the blob with that hash.
func ParseTargetFile(path string) (groupID, sha256Hex, name string, err error) {
	rest, ok := strings.CutPrefix(path, "groups/")
	if !ok {
		return "", "", "", ErrNotFound
	}
	groupID, file, ok := strings.Cut(rest, "/")
	if !ok || !isUUID(groupID) {
		return "", "", "", ErrNotFound
	}
	sha256Hex, name, ok = strings.Cut(file, ".")
	if !ok || len(sha256Hex) != 64 || !isLowerHex(sha256Hex) || !targetNameRE.MatchString(name) {
		return "", "", "", ErrNotFound
	}
	return groupID, sha256Hex, name, nil
}

// SetGroupTargets makes targets the complete list of files that the group's
// devices should have, publishing a new version of the group's role (and
// the delegation to it, if the group is new). Publishing the same list
// again changes nothing.
func (r *Repo) SetGroupTargets(ctx context.Context, tenant, groupID string, targets []Target) error {
	if err := checkTenant(tenant); err != nil {
		return err
	}
	if err := checkGroup(groupID); err != nil {
		return err
	}
	files, err := targetFiles(groupID, targets)
	if err != nil {
		return err
	}
	role := GroupRole(groupID)
	err = r.update(ctx, tenant, func(st *state) (*changes, error) {
		ch := &changes{}
		if _, ok := delegatedKeys(st.targets, role); ok {
			cur, err := r.loadGroup(ctx, tenant, role)
			if err != nil {
				return nil, err
			}
			if sameTargets(cur.Signed.Targets, files) {
				return nil, nil
			}
		} else {
			t := clone(st.targets)
			addDelegation(t, role, groupID, st.root.Signed.Roles[metadata.TARGETS].KeyIDs, st.root.Signed.Keys)
			ch.targets = t
		}
		g := metadata.Targets(r.now())
		g.Signed.Targets = files
		ch.group(role, g)
		return ch, nil
	})
	if err != nil {
		return fmt.Errorf("tufrepo.SetGroupTargets: %w", err)
	}
	return nil
}

// RemoveGroup removes the group's delegation, so that its devices find no
// targets. Removing a group that has none does nothing.
func (r *Repo) RemoveGroup(ctx context.Context, tenant, groupID string) error {
	if err := checkTenant(tenant); err != nil {
		return err
	}
	if err := checkGroup(groupID); err != nil {
		return err
	}
	role := GroupRole(groupID)
	err := r.update(ctx, tenant, func(st *state) (*changes, error) {
		if _, ok := delegatedKeys(st.targets, role); !ok {
			return nil, nil
		}
		t := clone(st.targets)
		t.Signed.Delegations.Roles = slices.DeleteFunc(t.Signed.Delegations.Roles, func(d metadata.DelegatedRole) bool { return d.Name == role })
		if len(t.Signed.Delegations.Roles) == 0 {
			t.Signed.Delegations = nil
		}
		// The group's entry stays in the snapshot (see commit).
		return &changes{targets: t}, nil
	})
	if err != nil {
		return fmt.Errorf("tufrepo.RemoveGroup: %w", err)
	}
	return nil
}

// GroupTargets returns the files the group's role lists now, by name, or
// ErrNotFound if the group has no role.
func (r *Repo) GroupTargets(ctx context.Context, tenant, groupID string) ([]Target, error) {
	if err := checkTenant(tenant); err != nil {
		return nil, err
	}
	if err := checkGroup(groupID); err != nil {
		return nil, err
	}
	_, t, err := latest(ctx, r.st, tenant, metadata.TARGETS, metadata.Targets())
	if err != nil {
		return nil, fmt.Errorf("tufrepo.GroupTargets: %w", err)
	}
	role := GroupRole(groupID)
	if _, ok := delegatedKeys(t, role); !ok {
		return nil, fmt.Errorf("tufrepo.GroupTargets: group %s: %w", groupID, ErrNotFound)
	}
	g, err := r.loadGroup(ctx, tenant, role)
	if err != nil {
		return nil, fmt.Errorf("tufrepo.GroupTargets: %w", err)
	}
	prefix := TargetPath(groupID, "")
	var out []Target
	for _, path := range sortedKeys(g.Signed.Targets) {
		f := g.Signed.Targets[path]
		t := Target{Name: strings.TrimPrefix(path, prefix), Length: f.Length, SHA256: hex.EncodeToString(f.Hashes["sha256"])}
		if f.Custom != nil {
			t.Custom = *f.Custom
		}
		out = append(out, t)
	}
	return out, nil
}

// Groups returns the ids of the groups that have a role, sorted.
func (r *Repo) Groups(ctx context.Context, tenant string) ([]string, error) {
	if err := checkTenant(tenant); err != nil {
		return nil, err
	}
	_, t, err := latest(ctx, r.st, tenant, metadata.TARGETS, metadata.Targets())
	if err != nil {
		return nil, fmt.Errorf("tufrepo.Groups: %w", err)
	}
	var out []string
	for _, role := range groupRoles(t) {
		out = append(out, strings.TrimPrefix(role, "group-"))
	}
	slices.Sort(out)
	return out, nil
}

// addDelegation delegates groups/<group>/* to role, signed by keyIDs, in
// name order, so that the same set of groups always gives the same JSON.
func addDelegation(t *metadata.Metadata[metadata.TargetsType], role, groupID string, keyIDs []string, keys map[string]*metadata.Key) {
	if t.Signed.Delegations == nil {
		t.Signed.Delegations = &metadata.Delegations{Keys: map[string]*metadata.Key{}, Roles: []metadata.DelegatedRole{}}
	}
	d := t.Signed.Delegations
	for _, id := range keyIDs {
		d.Keys[id] = keys[id]
	}
	d.Roles = append(d.Roles, metadata.DelegatedRole{
		Name:        role,
		KeyIDs:      slices.Clone(keyIDs),
		Threshold:   1,
		Terminating: true,
		Paths:       []string{TargetPath(groupID, "*")},
	})
	slices.SortFunc(d.Roles, func(a, b metadata.DelegatedRole) int { return strings.Compare(a.Name, b.Name) })
}

// setDelegationKeys makes keyIDs the keys of every group role (after a
// targets key rotation).
func setDelegationKeys(t *metadata.Metadata[metadata.TargetsType], keyIDs []string, keys map[string]*metadata.Key) {
	d := t.Signed.Delegations
	if d == nil {
		return
	}
	d.Keys = map[string]*metadata.Key{}
	for _, id := range keyIDs {
		d.Keys[id] = keys[id]
	}
	for i := range d.Roles {
		d.Roles[i].KeyIDs = slices.Clone(keyIDs)
	}
}

func checkGroup(groupID string) error {
	if !isUUID(groupID) {
		return invalid("device group id %q is not a UUID", groupID)
	}
	return nil
}

// targetFiles validates targets and turns them into the TUF targets map.
func targetFiles(groupID string, targets []Target) (map[string]*metadata.TargetFiles, error) {
	if len(targets) > MaxGroupTargets {
		return nil, invalid("a device group can have at most %d target files, not %d", MaxGroupTargets, len(targets))
	}
	out := make(map[string]*metadata.TargetFiles, len(targets))
	for _, t := range targets {
		if !targetNameRE.MatchString(t.Name) {
			return nil, invalid("target name %q must be 1 to 200 of A-Z a-z 0-9 . _ - and not start with a dot", t.Name)
		}
		path := TargetPath(groupID, t.Name)
		if _, dup := out[path]; dup {
			return nil, invalid("target %q is listed twice", t.Name)
		}
		if t.Length < 0 {
			return nil, invalid("target %q: length %d is negative", t.Name, t.Length)
		}
		sum, err := hex.DecodeString(t.SHA256)
		if err != nil || len(sum) != 32 {
			return nil, invalid("target %q: sha256 must be 64 hex digits", t.Name)
		}
		f := metadata.TargetFile()
		f.Path = path
		f.Length = t.Length
		f.Hashes["sha256"] = sum
		if len(t.Custom) > 0 {
			custom, err := checkCustom(t.Custom)
			if err != nil {
				return nil, invalid("target %q: custom metadata %v", t.Name, err)
			}
			f.Custom = &custom
		}
		out[path] = f
	}
	return out, nil
}

// checkCustom accepts a JSON object with integer numbers only, at most
// MaxCustomBytes, and returns it compacted.
func checkCustom(raw json.RawMessage) (json.RawMessage, error) {
	if len(raw) > MaxCustomBytes {
		return nil, fmt.Errorf("is %d bytes, more than %d", len(raw), MaxCustomBytes)
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, errors.New("is not valid JSON")
	}
	if dec.More() {
		return nil, errors.New("has data after the JSON object")
	}
	if _, ok := v.(map[string]any); !ok {
		return nil, errors.New("must be a JSON object")
	}
	if !integersOnly(v) {
		return nil, errors.New("may hold only integer numbers (TUF signs canonical JSON, which has no fractions or exponents)")
	}
	var buf bytes.Buffer
	if err := json.Compact(&buf, raw); err != nil {
		return nil, errors.New("is not valid JSON")
	}
	return buf.Bytes(), nil
}

func integersOnly(v any) bool {
	switch v := v.(type) {
	case json.Number:
		_, err := v.Int64()
		return err == nil && !strings.ContainsAny(string(v), ".eE")
	case []any:
		for _, e := range v {
			if !integersOnly(e) {
				return false
			}
		}
	case map[string]any:
		for _, e := range v {
			if !integersOnly(e) {
				return false
			}
		}
	}
	return true
}

// sameTargets reports whether two targets maps publish the same JSON.
func sameTargets(a, b map[string]*metadata.TargetFiles) bool {
	ja, err1 := json.Marshal(a)
	jb, err2 := json.Marshal(b)
	return err1 == nil && err2 == nil && bytes.Equal(ja, jb)
}

func isLowerHex(s string) bool {
	for _, c := range s {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}
