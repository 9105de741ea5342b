package publish

import (
	"bytes"
	"context"
	"image"
	"image/jpeg"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/diemdanh/diemdanh/edge/publish/brokertest"
	"github.com/diemdanh/diemdanh/edge/store"
	"github.com/diemdanh/diemdanh/models/match"
	"github.com/diemdanh/diemdanh/models/wire"
)

func newUnrecognised(t *testing.T, i int) *wire.Unrecognised {
	t.Helper()
	var jb bytes.Buffer
	if err := jpeg.Encode(&jb, image.NewGray(image.Rect(0, 0, 24, 24)), nil); err != nil {
		t.Fatal(err)
	}
	u := &wire.Unrecognised{Schema: wire.SchemaVersion, CaptureID: wire.NewEventID(), SchoolID: school, GateID: gate,
		Direction: wire.DirectionIn, Kind: wire.KindUnrecognised, FaceJPEG: jb.Bytes(),
		CapturedAt: time.Date(2026, 9, 5, 7, 0, 0, 0, time.UTC).UnixMilli() + int64(i),
		Quality:    match.Quality{SizePx: 96, Sharpness: 150, Brightness: 120},
		Candidates: []wire.Candidate{{StudentID: "079123456789", Distance: 0.7, Margin: 0.05},
			{StudentID: "079123456788", Distance: 0.75, Margin: 10}},
		FramesDescribed: 3, Model: match.DlibResNetV1, GalleryVer: 9}
	if i%2 == 1 {
		u.Kind, u.Vote = wire.KindNearMiss, &wire.Candidate{StudentID: "079123456789", Distance: 0.5, Margin: 0.08}
	}
	return u
}

// TestUnrecognisedThroughOutbox: unrecognised faces queued beside events
// survive a restart of the gate (the SQLite file closed and reopened) and
// reach the real embedded broker on the gate's unrecognised topic, in
// outbox order with the events; one queued during a broker outage is
// published after the broker comes back. Only events are reported to
// OnAck.
func TestUnrecognisedThroughOutbox(t *testing.T) {
	addr, _ := brokertest.FreePort()
	rec, _ := brokertest.NewRecorder("")
	srv, err := brokertest.StartMochi(addr, rec, nil)
	if err != nil {
		t.Fatal(err)
	}
	sub := subscribe(t, addr, "diemdanh/v1/+/gate/+/+")
	path := filepath.Join(t.TempDir(), "edge.db")
	db, err := store.Open(path, store.Options{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	ev1, u1, u2, ev2 := newEvent(1), newUnrecognised(t, 2), newUnrecognised(t, 3), newEvent(4)
	for _, step := range []func() error{
		func() error { return db.Enqueue(ctx, ev1) }, func() error { return db.EnqueueUnrecognised(ctx, u1) },
		func() error { return db.EnqueueUnrecognised(ctx, u2) }, func() error { return db.Enqueue(ctx, ev2) },
	} {
		if err := step(); err != nil {
			t.Fatal(err)
		}
	}
	db.Close() // the gate stops before anything was sent

	db = openAt(t, path)
	if db.Depth() != 4 {
		t.Fatalf("after reopen depth %d, want 4", db.Depth())
	}
	var mu sync.Mutex
	var acked []string
	cfg := testConfig(addr)
	cfg.OnAck = func(id string, _ time.Time) { mu.Lock(); acked = append(acked, id); mu.Unlock() }
	p, err := New(cfg, db, testLogger(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	run(t, p)
	waitFor(t, 10*time.Second, "empty outbox", func() bool { return db.Depth() == 0 })
	unTopic, evTopic := wire.UnrecognisedTopic(school, gate), wire.EventTopic(school, gate)
	waitFor(t, 5*time.Second, "subscriber", func() bool { return len(sub.get(unTopic)) == 2 && len(sub.get(evTopic)) == 2 })
	for i, u := range []*wire.Unrecognised{u1, u2} {
		want, _ := u.Encode()
		if got := sub.get(unTopic)[i]; !bytes.Equal(got, want) {
			t.Fatalf("unrecognised %d on the wire differs from its encoding", i)
		}
	}
	if got := rec.UnrecognisedIDs(); !slices.Equal(got, []string{u1.CaptureID, u2.CaptureID}) {
		t.Fatalf("broker received unrecognised %v, want %s %s in order", got, u1.CaptureID, u2.CaptureID)
	}
	if got := rec.IDs(); !slices.Equal(got, []string{ev1.EventID, ev2.EventID}) {
		t.Fatalf("broker received events %v", got)
	}
	if p.Sent() != 2 || p.SentUnrecognised() != 2 {
		t.Fatalf("sent %d events and %d unrecognised, want 2 and 2", p.Sent(), p.SentUnrecognised())
	}
	mu.Lock()
	if !slices.Equal(acked, []string{ev1.EventID, ev2.EventID}) {
		t.Fatalf("OnAck got %v, want the two events", acked)
	}
	mu.Unlock()

	// Broker outage: the message waits in the outbox and goes out on reconnect.
	brokertest.CloseMochi(srv, 3*time.Second)
	waitFor(t, 5*time.Second, "publisher to see the outage", func() bool { return !p.Connected() })
	u3 := newUnrecognised(t, 5)
	if err := db.EnqueueUnrecognised(ctx, u3); err != nil {
		t.Fatal(err)
	}
	p.Notify()
	time.Sleep(300 * time.Millisecond)
	if db.Depth() != 1 {
		t.Fatalf("outbox depth %d while the broker is down, want 1", db.Depth())
	}
	srv2, err := brokertest.StartMochi(addr, rec, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { brokertest.CloseMochi(srv2, 3*time.Second) })
	waitFor(t, 15*time.Second, "empty outbox after the broker is back", func() bool { return db.Depth() == 0 })
	if got := rec.UnrecognisedIDs(); len(got) != 3 || got[2] != u3.CaptureID {
		t.Fatalf("after the outage the broker received %v, want %s last", got, u3.CaptureID)
	}
}

func openAt(t *testing.T, path string) *store.DB {
	t.Helper()
	db, err := store.Open(path, store.Options{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}
