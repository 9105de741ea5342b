package sim

import (
	"context"
	"encoding/json"
	"fmt"
	"image"
	"math"
	"path/filepath"
	"sort"

	"github.com/diemdanh/diemdanh/models/conf"
	"gocv.io/x/gocv"
)

// renderDay schedules, renders and writes day d's video and truth. Only
// the day's sprites are in memory while it renders.
func renderDay(ctx context.Context, o SuiteOptions, minDescribe int, plan *suitePlan, d int, ana []*analysed) (SuiteDay, error) {
	day := SuiteDay{Day: d, Video: fmt.Sprintf("day%02d.avi", d), Truth: fmt.Sprintf("day%02d.truth.json", d),
		EnrolledBySet: map[string]int{}}
	var ps []*passage
	defer func() {
		for _, p := range ps {
			p.a.Sprite.Close()
			p.a.Sprite = gocv.Mat{}
		}
	}()
	for _, w := range plan.DayWalks[d-1] {
		a := ana[w.Photo.Idx]
		if err := loadSprite(a); err != nil {
			return day, err
		}
		p := &passage{a: a, name: w.Photo.Name, set: w.Photo.Set}
		if w.Person != nil {
			p.sid, p.name, p.enrolled = w.Person.SID, w.Person.Name, true
		}
		ps = append(ps, p)
	}
	rng := seededRand(o.Seed, fmt.Sprintf("day/%d", d))
	rng.Shuffle(len(ps), func(i, j int) { ps[i], ps[j] = ps[j], ps[i] })
	vo := Options{Out: filepath.Join(o.Dir, day.Video), FPS: o.FPS, Width: o.Width, Height: o.Height,
		MinFace: o.MinFace, MaxFace: o.MaxFace}
	frames := schedule(ps, vo, rng)
	sort.SliceStable(ps, func(i, j int) bool { return ps[i].start < ps[j].start })
	truth := Truth{Format: TruthFormat, FPS: o.FPS, Width: o.Width, Height: o.Height, Frames: frames, Seed: o.Seed, Day: d}
	for i, p := range ps {
		first, last := p.truthFrames(o.Width, o.Height, minDescribe)
		truth.Passages = append(truth.Passages, Passage{ID: fmt.Sprintf("d%02dp%03d", d, i+1), StudentID: p.sid,
			Enrolled: p.enrolled, Name: p.name, Set: p.set, Photo: p.a.Rel, FirstFrame: int64(p.start),
			LastFrame: int64(p.start + p.frames - 1), FirstRecognisable: first, LastInView: last,
			MinFacePx: int(math.Round(p.wmin)), MaxFacePx: int(math.Round(p.wmax)), Blur: p.blur > 0, Occluded: p.occEnd > 0})
		if p.enrolled {
			day.EnrolledPassages++
			day.EnrolledBySet[p.set]++
		} else {
			day.VisitorPassages++
		}
	}
	day.Frames = frames
	tb, err := json.MarshalIndent(truth, "", "  ")
	if err != nil {
		return day, err
	}
	if err := render(ctx, vo, ps, frames); err != nil {
		return day, err
	}
	if err := conf.WriteFileAtomic(filepath.Join(o.Dir, day.Truth), append(tb, '\n'), 0o644); err != nil {
		return day, fmt.Errorf("simulate: %w", err)
	}
	return day, nil
}

// truthFrames returns the passage's first recognisable frame (face at
// least minPx wide, wholly in a w×h frame, neither blurred nor occluded;
// -1 if none) and the last frame any part of its face is in the frame
// (-1 if none). The face box is the sprite's face box at the frame's
// scale, centred where draw centres it.
func (p *passage) truthFrames(w, h, minPx int) (first, last int64) {
	first, last = -1, -1
	frame := image.Rect(0, 0, w, h)
	aspect := float64(p.a.Face.Dy()) / float64(p.a.Face.Dx())
	for f := p.start; f < p.start+p.frames; f++ {
		fw, cx, cy, t := p.faceAt(f)
		fh := fw * aspect
		box := image.Rect(int(math.Floor(cx-fw/2)), int(math.Floor(cy-fh/2)), int(math.Ceil(cx+fw/2)), int(math.Ceil(cy+fh/2)))
		if box.Overlaps(frame) {
			last = int64(f)
		}
		if first < 0 && fw >= float64(minPx) && box.In(frame) && !p.blurredAt(t) && !p.occludedAt(t) {
			first = int64(f)
		}
	}
	return first, last
}
