package bench

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/diemdanh/diemdanh/edge/publish"
	"github.com/diemdanh/diemdanh/edge/store"
	"github.com/diemdanh/diemdanh/models/wire"
	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/hooks/auth"
	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/mochi-mqtt/server/v2/packets"
)

// benchEnv is the gate's surroundings in a run: a scratch outbox, an
// embedded broker recording what it receives, and the publisher between
// them, which records each event's PUBACK in acks.
type benchEnv struct {
	tmp     string
	broker  *mqtt.Server
	rec     *Recorder
	db      *store.DB
	pub     *publish.Publisher
	pubStop context.CancelFunc
	pubDone chan error

	mu   sync.Mutex
	acks map[string]time.Time // event ID -> PUBACK
}

// startEnv starts the outbox, the broker and the publisher.
func startEnv(ctx context.Context, o Options, log *slog.Logger) (_ *benchEnv, err error) {
	env := &benchEnv{acks: map[string]time.Time{}}
	defer func() {
		if err != nil {
			env.close() // what started so far
		}
	}()
	if env.tmp, err = os.MkdirTemp("", "edge-bench-"); err != nil {
		return nil, err
	}
	var addr string
	if env.broker, addr, env.rec, err = StartBroker(); err != nil {
		return nil, fmt.Errorf("broker: %w", err)
	}
	if env.db, err = store.Open(filepath.Join(env.tmp, "edge.db"), store.DefaultOptions(), log); err != nil {
		return nil, err
	}
	pc := publish.Default()
	pc.Broker, pc.SchoolID, pc.GateID = "tcp://"+addr, o.SchoolID, o.GateID
	pc.Poll = 20 * time.Millisecond
	pc.OnAck = func(id string, at time.Time) { env.mu.Lock(); env.acks[id] = at; env.mu.Unlock() }
	if env.pub, err = publish.New(pc, env.db, log, o.clock()); err != nil {
		return nil, err
	}
	pubCtx, pubStop := context.WithCancel(ctx)
	env.pubStop, env.pubDone = pubStop, make(chan error, 1)
	go func() { env.pubDone <- env.pub.Run(pubCtx) }()
	return env, nil
}

// close stops the publisher, then closes the outbox and the broker and
// removes the scratch directory.
func (env *benchEnv) close() {
	if env.pubStop != nil {
		env.pubStop()
		<-env.pubDone
	}
	if env.db != nil {
		env.db.Close()
	}
	if env.broker != nil {
		env.broker.Close()
	}
	if env.tmp != "" {
		os.RemoveAll(env.tmp)
	}
}

// waitAcks waits (up to 30 s) until every event in the outbox is
// acknowledged.
func (env *benchEnv) waitAcks(ctx context.Context) {
	deadline := time.Now().Add(30 * time.Second)
	for env.db.Depth() > 0 && time.Now().Before(deadline) && ctx.Err() == nil {
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(50 * time.Millisecond) // the broker hook records after PUBACK
}

// Recorder is a broker hook that counts deliveries per event ID, so a
// duplicate at the broker is seen even if the edge's own count is right.
type Recorder struct {
	mqtt.HookBase
	mu   sync.Mutex
	seen map[string]int
	// Events receives every event payload decoded at the broker.
	Events []*wire.Event
	// Messages are the gate's messages (events, unrecognised faces,
	// status) as the broker received them, in order, redeliveries
	// included: what a hub would ingest.
	Messages []Published
}

// Published is one message a gate published.
type Published struct {
	Topic   string
	Payload []byte
}

// ID names the hook.
func (r *Recorder) ID() string { return "bench-recorder" }

// Provides says which events the hook handles.
func (r *Recorder) Provides(b byte) bool { return b == mqtt.OnPublish }

// OnPublish records the gate's messages and decodes events.
func (r *Recorder) OnPublish(_ *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	if _, _, _, ok := wire.ParseGateTopic(pk.TopicName); ok {
		r.mu.Lock()
		r.Messages = append(r.Messages, Published{Topic: pk.TopicName, Payload: append([]byte(nil), pk.Payload...)})
		r.mu.Unlock()
	}
	if ev, err := wire.DecodeEvent(pk.Payload); err == nil {
		r.mu.Lock()
		if r.seen == nil {
			r.seen = map[string]int{}
		}
		r.seen[ev.EventID]++
		if r.seen[ev.EventID] == 1 {
			r.Events = append(r.Events, ev)
		}
		r.mu.Unlock()
	}
	return pk, nil
}

// Duplicates is the number of deliveries beyond the first per event ID.
func (r *Recorder) Duplicates() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, c := range r.seen {
		n += c - 1
	}
	return n
}

// Received returns a copy of the distinct events received.
func (r *Recorder) Received() []*wire.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]*wire.Event(nil), r.Events...)
}

// Published returns a copy of the gate's messages received.
func (r *Recorder) Published() []Published {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Published(nil), r.Messages...)
}

// StartBroker serves an embedded mochi-mqtt broker on 127.0.0.1:0 and
// returns it with its address and a recorder of event deliveries.
func StartBroker() (*mqtt.Server, string, *Recorder, error) {
	s := mqtt.New(&mqtt.Options{InlineClient: false, Logger: slog.New(slog.DiscardHandler)})
	if err := s.AddHook(new(auth.AllowHook), nil); err != nil {
		return nil, "", nil, err
	}
	rec := &Recorder{}
	if err := s.AddHook(rec, nil); err != nil {
		return nil, "", nil, err
	}
	l := listeners.NewTCP(listeners.Config{ID: "bench", Address: "127.0.0.1:0"})
	if err := s.AddListener(l); err != nil {
		return nil, "", nil, err
	}
	go func() { _ = s.Serve() }()
	return s, l.Address(), rec, nil
}
