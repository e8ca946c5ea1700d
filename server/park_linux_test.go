package server

import (
	"crypto/tls"
	"log/slog"
	"net"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// loopbackPair is a connected TCP pair on 127.0.0.1: the service's side as
// a heldConn (TLS over it, never handshaken: the parker only watches the
// socket and closes it) and the client's side.
func loopbackPair(t *testing.T, ln net.Listener) (*heldConn, net.Conn) {
	t.Helper()
	client, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	server, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close(); server.Close() })
	h := &heldConn{Conn: tls.Server(server, &tls.Config{}), fd: -1}
	rc, err := server.(syscall.Conn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	rc.Control(func(fd uintptr) { h.fd = int(fd) })
	return h, client
}

// TestParkerWakesAndForgets parks many connections behind one that stays
// parked, wakes them all by writing to them, and checks that the parker
// hands each back once and drops their bookkeeping.
func TestParkerWakesAndForgets(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	m, err := newMetrics(prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	woken := make(chan *heldConn, 4096)
	p, err := newParker(func(h *heldConn) { woken <- h }, slog.New(slog.DiscardHandler), m)
	if err != nil {
		t.Fatal(err)
	}
	defer p.close()

	until := time.Now().Add(time.Hour)
	first, _ := loopbackPair(t, ln)
	if !p.park(first, until) {
		t.Fatal("park refused")
	}
	const n = 1500
	for i := range n {
		h, client := loopbackPair(t, ln)
		if !p.park(h, until) {
			t.Fatalf("park %d refused", i)
		}
		if _, err := client.Write([]byte{'G'}); err != nil {
			t.Fatal(err)
		}
		select {
		case got := <-woken:
			if got != h {
				t.Fatalf("woke %p, want %p", got, h)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("connection %d not woken 5 s after its client wrote", i)
		}
	}
	if got := testutil.ToFloat64(m.parked); got != 1 {
		t.Fatalf("%v parked, want 1 (the first)", got)
	}
	// Sweeps drop the woken entries queued behind the first once there
	// are more than staleCompactAt of them.
	time.Sleep(2 * sweepEvery)
	p.mu.Lock()
	entries, stale := len(p.order), p.stale
	p.mu.Unlock()
	if stale > staleCompactAt || entries != stale+1 {
		t.Fatalf("after the sweeps: %d entries, %d of them woken; want at most %d woken, and the parked one", entries, stale, staleCompactAt)
	}
	select {
	case h := <-woken:
		t.Fatalf("a connection woken twice, or the parked one woken: %p", h)
	default:
	}
}
