package tufrepo

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"slices"

	"github.com/google/uuid"
	"github.com/sigstore/sigstore/pkg/signature"
	"github.com/theupdateframework/go-tuf/v2/metadata"
)

// onlineRoles are the roles whose keys the service always holds.
var onlineRoles = []string{metadata.TARGETS, metadata.SNAPSHOT, metadata.TIMESTAMP}

// keyLabel binds a sealed private key to its tenant, role and id, so that
// a sealed key copied to another row or tenant does not open.
func keyLabel(tenant, role, keyID string) string {
	return "opensphere tuf key/" + tenant + "/" + role + "/" + keyID
}

// newKey makes an ECDSA P-256 key for role and stores it sealed.
func (r *Repo) newKey(ctx context.Context, tenant, role string) (StoredKey, error) {
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return StoredKey{}, err
	}
	k, err := metadata.KeyFromPublicKey(&priv.PublicKey)
	if err != nil {
		return StoredKey{}, err
	}
	id, err := k.ID()
	if err != nil {
		return StoredKey{}, err
	}
	pub, err := json.Marshal(k)
	if err != nil {
		return StoredKey{}, err
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return StoredKey{}, err
	}
	sk := StoredKey{Role: role, KeyID: id, PublicJSON: pub, Sealed: r.kek.Seal(der, keyLabel(tenant, role, id))}
	if err := r.st.PutKey(ctx, tenant, role, id, sk.PublicJSON, sk.Sealed); err != nil {
		return StoredKey{}, fmt.Errorf("store %s key: %w", role, err)
	}
	return sk, nil
}

// mustKey returns the TUF key object of a key this package made.
func mustKey(k StoredKey) *metadata.Key {
	key, err := parseKey(k.PublicJSON)
	if err != nil {
		panic(fmt.Sprintf("tufrepo: stored key %s: %v", k.KeyID, err))
	}
	return key
}

func parseKey(publicJSON []byte) (*metadata.Key, error) {
	var key metadata.Key
	if err := json.Unmarshal(publicJSON, &key); err != nil {
		return nil, err
	}
	return &key, nil
}

// held returns the stored keys of role that are listed in keyIDs, not
// retired, and whose private part the service still has.
func held(keys []StoredKey, role string, keyIDs []string) []StoredKey {
	var out []StoredKey
	for _, k := range keys {
		if k.Role == role && !k.Retired && k.Sealed != nil && slices.Contains(keyIDs, k.KeyID) {
			out = append(out, k)
		}
	}
	return out
}

// rootOnline reports whether the service holds enough of the current root
// keys to sign a new root by itself.
func rootOnline(st *state) bool {
	role := st.root.Signed.Roles[metadata.ROOT]
	return len(held(st.keys, metadata.ROOT, role.KeyIDs)) >= role.Threshold
}

// openKey unseals a stored private key.
func (r *Repo) openKey(tenant string, k StoredKey) (*ecdsa.PrivateKey, error) {
	der, err := r.kek.Open(k.Sealed, keyLabel(tenant, k.Role, k.KeyID))
	if err != nil {
		return nil, fmt.Errorf("%s key %s: %w", k.Role, k.KeyID, err)
	}
	p, err := x509.ParsePKCS8PrivateKey(der)
	if err != nil {
		return nil, fmt.Errorf("%s key %s: %w", k.Role, k.KeyID, err)
	}
	priv, ok := p.(*ecdsa.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("%s key %s is not ECDSA", k.Role, k.KeyID)
	}
	return priv, nil
}

// signers opens the held keys of role among keyIDs. It fails unless there
// are at least threshold of them.
func (r *Repo) signers(st *state, role string, keyIDs []string, threshold int) ([]signature.Signer, error) {
	keys := held(st.keys, role, keyIDs)
	if len(keys) < max(threshold, 1) {
		return nil, fmt.Errorf("the service holds %d of the %d %s keys it needs", len(keys), max(threshold, 1), role)
	}
	var out []signature.Signer
	for _, k := range keys {
		priv, err := r.openKey(st.tenant, k)
		if err != nil {
			return nil, err
		}
		s, err := signature.LoadECDSASigner(priv, crypto.SHA256)
		if err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, nil
}

// sign replaces m's signatures with ones by the held keys of keyRole
// among keyIDs (group roles are signed with targets keys).
func sign[T metadata.Roles](r *Repo, st *state, m *metadata.Metadata[T], keyRole string, keyIDs []string) error {
	signers, err := r.signers(st, keyRole, keyIDs, 1)
	if err != nil {
		return err
	}
	return signAll(m, signers)
}

// signRoot signs newRoot with the keys that the current root (cur) and
// newRoot itself require; a client checks both thresholds.
func (r *Repo) signRoot(st *state, cur, newRoot *metadata.Metadata[metadata.RootType]) error {
	curRole, newRole := cur.Signed.Roles[metadata.ROOT], newRoot.Signed.Roles[metadata.ROOT]
	a, err := r.signers(st, metadata.ROOT, curRole.KeyIDs, curRole.Threshold)
	if err != nil {
		return err
	}
	b, err := r.signers(st, metadata.ROOT, newRole.KeyIDs, newRole.Threshold)
	if err != nil {
		return err
	}
	// Sign once per key even when both roots list it.
	seen := map[string]bool{}
	var all []signature.Signer
	for _, s := range append(a, b...) {
		id, err := signerID(s)
		if err != nil {
			return err
		}
		if !seen[id] {
			seen[id] = true
			all = append(all, s)
		}
	}
	return signAll(newRoot, all)
}

func signerID(s signature.Signer) (string, error) {
	pub, err := s.PublicKey()
	if err != nil {
		return "", err
	}
	k, err := metadata.KeyFromPublicKey(pub)
	if err != nil {
		return "", err
	}
	return k.ID()
}

func signAll[T metadata.Roles](m *metadata.Metadata[T], signers []signature.Signer) error {
	m.Signatures = []metadata.Signature{}
	for _, s := range signers {
		if _, err := m.Sign(s); err != nil {
			return err
		}
	}
	return nil
}

// retire marks keys as unused and forgets their private parts. It is best
// effort: a key left behind is never used again, as only the keys listed in
// the current root sign anything.
func (r *Repo) retire(ctx context.Context, tenant string, keyIDs []string) {
	for _, id := range keyIDs {
		err := errors.Join(r.st.RetireKey(ctx, tenant, id), r.st.DropPrivateKey(ctx, tenant, id))
		if err != nil {
			r.log.Warn("could not retire a TUF key", "tenant", tenant, "key", id, "err", err)
		}
	}
}

// unusedKeys returns the held keys that root no longer lists for their
// role.
func unusedKeys(keys []StoredKey, root *metadata.Metadata[metadata.RootType]) []string {
	var out []string
	for _, k := range keys {
		role, ok := root.Signed.Roles[k.Role]
		if k.Retired || !ok || slices.Contains(role.KeyIDs, k.KeyID) {
			continue
		}
		out = append(out, k.KeyID)
	}
	return out
}

// replaceRoleKey makes key the only key of role in root.
func replaceRoleKey(root *metadata.RootType, role string, key *metadata.Key) error {
	for _, id := range slices.Clone(root.Roles[role].KeyIDs) {
		if err := root.RevokeKey(id, role); err != nil {
			return err
		}
	}
	root.Roles[role].Threshold = 1
	return root.AddKey(key, role)
}

// sameKey reports whether two TUF key objects are the same public key.
func sameKey(a, b *metadata.Key) bool {
	pa, err1 := a.ToPublicKey()
	pb, err2 := b.ToPublicKey()
	if err1 != nil || err2 != nil {
		return false
	}
	da, err1 := x509.MarshalPKIXPublicKey(pa)
	db, err2 := x509.MarshalPKIXPublicKey(pb)
	return err1 == nil && err2 == nil && bytes.Equal(da, db)
}

// parsePrivateKeyPEM reads an ECDSA P-256 private key: PKCS#8 ("PRIVATE
// KEY", what ExportRootKey writes) or SEC 1 ("EC PRIVATE KEY").
func parsePrivateKeyPEM(data []byte) (*ecdsa.PrivateKey, error) {
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, errors.New("no PEM block found")
	}
	var priv any
	var err error
	switch block.Type {
	case "PRIVATE KEY":
		priv, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	case "EC PRIVATE KEY":
		priv, err = x509.ParseECPrivateKey(block.Bytes)
	default:
		return nil, fmt.Errorf("PEM block is %q, want \"PRIVATE KEY\"", block.Type)
	}
	if err != nil {
		return nil, err
	}
	k, ok := priv.(*ecdsa.PrivateKey)
	if !ok || k.Curve != elliptic.P256() {
		return nil, errors.New("the key is not ECDSA P-256")
	}
	return k, nil
}

// parsePublicKeyPEM reads an ECDSA P-256 public key ("PUBLIC KEY") or
// takes the public half of a private key PEM.
func parsePublicKeyPEM(data []byte) (*ecdsa.PublicKey, error) {
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, errors.New("no PEM block found")
	}
	if block.Type != "PUBLIC KEY" {
		priv, err := parsePrivateKeyPEM(data)
		if err != nil {
			return nil, err
		}
		return &priv.PublicKey, nil
	}
	pub, err := x509.ParsePKIXPublicKey(block.Bytes)
	if err != nil {
		return nil, err
	}
	k, ok := pub.(*ecdsa.PublicKey)
	if !ok || k.Curve != elliptic.P256() {
		return nil, errors.New("the key is not ECDSA P-256")
	}
	return k, nil
}

func sha256Sum(b []byte) []byte {
	s := sha256.Sum256(b)
	return s[:]
}

// checkTenant accepts a tenant id as the store makes them: a canonical,
// lowercase UUID.
func checkTenant(tenant string) error {
	if !isUUID(tenant) {
		return invalid("tenant id %q is not a UUID", tenant)
	}
	return nil
}

// isUUID accepts only the canonical lowercase form (36 characters), so that
// every id has exactly one spelling in role names and paths.
func isUUID(s string) bool {
	u, err := uuid.Parse(s)
	return err == nil && u.String() == s
}
