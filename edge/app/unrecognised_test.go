package app

import (
	"bytes"
	"context"
	"image/jpeg"
	"testing"
	"time"

	"github.com/diemdanh/diemdanh/edge/publish/brokertest"
	"github.com/diemdanh/diemdanh/models/wire"
)

// TestGateSendsUnrecognisedFaces runs the gate service on the fixture
// video (pupils A and B, a visitor, A again) against a real embedded
// broker: every described track that ended undecided (the visitor's, at
// least) reaches the broker once as an Unrecognised message of this gate,
// naming gallery pupils and carrying a decodable crop, beside the two
// pupils' events; the publisher counts them apart from events.
func TestGateSendsUnrecognisedFaces(t *testing.T) {
	dir, video, galPath, _ := gateFixture(t)
	addr, err := brokertest.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	rec, err := brokertest.NewRecorder("")
	if err != nil {
		t.Fatal(err)
	}
	srv, err := brokertest.StartMochi(addr, rec, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer brokertest.CloseMochi(srv, 3*time.Second)

	a, err := New(gateConfig(dir, video, galPath, addr), nil, time.Now)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	if err := a.Run(ctx); err != nil {
		t.Fatalf("run: %v", err)
	}
	a.Close()
	st := a.Stats()
	uns := rec.Unrecognised()
	t.Logf("decisions %d, undecided described tracks %d, unrecognised %d, near misses %d, at the broker %d",
		st.Decisions.Load(), st.Unknowns.Load(), st.Unrecognised.Load(), st.NearMisses.Load(), len(uns))
	if st.Unknowns.Load() == 0 {
		t.Fatal("no undecided track: the visitor was not described")
	}
	if int64(len(uns)) != st.Unknowns.Load() || int64(len(uns)) != a.pub.SentUnrecognised() {
		t.Fatalf("%d unrecognised faces at the broker, %d undecided tracks, %d acknowledged", len(uns), st.Unknowns.Load(), a.pub.SentUnrecognised())
	}
	if n := len(rec.IDs()); n != 2 || a.pub.Sent() != 2 {
		t.Fatalf("%d events at the broker, %d acknowledged; want the 2 pupils'", n, a.pub.Sent())
	}
	pupils := map[string]bool{pupilA: true, pupilB: true, pupilC: true}
	seen := map[string]bool{}
	for _, u := range uns {
		if seen[u.CaptureID] {
			t.Fatalf("capture %s delivered twice", u.CaptureID)
		}
		seen[u.CaptureID] = true
		if u.SchoolID != "school-1" || u.GateID != "gate-1" || u.GalleryVer != 7 || u.Direction != wire.DirectionIn {
			t.Errorf("message fields: %+v", u)
		}
		for _, c := range u.Candidates {
			if !pupils[c.StudentID] {
				t.Errorf("candidate %s is not in the gallery", c.StudentID)
			}
		}
		if _, err := jpeg.Decode(bytes.NewReader(u.FaceJPEG)); err != nil {
			t.Errorf("crop: %v", err)
		}
	}
}
