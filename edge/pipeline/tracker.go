package pipeline

import (
	"image"
	"sort"
	"time"

	"github.com/diemdanh/diemdanh/models/faceengine"
)

// TrackerConfig tunes the IoU tracker.
type TrackerConfig struct {
	// MinIoU is the overlap a detection needs with a track's last box to
	// continue it.
	MinIoU float64 `yaml:"min_iou"`
	// MaxMissed is how many detection passes in a row a track may go
	// unmatched before it ends.
	MaxMissed int `yaml:"max_missed"`
	// MaxScaleChange is the most a face's width may change between two
	// matched detections (ratio, either way). Without it a stale track of
	// a pupil who has just passed (large box, missed for a few frames)
	// captures the next pupil walking up the same lane once the newcomer's
	// face has grown to overlap it, and the newcomer is never described:
	// he inherits a decided track. 0 turns the check off.
	MaxScaleChange float64 `yaml:"max_scale_change"`
}

// DefaultTrackerConfig suits a gate camera at 25 fps: faces move a few
// pixels and grow a few percent between frames.
func DefaultTrackerConfig() TrackerConfig {
	return TrackerConfig{MinIoU: 0.3, MaxMissed: 8, MaxScaleChange: 1.33}
}

// sameScale reports whether box b may continue a track whose last box is a.
func (c TrackerConfig) sameScale(a, b image.Rectangle) bool {
	if c.MaxScaleChange <= 0 || a.Dx() <= 0 || b.Dx() <= 0 {
		return true
	}
	r := float64(b.Dx()) / float64(a.Dx())
	return r <= c.MaxScaleChange && r >= 1/c.MaxScaleChange
}

// Track is one face followed across frames.
type Track struct {
	ID         int64
	Box        image.Rectangle // last box, full-frame coordinates
	FirstFrame int64
	LastFrame  int64
	FirstSeen  time.Time
	LastSeen   time.Time
	Hits       int
	Missed     int

	// Recognition state, guarded by the pipeline's lock.
	Votes          []Vote
	Describes      int   // descriptor attempts, including ones that found no face
	Pending        int   // attempts in flight
	LastDescribe   int64 // frame of the last attempt
	LastDescribePx int   // face width at the last attempt (0: none yet)
	Decided        bool
	Decision       Decision
	Ended          bool
	Finalized      bool
}

// Tracker associates detections with tracks by greedy IoU matching. It is
// not safe for concurrent use; the pipeline guards it.
type Tracker struct {
	cfg    TrackerConfig
	next   int64
	active []*Track
}

// NewTracker returns an empty tracker.
func NewTracker(cfg TrackerConfig) *Tracker { return &Tracker{cfg: cfg, next: 1} }

// Active returns the live tracks (not a copy of the tracks themselves).
func (t *Tracker) Active() []*Track { return t.active }

// IoU is the intersection over union of two boxes (faceengine.IoU).
func IoU(a, b image.Rectangle) float64 { return faceengine.IoU(a, b) }

// Update matches the detections of one frame to the active tracks, starts
// a track for every unmatched detection and ends tracks missed for more
// than MaxMissed passes. It returns the tracks each detection belongs to
// (same order as dets) and the tracks that ended.
func (t *Tracker) Update(dets []image.Rectangle, frame int64, at time.Time) (assigned []*Track, ended []*Track) {
	type pair struct {
		ti, di int
		iou    float64
	}
	var pairs []pair
	for ti, tr := range t.active {
		for di, d := range dets {
			if v := IoU(tr.Box, d); v >= t.cfg.MinIoU && t.cfg.sameScale(tr.Box, d) {
				pairs = append(pairs, pair{ti, di, v})
			}
		}
	}
	sort.Slice(pairs, func(i, j int) bool {
		if pairs[i].iou != pairs[j].iou {
			return pairs[i].iou > pairs[j].iou
		}
		if pairs[i].ti != pairs[j].ti {
			return pairs[i].ti < pairs[j].ti
		}
		return pairs[i].di < pairs[j].di
	})
	assigned = make([]*Track, len(dets))
	usedT := make([]bool, len(t.active))
	for _, p := range pairs {
		if usedT[p.ti] || assigned[p.di] != nil {
			continue
		}
		usedT[p.ti] = true
		tr := t.active[p.ti]
		tr.Box, tr.LastFrame, tr.LastSeen, tr.Missed = dets[p.di], frame, at, 0
		tr.Hits++
		assigned[p.di] = tr
	}
	keep := t.active[:0]
	for ti, tr := range t.active {
		if !usedT[ti] {
			tr.Missed++
			if tr.Missed > t.cfg.MaxMissed {
				tr.Ended = true
				ended = append(ended, tr)
				continue
			}
		}
		keep = append(keep, tr)
	}
	t.active = keep
	for di, d := range dets {
		if assigned[di] != nil {
			continue
		}
		tr := &Track{ID: t.next, Box: d, FirstFrame: frame, LastFrame: frame, FirstSeen: at, LastSeen: at, Hits: 1, LastDescribe: -1 << 40}
		t.next++
		t.active = append(t.active, tr)
		assigned[di] = tr
	}
	return assigned, ended
}

// Flush ends every active track (end of a video, shutdown).
func (t *Tracker) Flush() []*Track {
	out := t.active
	for _, tr := range out {
		tr.Ended = true
	}
	t.active = nil
	return out
}
