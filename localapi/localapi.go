// Package localapi is the agent's local interface on the device: HTTP over
// Unix sockets, where the kernel tells who is calling (SO_PEERCRED). The
// admin socket answers only root (`sphere agent status`, `sphere agent app
// ...`, `sphere agent update-check`). It is not reachable over the network
// and is not for apps: apps get their own socket, where the caller's uid
// says which app it is.
package localapi

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"
)

// Peer is the process at the other end of a connection.
type Peer struct {
	PID, UID, GID int
}

type peerKey struct{}

// PeerOf returns the caller of a request served by Serve.
func PeerOf(r *http.Request) (Peer, bool) {
	p, ok := r.Context().Value(peerKey{}).(Peer)
	return p, ok
}

// Listen makes a Unix socket at path with the given mode, replacing a
// stale socket left by an earlier run; its directory is made 0755 if
// missing.
func Listen(path string, mode os.FileMode) (net.Listener, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("localapi: %w", err)
	}
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode()&os.ModeSocket == 0 {
			return nil, fmt.Errorf("localapi: %s exists and is not a socket; remove it or choose another path", path)
		}
		if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
			c.Close()
			return nil, fmt.Errorf("localapi: %s is in use: is another agent running?", path)
		}
		os.Remove(path)
	}
	l, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("localapi: %w", err)
	}
	if err := os.Chmod(path, mode); err != nil {
		l.Close()
		return nil, fmt.Errorf("localapi: %w", err)
	}
	return l, nil
}

// Serve serves h on l until ctx ends, giving handlers the caller's
// credentials through PeerOf. A connection whose credentials cannot be
// read is closed.
func Serve(ctx context.Context, l net.Listener, h http.Handler) error {
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			p, err := peerCred(c)
			if err != nil {
				c.Close()
				return ctx
			}
			return context.WithValue(ctx, peerKey{}, p)
		},
	}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(sctx)
	}()
	if err := srv.Serve(l); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// RootOnly refuses every caller but root (uid 0).
func RootOnly(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, ok := PeerOf(r)
		if !ok || p.UID != 0 {
			writeError(w, http.StatusForbidden, "only root may use the agent's admin socket")
			return
		}
		h.ServeHTTP(w, r)
	})
}

// Client is an HTTP client whose every request goes to the socket at path;
// the URL's host is ignored (use http://agent/...).
func Client(path string) *http.Client {
	return &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", path)
		},
	}}
}
