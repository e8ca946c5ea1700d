package localapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/opensphere/sphere/supervisor"
)

// Status is what `sphere agent status` shows.
type Status struct {
	DeviceID string `json:"device_id"`
	Server   string `json:"server"`
	RoT      string `json:"rot"`
	// CertificateNotAfter is when the device certificate expires; nil when
	// the device has none.
	CertificateNotAfter *time.Time `json:"certificate_not_after,omitempty"`
	// LastAttestation is the result of the latest attestation ("" before
	// the first), with the reason when it was not healthy.
	LastAttestation       string `json:"last_attestation,omitempty"`
	LastAttestationReason string `json:"last_attestation_reason,omitempty"`
	// Protections says which compartment protections this kernel enforces.
	Protections []Protection `json:"protections"`
	Apps        []App        `json:"apps"`
	// Update is the update engine's state, when it runs.
	Update any `json:"update,omitempty"`
}

// Protection is one kind of protection of the app compartments.
type Protection struct {
	Name   string `json:"name"`
	Active bool   `json:"active"`
	Detail string `json:"detail,omitempty"`
}

// App is an app's state as the admin socket shows it.
type App struct {
	ComponentID string     `json:"component_id"`
	Name        string     `json:"name"`
	ImageID     string     `json:"image_id"`
	Version     string     `json:"version"`
	State       string     `json:"state"`
	PID         int        `json:"pid,omitempty"`
	StartedAt   *time.Time `json:"started_at,omitempty"`
	Restarts    int        `json:"restarts"`
	LastExit    string     `json:"last_exit,omitempty"`
}

// Admin is what the admin socket serves.
type Admin struct {
	// Status returns the agent's status without the apps (filled from
	// Apps).
	Status func() Status
	// Apps is the app supervisor; nil when the agent runs no apps.
	Apps *supervisor.Supervisor
	// UpdateCheck checks for updates now and returns what the engine says;
	// nil when the agent has no update engine.
	UpdateCheck func(ctx context.Context) (any, error)
}

// Handler is the admin API, for root only.
func (a *Admin) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/status", func(w http.ResponseWriter, r *http.Request) {
		st := a.Status()
		st.Apps = a.apps()
		writeJSON(w, http.StatusOK, st)
	})
	mux.HandleFunc("GET /v1/apps", func(w http.ResponseWriter, r *http.Request) { writeJSON(w, http.StatusOK, a.apps()) })
	mux.HandleFunc("POST /v1/apps/{id}/start", a.appAction((*supervisor.Supervisor).Start))
	mux.HandleFunc("POST /v1/apps/{id}/stop", a.appAction((*supervisor.Supervisor).Stop))
	mux.HandleFunc("GET /v1/apps/{id}/logs", func(w http.ResponseWriter, r *http.Request) {
		n, err := strconv.Atoi(r.URL.Query().Get("lines"))
		if r.URL.Query().Get("lines") == "" {
			n, err = 0, nil
		}
		if err != nil || n < 0 {
			writeError(w, http.StatusBadRequest, "lines must be a whole number >= 0")
			return
		}
		if a.Apps == nil {
			writeError(w, http.StatusNotFound, "this agent runs no apps")
			return
		}
		lines, err := a.Apps.Logs(r.PathValue("id"), n)
		if err != nil {
			writeError(w, http.StatusNotFound, "no app "+r.PathValue("id"))
			return
		}
		writeJSON(w, http.StatusOK, map[string][]string{"lines": lines})
	})
	mux.HandleFunc("POST /v1/update-check", func(w http.ResponseWriter, r *http.Request) {
		if a.UpdateCheck == nil {
			writeError(w, http.StatusNotFound, "this agent runs no update engine")
			return
		}
		res, err := a.UpdateCheck(r.Context())
		if err != nil {
			writeError(w, http.StatusBadGateway, "update check failed: "+err.Error())
			return
		}
		writeJSON(w, http.StatusOK, res)
	})
	return RootOnly(mux)
}

func (a *Admin) apps() []App {
	out := []App{}
	if a.Apps == nil {
		return out
	}
	for _, s := range a.Apps.Status() {
		app := App{ComponentID: s.App.ComponentID, Name: s.App.Manifest.Name, ImageID: s.App.ImageID, Version: s.App.Version,
			State: s.State, PID: s.PID, Restarts: s.Restarts, LastExit: s.LastExit}
		if s.State == supervisor.StateRunning {
			t := s.StartedAt.UTC()
			app.StartedAt = &t
		}
		out = append(out, app)
	}
	return out
}

func (a *Admin) appAction(f func(*supervisor.Supervisor, string) error) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if a.Apps == nil {
			writeError(w, http.StatusNotFound, "this agent runs no apps")
			return
		}
		if err := f(a.Apps, r.PathValue("id")); err != nil {
			if errors.Is(err, supervisor.ErrUnknownApp) {
				writeError(w, http.StatusNotFound, "no app "+r.PathValue("id"))
				return
			}
			writeError(w, http.StatusInternalServerError, err.Error())
			return
		}
		w.WriteHeader(http.StatusNoContent)
	}
}

type errorBody struct {
	Error struct {
		Message string `json:"message"`
	} `json:"error"`
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, status int, msg string) {
	var b errorBody
	b.Error.Message = msg
	writeJSON(w, status, b)
}

// Call makes one request to a local socket and decodes the JSON answer
// into out (when not nil); an error answer becomes an error with its
// message.
func Call(ctx context.Context, socket, method, path string, out any) error {
	req, err := http.NewRequestWithContext(ctx, method, "http://agent"+path, nil)
	if err != nil {
		return err
	}
	resp, err := Client(socket).Do(req)
	if err != nil {
		return fmt.Errorf("cannot reach the agent at %s (is it running, and are you root?): %w", socket, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode >= 300 {
		var b errorBody
		if json.Unmarshal(data, &b) == nil && b.Error.Message != "" {
			return errors.New(b.Error.Message)
		}
		return fmt.Errorf("agent answered HTTP %d: %s", resp.StatusCode, strings.TrimSpace(string(data)))
	}
	if out != nil && len(data) > 0 {
		return json.Unmarshal(data, out)
	}
	return nil
}
