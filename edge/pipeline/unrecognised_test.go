package pipeline

import (
	"bytes"
	"context"
	"image"
	"image/jpeg"
	"math"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/diemdanh/diemdanh/edge/store"
	"github.com/diemdanh/diemdanh/models/match"
	"github.com/diemdanh/diemdanh/models/wire"
	"gocv.io/x/gocv"
)

// seqDescriber returns its descriptors in turn, one per crop, with a face
// box in the middle of the crop and the same quality each time.
type seqDescriber struct {
	mu sync.Mutex
	ds []match.Descriptor
	n  int
}

func (*seqDescriber) Model() match.ModelID { return match.DefaultEmbedder }

func (s *seqDescriber) DescribeCrop(context.Context, gocv.Mat, image.Rectangle) (*match.Face, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	d := s.ds[s.n%len(s.ds)]
	s.n++
	return &match.Face{Box: image.Rect(50, 50, 150, 150), Descriptor: d,
		Quality: match.Quality{SizePx: 100, Sharpness: 120, Brightness: 128}}, nil
}

func unitVec(xs ...float64) match.Descriptor {
	var n float64
	for _, x := range xs {
		n += x * x
	}
	d := make(match.Descriptor, len(xs))
	for i, x := range xs {
		d[i] = float32(x / math.Sqrt(n))
	}
	return d
}

// runScriptedTrack describes one track once per descriptor of ds (in that
// order), ends it and commits what it emits to db. It returns the events
// and unrecognised faces the hooks saw.
func runScriptedTrack(t *testing.T, cfg Config, gal *match.Gallery, db *store.DB, ds []match.Descriptor) ([]*wire.Event, []*wire.Unrecognised, *Stats) {
	t.Helper()
	var evs []*wire.Event
	var uns []*wire.Unrecognised
	st := &Stats{}
	hooks := Hooks{
		OnEvent: func(ev *wire.Event, _ EventInfo) { evs = append(evs, ev) },
		OnUnrecognised: func(u *wire.Unrecognised, info EventInfo) {
			if !info.Enqueued || info.TrackID != 7 {
				t.Errorf("unrecognised face of track %d, enqueued %v", info.TrackID, info.Enqueued)
			}
			uns = append(uns, u)
		},
	}
	p, err := New(cfg, Deps{Describer: &seqDescriber{ds: ds}, Gallery: fixedGallery{gal}, Outbox: db, Hooks: hooks, Stats: st}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 9, 5, 7, 0, 0, 0, time.UTC)
	tr := &Track{ID: 7, FirstSeen: at, LastSeen: at.Add(time.Second), LastFrame: int64(len(ds))}
	emits := make(chan emission, 2*len(ds)+2)
	for i := range ds {
		region := gocv.NewMatWithSizeFromScalar(gocv.NewScalar(90, 120, 150, 0), 200, 200, gocv.MatTypeCV8UC3)
		tr.Pending++
		p.work(context.Background(), job{tr: tr, region: region, box: image.Rect(50, 50, 150, 150), frame: int64(i), at: at}, emits)
	}
	p.mu.Lock()
	tr.Ended = true
	for _, e := range p.finishLocked(tr) {
		emits <- e
	}
	p.mu.Unlock()
	close(emits)
	for e := range emits {
		if err := p.commit(context.Background(), e); err != nil {
			t.Fatal(err)
		}
	}
	return evs, uns, st
}

// TestUnrecognisedFromTrack: an ended track without a decision sends one
// Unrecognised message through the outbox, with its crop and its three
// nearest pupils measured from its quality-best descriptor; a near miss
// names its accepted vote; a decided track sends none.
func TestUnrecognisedFromTrack(t *testing.T) {
	ids := []string{"000000000001", "000000000002", "000000000003", "000000000004"}
	pupils := []match.Descriptor{unitVec(1, 0, 0, 0), unitVec(0, 1, 0, 0), unitVec(0, 0, 1, 0), unitVec(0, 0, 0, 1)}
	far := unitVec(0.5, 0.3, 0.2, 0.1)      // nearest 0.65 from pupil 1: over the threshold
	near := unitVec(0.98, 0.2, 0, 0)        // 0.20 from pupil 1, 1.06 nearer than pupil 2: an accepted vote
	farther := unitVec(0.1, 0.45, 0.3, 0.2) // another far view; pupil 2 nearest
	cases := []struct {
		name      string
		people    int // pupils in the gallery
		ds        []match.Descriptor
		mod       func(*Config)
		events    int
		kind      string // "" for no unrecognised face
		bestProbe match.Descriptor
	}{
		{"unrecognised", 4, []match.Descriptor{farther, far}, nil, 0, wire.KindUnrecognised, far},
		{"near miss", 4, []match.Descriptor{near, far, far}, nil, 0, wire.KindNearMiss, far},
		{"decided", 4, []match.Descriptor{near, near}, nil, 1, "", nil},
		{"report off", 4, []match.Descriptor{far, far}, func(c *Config) { c.ReportUnrecognised = false }, 0, "", nil},
		{"unknown event and unrecognised", 4, []match.Descriptor{far}, func(c *Config) { c.ReportUnknown = true }, 1, wire.KindUnrecognised, far},
		{"without face_crop", 4, []match.Descriptor{far, far}, func(c *Config) { c.FaceCrop = false }, 0, wire.KindUnrecognised, far},
		{"one pupil", 1, []match.Descriptor{far}, nil, 0, wire.KindUnrecognised, far},
		{"two pupils", 2, []match.Descriptor{far}, nil, 0, wire.KindUnrecognised, far},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			gal := match.NewGallery(3, match.DefaultEmbedder)
			for i := 0; i < tc.people; i++ {
				if err := gal.Add(ids[i], pupils[i]); err != nil {
					t.Fatal(err)
				}
			}
			cfg := DefaultConfig()
			cfg.SchoolID, cfg.GateID = "s", "g"
			cfg.Vote.Threshold, cfg.CalibrateFAR = 0.4, 0
			if tc.mod != nil {
				tc.mod(&cfg)
			}
			db, err := store.Open(filepath.Join(t.TempDir(), "edge.db"), store.Options{}, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			evs, uns, st := runScriptedTrack(t, cfg, gal, db, tc.ds)
			if len(evs) != tc.events {
				t.Fatalf("%d events, want %d", len(evs), tc.events)
			}
			for _, ev := range evs {
				if (len(ev.FaceJPEG) > 0) != cfg.FaceCrop {
					t.Fatalf("event crop of %d bytes with face_crop %v", len(ev.FaceJPEG), cfg.FaceCrop)
				}
			}
			if tc.kind == "" {
				if len(uns) != 0 || st.Unrecognised.Load()+st.NearMisses.Load() != 0 {
					t.Fatalf("%d unrecognised faces, want none", len(uns))
				}
				return
			}
			if len(uns) != 1 {
				t.Fatalf("%d unrecognised faces, want 1", len(uns))
			}
			checkUnrecognised(t, uns[0], db, tc.kind, len(tc.ds), gal, tc.bestProbe)
			if tc.kind == wire.KindNearMiss && (st.NearMisses.Load() != 1 || st.Unrecognised.Load() != 0) ||
				tc.kind == wire.KindUnrecognised && (st.Unrecognised.Load() != 1 || st.NearMisses.Load() != 0) {
				t.Fatalf("counted %d unrecognised, %d near misses", st.Unrecognised.Load(), st.NearMisses.Load())
			}
			if tc.kind == wire.KindNearMiss {
				v := uns[0].Vote
				if v == nil || v.StudentID != ids[0] || math.Abs(v.Distance-match.Distance(near, pupils[0])) > 1e-6 {
					t.Fatalf("near-miss vote %+v, want pupil %s at %.3f", v, ids[0], match.Distance(near, pupils[0]))
				}
			}
		})
	}
}

// checkUnrecognised: u is what the outbox holds, with a decodable crop of
// face_crop_width, and its candidates are the gallery's nearest pupils to
// probe with the gaps between them as margins.
func checkUnrecognised(t *testing.T, u *wire.Unrecognised, db *store.DB, kind string, frames int, gal *match.Gallery, probe match.Descriptor) {
	t.Helper()
	recs, err := db.Pending(context.Background(), 10)
	if err != nil {
		t.Fatal(err)
	}
	var stored *wire.Unrecognised
	for _, r := range recs {
		if r.Kind == wire.TopicKindUnrecognised {
			if stored, err = wire.DecodeUnrecognised(r.Payload); err != nil {
				t.Fatal(err)
			}
		}
	}
	if stored == nil || stored.CaptureID != u.CaptureID || !bytes.Equal(stored.FaceJPEG, u.FaceJPEG) {
		t.Fatal("the outbox does not hold the unrecognised face")
	}
	if u.Kind != kind || u.FramesDescribed != frames || u.SchoolID != "s" || u.GateID != "g" || u.GalleryVer != 3 {
		t.Fatalf("message %+v: want kind %s from %d frames", u, kind, frames)
	}
	if d, err := stored.DescriptorValues(); err != nil || !slices.Equal(d, probe) {
		t.Fatalf("descriptor %v (%v), want the best crop's %v", d, err, probe)
	}
	im, err := jpeg.Decode(bytes.NewReader(u.FaceJPEG))
	if err != nil || im.Bounds().Dx() != 112 {
		t.Fatalf("crop: %v (width %d, want 112)", err, im.Bounds().Dx())
	}
	top := gal.TopK(probe, 4)
	want := min(len(top), wire.MaxCandidates)
	if len(u.Candidates) != want {
		t.Fatalf("%d candidates, want %d", len(u.Candidates), want)
	}
	for i, c := range u.Candidates {
		margin := 10.0
		if i+1 < len(top) {
			margin = top[i+1].Distance - top[i].Distance
		}
		if c.StudentID != top[i].PersonID || math.Abs(c.Distance-top[i].Distance) > 1e-9 || math.Abs(c.Margin-margin) > 1e-9 {
			t.Fatalf("candidate %d %+v, want %s at %.4f margin %.4f", i, c, top[i].PersonID, top[i].Distance, margin)
		}
	}
}

// TestUnrecognisedWireDescriptor: the best crop's descriptor goes as the
// wire encodes it; one the wire would refuse is left out, so the message
// still goes.
func TestUnrecognisedWireDescriptor(t *testing.T) {
	long := make(match.Descriptor, match.MaxDescriptorLen+1)
	cases := []struct {
		name string
		d    match.Descriptor
		want match.Descriptor // nil: left out
	}{
		{"unit vector", unitVec(0.5, 0.3, 0.2, 0.1), unitVec(0.5, 0.3, 0.2, 0.1)},
		{"512 values", make(match.Descriptor, 512), make(match.Descriptor, 512)},
		{"none", nil, nil},
		{"one value", match.Descriptor{1}, nil},
		{"NaN", match.Descriptor{0.5, float32(math.NaN()), 0.5}, nil},
		{"inf", match.Descriptor{0.5, float32(math.Inf(-1))}, nil},
		{"too long", long, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			b := wireDescriptor(tc.d)
			if tc.want == nil {
				if b != nil {
					t.Fatalf("%d bytes sent, want none", len(b))
				}
				return
			}
			u := wire.Unrecognised{Descriptor: b}
			got, err := u.DescriptorValues()
			if err != nil || !slices.Equal(got, tc.want) {
				t.Fatalf("sent %v (%v), want %v", got, err, tc.want)
			}
		})
	}
}

// TestReportUnrecognisedConfig: on by default; its crop needs a valid
// face_crop_width even with face_crop off.
func TestReportUnrecognisedConfig(t *testing.T) {
	if !DefaultConfig().ReportUnrecognised {
		t.Fatal("report_unrecognised is off by default")
	}
	cases := []struct {
		name         string
		report, crop bool
		width        int
		bad          bool
	}{
		{"default", true, true, 112, false},
		{"report without face_crop", true, false, 112, false},
		{"report, width 0", true, false, 0, true},
		{"report, width too large", true, false, 300, true},
		{"both off, width 0", false, false, 0, false},
		{"face_crop only, width 16", false, true, 16, true},
	}
	for _, tc := range cases {
		c := DefaultConfig()
		c.ReportUnrecognised, c.FaceCrop, c.FaceCropWidth = tc.report, tc.crop, tc.width
		err := c.Validate("pipeline")
		if tc.bad != (err != nil) || (err != nil && !strings.Contains(err.Error(), "pipeline.face_crop_width")) {
			t.Errorf("%s: %v, want an error on pipeline.face_crop_width: %v", tc.name, err, tc.bad)
		}
	}
}
