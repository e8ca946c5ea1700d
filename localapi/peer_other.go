//go:build !linux

package localapi

import (
	"errors"
	"net"
)

// peerCred is Linux-only: elsewhere no caller is known, so every request is
// refused.
func peerCred(net.Conn) (Peer, error) {
	return Peer{}, errors.New("localapi: peer credentials are only read on Linux")
}
