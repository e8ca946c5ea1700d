package tufrepo

import (
	"context"
	"fmt"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata"
)

// Refresh re-signs, with new versions, whatever of the tenant's metadata
// is close to expiry: the timestamp in its last 6 hours (or last quarter,
// if it lives less than a day), every other role in the last quarter of
// its life. It reports whether it published anything. The service calls
// it hourly and before serving.
//
// Each replica remembers when the tenant's next role falls due, so a
// Refresh with nothing due costs no storage access; the first Refresh of a
// tenant in a process, and one that finds something due, load the whole
// repository. (Other replicas' publications only make metadata fresher, so
// a remembered time is never too late.)
//
// A root that is due while its key is offline cannot be re-signed here:
// Refresh then leaves a pending root for an operator to sign (see
// PendingRoot) and logs a warning, hourly.
func (r *Repo) Refresh(ctx context.Context, tenant string) (bool, error) {
	if err := checkTenant(tenant); err != nil {
		return false, err
	}
	if d, ok := r.due.Load(tenant); ok && d.(dueTimes).after(r.now()) {
		return false, nil
	}

	changed, rootOffline := false, false
	var next dueTimes
	err := r.update(ctx, tenant, func(st *state) (*changes, error) {
		now := r.now()
		changed, rootOffline = false, false
		ch := &changes{}
		// next.rest is the earliest time a role other than the timestamp
		// falls due; a role re-signed now falls due a life minus a margin
		// from now.
		next = dueTimes{}
		consider := func(expires time.Time, life, margin time.Duration) bool {
			due := isDue(expires, now, margin)
			at := expires.Add(-margin)
			if due {
				at = r.expiry(now, life).Add(-margin)
			}
			if next.rest.IsZero() || at.Before(next.rest) {
				next.rest = at
			}
			return due
		}

		if consider(st.root.Signed.Expires, r.rootLife, r.rootLife/4) {
			if rootOnline(st) {
				newRoot := r.nextRoot(st, now)
				if err := r.signRoot(st, st.root, newRoot); err != nil {
					return nil, err
				}
				ch.root = newRoot
			} else {
				rootOffline = true
				// consider assumed a re-signed root: look again (and warn
				// again) in an hour instead, not at every call.
				if at := now.Add(time.Hour); at.Before(next.rest) {
					next.rest = at
				}
			}
		}
		if consider(st.targets.Signed.Expires, r.targetsLife, r.targetsLife/4) {
			ch.targets = clone(st.targets)
		}
		for _, role := range groupRoles(st.targets) {
			g, err := r.loadGroup(ctx, tenant, role)
			if err != nil {
				return nil, err
			}
			if consider(g.Signed.Expires, r.targetsLife, r.targetsLife/4) {
				ch.group(role, g)
			}
		}
		ch.snapshot = consider(st.snapshot.Signed.Expires, r.snapshotLife, r.snapshotLife/4)
		ch.timestamp = isDue(st.timestamp.Signed.Expires, now, r.timestampMargin())
		changed = !ch.empty()
		next.timestamp = st.timestamp.Signed.Expires.Add(-r.timestampMargin())
		if changed {
			next.timestamp = r.expiry(now, r.timestampLife).Add(-r.timestampMargin())
		}
		return ch, nil
	})
	if err != nil {
		return false, fmt.Errorf("tufrepo.Refresh: %w", err)
	}
	r.due.Store(tenant, next)
	if rootOffline {
		root, err := r.ensurePending(ctx, tenant)
		if err != nil {
			return changed, fmt.Errorf("tufrepo.Refresh: %w", err)
		}
		r.log.Warn("the tenant's TUF root expires soon and its key is offline: sign the pending root with `sphere tuf sign-root` and import it",
			"tenant", tenant, "root_expires", root.Signed.Expires)
	}
	return changed, nil
}

// dueTimes is what a replica remembers of a tenant: when the timestamp,
// and when the first of the other roles, falls due.
type dueTimes struct{ timestamp, rest time.Time }

// after reports whether nothing falls due until after now.
func (d dueTimes) after(now time.Time) bool {
	return !d.rest.IsZero() && now.Before(d.timestamp) && now.Before(d.rest)
}

func isDue(expires, now time.Time, margin time.Duration) bool {
	return expires.Sub(now) < margin
}

// nextRoot returns an unsigned copy of the current root with the next
// version and a fresh expiry.
func (r *Repo) nextRoot(st *state, now time.Time) *metadata.Metadata[metadata.RootType] {
	n := clone(st.root)
	n.Signed.Version++
	n.Signed.Expires = r.expiry(now, r.rootLife)
	n.Signatures = []metadata.Signature{}
	return n
}
