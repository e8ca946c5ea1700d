package sandbox

import (
	"fmt"
	"hash/fnv"
)

// IDRange is a block of uids (used as gids too) reserved for apps. Assign
// gives each component the same id every time as long as the ids already
// taken are the same; the caller persists what it assigned, so an id never
// moves once an app has files owned by it.
type IDRange struct {
	// First is the first id of the block; zero means 20000.
	First uint32
	// Count is the number of ids; zero means 10000.
	Count uint32
}

func (r IDRange) bounds() (first, count uint32, err error) {
	first, count = r.First, r.Count
	if first == 0 {
		first = 20000
	}
	if count == 0 {
		count = 10000
	}
	if first < 1000 {
		return 0, 0, fmt.Errorf("sandbox: app ids start at %d, below 1000 where system users live", first)
	}
	if uint64(first)+uint64(count) > 1<<31 {
		return 0, 0, fmt.Errorf("sandbox: app ids %d+%d overflow", first, count)
	}
	return first, count, nil
}

// Assign returns the id for componentID: a stable hash of it into the range,
// moved forward past ids in taken. It fails only when the range is full.
func (r IDRange) Assign(componentID string, taken map[uint32]bool) (uint32, error) {
	first, count, err := r.bounds()
	if err != nil {
		return 0, err
	}
	h := fnv.New32a()
	h.Write([]byte(componentID))
	start := h.Sum32() % count
	for i := uint32(0); i < count; i++ {
		id := first + (start+i)%count
		if !taken[id] {
			return id, nil
		}
	}
	return 0, fmt.Errorf("sandbox: all %d app ids from %d are taken; widen the range", count, first)
}

// Contains reports whether id lies in the range.
func (r IDRange) Contains(id uint32) bool {
	first, count, err := r.bounds()
	return err == nil && id >= first && id-first < count
}
