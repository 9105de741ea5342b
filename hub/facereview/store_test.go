package facereview_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/diemdanh/diemdanh/hub/facereview"
	"github.com/diemdanh/diemdanh/models/wire"
)

// TestIngestExactlyOnce: a message is stored once however often it is
// delivered; every field the gate sent comes back, with the hub clock as
// received_at.
func TestIngestExactlyOnce(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	g := f.gates[0]
	u := f.capture(t, g, f.clock().Add(-time.Minute))
	near := f.capture(t, g, f.clock().Add(-2*time.Minute))
	near.Kind, near.Vote = wire.KindNearMiss, &wire.Candidate{StudentID: near.Candidates[0].StudentID, Distance: 0.91, Margin: 0.2}
	for _, tc := range []struct {
		name       string
		u          *wire.Unrecognised
		deliveries int
	}{{"unrecognised delivered once", u, 1}, {"near miss delivered three times", near, 3}} {
		t.Run(tc.name, func(t *testing.T) {
			stored := 0
			for i := 0; i < tc.deliveries; i++ {
				ok, err := f.st.Ingest(ctx, tc.u)
				if err != nil {
					t.Fatal(err)
				}
				if ok {
					stored++
				}
			}
			if stored != 1 {
				t.Fatalf("stored %d times, want once", stored)
			}
			if n := f.count(t, `SELECT count(*) FROM unrecognised_faces WHERE capture_id = ?`, tc.u.CaptureID); n != 1 {
				t.Fatalf("%d rows, want 1", n)
			}
			var id int64
			if err := f.db.R.QueryRow(`SELECT id FROM unrecognised_faces WHERE capture_id = ?`, tc.u.CaptureID).Scan(&id); err != nil {
				t.Fatal(err)
			}
			got, err := f.st.Get(ctx, id)
			if err != nil {
				t.Fatal(err)
			}
			checkFace(t, got, tc.u, f.clock().UnixMilli())
			crop, err := f.st.Crop(ctx, id)
			if err != nil || !bytes.Equal(crop, tc.u.FaceJPEG) {
				t.Fatalf("crop: %d bytes, %v; want the %d bytes sent", len(crop), err, len(tc.u.FaceJPEG))
			}
		})
	}
}

func checkFace(t *testing.T, got facereview.Face, u *wire.Unrecognised, received int64) {
	t.Helper()
	switch {
	case got.CaptureID != u.CaptureID || got.SchoolID != u.SchoolID || got.GateID != u.GateID:
		t.Errorf("identity %s/%s/%s, want %s/%s/%s", got.CaptureID, got.SchoolID, got.GateID, u.CaptureID, u.SchoolID, u.GateID)
	case got.Direction != u.Direction || got.Kind != u.Kind:
		t.Errorf("direction/kind %s/%s, want %s/%s", got.Direction, got.Kind, u.Direction, u.Kind)
	case got.CapturedAt != u.CapturedAt || got.ReceivedAt != received:
		t.Errorf("captured/received %d/%d, want %d/%d", got.CapturedAt, got.ReceivedAt, u.CapturedAt, received)
	case got.Quality != u.Quality:
		t.Errorf("quality %+v, want %+v", got.Quality, u.Quality)
	case len(got.Candidates) != len(u.Candidates) || got.Candidates[2] != u.Candidates[2]:
		t.Errorf("candidates %+v, want %+v", got.Candidates, u.Candidates)
	case (got.Vote == nil) != (u.Vote == nil) || (u.Vote != nil && *got.Vote != *u.Vote):
		t.Errorf("vote %+v, want %+v", got.Vote, u.Vote)
	case got.Model != u.Model.Name+"@"+u.Model.Version || got.GalleryVersion != u.GalleryVer:
		t.Errorf("model %s v%d, want %s v%d", got.Model, got.GalleryVersion, u.Model, u.GalleryVer)
	case got.FramesDescribed != u.FramesDescribed:
		t.Errorf("frames described %d, want %d", got.FramesDescribed, u.FramesDescribed)
	case got.Status != facereview.StatusOpen || got.PupilID != "" || len(got.DismissedFor) != 0:
		t.Errorf("a new face is %s (pupil %q, dismissed for %v), want open", got.Status, got.PupilID, got.DismissedFor)
	}
}

// TestIngestRefusesForeignAndUnknownGates: only an active gate of the
// message's school is taken; nothing is stored otherwise.
func TestIngestRefusesForeignAndUnknownGates(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	if _, err := f.db.W.Exec(`UPDATE gates SET active = 0 WHERE id = ?`, f.gates[1].ID); err != nil {
		t.Fatal(err)
	}
	a, b := f.gates[0], f.gates[2] // thcs-a and thcs-b
	if a.School == b.School {
		t.Fatalf("fixture: gates %s and %s are of one school", a.ID, b.ID)
	}
	for _, tc := range []struct {
		name   string
		edit   func(*wire.Unrecognised)
		reason string
	}{
		{"unknown gate", func(u *wire.Unrecognised) { u.GateID = "gate9" }, "unknown gate"},
		{"gate of another school", func(u *wire.Unrecognised) { u.GateID = b.ID }, "does not belong to school"},
		{"inactive gate", func(u *wire.Unrecognised) { u.GateID = f.gates[1].ID }, "not active"},
		{"broken contract", func(u *wire.Unrecognised) { u.Candidates = nil }, "candidates"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			u := f.capture(t, a, f.clock().Add(-time.Minute))
			tc.edit(u)
			stored, err := f.st.Ingest(ctx, u)
			if stored || !errors.Is(err, facereview.ErrRefused) || !strings.Contains(err.Error(), tc.reason) {
				t.Fatalf("got %v, %v; want refused naming %q", stored, err, tc.reason)
			}
			if n := f.count(t, `SELECT count(*) FROM unrecognised_faces`); n != 0 {
				t.Fatalf("%d rows stored", n)
			}
		})
	}
}

// TestCropEncryptedAtRest: neither the JPEG nor its base64 is anywhere in
// the database files (main file and WAL) once the face is stored.
func TestCropEncryptedAtRest(t *testing.T) {
	f := newFixture(t)
	u := f.capture(t, f.gates[0], f.clock().Add(-time.Minute))
	id := f.ingest(t, u)
	if crop, err := f.st.Crop(context.Background(), id); err != nil || !bytes.Equal(crop, u.FaceJPEG) {
		t.Fatalf("crop does not round-trip: %v", err)
	}
	var raw []byte
	for _, p := range []string{f.db.Path, f.db.Path + "-wal"} {
		b, err := os.ReadFile(p)
		if err != nil && !os.IsNotExist(err) {
			t.Fatal(err)
		}
		raw = append(raw, b...)
	}
	if len(raw) < len(u.FaceJPEG) {
		t.Fatalf("read %d bytes of database: not the files", len(raw))
	}
	// SQLite splits a blob over pages, so look for every 32-byte piece.
	b64 := []byte(base64.StdEncoding.EncodeToString(u.FaceJPEG))
	for name, s := range map[string][]byte{"the JPEG": u.FaceJPEG, "its base64": b64} {
		found := 0
		for i := 0; i+32 <= len(s); i += 32 {
			if bytes.Contains(raw, s[i:i+32]) {
				found++
			}
		}
		if found > 0 {
			t.Errorf("%d pieces of %s (%d bytes) are in the database files in clear", found, name, len(s))
		}
	}
}

// TestWrongKeyRefuses: a crop opens only with the key it was sealed with,
// and only in its own row.
func TestWrongKeyRefuses(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	id1 := f.ingest(t, f.capture(t, f.gates[0], f.clock().Add(-time.Minute)))
	id2 := f.ingest(t, f.capture(t, f.gates[0], f.clock().Add(-2*time.Minute)))
	other := f.open(t, newKey(t))
	if _, err := f.st.Crop(ctx, id1); err != nil {
		t.Fatalf("right key: %v", err)
	}
	for _, tc := range []struct {
		name string
		prep func(t *testing.T)
		st   *facereview.Store
		id   int64
	}{
		{"another key", func(*testing.T) {}, other, id1},
		{"crop moved to another row", func(t *testing.T) {
			if _, err := f.db.W.Exec(`UPDATE unrecognised_faces SET crop = (SELECT crop FROM unrecognised_faces WHERE id = ?) WHERE id = ?`, id1, id2); err != nil {
				t.Fatal(err)
			}
		}, f.st, id2},
		{"ciphertext cut short", func(t *testing.T) {
			if _, err := f.db.W.Exec(`UPDATE unrecognised_faces SET crop = substr(crop, 1, 20) WHERE id = ?`, id1); err != nil {
				t.Fatal(err)
			}
		}, f.st, id1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.prep(t)
			crop, err := tc.st.Crop(ctx, tc.id)
			if !errors.Is(err, facereview.ErrUnreadable) || crop != nil {
				t.Fatalf("got %d bytes, %v; want ErrUnreadable", len(crop), err)
			}
		})
	}
	if _, err := facereview.New(f.db, f.key[:16], f.audit, facereview.Default(), nil, f.clock); err == nil {
		t.Fatal("a 16-byte key was accepted")
	}
}
