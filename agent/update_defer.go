package agent

import (
	"encoding/json"
	"github.com/opensphere/sphere/api"
	"net/http"
	"time"

	"github.com/opensphere/sphere/localapi"
	"github.com/opensphere/sphere/supervisor"
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
func (u *Updater) deferredUntil(t api.UpdateCheckTarget) (time.Time, error) {
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

// AppRoutes adds the deferral routes to the apps' API (the socket every
// app reaches; the caller's uid says which app it is): GET /v1/updates
// lists pending installs; POST /v1/updates/defer {"minutes": N} defers
// them. Only apps whose manifest has SoftwareUpdateDeferral may call them;
// others get 403.
func (u *Updater) AppRoutes(api *localapi.AppAPI) {
	api.Handle("GET /v1/updates", u.mayDefer(func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]any{"pending": u.Pending()})
	}))
	api.Handle("POST /v1/updates/defer", u.mayDefer(func(w http.ResponseWriter, r *http.Request) {
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
	}))
}

// mayDefer checks the calling app's SoftwareUpdateDeferral capability (in
// the manifest of its signed package, as the supervisor runs it).
func (u *Updater) mayDefer(h http.HandlerFunc) func(http.ResponseWriter, *http.Request, supervisor.App) {
	return func(w http.ResponseWriter, r *http.Request, app supervisor.App) {
		if !app.Manifest.Capabilities.SoftwareUpdateDeferral {
			writeJSON(w, http.StatusForbidden, apiError("the app's manifest lacks the SoftwareUpdateDeferral capability"))
			return
		}
		h(w, r)
	}
}

func apiError(msg string) map[string]any {
	return map[string]any{"error": map[string]string{"message": msg}}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}
