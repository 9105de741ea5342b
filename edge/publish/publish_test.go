package publish

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/diemdanh/diemdanh/edge/publish/brokertest"
	"github.com/diemdanh/diemdanh/edge/store"
	"github.com/diemdanh/diemdanh/models/conf"
	"github.com/diemdanh/diemdanh/models/match"
	"github.com/diemdanh/diemdanh/models/wire"
	pmqtt "github.com/eclipse/paho.mqtt.golang"
)

const school, gate = "thcs-a", "gate-1"

func newEvent(i int) *wire.Event {
	return &wire.Event{Schema: wire.SchemaVersion, EventID: wire.NewEventID(), SchoolID: school, GateID: gate,
		Direction: wire.DirectionIn, StudentID: wire.UnknownStudent,
		CapturedAt: time.Date(2026, 9, 5, 7, 0, 0, 0, time.UTC).UnixMilli() + int64(i), Model: match.DlibResNetV1}
}

func openStore(t *testing.T) *store.DB {
	t.Helper()
	db, err := store.Open(filepath.Join(t.TempDir(), "edge.db"), store.Options{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func testConfig(addr string) Config {
	c := Default()
	c.Broker = "tcp://" + addr
	c.SchoolID, c.GateID = school, gate
	c.RetryMin, c.RetryMax = 50*time.Millisecond, 300*time.Millisecond
	c.AckTimeout = 3 * time.Second
	c.ConnectTimeout = 2 * time.Second
	return c
}

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(b []byte) (int, error) { w.t.Log(string(b)); return len(b), nil }

// run starts p.Run and returns a stop function that waits for it.
func run(t *testing.T, p *Publisher) func() {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("Run: %v", err)
				}
			case <-time.After(10 * time.Second):
				t.Error("Run did not return after cancel")
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// subscriber is a real MQTT client with a persistent session collecting
// payloads per topic.
type subscriber struct {
	mu     sync.Mutex
	msgs   map[string][][]byte
	topics []string // every message's topic, in arrival order
	c      pmqtt.Client
}

var subN atomic.Int32

func subscribe(t *testing.T, addr, filter string) *subscriber {
	s := &subscriber{msgs: map[string][][]byte{}}
	ready := make(chan struct{}, 1)
	id := fmt.Sprintf("test-sub-%d", subN.Add(1))
	o := pmqtt.NewClientOptions().AddBroker("tcp://" + addr).SetClientID(id).SetCleanSession(false).SetAutoReconnect(true).
		SetConnectRetry(true).SetConnectRetryInterval(100 * time.Millisecond).SetMaxReconnectInterval(200 * time.Millisecond).
		SetOrderMatters(true)
	o.SetOnConnectHandler(func(c pmqtt.Client) {
		c.Subscribe(filter, 1, func(_ pmqtt.Client, m pmqtt.Message) {
			s.mu.Lock()
			s.msgs[m.Topic()] = append(s.msgs[m.Topic()], append([]byte(nil), m.Payload()...))
			s.topics = append(s.topics, m.Topic())
			s.mu.Unlock()
		}).Wait()
		select {
		case ready <- struct{}{}:
		default:
		}
	})
	s.c = pmqtt.NewClient(o)
	if tok := s.c.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("subscriber connect: %v", tok.Error())
	}
	select {
	case <-ready:
	case <-time.After(5 * time.Second):
		t.Fatal("subscription not acknowledged")
	}
	t.Cleanup(func() { s.c.Disconnect(0) })
	return s
}

func (s *subscriber) get(topic string) [][]byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([][]byte(nil), s.msgs[topic]...)
}

func TestDrainInOrderDeletesOnlyAfterPUBACK(t *testing.T) {
	addr, _ := brokertest.FreePort()
	rec, _ := brokertest.NewRecorder("")
	srv, err := brokertest.StartMochi(addr, rec, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { brokertest.CloseMochi(srv, 3*time.Second) })
	sub := subscribe(t, addr, wire.TopicRoot+"/#")
	db := openStore(t)
	var want []string
	for i := 0; i < 60; i++ {
		ev := newEvent(i)
		want = append(want, ev.EventID)
		if err := db.Enqueue(context.Background(), ev); err != nil {
			t.Fatal(err)
		}
	}
	var mu sync.Mutex
	var acked []string
	cfg := testConfig(addr)
	cfg.Window = 7
	cfg.OnAck = func(id string, _ time.Time) { mu.Lock(); acked = append(acked, id); mu.Unlock() }
	p, err := New(cfg, db, testLogger(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	run(t, p)
	topic := wire.EventTopic(school, gate)
	waitFor(t, 10*time.Second, "60 events at the subscriber", func() bool { return len(sub.get(topic)) >= 60 })
	waitFor(t, 5*time.Second, "empty outbox", func() bool { return db.Depth() == 0 })
	if !p.Connected() {
		t.Fatal("Connected() false while connected")
	}
	got := sub.get(topic)
	for i, b := range got[:60] {
		ev, err := wire.DecodeEvent(b)
		if err != nil {
			t.Fatalf("payload %d: %v", i, err)
		}
		if ev.EventID != want[i] {
			t.Fatalf("message %d is %s, want %s (out of order)", i, ev.EventID, want[i])
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if len(acked) != 60 || acked[0] != want[0] || acked[59] != want[59] {
		t.Fatalf("OnAck called %d times", len(acked))
	}
	// Retained online status.
	st := sub.get(wire.StatusTopic(school, gate))
	if len(st) == 0 {
		t.Fatal("no status message")
	}
	var s wire.Status
	if err := json.Unmarshal(st[len(st)-1], &s); err != nil || !s.Online || s.GateID != gate {
		t.Fatalf("status %s: %v", st[len(st)-1], err)
	}
}

// TestBrokerRestartMidStream restarts the embedded broker (same port, all
// broker state lost) while events are being enqueued. Asserted: every
// enqueued event_id reaches the broker (recorded in OnPublish, before the
// PUBACK) at least once, so after dedupe by event_id the received set
// equals the sent set; the outbox ends empty. Raw redeliveries are
// counted and logged, not failed: QoS 1 is at-least-once by design.
func TestBrokerRestartMidStream(t *testing.T) {
	addr, _ := brokertest.FreePort()
	rec, _ := brokertest.NewRecorder("")
	srv, err := brokertest.StartMochi(addr, rec, nil)
	if err != nil {
		t.Fatal(err)
	}
	db := openStore(t)
	p, err := New(testConfig(addr), db, testLogger(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	run(t, p)
	waitFor(t, 5*time.Second, "connection", p.Connected)
	sent := map[string]bool{}
	ctx := context.Background()
	enqueue := func(n int) {
		for i := 0; i < n; i++ {
			ev := newEvent(i)
			sent[ev.EventID] = true
			if err := db.Enqueue(ctx, ev); err != nil {
				t.Fatal(err)
			}
			p.Notify()
			time.Sleep(2 * time.Millisecond)
		}
	}
	enqueue(40)
	brokertest.CloseMochi(srv, 3*time.Second)
	waitFor(t, 5*time.Second, "publisher to see the outage", func() bool { return !p.Connected() })
	enqueue(40) // while the broker is down: these wait in the outbox
	if db.Depth() == 0 {
		t.Fatal("outbox empty while broker is down")
	}
	srv2, err := brokertest.StartMochi(addr, rec, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { brokertest.CloseMochi(srv2, 3*time.Second) })
	enqueue(40)
	waitFor(t, 15*time.Second, "empty outbox after restart", func() bool { return db.Depth() == 0 })
	got := rec.IDs()
	seen := map[string]int{}
	for _, id := range got {
		seen[id]++
	}
	dups := 0
	for id, n := range seen {
		if !sent[id] {
			t.Errorf("received unknown event %s", id)
		}
		dups += n - 1
	}
	for id := range sent {
		if seen[id] == 0 {
			t.Errorf("event %s never reached the broker", id)
		}
	}
	t.Logf("sent %d, received %d raw, %d redeliveries", len(sent), len(got), dups)
}

// TestLastWillAndStatus: when the broker drops the gate's connection
// abnormally, the broker publishes the retained offline status (the last
// will); the gate reconnects and publishes online again; a clean shutdown
// publishes offline.
func TestLastWillAndStatus(t *testing.T) {
	addr, _ := brokertest.FreePort()
	srv, err := brokertest.StartMochi(addr, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { brokertest.CloseMochi(srv, 3*time.Second) })
	sub := subscribe(t, addr, wire.StatusTopic(school, gate))
	db := openStore(t)
	p, err := New(testConfig(addr), db, testLogger(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	stop := run(t, p)
	topic := wire.StatusTopic(school, gate)
	last := func() (wire.Status, int) {
		m := sub.get(topic)
		if len(m) == 0 {
			return wire.Status{}, 0
		}
		var s wire.Status
		_ = json.Unmarshal(m[len(m)-1], &s)
		return s, len(m)
	}
	waitFor(t, 5*time.Second, "online status", func() bool { s, _ := last(); return s.Online })
	cl, ok := srv.Clients.Get(gate)
	if !ok {
		t.Fatal("gate client not found at the broker")
	}
	cl.Stop(errors.New("test: connection cut"))
	waitFor(t, 5*time.Second, "last will (offline)", func() bool { s, n := last(); return n >= 2 && !s.Online })
	waitFor(t, 5*time.Second, "online again after reconnect", func() bool { s, n := last(); return n >= 3 && s.Online })
	// Heartbeat while connected.
	hbSub := subscribe(t, addr, wire.HeartbeatTopic(school, gate))
	if err := p.PublishHeartbeat(wire.Heartbeat{FPS: 25, OutboxDepth: db.Depth()}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "heartbeat", func() bool { return len(hbSub.get(wire.HeartbeatTopic(school, gate))) == 1 })
	var hb wire.Heartbeat
	if err := json.Unmarshal(hbSub.get(wire.HeartbeatTopic(school, gate))[0], &hb); err != nil || hb.FPS != 25 || hb.GateID != gate || hb.Schema != wire.SchemaVersion {
		t.Fatalf("heartbeat %+v: %v", hb, err)
	}
	stop()
	waitFor(t, 5*time.Second, "offline after clean stop", func() bool { s, n := last(); return n >= 4 && !s.Online })
	if err := p.PublishHeartbeat(wire.Heartbeat{}); err == nil {
		t.Fatal("heartbeat accepted while disconnected")
	}
}

// TestConnectHeartbeatBeforeDrain: with ConnectHeartbeat set, each
// connection sends a heartbeat right after its online status and before
// the outbox is drained, so the hub sees the backlog the gate brings (5
// events waiting) before the first of them; after a cut and a reconnect
// the next connection sends one again (its outbox now empty).
func TestConnectHeartbeatBeforeDrain(t *testing.T) {
	addr, _ := brokertest.FreePort()
	srv, err := brokertest.StartMochi(addr, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { brokertest.CloseMochi(srv, 3*time.Second) })
	sub := subscribe(t, addr, wire.TopicRoot+"/#")
	db := openStore(t)
	for i := 0; i < 5; i++ {
		if err := db.Enqueue(context.Background(), newEvent(i)); err != nil {
			t.Fatal(err)
		}
	}
	cfg := testConfig(addr)
	cfg.ConnectHeartbeat = func() wire.Heartbeat { return wire.Heartbeat{FPS: 25, OutboxDepth: db.Depth()} }
	p, err := New(cfg, db, testLogger(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	run(t, p)
	hbTopic, evTopic := wire.HeartbeatTopic(school, gate), wire.EventTopic(school, gate)
	waitFor(t, 10*time.Second, "5 events", func() bool { return len(sub.get(evTopic)) == 5 })
	depth := func(i int) int {
		var hb wire.Heartbeat
		if err := json.Unmarshal(sub.get(hbTopic)[i], &hb); err != nil {
			t.Fatal(err)
		}
		return hb.OutboxDepth
	}
	sub.mu.Lock()
	order := append([]string(nil), sub.topics...)
	sub.mu.Unlock()
	first := map[string]int{}
	for i := len(order) - 1; i >= 0; i-- {
		first[order[i]] = i
	}
	if hb, ok := first[hbTopic]; !ok || hb > first[evTopic] {
		t.Fatalf("no heartbeat before the first event: %v", order)
	}
	if d := depth(0); d != 5 {
		t.Fatalf("heartbeat after connecting: outbox_depth %d, want 5", d)
	}
	cl, ok := srv.Clients.Get(gate)
	if !ok {
		t.Fatal("gate client not found at the broker")
	}
	cl.Stop(errors.New("test: connection cut"))
	waitFor(t, 5*time.Second, "a heartbeat after the reconnect", func() bool { return len(sub.get(hbTopic)) == 2 })
	if d := depth(1); d != 0 {
		t.Fatalf("heartbeat after the reconnect: outbox_depth %d, want 0", d)
	}
}

// TestWrongPasswordKeepsEvents: a refused login leaves the gate
// disconnected and every event in the outbox.
func TestWrongPasswordKeepsEvents(t *testing.T) {
	addr, _ := brokertest.FreePort()
	srv, err := brokertest.StartMochi(addr, nil, brokertest.Users{gate: "right"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { brokertest.CloseMochi(srv, 3*time.Second) })
	db := openStore(t)
	for i := 0; i < 5; i++ {
		if err := db.Enqueue(context.Background(), newEvent(i)); err != nil {
			t.Fatal(err)
		}
	}
	cfg := testConfig(addr)
	cfg.Username, cfg.Password = gate, "wrong"
	p, err := New(cfg, db, testLogger(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	stop := run(t, p)
	time.Sleep(700 * time.Millisecond)
	stop()
	if p.Connected() || db.Depth() != 5 {
		t.Fatalf("connected=%v depth=%d", p.Connected(), db.Depth())
	}
	// With the right password everything drains.
	cfg.Password = "right"
	p2, err := New(cfg, db, testLogger(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	run(t, p2)
	waitFor(t, 5*time.Second, "drain with the right password", func() bool { return db.Depth() == 0 })
}

func TestConfigValidate(t *testing.T) {
	ca := filepath.Join(t.TempDir(), "ca.pem")
	_ = os.WriteFile(ca, []byte("x"), 0o644)
	base := Default()
	base.SchoolID, base.GateID = school, gate
	cases := []struct {
		field string
		mod   func(*Config)
	}{
		{"", func(*Config) {}},
		{"mqtt.broker", func(c *Config) { c.Broker = "" }},
		{"mqtt.broker", func(c *Config) { c.Broker = "http://x:1883" }},
		{"mqtt.school_id", func(c *Config) { c.SchoolID = "Bad School" }},
		{"mqtt.gate_id", func(c *Config) { c.GateID = "" }},
		{"mqtt.username", func(c *Config) { c.Password = "p" }},
		{"mqtt.ca_file", func(c *Config) { c.CAFile = "/no/such/ca.pem" }},
		{"", func(c *Config) { c.CAFile = ca }},
		{"mqtt.cert_file", func(c *Config) { c.CertFile = ca }},
		{"mqtt.window", func(c *Config) { c.Window = 0 }},
		{"mqtt.retry_min", func(c *Config) { c.RetryMax = time.Millisecond }},
		{"mqtt.ack_timeout", func(c *Config) { c.AckTimeout = 0 }},
	}
	for _, tc := range cases {
		c := base
		tc.mod(&c)
		err := c.Validate()
		if tc.field == "" {
			if err != nil {
				t.Errorf("valid config refused: %v", err)
			}
			continue
		}
		var fe *conf.FieldError
		if !errors.As(err, &fe) || fe.Field != tc.field {
			t.Errorf("want error on %s, got %v", tc.field, err)
		}
	}
	// A CA file that holds no certificate is refused by New.
	c := base
	c.Broker, c.CAFile = "ssl://127.0.0.1:8883", ca
	if _, err := New(c, openStore(t), nil, nil); err == nil {
		t.Error("bad CA file accepted")
	}
}

// TestGalleryAnnouncement: the retained announcement on the school's
// gallery topic reaches OnGalleryAnnounce when the gate connects (and
// again after a new one is published); a malformed one is ignored.
func TestGalleryAnnouncement(t *testing.T) {
	addr, _ := brokertest.FreePort()
	srv, err := brokertest.StartMochi(addr, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { brokertest.CloseMochi(srv, 3*time.Second) })
	pubRetained := func(b []byte) {
		o := pmqtt.NewClientOptions().AddBroker("tcp://" + addr).SetClientID("hub-test")
		c := pmqtt.NewClient(o)
		if tok := c.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
			t.Fatal(tok.Error())
		}
		defer c.Disconnect(100)
		if tok := c.Publish(wire.GalleryTopic(school), 1, true, b); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
			t.Fatal(tok.Error())
		}
	}
	a1, _ := json.Marshal(wire.GalleryAnnounce{Schema: 1, Version: 3, URL: "/api/v1/gates/gate-1/gallery", Model: match.DlibResNetV1})
	pubRetained(a1)
	var mu sync.Mutex
	var got []int64
	cfg := testConfig(addr)
	cfg.OnGalleryAnnounce = func(a wire.GalleryAnnounce) { mu.Lock(); got = append(got, a.Version); mu.Unlock() }
	p, err := New(cfg, openStore(t), testLogger(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	run(t, p)
	versions := func() []int64 { mu.Lock(); defer mu.Unlock(); return append([]int64(nil), got...) }
	waitFor(t, 5*time.Second, "retained announcement", func() bool { return len(versions()) == 1 })
	pubRetained([]byte("not json"))
	a2, _ := json.Marshal(wire.GalleryAnnounce{Schema: 1, Version: 4})
	pubRetained(a2)
	waitFor(t, 5*time.Second, "second announcement", func() bool { return len(versions()) == 2 })
	if v := versions(); v[0] != 3 || v[1] != 4 {
		t.Fatalf("versions %v", v)
	}
}
