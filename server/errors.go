package server

import (
	"encoding/json"
	"log/slog"
	"net/http"
	"strings"

	"github.com/opensphere/sphere"
	"github.com/opensphere/sphere/api"
)

// httpStatus maps an application error code to its HTTP status. It is the
// only place where that mapping lives.
func httpStatus(code string) int {
	switch code {
	case sphere.EInvalid:
		return http.StatusBadRequest
	case sphere.EUnauthenticated:
		return http.StatusUnauthorized
	case sphere.EPermission:
		return http.StatusForbidden
	case sphere.ENotFound:
		return http.StatusNotFound
	case sphere.EConflict, sphere.EPrecondition:
		// 412 is for conditional request headers; a state that forbids
		// the change is a 409 and the code tells the two apart.
		return http.StatusConflict
	case sphere.ETooLarge:
		return http.StatusRequestEntityTooLarge
	case sphere.EUnsupported:
		return http.StatusUnsupportedMediaType
	case sphere.EUnavailable:
		return http.StatusServiceUnavailable
	}
	return http.StatusInternalServerError
}

// writeError sends err in the one error shape. Internal errors are logged
// with their details and answered with a generic message.
func writeError(w http.ResponseWriter, r *http.Request, log *slog.Logger, err error) int {
	code := sphere.ErrorCode(err)
	status := httpStatus(code)
	if status == http.StatusInternalServerError {
		log.ErrorContext(r.Context(), "internal error", "err", err, "request_id", requestID(r.Context()))
	}
	if code == sphere.EUnauthenticated && strings.HasPrefix(r.URL.Path, "/api/") {
		w.Header().Set("WWW-Authenticate", `Bearer realm="opensphere"`)
	}
	writeJSON(w, status, api.ErrorBody{Error: api.ErrorDetail{Code: code, Message: sphere.ErrorMessage(err)}})
	return status
}

func writeJSON(w http.ResponseWriter, status int, v any) { writeJSONAs(w, status, v, true) }

// writeJSONAs writes v, indented for people reading the admin API, or
// compact for machines (the device API: a fleet's responses, where the
// indentation costs the service CPU and the devices bytes).
func writeJSONAs(w http.ResponseWriter, status int, v any, indent bool) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	if status == http.StatusNoContent {
		return
	}
	enc := json.NewEncoder(w)
	if indent {
		enc.SetIndent("", "  ")
	}
	enc.SetEscapeHTML(false)
	enc.Encode(v)
}
