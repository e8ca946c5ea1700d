package server

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net/http"
	"runtime/debug"
	"strings"
	"time"

	"github.com/opensphere/sphere"
)

type ctxKey int

const requestIDKey ctxKey = 0

func requestID(ctx context.Context) string {
	id, _ := ctx.Value(requestIDKey).(string)
	return id
}

// validRequestID accepts a caller's X-Request-Id only if it is short and
// plain, so that logs cannot be forged through it.
func validRequestID(id string) bool {
	if id == "" || len(id) > 64 {
		return false
	}
	for _, c := range []byte(id) {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}

func (s *Server) withRequestID(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := r.Header.Get("X-Request-Id")
		if !validRequestID(id) {
			b := make([]byte, 12)
			rand.Read(b)
			id = hex.EncodeToString(b)
		}
		w.Header().Set("X-Request-Id", id)
		r = r.WithContext(context.WithValue(r.Context(), requestIDKey, id))
		if r.TLS == nil {
			// A connection from the service's own listener (listener.go).
			r.TLS = connTLSState(r.Context())
		}
		next.ServeHTTP(w, r)
	})
}

func (s *Server) withRecover(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler {
					panic(v)
				}
				s.log.ErrorContext(r.Context(), "panic in handler", "panic", v, "stack", string(debug.Stack()), "request_id", requestID(r.Context()))
				writeError(w, r, s.log, fmt.Errorf("panic: %v", v))
			}
		}()
		next.ServeHTTP(w, r)
	})
}

// statusWriter remembers the status code a handler sent.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func (s *Server) withAccessLog(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w}
		next.ServeHTTP(sw, r)
		if sw.status == 0 {
			sw.status = http.StatusOK
		}
		pattern := r.Pattern
		if pattern == "" || pattern == "/" {
			pattern = "unmatched"
		}
		d := time.Since(start)
		s.metrics.observe(pattern, sw.status, d)
		s.log.LogAttrs(r.Context(), accessLevel(sw.status, strings.HasPrefix(r.URL.Path, "/device/")), "request",
			slog.String("request_id", requestID(r.Context())),
			slog.String("method", r.Method),
			slog.String("path", r.URL.Path),
			slog.String("route", pattern),
			slog.Int("status", sw.status),
			slog.Duration("duration", d),
			slog.String("remote", r.RemoteAddr),
		)
	})
}

// notFoundRoute answers paths that match no route.
func notFoundRoute(r *http.Request) error {
	return sphere.Errorf(sphere.ENotFound, "no route %s %s; see /api/v1/openapi.json", r.Method, r.URL.Path)
}

// accessLevel is the level of a request's access-log line: server errors
// are errors; a device's successful calls are debug, since a fleet calls
// all day (100,000 devices checking hourly are 28 lines a second, a storm
// thousands) and sphere_http_requests_total counts them by route and
// status; everything else, an operator's calls and a device's refused
// ones, is info.
func accessLevel(status int, device bool) slog.Level {
	switch {
	case status >= 500:
		return slog.LevelError
	case device && status < 400:
		return slog.LevelDebug
	}
	return slog.LevelInfo
}
