package gatelearn

import (
	"context"
	"fmt"
	"math"
	"os"
	"sort"

	"github.com/diemdanh/diemdanh/models/faceengine"
	"github.com/diemdanh/diemdanh/models/match"
)

// The teacher knows the faces of the people who walked: the truth says who
// was in view while a track lasted, and the photo each of them walked.
// Groups of two or three walk side by side, so the frames alone do not
// say whose face an unrecognised track is; the teacher's eyes then compare
// the track's crop with the photos of the people in view (a crop is a
// rendering of the photo it was drawn from: it lies far nearer to it than
// to anybody else's photo) and name the face only when one photo is
// clearly the one. Otherwise the face is left open, as a teacher who is
// not sure leaves it.

// Passage is one person walking past the gate on a day (the truth).
type Passage struct {
	ID        string
	StudentID string // "" for a visitor
	// First and Last are the frames in which the face is in view.
	First, Last int64
	Photo       string // the photo walked (a path the engine can read)
}

// Visitor reports whether nobody enrolled walked.
func (p Passage) Visitor() bool { return p.StudentID == "" }

// Track is a track the gate reported as an unrecognised face: its capture
// ID and its first and last frames.
type Track struct {
	CaptureID   string
	First, Last int64
}

// Announcement is an event the gate sent for a pupil: its ID, the pupil
// and the frame of the deciding vote.
type Announcement struct {
	EventID, StudentID string
	Frame              int64
}

// The teacher's eyes: a crop is named after the photo nearest to its
// descriptor among those of the people in view when that photo is within
// sameFaceMax and every other is at least minGap further. Measured over
// the suite's first 20 days with learning (SFace, real L2, 462 faces): a
// pupil's crop lay 0.15–0.94 from the photo it was named after (median
// 0.54), a visitor's 0.10–0.87, and the next photo in view 0.97 or more
// from a named crop; 23 faces were left open.
const (
	sameFaceMax = 0.95
	minGap      = 0.2
)

// Who the teacher says a face is.
type verdict struct {
	passage *Passage // nil: not sure
	nearest float64  // distance to the chosen photo (unsure: the nearest)
	gap     float64  // to the next photo in view (+Inf when none)
}

// inView returns the passages whose face was in view during the frames
// [first, last], with slack frames of tolerance at their ends.
func inView(passages []Passage, first, last, slack int64) []*Passage {
	var out []*Passage
	for i := range passages {
		p := &passages[i]
		if p.First-slack <= last && first <= p.Last+slack {
			out = append(out, p)
		}
	}
	return out
}

// identify says whose face desc is among the people in view.
func (e *eyes) identify(ctx context.Context, desc match.Descriptor, inView []*Passage) (verdict, error) {
	v := verdict{nearest: math.Inf(1), gap: math.Inf(1)}
	if len(desc) == 0 {
		return v, nil
	}
	type cand struct {
		p *Passage
		d float64
	}
	var cands []cand
	for _, p := range inView {
		pd, err := e.photo(ctx, p.Photo)
		if err != nil {
			return v, err
		}
		if len(pd) == len(desc) {
			cands = append(cands, cand{p, match.Distance(desc, pd)})
		}
	}
	if len(cands) == 0 {
		return v, nil
	}
	sort.SliceStable(cands, func(i, j int) bool { return cands[i].d < cands[j].d })
	v.nearest = cands[0].d
	if len(cands) > 1 {
		v.gap = cands[1].d - cands[0].d
	}
	if v.nearest <= sameFaceMax && v.gap >= minGap {
		v.passage = cands[0].p
	}
	return v, nil
}

// wrongAnnouncement reports whether no passage of the announced pupil was
// in view at the deciding frame (or the slack frames after it): the
// pupil the event names did not walk then (edge/bench's rule for a wrong
// pupil or a visitor taken for a pupil).
func wrongAnnouncement(passages []Passage, a Announcement, slack int64) bool {
	for _, p := range passages {
		if p.StudentID == a.StudentID && a.Frame >= p.First && a.Frame <= p.Last+slack {
			return false
		}
	}
	return true
}

// eyes describes the photos walked, each once.
type eyes struct {
	eng    *faceengine.Engine
	photos map[string]match.Descriptor // nil: no face found
}

func newEyes(eng *faceengine.Engine) *eyes {
	return &eyes{eng: eng, photos: map[string]match.Descriptor{}}
}

// photo returns the descriptor of the photo's largest face (nil when the
// engine finds none).
func (e *eyes) photo(ctx context.Context, path string) (match.Descriptor, error) {
	if d, ok := e.photos[path]; ok {
		return d, nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("gatelearn: photo walked: %w", err)
	}
	m, _, err := faceengine.DecodeMat(b, e.eng.Limits())
	if err != nil {
		return nil, fmt.Errorf("gatelearn: photo %s: %w", path, err)
	}
	defer m.Close()
	faces, err := e.eng.RecognizeTight(ctx, m)
	if err != nil {
		return nil, fmt.Errorf("gatelearn: photo %s: %w", path, err)
	}
	var d match.Descriptor
	best := 0
	for _, f := range faces {
		if f.Box.Dx() > best {
			best, d = f.Box.Dx(), f.Descriptor
		}
	}
	e.photos[path] = d
	return d, nil
}

// forget drops the descriptors.
func (e *eyes) forget() {
	if e != nil {
		e.photos = map[string]match.Descriptor{}
	}
}
