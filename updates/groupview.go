package updates

import (
	"context"
	"sync"
	"time"

	"github.com/opensphere/sphere"
)

// groupView is what every device of a group is judged against at an
// update check: the group, its targets, and its current deployment (moved
// on by Advance when the view was read).
type groupView struct {
	group   sphere.DeviceGroup
	targets []Target
	dep     *sphere.Deployment
	expires time.Time
}

// viewCache keeps group views for a short TTL, so that a hundred thousand
// devices of one group checking in do not each read the group, its
// deployment, its images and its OS feed, nor each count the rollout's
// device states. It holds no state of its own: every entry is a copy of
// the database, read again after the TTL, so replicas sharing one
// database agree within it. Changes made through this Service drop the
// group's entry at once.
type viewCache struct {
	ttl time.Duration
	mu  sync.Mutex
	m   map[string]groupView
}

// maxViews bounds the cache; past it, entries are dropped all at once.
const maxViews = 100_000

func (c *viewCache) get(tenantID, groupID string, now time.Time) (groupView, bool) {
	if c.ttl <= 0 {
		return groupView{}, false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	v, ok := c.m[tenantID+"/"+groupID]
	return v, ok && now.Before(v.expires)
}

func (c *viewCache) put(tenantID, groupID string, v groupView, now time.Time) {
	if c.ttl <= 0 {
		return
	}
	v.expires = now.Add(c.ttl)
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil || len(c.m) >= maxViews {
		c.m = map[string]groupView{}
	}
	c.m[tenantID+"/"+groupID] = v
}

// forget drops a group's view; an empty groupID drops the tenant's.
func (c *viewCache) forget(tenantID, groupID string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if groupID != "" {
		delete(c.m, tenantID+"/"+groupID)
		return
	}
	for k := range c.m {
		if len(k) > len(tenantID) && k[:len(tenantID)+1] == tenantID+"/" {
			delete(c.m, k)
		}
	}
}

// groupView returns the view of a group of the tenant, from the cache or
// read (and the deployment moved on) now.
func (s *Service) groupView(ctx context.Context, tenantID, groupID string) (groupView, error) {
	now := s.now()
	if v, ok := s.views.get(tenantID, groupID, now); ok {
		return v, nil
	}
	g, err := s.st.Tenant(tenantID).GetDeviceGroup(ctx, groupID)
	if err != nil {
		return groupView{}, err
	}
	targets, dep, err := s.groupTargets(ctx, tenantID, g)
	if err != nil {
		return groupView{}, err
	}
	if dep != nil {
		d, err := s.Advance(ctx, tenantID, *dep)
		if err != nil {
			return groupView{}, err
		}
		dep = &d
	}
	v := groupView{group: g, targets: targets, dep: dep}
	s.views.put(tenantID, groupID, v, now)
	return v, nil
}
