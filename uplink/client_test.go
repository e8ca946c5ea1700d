package uplink

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
)

// closedPort is a loopback address nothing listens on.
func closedPort(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

// TestOffline runs each protocol's client with no broker to reach: QoS 1
// messages wait in the outbox, QoS 0 ones are refused, and after Close
// everything is ErrClosed and the outbox is kept.
func TestOffline(t *testing.T) {
	for _, protocol := range []string{MQTT5, MQTT311} {
		t.Run(protocol, func(t *testing.T) {
			dir := t.TempDir()
			c, err := New(Config{Broker: "mqtts://" + closedPort(t), Protocol: protocol, OutboxDir: dir,
				Cert:       func() *tls.Certificate { return nil },
				MinBackoff: 10 * time.Millisecond, MaxBackoff: 50 * time.Millisecond})
			if err != nil {
				t.Fatal(err)
			}
			ctx := context.Background()
			if err := c.Publish(ctx, "devices/x/t", []byte("kept"), 1); err != nil {
				t.Fatalf("Publish QoS 1 offline: %v; want stored", err)
			}
			if err := c.Publish(ctx, "devices/x/t", []byte("lost"), 0); !errors.Is(err, ErrNotConnected) {
				t.Errorf("Publish QoS 0 offline: %v; want ErrNotConnected", err)
			}
			if err := c.Subscribe(ctx, "devices/x/#", func(string, []byte) {}); err != nil {
				t.Errorf("Subscribe offline: %v; want nil (subscribes on connecting)", err)
			}
			wctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
			defer cancel()
			if err := c.AwaitConnection(wctx); !errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("AwaitConnection: %v; want the deadline", err)
			}
			if c.Pending() != 1 || c.Certificate() != nil {
				t.Errorf("pending %d, certificate %v; want 1, none", c.Pending(), c.Certificate())
			}
			cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			defer cancel()
			if err := c.Close(cctx); err != nil {
				t.Fatalf("Close: %v", err)
			}
			if err := c.Publish(ctx, "devices/x/t", nil, 1); !errors.Is(err, ErrClosed) {
				t.Errorf("Publish after Close: %v; want ErrClosed", err)
			}
			if err := c.AwaitConnection(ctx); !errors.Is(err, ErrClosed) {
				t.Errorf("AwaitConnection after Close: %v; want ErrClosed", err)
			}
			if entries, _ := os.ReadDir(dir); len(entries) != 1 {
				t.Errorf("outbox after Close: %v; want the one message", entries)
			}
		})
	}
}

func TestNewRefusesBadConfig(t *testing.T) {
	cert := func() *tls.Certificate { return nil }
	for _, tc := range []struct {
		name string
		cfg  Config
	}{
		{"error/protocol 4", Config{Broker: "mqtts://b", Protocol: "4", Cert: cert}},
		{"error/protocol v5", Config{Broker: "mqtts://b", Protocol: "v5", Cert: cert}},
		{"error/plain broker", Config{Broker: "mqtt://b", Protocol: MQTT311, Cert: cert}},
		{"error/no cert", Config{Broker: "mqtts://b", Protocol: MQTT311}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "outbox")
			tc.cfg.OutboxDir = dir
			if c, err := New(tc.cfg); err == nil {
				c.Close(context.Background())
				t.Fatal("New accepted it")
			}
			if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("the outbox was created (%v)", err)
			}
		})
	}
}

// TestOptions311: the 3.1.1 client asks for exactly 3.1.1, keeps no
// message of its own across connections (memory store, paho's
// reconnecting and resending off), and maps SessionExpiry to the clean
// session flag.
func TestOptions311(t *testing.T) {
	for _, tc := range []struct {
		name    string
		expiry  time.Duration
		clean   bool
		user    string
		wantUse string
	}{
		{"ok/clean session", 0, true, "", ""},
		{"ok/persistent session", time.Hour, false, "hub.azure-devices.net/d/?api-version=2021-04-12", "hub.azure-devices.net/d/?api-version=2021-04-12"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := Config{Protocol: MQTT311, SessionExpiry: tc.expiry, Username: tc.user}
			if err := setDefaults(&cfg); err != nil {
				t.Fatal(err)
			}
			u, _ := brokerURL("mqtts://broker")
			w := &wire311{c: &Client{cfg: cfg}, broker: u}
			opts := w.options("dev", make(chan struct{}))
			o := mqtt.NewOptionsReader(opts)
			if o.ProtocolVersion() != 4 || o.CleanSession() != tc.clean || o.ClientID() != "dev" || o.Username() != tc.wantUse {
				t.Errorf("protocol %d clean %v id %q user %q; want 4 %v dev %q",
					o.ProtocolVersion(), o.CleanSession(), o.ClientID(), o.Username(), tc.clean, tc.wantUse)
			}
			if o.AutoReconnect() || o.ConnectRetry() || o.ResumeSubs() {
				t.Error("paho reconnects or resends by itself; the outbox must be the only queue")
			}
			if _, ok := opts.Store.(*mqtt.MemoryStore); !ok {
				t.Errorf("store %T; want a memory store", opts.Store)
			}
			if o.KeepAlive() != 30*time.Second || o.ConnectTimeout() != 10*time.Second {
				t.Errorf("keep-alive %v, connect timeout %v; want the defaults", o.KeepAlive(), o.ConnectTimeout())
			}
		})
	}
}

func TestClientID(t *testing.T) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "device-id"},
		NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert := &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
	for _, tc := range []struct {
		name, configured string
		cert             *tls.Certificate
		want             string
	}{
		{"ok/from the certificate", "", cert, "device-id"},
		{"ok/configured", "other", cert, "other"},
		{"ok/no certificate", "", nil, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := &Client{cfg: Config{ClientID: tc.configured, Cert: func() *tls.Certificate { return tc.cert }}}
			if got := c.clientID(); got != tc.want {
				t.Errorf("clientID() = %q; want %q", got, tc.want)
			}
		})
	}
}

// TestKeepAliveBounded: the keep-alive is a 16-bit count of seconds in
// both protocols; a longer one is cut to the longest it can say.
func TestKeepAliveBounded(t *testing.T) {
	cfg := Config{KeepAlive: 100 * time.Hour}
	if err := setDefaults(&cfg); err != nil {
		t.Fatal(err)
	}
	if cfg.KeepAlive != 65535*time.Second {
		t.Errorf("keep-alive %v; want 65535s", cfg.KeepAlive)
	}
}
