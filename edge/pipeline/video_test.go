package pipeline_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/diemdanh/diemdanh/edge/capture"
	"github.com/diemdanh/diemdanh/edge/pipeline"
	"github.com/diemdanh/diemdanh/edge/sim"
	"github.com/diemdanh/diemdanh/models/conf"
	"github.com/diemdanh/diemdanh/models/faceengine"
	"github.com/diemdanh/diemdanh/models/match"
	"github.com/diemdanh/diemdanh/models/wire"
)

// The tests of this file run the pipeline on videos of the simulator
// (edge/sim, which links the pipeline: hence the external test package).

// fileGallery serves a gallery file as it was loaded.
type fileGallery struct {
	doc *wire.GalleryDoc
	g   *match.Gallery
}

func (f fileGallery) Current() (*wire.GalleryDoc, *match.Gallery) { return f.doc, f.g }

// events keeps what the pipeline would publish.
type events struct {
	mu  sync.Mutex
	evs []*wire.Event
	uns []*wire.Unrecognised
}

func (o *events) EnqueueUnrecognised(_ context.Context, u *wire.Unrecognised) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.uns = append(o.uns, u)
	return nil
}

func (o *events) EnqueueDebounced(_ context.Context, ev *wire.Event, _ string, _ time.Time, _ time.Duration) (bool, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.evs = append(o.evs, ev)
	return true, nil
}

func (o *events) Enqueue(ctx context.Context, ev *wire.Event) error {
	_, err := o.EnqueueDebounced(ctx, ev, "", time.Time{}, 0)
	return err
}

// simulatedGate generates a gate video from the shared faces/ photos with
// the simulator (every person of the folder, seed 7) and returns its
// video path, truth and gallery.
func simulatedGate(t *testing.T, eng *faceengine.Engine) (string, *sim.Truth, fileGallery) {
	t.Helper()
	td, err := conf.TestDataDir()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	so := sim.DefaultOptions()
	so.Photos = []string{filepath.Join(td, "faces")}
	so.Out, so.TruthOut, so.GalleryOut = filepath.Join(dir, "gate.avi"), filepath.Join(dir, "truth.json"), filepath.Join(dir, "gallery.json")
	so.Seed, so.School = 7, "s"
	sum, err := sim.Generate(context.Background(), so, eng, nil)
	if err != nil {
		t.Fatalf("simulate (set ATTENDANCE_TESTDATA): %v", err)
	}
	t.Logf("video: %d frames, %d enrolled and %d visitor passages, %d people in the gallery",
		sum.Frames, sum.EnrolledPassages, sum.VisitorPassages, sum.GalleryPeople)
	b, err := os.ReadFile(so.TruthOut)
	if err != nil {
		t.Fatal(err)
	}
	var truth sim.Truth
	if err := json.Unmarshal(b, &truth); err != nil {
		t.Fatal(err)
	}
	doc, gal, err := wire.LoadGalleryFile(so.GalleryOut)
	if err != nil {
		t.Fatal(err)
	}
	return so.Out, &truth, fileGallery{doc, gal}
}

// runVideo plays a video file through the real pipeline as a benchmark
// does (every frame, WaitForWorkers) and returns the pupils' events.
func runVideo(t *testing.T, cfg pipeline.Config, eng *faceengine.Engine, gal fileGallery, video string) ([]*wire.Event, []pipeline.EventInfo, *pipeline.Pipeline) {
	t.Helper()
	var mu sync.Mutex
	var evs []*wire.Event
	var infos []pipeline.EventInfo
	hooks := pipeline.Hooks{OnEvent: func(ev *wire.Event, info pipeline.EventInfo) {
		mu.Lock()
		defer mu.Unlock()
		if !info.Unknown {
			evs, infos = append(evs, ev), append(infos, info)
		}
	}}
	p, err := pipeline.New(cfg, pipeline.Deps{Describer: eng, Workers: eng.Workers(), ModelsDir: conf.TestModelsDir(), Gallery: gal,
		Outbox: &events{}, Hooks: hooks}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	playVideo(t, p, video)
	return evs, infos, p
}

// playVideo runs p over every frame of a video file until it ends.
func playVideo(t *testing.T, p *pipeline.Pipeline, video string) {
	t.Helper()
	cc := capture.DefaultConfig()
	cc.Source, cc.Realtime = video, false
	capt, err := capture.New(cc, nil, time.Now)
	if err != nil {
		t.Fatal(err)
	}
	mbox := capture.NewMailbox(false)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	capErr := make(chan error, 1)
	go func() { e := capt.Run(ctx, mbox.Put); mbox.Close(e); capErr <- e }()
	err = p.Run(ctx, mbox)
	mbox.Close(nil)
	mbox.Drain()
	if err != nil {
		t.Fatalf("pipeline: %v", err)
	}
	if e := <-capErr; e != nil && !errors.Is(e, io.EOF) {
		t.Fatalf("video: %v", e)
	}
}

// TestMeanRuleOnSimulatedGate runs the real pipeline (YuNet, SFace, the
// operating point calibrated on the gallery) with the mean rule over a
// simulated gate video: enrolled pupils are announced, every announcement
// names a pupil walking at that moment (never a visitor, never someone
// else), and each event carries the mean's distance and margin within the
// operating point and the number of descriptors averaged.
func TestMeanRuleOnSimulatedGate(t *testing.T) {
	ec := faceengine.DefaultEngineConfig()
	ec.ModelsDir = conf.TestModelsDir()
	ec.Workers = 2
	eng, err := faceengine.NewEngine(ec, nil)
	if err != nil {
		t.Fatalf("face engine (set MODELS_DIR): %v", err)
	}
	defer eng.Close()
	video, truth, gal := simulatedGate(t, eng)

	cfg := pipeline.DefaultConfig()
	cfg.SchoolID, cfg.GateID = "s", "g"
	cfg.Decision = pipeline.DecisionMean
	cfg.WaitForWorkers = true
	evs, infos, p := runVideo(t, cfg, eng, gal, video)
	op := p.OperatingPoint()

	slack := int64(truth.FPS) // a decision may land just after the last truth frame
	announced := map[string]bool{}
	for i, ev := range evs {
		var ok, visitor bool
		for _, ps := range truth.Passages {
			if infos[i].DecisionFrame < ps.FirstFrame || infos[i].DecisionFrame > ps.LastFrame+slack {
				continue
			}
			ok = ok || (!ps.Visitor() && ps.StudentID == ev.StudentID)
			visitor = visitor || ps.Visitor()
		}
		t.Logf("%s at frame %d: distance %.3f margin %.3f from %d descriptors", ev.StudentID, infos[i].DecisionFrame, ev.Distance, ev.Margin, ev.FramesUsed)
		if !ok {
			t.Errorf("announced %s at frame %d, who is not walking then (visitor in view: %v)", ev.StudentID, infos[i].DecisionFrame, visitor)
		}
		if ev.Distance > op.Threshold || ev.Margin < op.MinMargin || ev.FramesUsed < op.M || ev.FramesUsed > op.K {
			t.Errorf("event outside the rule (threshold %.3f, margin %.3f, m %d, k %d): %+v", op.Threshold, op.MinMargin, op.M, op.K, ev)
		}
		announced[ev.StudentID] = true
	}
	enrolled := map[string]bool{}
	for _, ps := range truth.Passages {
		if !ps.Visitor() {
			enrolled[ps.StudentID] = true
		}
	}
	t.Logf("mean rule: %d of %d enrolled pupils announced, %d events (threshold %.3f, margin %.3f)", len(announced), len(enrolled), len(evs), op.Threshold, op.MinMargin)
	if len(enrolled) == 0 || 2*len(announced) < len(enrolled) {
		t.Fatalf("the mean rule announced %d of %d enrolled pupils", len(announced), len(enrolled))
	}
}
