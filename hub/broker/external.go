package broker

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/diemdanh/diemdanh/hub/ingest"
	"github.com/diemdanh/diemdanh/hub/store"
	"github.com/diemdanh/diemdanh/models/conf"
	"github.com/diemdanh/diemdanh/models/wire"
)

// GateFilter is the hub's subscription in external mode: every gate topic
// of every school the broker carries.
const GateFilter = wire.TopicRoot + "/+/gate/+/+"

// External consumes gate messages from an existing broker (mosquitto,
// EMQX) through paho: QoS 1, persistent session (CleanSession=false, fixed
// client ID) and auto-ack disabled. A message is acknowledged (msg.Ack)
// only after ingest committed it, so a message the hub did not commit
// (crash, database error) is redelivered by the broker. The broker's own
// ACL must keep gates to their topics (deploy/mosquitto, MosquittoACL);
// ingest still checks that a payload matches its topic.
type External struct {
	cfg    Config
	log    *slog.Logger
	ing    *ingest.Ingester
	client paho.Client
	acks   chan paho.Message
	stop   chan struct{}
	wg     sync.WaitGroup

	mu          sync.Mutex
	outage      bool
	connectedCh chan struct{}
	// connected completes once the first connection is up and paho has
	// re-sent what its session store held (resume). A publish between
	// the two races with resume, which marks every stored publish as a
	// duplicate while the connection may be writing it (paho 1.5.1, the
	// same race as eclipse-paho/paho.mqtt.golang#703 on reconnect).
	connected paho.Token
}

// NewExternal connects to cfg.External.URL and subscribes. It returns
// once the first connection attempt finished; with a broker that is down
// it keeps retrying in the background (one "outage" log line).
func NewExternal(ctx context.Context, cfg Config, ing *ingest.Ingester, log *slog.Logger) (*External, error) {
	if err := cfg.Validate("broker"); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	x := &External{cfg: cfg, log: log, ing: ing, acks: make(chan paho.Message, 1<<16), stop: make(chan struct{}),
		connectedCh: make(chan struct{})}
	pw := cfg.External.Password
	conf.EnvOverride(&pw, "DIEMDANH_BROKER_PASSWORD")
	o := paho.NewClientOptions().AddBroker(cfg.External.URL).SetClientID(cfg.External.ClientID).
		SetUsername(cfg.External.Username).SetPassword(pw).
		SetCleanSession(false).SetAutoAckDisabled(true).SetOrderMatters(false).
		SetAutoReconnect(true).SetConnectRetry(true).SetConnectRetryInterval(time.Second).
		SetMaxReconnectInterval(30 * time.Second).SetKeepAlive(30 * time.Second).SetResumeSubs(true)
	if cfg.External.CAFile != "" {
		pem, err := os.ReadFile(cfg.External.CAFile)
		if err != nil {
			return nil, fmt.Errorf("broker: ca file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, conf.Fieldf("broker.external.ca_file", "no PEM certificates in %s", cfg.External.CAFile)
		}
		o.SetTLSConfig(&tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12})
	}
	var once sync.Once
	o.SetOnConnectHandler(func(c paho.Client) {
		// Subscribing again on every connect is harmless with a persistent
		// session and covers a broker that lost its state.
		tok := c.Subscribe(GateFilter, 1, x.onMessage)
		if tok.WaitTimeout(10*time.Second) && tok.Error() == nil {
			x.setOutage(false)
		} else {
			log.Error("external broker: subscribe failed", "err", tok.Error())
		}
		once.Do(func() { close(x.connectedCh) })
	})
	o.SetConnectionLostHandler(func(_ paho.Client, err error) { x.setOutage(true, "err", err) })
	// Messages delivered before the subscription callback is registered
	// (queued in the persistent session) go through the default handler.
	o.SetDefaultPublishHandler(x.onMessage)
	x.client = paho.NewClient(o)
	x.connected = x.client.Connect()
	x.wg.Add(1)
	go x.ackLoop()
	wait := time.NewTimer(10 * time.Second)
	defer wait.Stop()
	select {
	case <-x.connectedCh:
		select { // subscribed; resume follows at once
		case <-x.connected.Done():
		case <-wait.C:
		case <-ctx.Done():
		}
	case <-wait.C:
		x.setOutage(true, "err", "no connection yet, retrying")
	case <-ctx.Done():
	}
	return x, nil
}

func (x *External) setOutage(down bool, kv ...any) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if down && !x.outage {
		x.log.Warn("external broker outage", append([]any{"url", x.cfg.External.URL}, kv...)...)
	} else if !down && x.outage {
		x.log.Info("external broker recovered", "url", x.cfg.External.URL)
	}
	x.outage = down
}

func (x *External) onMessage(_ paho.Client, m paho.Message) {
	x.ing.Submit(ingest.Message{Topic: m.Topic(), Payload: m.Payload()}, func(_ ingest.Result, err error) {
		if err != nil {
			// Not committed: no ack, so the broker redelivers it (after reconnect).
			x.log.Error("external: message not committed; it will be redelivered", "topic", m.Topic(), "err", err)
			return
		}
		select {
		case x.acks <- m:
		case <-x.stop:
		}
	})
}

// ackLoop sends acknowledgements off the commit goroutine.
func (x *External) ackLoop() {
	defer x.wg.Done()
	for {
		select {
		case m := <-x.acks:
			m.Ack()
		case <-x.stop:
			return
		}
	}
}

// Connected reports whether the client is connected now.
func (x *External) Connected() bool { return x.client.IsConnectionOpen() }

// Addr is the broker URL.
func (x *External) Addr() string { return x.cfg.External.URL }

// Announce publishes the retained gallery announcement (QoS 1).
func (x *External) Announce(ctx context.Context, schoolID string, a wire.GalleryAnnounce) error {
	if !wire.ValidID(schoolID) {
		return conf.Fieldf("school_id", "invalid %q", schoolID)
	}
	b, err := json.Marshal(a)
	if err != nil {
		return fmt.Errorf("broker: announce: %w", err)
	}
	// Not between the first connection and paho's resume (see connected).
	// While still connecting, paho stores the publish and sends it once
	// connected, which does not race.
	select {
	case <-x.connected.Done():
	case <-ctx.Done():
		if x.client.IsConnectionOpen() {
			return fmt.Errorf("broker: announce: connection still resuming: %w", ctx.Err())
		}
	}
	tok := x.client.Publish(wire.GalleryTopic(schoolID), 1, true, b)
	select {
	case <-tok.Done():
		if err := tok.Error(); err != nil {
			return fmt.Errorf("broker: announce: %w", err)
		}
		return nil
	case <-ctx.Done():
		return fmt.Errorf("broker: announce: %w", ctx.Err())
	}
}

// Close sends the pending acknowledgements and disconnects. Messages that
// were not committed yet stay unacknowledged in the broker's session.
func (x *External) Close() error {
	// Flush acks already queued.
	for done := false; !done; {
		select {
		case m := <-x.acks:
			m.Ack()
		default:
			done = true
		}
	}
	close(x.stop)
	x.wg.Wait()
	x.client.Disconnect(250)
	return nil
}

// Hub is the MQTT side of the hub in either mode.
type Hub interface {
	Announcer
	// Addr is the embedded listener address or the external broker URL.
	Addr() string
	Close() error
}

// Start builds and starts the configured mode, feeding ing.
func Start(ctx context.Context, cfg Config, db *store.DB, ing *ingest.Ingester, log *slog.Logger, now func() time.Time) (Hub, error) {
	if cfg.Mode == ModeExternal {
		return NewExternal(ctx, cfg, ing, log)
	}
	e, err := NewEmbedded(cfg, db, ing, log, now)
	if err != nil {
		return nil, err
	}
	if err := e.Start(); err != nil {
		return nil, err
	}
	return e, nil
}
