// Package uplink is the agent's MQTT 5 connection to a broker that the
// tenant runs or rents (Mosquitto, EMQX, a cloud IoT hub), authenticated
// with the device certificate over mutual TLS. The private key stays in
// the root of trust: the certificate is asked for on every TLS handshake,
// so a renewed one is used from the next connection on, and the client
// reconnects by itself when it sees a renewal.
//
// QoS 1 messages go through an on-disk outbox and leave it only when the
// broker has acknowledged them, so broker restarts, lost connections and
// agent crashes lose nothing; delivery is at least once, so receivers may
// see duplicates. It is not a general MQTT library (no QoS 2, retained or
// will messages) and not the local API that apps on the device call.
package uplink

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/eclipse/paho.golang/autopaho"
	"github.com/eclipse/paho.golang/paho"
)

// Config configures a Client.
type Config struct {
	// Broker is the broker's URL, mqtts://host:port (tls:// and ssl://
	// mean the same). A missing port means 8883. Plain mqtt:// is
	// refused: the device certificate is only sent over TLS. Required.
	Broker string
	// RootCAs are the CAs trusted for the broker's server certificate;
	// nil means the system pool.
	RootCAs *x509.CertPool
	// Cert returns the device's current certificate, whose PrivateKey is
	// the root of trust's identity signer. It is called on every TLS
	// handshake and every CertPoll. A nil result connects without a
	// certificate, which brokers that require one refuse. Required.
	Cert func() *tls.Certificate
	// ClientID is the MQTT client identifier; empty means the common name
	// of the current certificate, which is the device id.
	ClientID string
	// OutboxDir holds QoS 1 messages until the broker acknowledges them.
	// It must be on persistent storage and used by one Client at a time.
	// Required.
	OutboxDir string
	// MaxOutbox bounds the messages waiting in the outbox; Publish fails
	// with ErrOutboxFull beyond it. Zero means 10000.
	MaxOutbox int
	// SessionExpiry is how long the broker keeps the session
	// (subscriptions and QoS 1 messages for this device) after the
	// connection drops. Zero means the session ends with the connection:
	// messages sent to the device while it is offline are lost.
	SessionExpiry time.Duration
	// KeepAlive is the MQTT keep-alive; zero means 30 seconds.
	KeepAlive time.Duration
	// ConnectTimeout bounds a connection attempt (TCP, TLS, CONNACK);
	// zero means 10 seconds.
	ConnectTimeout time.Duration
	// PublishTimeout is how long a QoS 1 message waits for its PUBACK
	// before it is sent again; zero means 10 seconds.
	PublishTimeout time.Duration
	// CertPoll is how often Cert is checked for a renewed certificate;
	// zero means 5 seconds.
	CertPoll time.Duration
	// MinBackoff and MaxBackoff bound the randomised, growing wait
	// between failed connection attempts; zero means 1 second and 2
	// minutes.
	MinBackoff, MaxBackoff time.Duration
	// Logger receives the client's logs; nil discards them.
	Logger *slog.Logger
}

// Handler receives a message for a subscription. It runs on the client's
// receive goroutine, and the broker gets the PUBACK when it returns, so it
// should be quick; it may call Publish.
type Handler func(topic string, payload []byte)

// Errors returned by Publish.
var (
	// ErrOutboxFull means MaxOutbox QoS 1 messages are waiting for the
	// broker; the message was not stored.
	ErrOutboxFull = errors.New("uplink: the outbox is full; the broker has not acknowledged earlier messages")
	// ErrNotConnected means a QoS 0 message could not be sent because no
	// connection is up. QoS 0 messages are never stored.
	ErrNotConnected = errors.New("uplink: not connected")
	// ErrClosed means the Client was closed.
	ErrClosed = errors.New("uplink: client closed")
)

// Client is a connection to one broker that reconnects by itself.
type Client struct {
	cfg    Config
	log    *slog.Logger
	out    *outbox
	cm     *autopaho.ConnectionManager
	tls    *tls.Config
	ctx    context.Context // ends at Close
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu         sync.Mutex
	conn       net.Conn // the latest network connection
	connSerial string   // serial of the certificate presented on conn
	connCert   *tls.Certificate
	presented  *tls.Certificate // presented in the handshake in progress
	up         bool
	subs       []subscription
}

type subscription struct {
	filter string
	h      Handler
}

// New starts a Client: it connects in the background, retrying with
// backoff, and sends whatever the outbox holds from earlier runs.
func New(cfg Config) (*Client, error) {
	if cfg.Cert == nil || cfg.OutboxDir == "" {
		return nil, errors.New("uplink.New: Cert and OutboxDir are required")
	}
	u, err := brokerURL(cfg.Broker)
	if err != nil {
		return nil, fmt.Errorf("uplink.New: %w", err)
	}
	setDefaults(&cfg)
	out, err := openOutbox(cfg.OutboxDir, cfg.MaxOutbox)
	if err != nil {
		return nil, fmt.Errorf("uplink.New: outbox: %w", err)
	}
	c := &Client{cfg: cfg, log: cfg.Logger, out: out}
	c.tls = &tls.Config{RootCAs: cfg.RootCAs, MinVersion: tls.VersionTLS12,
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			cert := cfg.Cert()
			c.mu.Lock()
			c.presented = cert
			c.mu.Unlock()
			if cert == nil {
				return &tls.Certificate{}, nil
			}
			return cert, nil
		}}
	c.ctx, c.cancel = context.WithCancel(context.Background())

	ac := autopaho.ClientConfig{
		ServerUrls:                    []*url.URL{u},
		TlsCfg:                        c.tls,
		KeepAlive:                     uint16(min(cfg.KeepAlive/time.Second, 65535)),
		CleanStartOnInitialConnection: cfg.SessionExpiry == 0,
		SessionExpiryInterval:         uint32(min(cfg.SessionExpiry/time.Second, 1<<32-1)),
		ReconnectBackoff:              autopaho.NewExponentialBackoff(cfg.MinBackoff, cfg.MaxBackoff, min(2*cfg.MinBackoff, cfg.MaxBackoff), 2),
		ConnectTimeout:                cfg.ConnectTimeout,
		AttemptConnection:             c.dial,
		ConnectPacketBuilder:          c.connectPacket,
		OnConnectionUp:                c.onUp,
		OnConnectionDown:              c.onDown,
		OnConnectError: func(err error) {
			c.log.Warn("uplink: cannot connect to the broker", "broker", u.Host, "err", err)
		},
		Debug:      pahoLog{c.log, "autopaho"},
		Errors:     pahoLog{c.log, "autopaho"},
		PahoDebug:  pahoLog{c.log, "paho"},
		PahoErrors: pahoLog{c.log, "paho"},
		ClientConfig: paho.ClientConfig{
			ClientID:          cfg.ClientID,
			PacketTimeout:     cfg.PublishTimeout,
			OnPublishReceived: []func(paho.PublishReceived) (bool, error){c.received},
		},
	}
	// The connection manager gets its own context: Close stops the
	// workers first, then disconnects cleanly.
	if c.cm, err = autopaho.NewConnection(context.Background(), ac); err != nil {
		c.cancel()
		return nil, fmt.Errorf("uplink.New: %w", err)
	}
	c.wg.Add(2)
	go c.sendLoop()
	go c.watchCert()
	return c, nil
}

func setDefaults(cfg *Config) {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&cfg.KeepAlive, 30*time.Second)
	def(&cfg.ConnectTimeout, 10*time.Second)
	def(&cfg.PublishTimeout, 10*time.Second)
	def(&cfg.CertPoll, 5*time.Second)
	def(&cfg.MinBackoff, time.Second)
	def(&cfg.MaxBackoff, 2*time.Minute)
	if cfg.MaxBackoff <= cfg.MinBackoff {
		cfg.MaxBackoff = cfg.MinBackoff + time.Millisecond
	}
	if cfg.MaxOutbox <= 0 {
		cfg.MaxOutbox = 10000
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
}

// brokerURL checks the broker URL and fills in the default port.
func brokerURL(s string) (*url.URL, error) {
	u, err := url.Parse(s)
	if err != nil {
		return nil, fmt.Errorf("broker URL %q: %w", s, err)
	}
	switch strings.ToLower(u.Scheme) {
	case "mqtts", "tls", "ssl":
	default:
		return nil, fmt.Errorf("broker URL %q: want mqtts://host:port (the device certificate is only sent over TLS)", s)
	}
	if u.Hostname() == "" {
		return nil, fmt.Errorf("broker URL %q: no host", s)
	}
	if u.Port() == "" {
		u.Host = net.JoinHostPort(u.Hostname(), "8883")
	}
	return u, nil
}

// serial identifies a certificate; "" for none.
func serial(c *tls.Certificate) string {
	if c == nil || len(c.Certificate) == 0 {
		return ""
	}
	leaf := c.Leaf
	if leaf == nil {
		var err error
		if leaf, err = x509.ParseCertificate(c.Certificate[0]); err != nil {
			return ""
		}
	}
	return leaf.Issuer.String() + "/" + leaf.SerialNumber.Text(16)
}

// commonName is the CN of a certificate, the device id for device
// certificates.
func commonName(c *tls.Certificate) string {
	if c == nil || len(c.Certificate) == 0 {
		return ""
	}
	if c.Leaf != nil {
		return c.Leaf.Subject.CommonName
	}
	leaf, err := x509.ParseCertificate(c.Certificate[0])
	if err != nil {
		return ""
	}
	return leaf.Subject.CommonName
}

// dial makes the TLS connection, remembering it and the certificate it
// presented so that a renewal can be noticed and the connection replaced.
func (c *Client) dial(ctx context.Context, _ autopaho.ClientConfig, u *url.URL) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, c.cfg.ConnectTimeout)
	defer cancel()
	d := tls.Dialer{Config: c.tls}
	conn, err := d.DialContext(ctx, "tcp", u.Host)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	c.conn, c.connCert, c.connSerial = conn, c.presented, serial(c.presented)
	c.mu.Unlock()
	return conn, nil
}

func (c *Client) connectPacket(p *paho.Connect, _ *url.URL) (*paho.Connect, error) {
	if c.cfg.ClientID == "" {
		p.ClientID = commonName(c.cfg.Cert())
	}
	return p, nil
}

func (c *Client) onUp(cm *autopaho.ConnectionManager, ack *paho.Connack) {
	c.mu.Lock()
	c.up = true
	subs := append([]subscription(nil), c.subs...)
	c.mu.Unlock()
	c.log.Info("uplink: connected to the broker", "broker", c.cfg.Broker, "session_present", ack.SessionPresent, "outbox", c.out.len())
	if len(subs) == 0 {
		return
	}
	filters := make([]string, len(subs))
	for i, s := range subs {
		filters[i] = s.filter
	}
	// OnConnectionUp must not block.
	go func() {
		ctx, cancel := context.WithTimeout(c.ctx, c.cfg.PublishTimeout)
		defer cancel()
		if err := c.subscribe(ctx, filters); err != nil {
			c.log.Warn("uplink: subscribing again after connecting", "err", err)
		}
	}()
}

func (c *Client) onDown() bool {
	c.mu.Lock()
	c.up = false
	c.mu.Unlock()
	c.log.Info("uplink: connection to the broker lost; reconnecting")
	return true
}

// watchCert polls Cert and, when the certificate differs from the one
// the live connection presented, drops the connection so that the next
// one presents the new certificate: brokers authorise a connection by the
// certificate it started with, and a device keeping an old connection
// open would be known by an expired or superseded certificate.
func (c *Client) watchCert() {
	defer c.wg.Done()
	t := time.NewTicker(c.cfg.CertPoll)
	defer t.Stop()
	for {
		select {
		case <-c.ctx.Done():
			return
		case <-t.C:
		}
		cur := serial(c.cfg.Cert())
		c.mu.Lock()
		conn, used, up := c.conn, c.connSerial, c.up
		c.mu.Unlock()
		if up && conn != nil && cur != "" && cur != used {
			c.log.Info("uplink: the device certificate changed; reconnecting with it")
			conn.Close() // autopaho notices and reconnects without delay
		}
	}
}

// sendLoop sends the outbox, oldest first, one message at a time, and
// removes each message once the broker has acknowledged it.
func (c *Client) sendLoop() {
	defer c.wg.Done()
	for {
		seq, m, ok, err := c.out.head()
		if !ok {
			select {
			case <-c.ctx.Done():
				return
			case <-c.out.wake:
			}
			continue
		}
		if err != nil {
			c.log.Error("uplink: unreadable outbox message; moved aside", "seq", seq, "err", err)
			if err := c.out.quarantine(seq); err != nil {
				c.log.Error("uplink: outbox", "err", err)
				c.pause(time.Second)
			}
			continue
		}
		if err := c.cm.AwaitConnection(c.ctx); err != nil {
			return
		}
		ctx, cancel := context.WithTimeout(c.ctx, c.cfg.PublishTimeout)
		resp, err := c.cm.Publish(ctx, &paho.Publish{QoS: 1, Topic: m.Topic, Payload: m.Payload})
		cancel()
		switch {
		case err == nil:
		case resp != nil && refused(resp.ReasonCode):
			// Sending it again would be refused again and hold up
			// every later message.
			c.log.Error("uplink: the broker refused a message; dropping it", "topic", m.Topic, "reason_code", resp.ReasonCode, "reason", resp.Properties.ReasonString)
		default:
			if c.ctx.Err() != nil {
				return
			}
			c.log.Debug("uplink: publish not acknowledged; will send it again", "topic", m.Topic, "err", err)
			c.pause(200 * time.Millisecond)
			continue
		}
		if err := c.out.done(seq); err != nil {
			c.log.Error("uplink: outbox", "err", err)
			c.pause(time.Second)
		}
	}
}

// refused reports PUBACK reason codes that will not change if the
// message is sent again (MQTT 5 section 3.4.2.1).
func refused(code byte) bool {
	switch code {
	case 0x87, // not authorized
		0x90, // topic name invalid
		0x99: // payload format invalid
		return true
	}
	return false
}

func (c *Client) pause(d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-c.ctx.Done():
	case <-t.C:
	}
}

// Publish sends payload to topic. With QoS 1 the message is written to
// the outbox (synced to disk) before Publish returns nil, and is sent in
// order, again after every reconnect or restart, until the broker
// acknowledges it. With QoS 0 it is sent at once if connected, else
// ErrNotConnected. QoS 2 is not supported.
func (c *Client) Publish(ctx context.Context, topic string, payload []byte, qos byte) error {
	if err := validTopic(topic); err != nil {
		return fmt.Errorf("uplink.Publish: %w", err)
	}
	if c.ctx.Err() != nil {
		return ErrClosed
	}
	switch qos {
	case 0:
		_, err := c.cm.Publish(ctx, &paho.Publish{QoS: 0, Topic: topic, Payload: payload})
		if errors.Is(err, autopaho.ConnectionDownError) {
			return ErrNotConnected
		}
		if err != nil {
			return fmt.Errorf("uplink.Publish: %w", err)
		}
		return nil
	case 1:
		err := c.out.add(message{Topic: topic, Payload: payload})
		if errors.Is(err, errOutboxFull) {
			return ErrOutboxFull
		}
		if err != nil {
			return fmt.Errorf("uplink.Publish: outbox: %w", err)
		}
		return nil
	}
	return fmt.Errorf("uplink.Publish: QoS %d is not supported; use 0 or 1", qos)
}

// Subscribe calls h for every message on topics matching filter, with
// QoS 1. The subscription is renewed on every reconnect. If a connection
// is up, Subscribe waits for the broker's answer and returns its refusal
// as an error; if not, it returns nil and subscribes on connecting.
func (c *Client) Subscribe(ctx context.Context, filter string, h Handler) error {
	if err := validFilter(filter); err != nil {
		return fmt.Errorf("uplink.Subscribe: %w", err)
	}
	if h == nil {
		return errors.New("uplink.Subscribe: nil handler")
	}
	c.mu.Lock()
	c.subs = append(c.subs, subscription{filter: filter, h: h})
	up := c.up
	c.mu.Unlock()
	if !up {
		return nil
	}
	return c.subscribe(ctx, []string{filter})
}

func (c *Client) subscribe(ctx context.Context, filters []string) error {
	s := &paho.Subscribe{}
	for _, f := range filters {
		s.Subscriptions = append(s.Subscriptions, paho.SubscribeOptions{Topic: f, QoS: 1})
	}
	ack, err := c.cm.Subscribe(ctx, s)
	if err != nil {
		if ack != nil {
			for i, code := range ack.Reasons {
				if code >= 0x80 && i < len(filters) {
					return fmt.Errorf("uplink: subscribe %s: refused by the broker (reason code 0x%02x)", filters[i], code)
				}
			}
		}
		return fmt.Errorf("uplink: subscribe: %w", err)
	}
	return nil
}

// received hands an incoming message to every matching subscription.
func (c *Client) received(pr paho.PublishReceived) (bool, error) {
	p := pr.Packet
	c.mu.Lock()
	subs := append([]subscription(nil), c.subs...)
	c.mu.Unlock()
	handled := false
	for _, s := range subs {
		if match(s.filter, p.Topic) {
			s.h(p.Topic, p.Payload)
			handled = true
		}
	}
	return handled, nil
}

// AwaitConnection waits until a connection to the broker is up.
func (c *Client) AwaitConnection(ctx context.Context) error {
	return c.cm.AwaitConnection(ctx)
}

// Certificate returns the device certificate presented on the
// connection that is up, or nil when none is.
func (c *Client) Certificate() *x509.Certificate {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.up || c.connCert == nil {
		return nil
	}
	if c.connCert.Leaf != nil {
		return c.connCert.Leaf
	}
	leaf, _ := x509.ParseCertificate(c.connCert.Certificate[0])
	return leaf
}

// Pending is the number of QoS 1 messages the broker has not yet
// acknowledged.
func (c *Client) Pending() int { return c.out.len() }

// Flush waits until the outbox is empty: every QoS 1 message published
// so far has been acknowledged by the broker.
func (c *Client) Flush(ctx context.Context) error {
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for c.out.len() > 0 {
		select {
		case <-ctx.Done():
			return fmt.Errorf("uplink.Flush: %d messages not acknowledged: %w", c.out.len(), ctx.Err())
		case <-c.ctx.Done():
			return ErrClosed
		case <-t.C:
		}
	}
	return nil
}

// Close stops sending, disconnects cleanly and waits (bounded by ctx) for
// the connection to end. Unacknowledged messages stay in the outbox for
// the next Client.
func (c *Client) Close(ctx context.Context) error {
	c.cancel()
	c.wg.Wait()
	if err := c.cm.Disconnect(ctx); err != nil {
		return fmt.Errorf("uplink.Close: %w", err)
	}
	return nil
}

// pahoLog sends paho's logs to slog at debug level: its errors are also
// reported through OnConnectError and returned errors.
type pahoLog struct {
	log    *slog.Logger
	source string
}

func (l pahoLog) Println(v ...any) {
	l.log.Debug(strings.TrimSpace(fmt.Sprintln(v...)), "source", l.source)
}

func (l pahoLog) Printf(format string, v ...any) {
	l.log.Debug(strings.TrimSpace(fmt.Sprintf(format, v...)), "source", l.source)
}
