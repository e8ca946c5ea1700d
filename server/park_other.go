//go:build !linux

package server

import (
	"log/slog"
	"time"
)

// parker is Linux-only (epoll, park_linux.go); elsewhere every idle
// connection keeps its net/http goroutine, as with a plain http.Server.
type parker struct{}

func newParker(func(*heldConn), *slog.Logger, *metrics) (*parker, error) { return nil, nil }

func (*parker) park(*heldConn, time.Time) bool { return false }
func (*parker) close()                         {}
