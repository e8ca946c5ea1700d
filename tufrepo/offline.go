package tufrepo

import (
	"context"
	"crypto"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/sigstore/sigstore/pkg/signature"
	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/opensphere/sphere"
)

// ErrRootOffline is returned (wrapped) by operations that need a new root
// while the service no longer holds the root key. The change then waits in
// the pending root (PendingRoot).
var ErrRootOffline = &sphere.Error{Code: sphere.EPrecondition, Message: "the root key is offline: sign the new root with `sphere tuf sign-root`"}

// pendingRole is the Storage role under which unsigned proposals for the
// next root are kept. It is not a TUF role and is never served.
const pendingRole = "pending-root"

// maxRootBytes bounds an imported root (go-tuf's client takes 512000).
const maxRootBytes = 256 << 10

// ExportRootKey returns the tenant's root private key as a PKCS#8 PEM
// block, for an operator to keep offline before RemoveRootKey. It is the
// only function that returns a private key.
func (r *Repo) ExportRootKey(ctx context.Context, tenant string) ([]byte, error) {
	if err := checkTenant(tenant); err != nil {
		return nil, err
	}
	st, err := r.load(ctx, tenant)
	if err != nil {
		return nil, fmt.Errorf("tufrepo.ExportRootKey: %w", err)
	}
	keys := held(st.keys, metadata.ROOT, st.root.Signed.Roles[metadata.ROOT].KeyIDs)
	switch len(keys) {
	case 0:
		return nil, sphere.Errorf(sphere.EPrecondition, "the service does not hold this tenant's root key: it is offline already")
	case 1:
	default:
		return nil, sphere.Errorf(sphere.EPrecondition, "the tenant's root has %d root keys the service holds; export works with one", len(keys))
	}
	priv, err := r.openKey(tenant, keys[0])
	if err != nil {
		return nil, fmt.Errorf("tufrepo.ExportRootKey: %w", err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return nil, fmt.Errorf("tufrepo.ExportRootKey: %w", err)
	}
	r.log.Warn("exported the TUF root key", "tenant", tenant, "key", keys[0].KeyID)
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// RemoveRootKey makes the service forget the tenant's root private key
// for good. Export it first: without it nobody can sign a new root, and
// once the root expires (a year by default) devices stop updating. It does
// nothing if the root key is offline already.
func (r *Repo) RemoveRootKey(ctx context.Context, tenant string) error {
	if err := checkTenant(tenant); err != nil {
		return err
	}
	keys, err := r.st.Keys(ctx, tenant)
	if err != nil {
		return fmt.Errorf("tufrepo.RemoveRootKey: %w", err)
	}
	for _, k := range keys {
		if k.Role == metadata.ROOT && k.Sealed != nil {
			if err := r.st.DropPrivateKey(ctx, tenant, k.KeyID); err != nil {
				return fmt.Errorf("tufrepo.RemoveRootKey: %w", err)
			}
			r.log.Warn("removed the TUF root private key; the root is offline now", "tenant", tenant, "key", k.KeyID)
		}
	}
	return nil
}

// PendingRoot returns the unsigned next root that waits for an operator's
// signatures (after RotateKey, RotateRootKey or Refresh with the root key
// offline, or PrepareRoot), or ErrNotFound if there is none.
func (r *Repo) PendingRoot(ctx context.Context, tenant string) ([]byte, error) {
	if err := checkTenant(tenant); err != nil {
		return nil, err
	}
	_, cur, err := latest(ctx, r.st, tenant, metadata.ROOT, metadata.Root())
	if err != nil {
		return nil, fmt.Errorf("tufrepo.PendingRoot: %w", err)
	}
	f, p, err := r.pending(ctx, tenant, cur)
	if err != nil {
		return nil, fmt.Errorf("tufrepo.PendingRoot: %w", err)
	}
	if p == nil {
		return nil, fmt.Errorf("tufrepo.PendingRoot: %w", ErrNotFound)
	}
	return f.JSON, nil
}

// PrepareRoot returns the pending root, making one (the current root with
// the next version and a fresh expiry) if there is none: the start of
// renewing an offline root or rotating an offline root key.
func (r *Repo) PrepareRoot(ctx context.Context, tenant string) ([]byte, error) {
	if err := checkTenant(tenant); err != nil {
		return nil, err
	}
	f, err := r.changePending(ctx, tenant, nil)
	if err != nil {
		return nil, fmt.Errorf("tufrepo.PrepareRoot: %w", err)
	}
	return f.JSON, nil
}

// ensurePending makes sure a pending root exists and returns it.
func (r *Repo) ensurePending(ctx context.Context, tenant string) (*metadata.Metadata[metadata.RootType], error) {
	f, err := r.changePending(ctx, tenant, nil)
	if err != nil {
		return nil, err
	}
	return metadata.Root().FromBytes(f.JSON)
}

// pending returns the stored pending root if it proposes the version after
// cur; a proposal for an older version is stale.
func (r *Repo) pending(ctx context.Context, tenant string, cur *metadata.Metadata[metadata.RootType]) (*MetadataFile, *metadata.Metadata[metadata.RootType], error) {
	f, err := r.st.LatestMetadata(ctx, tenant, pendingRole)
	if errors.Is(err, ErrNotFound) {
		return nil, nil, nil
	}
	if err != nil {
		return nil, nil, err
	}
	p, err := metadata.Root().FromBytes(f.JSON)
	if err != nil {
		return nil, nil, fmt.Errorf("stored pending root does not parse: %w", err)
	}
	if p.Signed.Version != cur.Signed.Version+1 {
		return &MetadataFile{Role: pendingRole, Version: f.Version}, nil, nil
	}
	return &f, p, nil
}

// changePending applies change to the pending root (made from the current
// root if there is none) and stores the result. With a nil change it only
// makes sure that a pending root exists.
func (r *Repo) changePending(ctx context.Context, tenant string, change func(*metadata.RootType) error) (*MetadataFile, error) {
	mu := r.lock(tenant)
	mu.Lock()
	defer mu.Unlock()
	for i := 1; ; i++ {
		_, cur, err := latest(ctx, r.st, tenant, metadata.ROOT, metadata.Root())
		if err != nil {
			return nil, err
		}
		f, p, err := r.pending(ctx, tenant, cur)
		if err != nil {
			return nil, err
		}
		if p != nil && change == nil {
			return f, nil
		}
		seq := int64(1)
		if f != nil {
			seq = f.Version + 1
		}
		if p == nil {
			p = r.nextRoot(&state{root: cur}, r.now())
		}
		if change != nil {
			if err := change(&p.Signed); err != nil {
				return nil, err
			}
		}
		p.Signatures = []metadata.Signature{}
		data, err := p.ToBytes(true)
		if err != nil {
			return nil, err
		}
		nf := MetadataFile{Role: pendingRole, Version: seq, JSON: data, Expires: p.Signed.Expires}
		err = r.st.PutMetadata(ctx, tenant, []MetadataFile{nf})
		if errors.Is(err, ErrConflict) && i < conflictAttempts {
			if err := backoff(ctx, i); err != nil {
				return nil, err
			}
			continue
		}
		if err != nil {
			return nil, err
		}
		return &nf, nil
	}
}

// SignRoot adds a signature by keyPEM (an ECDSA P-256 private key, PKCS#8
// or SEC 1 PEM, as ExportRootKey writes) to rootJSON, replacing an earlier
// signature by the same key. It is a pure function for the operator's
// machine, so the offline root key never touches the service. A new root
// must be signed by the current root key and by the new root's own key;
// when they are the same key, once is enough.
func SignRoot(rootJSON, keyPEM []byte) ([]byte, error) {
	root, err := metadata.Root().FromBytes(rootJSON)
	if err != nil {
		return nil, fmt.Errorf("tufrepo.SignRoot: not TUF root metadata: %w", err)
	}
	priv, err := parsePrivateKeyPEM(keyPEM)
	if err != nil {
		return nil, fmt.Errorf("tufrepo.SignRoot: key: %w", err)
	}
	s, err := signature.LoadECDSASigner(priv, crypto.SHA256)
	if err != nil {
		return nil, fmt.Errorf("tufrepo.SignRoot: %w", err)
	}
	id, err := signerID(s)
	if err != nil {
		return nil, fmt.Errorf("tufrepo.SignRoot: %w", err)
	}
	root.Signatures = slices.DeleteFunc(root.Signatures, func(sig metadata.Signature) bool { return sig.KeyID == id })
	if _, err := root.Sign(s); err != nil {
		return nil, fmt.Errorf("tufrepo.SignRoot: %w", err)
	}
	return root.ToBytes(true)
}

// ReplaceRootKey makes the key in keyPEM (a public key, or the public half
// of a private key) the only root key of the unsigned rootJSON, with
// threshold 1, and drops its signatures. It is a pure function for
// rotating an offline root key: ReplaceRootKey on the pending root, then
// SignRoot with the old key and with the new key, then ImportSignedRoot.
func ReplaceRootKey(rootJSON, keyPEM []byte) ([]byte, error) {
	root, err := metadata.Root().FromBytes(rootJSON)
	if err != nil {
		return nil, fmt.Errorf("tufrepo.ReplaceRootKey: not TUF root metadata: %w", err)
	}
	pub, err := parsePublicKeyPEM(keyPEM)
	if err != nil {
		return nil, fmt.Errorf("tufrepo.ReplaceRootKey: key: %w", err)
	}
	key, err := metadata.KeyFromPublicKey(pub)
	if err != nil {
		return nil, fmt.Errorf("tufrepo.ReplaceRootKey: %w", err)
	}
	if err := replaceRoleKey(&root.Signed, metadata.ROOT, key); err != nil {
		return nil, fmt.Errorf("tufrepo.ReplaceRootKey: %w", err)
	}
	root.Signatures = []metadata.Signature{}
	return root.ToBytes(true)
}

// ImportSignedRoot publishes a root signed on an operator's machine. It
// must be the version after the current root, be signed by a threshold of
// the current root's keys and of its own, keep consistent snapshots, not
// expire within a timestamp lifetime, and give the online roles only keys
// the service holds. Online roles whose keys it changes are re-signed with
// the new keys in the same publication (this completes a RotateKey that
// waited for the offline root key); keys it no longer lists are retired.
func (r *Repo) ImportSignedRoot(ctx context.Context, tenant string, signedJSON []byte) error {
	if err := checkTenant(tenant); err != nil {
		return err
	}
	if len(signedJSON) > maxRootBytes {
		return invalid("the signed root is %d bytes, more than %d", len(signedJSON), maxRootBytes)
	}
	newRoot, err := metadata.Root().FromBytes(signedJSON)
	if err != nil {
		return invalid("the signed root is not TUF root metadata: %v", err)
	}
	err = r.update(ctx, tenant, func(st *state) (*changes, error) {
		if err := r.checkNewRoot(st, newRoot); err != nil {
			return nil, err
		}
		ch := &changes{root: clone(newRoot), rootJSON: signedJSON}
		if err := r.rekey(ctx, st, newRoot, ch); err != nil {
			return nil, err
		}
		return ch, nil
	})
	if err != nil {
		return fmt.Errorf("tufrepo.ImportSignedRoot: %w", err)
	}
	if keys, err := r.st.Keys(ctx, tenant); err == nil {
		r.retire(ctx, tenant, unusedKeys(keys, newRoot))
	}
	r.log.Info("imported a signed TUF root", "tenant", tenant, "version", newRoot.Signed.Version)
	return nil
}

// checkNewRoot checks what ImportSignedRoot promises.
func (r *Repo) checkNewRoot(st *state, n *metadata.Metadata[metadata.RootType]) error {
	cur := st.root
	if want := cur.Signed.Version + 1; n.Signed.Version != want {
		return invalid("the signed root has version %d; the next root must be version %d (sign the current pending root)", n.Signed.Version, want)
	}
	if err := cur.VerifyDelegate(metadata.ROOT, n); err != nil {
		return invalid("the signed root is not signed by the current root key (threshold %d): %v", cur.Signed.Roles[metadata.ROOT].Threshold, err)
	}
	if err := n.VerifyDelegate(metadata.ROOT, n); err != nil {
		return invalid("the signed root is not signed by its own root key (threshold %d): %v", n.Signed.Roles[metadata.ROOT].Threshold, err)
	}
	if !n.Signed.ConsistentSnapshot {
		return invalid("the signed root must keep consistent_snapshot true")
	}
	if earliest := r.now().Add(r.timestampLife); n.Signed.Expires.Before(earliest) {
		return invalid("the signed root expires at %s, too soon (not before %s)", n.Signed.Expires.Format(time.RFC3339), earliest.UTC().Format(time.RFC3339))
	}
	if len(n.Signed.Roles) != len(metadata.TOP_LEVEL_ROLE_NAMES) {
		return invalid("the signed root must have exactly the roles root, targets, snapshot and timestamp")
	}
	for _, role := range metadata.TOP_LEVEL_ROLE_NAMES {
		if n.Signed.Roles[role] == nil {
			return invalid("the signed root has no %s role", role)
		}
	}
	for _, role := range onlineRoles {
		rr := n.Signed.Roles[role]
		if rr.Threshold < 1 || rr.Threshold > len(rr.KeyIDs) {
			return invalid("the signed root's %s role has threshold %d with %d keys", role, rr.Threshold, len(rr.KeyIDs))
		}
		for _, id := range rr.KeyIDs {
			ks := held(st.keys, role, []string{id})
			if len(ks) == 0 || n.Signed.Keys[id] == nil || !sameKey(n.Signed.Keys[id], mustKey(ks[0])) {
				return invalid("the signed root gives the %s role key %s, which the service does not hold: online roles may only use keys the service made", role, id)
			}
		}
	}
	return nil
}
