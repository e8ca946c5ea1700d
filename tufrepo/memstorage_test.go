package tufrepo

import (
	"bytes"
	"context"
	"fmt"
	"sync"
)

// memStorage is a TEST FAKE of Storage: an in-memory stand-in for the SQL
// implementation in the store package, which is tested there against real
// SQLite and PostgreSQL. It keeps the contract that matters here: tenants
// are separate, PutMetadata is all or nothing and refuses an existing
// (role, version) with ErrConflict.
type memStorage struct {
	mu   sync.Mutex
	keys map[string][]StoredKey                          // tenant -> keys
	meta map[string]map[string]map[int64]MetadataFile    // tenant -> role -> version -> file
	puts [][]MetadataFile                                // every successful PutMetadata call
	fail func(tenant string, files []MetadataFile) error // injected PutMetadata failure
}

func newMemStorage() *memStorage {
	return &memStorage{keys: map[string][]StoredKey{}, meta: map[string]map[string]map[int64]MetadataFile{}}
}

func (m *memStorage) PutKey(ctx context.Context, tenant, role, keyID string, publicJSON, sealed []byte) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, k := range m.keys[tenant] {
		if k.KeyID == keyID {
			return fmt.Errorf("memStorage: key %s exists", keyID)
		}
	}
	m.keys[tenant] = append(m.keys[tenant], StoredKey{Role: role, KeyID: keyID, PublicJSON: bytes.Clone(publicJSON), Sealed: bytes.Clone(sealed)})
	return nil
}

func (m *memStorage) Keys(ctx context.Context, tenant string) ([]StoredKey, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []StoredKey
	for _, k := range m.keys[tenant] {
		k.PublicJSON, k.Sealed = bytes.Clone(k.PublicJSON), bytes.Clone(k.Sealed)
		out = append(out, k)
	}
	return out, nil
}

func (m *memStorage) update(tenant, keyID string, f func(*StoredKey)) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for i := range m.keys[tenant] {
		if m.keys[tenant][i].KeyID == keyID {
			f(&m.keys[tenant][i])
			return nil
		}
	}
	return fmt.Errorf("memStorage: key %s: %w", keyID, ErrNotFound)
}

func (m *memStorage) RetireKey(ctx context.Context, tenant, keyID string) error {
	return m.update(tenant, keyID, func(k *StoredKey) { k.Retired = true })
}

func (m *memStorage) DropPrivateKey(ctx context.Context, tenant, keyID string) error {
	return m.update(tenant, keyID, func(k *StoredKey) { k.Sealed = nil })
}

func (m *memStorage) PutMetadata(ctx context.Context, tenant string, files []MetadataFile) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.fail != nil {
		if err := m.fail(tenant, files); err != nil {
			return err
		}
	}
	roles := m.meta[tenant]
	seen := map[string]bool{}
	for _, f := range files {
		id := fmt.Sprintf("%s/%d", f.Role, f.Version)
		if _, ok := roles[f.Role][f.Version]; ok || seen[id] {
			return fmt.Errorf("memStorage: %s version %d exists: %w", f.Role, f.Version, ErrConflict)
		}
		seen[id] = true
	}
	if roles == nil {
		roles = map[string]map[int64]MetadataFile{}
		m.meta[tenant] = roles
	}
	var put []MetadataFile
	for _, f := range files {
		if roles[f.Role] == nil {
			roles[f.Role] = map[int64]MetadataFile{}
		}
		f.JSON = bytes.Clone(f.JSON)
		roles[f.Role][f.Version] = f
		put = append(put, f)
	}
	m.puts = append(m.puts, put)
	return nil
}

func (m *memStorage) LatestMetadata(ctx context.Context, tenant, role string) (MetadataFile, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var best MetadataFile
	for v, f := range m.meta[tenant][role] {
		if v > best.Version {
			best = f
		}
	}
	if best.Version == 0 {
		return MetadataFile{}, fmt.Errorf("memStorage: %s: %w", role, ErrNotFound)
	}
	best.JSON = bytes.Clone(best.JSON)
	return best, nil
}

func (m *memStorage) MetadataVersion(ctx context.Context, tenant, role string, version int64) (MetadataFile, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	f, ok := m.meta[tenant][role][version]
	if !ok {
		return MetadataFile{}, fmt.Errorf("memStorage: %s version %d: %w", role, version, ErrNotFound)
	}
	f.JSON = bytes.Clone(f.JSON)
	return f, nil
}

// putCount returns how many PutMetadata calls succeeded.
func (m *memStorage) putCount() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.puts)
}

// lastPut returns the roles and versions of the last successful
// PutMetadata call.
func (m *memStorage) lastPut() map[string]int64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := map[string]int64{}
	for _, f := range m.puts[len(m.puts)-1] {
		out[f.Role] = f.Version
	}
	return out
}
