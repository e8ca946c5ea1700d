package tufrepo

import (
	"context"
	"fmt"
	"slices"

	"github.com/theupdateframework/go-tuf/v2/metadata"
)

// RotateKey replaces the key of an online role (targets, snapshot or
// timestamp) with a new one: a new root version listing it, signed by the
// current root key, and the role re-signed with the new key (for targets,
// the group roles too), with snapshot and timestamp following. Devices
// pick up the new root before they check anything the new key signed.
//
// If the root key is offline, RotateKey leaves the change in the pending
// root and returns ErrRootOffline; the rotation completes when an
// operator's signed root is imported (ImportSignedRoot). Until then the
// old key keeps signing.
func (r *Repo) RotateKey(ctx context.Context, tenant, role string) error {
	if err := checkTenant(tenant); err != nil {
		return err
	}
	if !slices.Contains(onlineRoles, role) {
		return invalid("role %q has no online key to rotate: use targets, snapshot or timestamp (RotateRootKey rotates the root key)", role)
	}
	if _, err := r.st.LatestMetadata(ctx, tenant, metadata.ROOT); err != nil {
		return fmt.Errorf("tufrepo.RotateKey: %w", err)
	}
	k, err := r.newKey(ctx, tenant, role)
	if err != nil {
		return fmt.Errorf("tufrepo.RotateKey: %w", err)
	}
	offline := false
	var old []string
	err = r.update(ctx, tenant, func(st *state) (*changes, error) {
		offline = !rootOnline(st)
		if offline {
			return nil, nil
		}
		old = slices.Clone(st.root.Signed.Roles[role].KeyIDs)
		newRoot := r.nextRoot(st, r.now())
		if err := replaceRoleKey(&newRoot.Signed, role, mustKey(k)); err != nil {
			return nil, err
		}
		if err := r.signRoot(st, st.root, newRoot); err != nil {
			return nil, err
		}
		ch := &changes{root: newRoot}
		if err := r.rekey(ctx, st, newRoot, ch); err != nil {
			return nil, err
		}
		return ch, nil
	})
	if err != nil {
		r.retire(ctx, tenant, []string{k.KeyID})
		return fmt.Errorf("tufrepo.RotateKey: %w", err)
	}
	if offline {
		_, err := r.changePending(ctx, tenant, func(p *metadata.RootType) error {
			return replaceRoleKey(p, role, mustKey(k))
		})
		if err != nil {
			r.retire(ctx, tenant, []string{k.KeyID})
			return fmt.Errorf("tufrepo.RotateKey: %w", err)
		}
		r.log.Info("TUF key rotation waits for the offline root key", "tenant", tenant, "role", role, "key", k.KeyID)
		return fmt.Errorf("tufrepo.RotateKey: %w", ErrRootOffline)
	}
	r.retire(ctx, tenant, old)
	r.log.Info("rotated a TUF key", "tenant", tenant, "role", role, "key", k.KeyID)
	return nil
}

// RotateRootKey replaces the root key: a new root version whose only root
// key (threshold 1) is a new one, signed by both the old and the new key,
// as a device needs to move from one to the other. The old key is then
// forgotten.
//
// With the root key offline the service cannot do it; RotateRootKey then
// makes sure a pending root exists and returns ErrRootOffline: put the new
// key in it (ReplaceRootKey), sign it with the old and the new key
// (SignRoot) and import it.
func (r *Repo) RotateRootKey(ctx context.Context, tenant string) error {
	if err := checkTenant(tenant); err != nil {
		return err
	}
	st, err := r.load(ctx, tenant)
	if err != nil {
		return fmt.Errorf("tufrepo.RotateRootKey: %w", err)
	}
	if !rootOnline(st) {
		if _, err := r.changePending(ctx, tenant, nil); err != nil {
			return fmt.Errorf("tufrepo.RotateRootKey: %w", err)
		}
		return fmt.Errorf("tufrepo.RotateRootKey: %w", ErrRootOffline)
	}
	k, err := r.newKey(ctx, tenant, metadata.ROOT)
	if err != nil {
		return fmt.Errorf("tufrepo.RotateRootKey: %w", err)
	}
	var old []string
	err = r.update(ctx, tenant, func(st *state) (*changes, error) {
		if !rootOnline(st) {
			return nil, ErrRootOffline
		}
		old = slices.Clone(st.root.Signed.Roles[metadata.ROOT].KeyIDs)
		newRoot := r.nextRoot(st, r.now())
		if err := replaceRoleKey(&newRoot.Signed, metadata.ROOT, mustKey(k)); err != nil {
			return nil, err
		}
		if err := r.signRoot(st, st.root, newRoot); err != nil {
			return nil, err
		}
		return &changes{root: newRoot}, nil
	})
	if err != nil {
		r.retire(ctx, tenant, []string{k.KeyID})
		return fmt.Errorf("tufrepo.RotateRootKey: %w", err)
	}
	r.retire(ctx, tenant, old)
	r.log.Info("rotated the TUF root key", "tenant", tenant, "key", k.KeyID)
	return nil
}

// rekey adds to ch what must be re-signed because newRoot gives an online
// role other keys than the current root: the role itself and what
// depends on it. A new targets key also signs every group role, and the
// delegations name it.
func (r *Repo) rekey(ctx context.Context, st *state, newRoot *metadata.Metadata[metadata.RootType], ch *changes) error {
	for _, role := range onlineRoles {
		if sameSet(st.root.Signed.Roles[role].KeyIDs, newRoot.Signed.Roles[role].KeyIDs) {
			continue
		}
		switch role {
		case metadata.TARGETS:
			t := clone(st.targets)
			setDelegationKeys(t, newRoot.Signed.Roles[role].KeyIDs, newRoot.Signed.Keys)
			ch.targets = t
			for _, g := range groupRoles(st.targets) {
				m, err := r.loadGroup(ctx, st.tenant, g)
				if err != nil {
					return err
				}
				ch.group(g, m)
			}
		case metadata.SNAPSHOT:
			ch.snapshot = true
		case metadata.TIMESTAMP:
			ch.timestamp = true
		}
	}
	return nil
}

func sameSet(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}
