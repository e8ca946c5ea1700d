package uplink

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"strings"
	"time"

	"github.com/eclipse/paho.golang/autopaho"
	"github.com/eclipse/paho.golang/packets"
	"github.com/eclipse/paho.golang/paho"
)

// wire5 is the MQTT 5 client: paho.golang's autopaho, which reconnects
// by itself. Its in-flight QoS 1 messages end with an error when the
// connection drops and are sent again from the outbox.
type wire5 struct {
	cm *autopaho.ConnectionManager
}

func start5(c *Client, u *url.URL) (*wire5, error) {
	cfg := c.cfg
	ac := autopaho.ClientConfig{
		ServerUrls:                    []*url.URL{u},
		TlsCfg:                        c.tls,
		KeepAlive:                     uint16(min(cfg.KeepAlive/time.Second, 65535)),
		CleanStartOnInitialConnection: cfg.SessionExpiry == 0,
		SessionExpiryInterval:         uint32(min(cfg.SessionExpiry/time.Second, 1<<32-1)),
		ReconnectBackoff:              c.backoff,
		ConnectTimeout:                cfg.ConnectTimeout,
		AttemptConnection: func(ctx context.Context, _ autopaho.ClientConfig, u *url.URL) (net.Conn, error) {
			conn, err := c.dial(ctx, u.Host)
			if err != nil {
				return nil, err
			}
			// paho.golang writes a packet in several Writes and from
			// several goroutines (SUBSCRIBE, PUBLISH, PUBACK, PINGREQ);
			// on a bare tls.Conn they interleave, the broker reads a
			// malformed packet and drops the connection. The wrapper
			// holds a lock across each packet.
			return packets.NewThreadSafeConn(conn), nil
		},
		ConnectPacketBuilder: func(p *paho.Connect, _ *url.URL) (*paho.Connect, error) {
			p.ClientID = c.clientID()
			if cfg.Username != "" {
				p.Username, p.UsernameFlag = cfg.Username, true
			}
			return p, nil
		},
		OnConnectionUp: func(_ *autopaho.ConnectionManager, ack *paho.Connack) { c.onUp(ack.SessionPresent) },
		OnConnectionDown: func() bool {
			c.onDown()
			return true
		},
		OnConnectError: c.connectError,
		Debug:          pahoLog{c.log, "autopaho"},
		Errors:         pahoLog{c.log, "autopaho"},
		PahoDebug:      pahoLog{c.log, "paho"},
		PahoErrors:     pahoLog{c.log, "paho"},
		ClientConfig: paho.ClientConfig{
			PacketTimeout: cfg.PublishTimeout,
			OnPublishReceived: []func(paho.PublishReceived) (bool, error){func(pr paho.PublishReceived) (bool, error) {
				return c.received(pr.Packet.Topic, pr.Packet.Payload), nil
			}},
		},
	}
	// The connection manager gets its own context: Close stops the
	// workers first, then disconnects cleanly.
	cm, err := autopaho.NewConnection(context.Background(), ac)
	if err != nil {
		return nil, err
	}
	return &wire5{cm: cm}, nil
}

func (w *wire5) publish(ctx context.Context, topic string, payload []byte, qos byte) error {
	resp, err := w.cm.Publish(ctx, &paho.Publish{QoS: qos, Topic: topic, Payload: payload})
	switch {
	case errors.Is(err, autopaho.ConnectionDownError):
		return ErrNotConnected
	case err != nil && resp != nil && refused(resp.ReasonCode):
		return &refusedError{code: resp.ReasonCode, reason: resp.Properties.ReasonString}
	}
	return err
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

func (w *wire5) subscribe(ctx context.Context, filters []string) error {
	s := &paho.Subscribe{}
	for _, f := range filters {
		s.Subscriptions = append(s.Subscriptions, paho.SubscribeOptions{Topic: f, QoS: 1})
	}
	ack, err := w.cm.Subscribe(ctx, s)
	if err != nil {
		if ack != nil {
			for i, code := range ack.Reasons {
				if code >= 0x80 && i < len(filters) {
					return fmt.Errorf("uplink: subscribe %s: refused by the broker (reason code 0x%02x)", filters[i], code)
				}
			}
		}
		switch {
		case errors.Is(err, autopaho.ConnectionDownError):
			return ErrNotConnected
		case errors.Is(err, paho.ErrConnectionLost):
			return errConnectionLost
		}
		return fmt.Errorf("uplink: subscribe: %w", err)
	}
	return nil
}

func (w *wire5) disconnect(ctx context.Context) error { return w.cm.Disconnect(ctx) }

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
