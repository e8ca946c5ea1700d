package updates

import (
	"context"
	"fmt"

	"github.com/opensphere/sphere"
	"github.com/opensphere/sphere/store"
	"github.com/opensphere/sphere/tufrepo"
)

// TUFStorage keeps the tenants' TUF repositories in the service's store
// (tables tuf_keys and tuf_metadata).
type TUFStorage struct{ St *store.Store }

var _ tufrepo.Storage = TUFStorage{}

// mapErr turns the store's not-found and conflict errors into tufrepo's.
func mapErr(err error) error {
	switch sphere.ErrorCode(err) {
	case "":
		return nil
	case sphere.ENotFound:
		return fmt.Errorf("%w: %v", tufrepo.ErrNotFound, err)
	case sphere.EConflict:
		return fmt.Errorf("%w: %v", tufrepo.ErrConflict, err)
	}
	return err
}

// PutKey implements tufrepo.Storage.
func (t TUFStorage) PutKey(ctx context.Context, tenantID, role, keyID string, publicJSON, sealed []byte) error {
	return mapErr(t.St.PutTUFKey(ctx, tenantID, store.TUFKey{Role: role, KeyID: keyID, PublicJSON: publicJSON, Sealed: sealed}))
}

// Keys implements tufrepo.Storage.
func (t TUFStorage) Keys(ctx context.Context, tenantID string) ([]tufrepo.StoredKey, error) {
	ks, err := t.St.TUFKeys(ctx, tenantID)
	if err != nil {
		return nil, err
	}
	out := make([]tufrepo.StoredKey, len(ks))
	for i, k := range ks {
		out[i] = tufrepo.StoredKey{Role: k.Role, KeyID: k.KeyID, PublicJSON: k.PublicJSON, Sealed: k.Sealed, Retired: k.Retired}
	}
	return out, nil
}

// RetireKey implements tufrepo.Storage.
func (t TUFStorage) RetireKey(ctx context.Context, tenantID, keyID string) error {
	return mapErr(t.St.RetireTUFKey(ctx, tenantID, keyID))
}

// DropPrivateKey implements tufrepo.Storage.
func (t TUFStorage) DropPrivateKey(ctx context.Context, tenantID, keyID string) error {
	return mapErr(t.St.DropTUFPrivateKey(ctx, tenantID, keyID))
}

// PutMetadata implements tufrepo.Storage.
func (t TUFStorage) PutMetadata(ctx context.Context, tenantID string, files []tufrepo.MetadataFile) error {
	fs := make([]store.TUFMetadata, len(files))
	for i, f := range files {
		fs[i] = store.TUFMetadata{Role: f.Role, Version: f.Version, JSON: f.JSON, Expires: f.Expires}
	}
	return mapErr(t.St.PutTUFMetadata(ctx, tenantID, fs))
}

func fromStore(m store.TUFMetadata, err error) (tufrepo.MetadataFile, error) {
	if err != nil {
		return tufrepo.MetadataFile{}, mapErr(err)
	}
	return tufrepo.MetadataFile{Role: m.Role, Version: m.Version, JSON: m.JSON, Expires: m.Expires}, nil
}

// LatestMetadata implements tufrepo.Storage.
func (t TUFStorage) LatestMetadata(ctx context.Context, tenantID, role string) (tufrepo.MetadataFile, error) {
	return fromStore(t.St.LatestTUFMetadata(ctx, tenantID, role))
}

// MetadataVersion implements tufrepo.Storage.
func (t TUFStorage) MetadataVersion(ctx context.Context, tenantID, role string, version int64) (tufrepo.MetadataFile, error) {
	return fromStore(t.St.TUFMetadataVersion(ctx, tenantID, role, version))
}
