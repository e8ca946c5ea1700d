package store

import (
	"context"
	"fmt"
	"time"
)

// UseNonce marks a challenge as used until it expires. It reports false if
// it was used before: the database's unique key makes this hold across
// every replica.
func (s *Store) UseNonce(ctx context.Context, hash string, expires time.Time) (bool, error) {
	_, err := s.exec(ctx, "INSERT INTO used_nonces (nonce_hash, expires_at) VALUES (?, ?)", hash, expires.UTC().UnixMicro())
	if isUniqueViolation(err) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("store.UseNonce: %w", err)
	}
	return true, nil
}

// PurgeNonces forgets used challenges that have expired (a replay of one
// fails its expiry check anyway). It returns how many it removed.
func (s *Store) PurgeNonces(ctx context.Context) (int64, error) {
	res, err := s.exec(ctx, "DELETE FROM used_nonces WHERE expires_at < ?", s.nowMicro())
	if err != nil {
		return 0, fmt.Errorf("store.PurgeNonces: %w", err)
	}
	return res.RowsAffected()
}
