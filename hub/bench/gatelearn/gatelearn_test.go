package gatelearn

import (
	"bytes"
	"context"
	"encoding/json"
	"image"
	"image/color"
	"image/jpeg"
	"path/filepath"
	"testing"
	"time"

	"github.com/diemdanh/diemdanh/hub/facetemplates"
	"github.com/diemdanh/diemdanh/hub/ingest"
	"github.com/diemdanh/diemdanh/models/conf"
	"github.com/diemdanh/diemdanh/models/faceengine"
	"github.com/diemdanh/diemdanh/models/match"
	"github.com/diemdanh/diemdanh/models/wire"
)

const (
	school = "thcs-a"
	gate   = "gate-1"
	pupilA = "079012345601"
	pupilB = "079012345602"
	pupilC = "079012345603"
)

// fixture is a hub enrolled with three pupils from the shared test photos
// (bona, chaeyeon, chaeyoung), with the descriptors of the photos the
// tests walk.
type fixture struct {
	hub   *Hub
	eng   *faceengine.Engine
	desc  map[string]match.Descriptor // photo → descriptor
	photo func(string) string
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	data, err := conf.TestDataDir()
	if err != nil {
		t.Fatal(err)
	}
	ec := faceengine.DefaultEngineConfig()
	ec.ModelsDir, ec.Workers = conf.TestModelsDir(), 1
	eng, err := faceengine.NewEngine(ec, nil)
	if err != nil {
		t.Fatalf("face engine (MODELS_DIR): %v", err)
	}
	t.Cleanup(eng.Close)
	f := &fixture{eng: eng, desc: map[string]match.Descriptor{},
		photo: func(n string) string { return filepath.Join(data, "faces", "images", n) }}
	e := newEyes(eng)
	for _, n := range []string{"bona.jpg", "bona2.jpg", "chaeyeon.jpg", "chaeyeon2.jpg", "chaeyoung.jpg", "elkie.jpg"} {
		d, err := e.photo(context.Background(), f.photo(n))
		if err != nil || d == nil {
			t.Fatalf("%s: no face (%v)", n, err)
		}
		f.desc[n] = d
	}
	doc := &wire.GalleryDoc{Format: wire.GalleryFormat, SchoolID: school, Version: 1, Model: eng.Model()}
	for id, n := range map[string]string{pupilA: "bona.jpg", pupilB: "chaeyeon.jpg", pupilC: "chaeyoung.jpg"} {
		doc.People = append(doc.People, wire.GalleryPerson{StudentID: id, Descriptors: []string{f.desc[n].MarshalBase64()}})
	}
	loc := time.FixedZone("ICT", 7*3600)
	f.hub, err = Open(context.Background(), Config{Dir: t.TempDir(), SchoolID: school, GateID: gate, Engine: eng, Suite: doc,
		Pupils: []Pupil{{ID: pupilA, Name: "Bona", Set: "kpop"}, {ID: pupilB, Name: "Chaeyeon", Set: "kpop"},
			{ID: pupilC, Name: "Chaeyoung", Set: "faces"}},
		CalibrateFAR: 0.01, Start: time.Date(2026, 3, 2, 7, 0, 0, 0, loc)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(f.hub.Close)
	return f
}

// crop is a small grey JPEG standing in for a gate's face crop.
func crop(t *testing.T) []byte {
	t.Helper()
	img := image.NewGray(image.Rect(0, 0, 48, 48))
	for i := range img.Pix {
		img.Pix[i] = uint8(i % 251)
	}
	img.Set(0, 0, color.Gray{Y: 7})
	var b bytes.Buffer
	if err := jpeg.Encode(&b, img, nil); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// unrecognised is the message a gate sends for an undecided track whose
// best crop has descriptor d.
func (f *fixture) unrecognised(t *testing.T, d match.Descriptor) (ingest.Message, string) {
	t.Helper()
	u := wire.Unrecognised{Schema: wire.SchemaVersion, CaptureID: wire.NewEventID(), SchoolID: school, GateID: gate,
		Direction: wire.DirectionIn, Kind: wire.KindUnrecognised, CapturedAt: f.hub.Now().UnixMilli(), FaceJPEG: crop(t),
		Candidates: []wire.Candidate{{StudentID: pupilC, Distance: 1.1, Margin: 10}}, FramesDescribed: 3,
		Model: f.eng.Model(), GalleryVer: 1, Descriptor: d.Bytes()}
	if err := u.Validate(); err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(u)
	return ingest.Message{Topic: wire.UnrecognisedTopic(school, gate), Payload: b, ClientID: gate}, u.CaptureID
}

// event is the message of an announcement of pupil, offering offer as an
// automatic template when it is not nil.
func (f *fixture) event(t *testing.T, pupil string, offer match.Descriptor) (ingest.Message, string) {
	t.Helper()
	ev := wire.Event{Schema: wire.SchemaVersion, EventID: wire.NewEventID(), SchoolID: school, GateID: gate,
		Direction: wire.DirectionIn, StudentID: pupil, CapturedAt: f.hub.Now().UnixMilli(), Distance: 0.8, Margin: 0.2,
		FramesUsed: 2, Model: f.eng.Model(), GalleryVer: 1}
	if offer != nil {
		ev.Template = &wire.EventTemplate{Descriptor: offer.Bytes(), DistanceMargin: 0.2, SecondMargin: 0.3, Agreeing: 3, Votes: 3}
	}
	if err := ev.Validate(); err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(ev)
	return ingest.Message{Topic: wire.EventTopic(school, gate), Payload: b, ClientID: gate}, ev.EventID
}

// TestDayThroughTheHub: a day's messages go through the hub's ingest (an
// event's offered template becomes an automatic template); the teacher
// confirms the unrecognised face of a pupil who walked (a teacher
// template from its descriptor, served to the gate in a new gallery
// version with a new calibration), dismisses a visitor's, leaves open a
// face that is nobody's in view, and marks "not this pupil" an
// announcement of a pupil who did not walk then. The next day, on the
// next morning's clock, the same messages are redeliveries: nothing is
// stored, learnt or decided again.
func TestDayThroughTheHub(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	doc1, gal1 := f.hub.Gallery()
	if gal1.People() != 3 || gal1.Len() != 3 {
		t.Fatalf("first gallery: %d people, %d descriptors", gal1.People(), gal1.Len())
	}
	f.hub.BeginDay(1)
	if got := f.hub.Now().Format("2006-01-02 15"); got != "2026-03-02 07" {
		t.Fatalf("day 1 starts at %s", got)
	}
	pupil, capPupil := f.unrecognised(t, f.desc["bona2.jpg"])
	visitor, _ := f.unrecognised(t, f.desc["elkie.jpg"])
	nobody, _ := f.unrecognised(t, f.desc["chaeyoung.jpg"])
	right, rightID := f.event(t, pupilA, f.desc["bona.jpg"])
	wrong, wrongID := f.event(t, pupilB, nil)
	in := DayInput{Day: 1, FPS: 25, Messages: []ingest.Message{pupil, visitor, nobody, right, wrong},
		Passages: []Passage{{ID: "p1", StudentID: pupilA, First: 10, Last: 80, Photo: f.photo("bona2.jpg")},
			{ID: "p2", First: 100, Last: 160, Photo: f.photo("elkie.jpg")},
			{ID: "p3", StudentID: pupilB, First: 500, Last: 560, Photo: f.photo("chaeyeon2.jpg")}},
		Announcements: []Announcement{{EventID: rightID, StudentID: pupilA, Frame: 30}, {EventID: wrongID, StudentID: pupilB, Frame: 300}}}
	for i, m := range in.Messages[:3] {
		u, _ := wire.DecodeUnrecognised(m.Payload)
		span := [][2]int64{{20, 70}, {110, 150}, {40, 60}}[i]
		in.Tracks = append(in.Tracks, Track{CaptureID: u.CaptureID, First: span[0], Last: span[1]})
	}
	rep, err := f.hub.EndDay(ctx, in)
	if err != nil {
		t.Fatal(err)
	}
	want := ReviewCounts{Faces: 3, Confirmed: 1, Dismissed: 1, Unsure: 1, Undone: 1}
	if rep.Review != want || rep.Ingest != (IngestCounts{Stored: 5}) || len(rep.Offers) != 1 || rep.Offers["added"] != 1 {
		t.Fatalf("day 1: review %+v (want %+v), ingest %+v, offers %v", rep.Review, want, rep.Ingest, rep.Offers)
	}
	wantAdded := []Added{{PupilID: pupilA, Source: facetemplates.SourceAutomatic, EventID: rightID},
		{PupilID: pupilA, Source: facetemplates.SourceTeacher, EventID: capPupil}}
	if len(rep.Added) != 2 || rep.Added[0] != wantAdded[0] || rep.Added[1] != wantAdded[1] {
		t.Fatalf("added %+v, want %+v", rep.Added, wantAdded)
	}
	doc2, gal2 := f.hub.Gallery()
	ds := gal2.Descriptors(pupilA)
	has := func(ds []match.Descriptor, d match.Descriptor) bool {
		for _, x := range ds {
			if match.Distance(x, d) < 1e-6 {
				return true
			}
		}
		return false
	}
	if doc2.Version <= doc1.Version || gal2.Len() != 5 || len(ds) != 3 || !has(ds, f.desc["bona2.jpg"]) {
		t.Fatalf("gallery after day 1: v%d (was v%d), %d descriptors, pupil A %d", doc2.Version, doc1.Version, gal2.Len(), len(ds))
	}
	if cal, err := match.CalibrateThreshold(gal2, 0.01); err != nil || cal.Threshold != doc2.Threshold {
		t.Fatalf("served threshold %g, calibration of the served gallery %+v (%v)", doc2.Threshold, cal, err)
	}
	fb, err := f.hub.enrol.ListFeedback(ctx, 10)
	if err != nil || len(fb) != 1 || fb[0].EventID != wrongID || fb[0].PupilID != pupilB {
		t.Fatalf("not this pupil: %+v (%v)", fb, err)
	}

	f.hub.BeginDay(2)
	if got := f.hub.Now().Format("2006-01-02"); got != "2026-03-03" {
		t.Fatalf("day 2 is %s", got)
	}
	in.Day, in.Announcements = 2, nil
	rep, err = f.hub.EndDay(ctx, in)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Ingest != (IngestCounts{Duplicates: 5}) || rep.Review != (ReviewCounts{}) || len(rep.Added) != 0 || len(rep.Offers) != 0 {
		t.Fatalf("day 2 (redeliveries): %+v", rep)
	}
	if doc3, _ := f.hub.Gallery(); doc3.Version != doc2.Version {
		t.Fatalf("gallery v%d after nothing was learnt (was v%d)", doc3.Version, doc2.Version)
	}
}

// TestOpenChecksTheFirstGallery: a hub whose pupils lack one of the
// suite's gallery is refused (its first gallery is not the suite's).
func TestOpenChecksTheFirstGallery(t *testing.T) {
	f := newFixture(t)
	doc, _ := f.hub.Gallery()
	_, err := Open(context.Background(), Config{Dir: t.TempDir(), SchoolID: school, GateID: gate, Engine: f.eng, Suite: doc,
		Pupils: []Pupil{{ID: pupilA, Name: "Bona", Set: "kpop"}, {ID: pupilB, Name: "Chaeyeon", Set: "kpop"}}, CalibrateFAR: 0.01})
	if err == nil {
		t.Fatal("a hub with 2 of the suite's 3 pupils was accepted")
	}
	t.Log(err)
}

// TestTruthRules: which passages were in view during a track, and which
// announcements name a pupil who did not walk then.
func TestTruthRules(t *testing.T) {
	ps := []Passage{{ID: "a", StudentID: pupilA, First: 100, Last: 160}, {ID: "v", First: 150, Last: 210},
		{ID: "b", StudentID: pupilB, First: 300, Last: 350}}
	for _, c := range []struct {
		first, last int64
		want        string
	}{
		{0, 50, ""}, {0, 80, "a"}, {80, 120, "a"}, {155, 158, "av"}, {190, 240, "v"}, {240, 260, ""}, {260, 280, "b"},
	} {
		got := ""
		for _, p := range inView(ps, c.first, c.last, 25) {
			got += p.ID
		}
		if got != c.want {
			t.Errorf("frames %d–%d: in view %q, want %q", c.first, c.last, got, c.want)
		}
	}
	for _, c := range []struct {
		a     Announcement
		wrong bool
	}{
		{Announcement{StudentID: pupilA, Frame: 120}, false},
		{Announcement{StudentID: pupilA, Frame: 185}, false}, // the second after the passage
		{Announcement{StudentID: pupilA, Frame: 186}, true},
		{Announcement{StudentID: pupilA, Frame: 99}, true},
		{Announcement{StudentID: pupilB, Frame: 160}, true}, // a visitor walked then
		{Announcement{StudentID: pupilC, Frame: 320}, true}, // another pupil walked then
	} {
		if got := wrongAnnouncement(ps, c.a, 25); got != c.wrong {
			t.Errorf("%+v: wrong %v, want %v", c.a, got, c.wrong)
		}
	}
}
