package server

import (
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// A fleet's devices keep their HTTP/1.1 connection to the service open
// between calls, and at fleet scale those idle connections are the service's
// largest memory cost: net/http serves each one on its own goroutine, which
// holds a grown stack and two 4 KiB buffers on top of the TLS state. The
// service's listener therefore parks a connection once it has been idle for
// Config.ParkIdleAfter: net/http's goroutine for it ends and returns its
// buffers, the TLS connection waits in the kernel (epoll on Linux, park_linux.go)
// with no goroutine at all, and the device's next request hands it to
// net/http again, as a newly accepted connection that needs no handshake.
//
// Three things make this safe:
//   - A connection is parked only from net/http's idle wait for the next
//     request, which the ConnState hook (StateIdle) and the deadline
//     net/http sets right after it announce, and only when net/http's read
//     buffer is empty: its fill then asks for the whole buffer, as big as
//     the first read of this stretch of service asked for. Any other read
//     or deadline means net/http went on, and passes straight through.
//   - The wait for the next request reads with the grace as its deadline,
//     in place of net/http's idle deadline (no extra deadline to set on the
//     common path): bytes the TLS layer had already buffered are returned,
//     not lost, and a timeout leaves the TLS connection usable (crypto/tls
//     does not keep timeouts as errors).
//   - The parked connection is watched level-triggered, so bytes that
//     arrive while it is being parked wake it at once.
//
// A connection that negotiated HTTP/2 is handed to net/http as it is (its
// *tls.Conn), which serves it as before; such connections are not parked.

// defaultParkIdleAfter is how long an HTTP/1.1 connection stays idle on its
// own goroutine before it is parked. A device's calls of one session
// (attest, renew, check for updates, download) come within it.
const defaultParkIdleAfter = time.Second

// errParked ends net/http's service of a connection the listener has taken
// back; net/http's Close of it then parks it instead of closing it.
var errParked = errors.New("connection parked while idle")

// tlsListener accepts TCP connections, completes their TLS handshake
// concurrently and hands them to net/http, together with the parked
// connections that became readable again.
type tlsListener struct {
	inner     net.Listener
	config    *tls.Config
	handshake time.Duration // handshake deadline
	parkAfter time.Duration // <= 0: never park
	parker    *parker       // nil: parking is unavailable or off
	log       *slog.Logger
	metrics   *metrics

	mu     sync.Mutex
	queue  []net.Conn // ready for Accept
	err    error      // the inner listener's last Accept error, for Accept
	closed bool
	ready  chan struct{} // capacity 1: the queue or err changed
	done   chan struct{}
	once   sync.Once
}

func newTLSListener(inner net.Listener, config *tls.Config, handshake, parkAfter time.Duration, log *slog.Logger, m *metrics) (*tlsListener, error) {
	config = config.Clone()
	if len(config.NextProtos) == 0 {
		config.NextProtos = []string{"h2", "http/1.1"}
	}
	l := &tlsListener{inner: inner, config: config, handshake: handshake, parkAfter: parkAfter, log: log, metrics: m,
		ready: make(chan struct{}, 1), done: make(chan struct{})}
	if parkAfter > 0 {
		p, err := newParker(l.unparked, log, m)
		if err != nil {
			return nil, err
		}
		l.parker = p
	}
	go l.acceptLoop()
	return l, nil
}

func (l *tlsListener) Addr() net.Addr { return l.inner.Addr() }

// Accept returns the next connection ready for net/http: newly handshaken,
// or parked and readable again.
func (l *tlsListener) Accept() (net.Conn, error) {
	for {
		l.mu.Lock()
		switch {
		case l.closed:
			l.mu.Unlock()
			return nil, net.ErrClosed
		case len(l.queue) > 0:
			c := l.queue[0]
			l.queue[0] = nil
			l.queue = l.queue[1:]
			l.mu.Unlock()
			return c, nil
		case l.err != nil:
			err := l.err
			l.err = nil
			l.mu.Unlock()
			return nil, err
		}
		l.mu.Unlock()
		select {
		case <-l.ready:
		case <-l.done:
		}
	}
}

// Close stops accepting and closes the connections waiting for Accept. It
// leaves parked connections alone: closeParked closes them once net/http
// has drained the active ones.
func (l *tlsListener) Close() error {
	var err error
	l.once.Do(func() {
		err = l.inner.Close()
		l.mu.Lock()
		l.closed = true
		q := l.queue
		l.queue = nil
		l.mu.Unlock()
		close(l.done)
		for _, c := range q {
			c.Close()
		}
	})
	return err
}

// closeParked closes every parked connection and stops the parker.
func (l *tlsListener) closeParked() {
	if l.parker != nil {
		l.parker.close()
	}
}

func (l *tlsListener) deliver(c net.Conn) {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		c.Close()
		return
	}
	l.queue = append(l.queue, c)
	l.mu.Unlock()
	select {
	case l.ready <- struct{}{}:
	default:
	}
}

// unparked is the parker's callback for a parked connection that became
// readable (or was hung up: net/http then reads the end and closes it).
func (l *tlsListener) unparked(h *heldConn) { l.deliver(&servedConn{h: h}) }

func (l *tlsListener) acceptLoop() {
	var backoff time.Duration
	for {
		raw, err := l.inner.Accept()
		if err != nil {
			var ne net.Error
			temporary := errors.As(err, &ne) && ne.Timeout() || errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) || errors.Is(err, syscall.ECONNABORTED)
			l.mu.Lock()
			stop := l.closed
			if !stop {
				l.err = err
			}
			l.mu.Unlock()
			select {
			case l.ready <- struct{}{}:
			default:
			}
			if stop || !temporary {
				return
			}
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			select {
			case <-time.After(backoff):
			case <-l.done:
				return
			}
			continue
		}
		backoff = 0
		go l.serveHandshake(raw)
	}
}

func (l *tlsListener) serveHandshake(raw net.Conn) {
	tc := tls.Server(raw, l.config)
	raw.SetDeadline(time.Now().Add(l.handshake))
	if err := tc.HandshakeContext(context.Background()); err != nil {
		l.metrics.handshakeErrors.Inc()
		l.log.Debug("TLS handshake failed", "remote", raw.RemoteAddr().String(), "err", err)
		raw.Close()
		return
	}
	raw.SetDeadline(time.Time{})
	state := tc.ConnectionState()
	if state.NegotiatedProtocol == "h2" {
		l.deliver(tc) // net/http's HTTP/2 server takes the *tls.Conn
		return
	}
	h := &heldConn{Conn: tc, l: l, state: &state, fd: -1}
	if sc, ok := raw.(syscall.Conn); ok && l.parker != nil {
		if rc, err := sc.SyscallConn(); err == nil {
			rc.Control(func(fd uintptr) { h.fd = int(fd) })
		}
	}
	l.deliver(&servedConn{h: h})
}

// connState is the http.Server's ConnState hook: it tells a served
// connection when net/http goes idle, to wait for the next request.
func connState(c net.Conn, st http.ConnState) {
	if sc, ok := c.(*servedConn); ok {
		if st == http.StateIdle {
			sc.phase.Store(phaseIdle)
		} else {
			sc.phase.Store(phaseServing)
		}
	}
}

type tlsStateKey struct{}

// connContext is the http.Server's ConnContext hook: requests on a served
// connection find its TLS state in their context (net/http fills
// Request.TLS only for a *tls.Conn; withRequestID copies it over).
func connContext(ctx context.Context, c net.Conn) context.Context {
	if sc, ok := c.(*servedConn); ok {
		return context.WithValue(ctx, tlsStateKey{}, sc.h.state)
	}
	return ctx
}

func connTLSState(ctx context.Context) *tls.ConnectionState {
	st, _ := ctx.Value(tlsStateKey{}).(*tls.ConnectionState)
	return st
}

// heldConn is one TLS connection for its whole life, across the times
// net/http serves it and the times it is parked.
type heldConn struct {
	*tls.Conn
	l     *tlsListener
	state *tls.ConnectionState // from the handshake
	fd    int                  // the socket, for the parker; -1: cannot park
}

// servedConn is a heldConn during one stretch of service by net/http, from
// Accept to Close. Each stretch has its own, so that a late Close from a
// finished stretch cannot touch the connection's next one.
type servedConn struct {
	h     *heldConn
	phase atomic.Int32 // phaseServing, phaseIdle or phaseWaiting
	// graced: the socket's read deadline is the grace, set in place of
	// net/http's (readDeadline); the next read or deadline restores it.
	graced atomic.Bool
	// park says the wait timed out at the grace and Read returned
	// errParked: the Close that follows parks. Any later Read clears it,
	// for net/http went on with the connection.
	park atomic.Bool
	// bufSize is the length of this stretch's first read: net/http's read
	// buffer, empty then. Read only by net/http's goroutines, written
	// before net/http starts a second one.
	bufSize int

	mu           sync.Mutex
	readDeadline time.Time // the last one net/http set
	closed       bool
}

const (
	phaseServing int32 = iota
	phaseIdle          // net/http went idle (ConnState)
	phaseWaiting       // ... and set its idle deadline: its next read waits for the next request
)

func (c *servedConn) canPark() bool { return c.h.l.parker != nil && c.h.fd >= 0 }

func (c *servedConn) Read(p []byte) (int, error) {
	if c.bufSize == 0 {
		c.bufSize = len(p)
	}
	c.park.Store(false)
	if c.phase.CompareAndSwap(phaseWaiting, phaseServing) && c.graced.Load() && len(p) == c.bufSize {
		// The wait for the next request, with an empty buffer.
		n, err := c.h.Conn.Read(p)
		if n == 0 && errors.Is(err, os.ErrDeadlineExceeded) {
			c.park.Store(true)
			return 0, errParked
		}
		// The next request began (or the connection ended). If net/http
		// reads again before it sets a deadline of its own, that read
		// restores its idle deadline first.
		return n, err
	}
	if c.graced.Swap(false) {
		c.mu.Lock()
		d := c.readDeadline
		c.mu.Unlock()
		c.h.Conn.SetReadDeadline(d)
	}
	return c.h.Conn.Read(p)
}

func (c *servedConn) Write(p []byte) (int, error)        { return c.h.Conn.Write(p) }
func (c *servedConn) LocalAddr() net.Addr                { return c.h.Conn.LocalAddr() }
func (c *servedConn) RemoteAddr() net.Addr               { return c.h.Conn.RemoteAddr() }
func (c *servedConn) SetWriteDeadline(t time.Time) error { return c.h.Conn.SetWriteDeadline(t) }

// SetReadDeadline is net/http's. The first after it went idle is its idle
// deadline: when parking is possible and the grace ends first, the socket
// gets the grace instead.
func (c *servedConn) SetReadDeadline(t time.Time) error {
	c.mu.Lock()
	c.readDeadline = t
	c.mu.Unlock()
	if c.phase.CompareAndSwap(phaseIdle, phaseWaiting) {
		if grace := time.Now().Add(c.h.l.parkAfter); c.canPark() && (t.IsZero() || grace.Before(t)) {
			c.graced.Store(true)
			return c.h.Conn.SetReadDeadline(grace)
		}
	} else {
		c.phase.Store(phaseServing)
	}
	c.graced.Store(false)
	return c.h.Conn.SetReadDeadline(t)
}

func (c *servedConn) SetDeadline(t time.Time) error {
	c.mu.Lock()
	c.readDeadline = t
	c.mu.Unlock()
	c.phase.Store(phaseServing)
	c.graced.Store(false)
	return c.h.Conn.SetDeadline(t)
}

// Close ends this stretch of service: it parks the connection when its
// wait for the next request reached the grace, and closes it otherwise.
func (c *servedConn) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	park, until := c.park.Load(), c.readDeadline
	c.mu.Unlock()
	if park {
		c.h.Conn.SetDeadline(time.Time{})
		if c.h.l.parker.park(c.h, until) {
			return nil
		}
	}
	return c.h.Conn.Close()
}
