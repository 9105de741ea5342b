package bench

import (
	"context"
	"log/slog"

	"github.com/diemdanh/diemdanh/edge/capture"
	"github.com/diemdanh/diemdanh/models/faceengine"
	"github.com/diemdanh/diemdanh/models/match"
)

// The peer mirrors the rule of ageitgey/face_recognition as its examples
// use it: face_locations (dlib's HOG on the whole frame, upsampled once,
// its default), face_encodings (dlib's ResNet descriptor, the reference
// model), then the nearest known face, accepted within tolerance 0.6 of
// real L2 distance, on every frame.
const (
	peerTolerance = 0.6
	peerUpsample  = 1
)

// peerMatches plays video through the peer and returns every face it
// named, per frame. ref must compute faceengine.ReferenceModel
// descriptors and gal hold the same model's descriptors of the enrolment
// photos. Each HOG box is described by ref.DescribeCrop, which places
// dlib's five landmarks on the face it finds in a crop scaled to 150 px
// (face_recognition places them on the HOG box in the frame itself; the
// descriptor is dlib's 150-px chip either way).
func peerMatches(ctx context.Context, video string, ref *faceengine.Engine, gal *match.Gallery, log *slog.Logger) (*frameRun, error) {
	return playFrames(ctx, video, ref.Workers(), func() (frameFunc, func(), error) {
		hog, err := faceengine.NewHOGDetector()
		if err != nil {
			return nil, nil, err
		}
		return func(ctx context.Context, f capture.Frame) ([]decision, error) {
			faces, err := hogFrame(ctx, ref, hog, f.Mat, peerUpsample)
			var out []decision
			for _, fc := range faces {
				if m := gal.Match(fc.Descriptor); m.PersonID != "" && m.Distance <= peerTolerance {
					out = append(out, decision{student: m.PersonID, frame: f.Index})
				}
			}
			return out, err
		}, hog.Close, nil
	}, log)
}

// framesWithWrongName counts the frames in which the peer put an enrolled
// name on somebody else: a name none of whose passages is in view in that
// frame (a visitor or another pupil was named), or one name on two faces
// of the same frame. The truth has no per-frame boxes, so a name put on
// another pupil while its owner is also in view is not seen.
func framesWithWrongName(t *Truth, matches []decision) int {
	byFrame := map[int64][]string{}
	for _, d := range matches {
		byFrame[d.frame] = append(byFrame[d.frame], d.student)
	}
	n := 0
	for f, names := range byFrame {
		if frameHasWrongName(t, f, names) {
			n++
		}
	}
	return n
}

// frameHasWrongName reports whether one of the names given in frame f is
// wrong (framesWithWrongName).
func frameHasWrongName(t *Truth, f int64, names []string) bool {
	seen := map[string]bool{}
	for _, s := range names {
		if seen[s] {
			return true
		}
		seen[s] = true
		inView := false
		for _, p := range t.Passages {
			if !p.Visitor() && p.StudentID == s && f >= p.FirstFrame && f <= p.LastFrame {
				inView = true
				break
			}
		}
		if !inView {
			return true
		}
	}
	return false
}
