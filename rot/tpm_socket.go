package rot

import (
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"github.com/google/go-tpm/tpm2/transport"
)

// socketTPM talks to a TPM behind a stream socket, such as swtpm's TCP
// server (`swtpm socket --server type=tcp,port=2321 ...`): raw TPM 2.0
// commands in, responses out. A response is read whole by its header's
// size field, because a stream may split it.
type socketTPM struct {
	mu   sync.Mutex
	conn net.Conn
}

// maxResponse bounds a TPM response (TPM 2.0 responses are at most a few
// KiB; swtpm's buffer is 4 KiB).
const maxResponse = 64 << 10

// openSocket dials a TPM at addr ("host:port").
func openSocket(addr string) (transport.TPMCloser, error) {
	c, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		return nil, fmt.Errorf("open TPM socket %s: %w", addr, err)
	}
	return &socketTPM{conn: c}, nil
}

// Send implements transport.TPM.
func (s *socketTPM) Send(cmd []byte) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.conn.SetDeadline(time.Now().Add(2 * time.Minute))
	if _, err := s.conn.Write(cmd); err != nil {
		return nil, fmt.Errorf("TPM socket: %w", err)
	}
	hdr := make([]byte, 10) // tag (2), size (4), response code (4)
	if _, err := io.ReadFull(s.conn, hdr); err != nil {
		return nil, fmt.Errorf("TPM socket: response header: %w", err)
	}
	size := binary.BigEndian.Uint32(hdr[2:6])
	if size < 10 || size > maxResponse {
		return nil, fmt.Errorf("TPM socket: response size %d is not a TPM response", size)
	}
	rsp := make([]byte, size)
	copy(rsp, hdr)
	if _, err := io.ReadFull(s.conn, rsp[10:]); err != nil {
		return nil, fmt.Errorf("TPM socket: response body: %w", err)
	}
	return rsp, nil
}

// Close implements transport.TPMCloser.
func (s *socketTPM) Close() error { return s.conn.Close() }
