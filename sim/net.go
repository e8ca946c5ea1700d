package sim

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync/atomic"
	"syscall"
)

// maxSourceAddrs bounds a source address range.
const maxSourceAddrs = 256

// ParseSourceAddrs reads "127.0.0.1-127.0.0.20" (a range) or a comma list
// of loopback IPv4 addresses. The simulator only drives a service on this
// host, so any other address is refused.
func ParseSourceAddrs(s string) ([]netip.Addr, error) {
	var out []netip.Addr
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		lo, hi, isRange := strings.Cut(part, "-")
		a, err := netip.ParseAddr(strings.TrimSpace(lo))
		if err != nil || !a.Is4() || !a.IsLoopback() {
			return nil, fmt.Errorf("source address %q is not a loopback IPv4 address (127.x.y.z)", lo)
		}
		b := a
		if isRange {
			if b, err = netip.ParseAddr(strings.TrimSpace(hi)); err != nil || !b.Is4() || !b.IsLoopback() || b.Less(a) {
				return nil, fmt.Errorf("source address range %q: the end must be a loopback IPv4 address not below the start", part)
			}
		}
		for x := a; ; x = x.Next() {
			if len(out) == maxSourceAddrs {
				return nil, fmt.Errorf("at most %d source addresses", maxSourceAddrs)
			}
			out = append(out, x)
			if x == b {
				break
			}
		}
	}
	return out, nil
}

// autoSourceAddrs gives one loopback source address per 20,000 sockets
// (a source address has about 28,000 ephemeral ports towards one service
// port), starting at 127.0.0.1.
func autoSourceAddrs(sockets int) []netip.Addr {
	n := min(maxSourceAddrs, 1+sockets/20_000)
	out := make([]netip.Addr, n)
	a := netip.MustParseAddr("127.0.0.1")
	for i := range out {
		out[i], a = a, a.Next()
	}
	return out
}

// dialer spreads connections over source addresses in turn; when one has
// no ephemeral port left (EADDRNOTAVAIL) it tries the next, and fails only
// when every one has said so for this connection.
type dialer struct {
	addrs []netip.Addr
	next  atomic.Uint64
	// exhausted counts dials that moved on to another source address.
	exhausted atomic.Int64
}

func (d *dialer) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	start := d.next.Add(1)
	var err error
	for i := range d.addrs {
		src := d.addrs[(start+uint64(i))%uint64(len(d.addrs))]
		nd := net.Dialer{LocalAddr: &net.TCPAddr{IP: src.AsSlice()}}
		var c net.Conn
		c, err = nd.DialContext(ctx, network, addr)
		if err == nil {
			return c, nil
		}
		if !errors.Is(err, syscall.EADDRNOTAVAIL) && !errors.Is(err, syscall.EADDRINUSE) {
			return nil, err
		}
		d.exhausted.Add(1)
	}
	return nil, fmt.Errorf("every source address is out of ephemeral ports (add more with --source-addrs): %w", err)
}
