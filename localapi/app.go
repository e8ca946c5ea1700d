package localapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"

	"github.com/opensphere/sphere/supervisor"
	"github.com/opensphere/sphere/uplink"
)

// Uplink is the agent's MQTT session, which apps holding the
// DeviceAuthentication capability share (*uplink.Client).
type Uplink interface {
	Publish(ctx context.Context, topic string, payload []byte, qos byte) error
	Subscribe(ctx context.Context, filter string, h uplink.Handler) error
}

// AppAPI is the agent's API for apps, on a socket every app may connect
// to. The caller's uid, as the kernel reports it, says which app is
// calling; each app runs under a uid of its own.
type AppAPI struct {
	// AppByUID says which installed app runs as uid.
	AppByUID func(uid int) (supervisor.App, bool)
	// Tenant is the tenant of the device's current certificate, "" while
	// it has none.
	Tenant func() string
	// Uplink is the agent's cloud connection; nil when none is configured.
	Uplink Uplink

	mu   sync.Mutex
	hub  map[string]*topicHub // by subscription filter
	mux  *http.ServeMux
	once sync.Once
}

// MaxPublish is the largest payload an app may publish through the agent.
const MaxPublish = 256 << 10

// PublishRequest is an app's message for the cloud.
type PublishRequest struct {
	Topic   string `json:"topic"`
	Payload []byte `json:"payload"` // base64 in JSON
	QoS     int    `json:"qos"`
}

// Message is a message from the cloud, one JSON object per line on the
// stream of GET /v1/uplink/messages.
type Message struct {
	Topic   string `json:"topic"`
	Payload []byte `json:"payload"`
	// Dropped counts the messages this stream lost before this one because
	// the app read too slowly.
	Dropped int `json:"dropped,omitempty"`
}

// Handle adds a route for apps; h gets the calling app. The update engine
// adds its deferral routes this way.
func (a *AppAPI) Handle(pattern string, h func(w http.ResponseWriter, r *http.Request, app supervisor.App)) {
	a.init()
	a.handle(pattern, h)
}

func (a *AppAPI) handle(pattern string, h func(w http.ResponseWriter, r *http.Request, app supervisor.App)) {
	a.mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
		p, ok := PeerOf(r)
		if !ok {
			writeError(w, http.StatusForbidden, "the caller's credentials are unknown")
			return
		}
		app, ok := a.AppByUID(p.UID)
		if !ok {
			writeError(w, http.StatusForbidden, fmt.Sprintf("uid %d is not an installed app", p.UID))
			return
		}
		h(w, r, app)
	})
}

func (a *AppAPI) init() {
	a.once.Do(func() {
		a.mux = http.NewServeMux()
		a.hub = map[string]*topicHub{}
		a.handle("POST /v1/uplink/publish", a.publish)
		a.handle("GET /v1/uplink/messages", a.messages)
	})
}

// Handler is the app API.
func (a *AppAPI) Handler() http.Handler {
	a.init()
	return a.mux
}

// mayUseUplink checks the DeviceAuthentication capability: the app names
// the tenant whose device certificate it may use.
func (a *AppAPI) mayUseUplink(w http.ResponseWriter, app supervisor.App) bool {
	want := app.Manifest.Capabilities.DeviceAuthentication
	switch tenant := a.Tenant(); {
	case want == "":
		writeError(w, http.StatusForbidden, "the app's manifest does not hold the DeviceAuthentication capability")
	case a.Uplink == nil:
		writeError(w, http.StatusServiceUnavailable, "the agent has no cloud uplink configured (sphere agent --mqtt-broker)")
	case tenant == "":
		writeError(w, http.StatusServiceUnavailable, "the device has no certificate yet; try again after its attestation")
	case tenant != want:
		writeError(w, http.StatusForbidden, fmt.Sprintf("the app's DeviceAuthentication names tenant %s, but the device belongs to tenant %s", want, tenant))
	default:
		return true
	}
	return false
}

func (a *AppAPI) publish(w http.ResponseWriter, r *http.Request, app supervisor.App) {
	if !a.mayUseUplink(w, app) {
		return
	}
	var in PublishRequest
	dec := json.NewDecoder(io.LimitReader(r.Body, 2*MaxPublish))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&in); err != nil {
		writeError(w, http.StatusBadRequest, "the body must be {\"topic\": ..., \"payload\": base64, \"qos\": 0 or 1}: "+err.Error())
		return
	}
	switch {
	case len(in.Payload) > MaxPublish:
		writeError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("payload of %d bytes; at most %d", len(in.Payload), MaxPublish))
		return
	case in.QoS != 0 && in.QoS != 1:
		writeError(w, http.StatusBadRequest, "qos must be 0 or 1")
		return
	}
	err := a.Uplink.Publish(r.Context(), in.Topic, in.Payload, byte(in.QoS))
	switch {
	case errors.Is(err, uplink.ErrOutboxFull), errors.Is(err, uplink.ErrNotConnected), errors.Is(err, uplink.ErrClosed):
		writeError(w, http.StatusServiceUnavailable, err.Error())
	case err != nil:
		writeError(w, http.StatusBadRequest, err.Error())
	default:
		// With QoS 1 the message is on disk: the agent sends it until the
		// broker acknowledges it, across reconnects and restarts.
		w.WriteHeader(http.StatusNoContent)
	}
}

// messages streams the messages matching ?filter= as JSON lines until the
// app hangs up.
func (a *AppAPI) messages(w http.ResponseWriter, r *http.Request, app supervisor.App) {
	if !a.mayUseUplink(w, app) {
		return
	}
	filter := r.URL.Query().Get("filter")
	hub, err := a.topic(r.Context(), filter)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	ch, cancel := hub.listen()
	defer cancel()
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.WriteHeader(http.StatusOK)
	flusher, _ := w.(http.Flusher)
	if flusher != nil {
		flusher.Flush()
	}
	enc := json.NewEncoder(w)
	for {
		select {
		case <-r.Context().Done():
			return
		case m := <-ch:
			if err := enc.Encode(m); err != nil {
				return
			}
			if flusher != nil {
				flusher.Flush()
			}
		}
	}
}

// topic subscribes the uplink to filter once, for every app that streams it.
func (a *AppAPI) topic(ctx context.Context, filter string) (*topicHub, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if h, ok := a.hub[filter]; ok {
		return h, nil
	}
	h := &topicHub{listeners: map[*listener]struct{}{}}
	if err := a.Uplink.Subscribe(ctx, filter, h.deliver); err != nil {
		return nil, err
	}
	a.hub[filter] = h
	return h, nil
}

// topicHub hands one subscription's messages to every app streaming it.
// A stream that falls behind by more than its buffer loses messages and is
// told how many.
type topicHub struct {
	mu        sync.Mutex
	listeners map[*listener]struct{}
}

type listener struct {
	ch      chan Message
	dropped int
}

func (h *topicHub) listen() (<-chan Message, func()) {
	l := &listener{ch: make(chan Message, 64)}
	h.mu.Lock()
	h.listeners[l] = struct{}{}
	h.mu.Unlock()
	return l.ch, func() {
		h.mu.Lock()
		delete(h.listeners, l)
		h.mu.Unlock()
	}
}

func (h *topicHub) deliver(topic string, payload []byte) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for l := range h.listeners {
		select {
		case l.ch <- Message{Topic: topic, Payload: payload, Dropped: l.dropped}:
			l.dropped = 0
		default:
			l.dropped++
		}
	}
}
