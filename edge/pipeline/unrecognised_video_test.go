package pipeline_test

import (
	"bytes"
	"context"
	"image/jpeg"
	"math"
	"path/filepath"
	"sync"
	"testing"

	"github.com/diemdanh/diemdanh/edge/pipeline"
	"github.com/diemdanh/diemdanh/edge/sim"
	"github.com/diemdanh/diemdanh/edge/store"
	"github.com/diemdanh/diemdanh/models/conf"
	"github.com/diemdanh/diemdanh/models/faceengine"
	"github.com/diemdanh/diemdanh/models/match"
	"github.com/diemdanh/diemdanh/models/wire"
)

// reported is an unrecognised face with the track it came from.
type reported struct {
	u    *wire.Unrecognised
	info pipeline.EventInfo
}

// TestUnrecognisedOnSimulatedGate runs the real pipeline (YuNet, SFace,
// the default operating point) over a simulated gate video with the
// gate's real outbox: every described track that ended without a decision
// is in the outbox as one Unrecognised message with 1..3 gallery pupils
// and a decodable crop; visitors' passages are among them, and neither a
// track that announced a pupil nor another track of an announced pupil's
// passage is. (A track is a passage when their frame ranges overlap most.)
func TestUnrecognisedOnSimulatedGate(t *testing.T) {
	ec := faceengine.DefaultEngineConfig()
	ec.ModelsDir = conf.TestModelsDir()
	ec.Workers = 2
	eng, err := faceengine.NewEngine(ec, nil)
	if err != nil {
		t.Fatalf("face engine (set MODELS_DIR): %v", err)
	}
	defer eng.Close()
	video, truth, gal := simulatedGate(t, eng)
	db, err := store.Open(filepath.Join(t.TempDir(), "edge.db"), store.Options{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()

	cfg := pipeline.DefaultConfig()
	cfg.SchoolID, cfg.GateID = "s", "g"
	cfg.WaitForWorkers = true
	var mu sync.Mutex
	decided := map[int64]string{} // track → pupil announced
	var reps []reported
	hooks := pipeline.Hooks{
		OnEvent: func(ev *wire.Event, info pipeline.EventInfo) {
			mu.Lock()
			defer mu.Unlock()
			if !info.Unknown {
				decided[info.TrackID] = ev.StudentID
			}
		},
		OnUnrecognised: func(u *wire.Unrecognised, info pipeline.EventInfo) {
			mu.Lock()
			defer mu.Unlock()
			reps = append(reps, reported{u, info})
		},
	}
	st := &pipeline.Stats{}
	p, err := pipeline.New(cfg, pipeline.Deps{Describer: eng, Workers: eng.Workers(), ModelsDir: conf.TestModelsDir(), Gallery: gal,
		Outbox: db, Hooks: hooks, Stats: st}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	playVideo(t, p, video)

	t.Logf("%d decisions, %d undecided described tracks, %d unrecognised and %d near misses stored, %d dropped",
		st.Decisions.Load(), st.Unknowns.Load(), st.Unrecognised.Load(), st.NearMisses.Load(), st.UnrecognisedDropped.Load())
	if n := int64(len(reps)); n != st.Unknowns.Load() || n != st.Unrecognised.Load()+st.NearMisses.Load() || st.UnrecognisedDropped.Load() != 0 {
		t.Fatalf("%d messages for %d undecided described tracks (%d dropped)", n, st.Unknowns.Load(), st.UnrecognisedDropped.Load())
	}
	stored := storedUnrecognised(t, db)
	people := map[string]bool{}
	for _, id := range gal.g.PersonIDs() {
		people[id] = true
	}
	announced := map[string]bool{}
	for _, who := range decided {
		announced[who] = true
	}
	visitorTracks, missed := 0, 0
	for _, r := range reps {
		if !r.info.Enqueued || stored[r.u.CaptureID] == nil {
			t.Fatalf("track %d: its unrecognised face is not in the outbox", r.info.TrackID)
		}
		if who, ok := decided[r.info.TrackID]; ok {
			t.Errorf("track %d announced %s and was also reported unrecognised", r.info.TrackID, who)
		}
		checkReported(t, r, people, gal.g)
		ps := passageOf(truth, r.info)
		switch {
		case ps == nil:
			t.Logf("track %d (frames %d-%d) matches no passage", r.info.TrackID, r.info.FirstFrame, r.info.DecisionFrame)
		case ps.Visitor():
			visitorTracks++
		case announced[ps.StudentID]:
			t.Errorf("track %d is pupil %s's passage, who was announced, and was reported unrecognised", r.info.TrackID, ps.StudentID)
		default:
			missed++
			t.Logf("missed pupil %s reported with candidates %+v", ps.StudentID, r.u.Candidates)
		}
	}
	if len(decided) == 0 {
		t.Fatal("no pupil announced: the video does not test that a recognised pupil is not reported")
	}
	if visitorTracks == 0 {
		t.Fatalf("none of the %d unrecognised faces is a visitor's track", len(reps))
	}
	t.Logf("%d of %d unrecognised faces are visitors' passages, %d missed pupils'", visitorTracks, len(reps), missed)
}

// storedUnrecognised decodes the outbox's unrecognised faces by capture ID.
func storedUnrecognised(t *testing.T, db *store.DB) map[string]*wire.Unrecognised {
	t.Helper()
	recs, err := db.Pending(context.Background(), 100000)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]*wire.Unrecognised{}
	for _, r := range recs {
		if r.Kind != wire.TopicKindUnrecognised {
			continue
		}
		u, err := wire.DecodeUnrecognised(r.Payload)
		if err != nil {
			t.Fatalf("outbox row %d: %v", r.Seq, err)
		}
		out[u.CaptureID] = u
	}
	return out
}

// checkReported: 1..3 distinct gallery pupils, nearest first, a crop
// that decodes as a JPEG of face_crop_width, and the crop's descriptor, of
// the gallery's length, from which the first candidate was measured.
func checkReported(t *testing.T, r reported, people map[string]bool, gal *match.Gallery) {
	t.Helper()
	u := r.u
	d, err := u.DescriptorValues()
	if err != nil || len(d) != gal.Dim() {
		t.Fatalf("track %d: descriptor of %d values (%v), want %d", r.info.TrackID, len(d), err, gal.Dim())
	}
	if top := gal.TopK(d, 1); len(top) != 1 || top[0].PersonID != u.Candidates[0].StudentID ||
		math.Abs(top[0].Distance-u.Candidates[0].Distance) > 1e-6 {
		t.Fatalf("track %d: the descriptor's nearest pupil %+v is not the first candidate %+v", r.info.TrackID, top, u.Candidates[0])
	}
	if len(u.Candidates) < 1 || len(u.Candidates) > 3 {
		t.Fatalf("track %d: %d candidates", r.info.TrackID, len(u.Candidates))
	}
	for i, c := range u.Candidates {
		if !people[c.StudentID] || (i > 0 && c.Distance < u.Candidates[i-1].Distance) {
			t.Fatalf("track %d: candidate %d %+v not a gallery pupil in order", r.info.TrackID, i, c)
		}
	}
	im, err := jpeg.Decode(bytes.NewReader(u.FaceJPEG))
	if err != nil || im.Bounds().Dx() != pipeline.DefaultConfig().FaceCropWidth {
		t.Fatalf("track %d: crop does not decode as a %d px wide JPEG: %v", r.info.TrackID, pipeline.DefaultConfig().FaceCropWidth, err)
	}
	if (u.Kind == wire.KindNearMiss) != (u.Vote != nil) {
		t.Fatalf("track %d: kind %s with vote %+v", r.info.TrackID, u.Kind, u.Vote)
	}
}

// passageOf is the passage whose frames the track's frames overlap most
// (intersection over union of the two frame ranges at least 0.5), or nil.
func passageOf(truth *sim.Truth, info pipeline.EventInfo) *sim.Passage {
	var best *sim.Passage
	bestIoU := 0.5
	for i, ps := range truth.Passages {
		inter := min(ps.LastFrame, info.DecisionFrame) - max(ps.FirstFrame, info.FirstFrame) + 1
		union := max(ps.LastFrame, info.DecisionFrame) - min(ps.FirstFrame, info.FirstFrame) + 1
		if inter <= 0 {
			continue
		}
		if iou := float64(inter) / float64(union); iou >= bestIoU {
			best, bestIoU = &truth.Passages[i], iou
		}
	}
	return best
}
