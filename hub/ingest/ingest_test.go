package ingest_test

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/diemdanh/diemdanh/hub/ingest"
	"github.com/diemdanh/diemdanh/hub/ingest/ingesttest"
	"github.com/diemdanh/diemdanh/hub/store"
	"github.com/diemdanh/diemdanh/models/wire"
)

type fixture struct {
	db     *store.DB
	in     *ingest.Ingester
	gates  []ingesttest.Gate
	pupils map[string][]string
	now    time.Time
	mu     sync.Mutex
	seen   []ingest.StoredEvent
}

func (f *fixture) EventStored(_ context.Context, ev ingest.StoredEvent) {
	f.mu.Lock()
	f.seen = append(f.seen, ev)
	f.mu.Unlock()
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	ctx := context.Background()
	db, err := store.Open(ctx, filepath.Join(t.TempDir(), "hub.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	f := &fixture{db: db, now: time.Date(2026, 11, 20, 7, 0, 0, 0, time.UTC)}
	f.gates, f.pupils, err = ingesttest.Seed(ctx, db, []string{"thcs-a", "thcs-b"}, 2, 5)
	if err != nil {
		t.Fatal(err)
	}
	in, err := ingest.New(db, ingest.Default(), nil, func() time.Time { return f.now })
	if err != nil {
		t.Fatal(err)
	}
	in.AddListener(f)
	in.Start(ctx)
	t.Cleanup(in.Close)
	f.in = in
	return f
}

func (f *fixture) count(t *testing.T, q string, args ...any) int {
	t.Helper()
	var n int
	if err := f.db.R.QueryRow(q, args...).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func TestBadPayloadsQuarantinedWithReason(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	g := f.gates[0] // thcs-a gate
	pupil := f.pupils["thcs-a"][0]
	good := func() wire.Event { return ingesttest.Event(g, pupil, f.now.Add(-time.Minute)) }
	topic := wire.EventTopic(g.School, g.ID)
	enc := func(mut func(*wire.Event)) []byte {
		ev := good()
		mut(&ev)
		b, _ := json.Marshal(ev)
		return b
	}
	huge := enc(func(e *wire.Event) {})
	huge = append(huge[:len(huge)-1], []byte(`,"pad":"`+strings.Repeat("x", 300<<10)+`"}`)...)
	cases := []struct {
		name, topic string
		payload     []byte
		reason      string
	}{
		{"malformed json", topic, []byte(`{"schema":1,"event_id":`), "malformed JSON"},
		{"wrong types", topic, []byte(`{"schema":"one","event_id":123}`), "malformed JSON"},
		{"trailing data", topic, append(enc(func(*wire.Event) {}), []byte(` {}`)...), "trailing data"},
		{"huge", topic, huge, "exceeds"},
		{"empty", topic, nil, "malformed JSON"},
		{"bad schema", topic, enc(func(e *wire.Event) { e.Schema = 9 }), "schema"},
		{"unknown gate", wire.EventTopic("thcs-a", "gate9"), enc(func(e *wire.Event) { e.GateID = "gate9" }), "unknown gate"},
		{"gate of other school", wire.EventTopic("thcs-b", g.ID), enc(func(e *wire.Event) { e.SchoolID = "thcs-b" }), "does not belong"},
		{"topic/payload gate mismatch", topic, enc(func(e *wire.Event) { e.GateID = f.gates[1].ID }), "does not match topic gate"},
		{"topic/payload school mismatch", topic, enc(func(e *wire.Event) { e.SchoolID = "thcs-b" }), "does not match topic school"},
		{"unknown pupil", topic, enc(func(e *wire.Event) { e.StudentID = "999999999999" }), "unknown pupil"},
		{"pupil of other school", topic, enc(func(e *wire.Event) { e.StudentID = f.pupils["thcs-b"][0] }), "unknown pupil"},
		{"future", topic, enc(func(e *wire.Event) { e.CapturedAt = f.now.Add(10 * time.Minute).UnixMilli() }), "in the future"},
		{"ancient", topic, enc(func(e *wire.Event) { e.CapturedAt = f.now.Add(-31 * 24 * time.Hour).UnixMilli() }), "older than"},
		{"not a gate topic", "diemdanh/v1/thcs-a/other", enc(func(*wire.Event) {}), "not a gate topic"},
		{"bad status", wire.StatusTopic(g.School, g.ID), []byte(`{"online":"yes"}`), "malformed JSON"},
		{"bad heartbeat gate", wire.HeartbeatTopic(g.School, g.ID), []byte(`{"schema":1,"gate_id":"x","at":1}`), "does not match"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before := f.count(t, `SELECT count(*) FROM events`)
			res, err := f.in.Handle(ctx, ingest.Message{Topic: c.topic, Payload: c.payload, ClientID: "c1"})
			if err != nil || res != ingest.Quarantined {
				t.Fatalf("got %v, %v; want quarantined", res, err)
			}
			var reason string
			var plen int
			if err := f.db.R.QueryRow(`SELECT reason, length(payload) FROM quarantine ORDER BY id DESC LIMIT 1`).Scan(&reason, &plen); err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(reason, c.reason) {
				t.Fatalf("reason %q does not mention %q", reason, c.reason)
			}
			if plen > 64<<10 {
				t.Fatalf("quarantined payload not truncated: %d", plen)
			}
			// A good event right after is still stored.
			ok := good()
			res, err = f.in.Handle(ctx, ingest.Message{Topic: topic, Payload: ingesttest.Payload(ok)})
			if err != nil || res != ingest.Stored {
				t.Fatalf("good event after bad: %v, %v", res, err)
			}
			if n := f.count(t, `SELECT count(*) FROM events`); n != before+1 {
				t.Fatalf("events %d, want %d", n, before+1)
			}
		})
	}
}

func TestExactlyOnceDuplicatesAndOrder(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	var msgs []ingest.Message
	want := map[string]bool{}
	for i := 0; i < 300; i++ {
		g := f.gates[i%2]
		st := f.pupils[g.School][i%5]
		if i%7 == 0 {
			st = wire.UnknownStudent
		}
		ev := ingesttest.Event(g, st, f.now.Add(-time.Duration(i)*time.Second))
		want[ev.EventID] = true
		msgs = append(msgs, ingest.Message{Topic: wire.EventTopic(g.School, g.ID), Payload: ingesttest.Payload(ev)})
	}
	// Every message twice, shuffled, from concurrent submitters.
	all := append(append([]ingest.Message{}, msgs...), msgs...)
	rand.New(rand.NewSource(1)).Shuffle(len(all), func(i, j int) { all[i], all[j] = all[j], all[i] })
	var wg sync.WaitGroup
	var mu sync.Mutex
	counts := map[ingest.Result]int{}
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := w; i < len(all); i += 8 {
				r, err := f.in.Handle(ctx, all[i])
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				counts[r]++
				mu.Unlock()
			}
		}(w)
	}
	wg.Wait()
	if counts[ingest.Stored] != 300 || counts[ingest.Duplicate] != 300 {
		t.Fatalf("results %v, want 300 stored and 300 duplicates", counts)
	}
	rows, err := f.db.R.Query(`SELECT event_id FROM events`)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]bool{}
	for rows.Next() {
		var id string
		rows.Scan(&id)
		got[id] = true
	}
	rows.Close()
	if len(got) != len(want) {
		t.Fatalf("stored %d events, want %d", len(got), len(want))
	}
	for id := range want {
		if !got[id] {
			t.Fatalf("event %s missing", id)
		}
	}
	if n := f.count(t, `SELECT count(*) FROM events WHERE student_id IS NULL`); n != 43 {
		t.Fatalf("unknown-face events %d, want 43", n)
	}
	if n := f.count(t, `SELECT count(*) FROM events WHERE received_at - captured_at < 0`); n != 0 {
		t.Fatalf("%d events with received before captured", n)
	}
	f.in.Close() // drains listeners
	if len(f.seen) != 300 {
		t.Fatalf("listeners saw %d events, want 300 (duplicates must not be reported)", len(f.seen))
	}
	for _, ev := range f.seen {
		if !ev.Unknown && ev.ClassID != ev.SchoolID+"-1a" {
			t.Fatalf("class not resolved: %+v", ev)
		}
		if ev.ReceivedAt != f.now.UnixMilli() {
			t.Fatalf("received_at %d, want hub clock %d", ev.ReceivedAt, f.now.UnixMilli())
		}
	}
}

func TestStatusAndHeartbeatUpdateGate(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	g := f.gates[0]
	hb := wire.Heartbeat{Schema: 1, GateID: g.ID, At: f.now.Add(-1500 * time.Millisecond).UnixMilli(), FPS: 12.5, OutboxDepth: 3}
	b, _ := json.Marshal(hb)
	if r, err := f.in.Handle(ctx, ingest.Message{Topic: wire.HeartbeatTopic(g.School, g.ID), Payload: b}); err != nil || r != ingest.Updated {
		t.Fatalf("heartbeat: %v %v", r, err)
	}
	var online, skew int
	var seen int64
	var last string
	if err := f.db.R.QueryRow(`SELECT online, clock_skew_ms, last_seen_at, last_heartbeat FROM gates WHERE id=?`, g.ID).
		Scan(&online, &skew, &seen, &last); err != nil {
		t.Fatal(err)
	}
	if online != 1 || skew != 1500 || seen != f.now.UnixMilli() || !strings.Contains(last, `"outbox_depth":3`) {
		t.Fatalf("gate after heartbeat: online=%d skew=%d seen=%d hb=%s", online, skew, seen, last)
	}
	st, _ := json.Marshal(wire.Status{Schema: 1, GateID: g.ID, Online: false, At: f.now.UnixMilli()})
	if r, err := f.in.Handle(ctx, ingest.Message{Topic: wire.StatusTopic(g.School, g.ID), Payload: st}); err != nil || r != ingest.Updated {
		t.Fatalf("status: %v %v", r, err)
	}
	if n := f.count(t, `SELECT online FROM gates WHERE id=?`, g.ID); n != 0 {
		t.Fatal("gate still online after offline status")
	}
}

func TestConfigValidate(t *testing.T) {
	c := ingest.Default()
	c.MaxBatch = 0
	if err := c.Validate("ingest."); err == nil || !strings.Contains(err.Error(), "ingest.max_batch") {
		t.Fatalf("want error naming ingest.max_batch, got %v", err)
	}
	if err := ingest.Default().Validate(""); err != nil {
		t.Fatal(err)
	}
}

func TestSubmitAfterCloseFails(t *testing.T) {
	f := newFixture(t)
	f.in.Close()
	_, err := f.in.Handle(context.Background(), ingest.Message{Topic: "x", Payload: []byte("{}")})
	if err != ingest.ErrClosed {
		t.Fatalf("got %v, want ErrClosed", err)
	}
}

var _ = fmt.Sprint

// Until a gate sends a heartbeat, its skew is estimated from its events
// (smallest hub-minus-edge difference); a heartbeat then takes over.
func TestClockSkewFromEvents(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	g := f.gates[0]
	for _, lag := range []time.Duration{90 * time.Second, 30 * time.Second, 60 * time.Second} {
		ev := ingesttest.Event(g, f.pupils[g.School][0], f.now.Add(-lag))
		if _, err := f.in.Handle(ctx, ingest.Message{Topic: wire.EventTopic(g.School, g.ID), Payload: ingesttest.Payload(ev)}); err != nil {
			t.Fatal(err)
		}
	}
	var skew int64
	f.db.R.QueryRow(`SELECT clock_skew_ms FROM gates WHERE id=?`, g.ID).Scan(&skew)
	if skew != 60000 { // the last batch held only the 60 s event
		t.Fatalf("skew %d, want 60000", skew)
	}
	var capt, recv int64
	f.db.R.QueryRow(`SELECT captured_at, received_at FROM events ORDER BY captured_at LIMIT 1`).Scan(&capt, &recv)
	if recv-capt != 90000 {
		t.Fatalf("event clocks: captured %d received %d", capt, recv)
	}
	hb, _ := json.Marshal(wire.Heartbeat{Schema: 1, GateID: g.ID, At: f.now.Add(-2 * time.Second).UnixMilli()})
	f.in.Handle(ctx, ingest.Message{Topic: wire.HeartbeatTopic(g.School, g.ID), Payload: hb})
	ev := ingesttest.Event(g, f.pupils[g.School][0], f.now.Add(-time.Hour))
	f.in.Handle(ctx, ingest.Message{Topic: wire.EventTopic(g.School, g.ID), Payload: ingesttest.Payload(ev)})
	f.db.R.QueryRow(`SELECT clock_skew_ms FROM gates WHERE id=?`, g.ID).Scan(&skew)
	if skew != 2000 {
		t.Fatalf("skew %d after heartbeat, want 2000 (events must not override it)", skew)
	}
}

type blockingListener struct {
	release chan struct{}
	n       chan struct{}
}

func (b *blockingListener) EventStored(context.Context, ingest.StoredEvent) {
	<-b.release
	b.n <- struct{}{}
}

// A listener that blocks does not hold up commits (it gets its events
// later, all of them, in order of commit).
func TestSlowListenerDoesNotBlockIngest(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	bl := &blockingListener{release: make(chan struct{}), n: make(chan struct{}, 1000)}
	f.in.AddListener(bl)
	g := f.gates[0]
	done := make(chan error, 1)
	go func() {
		for i := 0; i < 200; i++ {
			ev := ingesttest.Event(g, f.pupils[g.School][i%5], f.now.Add(-time.Minute))
			if _, err := f.in.Handle(ctx, ingest.Message{Topic: wire.EventTopic(g.School, g.ID), Payload: ingesttest.Payload(ev)}); err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("ingest blocked by a slow listener")
	}
	close(bl.release)
	for i := 0; i < 200; i++ {
		select {
		case <-bl.n:
		case <-time.After(10 * time.Second):
			t.Fatalf("listener got %d of 200 events", i)
		}
	}
}

// While the database refuses writes, Handle reports an error (so the
// broker does not acknowledge and the gate resends) without crashing; once
// writes work again the same message is stored.
func TestDatabaseOutageNotAcknowledged(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	g := f.gates[0]
	ev := ingesttest.Event(g, f.pupils[g.School][0], f.now.Add(-time.Minute))
	msg := ingest.Message{Topic: wire.EventTopic(g.School, g.ID), Payload: ingesttest.Payload(ev)}
	if _, err := f.db.W.Exec(`PRAGMA query_only = 1`); err != nil {
		t.Fatal(err)
	}
	if _, err := f.in.Handle(ctx, msg); err == nil {
		t.Fatal("no error while the database refuses writes")
	}
	if f.in.Stats().Failures != 1 {
		t.Fatalf("stats %+v", f.in.Stats())
	}
	if _, err := f.db.W.Exec(`PRAGMA query_only = 0`); err != nil {
		t.Fatal(err)
	}
	if r, err := f.in.Handle(ctx, msg); err != nil || r != ingest.Stored {
		t.Fatalf("resent after recovery: %v %v", r, err)
	}
}
