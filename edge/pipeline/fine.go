package pipeline

import (
	"image"
	"sort"

	"github.com/diemdanh/diemdanh/models/faceengine"
	"gocv.io/x/gocv"
)

// The coarse pass detects on a frame downscaled to DetectWidth, so it
// cannot see faces narrower than the HOG window (80 px) times the
// downscale factor: 160 px at 1280×720 with the default 640. A pupil
// walking toward the camera appears smaller than that and would only be
// found well into the walk, which is most of the appearance→event latency.
// The fine pass looks for those small faces at full resolution, but only
// where they can be:
//   - around every live track whose face is still too small for the
//     coarse pass (the track would otherwise be lost between detections);
//   - in the regions that moved since the previous frame and hold no face
//     the coarse pass already found (a person who just came into view).
// Both are small parts of the frame, so the pass costs a fraction of a
// full-resolution detection. It is bounded by FineMaxArea and
// FineMaxWindows.

// fineWindow is one region of the full frame the fine pass searches.
type fineWindow struct {
	r     image.Rectangle
	track bool // around a live track (searched first)
}

// hogWindow is the side of dlib's HOG detection window: the smallest face
// one detection scale finds.
const hogWindow = 80

// fineWindows returns the regions of the full frame (W×H) to search for
// faces too small for the coarse pass: windows around small tracks and
// around moving regions not explained by coarse detections. motion is the
// thresholded tiny difference image (nil when unknown), tinyScale its
// full-frame pixels per tiny pixel.
func (p *Pipeline) fineWindows(W, H int, coarse []image.Rectangle, tracks []image.Rectangle, motion *gocv.Mat, tinyScale float64, roi image.Rectangle) []fineWindow {
	small := p.coarseMinFace(W)
	win := p.detMinFace()
	frame := image.Rect(0, 0, W, H)
	var ws []fineWindow
	for _, b := range tracks {
		if b.Dx() >= small {
			continue
		}
		m := max(b.Dx()/2, win/2)
		ws = append(ws, fineWindow{r: image.Rect(b.Min.X-m, b.Min.Y-m, b.Max.X+m, b.Max.Y+m).Intersect(frame), track: true})
	}
	if motion != nil && !motion.Empty() {
		cs := gocv.FindContours(*motion, gocv.RetrievalExternal, gocv.ChainApproxSimple)
		for i := 0; i < cs.Size(); i++ {
			br := gocv.BoundingRect(cs.At(i))
			r := image.Rect(int(float64(br.Min.X)*tinyScale), int(float64(br.Min.Y)*tinyScale),
				int(float64(br.Max.X)*tinyScale+0.5), int(float64(br.Max.Y)*tinyScale+0.5))
			if r.Dx() < win/2 || r.Dy() < win/2 {
				continue // too small to hold a detectable face
			}
			m := win / 2
			r = image.Rect(r.Min.X-m, r.Min.Y-m, r.Max.X+m, r.Max.Y+m).Intersect(frame)
			if explained(r, coarse, small) {
				continue
			}
			ws = append(ws, fineWindow{r: r})
		}
		cs.Close()
	}
	if !roi.Empty() {
		for i := range ws {
			ws[i].r = ws[i].r.Intersect(roi)
		}
	}
	// Merge overlapping windows so no pixel is searched twice.
	sort.SliceStable(ws, func(i, j int) bool { return ws[i].track && !ws[j].track })
	for merged := true; merged; {
		merged = false
		for i := 0; i < len(ws) && !merged; i++ {
			for j := i + 1; j < len(ws); j++ {
				if ws[i].r.Overlaps(ws[j].r) {
					ws[i] = fineWindow{r: ws[i].r.Union(ws[j].r), track: ws[i].track || ws[j].track}
					ws = append(ws[:j], ws[j+1:]...)
					merged = true
					break
				}
			}
		}
	}
	budget := int(p.cfg.FineMaxArea * float64(W*H))
	var out []fineWindow
	for _, w := range ws {
		if w.r.Dx() < win+8 || w.r.Dy() < win+8 {
			continue
		}
		a := w.r.Dx() * w.r.Dy()
		if a > budget || len(out) == p.cfg.FineMaxWindows {
			p.Stats.FineSkipped.Add(1)
			continue
		}
		budget -= a
		out = append(out, w)
	}
	return out
}

// explained reports whether region r is mostly covered by one of boxes at
// least minW wide (its motion is a face already found).
func explained(r image.Rectangle, boxes []image.Rectangle, minW int) bool {
	for _, b := range boxes {
		if b.Dx() < minW {
			continue
		}
		// A face's motion region is about the face plus its displacement.
		g := b.Dx() / 2
		big := image.Rect(b.Min.X-g, b.Min.Y-g, b.Max.X+g, b.Max.Y+g)
		in := r.Intersect(big)
		if in.Dx()*in.Dy()*10 >= r.Dx()*r.Dy()*7 {
			return true
		}
	}
	return false
}

// detMinFace is the running detector's smallest face (HOG's window
// before Run has built one).
func (p *Pipeline) detMinFace() int {
	if p.minFace > 0 {
		return p.minFace
	}
	return hogWindow
}

// coarseMinFace is the narrowest face (full-frame px) the coarse pass
// finds reliably on a frame W wide.
func (p *Pipeline) coarseMinFace(W int) int {
	scale := 1.0
	if W > p.cfg.DetectWidth {
		scale = float64(W) / float64(p.cfg.DetectWidth)
	}
	return int(float64(p.detMinFace()) * scale * 1.15)
}

// fineDetect runs the detector at full resolution in each window of the BGR frame
// and returns the faces found there that are not one of coarse. A coarse
// box narrower than coarseMinFace that a fine detection overlaps is
// replaced, in place, by the fine box: near its smallest scale the coarse
// pass reports its detection window rather than the face (about 1.4× too
// wide for a 100 px face at 640), so without this the track's box would
// jump when the coarse pass takes over from the fine one and
// Tracker.MaxScaleChange would restart the track.
func (p *Pipeline) fineDetect(frame gocv.Mat, ws []fineWindow, coarse []image.Rectangle, det faceDetector, st *detState) []faceengine.Detection {
	small := p.coarseMinFace(frame.Cols())
	refined := make([]bool, len(coarse))
	var found []faceengine.Detection
	for _, w := range ws {
		dets, err := detectIn(det, frame, w.r, false)
		if err != nil {
			p.Stats.Errors.Add(1)
			continue
		}
		p.Stats.FineWindows.Add(1)
		for _, d := range dets {
			dup := false
			for k, c := range coarse {
				if IoU(c, d.Box) > 0.3 {
					dup = true
					if c.Dx() < small && !refined[k] {
						coarse[k], refined[k] = d.Box, true
					}
				}
			}
			for _, f := range found {
				dup = dup || IoU(f.Box, d.Box) > 0.3
			}
			if !dup {
				found = append(found, d)
			}
		}
	}
	return found
}

// fineMotionLevel is the grey-level change (0–255) on the tiny motion image
// that marks a pixel as moved for the fine pass.
const fineMotionLevel = 12
