package server

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"net/http/httptrace"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/opensphere/sphere/tlsutil"
)

// tlsServer is the server on a loopback TLS listener through Serve, with
// idle connections parked after parkAfter.
type tlsServer struct {
	s     *Server
	addr  string
	roots *x509.CertPool
	stop  func() error // ends Serve and returns its error
}

// serveTLS runs e's server through Serve. echoTLS replaces its handler
// by one that answers with the method, the protocol and the common name of
// the client's certificate ("-" without one), behind the same request-id middleware, which carries
// the TLS state over from the listener.
func serveTLS(t *testing.T, e *env, parkAfter, idle time.Duration, echoTLS bool) *tlsServer {
	t.Helper()
	cert, roots := serverCert(t)
	s := e.srv
	s.parkAfter, s.idleTimeout = parkAfter, idle
	if echoTLS {
		s.handler = s.withRequestID(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.TLS == nil {
				http.Error(w, "no TLS state", http.StatusInternalServerError)
				return
			}
			name := "-"
			if len(r.TLS.PeerCertificates) > 0 {
				name = r.TLS.PeerCertificates[0].Subject.CommonName
			}
			fmt.Fprintf(w, "%s %s %s", r.Method, r.Proto, name)
		}))
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() {
		errc <- s.Serve(ctx, ln, &tls.Config{Certificates: []tls.Certificate{cert}, ClientAuth: tls.RequestClientCert, MinVersion: tls.VersionTLS12})
	}()
	ts := &tlsServer{s: s, addr: ln.Addr().String(), roots: roots}
	stopped := false
	ts.stop = func() error {
		if stopped {
			return nil
		}
		stopped = true
		cancel()
		select {
		case err := <-errc:
			return err
		case <-time.After(30 * time.Second):
			return errors.New("Serve did not return 30 s after its context ended")
		}
	}
	t.Cleanup(func() {
		if err := ts.stop(); err != nil {
			t.Error(err)
		}
	})
	return ts
}

// serverCert is a self-signed server certificate for 127.0.0.1 and the
// pool that trusts it.
func serverCert(t testing.TB) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	cert, _, err := tlsutil.LoadOrCreateSelfSigned(t.TempDir(), nil, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(cert.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(leaf)
	return cert, roots
}

// client is an HTTP/1.1 client with keep-alive (HTTP/2 when h2), with a
// client certificate named cn unless cn is empty.
func (ts *tlsServer) client(t *testing.T, cn string, h2 bool) *http.Client {
	t.Helper()
	tc := &tls.Config{RootCAs: ts.roots}
	if cn != "" {
		tc.Certificates = []tls.Certificate{clientCert(t, cn)}
	}
	tr := &http.Transport{TLSClientConfig: tc, ForceAttemptHTTP2: h2}
	if !h2 {
		tr.TLSClientConfig.NextProtos = []string{"http/1.1"}
		tr.Protocols = new(http.Protocols)
		tr.Protocols.SetHTTP1(true)
	}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

func clientCert(t testing.TB, cn string) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: cn}, NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// get fetches path and reports the body and whether the connection was
// reused.
func (ts *tlsServer) get(t *testing.T, c *http.Client, path string) (string, bool) {
	t.Helper()
	reused := false
	ctx := httptrace.WithClientTrace(context.Background(), &httptrace.ClientTrace{GotConn: func(i httptrace.GotConnInfo) { reused = i.Reused }})
	req, err := http.NewRequestWithContext(ctx, "GET", "https://"+ts.addr+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d %q %v", path, resp.StatusCode, body, err)
	}
	return string(body), reused
}

// waitParked waits (at most 10 s) until exactly n connections are parked.
func (ts *tlsServer) waitParked(t *testing.T, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		got := int(testutil.ToFloat64(ts.s.metrics.parked))
		if got == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d connection(s) parked after 10 s, want %d", got, n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func skipUnlessParking(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("idle connections are parked on Linux only (epoll)")
	}
}

func TestParkedConnectionServesAgain(t *testing.T) {
	skipUnlessParking(t)
	e := newServer(t, openSQLite(t))
	ts := serveTLS(t, e, 20*time.Millisecond, time.Minute, true)
	c := ts.client(t, "device-1", false)
	for i := range 3 {
		body, reused := ts.get(t, c, "/")
		if body != "GET HTTP/1.1 device-1" {
			t.Fatalf("request %d: body %q, want the client certificate's name over HTTP/1.1", i, body)
		}
		if reused != (i > 0) {
			t.Fatalf("request %d: connection reused %v", i, reused)
		}
		// Idle past the grace: the connection leaves net/http and waits
		// in the parker; the next request brings it back, same TLS session.
		ts.waitParked(t, 1)
	}
	// A parked connection that the client hangs up is woken, read to its
	// end and closed.
	c.Transport.(*http.Transport).CloseIdleConnections()
	ts.waitParked(t, 0)
}

func TestParkedConnectionsWithoutClientCertAndHTTP2(t *testing.T) {
	skipUnlessParking(t)
	e := newServer(t, openSQLite(t))
	ts := serveTLS(t, e, 20*time.Millisecond, time.Minute, true)
	if body, _ := ts.get(t, ts.client(t, "", false), "/"); body != "GET HTTP/1.1 -" {
		t.Fatalf("without a client certificate: %q", body)
	}
	ts.waitParked(t, 1)
	// HTTP/2 is served as before and never parked.
	h2 := ts.client(t, "admin-console", true)
	if body, _ := ts.get(t, h2, "/"); body != "GET HTTP/2.0 admin-console" {
		t.Fatalf("over HTTP/2: %q", body)
	}
	time.Sleep(100 * time.Millisecond)
	ts.waitParked(t, 1)
	if body, reused := ts.get(t, h2, "/"); body != "GET HTTP/2.0 admin-console" || !reused {
		t.Fatalf("over HTTP/2 again: %q, reused %v", body, reused)
	}
}

// rawConn is a hand-driven HTTP/1.1 connection, to send requests in
// pieces and pipelined.
type rawConn struct {
	*tls.Conn
	r *bufio.Reader
}

func (ts *tlsServer) dial(t *testing.T) *rawConn {
	t.Helper()
	c, err := tls.Dial("tcp", ts.addr, &tls.Config{RootCAs: ts.roots, NextProtos: []string{"http/1.1"}, Certificates: []tls.Certificate{clientCert(t, "raw")}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(20 * time.Second))
	return &rawConn{Conn: c, r: bufio.NewReader(c)}
}

func (c *rawConn) send(t *testing.T, s string) {
	t.Helper()
	if _, err := io.WriteString(c, s); err != nil {
		t.Fatal(err)
	}
}

func (c *rawConn) response(t *testing.T) string {
	t.Helper()
	resp, err := http.ReadResponse(c.r, nil)
	if err != nil {
		t.Fatalf("reading a response: %v", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("response %d %q %v", resp.StatusCode, body, err)
	}
	return string(body)
}

const rawRequest = "GET / HTTP/1.1\r\nHost: sphere\r\n\r\n"

func TestParkingLosesNoBytes(t *testing.T) {
	skipUnlessParking(t)
	e := newServer(t, openSQLite(t))
	const grace = 200 * time.Millisecond
	ts := serveTLS(t, e, grace, time.Minute, true)
	c := ts.dial(t)
	answered := func(what string) {
		t.Helper()
		if body := c.response(t); body != "GET HTTP/1.1 raw" {
			t.Fatalf("%s: %q", what, body)
		}
	}

	// Pipelined: the second request is already buffered when the first
	// is answered, so the connection must not be parked in between.
	c.send(t, rawRequest+rawRequest)
	answered("first pipelined request")
	answered("second pipelined request")

	// Pipelined, with only the first bytes of the second request sent
	// with the first: net/http holds them in its buffer, so it must keep
	// its goroutine and buffer, and wait, however long the rest takes.
	c.send(t, rawRequest+rawRequest[:2])
	answered("request sent with the start of the next")
	time.Sleep(2 * grace)
	c.send(t, rawRequest[2:])
	answered("request whose start came with the previous one")

	// The same with the whole request line of the next request: net/http
	// reads it from its buffer, waits for the rest with an empty buffer,
	// and must go on waiting.
	line := strings.Index(rawRequest, "\n") + 1
	c.send(t, rawRequest+rawRequest[:line])
	answered("request sent with the next one's first line")
	time.Sleep(2 * grace)
	c.send(t, rawRequest[line:])
	answered("request whose first line came with the previous one")

	// The next request begins within the grace but its headers come later
	// than the grace: once net/http has consumed the request line it waits
	// with an empty buffer, and must go on waiting, not park the
	// connection half-read.
	c.send(t, rawRequest[:line])
	time.Sleep(2 * grace)
	c.send(t, rawRequest[line:])
	answered("request with a pause after its first line")
	ts.waitParked(t, 1)

	// The same on a parked connection: its first bytes wake it.
	c.send(t, rawRequest[:2])
	ts.waitParked(t, 0)
	time.Sleep(2 * grace)
	c.send(t, rawRequest[2:line])
	time.Sleep(2 * grace)
	c.send(t, rawRequest[line:])
	answered("request in pieces on a parked connection")
	ts.waitParked(t, 1)
}

func TestParkedConnectionIdleTimeout(t *testing.T) {
	skipUnlessParking(t)
	e := newServer(t, openSQLite(t))
	ts := serveTLS(t, e, 20*time.Millisecond, 300*time.Millisecond, true)
	expire := ts.dial(t)
	expire.send(t, rawRequest)
	expire.response(t)
	ts.waitParked(t, 1)
	// Past the idle timeout the parker closes it, as net/http would have.
	expire.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := expire.Read(make([]byte, 1)); !errors.Is(err, io.EOF) {
		t.Fatalf("a connection idle past the idle timeout: read %d, %v; want the server's close (EOF)", n, err)
	}
	ts.waitParked(t, 0)
}

func TestShutdownClosesParkedConnections(t *testing.T) {
	skipUnlessParking(t)
	e := newServer(t, openSQLite(t))
	ts := serveTLS(t, e, 20*time.Millisecond, time.Minute, true)
	held := ts.dial(t)
	held.send(t, rawRequest)
	held.response(t)
	ts.waitParked(t, 1)
	if err := ts.stop(); err != nil {
		t.Fatal(err)
	}
	held.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := held.Read(make([]byte, 1)); !errors.Is(err, io.EOF) {
		t.Fatalf("a parked connection after shutdown: read %d, %v; want EOF", n, err)
	}
	if got := testutil.ToFloat64(ts.s.metrics.parked); got != 0 {
		t.Fatalf("parked gauge %v after shutdown", got)
	}
	if c, err := net.DialTimeout("tcp", ts.addr, time.Second); err == nil {
		c.Close()
		t.Fatal("the listener still accepts after shutdown")
	}
}

// BenchmarkListener measures what the service's listener costs against
// net/http's own TLS serving, side by side in one run, client and server
// in this process: "new" is a TLS handshake with a client certificate,
// one request and the close; "kept" one request on a kept connection.
func BenchmarkListener(b *testing.B) {
	cert, roots := serverCert(b)
	serverTLS := &tls.Config{Certificates: []tls.Certificate{cert}, ClientAuth: tls.RequestClientCert, MinVersion: tls.VersionTLS12}
	client := clientCert(b, "bench")
	for _, run := range []struct{ variant, conn string }{{"net-http", "new"}, {"listener", "new"}, {"net-http", "kept"}, {"listener", "kept"}} {
		variant := run.variant
		b.Run(run.conn+"/"+variant, func(b *testing.B) {
			m, err := newMetrics(prometheus.NewRegistry())
			if err != nil {
				b.Fatal(err)
			}
			s := &Server{log: slog.New(slog.DiscardHandler), metrics: m, parkAfter: defaultParkIdleAfter, idleTimeout: time.Minute, stopIn: time.Second}
			s.handler = s.withRequestID(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.TLS == nil || len(r.TLS.PeerCertificates) != 1 {
					http.Error(w, "no client certificate", http.StatusInternalServerError)
				}
			}))
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				b.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			if variant == "net-http" {
				hs := &http.Server{Handler: s.handler, TLSConfig: serverTLS}
				go hs.ServeTLS(ln, "", "")
				defer hs.Close()
			} else {
				go s.Serve(ctx, ln, serverTLS)
			}
			tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, Certificates: []tls.Certificate{client}, NextProtos: []string{"http/1.1"}}, DisableKeepAlives: run.conn == "new", MaxIdleConnsPerHost: 64}
			defer tr.CloseIdleConnections()
			tr.Protocols = new(http.Protocols)
			tr.Protocols.SetHTTP1(true)
			c := &http.Client{Transport: tr}
			url := "https://" + ln.Addr().String() + "/"
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					resp, err := c.Get(url)
					if err != nil {
						b.Error(err)
						return
					}
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode != http.StatusOK {
						b.Errorf("status %d", resp.StatusCode)
						return
					}
				}
			})
		})
	}
}
