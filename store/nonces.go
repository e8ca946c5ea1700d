package store

import (
	"context"
	"fmt"
)

// PurgeNonces forgets used challenges that have expired (a replay of one
// fails its expiry check anyway). It returns how many it removed.
func (s *Store) PurgeNonces(ctx context.Context) (int64, error) {
	res, err := s.exec(ctx, "DELETE FROM used_nonces WHERE expires_at < ?", s.nowMicro())
	if err != nil {
		return 0, fmt.Errorf("store.PurgeNonces: %w", err)
	}
	return res.RowsAffected()
}
