package store

import (
	"context"
	"errors"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/diemdanh/diemdanh/models/conf"
	"github.com/diemdanh/diemdanh/models/match"
	"github.com/diemdanh/diemdanh/models/wire"
)

func testEvent(t testing.TB, student string, at time.Time) *wire.Event {
	t.Helper()
	return &wire.Event{Schema: wire.SchemaVersion, EventID: wire.NewEventID(), SchoolID: "thcs-a", GateID: "gate-1",
		Direction: wire.DirectionIn, StudentID: student, CapturedAt: at.UnixMilli(), Distance: 0.3, Margin: 0.1,
		FramesUsed: 3, Model: match.DlibResNetV1}
}

func open(t *testing.T, path string, opts Options) *DB {
	t.Helper()
	db, err := Open(path, opts, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func TestEnqueueDebounced(t *testing.T) {
	t0 := time.Date(2026, 9, 5, 7, 0, 0, 0, time.UTC)
	cases := []struct {
		name     string
		cooldown time.Duration
		steps    []time.Duration // offsets from t0 of successive events with the same key
		want     []bool
	}{
		{"once per key forever", 0, []time.Duration{0, time.Second, 10 * time.Hour}, []bool{true, false, false}},
		{"cooldown 1m", time.Minute, []time.Duration{0, 30 * time.Second, 61 * time.Second, 90 * time.Second, 3 * time.Minute}, []bool{true, false, true, false, true}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			db := open(t, filepath.Join(t.TempDir(), "edge.db"), Options{})
			for i, off := range tc.steps {
				now := t0.Add(off)
				got, err := db.EnqueueDebounced(context.Background(), testEvent(t, "079123456789", now), "079123456789/2026-09-05/in", now, tc.cooldown)
				if err != nil {
					t.Fatal(err)
				}
				if got != tc.want[i] {
					t.Fatalf("step %d (+%v): enqueued=%v want %v", i, off, got, tc.want[i])
				}
			}
			wantN := 0
			for _, w := range tc.want {
				if w {
					wantN++
				}
			}
			if db.Depth() != wantN {
				t.Fatalf("depth %d want %d", db.Depth(), wantN)
			}
			// A different key is independent.
			ok, err := db.EnqueueDebounced(context.Background(), testEvent(t, "079123456789", t0), "079123456789/2026-09-05/out", t0, tc.cooldown)
			if err != nil || !ok {
				t.Fatalf("other key: %v %v", ok, err)
			}
		})
	}
}

func TestPendingOrderAckAndReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "edge.db")
	db, err := Open(path, Options{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	t0 := time.Date(2026, 9, 5, 7, 0, 0, 0, time.UTC)
	var ids []string
	for i := 0; i < 10; i++ {
		ev := testEvent(t, wire.UnknownStudent, t0.Add(time.Duration(i)*time.Second))
		ids = append(ids, ev.EventID)
		if err := db.Enqueue(ctx, ev); err != nil {
			t.Fatal(err)
		}
	}
	recs, err := db.Pending(ctx, 3)
	if err != nil || len(recs) != 3 {
		t.Fatalf("pending: %d %v", len(recs), err)
	}
	for i, r := range recs {
		if r.EventID != ids[i] {
			t.Fatalf("row %d is %s want %s", i, r.EventID, ids[i])
		}
		ev, err := wire.DecodeEvent(r.Payload)
		if err != nil || ev.EventID != ids[i] {
			t.Fatalf("payload %d: %v", i, err)
		}
		if err := db.Ack(ctx, r.Seq); err != nil {
			t.Fatal(err)
		}
	}
	if err := db.Ack(ctx, recs[0].Seq); err != nil { // idempotent
		t.Fatal(err)
	}
	if db.Depth() != 7 {
		t.Fatalf("depth %d", db.Depth())
	}
	// Duplicate event_id is refused, not silently dropped.
	dup := testEvent(t, wire.UnknownStudent, t0)
	dup.EventID = ids[5]
	if err := db.Enqueue(ctx, dup); err == nil {
		t.Fatal("duplicate event_id accepted")
	}
	db.Close()

	db2 := open(t, path, Options{})
	if db2.Depth() != 7 {
		t.Fatalf("after reopen depth %d", db2.Depth())
	}
	recs, err = db2.Pending(ctx, 100)
	if err != nil || len(recs) != 7 || recs[0].EventID != ids[3] || recs[6].EventID != ids[9] {
		t.Fatalf("after reopen: %d %v", len(recs), err)
	}
}

func TestOutboxFullIsAnError(t *testing.T) {
	db := open(t, filepath.Join(t.TempDir(), "edge.db"), Options{MaxOutbox: 3})
	ctx := context.Background()
	t0 := time.Date(2026, 9, 5, 7, 0, 0, 0, time.UTC)
	for i := 0; i < 3; i++ {
		if err := db.Enqueue(ctx, testEvent(t, wire.UnknownStudent, t0)); err != nil {
			t.Fatal(err)
		}
	}
	err := db.Enqueue(ctx, testEvent(t, wire.UnknownStudent, t0))
	if !errors.Is(err, ErrOutboxFull) {
		t.Fatalf("got %v, want ErrOutboxFull", err)
	}
	// A debounced enqueue refused because the outbox is full must not burn
	// its key: once there is room, the same key is accepted.
	ok, err := db.EnqueueDebounced(ctx, testEvent(t, "079123456789", t0), "k", t0, 0)
	if ok || !errors.Is(err, ErrOutboxFull) {
		t.Fatalf("debounced on full: %v %v", ok, err)
	}
	recs, _ := db.Pending(ctx, 1)
	if err := db.Ack(ctx, recs[0].Seq); err != nil {
		t.Fatal(err)
	}
	ok, err = db.EnqueueDebounced(ctx, testEvent(t, "079123456789", t0), "k", t0, 0)
	if !ok || err != nil {
		t.Fatalf("after room: %v %v", ok, err)
	}
}

func TestInvalidEventRejected(t *testing.T) {
	db := open(t, filepath.Join(t.TempDir(), "edge.db"), Options{})
	ev := testEvent(t, "12345", time.Now())
	err := db.Enqueue(context.Background(), ev)
	var fe *conf.FieldError
	if !errors.As(err, &fe) || fe.Field != "student_id" {
		t.Fatalf("got %v", err)
	}
	if db.Depth() != 0 {
		t.Fatal("invalid event stored")
	}
}

func TestKV(t *testing.T) {
	db := open(t, filepath.Join(t.TempDir(), "edge.db"), Options{})
	ctx := context.Background()
	if _, ok, err := db.Get(ctx, "x"); ok || err != nil {
		t.Fatal(ok, err)
	}
	if err := db.Set(ctx, "x", "1"); err != nil {
		t.Fatal(err)
	}
	if err := db.Set(ctx, "x", "2"); err != nil {
		t.Fatal(err)
	}
	if v, ok, err := db.Get(ctx, "x"); !ok || err != nil || v != "2" {
		t.Fatal(v, ok, err)
	}
}

func TestOpenErrors(t *testing.T) {
	if _, err := Open("", Options{}, nil); err == nil {
		t.Fatal("empty path accepted")
	}
	if _, err := Open(filepath.Join(t.TempDir(), "no", "such", "dir", "x.db"), Options{}, nil); err == nil {
		t.Fatal("missing dir accepted")
	}
	if _, err := Open(filepath.Join(t.TempDir(), "x.db"), Options{MaxOutbox: -1}, nil); err == nil {
		t.Fatal("negative max_outbox accepted")
	}
}

func BenchmarkEnqueueDebounced(b *testing.B) {
	db, err := Open(filepath.Join(b.TempDir(), "edge.db"), Options{MaxOutbox: 1 << 30}, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	t0 := time.Date(2026, 9, 5, 7, 0, 0, 0, time.UTC)
	for i := 0; b.Loop(); i++ {
		if _, err := db.EnqueueDebounced(context.Background(), testEvent(b, "079123456789", t0), "k"+strconv.Itoa(i), t0, 0); err != nil {
			b.Fatal(err)
		}
	}
}
