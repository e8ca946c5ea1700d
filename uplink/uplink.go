// Package uplink is the agent's MQTT connection to a broker that the
// tenant runs or rents (Mosquitto, EMQX, a cloud IoT hub), authenticated
// with the device certificate over mutual TLS. It speaks MQTT 5, or MQTT
// 3.1.1 for brokers that need it (Azure IoT Hub). The private key stays in
// the root of trust: the certificate is asked for on every TLS handshake,
// so a renewed one is used from the next connection on, and the client
// reconnects by itself when it sees a renewal.
//
// QoS 1 messages go through an on-disk outbox and leave it only when the
// broker has acknowledged them, so broker restarts, lost connections and
// agent crashes lose nothing; delivery is at least once, so receivers may
// see duplicates. It is not a general MQTT library (no QoS 2, retained or
// will messages) and not the local API that apps on the device call.
//
// The outbox, the send loop, certificate watching and subscriptions are
// shared; only the wire client differs by protocol (mqtt5.go, mqtt311.go).
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
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/eclipse/paho.golang/autopaho"
)

// Protocols Config.Protocol accepts.
const (
	MQTT5   = "5"
	MQTT311 = "3.1.1"
)

// Config configures a Client.
type Config struct {
	// Broker is the broker's URL, mqtts://host:port (tls:// and ssl://
	// mean the same). A missing port means 8883. Plain mqtt:// is
	// refused: the device certificate is only sent over TLS. Required.
	Broker string
	// Protocol is the MQTT version: "5" (MQTT5) or "3.1.1" (MQTT311).
	// Empty means "5". Choose 3.1.1 only for brokers that do not speak
	// MQTT 5, such as Azure IoT Hub's device endpoint: with it, PUBACK
	// carries no reason code, so a message the broker refuses cannot be
	// told from one it accepted, and SessionExpiry is only on or off.
	Protocol string
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
	// Username is the MQTT user name; empty sends none. Brokers that take
	// the identity from the certificate (Mosquitto's
	// use_identity_as_username) ignore it; Azure IoT Hub requires
	// "{hub}.azure-devices.net/{device id}/?api-version=2021-04-12".
	Username string
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
	// messages sent to the device while it is offline are lost. MQTT
	// 3.1.1 has no expiry: any non-zero value asks for a persistent
	// session (clean session off), kept as long as the broker decides.
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
// should be quick. It may call Publish; with QoS 1 that only writes the
// outbox and never waits for the network.
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

	// errConnectionLost ends a wait for an acknowledgement whose
	// connection dropped: a message is sent again, a subscription made
	// again, on the next one.
	errConnectionLost = errors.New("connection lost")
)

// wire is one protocol's MQTT client. It connects and reconnects by
// itself from the start: it dials with Client.dial, names itself with
// Client.clientID, reports connections to Client.onUp and onDown, and
// hands incoming messages to Client.received. It keeps no message of its
// own across connections: the outbox is the only queue.
type wire interface {
	// publish sends one message and, for QoS 1, waits for its PUBACK.
	// It returns ErrNotConnected when no connection is up and a
	// refusedError when sending the message again would not help.
	publish(ctx context.Context, topic string, payload []byte, qos byte) error
	// subscribe subscribes to filters with QoS 1 on the live connection.
	subscribe(ctx context.Context, filters []string) error
	// disconnect ends the connection cleanly and stops reconnecting.
	disconnect(ctx context.Context) error
}

// refusedError is a broker's refusal of a message for good.
type refusedError struct {
	code   byte
	reason string
}

func (e *refusedError) Error() string {
	return fmt.Sprintf("refused by the broker (reason code 0x%02x %s)", e.code, e.reason)
}

// Client is a connection to one broker that reconnects by itself.
type Client struct {
	cfg     Config
	log     *slog.Logger
	out     *outbox
	wire    wire
	tls     *tls.Config
	backoff autopaho.Backoff
	ctx     context.Context // ends at Close
	cancel  context.CancelFunc
	wg      sync.WaitGroup

	closeOnce sync.Once
	closeErr  error

	mu         sync.Mutex
	conn       net.Conn // the latest network connection
	connSerial string   // serial of the certificate presented on conn
	connCert   *tls.Certificate
	presented  *tls.Certificate // presented in the handshake in progress
	up         bool
	upCh       chan struct{} // closed while a connection is up
	subs       []*subscription
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
	if err := setDefaults(&cfg); err != nil {
		return nil, fmt.Errorf("uplink.New: %w", err)
	}
	out, err := openOutbox(cfg.OutboxDir, cfg.MaxOutbox)
	if err != nil {
		return nil, fmt.Errorf("uplink.New: outbox: %w", err)
	}
	c := &Client{cfg: cfg, log: cfg.Logger, out: out, upCh: make(chan struct{}),
		backoff: autopaho.NewExponentialBackoff(cfg.MinBackoff, cfg.MaxBackoff, min(2*cfg.MinBackoff, cfg.MaxBackoff), 2)}
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
	if cfg.Protocol == MQTT311 {
		c.wire = start311(c, u)
	} else if c.wire, err = start5(c, u); err != nil {
		c.cancel()
		return nil, fmt.Errorf("uplink.New: %w", err)
	}
	c.wg.Add(2)
	go c.sendLoop()
	go c.watchCert()
	return c, nil
}

func setDefaults(cfg *Config) error {
	switch cfg.Protocol {
	case "":
		cfg.Protocol = MQTT5
	case MQTT5, MQTT311:
	default:
		return fmt.Errorf("protocol %q: want %q or %q", cfg.Protocol, MQTT5, MQTT311)
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&cfg.KeepAlive, 30*time.Second)
	cfg.KeepAlive = min(cfg.KeepAlive, 65535*time.Second) // a 16-bit field in both protocols
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
	return nil
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

// leaf is the parsed end-entity certificate of c, or nil.
func leaf(c *tls.Certificate) *x509.Certificate {
	if c == nil || len(c.Certificate) == 0 {
		return nil
	}
	if c.Leaf != nil {
		return c.Leaf
	}
	l, err := x509.ParseCertificate(c.Certificate[0])
	if err != nil {
		return nil
	}
	return l
}

// serial identifies a certificate; "" for none.
func serial(c *tls.Certificate) string {
	l := leaf(c)
	if l == nil {
		return ""
	}
	return l.Issuer.String() + "/" + l.SerialNumber.Text(16)
}

// clientID is the client identifier for the next connection: the
// configured one, else the device id from the current certificate.
func (c *Client) clientID() string {
	if c.cfg.ClientID != "" {
		return c.cfg.ClientID
	}
	if l := leaf(c.cfg.Cert()); l != nil {
		return l.Subject.CommonName
	}
	return ""
}

// dial makes the TLS connection, remembering it and the certificate it
// presented so that a renewal can be noticed and the connection replaced.
func (c *Client) dial(ctx context.Context, host string) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, c.cfg.ConnectTimeout)
	defer cancel()
	d := tls.Dialer{Config: c.tls}
	conn, err := d.DialContext(ctx, "tcp", host)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	c.conn, c.connCert, c.connSerial = conn, c.presented, serial(c.presented)
	c.mu.Unlock()
	return conn, nil
}

// onUp is called by the wire when a connection is up; it must not block.
func (c *Client) onUp(sessionPresent bool) {
	c.mu.Lock()
	c.up = true
	close(c.upCh)
	subs := append([]*subscription(nil), c.subs...)
	c.mu.Unlock()
	c.log.Info("uplink: connected to the broker", "broker", c.cfg.Broker, "protocol", c.cfg.Protocol,
		"session_present", sessionPresent, "outbox", c.out.len())
	if len(subs) == 0 {
		return
	}
	filters := make([]string, len(subs))
	for i, s := range subs {
		filters[i] = s.filter
	}
	go func() {
		ctx, cancel := context.WithTimeout(c.ctx, c.cfg.PublishTimeout)
		defer cancel()
		if err := c.wire.subscribe(ctx, filters); err != nil {
			c.log.Warn("uplink: subscribing again after connecting", "err", err)
		}
	}()
}

// onDown is called by the wire when the connection is lost.
func (c *Client) onDown() {
	c.setDown()
	c.log.Info("uplink: connection to the broker lost; reconnecting")
}

func (c *Client) setDown() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.up {
		c.up = false
		c.upCh = make(chan struct{})
	}
}

func (c *Client) connectError(err error) {
	c.log.Warn("uplink: cannot connect to the broker", "broker", c.cfg.Broker, "err", err)
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
			drop(conn)
		}
	}
}

// drop breaks conn so that the wire sees a failed connection and
// reconnects at once. It expires the deadlines rather than closing conn:
// paho.mqtt.golang takes "use of closed network connection" for its own
// doing and would not notice the drop until the keep-alive failed.
func drop(conn net.Conn) {
	conn.SetDeadline(time.Unix(1, 0))
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
		if err := c.AwaitConnection(c.ctx); err != nil {
			return
		}
		ctx, cancel := context.WithTimeout(c.ctx, c.cfg.PublishTimeout)
		err = c.wire.publish(ctx, m.Topic, m.Payload, 1)
		cancel()
		var refused *refusedError
		switch {
		case err == nil:
		case errors.As(err, &refused):
			// Sending it again would be refused again and hold up
			// every later message.
			c.log.Error("uplink: the broker refused a message; dropping it", "topic", m.Topic, "reason_code", refused.code, "reason", refused.reason)
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
		err := c.wire.publish(ctx, topic, payload, 0)
		if err != nil && !errors.Is(err, ErrNotConnected) {
			return fmt.Errorf("uplink.Publish: %w", err)
		}
		return err
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
// as an error; if not, or if the connection drops before the broker
// answers, it returns nil and subscribes on connecting. When Subscribe
// returns an error the subscription is gone: h is never called.
func (c *Client) Subscribe(ctx context.Context, filter string, h Handler) error {
	if err := validFilter(filter); err != nil {
		return fmt.Errorf("uplink.Subscribe: %w", err)
	}
	if h == nil {
		return errors.New("uplink.Subscribe: nil handler")
	}
	sub := &subscription{filter: filter, h: h}
	c.mu.Lock()
	c.subs = append(c.subs, sub)
	up, conn := c.up, c.upCh
	c.mu.Unlock()
	if !up {
		return nil
	}
	err := c.wire.subscribe(ctx, []string{filter})
	if err == nil || errors.Is(err, ErrNotConnected) {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.upCh != conn || errors.Is(err, errConnectionLost) {
		// The connection this subscribe went out on is gone (paho.golang
		// then leaves it waiting for a SUBACK that never comes); the
		// next connection subscribes again, or already has.
		c.log.Debug("uplink: connection lost while subscribing; subscribing on the next one", "filter", filter, "err", err)
		return nil
	}
	c.subs = slices.DeleteFunc(c.subs, func(s *subscription) bool { return s == sub })
	return err
}

// received hands an incoming message to every matching subscription and
// reports whether there was one.
func (c *Client) received(topic string, payload []byte) bool {
	c.mu.Lock()
	subs := append([]*subscription(nil), c.subs...)
	c.mu.Unlock()
	handled := false
	for _, s := range subs {
		if match(s.filter, topic) {
			s.h(topic, payload)
			handled = true
		}
	}
	return handled
}

// AwaitConnection waits until a connection to the broker is up.
func (c *Client) AwaitConnection(ctx context.Context) error {
	if c.ctx.Err() != nil {
		return ErrClosed
	}
	c.mu.Lock()
	upCh := c.upCh
	c.mu.Unlock()
	select {
	case <-upCh:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-c.ctx.Done():
		return ErrClosed
	}
}

// Certificate returns the device certificate presented on the
// connection that is up, or nil when none is.
func (c *Client) Certificate() *x509.Certificate {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.up {
		return nil
	}
	return leaf(c.connCert)
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
// the next Client. Closing again returns the first Close's result.
func (c *Client) Close(ctx context.Context) error {
	c.closeOnce.Do(func() {
		c.cancel()
		c.wg.Wait()
		if err := c.wire.disconnect(ctx); err != nil {
			c.closeErr = fmt.Errorf("uplink.Close: %w", err)
		}
		c.setDown()
	})
	return c.closeErr
}
