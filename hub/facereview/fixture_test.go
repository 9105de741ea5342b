package facereview_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"image"
	"image/jpeg"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/diemdanh/diemdanh/hub/audit"
	"github.com/diemdanh/diemdanh/hub/facereview"
	"github.com/diemdanh/diemdanh/hub/ingest/ingesttest"
	"github.com/diemdanh/diemdanh/hub/store"
	"github.com/diemdanh/diemdanh/models/conf"
	"github.com/diemdanh/diemdanh/models/match"
	"github.com/diemdanh/diemdanh/models/wire"
)

// fixture is a hub database with two schools (thcs-a, thcs-b), two gates
// and five pupils each, an audit log, a settable clock and the store.
type fixture struct {
	db     *store.DB
	audit  *audit.Log
	st     *facereview.Store
	key    []byte
	gates  []ingesttest.Gate
	pupils map[string][]string

	mu  sync.Mutex
	now time.Time
}

func (f *fixture) clock() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.now
}

func (f *fixture) advance(d time.Duration) {
	f.mu.Lock()
	f.now = f.now.Add(d)
	f.mu.Unlock()
}

func newKey(t *testing.T) []byte {
	t.Helper()
	k := make([]byte, facereview.KeySize)
	if _, err := rand.Read(k); err != nil {
		t.Fatal(err)
	}
	return k
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	ctx := context.Background()
	db, err := store.Open(ctx, filepath.Join(t.TempDir(), "hub.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	// 07:00 in Ho Chi Minh City on a school day.
	f := &fixture{db: db, key: newKey(t), now: time.Date(2026, 11, 20, 0, 0, 0, 0, time.UTC)}
	f.gates, f.pupils, err = ingesttest.Seed(ctx, db, []string{"thcs-a", "thcs-b"}, 2, 5)
	if err != nil {
		t.Fatal(err)
	}
	f.audit = audit.New(db, nil, f.clock)
	f.st = f.open(t, f.key)
	return f
}

// open makes another store over the fixture's database with key.
func (f *fixture) open(t *testing.T, key []byte) *facereview.Store {
	t.Helper()
	st, err := facereview.New(f.db, key, f.audit, facereview.Default(), nil, f.clock)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func (f *fixture) count(t *testing.T, q string, args ...any) int {
	t.Helper()
	var n int
	if err := f.db.R.QueryRow(q, args...).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

var (
	cropOnce sync.Once
	cropJPEG []byte
	cropErr  error
)

// realCrop is a gate-sized face crop cut from a real test photo
// ($ATTENDANCE_TESTDATA/faces; the test fails when it is missing).
func realCrop(t *testing.T) []byte {
	t.Helper()
	cropOnce.Do(func() { cropJPEG, cropErr = cutCrop() })
	if cropErr != nil {
		t.Fatal(cropErr)
	}
	return cropJPEG
}

func cutCrop() ([]byte, error) {
	dir, err := conf.TestDataDir()
	if err != nil {
		return nil, err
	}
	b, err := os.ReadFile(filepath.Join(dir, "faces", "images", "joy.jpg"))
	if err != nil {
		return nil, err
	}
	img, err := jpeg.Decode(bytes.NewReader(b))
	if err != nil {
		return nil, err
	}
	r := img.Bounds()
	c := image.Rect(r.Dx()/2-60, r.Dy()/3-60, r.Dx()/2+60, r.Dy()/3+60)
	var out bytes.Buffer
	err = jpeg.Encode(&out, img.(interface {
		SubImage(image.Rectangle) image.Image
	}).SubImage(c), &jpeg.Options{Quality: 80})
	return out.Bytes(), err
}

// capture is a valid Unrecognised message from gate g at time at, whose
// nearest pupils are the first three of the gate's school.
func (f *fixture) capture(t *testing.T, g ingesttest.Gate, at time.Time) *wire.Unrecognised {
	t.Helper()
	ps := f.pupils[g.School]
	return &wire.Unrecognised{
		Schema: wire.SchemaVersion, CaptureID: wire.NewEventID(), SchoolID: g.School, GateID: g.ID,
		Direction: wire.DirectionIn, Kind: wire.KindUnrecognised, CapturedAt: at.UnixMilli(),
		FaceJPEG: realCrop(t), Quality: match.Quality{SizePx: 96, Sharpness: 140, YawDeg: 4, RollDeg: 1, Brightness: 120},
		Candidates: []wire.Candidate{
			{StudentID: ps[0], Distance: 1.02, Margin: 0.05},
			{StudentID: ps[1], Distance: 1.07, Margin: 0.08},
			{StudentID: ps[2], Distance: 1.15, Margin: 0.1},
		},
		FramesDescribed: 4, Model: match.DefaultEmbedder, GalleryVer: 3,
	}
}

// ingest stores u and fails the test unless it was new.
func (f *fixture) ingest(t *testing.T, u *wire.Unrecognised) int64 {
	t.Helper()
	stored, err := f.st.Ingest(context.Background(), u)
	if err != nil || !stored {
		t.Fatalf("ingest: stored %v, %v", stored, err)
	}
	var id int64
	if err := f.db.R.QueryRow(`SELECT id FROM unrecognised_faces WHERE capture_id = ?`, u.CaptureID).Scan(&id); err != nil {
		t.Fatal(err)
	}
	return id
}
