package sandbox

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// nftTable is the nftables table that holds one output chain per running
// app that uses the network.
const nftTable = "opensphere"

// endpoint is an address an app may send to, on one port or (port 0) any.
type endpoint struct {
	addr netip.Addr
	port uint16
}

// allowed is one AllowedConnections entry, split.
type allowed struct {
	host string // a name, or "" when addr is a literal
	addr netip.Addr
	port uint16
}

func parseAllowed(entries []string) []allowed {
	var out []allowed
	for _, e := range entries {
		host, port := e, ""
		if h, p, err := net.SplitHostPort(e); err == nil {
			host, port = h, p
		}
		var a allowed
		if n, err := strconv.ParseUint(port, 10, 16); err == nil {
			a.port = uint16(n)
		}
		if addr, err := netip.ParseAddr(host); err == nil {
			a.addr = addr
		} else {
			a.host = strings.ToLower(host)
		}
		out = append(out, a)
	}
	return out
}

// egress keeps the nftables chain of one running app.
type egress struct {
	s     *Sandbox
	uid   uint32
	allow []allowed
	tcp   []int // declared server ports
	udp   []int
	app   string

	stop context.CancelFunc
	done sync.WaitGroup
}

func (s *Sandbox) startEgress(spec *Spec) (*egress, error) {
	c := spec.Manifest.Capabilities
	e := &egress{s: s, uid: spec.UID, allow: parseAllowed(c.AllowedConnections), tcp: c.AllowedTcpServerPorts, udp: c.AllowedUdpServerPorts, app: spec.ComponentID}
	ctx, cancel := context.WithCancel(context.Background())
	e.stop = cancel
	if err := e.install(ctx); err != nil {
		cancel()
		return nil, err
	}
	names := false
	for _, a := range e.allow {
		names = names || a.host != ""
	}
	if names {
		e.done.Add(1)
		go e.refresh(ctx)
	}
	return e, nil
}

// refresh resolves the host names again every ResolveEvery and replaces the
// chain's rules in one transaction.
func (e *egress) refresh(ctx context.Context) {
	defer e.done.Done()
	t := time.NewTicker(e.s.cfg.ResolveEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := e.install(ctx); err != nil {
				e.s.log.Error("sandbox: refreshing network rules", "app", e.app, "err", err)
			}
		}
	}
}

// resolve turns the allowed entries into endpoints. A name that does not
// resolve, or a wildcard, allows nothing, loudly.
func (e *egress) resolve(ctx context.Context) []endpoint {
	lookup := e.s.cfg.Lookup
	if lookup == nil {
		lookup = func(ctx context.Context, host string) ([]netip.Addr, error) {
			return net.DefaultResolver.LookupNetIP(ctx, "ip", host)
		}
	}
	var eps []endpoint
	for _, a := range e.allow {
		if a.host == "" {
			eps = append(eps, endpoint{a.addr.Unmap(), a.port})
			continue
		}
		if strings.HasPrefix(a.host, "*.") {
			e.s.log.Error("sandbox: wildcard host names cannot be enforced by address; connections to them are DENIED", "app", e.app, "host", a.host)
			continue
		}
		lctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		addrs, err := lookup(lctx, a.host)
		cancel()
		if err != nil {
			e.s.log.Error("sandbox: cannot resolve an allowed host; connections to it are denied until it resolves", "app", e.app, "host", a.host, "err", err)
			continue
		}
		for _, addr := range addrs {
			eps = append(eps, endpoint{addr.Unmap(), a.port})
		}
	}
	for _, d := range e.s.cfg.DNSServers {
		eps = append(eps, endpoint{d.Unmap(), 53})
	}
	return eps
}

// chains returns the app's base chain on the output hook, which sends the
// app's packets to its rules chain. Packets without a socket (such as the
// resets the rules send) never enter the rules.
func (e *egress) chains() (t *nftables.Table, base, rules *nftables.Chain) {
	t = &nftables.Table{Family: nftables.TableFamilyINet, Name: nftTable}
	accept := nftables.ChainPolicyAccept
	name := fmt.Sprintf("app-%d", e.uid)
	base = &nftables.Chain{
		Name: name, Table: t, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookOutput, Priority: nftables.ChainPriorityFilter, Policy: &accept,
	}
	return t, base, &nftables.Chain{Name: name + "-rules", Table: t}
}

// install creates or replaces the app's chains, in one transaction:
//
//	app-UID:        meta skuid UID goto app-UID-rules
//	app-UID-rules:
//	ct state established,related ct direction original accept
//	ip(6) daddr ADDR [meta l4proto tcp|udp th dport PORT] accept   (each endpoint)
//	meta l4proto tcp th sport DECLARED accept                       (each TCP server port)
//	meta l4proto udp th sport DECLARED accept                       (each UDP server port)
//	meta l4proto tcp reject with tcp reset
//	drop
func (e *egress) install(ctx context.Context) error {
	eps := e.resolve(ctx)
	c, err := nftables.New()
	if err != nil {
		return fmt.Errorf("sandbox: nftables: %w", err)
	}
	t, base, ch := e.chains()
	c.AddTable(t)
	c.AddChain(ch)
	c.FlushChain(ch)
	c.AddChain(base)
	c.FlushChain(base)
	c.AddRule(&nftables.Rule{Table: t, Chain: base, Exprs: []expr.Any{
		&expr.Meta{Key: expr.MetaKeySKUID, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binaryutil.NativeEndian.PutUint32(e.uid)},
		&expr.Verdict{Kind: expr.VerdictGoto, Chain: ch.Name},
	}})
	rule := func(exprs ...expr.Any) { c.AddRule(&nftables.Rule{Table: t, Chain: ch, Exprs: exprs}) }
	acceptV := &expr.Verdict{Kind: expr.VerdictAccept}

	rule(&expr.Ct{Register: 1, Key: expr.CtKeySTATE},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4,
			Mask: binaryutil.NativeEndian.PutUint32(expr.CtStateBitESTABLISHED | expr.CtStateBitRELATED), Xor: make([]byte, 4)},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: make([]byte, 4)},
		&expr.Ct{Register: 1, Key: expr.CtKeyDIRECTION},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{0}}, acceptV)
	for _, ep := range eps {
		match := daddr(ep.addr)
		if ep.port == 0 {
			rule(append(match, acceptV)...)
			continue
		}
		for _, proto := range []byte{unix.IPPROTO_TCP, unix.IPPROTO_UDP} {
			rule(append(append(match[:len(match):len(match)], port(proto, 2, ep.port)...), acceptV)...)
		}
	}
	for _, p := range e.tcp {
		rule(append(port(unix.IPPROTO_TCP, 0, uint16(p)), acceptV)...)
	}
	for _, p := range e.udp {
		rule(append(port(unix.IPPROTO_UDP, 0, uint16(p)), acceptV)...)
	}
	rule(&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.IPPROTO_TCP}},
		&expr.Reject{Type: unix.NFT_REJECT_TCP_RST})
	rule(&expr.Verdict{Kind: expr.VerdictDrop})
	if err := c.Flush(); err != nil {
		return fmt.Errorf("sandbox: installing nftables chain %s: %w", base.Name, err)
	}
	return nil
}

// daddr matches packets to addr.
func daddr(addr netip.Addr) []expr.Any {
	proto, off := byte(unix.NFPROTO_IPV4), uint32(16)
	if addr.Is6() {
		proto, off = unix.NFPROTO_IPV6, 24
	}
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{proto}},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: off, Len: uint32(addr.BitLen() / 8)},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: addr.AsSlice()},
	}
}

// port matches TCP or UDP packets whose source (offset 0) or destination
// (offset 2) port is p.
func port(proto byte, off uint32, p uint16) []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{proto}},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: off, Len: 2},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binaryutil.BigEndian.PutUint16(p)},
	}
}

// close stops refreshing and removes the chain.
func (e *egress) close() error {
	e.stop()
	e.done.Wait()
	c, err := nftables.New()
	if err != nil {
		return err
	}
	_, base, ch := e.chains()
	c.FlushChain(base)
	c.DelChain(base)
	c.FlushChain(ch)
	c.DelChain(ch)
	return c.Flush()
}
