package ingest_test

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/base64"
	"encoding/json"
	"image"
	"image/jpeg"
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
	"github.com/diemdanh/diemdanh/models/wire"
)

// realCrop is a gate-sized face crop cut from a real test photo
// ($ATTENDANCE_TESTDATA/faces; the test fails when it is missing).
func realCrop(t *testing.T) []byte {
	t.Helper()
	dir, err := conf.TestDataDir()
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(dir, "faces", "images", "joy.jpg"))
	if err != nil {
		t.Fatal(err)
	}
	img, err := jpeg.Decode(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	r := img.Bounds()
	c := image.Rect(r.Dx()/2-90, r.Dy()/3-90, r.Dx()/2+90, r.Dy()/3+90)
	var out bytes.Buffer
	if err := jpeg.Encode(&out, img.(interface {
		SubImage(image.Rectangle) image.Image
	}).SubImage(c), &jpeg.Options{Quality: 80}); err != nil {
		t.Fatal(err)
	}
	if out.Len() > wire.MaxCropBytes {
		t.Fatalf("crop %d bytes is over the wire limit", out.Len())
	}
	return out.Bytes()
}

// TestSecurityCropKeptOnlyWhereConsentAllowsSnapshots: a gate event's face
// crop is stored only when the pupil's consent in force allows snapshots,
// decided in the ingest transaction — never stored to be deleted later by
// the retention job (which this test never runs). Listeners are not handed
// a crop that was not stored. Unknown faces keep theirs (the documented
// policy: deleted after the retention period; no page serves them).
func TestSecurityCropKeptOnlyWhereConsentAllowsSnapshots(t *testing.T) {
	ctx := context.Background()
	db, err := store.Open(ctx, filepath.Join(t.TempDir(), "hub.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	gates, pupils, err := ingesttest.Seed(ctx, db, []string{"thcs-a"}, 1, 8)
	if err != nil {
		t.Fatal(err)
	}
	tpl, err := facetemplates.Open(db, bytes.Repeat([]byte{7}, facetemplates.KeySize), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	reg := consent.New(db, tpl, audit.New(db, nil, nil), nil, nil)
	f := &fixture{db: db, gates: gates, now: time.Now()}
	in, err := ingest.New(db, ingest.Default(), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	in.AddListener(f)
	in.Start(ctx)
	t.Cleanup(in.Close)

	crop := realCrop(t)
	grant := func(pupil string, snapshots bool, given time.Time) {
		t.Helper()
		if _, err := reg.Record(ctx, "admin:test", consent.Grant{PupilID: pupil, GuardianName: "Mẹ", PupilConsented: true,
			ScopeFace: true, ScopeSnapshots: snapshots, DocumentRef: "DK-" + pupil, GivenAt: given.UnixMilli()}); err != nil {
			t.Fatal(err)
		}
	}
	earlier := time.Now().Add(-48 * time.Hour)
	cases := []struct {
		name    string
		pupil   string // "" = an unknown face
		consent func(pupil string)
		stored  bool
	}{
		{"consent with snapshots", pupils["thcs-a"][0], func(p string) { grant(p, true, time.Now()) }, true},
		{"consent without snapshots", pupils["thcs-a"][1], func(p string) { grant(p, false, time.Now()) }, false},
		{"no consent", pupils["thcs-a"][2], func(string) {}, false},
		{"withdrawn consent that had snapshots", pupils["thcs-a"][3], func(p string) {
			grant(p, true, earlier)
			if _, err := reg.Withdraw(ctx, "admin:test", p, "gia đình rút lại"); err != nil {
				t.Fatal(err)
			}
		}, false},
		{"later consent drops snapshots", pupils["thcs-a"][4], func(p string) {
			grant(p, true, earlier)
			grant(p, false, time.Now())
		}, false},
		{"later consent adds snapshots", pupils["thcs-a"][5], func(p string) {
			grant(p, false, earlier)
			grant(p, true, time.Now())
		}, true},
		{"unknown face", "", func(string) {}, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			student := c.pupil
			if student == "" {
				student = wire.UnknownStudent
			}
			c.consent(c.pupil)
			ev := ingesttest.Event(gates[0], student, time.Now().Add(-time.Second))
			ev.FaceJPEG = crop
			res, err := in.Handle(ctx, ingest.Message{Topic: wire.EventTopic(ev.SchoolID, ev.GateID), Payload: ingesttest.Payload(ev), ClientID: gates[0].Username})
			if err != nil || res != ingest.Stored {
				t.Fatalf("ingest: %v %v; want stored", res, err)
			}
			var got []byte
			if err := db.R.QueryRow(`SELECT face_jpeg FROM events WHERE event_id = ?`, ev.EventID).Scan(&got); err != nil && err != sql.ErrNoRows {
				t.Fatal(err)
			}
			switch {
			case c.stored && !bytes.Equal(got, crop):
				t.Fatalf("crop not stored (%d bytes) though the consent allows snapshots", len(got))
			case !c.stored && got != nil:
				t.Fatalf("crop of %d bytes stored though the consent does not allow snapshots", len(got))
			}
			// Listeners run after the commit, asynchronously.
			deadline := time.Now().Add(5 * time.Second)
			for {
				f.mu.Lock()
				var seen *ingest.StoredEvent
				for i := range f.seen {
					if f.seen[i].EventID == ev.EventID {
						seen = &f.seen[i]
					}
				}
				f.mu.Unlock()
				if seen != nil {
					if (len(seen.FaceJPEG) > 0) != c.stored {
						t.Fatalf("listener got a %d-byte crop; stored %v", len(seen.FaceJPEG), c.stored)
					}
					break
				}
				if time.Now().After(deadline) {
					t.Fatal("listener never told")
				}
				time.Sleep(10 * time.Millisecond)
			}
		})
	}
	var retention int
	if err := db.R.QueryRow(`SELECT count(*) FROM audit_log WHERE action = ?`, audit.ActionRetention).Scan(&retention); err != nil || retention != 0 {
		t.Fatalf("the retention job ran (%d, %v): the test must not rely on it", retention, err)
	}
}

// TestSecurityQuarantineKeepsNoCrop: a refused event (unknown pupil, a
// pupil of another school, a bad field) goes to quarantine for diagnosis,
// but its face crop does not: no consent covers it and the retention job
// never looks there.
func TestSecurityQuarantineKeepsNoCrop(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	crop := realCrop(t)
	b64 := base64.StdEncoding.EncodeToString(crop)
	g := f.gates[0]
	cases := []struct {
		name, reason string
		mut          func(*wire.Event)
	}{
		{"unknown pupil", "unknown pupil", func(e *wire.Event) { e.StudentID = "999999999999" }},
		{"pupil of another school", "unknown pupil", func(e *wire.Event) { e.StudentID = f.pupils["thcs-b"][0] }},
		{"captured in the future", "in the future", func(e *wire.Event) { e.CapturedAt = f.now.Add(time.Hour).UnixMilli() }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ev := ingesttest.Event(g, f.pupils["thcs-a"][0], f.now.Add(-time.Minute))
			ev.FaceJPEG = crop
			c.mut(&ev)
			payload, err := json.Marshal(ev)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Contains(payload, []byte(b64)) {
				t.Fatal("the payload does not carry the crop")
			}
			res, err := f.in.Handle(ctx, ingest.Message{Topic: wire.EventTopic(g.School, g.ID), Payload: payload, ClientID: g.Username})
			if err != nil || res != ingest.Quarantined {
				t.Fatalf("%v %v; want quarantined", res, err)
			}
			var reason string
			var kept []byte
			if err := f.db.R.QueryRow(`SELECT reason, payload FROM quarantine ORDER BY id DESC LIMIT 1`).Scan(&reason, &kept); err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(reason, c.reason) {
				t.Fatalf("reason %q", reason)
			}
			if bytes.Contains(kept, []byte(b64[:64])) {
				t.Fatalf("quarantine kept the face crop (%d-byte payload)", len(kept))
			}
			if !bytes.Contains(kept, []byte(ev.EventID)) || !bytes.Contains(kept, []byte(`"face_jpeg":"(removed)"`)) {
				t.Fatalf("quarantined payload lost its diagnosis: %.300s", kept)
			}
		})
	}
}
