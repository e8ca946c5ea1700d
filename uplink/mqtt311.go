package uplink

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"sync"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
)

// wire311 is the MQTT 3.1.1 client: paho.mqtt.golang with its own
// reconnecting and resending turned off. Each connection gets a fresh
// paho client with an empty memory store, so paho never resends a
// message by itself: a QoS 1 message in flight when the connection drops
// fails here, stays in the outbox, and the send loop sends it again on the
// next connection (as MQTT 5 does). This loop does the reconnecting, with
// the Client's backoff, and asks Client.clientID on every connection.
//
// With SessionExpiry set, the session is persistent (clean session off):
// the broker keeps the subscriptions and QoS 1 messages for the device.
// The broker may also still hold a message it sent before the drop; paho
// acknowledges it when it comes again, like any other.
type wire311 struct {
	c      *Client
	broker *url.URL
	ctx    context.Context // ends at disconnect
	cancel context.CancelFunc
	done   chan struct{} // closed when run returns

	mu   sync.Mutex
	cur  mqtt.Client   // nil while not connected
	lost chan struct{} // closed when cur's connection ends
}

func start311(c *Client, u *url.URL) *wire311 {
	w := &wire311{c: c, broker: u, done: make(chan struct{})}
	w.ctx, w.cancel = context.WithCancel(context.Background())
	go w.run()
	return w
}

// options are the paho options for one connection, whose end closes lost.
func (w *wire311) options(clientID string, lost chan struct{}) *mqtt.ClientOptions {
	cfg := w.c.cfg
	var once sync.Once
	return mqtt.NewClientOptions().
		AddBroker(w.broker.String()). // dialled by dial, whatever its scheme
		SetProtocolVersion(4).        // 3.1.1, and no falling back to 3.1
		SetClientID(clientID).
		SetUsername(cfg.Username).
		SetCleanSession(cfg.SessionExpiry == 0).
		SetStore(mqtt.NewMemoryStore()).
		SetAutoReconnect(false).
		SetConnectRetry(false).
		SetResumeSubs(false).
		SetKeepAlive(cfg.KeepAlive).
		SetConnectTimeout(cfg.ConnectTimeout).
		SetWriteTimeout(cfg.PublishTimeout).
		SetOrderMatters(true). // handlers in order, PUBACK after each
		SetCustomOpenConnectionFn(func(u *url.URL, _ mqtt.ClientOptions) (net.Conn, error) {
			return w.c.dial(w.ctx, u.Host)
		}).
		SetDefaultPublishHandler(func(_ mqtt.Client, m mqtt.Message) { w.c.received(m.Topic(), m.Payload()) }).
		SetConnectionLostHandler(func(mqtt.Client, error) { once.Do(func() { close(lost) }) })
}

// run connects, waits for the connection to end, and connects again,
// until disconnect.
func (w *wire311) run() {
	defer close(w.done)
	for attempt := 0; ; attempt++ {
		if !w.sleep(w.c.backoff(attempt)) {
			return
		}
		cl, lost, present, err := w.connect()
		if err != nil {
			if w.ctx.Err() != nil {
				return
			}
			w.c.connectError(err)
			continue
		}
		upSince := time.Now()
		w.set(cl, lost)
		w.c.onUp(present)
		select {
		case <-lost:
		case <-w.ctx.Done():
		}
		w.set(nil, nil)
		if w.ctx.Err() != nil {
			cl.Disconnect(250) // sends DISCONNECT; waits at most 250 ms for work in progress
			return
		}
		w.c.onDown()
		// Reconnect at once after a connection that lasted (a renewal, a
		// broker restart); back off after one the broker dropped at once.
		attempt = -1
		if time.Since(upSince) < w.c.cfg.MinBackoff {
			attempt = 0
		}
	}
}

// connect makes one connection attempt. Its wait is bounded: dial and
// the CONNACK each take at most ConnectTimeout.
func (w *wire311) connect() (mqtt.Client, chan struct{}, bool, error) {
	lost := make(chan struct{})
	cl := mqtt.NewClient(w.options(w.c.clientID(), lost))
	tok := cl.Connect()
	<-tok.Done()
	if err := tok.Error(); err != nil {
		return nil, nil, false, err
	}
	return cl, lost, tok.(*mqtt.ConnectToken).SessionPresent(), nil
}

func (w *wire311) sleep(d time.Duration) bool {
	if d <= 0 {
		return w.ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-w.ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

func (w *wire311) set(cl mqtt.Client, lost chan struct{}) {
	w.mu.Lock()
	w.cur, w.lost = cl, lost
	w.mu.Unlock()
}

func (w *wire311) current() (mqtt.Client, chan struct{}) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.cur, w.lost
}

// publish sends one message. MQTT 3.1.1's PUBACK carries no reason code,
// so a broker that will not take a message either acknowledges it anyway
// (Mosquitto, for a topic its ACL forbids) or closes the connection
// (Azure IoT Hub): the message is then sent again on the next connection.
func (w *wire311) publish(ctx context.Context, topic string, payload []byte, qos byte) error {
	cl, lost := w.current()
	if cl == nil {
		return ErrNotConnected
	}
	return wait(ctx, cl.Publish(topic, qos, false, payload), lost)
}

func (w *wire311) subscribe(ctx context.Context, filters []string) error {
	cl, lost := w.current()
	if cl == nil {
		return ErrNotConnected
	}
	qos := make(map[string]byte, len(filters))
	for _, f := range filters {
		qos[f] = 1
	}
	tok := cl.SubscribeMultiple(qos, nil) // messages go to the default handler
	if err := wait(ctx, tok, lost); err != nil {
		return fmt.Errorf("uplink: subscribe: %w", err)
	}
	granted := tok.(*mqtt.SubscribeToken).Result()
	for _, f := range filters {
		if code, ok := granted[f]; !ok || code >= 0x80 {
			return fmt.Errorf("uplink: subscribe %s: refused by the broker (return code 0x%02x)", f, code)
		}
	}
	return nil
}

// wait waits for tok, the end of its connection, or ctx.
func wait(ctx context.Context, tok mqtt.Token, lost <-chan struct{}) error {
	select {
	case <-tok.Done():
		err := tok.Error()
		switch {
		case errors.Is(err, mqtt.ErrNotConnected):
			return ErrNotConnected
		case err != nil && strings.HasPrefix(err.Error(), "connection lost before"):
			// paho.mqtt.golang ends the tokens of a lost connection
			// with "connection lost before Publish/Subscribe completed",
			// possibly before lost is closed.
			return fmt.Errorf("%w: %v", errConnectionLost, err)
		}
		return err
	case <-lost:
		return errConnectionLost
	case <-ctx.Done():
		return ctx.Err()
	}
}

// disconnect stops reconnecting, ends the connection and waits (bounded
// by ctx) for the loop to finish.
func (w *wire311) disconnect(ctx context.Context) error {
	w.cancel()
	select {
	case <-w.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
