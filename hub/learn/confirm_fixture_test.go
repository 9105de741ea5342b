package learn_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"image"
	"image/color"
	"image/jpeg"
	"math"
	mrand "math/rand/v2"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/diemdanh/diemdanh/hub/attendance"
	"github.com/diemdanh/diemdanh/hub/audit"
	"github.com/diemdanh/diemdanh/hub/consent"
	"github.com/diemdanh/diemdanh/hub/facereview"
	"github.com/diemdanh/diemdanh/hub/facetemplates"
	"github.com/diemdanh/diemdanh/hub/ingest"
	"github.com/diemdanh/diemdanh/hub/ingest/ingesttest"
	"github.com/diemdanh/diemdanh/hub/learn"
	"github.com/diemdanh/diemdanh/hub/store"
	"github.com/diemdanh/diemdanh/models/match"
	"github.com/diemdanh/diemdanh/models/wire"
)

// confirmFixture is a hub database (real SQLite) with two schools, thcs-a
// and thcs-b, of two gates and five pupils each (class <school>-1a), a
// second class thcs-a-2b, and the real stores a confirmation goes
// through, on a settable clock: 07:30 in Ho Chi Minh City on Friday
// 20/11/2026.
type confirmFixture struct {
	db      *store.DB
	audit   *audit.Log
	review  *facereview.Store
	tpl     *facetemplates.Store
	att     *attendance.Service
	consent *consent.Registry
	c       *learn.Confirmer
	gates   []ingesttest.Gate
	pupils  map[string][]string

	mu  sync.Mutex
	now time.Time
}

func (f *confirmFixture) clock() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.now
}

func newConfirmFixture(t *testing.T) *confirmFixture {
	t.Helper()
	ctx := context.Background()
	db, err := store.Open(ctx, filepath.Join(t.TempDir(), "hub.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	f := &confirmFixture{db: db, now: time.Date(2026, 11, 20, 0, 30, 0, 0, time.UTC)}
	if f.gates, f.pupils, err = ingesttest.Seed(ctx, db, []string{"thcs-a", "thcs-b"}, 2, 5); err != nil {
		t.Fatal(err)
	}
	f.exec(t, `INSERT INTO classes(id, school_id, name, grade) VALUES ('thcs-a-2b', 'thcs-a', '2B', 2)`)
	key := make([]byte, facereview.KeySize)
	if _, err := rand.Read(key); err != nil {
		t.Fatal(err)
	}
	f.audit = audit.New(db, nil, f.clock)
	if f.review, err = facereview.New(db, key, f.audit, facereview.Default(), nil, f.clock); err != nil {
		t.Fatal(err)
	}
	if f.tpl, err = facetemplates.Open(db, key, nil, f.clock); err != nil {
		t.Fatal(err)
	}
	f.att = attendance.New(db, attendance.Default(), nil, f.clock)
	f.consent = consent.New(db, f.tpl, f.audit, nil, f.clock)
	f.c, err = learn.NewConfirmer(learn.ConfirmDeps{Review: f.review, Attendance: f.att, Templates: f.tpl, Audit: f.audit})
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func (f *confirmFixture) exec(t *testing.T, q string, args ...any) {
	t.Helper()
	if _, err := f.db.W.Exec(q, args...); err != nil {
		t.Fatal(err)
	}
}

func (f *confirmFixture) count(t *testing.T, q string, args ...any) int {
	t.Helper()
	var n int
	if err := f.db.R.QueryRow(q, args...).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// grant records pupil's consent through hub/consent, with or without the
// gate-template scope and the pupil's own consent.
func (f *confirmFixture) grant(t *testing.T, pupil string, gateTemplates, own bool) {
	t.Helper()
	_, err := f.consent.Record(context.Background(), "admin:root", consent.Grant{PupilID: pupil, GuardianName: "Nguyễn Thị Mai",
		PupilConsented: own, ScopeFace: true, ScopePhotos: true, ScopeGateTemplates: &gateTemplates, DocumentRef: "DK-2026-17"})
	if err != nil {
		t.Fatal(err)
	}
}

// face stores a face the gate did not decide, seen at gate g at 07:10
// local with the given descriptor (nil: the gate sent none), and returns
// its ID and capture ID.
func (f *confirmFixture) face(t *testing.T, g ingesttest.Gate, desc match.Descriptor, model match.ModelID) (int64, string) {
	t.Helper()
	ps := f.pupils[g.School]
	u := &wire.Unrecognised{
		Schema: wire.SchemaVersion, CaptureID: wire.NewEventID(), SchoolID: g.School, GateID: g.ID,
		Direction: wire.DirectionIn, Kind: wire.KindUnrecognised, CapturedAt: f.clock().Add(-20 * time.Minute).UnixMilli(),
		FaceJPEG: testJPEG(t), Quality: match.Quality{SizePx: 96, Sharpness: 140, YawDeg: 4, RollDeg: 1, Brightness: 120},
		Candidates: []wire.Candidate{
			{StudentID: ps[0], Distance: 1.02, Margin: 0.05},
			{StudentID: ps[1], Distance: 1.07, Margin: 0.08},
			{StudentID: ps[2], Distance: 1.15, Margin: 0.1},
		},
		FramesDescribed: 4, Model: model, GalleryVer: 3,
	}
	if desc != nil {
		u.Descriptor = desc.Bytes()
	}
	if ok, err := f.review.Ingest(context.Background(), u); err != nil || !ok {
		t.Fatalf("ingest: %v, %v", ok, err)
	}
	var id int64
	if err := f.db.R.QueryRow(`SELECT id FROM unrecognised_faces WHERE capture_id = ?`, u.CaptureID).Scan(&id); err != nil {
		t.Fatal(err)
	}
	return id, u.CaptureID
}

// arrive stores a recognised arrival of pupil at gate g through the real
// ingest, at the given local time of the fixture's day.
func (f *confirmFixture) arrive(t *testing.T, g ingesttest.Gate, pupil string, at time.Time) {
	t.Helper()
	in, err := ingest.New(f.db, ingest.Default(), nil, f.clock)
	if err != nil {
		t.Fatal(err)
	}
	in.Start(context.Background())
	defer in.Close()
	ev := ingesttest.Event(g, pupil, at)
	res, err := in.Handle(context.Background(), ingest.Message{Topic: wire.EventTopic(g.School, g.ID), Payload: ingesttest.Payload(ev)})
	if err != nil || res != ingest.Stored {
		t.Fatalf("arrival: %v, %v", res, err)
	}
}

// descriptor is a unit-length 128-value descriptor drawn from seed.
func descriptor(seed uint64) match.Descriptor {
	r := mrand.New(mrand.NewPCG(seed, seed^0x9e37))
	d := make(match.Descriptor, match.DescriptorLen)
	var n float64
	for i := range d {
		v := r.NormFloat64()
		d[i], n = float32(v), n+v*v
	}
	for i := range d {
		d[i] /= float32(math.Sqrt(n))
	}
	return d
}

// testJPEG is a small grey gradient JPEG (the review store wants a
// complete JPEG; no face is needed to keep it).
func testJPEG(t *testing.T) []byte {
	t.Helper()
	im := image.NewGray(image.Rect(0, 0, 64, 64))
	for i := range im.Pix {
		im.Pix[i] = uint8(i)
	}
	im.Set(0, 0, color.Gray{Y: 255})
	var b bytes.Buffer
	if err := jpeg.Encode(&b, im, &jpeg.Options{Quality: 80}); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}
