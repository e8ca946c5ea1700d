//go:build linux

package server

import (
	"fmt"
	"log/slog"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// parker holds idle connections in an epoll set of its own, with no
// goroutine per connection: one goroutine waits on the set, hands each
// connection that becomes readable (or is hung up) back to the listener,
// and closes those idle past their deadline. Go's own poller keeps
// watching the same sockets; an epoll set may share a socket with another.
type parker struct {
	epfd    int
	eventfd int // written to stop the loop
	wake    func(*heldConn)
	log     *slog.Logger
	metrics *metrics

	mu     sync.Mutex
	conns  map[int32]*parkedConn // by socket
	order  []*parkedConn         // by park time, for the idle deadline; woken ones linger until swept
	stale  int                   // entries of order that are gone
	closed bool
	done   chan struct{}
}

type parkedConn struct {
	h     *heldConn
	until time.Time // net/http's idle deadline; zero: none
	gone  bool      // woken or closed since
}

// sweepEvery bounds how late an idle deadline is enforced.
const sweepEvery = time.Second

// staleCompactAt is how many woken entries the park order may hold before
// a sweep drops them (when they are also half of it).
const staleCompactAt = 1024

func newParker(wake func(*heldConn), log *slog.Logger, m *metrics) (*parker, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("parking idle connections: epoll_create1: %w", err)
	}
	efd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		unix.Close(epfd)
		return nil, fmt.Errorf("parking idle connections: eventfd: %w", err)
	}
	ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(efd)}
	if err := unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, efd, &ev); err != nil {
		unix.Close(efd)
		unix.Close(epfd)
		return nil, fmt.Errorf("parking idle connections: epoll_ctl: %w", err)
	}
	p := &parker{epfd: epfd, eventfd: efd, wake: wake, log: log, metrics: m, conns: map[int32]*parkedConn{}, done: make(chan struct{})}
	go p.loop()
	return p, nil
}

// park adds h to the set until its socket is readable or until passes. It
// reports false when the parker is closed or the socket cannot be watched;
// the caller then closes h.
func (p *parker) park(h *heldConn, until time.Time) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return false
	}
	// Level-triggered and one-shot: bytes that arrived before this call
	// report at once, and a socket is handed back once per park.
	ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLRDHUP | unix.EPOLLONESHOT, Fd: int32(h.fd)}
	if err := unix.EpollCtl(p.epfd, unix.EPOLL_CTL_ADD, h.fd, &ev); err != nil {
		p.log.Warn("cannot park an idle connection; closing it", "err", err)
		return false
	}
	pc := &parkedConn{h: h, until: until}
	p.conns[int32(h.fd)] = pc
	if !until.IsZero() {
		p.order = append(p.order, pc)
	}
	p.metrics.parked.Inc()
	return true
}

// remove takes pc out of the set; p.mu is held.
func (p *parker) remove(fd int32, pc *parkedConn) {
	unix.EpollCtl(p.epfd, unix.EPOLL_CTL_DEL, int(fd), nil)
	delete(p.conns, fd)
	pc.gone = true
	if !pc.until.IsZero() {
		p.stale++
	}
	p.metrics.parked.Dec()
}

func (p *parker) loop() {
	defer close(p.done)
	defer unix.Close(p.eventfd)
	defer unix.Close(p.epfd)
	events := make([]unix.EpollEvent, 256)
	var woken, expired []*heldConn
	lastSweep := time.Now()
	for {
		n, err := unix.EpollWait(p.epfd, events, int(sweepEvery/time.Millisecond))
		if err != nil && err != unix.EINTR {
			p.log.Error("parked connections: epoll_wait failed; closing them and parking no more", "err", err)
			p.mu.Lock()
			all := p.takeAll()
			p.mu.Unlock()
			closeAll(all)
			return
		}
		woken, expired = woken[:0], expired[:0]
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			return
		}
		for _, ev := range events[:max(n, 0)] {
			if pc := p.conns[ev.Fd]; pc != nil {
				p.remove(ev.Fd, pc)
				woken = append(woken, pc.h)
			}
		}
		if now := time.Now(); now.Sub(lastSweep) >= sweepEvery {
			lastSweep = now
			i := 0
			for ; i < len(p.order); i++ {
				pc := p.order[i]
				if pc.gone {
					continue
				}
				if now.Before(pc.until) {
					break
				}
				p.remove(int32(pc.h.fd), pc)
				expired = append(expired, pc.h)
			}
			for _, pc := range p.order[:i] {
				if pc.gone {
					p.stale--
				}
			}
			clear(p.order[:i])
			p.order = p.order[i:]
			if p.stale > staleCompactAt && p.stale > len(p.order)/2 {
				// Connections that park and wake often leave many woken
				// entries behind a long-parked one: drop them.
				live := p.order[:0]
				for _, pc := range p.order {
					if !pc.gone {
						live = append(live, pc)
					}
				}
				clear(p.order[len(live):])
				p.order, p.stale = live, 0
			}
		}
		p.mu.Unlock()
		for _, h := range woken {
			p.wake(h)
		}
		if len(expired) > 0 {
			// net/http closes a connection idle past its deadline; so
			// does the parker (with TLS's close_notify, which may wait).
			go closeAll(expired)
			expired = nil
		}
	}
}

func closeAll(hs []*heldConn) {
	for _, h := range hs {
		h.Conn.Close()
	}
}

// takeAll closes the parker and returns every parked connection; p.mu is
// held.
func (p *parker) takeAll() []*heldConn {
	p.closed = true
	var all []*heldConn
	for fd, pc := range p.conns {
		p.remove(fd, pc)
		all = append(all, pc.h)
	}
	p.order, p.stale = nil, 0
	return all
}

// close closes every parked connection, stops the loop and waits for it.
func (p *parker) close() {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		<-p.done
		return
	}
	all := p.takeAll()
	// Under p.mu: the loop closes the eventfd only after it saw closed,
	// which it can only do once this unlocks.
	unix.Write(p.eventfd, []byte{1, 0, 0, 0, 0, 0, 0, 0})
	p.mu.Unlock()
	closeAll(all)
	<-p.done
}
