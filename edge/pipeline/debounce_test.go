package pipeline

import (
	"context"
	"image"
	"path/filepath"
	"testing"
	"time"

	"github.com/diemdanh/diemdanh/edge/store"
	"github.com/diemdanh/diemdanh/models/match"
	"github.com/diemdanh/diemdanh/models/wire"
	"gocv.io/x/gocv"
)

type fixedGallery struct{ g *match.Gallery }

func (f fixedGallery) Current() (*wire.GalleryDoc, *match.Gallery) { return nil, f.g }

// nopDescriber is never called here: commit and the debounce do not describe.
type nopDescriber struct{}

func (nopDescriber) Model() match.ModelID { return match.DefaultEmbedder }

func (nopDescriber) DescribeCrop(context.Context, gocv.Mat, image.Rectangle) (*match.Face, error) {
	return nil, nil
}

// TestDebouncePersisted: one arrival per pupil per school day per
// direction, remembered across a reopen of the store (a gate restart).
func TestDebouncePersisted(t *testing.T) {
	vn, err := time.LoadLocation("Asia/Ho_Chi_Minh")
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "edge.db")
	day := time.Date(2026, 11, 23, 7, 5, 0, 0, vn)
	type step struct {
		name      string
		at        time.Time
		student   string
		direction string
		reopen    bool // reopen the store before this step
		want      bool // enqueued
	}
	steps := []step{
		{"first arrival", day, pupilA, "in", false, true},
		{"same pupil a minute later", day.Add(time.Minute), pupilA, "in", false, false},
		{"another pupil", day.Add(time.Minute), pupilB, "in", false, true},
		{"same pupil going out", day.Add(8 * time.Hour), pupilA, "out", false, true},
		{"after a restart, same day", day.Add(3 * time.Hour), pupilA, "in", true, false},
		{"after a restart, out again", day.Add(9 * time.Hour), pupilA, "out", false, false},
		// 23:30 UTC is 06:30 the next morning in Vietnam: a new school day.
		{"next school day by local time", time.Date(2026, 11, 23, 23, 30, 0, 0, time.UTC), pupilA, "in", true, true},
	}
	db, err := store.Open(path, store.DefaultOptions(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { db.Close() }()
	for _, s := range steps {
		if s.reopen {
			db.Close()
			if db, err = store.Open(path, store.DefaultOptions(), nil); err != nil {
				t.Fatal(err)
			}
		}
		cfg := DefaultConfig()
		cfg.SchoolID, cfg.GateID, cfg.Direction, cfg.Location = "school-1", "gate-1", s.direction, vn
		p, err := New(cfg, Deps{Describer: nopDescriber{}, Gallery: fixedGallery{match.NewGallery(1, match.DlibResNetV1)}, Outbox: db}, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		var got *EventInfo
		p.hooks.OnEvent = func(_ *wire.Event, info EventInfo) { got = &info }
		tr := &Track{ID: 1}
		d := Decision{OK: true, StudentID: s.student, Distance: 0.3, Margin: 0.1, FramesUsed: 2}
		e := p.emissionLocked(tr, d, 10, s.at, false)
		if err := p.commit(context.Background(), e); err != nil {
			t.Fatal(err)
		}
		if got == nil || got.Enqueued != s.want {
			t.Fatalf("%s: enqueued=%v want %v", s.name, got != nil && got.Enqueued, s.want)
		}
	}
	if db.Depth() != 4 {
		t.Fatalf("outbox depth %d, want 4", db.Depth())
	}
}

// nopOutbox is for tests that never commit an event; it drops
// unrecognised faces.
type nopOutbox struct{}

func (nopOutbox) EnqueueUnrecognised(context.Context, *wire.Unrecognised) error { return nil }

func (nopOutbox) EnqueueDebounced(context.Context, *wire.Event, string, time.Time, time.Duration) (bool, error) {
	panic("not used")
}
func (nopOutbox) Enqueue(context.Context, *wire.Event) error { panic("not used") }
