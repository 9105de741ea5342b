package bench

import (
	"context"
	"log/slog"
	"sort"

	"github.com/diemdanh/diemdanh/edge/capture"
	"github.com/diemdanh/diemdanh/models/faceengine"
	"github.com/diemdanh/diemdanh/models/match"
	"gocv.io/x/gocv"
)

// runBaseline is the naive gate: go-face (detect + landmarks + descriptor)
// on every full frame, no downscaling, no tracking. With an engine whose
// embedder aligns on YuNet's landmarks, go-face's detector (dlib's HOG)
// still finds the faces on every full frame and the engine describes each
// (baselineFrame). Each face is decided
// on its own with the same threshold and margin, and the first decision
// per pupil is announced (the same one-per-day debounce). The same matches
// are also decided with M of K consecutive frames (Baseline.SameRule).
func runBaseline(ctx context.Context, video string, eng *faceengine.Engine, gal *match.Gallery, th, mm float64, m, k int, truth *Truth, log *slog.Logger) (*Baseline, error) {
	run, err := baselineMatches(ctx, video, eng, gal, th, mm, log)
	if err != nil {
		return nil, err
	}
	same := mOfKFrames(run.matches, m, k)
	sameAcc := score(truth, same)
	return &Baseline{FPS: run.fps(), Frames: run.frames, CPUCoresUsed: run.cpu.Seconds() / run.wall.Seconds(),
		CPUPerFrameMS: perFrame(run.cpu, run.frames), Accuracy: score(truth, announceFirst(run.matches)), SameRule: &sameAcc}, nil
}

// baselineMatches plays video through the naive gate and returns every
// face it accepted, per frame, with threshold th and margin mm.
func baselineMatches(ctx context.Context, video string, eng *faceengine.Engine, gal *match.Gallery, th, mm float64, log *slog.Logger) (*frameRun, error) {
	return playFrames(ctx, video, eng.Workers(), func() (frameFunc, func(), error) {
		var hog *faceengine.HOGDetector
		closeFn := func() {}
		if eng.UsesYuNet() {
			var err error
			if hog, err = faceengine.NewHOGDetector(); err != nil {
				return nil, nil, err
			}
			closeFn = hog.Close
		}
		return func(ctx context.Context, f capture.Frame) ([]decision, error) {
			faces, err := baselineFrame(ctx, eng, hog, f.Mat)
			var out []decision
			for _, fc := range faces {
				m := gal.Match(fc.Descriptor)
				if m.PersonID != "" && m.Distance <= th && m.Margin() >= mm {
					out = append(out, decision{student: m.PersonID, frame: f.Index})
				}
			}
			return out, err
		}, closeFn, nil
	}, log)
}

// baselineFrame finds and describes every face of a full frame: go-face
// alone, or (hog set) dlib's HOG, go-face's own detector, with the engine
// describing each box.
func baselineFrame(ctx context.Context, eng *faceengine.Engine, hog *faceengine.HOGDetector, m gocv.Mat) ([]match.Face, error) {
	if hog == nil {
		return eng.RecognizeMat(ctx, m)
	}
	return hogFrame(ctx, eng, hog, m, 0)
}

// hogFrame finds every face of the frame with HOG (upsampled upsample
// times) and describes each box with eng.
func hogFrame(ctx context.Context, eng *faceengine.Engine, hog *faceengine.HOGDetector, m gocv.Mat, upsample int) ([]match.Face, error) {
	gray := gocv.NewMat()
	defer gray.Close()
	gocv.CvtColor(m, &gray, gocv.ColorBGRToGray)
	pix, err := gray.DataPtrUint8()
	if err != nil {
		return nil, err
	}
	dets, err := hog.DetectGray(pix, gray.Cols(), gray.Rows(), gray.Step(), upsample, 0)
	if err != nil {
		return nil, err
	}
	var faces []match.Face
	for _, d := range dets {
		f, err := eng.DescribeCrop(ctx, m, d.Box)
		if err != nil {
			return nil, err
		}
		if f != nil {
			faces = append(faces, *f)
		}
	}
	return faces, nil
}

// mOfKFrames turns per-frame accepted matches (sorted by frame) into
// decisions with an M-of-K rule over frames: a pupil is decided at the first
// frame where at least m of the frames in the k-frame window ending there
// accepted them (a frame counts once per pupil). Only the first decision
// per pupil is enqueued, as the gate's debounce does.
func mOfKFrames(matches []decision, m, k int) []decision {
	if m < 1 {
		m = 1
	}
	frames := map[string][]int64{}
	for _, d := range matches {
		fs := frames[d.student]
		if len(fs) == 0 || fs[len(fs)-1] != d.frame {
			frames[d.student] = append(fs, d.frame)
		}
	}
	var out []decision
	for student, fs := range frames {
		for j := range fs {
			n := 0
			for i := j; i >= 0 && fs[j]-fs[i] < int64(k); i-- {
				n++
			}
			if n >= m {
				out = append(out, decision{student: student, frame: fs[j], enqueued: true})
				break
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].frame < out[j].frame })
	return out
}
