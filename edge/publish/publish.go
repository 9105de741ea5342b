// Package publish drains the gate's durable outbox to the MQTT broker.
//
// It speaks MQTT 3.1.1 through paho with QoS 1, a persistent session
// (CleanSession=false) under a fixed client ID, username/password and TLS
// when configured. The outbox's messages (events, and unrecognised faces on
// their own topic) are sent in outbox order and a row is deleted only
// after the broker's PUBACK; after a reconnect or a restart whatever is
// still in the outbox is sent again, in order. Delivery is therefore
// at-least-once; the event_id (capture_id) lets the hub drop redeliveries.
//
// The gate's retained status topic carries {"online":true} while connected
// and the broker publishes the same message with online=false (the MQTT
// last will) when the gate vanishes.
package publish

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/diemdanh/diemdanh/edge/store"
	"github.com/diemdanh/diemdanh/models/conf"
	"github.com/diemdanh/diemdanh/models/wire"
	mqtt "github.com/eclipse/paho.mqtt.golang"
)

// Config configures the publisher. YAML keys are those of the "mqtt"
// section of the edge config.
type Config struct {
	Broker   string `yaml:"broker"`    // tcp://host:1883, ssl://host:8883 (also tls://, mqtts://)
	ClientID string `yaml:"client_id"` // fixed; defaults to the gate ID
	Username string `yaml:"username"`
	Password string `yaml:"password"`
	CAFile   string `yaml:"ca_file"`   // PEM roots for the broker's certificate (TLS)
	CertFile string `yaml:"cert_file"` // optional client certificate (mutual TLS)
	KeyFile  string `yaml:"key_file"`
	// ServerName overrides the TLS server name (defaults to the broker host).
	ServerName string `yaml:"server_name"`

	SchoolID string `yaml:"school_id"`
	GateID   string `yaml:"gate_id"`

	KeepAlive      time.Duration `yaml:"keep_alive"`
	ConnectTimeout time.Duration `yaml:"connect_timeout"`
	AckTimeout     time.Duration `yaml:"ack_timeout"` // wait for a PUBACK before reconnecting
	RetryMin       time.Duration `yaml:"retry_min"`   // reconnect backoff, doubled up to RetryMax
	RetryMax       time.Duration `yaml:"retry_max"`
	Window         int           `yaml:"window"` // events in flight at once (still acked in order)
	Poll           time.Duration `yaml:"poll"`   // outbox poll when nobody calls Notify

	// OnAck is called after an event's PUBACK has been received and its
	// row deleted (used by the benchmark to measure latency); not for
	// unrecognised faces.
	OnAck func(eventID string, ackedAt time.Time) `yaml:"-"`
	// OnGalleryAnnounce, if set, subscribes to the school's retained
	// gallery topic and is called with each announcement.
	OnGalleryAnnounce func(wire.GalleryAnnounce) `yaml:"-"`
	// ConnectHeartbeat, if set, gives the heartbeat sent right after each
	// connection's online status and before the outbox is drained, so
	// the hub learns the backlog a gate brings back from an outage (its
	// outbox_depth) at once rather than at the next periodic heartbeat.
	ConnectHeartbeat func() wire.Heartbeat `yaml:"-"`
}

// Default returns the defaults (broker on localhost without TLS).
func Default() Config {
	return Config{
		Broker:         "tcp://127.0.0.1:1883",
		KeepAlive:      30 * time.Second,
		ConnectTimeout: 10 * time.Second,
		AckTimeout:     10 * time.Second,
		RetryMin:       500 * time.Millisecond,
		RetryMax:       30 * time.Second,
		Window:         16,
		Poll:           time.Second,
	}
}

// Validate names the first bad field (as mqtt.<key>).
func (c Config) Validate() error {
	u, err := url.Parse(c.Broker)
	switch {
	case c.Broker == "" || err != nil || u.Host == "":
		return conf.Fieldf("mqtt.broker", "must be a URL like tcp://host:1883, got %q", c.Broker)
	case !knownScheme(u.Scheme):
		return conf.Fieldf("mqtt.broker", "scheme %q not supported (tcp, mqtt, ssl, tls, mqtts)", u.Scheme)
	case !wire.ValidID(c.SchoolID):
		return conf.Fieldf("mqtt.school_id", "invalid %q", c.SchoolID)
	case !wire.ValidID(c.GateID):
		return conf.Fieldf("mqtt.gate_id", "invalid %q", c.GateID)
	case c.ClientID != "" && len(c.ClientID) > 64:
		return conf.Fieldf("mqtt.client_id", "at most 64 characters")
	case c.Password != "" && c.Username == "":
		return conf.Fieldf("mqtt.username", "is required when a password is set")
	case c.CAFile != "" && !fileExists(c.CAFile):
		return conf.Fieldf("mqtt.ca_file", "cannot read %s", c.CAFile)
	case (c.CertFile == "") != (c.KeyFile == ""):
		return conf.Fieldf("mqtt.cert_file", "cert_file and key_file go together")
	case c.KeepAlive < time.Second:
		return conf.Fieldf("mqtt.keep_alive", "must be at least 1s")
	case c.ConnectTimeout <= 0:
		return conf.Fieldf("mqtt.connect_timeout", "must be positive")
	case c.AckTimeout <= 0:
		return conf.Fieldf("mqtt.ack_timeout", "must be positive")
	case c.RetryMin <= 0 || c.RetryMax < c.RetryMin:
		return conf.Fieldf("mqtt.retry_min", "need 0 < retry_min <= retry_max")
	case c.Window < 1 || c.Window > 1000:
		return conf.Fieldf("mqtt.window", "must be 1..1000, got %d", c.Window)
	case c.Poll <= 0:
		return conf.Fieldf("mqtt.poll", "must be positive")
	}
	return nil
}

func knownScheme(s string) bool {
	switch s {
	case "tcp", "mqtt", "ssl", "tls", "mqtts", "tcps":
		return true
	}
	return false
}

func tlsScheme(s string) bool { return s == "ssl" || s == "tls" || s == "mqtts" || s == "tcps" }

func fileExists(p string) bool { _, err := os.Stat(p); return err == nil }

// Publisher drains the outbox. Create it with New, run it with Run.
type Publisher struct {
	cfg    Config
	db     *store.DB
	log    *slog.Logger
	now    func() time.Time
	opts   *mqtt.ClientOptions
	cmu    sync.Mutex  // guards client
	client mqtt.Client // a fresh client per connection (paho discourages reusing one after Disconnect)
	notify chan struct{}
	lost   chan error
	conn   atomic.Bool
	sent   atomic.Int64 // events acknowledged
	sentUn atomic.Int64 // unrecognised faces acknowledged
	mu     sync.Mutex   // serialises status publishes
}

// New checks the config and builds the client; nothing connects until Run.
func New(cfg Config, db *store.DB, log *slog.Logger, now func() time.Time) (*Publisher, error) {
	if cfg.ClientID == "" {
		cfg.ClientID = cfg.GateID
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if db == nil {
		return nil, errors.New("publish: nil store")
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if now == nil {
		now = time.Now
	}
	p := &Publisher{cfg: cfg, db: db, log: log, now: now, notify: make(chan struct{}, 1), lost: make(chan error, 1)}
	opts := mqtt.NewClientOptions().
		AddBroker(cfg.Broker).
		SetClientID(cfg.ClientID).
		SetCleanSession(false).
		SetAutoReconnect(false). // Run reconnects with its own capped backoff
		SetConnectRetry(false).
		SetKeepAlive(cfg.KeepAlive).
		SetConnectTimeout(cfg.ConnectTimeout).
		SetWriteTimeout(cfg.AckTimeout).
		SetOrderMatters(true).
		// MQTT 3.1.1 only: otherwise paho retries a refused login with 3.1,
		// and each wrong password counts twice towards the hub's lockout.
		SetProtocolVersion(4).
		SetConnectionLostHandler(func(_ mqtt.Client, err error) {
			select {
			case p.lost <- err:
			default:
			}
		})
	if cfg.Username != "" {
		opts.SetUsername(cfg.Username).SetPassword(cfg.Password)
	}
	u, _ := url.Parse(cfg.Broker)
	if tlsScheme(u.Scheme) {
		tc, err := tlsConfig(cfg, u.Hostname())
		if err != nil {
			return nil, err
		}
		opts.SetTLSConfig(tc)
	}
	will, _ := json.Marshal(wire.Status{Schema: wire.SchemaVersion, GateID: cfg.GateID, Online: false})
	opts.SetBinaryWill(wire.StatusTopic(cfg.SchoolID, cfg.GateID), will, 1, true)
	if cfg.OnGalleryAnnounce != nil {
		topic := wire.GalleryTopic(cfg.SchoolID)
		opts.SetOnConnectHandler(func(c mqtt.Client) {
			c.Subscribe(topic, 1, func(_ mqtt.Client, m mqtt.Message) {
				a, err := wire.DecodeGalleryAnnounce(m.Payload())
				if err != nil {
					p.log.Warn("bad gallery announcement ignored", "topic", m.Topic(), "err", err)
					return
				}
				cfg.OnGalleryAnnounce(*a)
			})
		})
	}
	p.opts = opts
	p.client = mqtt.NewClient(opts)
	return p, nil
}

func tlsConfig(cfg Config, host string) (*tls.Config, error) {
	tc := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: host}
	if cfg.ServerName != "" {
		tc.ServerName = cfg.ServerName
	}
	if cfg.CAFile != "" {
		pem, err := os.ReadFile(cfg.CAFile)
		if err != nil {
			return nil, conf.Fieldf("mqtt.ca_file", "%v", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, conf.Fieldf("mqtt.ca_file", "no PEM certificate in %s", cfg.CAFile)
		}
		tc.RootCAs = pool
	}
	if cfg.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(cfg.CertFile, cfg.KeyFile)
		if err != nil {
			return nil, conf.Fieldf("mqtt.cert_file", "%v", err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	return tc, nil
}

// Notify wakes the drain loop (call it after enqueueing an event).
func (p *Publisher) Notify() {
	select {
	case p.notify <- struct{}{}:
	default:
	}
}

// Connected reports whether the broker connection is up.
func (p *Publisher) Connected() bool { return p.conn.Load() }

// Sent is the number of events acknowledged by the broker since start.
func (p *Publisher) Sent() int64 { return p.sent.Load() }

// SentUnrecognised is the number of unrecognised faces acknowledged by the
// broker since start.
func (p *Publisher) SentUnrecognised() int64 { return p.sentUn.Load() }

// Run connects, drains the outbox and reconnects with capped backoff until
// ctx ends; then it publishes the offline status and disconnects. It
// returns nil on a clean shutdown.
func (p *Publisher) Run(ctx context.Context) error {
	backoff := p.cfg.RetryMin
	down := false // an outage has been logged
	for {
		err := p.connect(ctx)
		if err == nil {
			if down {
				p.log.Info("mqtt broker connection recovered", "broker", p.cfg.Broker, "outbox_depth", p.db.Depth())
				down = false
			} else {
				p.log.Info("mqtt connected", "broker", p.cfg.Broker, "client_id", p.cfg.ClientID, "outbox_depth", p.db.Depth())
			}
			backoff = p.cfg.RetryMin
			p.connectHeartbeat()
			err = p.serve(ctx)
			p.conn.Store(false)
			if ctx.Err() != nil {
				p.shutdown()
				return nil
			}
			p.cur().Disconnect(0)
		}
		if ctx.Err() != nil {
			return nil
		}
		if !down {
			p.log.Warn("mqtt broker outage; events stay in the outbox", "broker", p.cfg.Broker, "err", err, "outbox_depth", p.db.Depth())
			down = true
		} else {
			p.log.Debug("mqtt reconnect failed", "err", err, "retry_in", backoff)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, p.cfg.RetryMax)
	}
}

func (p *Publisher) connect(ctx context.Context) error {
	select { // drop a stale loss notice from the previous connection
	case <-p.lost:
	default:
	}
	c := mqtt.NewClient(p.opts)
	p.cmu.Lock()
	p.client = c
	p.cmu.Unlock()
	tok := c.Connect()
	select {
	case <-tok.Done():
	case <-ctx.Done():
		return ctx.Err()
	}
	if err := tok.Error(); err != nil {
		return fmt.Errorf("publish: connect %s: %w", p.cfg.Broker, err)
	}
	p.conn.Store(true)
	if err := p.publishStatus(true, p.cfg.AckTimeout); err != nil {
		p.conn.Store(false)
		c.Disconnect(0)
		return err
	}
	return nil
}

func (p *Publisher) publishStatus(online bool, wait time.Duration) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	b, _ := json.Marshal(wire.Status{Schema: wire.SchemaVersion, GateID: p.cfg.GateID, Online: online, At: p.now().UnixMilli()})
	tok := p.cur().Publish(wire.StatusTopic(p.cfg.SchoolID, p.cfg.GateID), 1, true, b)
	if !tok.WaitTimeout(wait) {
		return errors.New("publish: status: no PUBACK")
	}
	if err := tok.Error(); err != nil {
		return fmt.Errorf("publish: status: %w", err)
	}
	return nil
}

func (p *Publisher) cur() mqtt.Client {
	p.cmu.Lock()
	defer p.cmu.Unlock()
	return p.client
}

func (p *Publisher) shutdown() {
	if c := p.cur(); c.IsConnectionOpen() {
		if err := p.publishStatus(false, 2*time.Second); err != nil {
			p.log.Warn("offline status not published", "err", err)
		}
		c.Disconnect(250)
	}
	p.log.Info("mqtt publisher stopped", "outbox_depth", p.db.Depth())
}

// serve drains the outbox until the connection is lost or ctx ends.
func (p *Publisher) serve(ctx context.Context) error {
	tick := time.NewTicker(p.cfg.Poll)
	defer tick.Stop()
	for {
		n, err := p.drain(ctx)
		if err != nil {
			return err
		}
		if n > 0 {
			continue // more may be waiting
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case err := <-p.lost:
			return fmt.Errorf("publish: connection lost: %w", err)
		case <-p.notify:
		case <-tick.C:
		}
	}
}

// drain sends up to Window pending messages, each to its kind's topic,
// and deletes each after its PUBACK, in order. It stops at the first
// failure; unacknowledged rows stay and are sent again after reconnecting.
func (p *Publisher) drain(ctx context.Context) (int, error) {
	recs, err := p.db.Pending(ctx, p.cfg.Window)
	if err != nil {
		return 0, err
	}
	if len(recs) == 0 {
		return 0, nil
	}
	c := p.cur()
	toks := make([]mqtt.Token, len(recs))
	for i, r := range recs {
		toks[i] = c.Publish(p.topicOf(r.Kind), 1, false, r.Payload)
	}
	timeout := time.NewTimer(p.cfg.AckTimeout)
	defer timeout.Stop()
	for i, tok := range toks {
		select {
		case <-tok.Done():
		case err := <-p.lost:
			return i, fmt.Errorf("publish: connection lost: %w", err)
		case <-timeout.C:
			return i, fmt.Errorf("publish: no PUBACK for %s within %v", recs[i].EventID, p.cfg.AckTimeout)
		case <-ctx.Done():
			return i, ctx.Err()
		}
		if err := tok.Error(); err != nil {
			return i, fmt.Errorf("publish: %s: %w", recs[i].EventID, err)
		}
		if err := p.db.Ack(context.WithoutCancel(ctx), recs[i].Seq); err != nil {
			return i, err
		}
		if recs[i].Kind == wire.TopicKindUnrecognised {
			p.sentUn.Add(1)
			continue
		}
		p.sent.Add(1)
		if p.cfg.OnAck != nil {
			p.cfg.OnAck(recs[i].EventID, p.now())
		}
	}
	return len(recs), nil
}

// topicOf is the gate's topic for an outbox row of kind: its unrecognised
// topic for unrecognised faces, its events topic for every other row (the
// store writes only these two kinds).
func (p *Publisher) topicOf(kind string) string {
	if kind == wire.TopicKindUnrecognised {
		return wire.UnrecognisedTopic(p.cfg.SchoolID, p.cfg.GateID)
	}
	return wire.EventTopic(p.cfg.SchoolID, p.cfg.GateID)
}

// connectHeartbeat sends ConnectHeartbeat's heartbeat, if any. A failure
// is logged: the drain that follows notices a lost connection itself.
func (p *Publisher) connectHeartbeat() {
	if p.cfg.ConnectHeartbeat == nil {
		return
	}
	hb := p.cfg.ConnectHeartbeat()
	if err := p.PublishHeartbeat(hb); err != nil {
		p.log.Warn("heartbeat after connecting not sent", "err", err)
		return
	}
	p.log.Info("heartbeat sent after connecting", "outbox_depth", hb.OutboxDepth)
}

// PublishHeartbeat sends the gate's metrics (QoS 1, not retained). It
// fails fast when the broker is not connected; heartbeats are not queued.
func (p *Publisher) PublishHeartbeat(hb wire.Heartbeat) error {
	if !p.Connected() {
		return errors.New("publish: heartbeat: not connected")
	}
	if hb.Schema == 0 {
		hb.Schema = wire.SchemaVersion
	}
	if hb.GateID == "" {
		hb.GateID = p.cfg.GateID
	}
	b, err := json.Marshal(hb)
	if err != nil {
		return fmt.Errorf("publish: heartbeat: %w", err)
	}
	tok := p.cur().Publish(wire.HeartbeatTopic(p.cfg.SchoolID, p.cfg.GateID), 1, false, b)
	if !tok.WaitTimeout(p.cfg.AckTimeout) {
		return errors.New("publish: heartbeat: no PUBACK")
	}
	if err := tok.Error(); err != nil {
		return fmt.Errorf("publish: heartbeat: %w", err)
	}
	return nil
}
