// Package tufrepo keeps one TUF repository (The Update Framework, built
// with go-tuf v2's metadata package) per tenant: the signed update metadata
// that tells a tenant's devices which image packages their device group
// should run, and that protects them against freeze, rollback,
// mix-and-match and key-compromise attacks.
//
// Layout: the top-level roles root, targets, snapshot and timestamp, and
// one delegated targets role per device group, "group-<group-id>",
// delegated from targets for the paths "groups/<group-id>/*". The top-level
// targets role holds only those delegations. Consistent snapshots are on:
// metadata is served as N.role.json and targets as <sha256>.<name>.
//
// Keys are ECDSA P-256. The root key and the three online keys (targets,
// which also signs the group roles; snapshot; timestamp) are made by Init
// and kept by Storage sealed with the service's KEK. The root key can be
// taken offline (ExportRootKey, RemoveRootKey); changes that need a new
// root then wait as a pending root that an operator signs on their own
// machine (SignRoot) and imports (ImportSignedRoot).
//
// The package knows nothing of SQL or HTTP: Storage is implemented over
// the service's store, and the server serves Metadata and the target blobs.
// It does not decide what a group should run; the deployment code does and
// calls SetGroupTargets. docs/tuf.md is the operator's guide.
package tufrepo

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/opensphere/sphere"
	"github.com/opensphere/sphere/ca"
)

// Default metadata lifetimes.
const (
	DefaultRootExpiry      = 365 * 24 * time.Hour
	DefaultTargetsExpiry   = 90 * 24 * time.Hour // also the group roles
	DefaultSnapshotExpiry  = 7 * 24 * time.Hour
	DefaultTimestampExpiry = 24 * time.Hour
	// MaxTimestampExpiry caps the timestamp's life: a device that is fed
	// stale metadata (a freeze attack) notices within this long.
	MaxTimestampExpiry = 24 * time.Hour
	// timestampMargin is how long before its expiry the timestamp is
	// re-signed; the other roles are re-signed in the last quarter of
	// their life.
	timestampMargin = 6 * time.Hour
)

// Config configures a Repo.
type Config struct {
	// Storage keeps keys and metadata. Required.
	Storage Storage
	// KEK seals the private keys at rest. Required.
	KEK *ca.KEK
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Logger receives warnings such as a root about to expire while its
	// key is offline; nil discards them.
	Logger *slog.Logger

	// Metadata lifetimes; zero means the Default* constant. The timestamp's
	// may not exceed MaxTimestampExpiry; none may be under a minute.
	RootExpiry      time.Duration
	TargetsExpiry   time.Duration // the top-level targets role and the group roles
	SnapshotExpiry  time.Duration
	TimestampExpiry time.Duration
}

// Repo manages the tenants' TUF repositories. It is safe for concurrent
// use, and any number of replicas may share one Storage: every change is
// one all-or-nothing PutMetadata of new versions, and a change that loses
// a race with another replica is recomputed.
type Repo struct {
	st  Storage
	kek *ca.KEK
	now func() time.Time
	log *slog.Logger

	rootLife, targetsLife, snapshotLife, timestampLife time.Duration

	locks sync.Map // tenant id -> *sync.Mutex; serializes this replica's changes
	due   sync.Map // tenant id -> dueTimes: before them Refresh has nothing to do
}

// New checks cfg and returns a Repo.
func New(cfg Config) (*Repo, error) {
	if cfg.Storage == nil || cfg.KEK == nil {
		return nil, errors.New("tufrepo.New: Storage and KEK are required")
	}
	r := &Repo{st: cfg.Storage, kek: cfg.KEK, now: cfg.Now, log: cfg.Logger,
		rootLife: cfg.RootExpiry, targetsLife: cfg.TargetsExpiry,
		snapshotLife: cfg.SnapshotExpiry, timestampLife: cfg.TimestampExpiry}
	if r.now == nil {
		r.now = time.Now
	}
	if r.log == nil {
		r.log = slog.New(slog.DiscardHandler)
	}
	for _, d := range []struct {
		v   *time.Duration
		def time.Duration
	}{{&r.rootLife, DefaultRootExpiry}, {&r.targetsLife, DefaultTargetsExpiry},
		{&r.snapshotLife, DefaultSnapshotExpiry}, {&r.timestampLife, DefaultTimestampExpiry}} {
		if *d.v == 0 {
			*d.v = d.def
		}
		if *d.v < time.Minute {
			return nil, fmt.Errorf("tufrepo.New: metadata lifetime %v is too short (at least a minute)", *d.v)
		}
	}
	if r.timestampLife > MaxTimestampExpiry {
		return nil, fmt.Errorf("tufrepo.New: TimestampExpiry %v exceeds the maximum %v", r.timestampLife, MaxTimestampExpiry)
	}
	return r, nil
}

// Init creates the tenant's repository: the four top-level keys and
// version 1 of root, targets (no groups yet), snapshot and timestamp. It
// does nothing if the repository exists.
func (r *Repo) Init(ctx context.Context, tenant string) error {
	if err := checkTenant(tenant); err != nil {
		return err
	}
	mu := r.lock(tenant)
	mu.Lock()
	defer mu.Unlock()
	if _, err := r.st.LatestMetadata(ctx, tenant, metadata.ROOT); err == nil {
		return nil
	} else if !errors.Is(err, ErrNotFound) {
		return fmt.Errorf("tufrepo.Init: %w", err)
	}

	err := r.create(ctx, tenant)
	if errors.Is(err, ErrConflict) {
		return nil // another replica initialized the tenant first
	}
	if err != nil {
		return fmt.Errorf("tufrepo.Init: %w", err)
	}
	r.log.Info("created the tenant's TUF repository", "tenant", tenant)
	return nil
}

// create makes the keys and publishes version 1 of every top-level role.
// On failure it retires the keys it made: only keys that a published root
// lists are ever used.
func (r *Repo) create(ctx context.Context, tenant string) (err error) {
	st := &state{tenant: tenant}
	defer func() {
		if err != nil {
			var made []string
			for _, k := range st.keys {
				made = append(made, k.KeyID)
			}
			r.retire(ctx, tenant, made)
		}
	}()
	now := r.now()
	root := metadata.Root(r.expiry(now, r.rootLife))
	st.root = root
	for _, role := range []string{metadata.ROOT, metadata.TARGETS, metadata.SNAPSHOT, metadata.TIMESTAMP} {
		k, err := r.newKey(ctx, tenant, role)
		if err != nil {
			return err
		}
		st.keys = append(st.keys, k)
		if err := root.Signed.AddKey(mustKey(k), role); err != nil {
			return err
		}
	}
	if err := r.signRoot(st, root, root); err != nil {
		return err
	}
	// commit writes version latest+1 of each role it touches: start from
	// a virtual version 0 of each.
	st.targets = metadata.Targets(now)
	st.targets.Signed.Version = 0
	st.snapshot = metadata.Snapshot(now)
	st.snapshot.Signed.Version = 0
	st.snapshot.Signed.Meta = map[string]*metadata.MetaFiles{}
	st.timestamp = metadata.Timestamp(now)
	st.timestamp.Signed.Version = 0
	return r.commit(ctx, st, &changes{root: root, targets: metadata.Targets(now)})
}

// state is a tenant's repository as last published.
type state struct {
	tenant       string
	root         *metadata.Metadata[metadata.RootType]
	targets      *metadata.Metadata[metadata.TargetsType]
	snapshot     *metadata.Metadata[metadata.SnapshotType]
	snapshotFile MetadataFile
	timestamp    *metadata.Metadata[metadata.TimestampType]
	keys         []StoredKey
}

func (r *Repo) load(ctx context.Context, tenant string) (*state, error) {
	st := &state{tenant: tenant}
	var err error
	if _, st.root, err = latest(ctx, r.st, tenant, metadata.ROOT, metadata.Root()); err != nil {
		if errors.Is(err, ErrNotFound) {
			return nil, fmt.Errorf("tenant %s has no TUF repository (Init makes it): %w", tenant, err)
		}
		return nil, err
	}
	if _, st.targets, err = latest(ctx, r.st, tenant, metadata.TARGETS, metadata.Targets()); err != nil {
		return nil, err
	}
	if st.snapshotFile, st.snapshot, err = latest(ctx, r.st, tenant, metadata.SNAPSHOT, metadata.Snapshot()); err != nil {
		return nil, err
	}
	if _, st.timestamp, err = latest(ctx, r.st, tenant, metadata.TIMESTAMP, metadata.Timestamp()); err != nil {
		return nil, err
	}
	if st.keys, err = r.st.Keys(ctx, tenant); err != nil {
		return nil, err
	}
	return st, nil
}

// latest loads and parses the newest version of a role's metadata into m.
func latest[T metadata.Roles](ctx context.Context, s Storage, tenant, role string, m *metadata.Metadata[T]) (MetadataFile, *metadata.Metadata[T], error) {
	f, err := s.LatestMetadata(ctx, tenant, role)
	if err != nil {
		return f, nil, err
	}
	if _, err := m.FromBytes(f.JSON); err != nil {
		return f, nil, fmt.Errorf("stored %s version %d does not parse: %w", role, f.Version, err)
	}
	return f, m, nil
}

// groupRoles returns the names of the group roles that targets delegates to.
func groupRoles(t *metadata.Metadata[metadata.TargetsType]) []string {
	if t.Signed.Delegations == nil {
		return nil
	}
	var out []string
	for _, d := range t.Signed.Delegations.Roles {
		out = append(out, d.Name)
	}
	return out
}

// loadGroup returns the latest metadata of a group role.
func (r *Repo) loadGroup(ctx context.Context, tenant, role string) (*metadata.Metadata[metadata.TargetsType], error) {
	_, m, err := latest(ctx, r.st, tenant, role, metadata.Targets())
	return m, err
}

// changes is what one publication changes. commit fills in versions and
// expiries, signs, and cascades: a changed targets or group role means a
// new snapshot, and a new snapshot a new timestamp.
type changes struct {
	root      *metadata.Metadata[metadata.RootType] // signed new root
	rootJSON  []byte                                // its exact bytes, when they came from outside
	targets   *metadata.Metadata[metadata.TargetsType]
	groups    map[string]*metadata.Metadata[metadata.TargetsType] // by role name
	snapshot  bool                                                // re-sign even if no targets role changed
	timestamp bool                                                // re-sign even if the snapshot did not change
}

func (c *changes) empty() bool {
	return c.root == nil && c.targets == nil && len(c.groups) == 0 && !c.snapshot && !c.timestamp
}

func (c *changes) group(role string, m *metadata.Metadata[metadata.TargetsType]) {
	if c.groups == nil {
		c.groups = map[string]*metadata.Metadata[metadata.TargetsType]{}
	}
	c.groups[role] = m
}

// commit signs what ch changes and publishes it with one PutMetadata, so
// that devices never see a snapshot naming a file that does not exist.
// Every role written gets version latest+1: two replicas publishing from
// the same state collide on the timestamp's version and one gets
// ErrConflict.
func (r *Repo) commit(ctx context.Context, st *state, ch *changes) error {
	now := r.now()
	var files []MetadataFile
	root := st.root
	if ch.root != nil {
		root = ch.root
		data := ch.rootJSON
		if data == nil {
			var err error
			if data, err = ch.root.ToBytes(false); err != nil {
				return err
			}
		}
		files = append(files, MetadataFile{Role: metadata.ROOT, Version: root.Signed.Version, JSON: data, Expires: root.Signed.Expires})
	}
	targets := st.targets
	snapMeta := map[string]*metadata.MetaFiles{}
	for name, m := range st.snapshot.Signed.Meta {
		snapMeta[name] = metadata.MetaFile(m.Version)
	}
	newSnapshot := ch.snapshot
	if ch.targets != nil {
		t := ch.targets
		t.Signed.Version = st.targets.Signed.Version + 1
		t.Signed.Expires = r.expiry(now, r.targetsLife)
		if err := sign(r, st, t, metadata.TARGETS, root.Signed.Roles[metadata.TARGETS].KeyIDs); err != nil {
			return fmt.Errorf("sign targets: %w", err)
		}
		f, err := file(metadata.TARGETS, t.Signed.Version, t.Signed.Expires, t)
		if err != nil {
			return err
		}
		files = append(files, f)
		snapMeta[metadata.TARGETS+".json"] = metadata.MetaFile(t.Signed.Version)
		targets, newSnapshot = t, true
	}
	for _, name := range sortedKeys(ch.groups) {
		g := ch.groups[name]
		g.Signed.Version = 1
		if prev, ok := st.snapshot.Signed.Meta[name+".json"]; ok {
			g.Signed.Version = prev.Version + 1
		}
		g.Signed.Expires = r.expiry(now, r.targetsLife)
		keyIDs, ok := delegatedKeys(targets, name)
		if !ok {
			return fmt.Errorf("%s is not delegated by targets", name)
		}
		if err := sign(r, st, g, metadata.TARGETS, keyIDs); err != nil {
			return fmt.Errorf("sign %s: %w", name, err)
		}
		f, err := file(name, g.Signed.Version, g.Signed.Expires, g)
		if err != nil {
			return err
		}
		files = append(files, f)
		snapMeta[name+".json"] = metadata.MetaFile(g.Signed.Version)
		newSnapshot = true
	}
	snapFile := st.snapshotFile
	if newSnapshot {
		s := metadata.Snapshot(r.expiry(now, r.snapshotLife))
		s.Signed.Version = st.snapshot.Signed.Version + 1
		// Entries are never removed, not even a removed group's: a client
		// refuses a snapshot that drops a file its trusted one lists.
		s.Signed.Meta = snapMeta
		if err := sign(r, st, s, metadata.SNAPSHOT, root.Signed.Roles[metadata.SNAPSHOT].KeyIDs); err != nil {
			return fmt.Errorf("sign snapshot: %w", err)
		}
		f, err := file(metadata.SNAPSHOT, s.Signed.Version, s.Signed.Expires, s)
		if err != nil {
			return err
		}
		files = append(files, f)
		snapFile = f
	}
	var tsExpires time.Time
	if newSnapshot || ch.timestamp {
		ts := metadata.Timestamp(r.expiry(now, r.timestampLife))
		ts.Signed.Version = st.timestamp.Signed.Version + 1
		sm := metadata.MetaFile(snapFile.Version)
		sm.Length = int64(len(snapFile.JSON))
		sm.Hashes = metadata.Hashes{"sha256": sha256Sum(snapFile.JSON)}
		ts.Signed.Meta = map[string]*metadata.MetaFiles{metadata.SNAPSHOT + ".json": sm}
		if err := sign(r, st, ts, metadata.TIMESTAMP, root.Signed.Roles[metadata.TIMESTAMP].KeyIDs); err != nil {
			return fmt.Errorf("sign timestamp: %w", err)
		}
		f, err := file(metadata.TIMESTAMP, ts.Signed.Version, ts.Signed.Expires, ts)
		if err != nil {
			return err
		}
		files = append(files, f)
		tsExpires = ts.Signed.Expires
	}
	if len(files) == 0 {
		return nil
	}
	if err := r.st.PutMetadata(ctx, st.tenant, files); err != nil {
		return err
	}
	if d, ok := r.due.Load(st.tenant); ok && !tsExpires.IsZero() {
		// A fresh timestamp postpones the next Refresh of the timestamp,
		// but not of the other roles, whatever was re-signed here.
		dt := d.(dueTimes)
		dt.timestamp = tsExpires.Add(-r.timestampMargin())
		r.due.Store(st.tenant, dt)
	}
	return nil
}

// update runs one read-modify-publish cycle under the tenant's lock: load
// the published state, let fn say what changes (nil: nothing), commit. If
// another replica published in between, it starts over.
func (r *Repo) update(ctx context.Context, tenant string, fn func(st *state) (*changes, error)) error {
	mu := r.lock(tenant)
	mu.Lock()
	defer mu.Unlock()
	for i := 1; ; i++ {
		st, err := r.load(ctx, tenant)
		if err != nil {
			return err
		}
		ch, err := fn(st)
		if err != nil || ch == nil || ch.empty() {
			return err
		}
		err = r.commit(ctx, st, ch)
		if errors.Is(err, ErrConflict) && i < conflictAttempts {
			r.log.Debug("TUF publication raced another replica; retrying", "tenant", tenant, "attempt", i)
			if err := backoff(ctx, i); err != nil {
				return err
			}
			continue
		}
		return err
	}
}

// conflictAttempts bounds the retries of a publication that keeps losing
// races with other replicas. Each loss means another publication went
// through, so the repository makes progress; only heavy contention on one
// tenant exhausts it, and the caller gets ErrConflict.
const conflictAttempts = 10

// backoff waits a random time that grows with the attempt, so that
// replicas that collided do not collide again in lockstep.
func backoff(ctx context.Context, attempt int) error {
	d := time.Duration(rand.Int64N(int64(attempt) * int64(2*time.Millisecond)))
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

func (r *Repo) lock(tenant string) *sync.Mutex {
	mu, _ := r.locks.LoadOrStore(tenant, new(sync.Mutex))
	return mu.(*sync.Mutex)
}

// expiry is now+life in whole seconds (the spec's time format has none
// smaller) and UTC.
func (r *Repo) expiry(now time.Time, life time.Duration) time.Time {
	return now.UTC().Add(life).Truncate(time.Second)
}

func (r *Repo) timestampMargin() time.Duration {
	return min(timestampMargin, r.timestampLife/4)
}

// file serializes signed metadata for storage.
func file[T metadata.Roles](role string, version int64, expires time.Time, m *metadata.Metadata[T]) (MetadataFile, error) {
	data, err := m.ToBytes(false)
	if err != nil {
		return MetadataFile{}, fmt.Errorf("serialize %s: %w", role, err)
	}
	return MetadataFile{Role: role, Version: version, JSON: data, Expires: expires}, nil
}

// delegatedKeys returns the key ids that targets trusts for a group role.
func delegatedKeys(t *metadata.Metadata[metadata.TargetsType], role string) ([]string, bool) {
	if t.Signed.Delegations == nil {
		return nil, false
	}
	for _, d := range t.Signed.Delegations.Roles {
		if d.Name == role {
			return d.KeyIDs, true
		}
	}
	return nil, false
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// clone deep-copies metadata through its JSON form.
func clone[T metadata.Roles](m *metadata.Metadata[T]) *metadata.Metadata[T] {
	data, err := m.ToBytes(false)
	if err != nil {
		panic(fmt.Sprintf("tufrepo: metadata that parsed does not serialize: %v", err))
	}
	out := &metadata.Metadata[T]{}
	if _, err := out.FromBytes(data); err != nil {
		panic(fmt.Sprintf("tufrepo: metadata does not round-trip: %v", err))
	}
	return out
}

// invalid returns a caller error with code invalid_argument.
func invalid(format string, args ...any) error {
	return sphere.Errorf(sphere.EInvalid, format, args...)
}
