package pipeline

import (
	"context"
	"io"
	"testing"
	"time"

	"github.com/diemdanh/diemdanh/edge/capture"
	"github.com/diemdanh/diemdanh/models/match"
	"gocv.io/x/gocv"
)

// sliceSource yields prepared frames, then io.EOF.
type sliceSource struct{ frames []capture.Frame }

func (s *sliceSource) Next(ctx context.Context) (capture.Frame, error) {
	if len(s.frames) == 0 {
		return capture.Frame{}, io.EOF
	}
	f := s.frames[0]
	s.frames = s.frames[1:]
	return f, nil
}

// TestPipelineSurvivesBadFrames feeds empty, grey, tiny and resized frames
// (a camera that returns garbage or comes back at another resolution):
// they are counted as errors or processed, never a crash.
func TestPipelineSurvivesBadFrames(t *testing.T) {
	mk := func(w, h int, typ gocv.MatType) gocv.Mat {
		return gocv.NewMatWithSizeFromScalar(gocv.NewScalar(100, 110, 120, 0), h, w, typ)
	}
	mats := []gocv.Mat{
		mk(1280, 720, gocv.MatTypeCV8UC3),
		mk(1280, 720, gocv.MatTypeCV8UC3),
		gocv.NewMat(),                     // empty
		mk(1280, 720, gocv.MatTypeCV8UC1), // grey
		mk(4, 4, gocv.MatTypeCV8UC3),      // tiny
		mk(640, 480, gocv.MatTypeCV8UC3),  // new resolution
		mk(640, 480, gocv.MatTypeCV8UC3),
		mk(1920, 1080, gocv.MatTypeCV8UC3),
	}
	src := &sliceSource{}
	for i, m := range mats {
		src.frames = append(src.frames, capture.Frame{Mat: m, Index: int64(i), At: time.Now()})
	}
	cfg := DefaultConfig()
	cfg.SchoolID, cfg.GateID = "s", "g"
	cfg.ROI = []float64{0.1, 0.1, 0.9, 0.9}
	p, err := New(cfg, Deps{Describer: nopDescriber{}, Gallery: fixedGallery{match.NewGallery(1, match.DlibResNetV1)}, Outbox: nopOutbox{}}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Run(context.Background(), src); err != nil {
		t.Fatalf("run: %v", err)
	}
	if got := p.Stats.Frames.Load(); got != int64(len(mats)) {
		t.Fatalf("frames %d, want %d", got, len(mats))
	}
	if got := p.Stats.Errors.Load(); got != 3 {
		t.Fatalf("errors %d, want 3 (empty, grey, tiny)", got)
	}
	if p.Stats.DetectFrames.Load()+p.Stats.MotionSkipped.Load() != 5 {
		t.Fatalf("detect %d + motion-skipped %d, want 5 good frames", p.Stats.DetectFrames.Load(), p.Stats.MotionSkipped.Load())
	}
}
