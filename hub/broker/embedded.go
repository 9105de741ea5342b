package broker

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/diemdanh/diemdanh/hub/ingest"
	"github.com/diemdanh/diemdanh/hub/store"
	"github.com/diemdanh/diemdanh/models/conf"
	"github.com/diemdanh/diemdanh/models/wire"
)

// Embedded is the in-process mochi-mqtt broker.
//
// Durability: a gate deletes an event from its outbox when it receives the
// PUBACK, so the PUBACK must leave only after the event is committed. In
// mochi v2.7.9 Server.processPublish runs the OnPublish hooks and only then
// builds and writes the PUBACK, on the client's read goroutine. Our hook
// hands a QoS 1 event to the ingester (group commit) and returns
// packets.ErrRejectPacket, so mochi sends no PUBACK at all; the hook's
// completion callback writes the PUBACK itself, through a per-client
// acker goroutine (in arrival order), after the transaction committed. This
// keeps the client's read loop free to pipeline more messages into the same
// batch. If the commit fails, the client is disconnected without PUBACK and
// resends on reconnect (duplicates are ignored by event_id).
// Unrecognised-face messages are acknowledged the same way. Neither is
// forwarded to subscribers (the hub is their only consumer). Status and
// heartbeat messages flow normally (retained status) and are applied to
// the gates table asynchronously, as is the last will.
type Embedded struct {
	cfg  Config
	log  *slog.Logger
	db   *store.DB
	srv  *mqtt.Server
	tcp  *listeners.TCP
	hook *gateHook

	stopWatch context.CancelFunc
	watchDone chan struct{}
}

// NewEmbedded builds the broker; Start opens the listener.
func NewEmbedded(cfg Config, db *store.DB, ing *ingest.Ingester, log *slog.Logger, now func() time.Time) (*Embedded, error) {
	if err := cfg.Validate("broker."); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	var tlsCfg *tls.Config
	if cfg.TLSCert != "" {
		cert, err := tls.LoadX509KeyPair(cfg.TLSCert, cfg.TLSKey)
		if err != nil {
			return nil, fmt.Errorf("broker: tls: %w", err)
		}
		tlsCfg = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	}
	caps := mqtt.NewDefaultServerCapabilities()
	caps.MaximumPacketSize = uint32(cfg.MaxPacketBytes)
	// No topic aliases: a gate names its topic in every PUBLISH, so the
	// ACL always sees the topic that is published (MQTT 5 aliases refused).
	caps.TopicAliasMaximum = 0
	srv := mqtt.New(&mqtt.Options{InlineClient: true, Capabilities: caps,
		Logger: slog.New(levelFloor{log.Handler(), slog.LevelWarn}).With("component", "mqtt")})
	h := &gateHook{srv: srv, auth: NewAuthenticator(db, cfg.Lockout, now), ing: ing, log: log}
	if err := srv.AddHook(h, nil); err != nil {
		return nil, fmt.Errorf("broker: hook: %w", err)
	}
	tcp := listeners.NewTCP(listeners.Config{ID: "gates", Address: cfg.Listen, TLSConfig: tlsCfg})
	if err := srv.AddListener(tcp); err != nil {
		return nil, fmt.Errorf("broker: listen %s: %w", cfg.Listen, err)
	}
	return &Embedded{cfg: cfg, log: log, db: db, srv: srv, tcp: tcp, hook: h}, nil
}

// Start serves in the background.
func (e *Embedded) Start() error {
	if err := e.srv.Serve(); err != nil {
		return fmt.Errorf("broker: serve: %w", err)
	}
	e.log.Info("mqtt broker listening", "addr", e.tcp.Address(), "tls", e.cfg.TLSCert != "")
	ctx, cancel := context.WithCancel(context.Background())
	e.stopWatch, e.watchDone = cancel, make(chan struct{})
	go func() {
		defer close(e.watchDone)
		e.watchSessions(ctx)
	}()
	return nil
}

// Addr is the listener's address (useful with port 0).
func (e *Embedded) Addr() string { return e.tcp.Address() }

// Close stops the listener and disconnects every client.
func (e *Embedded) Close() error {
	if e.stopWatch != nil {
		e.stopWatch()
		<-e.watchDone
	}
	return e.srv.Close()
}

// Announce publishes a retained gallery announcement for the school.
func (e *Embedded) Announce(_ context.Context, schoolID string, a wire.GalleryAnnounce) error {
	if !wire.ValidID(schoolID) {
		return conf.Fieldf("school_id", "invalid %q", schoolID)
	}
	b, err := json.Marshal(a)
	if err != nil {
		return fmt.Errorf("broker: announce: %w", err)
	}
	if err := e.srv.Publish(wire.GalleryTopic(schoolID), b, true, 1); err != nil {
		return fmt.Errorf("broker: announce: %w", err)
	}
	return nil
}

// gateHook admits gates, enforces the ACL and feeds ingest.
type gateHook struct {
	mqtt.HookBase
	srv  *mqtt.Server
	auth *Authenticator
	ing  *ingest.Ingester
	log  *slog.Logger

	clients sync.Map // *mqtt.Client → *session
}

type session struct {
	gate Gate
	acks chan uint16 // packet IDs to PUBACK, in commit order
	stop chan struct{}
	once sync.Once
}

func (h *gateHook) ID() string { return "diemdanh-gates" }

func (h *gateHook) Provides(b byte) bool {
	return bytes.Contains([]byte{mqtt.OnConnect, mqtt.OnConnectAuthenticate, mqtt.OnACLCheck, mqtt.OnPublish,
		mqtt.OnDisconnect, mqtt.OnWillSent}, []byte{b})
}

// OnConnect admits a gate before mochi looks at its session: the
// credentials, then its last will under the same rule as a publish
// (Gate.MayPublish), and binds the client ID to the gate's username, so
// that one gate's credentials never take over another gate's session. A
// refusal answers CONNACK with its reason and closes the connection: the
// will of a refused client is never sent.
func (h *gateHook) OnConnect(cl *mqtt.Client, pk packets.Packet) error {
	g, code, err := h.admit(cl, pk)
	if err != nil {
		h.log.Warn("gate connection refused", "username", string(pk.Connect.Username), "client_id", cl.ID,
			"remote", cl.Net.Remote, "err", err)
		_ = h.srv.SendConnack(cl, connackCode(cl, code), false, nil)
		return err
	}
	cl.ID = g.Username
	s := &session{gate: g, acks: make(chan uint16, 1<<16), stop: make(chan struct{})}
	if old, loaded := h.clients.Swap(cl, s); loaded {
		old.(*session).close()
	}
	go s.ackLoop(cl)
	return nil
}

// connackCode maps a refusal to MQTT 3's return codes where mochi does not
// (it would send MQTT 3 clients 0x87, which paho reads as success).
func connackCode(cl *mqtt.Client, code packets.Code) packets.Code {
	if cl.Properties.ProtocolVersion < 5 && code == packets.ErrNotAuthorized {
		return packets.Err3NotAuthorized
	}
	return code
}

func (h *gateHook) admit(cl *mqtt.Client, pk packets.Packet) (Gate, packets.Code, error) {
	g, err := h.auth.Check(context.Background(), string(pk.Connect.Username), string(pk.Connect.Password), cl.Net.Remote)
	switch {
	case errors.Is(err, ErrBadCredentials) || errors.Is(err, ErrLockedOut):
		return g, packets.ErrBadUsernameOrPassword, err
	case err != nil:
		return g, packets.ErrServerUnavailable, err
	}
	if pk.Connect.WillFlag {
		if err := g.MayPublish(pk.Connect.WillTopic, pk.Connect.WillRetain); err != nil {
			return g, packets.ErrNotAuthorized, fmt.Errorf("last will: %w", err)
		}
	}
	return g, packets.CodeSuccess, nil
}

// OnConnectAuthenticate lets in exactly the clients OnConnect admitted.
func (h *gateHook) OnConnectAuthenticate(cl *mqtt.Client, _ packets.Packet) bool {
	return h.session(cl) != nil
}

func (s *session) close() { s.once.Do(func() { close(s.stop) }) }

func (s *session) ackLoop(cl *mqtt.Client) {
	for {
		select {
		case <-s.stop:
			return
		case id := <-s.acks:
			ack := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Puback}, PacketID: id}
			if err := cl.WritePacket(ack); err != nil {
				return
			}
		}
	}
}

func (h *gateHook) session(cl *mqtt.Client) *session {
	if v, ok := h.clients.Load(cl); ok {
		return v.(*session)
	}
	return nil
}

func (h *gateHook) OnACLCheck(cl *mqtt.Client, topic string, write bool) bool {
	s := h.session(cl)
	if s == nil {
		return false
	}
	if write {
		return s.gate.CanPublish(topic)
	}
	return s.gate.CanRead(topic)
}

func (h *gateHook) OnDisconnect(cl *mqtt.Client, _ error, _ bool) {
	if v, ok := h.clients.LoadAndDelete(cl); ok {
		v.(*session).close()
	}
}

// OnWillSent ingests a will; OnConnect admitted its topic and retain flag.
func (h *gateHook) OnWillSent(cl *mqtt.Client, pk packets.Packet) {
	h.ing.Submit(ingest.Message{Topic: pk.TopicName, Payload: pk.Payload, ClientID: cl.ID}, nil)
}

// kick disconnects a client with a reason (MQTT 3 has no server DISCONNECT).
func (h *gateHook) kick(cl *mqtt.Client, code packets.Code) {
	if cl.Properties.ProtocolVersion >= 5 {
		_ = h.srv.DisconnectClient(cl, code)
		return
	}
	cl.Stop(code)
}

func (h *gateHook) OnPublish(cl *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	if cl.Net.Inline {
		return pk, nil
	}
	s := h.session(cl)
	if s == nil { // cannot happen after auth; refuse rather than guess
		return pk, packets.ErrRejectPacket
	}
	// The ACL hook saw the topic before any alias was applied; this is the
	// whole rule on the topic that will be published, with its retain flag.
	if err := s.gate.MayPublish(pk.TopicName, pk.FixedHeader.Retain); err != nil {
		h.log.Warn("gate publish refused; disconnecting", "gate", s.gate.ID, "err", err)
		h.kick(cl, packets.ErrNotAuthorized)
		return pk, packets.ErrRejectPacket
	}
	msg := ingest.Message{Topic: pk.TopicName, Payload: pk.Payload, ClientID: cl.ID}
	_, _, kind, _ := wire.ParseGateTopic(pk.TopicName)
	if kind == wire.TopicKindStatus || kind == wire.TopicKindHeartbeat {
		h.ing.Submit(msg, nil) // status/heartbeat: normal flow, applied asynchronously
		return pk, nil
	}
	// Events and unrecognised faces: committed before the PUBACK.
	if pk.FixedHeader.Qos == 0 {
		h.ing.Submit(msg, nil)
		return pk, packets.ErrRejectPacket
	}
	if pk.FixedHeader.Qos == 2 { // gates use QoS 1; QoS 2 is committed inline, then mochi runs its PUBREC flow
		if _, err := h.ing.Handle(context.Background(), msg); err != nil {
			cl.Stop(fmt.Errorf("broker: commit failed: %w", err))
			return pk, packets.ErrRejectPacket
		}
		return pk, packets.CodeSuccessIgnore // acknowledged, not forwarded
	}
	h.submitEvent(cl, s, msg, pk.PacketID)
	return pk, packets.ErrRejectPacket
}

// submitEvent hands a QoS 1 event to the ingester; its PUBACK leaves
// after the commit, through the session's acker.
func (h *gateHook) submitEvent(cl *mqtt.Client, s *session, msg ingest.Message, id uint16) {
	h.ing.Submit(msg, func(_ ingest.Result, err error) {
		if err != nil {
			h.log.Error("event not committed; disconnecting gate so it resends", "gate", s.gate.ID, "err", err)
			cl.Stop(fmt.Errorf("broker: commit failed: %w", err))
			return
		}
		select {
		case s.acks <- id:
		case <-s.stop:
		}
	})
}

// levelFloor drops records below min (mochi is chatty at info).
type levelFloor struct {
	slog.Handler
	min slog.Level
}

func (l levelFloor) Enabled(ctx context.Context, lv slog.Level) bool {
	return lv >= l.min && l.Handler.Enabled(ctx, lv)
}
func (l levelFloor) WithAttrs(a []slog.Attr) slog.Handler {
	return levelFloor{l.Handler.WithAttrs(a), l.min}
}
func (l levelFloor) WithGroup(n string) slog.Handler {
	return levelFloor{l.Handler.WithGroup(n), l.min}
}
