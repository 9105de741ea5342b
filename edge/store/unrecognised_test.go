package store

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"image"
	"image/jpeg"
	"path/filepath"
	"testing"
	"time"

	"github.com/diemdanh/diemdanh/models/conf"
	"github.com/diemdanh/diemdanh/models/match"
	"github.com/diemdanh/diemdanh/models/wire"
)

func testUnrecognised(t testing.TB, at time.Time) *wire.Unrecognised {
	t.Helper()
	var jb bytes.Buffer
	if err := jpeg.Encode(&jb, image.NewGray(image.Rect(0, 0, 16, 16)), nil); err != nil {
		t.Fatal(err)
	}
	return &wire.Unrecognised{Schema: wire.SchemaVersion, CaptureID: wire.NewEventID(), SchoolID: "thcs-a", GateID: "gate-1",
		Direction: wire.DirectionIn, Kind: wire.KindUnrecognised, CapturedAt: at.UnixMilli(), FaceJPEG: jb.Bytes(),
		Quality:         match.Quality{SizePx: 90, Sharpness: 120, Brightness: 110},
		Candidates:      []wire.Candidate{{StudentID: "079123456789", Distance: 0.8, Margin: 10}},
		FramesDescribed: 3, Model: match.DlibResNetV1, GalleryVer: 4}
}

// TestUnrecognisedInOutbox: unrecognised faces and events share the
// outbox in commit order, each row with its kind and payload, across a
// reopen of the file.
func TestUnrecognisedInOutbox(t *testing.T) {
	path := filepath.Join(t.TempDir(), "edge.db")
	db, err := Open(path, Options{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	t0 := time.Date(2026, 9, 5, 7, 0, 0, 0, time.UTC)
	ev1, u, ev2 := testEvent(t, "079123456789", t0), testUnrecognised(t, t0.Add(time.Second)), testEvent(t, wire.UnknownStudent, t0)
	if err := db.Enqueue(ctx, ev1); err != nil {
		t.Fatal(err)
	}
	if err := db.EnqueueUnrecognised(ctx, u); err != nil {
		t.Fatal(err)
	}
	if err := db.Enqueue(ctx, ev2); err != nil {
		t.Fatal(err)
	}
	dup := testUnrecognised(t, t0)
	dup.CaptureID = u.CaptureID
	if err := db.EnqueueUnrecognised(ctx, dup); err == nil {
		t.Fatal("duplicate capture_id accepted")
	}
	db.Close()

	db2 := open(t, path, Options{})
	if db2.Depth() != 3 {
		t.Fatalf("after reopen depth %d, want 3", db2.Depth())
	}
	recs, err := db2.Pending(ctx, 10)
	if err != nil || len(recs) != 3 {
		t.Fatalf("pending: %d %v", len(recs), err)
	}
	want := []struct{ kind, id string }{{wire.TopicKindEvents, ev1.EventID}, {wire.TopicKindUnrecognised, u.CaptureID},
		{wire.TopicKindEvents, ev2.EventID}}
	for i, w := range want {
		if recs[i].Kind != w.kind || recs[i].EventID != w.id {
			t.Fatalf("row %d: %s %s, want %s %s", i, recs[i].Kind, recs[i].EventID, w.kind, w.id)
		}
	}
	got, err := wire.DecodeUnrecognised(recs[1].Payload)
	if err != nil || got.CaptureID != u.CaptureID || !bytes.Equal(got.FaceJPEG, u.FaceJPEG) {
		t.Fatalf("unrecognised payload: %v", err)
	}
	if !recs[1].CreatedAt.Equal(t0.Add(time.Second)) {
		t.Fatalf("created_at %v, want the capture time", recs[1].CreatedAt)
	}
	evb, _ := ev1.Encode()
	if !bytes.Equal(recs[0].Payload, evb) {
		t.Fatal("event payload differs from Event.Encode")
	}
}

// TestUnrecognisedTakeAtMostHalf: unrecognised faces are refused once the
// outbox is half full; events fill the rest.
func TestUnrecognisedTakeAtMostHalf(t *testing.T) {
	db := open(t, filepath.Join(t.TempDir(), "edge.db"), Options{MaxOutbox: 4})
	ctx := context.Background()
	t0 := time.Date(2026, 9, 5, 7, 0, 0, 0, time.UTC)
	steps := []struct {
		unrecognised bool
		full         bool
	}{{true, false}, {true, false}, {true, true}, {false, false}, {false, false}, {true, true}, {false, true}}
	for i, st := range steps {
		var err error
		if st.unrecognised {
			err = db.EnqueueUnrecognised(ctx, testUnrecognised(t, t0))
		} else {
			err = db.Enqueue(ctx, testEvent(t, wire.UnknownStudent, t0))
		}
		if errors.Is(err, ErrOutboxFull) != st.full || (err != nil && !st.full) {
			t.Fatalf("step %d (unrecognised %v): %v, want full %v", i, st.unrecognised, err, st.full)
		}
	}
	if db.Depth() != 4 {
		t.Fatalf("depth %d, want 4", db.Depth())
	}
}

func TestInvalidUnrecognisedRejected(t *testing.T) {
	db := open(t, filepath.Join(t.TempDir(), "edge.db"), Options{})
	u := testUnrecognised(t, time.Now())
	u.Candidates = nil
	err := db.EnqueueUnrecognised(context.Background(), u)
	var fe *conf.FieldError
	if !errors.As(err, &fe) || fe.Field != "candidates" {
		t.Fatalf("got %v, want an error on candidates", err)
	}
	if db.Depth() != 0 {
		t.Fatal("invalid message stored")
	}
}

// TestMigrateOutboxKind: a file written before the outbox had kinds
// (user_version 1) opens with its waiting events intact, as events.
func TestMigrateOutboxKind(t *testing.T) {
	path := filepath.Join(t.TempDir(), "edge.db")
	raw, err := sql.Open("sqlite3", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	schema1, err := migrationFS.ReadFile("migrations/0001_init.sql")
	if err != nil {
		t.Fatal(err)
	}
	ev := testEvent(t, "079123456789", time.Date(2026, 9, 5, 7, 0, 0, 0, time.UTC))
	payload, _ := ev.Encode()
	for _, q := range []string{string(schema1), `PRAGMA user_version = 1`} {
		if _, err := raw.Exec(q); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := raw.Exec(`INSERT INTO outbox(event_id, payload, created_at) VALUES(?, ?, ?)`, ev.EventID, payload, ev.CapturedAt); err != nil {
		t.Fatal(err)
	}
	raw.Close()

	db := open(t, path, Options{})
	var v int
	if err := db.w.QueryRow(`PRAGMA user_version`).Scan(&v); err != nil || v != 2 {
		t.Fatalf("user_version %d %v, want 2", v, err)
	}
	recs, err := db.Pending(context.Background(), 10)
	if err != nil || len(recs) != 1 || recs[0].Kind != wire.TopicKindEvents || recs[0].EventID != ev.EventID || !bytes.Equal(recs[0].Payload, payload) {
		t.Fatalf("after migration: %+v %v", recs, err)
	}
	if err := db.EnqueueUnrecognised(context.Background(), testUnrecognised(t, time.Now())); err != nil {
		t.Fatal(err)
	}
}
