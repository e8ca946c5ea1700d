package agent

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/opensphere/sphere"
	"github.com/opensphere/sphere/ca"
	"github.com/opensphere/sphere/internal/syncbuf"
	"github.com/opensphere/sphere/rot"
	"github.com/opensphere/sphere/store"
	"github.com/opensphere/sphere/tlsutil"
	"github.com/opensphere/sphere/uplink"
)

// TestUplinkMosquitto runs devices' MQTT uplinks against a real Mosquitto
// that trusts the tenant chain bundle: mutual TLS with the device id as
// the user name, an ACL on it, a revoked device shut out, certificate
// renewal and a tenant CA rotation with a broker restart, messages kept
// across an agent restart, and no QoS 1 message lost along the way.
//
// It runs once for each protocol the uplink speaks.
//
// The service clock is set back at the start so that the tenant CA's
// rotation falls on today: Mosquitto checks certificates against the real
// time, so every certificate it sees must be valid now.
func TestUplinkMosquitto(t *testing.T) {
	bin := mosquittoBinary(t)
	for _, tc := range []struct{ name, protocol, logged string }{
		{"MQTT 5", uplink.MQTT5, "p5"},
		{"MQTT 3.1.1", uplink.MQTT311, "p2"}, // Mosquitto's number for 3.1.1
	} {
		t.Run(tc.name, func(t *testing.T) { testUplinkMosquitto(t, bin, tc.protocol, tc.logged) })
	}
}

// testUplinkMosquitto is TestUplinkMosquitto for one protocol; logged is
// how Mosquitto names it in its log ("as ID (p5, ...").
func testUplinkMosquitto(t *testing.T, bin, protocol, logged string) {
	svc := startService(t)
	ctx := context.Background()

	// CA1 made 685.5 days ago expires in 44.5 days; its successor, made
	// when rotation is due (90 days before that), activates 12 hours ago.
	svc.clock.Advance(-(ca.TenantCALifetime - ca.RotateBefore + ca.ActivateAfter + 12*time.Hour))
	if err := svc.ca.Rotate(ctx, svc.tenant.ID()); err != nil {
		t.Fatal(err)
	}
	bundle1, err := svc.ca.Bundle(ctx, svc.tenant.ID())
	if err != nil {
		t.Fatal(err)
	}
	ca1 := bundle1[0]
	svc.clock.Advance(ca.TenantCALifetime - ca.RotateBefore)
	if err := svc.ca.Rotate(ctx, svc.tenant.ID()); err != nil {
		t.Fatal(err)
	}
	svc.clock.Advance(ca.ActivateAfter + 12*time.Hour - 13*time.Hour) // now minus 13 hours: CA1 still issues

	br := startMosquitto(t, bin, bundle1)
	br.protocol = protocol
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("mosquitto log:\n%s", br.log.String())
		}
	})

	pub := svc.attestedDevice(t)
	sub := svc.attestedDevice(t)
	if got := pub.agent.Certificate().Issuer.String(); got != ca1.Subject.String() {
		t.Fatalf("first certificate issued by %s; want CA1 %s", got, ca1.Subject)
	}
	pubC := br.client(t, pub, 0, "")
	subC := br.client(t, sub, 10*time.Minute, "") // keeps its session across the broker restart
	awaitConnection(t, pubC)
	awaitConnection(t, subC)
	in := newInbox()
	if err := subC.Subscribe(ctx, "devices/#", in.handle); err != nil {
		t.Fatalf("Subscribe: %v", err)
	}

	t.Run("publish", func(t *testing.T) {
		publish(t, pubC, pub.topic(), "hello")
		in.waitFor(t, pub.topic(), "hello")
		if want := "u'" + pub.agent.DeviceID() + "'"; !strings.Contains(br.log.String(), want) {
			t.Errorf("Mosquitto did not log the device id as the user name (%s)", want)
		}
		if want := " as " + pub.agent.DeviceID() + " (" + logged + ","; !strings.Contains(br.log.String(), want) {
			t.Errorf("Mosquitto did not log a %s connection (%s)", protocol, want)
		}
	})

	t.Run("ACL on the device id", func(t *testing.T) {
		publish(t, pubC, sub.topic(), "forged")
		publish(t, pubC, pub.topic(), "after forged")
		in.waitFor(t, pub.topic(), "after forged")
		flush(t, pubC)
		// One connection, one message at a time: had the forged message
		// been delivered, it would have arrived first.
		if in.has(sub.topic(), "forged") {
			t.Error("a device published under another device's topic")
		}
	})

	t.Run("revoked device", func(t *testing.T) {
		dir := t.TempDir()
		d := svc.newDevice(t, roots[0].open(t, dir), dir)
		svc.enroll(t, d, "Development")
		dev, err := svc.tenant.GetDevice(ctx, d.agent.DeviceID())
		if err != nil {
			t.Fatal(err)
		}
		if _, err := svc.tenant.RevokeDevice(ctx, dev.ID, "test"); err != nil {
			t.Fatal(err)
		}
		if err := d.agent.Measure(); err != nil {
			t.Fatal(err)
		}
		var ae *AttestError
		if _, err := d.agent.Attest(ctx); !errors.As(err, &ae) || d.agent.Certificate() != nil {
			t.Fatalf("attesting a revoked device: %v, certificate %v; want refused, none", err, d.agent.Certificate())
		}
		c := br.client(t, d, 0, "")
		wctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		defer cancel()
		if err := c.AwaitConnection(wctx); err == nil {
			t.Error("a device without a certificate connected")
		}
	})

	t.Run("unclaimed device", func(t *testing.T) {
		dir := t.TempDir()
		d := svc.newDevice(t, roots[0].open(t, dir), dir)
		rec, err := IdentityRecord(d.rot)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := svc.st.RegisterDevice(ctx, store.Registration{IdentityPublicKey: []byte(rec.IdentityPublicKey),
			AttestationPublicKey: []byte(rec.AttestationPublicKey), RoT: rec.RoT}); err != nil {
			t.Fatal(err)
		}
		svc.allow(t, d, sphere.MeasurementAllowed)
		if err := d.agent.Measure(); err != nil {
			t.Fatal(err)
		}
		var ae *AttestError
		if _, err := d.agent.Attest(ctx); !errors.As(err, &ae) || ae.Result.Reason != "device_unclaimed" || d.agent.Certificate() != nil {
			t.Fatalf("attesting an unclaimed device: %v, certificate %v; want refused (device_unclaimed), none", err, d.agent.Certificate())
		}
		c := br.client(t, d, 0, "")
		wctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		defer cancel()
		if err := c.AwaitConnection(wctx); err == nil {
			t.Error("an unclaimed device connected")
		}
	})

	t.Run("renewal", func(t *testing.T) {
		before := br.connections(pub)
		old := pub.agent.Certificate().SerialNumber
		done := publishSeries(t, pubC, pub.topic(), "renew", 20, 20*time.Millisecond)
		if _, err := pub.agent.Attest(ctx); err != nil {
			t.Fatal(err)
		}
		if pub.agent.Certificate().SerialNumber.Cmp(old) == 0 {
			t.Fatal("attesting again gave the same certificate")
		}
		renewed := pub.agent.Certificate()
		waitUntil(t, 15*time.Second, "the client to reconnect with the new certificate", func() bool {
			c := pubC.Certificate()
			return c != nil && c.Equal(renewed) && br.connections(pub) > before
		})
		<-done
		flush(t, pubC)
		in.waitForSeries(t, pub.topic(), "renew", 20)
	})

	t.Run("tenant CA rotation", func(t *testing.T) {
		svc.clock.Advance(13 * time.Hour) // the service's clock is now the real time; CA2 is active
		bundle2, err := svc.ca.Bundle(ctx, svc.tenant.ID())
		if err != nil {
			t.Fatal(err)
		}
		if len(bundle2) != 3 {
			t.Fatalf("bundle has %d certificates; want CA1, CA2, root", len(bundle2))
		}
		before := br.connections(pub)
		done := publishSeries(t, pubC, pub.topic(), "rotate", 30, 30*time.Millisecond)
		// The relying party downloads the new chain bundle and restarts.
		br.stop(t)
		br.writeBundle(t, bundle2)
		br.start(t)
		if _, err := pub.agent.Attest(ctx); err != nil {
			t.Fatal(err)
		}
		if got := pub.agent.Certificate().Issuer.String(); got == ca1.Subject.String() {
			t.Fatalf("after rotation the certificate is still from CA1 (%s)", got)
		}
		rotated := pub.agent.Certificate()
		waitUntil(t, 15*time.Second, "the client to reconnect with the CA2 certificate", func() bool {
			c := pubC.Certificate()
			return c != nil && c.Equal(rotated) && br.connections(pub) > before
		})
		<-done
		flush(t, pubC)
		// The subscriber's certificate is from CA1, which the bundle still
		// holds: both CAs work through the overlap.
		in.waitForSeries(t, pub.topic(), "rotate", 30)
	})

	t.Run("agent restart", func(t *testing.T) {
		// Its own device: two clients with one client id would take the
		// session from each other in turn. Each message has its own topic,
		// so that the broker's log shows which ones it received: this
		// checks the publisher's outbox, not a subscriber.
		d := svc.attestedDevice(t)
		outbox := t.TempDir()
		c := br.client(t, d, 0, outbox)
		awaitConnection(t, c)
		br.stop(t)
		for i := range 10 {
			publish(t, c, fmt.Sprintf("%s/restart-%d", d.topic(), i), "x")
		}
		ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		if err := c.Close(ctx); err != nil {
			t.Fatal(err)
		}
		if n := c.Pending(); n != 10 {
			t.Fatalf("%d messages in the outbox after Close; want 10", n)
		}
		br.start(t)
		c = br.client(t, d, 0, outbox) // the agent's next run
		flush(t, c)
		for i := range 10 {
			if want := fmt.Sprintf("'%s/restart-%d'", d.topic(), i); !strings.Contains(br.log.String(), want) {
				t.Errorf("the broker never received restart-%d", i)
			}
		}
		// Closing a connected client leaves it closed, not connected.
		if err := c.Close(ctx); err != nil {
			t.Fatal(err)
		}
		if err := c.AwaitConnection(ctx); !errors.Is(err, uplink.ErrClosed) || c.Certificate() != nil {
			t.Errorf("after Close: AwaitConnection %v, certificate %v; want ErrClosed, none", err, c.Certificate())
		}
	})
}

// BenchmarkUplinkPublish measures QoS 1 messages of 256 bytes through
// the outbox to Mosquitto: each is synced to disk by Publish, sent, and
// removed after its PUBACK, one message in flight at a time.
// TestUplinkConcurrentWrites has one client write from many goroutines at
// once (subscriptions, QoS 0 and QoS 1 messages, and the client's own
// acknowledgements of what it receives): every packet must reach the
// broker whole, on the one connection. paho.golang writes each packet in
// several Writes; on a bare TLS connection two packets interleaved, the
// broker read a malformed one and dropped the connection, and a
// subscription sent on it waited for a SUBACK that never came.
func TestUplinkConcurrentWrites(t *testing.T) {
	svc, br := serviceAndBroker(t)
	for _, protocol := range []string{uplink.MQTT5, uplink.MQTT311} {
		t.Run(protocol, func(t *testing.T) {
			br.protocol = protocol
			d := svc.attestedDevice(t)
			c := br.client(t, d, 0, "")
			awaitConnection(t, c)
			in := newInbox()
			const writers, rounds = 8, 40
			var wg sync.WaitGroup
			for w := range writers {
				wg.Go(func() {
					for i := range rounds {
						topic := fmt.Sprintf("devices/%s/w%d/%d", d.agent.DeviceID(), w, i)
						ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
						err := c.Subscribe(ctx, topic, in.handle)
						cancel()
						if err != nil {
							t.Errorf("Subscribe %s: %v", topic, err)
							return
						}
						if err := c.Publish(context.Background(), topic, []byte("qos1"), 1); err != nil {
							t.Errorf("Publish QoS 1: %v", err)
							return
						}
						if err := c.Publish(context.Background(), d.topic(), []byte("qos0"), 0); err != nil {
							t.Errorf("Publish QoS 0: %v", err)
							return
						}
					}
				})
			}
			wg.Wait()
			flush(t, c)
			for w := range writers {
				in.waitFor(t, fmt.Sprintf("devices/%s/w%d/%d", d.agent.DeviceID(), w, rounds-1), "qos1")
			}
			if n := br.connections(d); n != 1 {
				t.Fatalf("the broker accepted %d connections from the device, want 1 (a malformed packet drops the connection):\n%s", n, br.log.String())
			}
		})
	}
}

// TestUplinkSubscribeAcrossDrop subscribes while the broker is frozen and
// then killed: the broker never answers, the connection is gone, and
// Subscribe must not report that as a failure: the subscription is made
// on the next connection, and messages on it arrive.
func TestUplinkSubscribeAcrossDrop(t *testing.T) {
	svc, br := serviceAndBroker(t)
	for _, protocol := range []string{uplink.MQTT5, uplink.MQTT311} {
		t.Run(protocol, func(t *testing.T) {
			br.protocol = protocol
			d, sender := svc.attestedDevice(t), svc.attestedDevice(t)
			c, s := br.client(t, d, 0, ""), br.client(t, sender, 0, "")
			awaitConnection(t, c)
			awaitConnection(t, s)
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			br.cmd.Process.Signal(syscall.SIGSTOP)
			in := newInbox()
			done := make(chan error, 1)
			go func() { done <- c.Subscribe(ctx, sender.topic(), in.handle) }()
			time.Sleep(300 * time.Millisecond) // the SUBSCRIBE is on its way to a broker that does not read it
			br.cmd.Process.Kill()
			<-br.exited
			br.cmd = nil
			br.start(t)
			if err := <-done; err != nil {
				t.Fatalf("Subscribe across a lost connection: %v; want nil (subscribes on the next one)", err)
			}
			awaitConnection(t, c)
			awaitConnection(t, s)
			// The new connection's subscription may still be on its way:
			// publish until a message arrives.
			waitUntil(t, 15*time.Second, "a message on the subscription made on reconnecting", func() bool {
				if err := s.Publish(context.Background(), sender.topic(), []byte("after"), 0); err != nil && !errors.Is(err, uplink.ErrNotConnected) {
					t.Fatal(err)
				}
				time.Sleep(100 * time.Millisecond)
				return in.has(sender.topic(), "after")
			})
		})
	}
}

func BenchmarkUplinkPublish(b *testing.B) {
	svc, br := serviceAndBroker(b)
	ctx := context.Background()
	d := svc.attestedDevice(b)
	payload := make([]byte, 256)
	for _, protocol := range []string{uplink.MQTT5, uplink.MQTT311} {
		b.Run(protocol, func(b *testing.B) {
			br.protocol = protocol
			c := br.client(b, d, 0, "")
			awaitConnection(b, c)
			b.ResetTimer()
			for range b.N {
				if err := c.Publish(ctx, d.topic(), payload, 1); err != nil {
					b.Fatal(err)
				}
			}
			flush(b, c)
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msg/s")
			b.StopTimer()
			// One client per device at a time: the next round reuses the id.
			if err := c.Close(ctx); err != nil {
				b.Fatal(err)
			}
		})
	}
}

// serviceAndBroker starts the service and a Mosquitto that trusts its
// tenant's chain bundle.
func serviceAndBroker(t testing.TB) (*service, *broker) {
	bin := mosquittoBinary(t)
	svc := startService(t)
	bundle, err := svc.ca.Bundle(context.Background(), svc.tenant.ID())
	if err != nil {
		t.Fatal(err)
	}
	return svc, startMosquitto(t, bin, bundle)
}

// mosquittoBinary finds Mosquitto or skips.
func mosquittoBinary(t testing.TB) string {
	for _, p := range []string{"mosquitto", "/usr/sbin/mosquitto"} {
		if bin, err := exec.LookPath(p); err == nil {
			return bin
		}
	}
	if os.Getenv("SPHERE_TEST_MOSQUITTO") == "1" {
		t.Fatal("SPHERE_TEST_MOSQUITTO=1 but mosquitto is not installed")
	}
	t.Skip("mosquitto is not installed (apt-get install mosquitto); set SPHERE_TEST_MOSQUITTO=1 to make this a failure")
	return ""
}

// attestedDevice makes, enrolls and attests a device on a soft root.
func (svc *service) attestedDevice(t testing.TB) *device {
	t.Helper()
	dir := t.TempDir()
	r, err := rot.OpenSoft(dir) // roots[0], for benchmarks too
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	d := svc.newDevice(t, r, dir)
	svc.enroll(t, d, "Development")
	if err := d.agent.Measure(); err != nil {
		t.Fatal(err)
	}
	if _, err := d.agent.Attest(context.Background()); err != nil {
		t.Fatalf("Attest: %v", err)
	}
	return d
}

func (d *device) topic() string { return "devices/" + d.agent.DeviceID() + "/telemetry" }

// broker is a Mosquitto process with its files.
type broker struct {
	bin, dir string
	port     int
	roots    *x509.CertPool // for its server certificate
	protocol string         // spoken by the clients of client
	log      *syncbuf.Buffer
	cmd      *exec.Cmd
	exited   chan struct{}
}

func startMosquitto(t testing.TB, bin string, bundle []*x509.Certificate) *broker {
	t.Helper()
	b := &broker{bin: bin, dir: t.TempDir(), log: &syncbuf.Buffer{}}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b.port = l.Addr().(*net.TCPAddr).Port
	l.Close()

	// A throwaway CA for the broker's own certificate.
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test broker CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true, IsCA: true}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, _ := x509.ParseCertificate(caDER)
	b.roots = x509.NewCertPool()
	b.roots.AddCert(caCert)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "127.0.0.1"},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, _ := x509.MarshalPKCS8PrivateKey(key)
	writeTestFile(t, filepath.Join(b.dir, "server.crt"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
	writeTestFile(t, filepath.Join(b.dir, "server.key"), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}))
	b.writeBundle(t, bundle)
	writeTestFile(t, filepath.Join(b.dir, "acl"), []byte("pattern write devices/%u/#\npattern read devices/#\n"))
	conf := fmt.Sprintf(`listener %d 127.0.0.1
cafile %[2]s/bundle.pem
certfile %[2]s/server.crt
keyfile %[2]s/server.key
require_certificate true
use_identity_as_username true
allow_anonymous false
acl_file %[2]s/acl
persistence true
persistence_location %[2]s/
log_dest stderr
log_type all
`, b.port, b.dir)
	if os.Geteuid() == 0 {
		conf += "user root\n" // else it drops to "mosquitto", who cannot read the test's files
	}
	writeTestFile(t, filepath.Join(b.dir, "mosquitto.conf"), []byte(conf))
	b.start(t)
	t.Cleanup(func() { b.stop(t) })
	return b
}

// writeBundle writes the tenant chain bundle as the broker's CA file.
func (b *broker) writeBundle(t testing.TB, bundle []*x509.Certificate) {
	var pemData []byte
	for _, c := range bundle {
		pemData = append(pemData, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
	}
	writeTestFile(t, filepath.Join(b.dir, "bundle.pem"), pemData)
}

func (b *broker) start(t testing.TB) {
	t.Helper()
	b.cmd = exec.Command(b.bin, "-c", filepath.Join(b.dir, "mosquitto.conf"))
	b.cmd.Stdout, b.cmd.Stderr = b.log, b.log // stderr: unbuffered, so the log is current
	if err := b.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	b.exited = make(chan struct{})
	go func(cmd *exec.Cmd, exited chan struct{}) { cmd.Wait(); close(exited) }(b.cmd, b.exited)
	addr := fmt.Sprintf("127.0.0.1:%d", b.port)
	waitUntil(t, 10*time.Second, "mosquitto to listen on "+addr, func() bool {
		select {
		case <-b.exited:
			t.Fatalf("mosquitto exited:\n%s", b.log.String())
		default:
		}
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
}

// stop ends Mosquitto with SIGTERM, so that it saves its sessions.
func (b *broker) stop(t testing.TB) {
	if b.cmd == nil {
		return
	}
	b.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-b.exited:
	case <-time.After(10 * time.Second):
		b.cmd.Process.Kill()
		<-b.exited
		t.Error("mosquitto did not stop on SIGTERM within 10 s")
	}
	b.cmd = nil
}

// connections counts the MQTT connections Mosquitto accepted from d.
func (b *broker) connections(d *device) int {
	return strings.Count(b.log.String(), " as "+d.agent.DeviceID()+" (")
}

// client connects d's uplink to the broker with d's current certificate;
// an empty outbox means a new one.
func (b *broker) client(t testing.TB, d *device, session time.Duration, outbox string) *uplink.Client {
	t.Helper()
	if outbox == "" {
		outbox = t.TempDir()
	}
	c, err := uplink.New(uplink.Config{
		Broker:         fmt.Sprintf("mqtts://127.0.0.1:%d", b.port),
		Protocol:       b.protocol,
		RootCAs:        b.roots,
		Cert:           d.agent.TLSCertificate,
		OutboxDir:      outbox,
		SessionExpiry:  session,
		ConnectTimeout: 5 * time.Second,
		PublishTimeout: 3 * time.Second,
		CertPoll:       100 * time.Millisecond,
		MinBackoff:     100 * time.Millisecond,
		MaxBackoff:     500 * time.Millisecond,
		Logger:         slog.New(slog.NewTextHandler(testWriter{t}, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := c.Close(ctx); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return c
}

func awaitConnection(t testing.TB, c *uplink.Client) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if err := c.AwaitConnection(ctx); err != nil {
		t.Fatalf("no connection to the broker within 15 s: %v", err)
	}
}

func publish(t *testing.T, c *uplink.Client, topic, payload string) {
	t.Helper()
	if err := c.Publish(context.Background(), topic, []byte(payload), 1); err != nil {
		t.Fatalf("Publish %s: %v", topic, err)
	}
}

// publishSeries publishes prefix-0 .. prefix-(n-1) with QoS 1 in the
// background, every gap.
func publishSeries(t *testing.T, c *uplink.Client, topic, prefix string, n int, gap time.Duration) <-chan struct{} {
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range n {
			if err := c.Publish(context.Background(), topic, []byte(fmt.Sprintf("%s-%d", prefix, i)), 1); err != nil {
				t.Errorf("Publish %s-%d: %v", prefix, i, err)
			}
			time.Sleep(gap)
		}
	}()
	return done
}

func flush(t testing.TB, c *uplink.Client) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := c.Flush(ctx); err != nil {
		t.Fatal(err)
	}
}

func waitUntil(t testing.TB, limit time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up after %v waiting for %s", limit, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// inbox records what a subscriber received: topic -> payload -> count.
type inbox struct {
	mu   sync.Mutex
	seen map[string]map[string]int
}

func newInbox() *inbox { return &inbox{seen: map[string]map[string]int{}} }

func (in *inbox) handle(topic string, payload []byte) {
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.seen[topic] == nil {
		in.seen[topic] = map[string]int{}
	}
	in.seen[topic][string(payload)]++
}

func (in *inbox) has(topic, payload string) bool {
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.seen[topic][payload] > 0
}

func (in *inbox) waitFor(t *testing.T, topic, payload string) {
	t.Helper()
	waitUntil(t, 10*time.Second, fmt.Sprintf("%q on %s", payload, topic), func() bool { return in.has(topic, payload) })
}

// waitForSeries waits for every one of prefix-0 .. prefix-(n-1);
// duplicates (QoS 1 is at least once) count once.
func (in *inbox) waitForSeries(t *testing.T, topic, prefix string, n int) {
	t.Helper()
	missing := func() []string {
		var m []string
		for i := range n {
			if p := fmt.Sprintf("%s-%d", prefix, i); !in.has(topic, p) {
				m = append(m, p)
			}
		}
		return m
	}
	deadline := time.Now().Add(15 * time.Second)
	for len(missing()) > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("lost QoS 1 messages: %v", missing())
		}
		time.Sleep(20 * time.Millisecond)
	}
	dups := 0
	in.mu.Lock()
	for i := range n {
		dups += max(in.seen[topic][fmt.Sprintf("%s-%d", prefix, i)]-1, 0)
	}
	in.mu.Unlock()
	t.Logf("all %d %s messages arrived (%d duplicates)", n, prefix, dups)
}

func writeTestFile(t testing.TB, path string, data []byte) {
	t.Helper()
	if err := tlsutil.WriteFileAtomic(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}
