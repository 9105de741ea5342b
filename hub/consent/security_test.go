package consent_test

import (
	"bytes"
	"context"
	"errors"
	"image"
	"image/jpeg"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/diemdanh/diemdanh/hub/audit"
	"github.com/diemdanh/diemdanh/hub/consent"
	"github.com/diemdanh/diemdanh/hub/facetemplates"
	"github.com/diemdanh/diemdanh/hub/ingest"
	"github.com/diemdanh/diemdanh/hub/ingest/ingesttest"
	"github.com/diemdanh/diemdanh/hub/store"
	"github.com/diemdanh/diemdanh/models/conf"
	"github.com/diemdanh/diemdanh/models/match"
	"github.com/diemdanh/diemdanh/models/wire"
)

// realPhoto reads a test photo from $ATTENDANCE_TESTDATA/faces (the test
// fails when it is missing) and returns it whole and as a gate-sized crop.
func realPhoto(t *testing.T, name string) (photo, crop []byte) {
	t.Helper()
	dir, err := conf.TestDataDir()
	if err != nil {
		t.Fatal(err)
	}
	photo, err = os.ReadFile(filepath.Join(dir, "faces", "images", name))
	if err != nil {
		t.Fatal(err)
	}
	img, err := jpeg.Decode(bytes.NewReader(photo))
	if err != nil {
		t.Fatal(err)
	}
	r := img.Bounds()
	sub := img.(interface {
		SubImage(image.Rectangle) image.Image
	}).SubImage(image.Rect(r.Dx()/2-90, r.Dy()/3-90, r.Dx()/2+90, r.Dy()/3+90))
	var out bytes.Buffer
	if err := jpeg.Encode(&out, sub, &jpeg.Options{Quality: 80}); err != nil {
		t.Fatal(err)
	}
	return photo, out.Bytes()
}

// TestSecurityScopeChangeDeletesCropsAndPhotosAtOnce: recording a new
// consent whose scope leaves out snapshots (photos) deletes the pupil's
// gate face crops (kept enrolment photos) in the same transaction — not an
// hour later when the retention job runs (it never runs here) — and the
// deletion is audited. Crops come through the real ingester.
func TestSecurityScopeChangeDeletesCropsAndPhotosAtOnce(t *testing.T) {
	ctx := context.Background()
	db, err := store.Open(ctx, filepath.Join(t.TempDir(), "hub.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	gates, pupils, err := ingesttest.Seed(ctx, db, []string{"s1"}, 1, 4)
	if err != nil {
		t.Fatal(err)
	}
	tpl, err := facetemplates.Open(db, bytes.Repeat([]byte{5}, facetemplates.KeySize), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	al := audit.New(db, nil, nil)
	reg := consent.New(db, tpl, al, nil, nil)
	in, err := ingest.New(db, ingest.Default(), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	in.Start(ctx)
	t.Cleanup(in.Close)
	photo, crop := realPhoto(t, "bona2.jpg")
	grant := func(pupil string, snapshots, photos bool, given time.Time) {
		t.Helper()
		if _, err := reg.Record(ctx, "admin:test", consent.Grant{PupilID: pupil, GuardianName: "Mẹ", PupilConsented: true,
			ScopeFace: true, ScopeSnapshots: snapshots, ScopePhotos: photos, DocumentRef: "DK-" + pupil, GivenAt: given.UnixMilli()}); err != nil {
			t.Fatal(err)
		}
	}
	count := func(q string, args ...any) int {
		t.Helper()
		var n int
		if err := db.R.QueryRow(q, args...).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	rng := rand.New(rand.NewPCG(3, 3))
	cases := []struct {
		name                string
		snapshots, photos   bool // scope of the new consent
		wantCrops, wantPhot int
	}{
		{"same scope again", true, true, 2, 1},
		{"snapshots left out", false, true, 0, 1},
		{"photos left out", true, false, 2, 0},
		{"both left out", false, false, 0, 0},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			pupil := pupils["s1"][i]
			grant(pupil, true, true, time.Now().Add(-time.Hour))
			for k := 0; k < 2; k++ {
				ev := ingesttest.Event(gates[0], pupil, time.Now().Add(-time.Duration(k+1)*time.Minute))
				ev.FaceJPEG = crop
				if res, err := in.Handle(ctx, ingest.Message{Topic: wire.EventTopic("s1", gates[0].ID), Payload: ingesttest.Payload(ev), ClientID: "g"}); err != nil || res != ingest.Stored {
					t.Fatalf("ingest: %v %v", res, err)
				}
			}
			d := make(match.Descriptor, match.DescriptorLen)
			for j := range d {
				d[j] = float32(rng.NormFloat64() * 0.1)
			}
			tid, err := tpl.Add(ctx, pupil, d, tpl.Model(), match.Quality{SizePx: 150}, photo)
			if err != nil {
				t.Fatal(err)
			}
			if n := count(`SELECT count(*) FROM events WHERE student_id = ? AND face_jpeg IS NOT NULL`, pupil); n != 2 {
				t.Fatalf("%d crops stored under a consent with snapshots, want 2", n)
			}

			grant(pupil, c.snapshots, c.photos, time.Now())

			if n := count(`SELECT count(*) FROM events WHERE student_id = ? AND face_jpeg IS NOT NULL`, pupil); n != c.wantCrops {
				t.Errorf("crops after the new consent: %d, want %d", n, c.wantCrops)
			}
			if n := count(`SELECT count(*) FROM face_templates WHERE pupil_id = ? AND photo IS NOT NULL`, pupil); n != c.wantPhot {
				t.Errorf("kept photos after the new consent: %d, want %d", n, c.wantPhot)
			}
			if _, err := tpl.Photo(ctx, tid); (err == nil) != (c.wantPhot == 1) || (err != nil && !errors.Is(err, facetemplates.ErrNotFound)) {
				t.Errorf("photo of template %d: %v", tid, err)
			}
			if n := count(`SELECT count(*) FROM face_templates WHERE pupil_id = ?`, pupil); n != 1 {
				t.Errorf("the template itself must stay (%d)", n)
			}
			var details string
			if err := db.R.QueryRow(`SELECT detail FROM audit_log WHERE action = ? AND subject = ? ORDER BY id DESC LIMIT 1`,
				audit.ActionConsentGiven, "pupil:"+pupil).Scan(&details); err != nil {
				t.Fatal(err)
			}
			if got := strings.Contains(details, `"crops_deleted":2`); got != (c.wantCrops == 0) {
				t.Errorf("audit of the new consent: %s", details)
			}
			if got := strings.Contains(details, `"photos_deleted":1`); got != (c.wantPhot == 0) {
				t.Errorf("audit of the new consent: %s", details)
			}
		})
	}
	if n := count(`SELECT count(*) FROM audit_log WHERE action = ?`, audit.ActionRetention); n != 0 {
		t.Fatalf("the retention job ran %d times", n)
	}
}
