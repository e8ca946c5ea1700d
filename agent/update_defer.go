package agent

import (
	"encoding/json"
	"fmt"
	"net/http"
	"time"

	"github.com/opensphere/sphere/localapi"
	"github.com/opensphere/sphere/updates"
)

// Update deferral: an app whose manifest has SoftwareUpdateDeferral may
// put off installs through its local API, for a while. A deferral covers
// every install of a kind (os or app) offered until it ends, and no image
// is put off longer than MaxDeferOS or MaxDeferApp after it was first
// offered, whatever the apps ask.

// maxDeferFor is the bound of a kind.
func (u *Updater) maxDeferFor(kind string) time.Duration {
	if kind == "os" {
		return u.cfg.MaxDeferOS
	}
	return u.cfg.MaxDeferApp
}

// deferredUntil is until when t's install waits; it notes when t was first
// offered while a deferral is on. The caller holds u.mu.
func (u *Updater) deferredUntil(t updates.Target) (time.Time, error) {
	until := u.j.DeferUntil[t.Kind]
	now := u.a.now()
	if !until.After(now) {
		return time.Time{}, nil
	}
	offered, ok := u.j.Offered[t.ImageID]
	if !ok {
		offered = now
		u.j.Offered[t.ImageID] = now
		if err := u.save(); err != nil {
			return time.Time{}, err
		}
	}
	if bound := offered.Add(u.maxDeferFor(t.Kind)); bound.Before(until) {
		until = bound
	}
	return until, nil
}

// PendingUpdate is an install the engine was offered and has not done.
type PendingUpdate struct {
	Kind          string    `json:"kind"`
	ComponentID   string    `json:"component_id"`
	Name          string    `json:"name"`
	Version       string    `json:"version"`
	DeferredUntil time.Time `json:"deferred_until,omitzero"`
}

// Pending lists the installs that wait.
func (u *Updater) Pending() []PendingUpdate {
	u.mu.Lock()
	defer u.mu.Unlock()
	out := []PendingUpdate{}
	for _, t := range u.pending {
		until, _ := u.deferredUntil(t)
		out = append(out, PendingUpdate{Kind: t.Kind, ComponentID: t.ComponentID, Name: t.Name, Version: t.Version, DeferredUntil: until})
	}
	return out
}

// Defer puts off installs of both kinds for d, each bounded by its kind's
// maximum, and returns until when.
func (u *Updater) Defer(d time.Duration) (map[string]time.Time, error) {
	u.mu.Lock()
	defer u.mu.Unlock()
	now := u.a.now()
	out := map[string]time.Time{}
	for _, kind := range []string{"os", "app"} {
		until := now.Add(min(d, u.maxDeferFor(kind)))
		if until.After(u.j.DeferUntil[kind]) {
			u.j.DeferUntil[kind] = until
		}
		out[kind] = u.j.DeferUntil[kind]
	}
	return out, u.save()
}

// canDefer says whether an installed app may defer updates.
func (u *Updater) canDefer(componentID string) (bool, bool) {
	u.mu.Lock()
	defer u.mu.Unlock()
	c, ok := u.j.Components[componentID]
	return c.CanDefer, ok && c.Kind == "app"
}

// AppHandler is the apps' local API, served with localapi.Serve on a
// socket apps can reach: appOf says which app component the caller is
// (by its uid when the sandbox gives each app its own, or by its pid). GET /v1/updates lists pending installs;
// POST /v1/updates/defer {"minutes": N} defers them. Only apps whose
// manifest has SoftwareUpdateDeferral may call it; others get 403.
func (u *Updater) AppHandler(appOf func(localapi.Peer) (componentID string, ok bool)) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/updates", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]any{"pending": u.Pending()})
	})
	mux.HandleFunc("POST /v1/updates/defer", func(w http.ResponseWriter, r *http.Request) {
		var in struct {
			Minutes int `json:"minutes"`
		}
		dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 4096))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&in); err != nil || in.Minutes < 1 || in.Minutes > 100000 {
			writeJSON(w, http.StatusBadRequest, apiError(`send {"minutes": N} with N from 1 to 100000`))
			return
		}
		until, err := u.Defer(time.Duration(in.Minutes) * time.Minute)
		if err != nil {
			writeJSON(w, http.StatusInternalServerError, apiError("could not record the deferral"))
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"deferred_until": until})
	})
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, ok := localapi.PeerOf(r)
		if !ok {
			writeJSON(w, http.StatusForbidden, apiError("the caller is unknown"))
			return
		}
		comp, ok := appOf(p)
		if !ok {
			writeJSON(w, http.StatusForbidden, apiError(fmt.Sprintf("the caller (pid %d, uid %d) is not an installed app", p.PID, p.UID)))
			return
		}
		if can, installed := u.canDefer(comp); !installed || !can {
			writeJSON(w, http.StatusForbidden, apiError("the app's manifest lacks the SoftwareUpdateDeferral capability"))
			return
		}
		mux.ServeHTTP(w, r)
	})
}

func apiError(msg string) map[string]any {
	return map[string]any{"error": map[string]string{"message": msg}}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}
