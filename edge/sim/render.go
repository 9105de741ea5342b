package sim

import (
	"context"
	"fmt"
	"image"
	"image/color"
	"math"
	"sort"

	"gocv.io/x/gocv"
)

func background(w, h int) gocv.Mat {
	bg := gocv.NewMatWithSizeFromScalar(gocv.NewScalar(150, 160, 165, 0), h, w, gocv.MatTypeCV8UC3)
	// wall, ground, gate posts, a notice board, paving lines
	gocv.Rectangle(&bg, image.Rect(0, 0, w, h*45/100), color.RGBA{200, 190, 170, 0}, -1)
	gocv.Rectangle(&bg, image.Rect(0, h*75/100, w, h), color.RGBA{95, 100, 105, 0}, -1)
	gocv.Rectangle(&bg, image.Rect(w*4/100, h*10/100, w*10/100, h), color.RGBA{60, 70, 140, 0}, -1)
	gocv.Rectangle(&bg, image.Rect(w*90/100, h*10/100, w*96/100, h), color.RGBA{60, 70, 140, 0}, -1)
	gocv.Rectangle(&bg, image.Rect(w*14/100, h*8/100, w*30/100, h*30/100), color.RGBA{40, 110, 60, 0}, -1)
	gocv.PutText(&bg, "TRUONG THCS DEMO", image.Pt(w*36/100, h*12/100), gocv.FontHersheySimplex, 1.6, color.RGBA{30, 30, 150, 0}, 3)
	for x := -h; x < w; x += w / 16 {
		gocv.Line(&bg, image.Pt(x, h), image.Pt(x+h/3, h*75/100), color.RGBA{80, 85, 90, 0}, 2)
	}
	return bg
}

func blurKernel(n int, diag bool) gocv.Mat {
	k := gocv.NewMatWithSize(n, n, gocv.MatTypeCV32F)
	k.SetTo(gocv.NewScalar(0, 0, 0, 0))
	for i := 0; i < n; i++ {
		if diag {
			k.SetFloatAt(i, i, 1/float32(n))
		} else {
			k.SetFloatAt(n/2, i, 1/float32(n))
		}
	}
	return k
}

// render writes the video: on each frame, the background, the passages
// in view (far first, near on top; renderer.draw), then the light drift.
func render(ctx context.Context, o Options, ps []*passage, frames int) error {
	vw, err := gocv.VideoWriterFile(o.Out, "MJPG", o.FPS, o.Width, o.Height, true)
	if err != nil {
		return fmt.Errorf("simulate: video %s: %w", o.Out, err)
	}
	defer vw.Close()
	if !vw.IsOpened() {
		return fmt.Errorf("simulate: cannot open %s for writing (use a .avi name)", o.Out)
	}
	bg := background(o.Width, o.Height)
	defer bg.Close()
	lit := gocv.NewMat()
	defer lit.Close()
	r := newRenderer(o.Width, o.Height)
	defer r.close()
	var active []inView
	next := 0
	for f := 0; f < frames; f++ {
		if f%25 == 0 && ctx.Err() != nil {
			return ctx.Err()
		}
		bg.CopyTo(&r.frame)
		active, next = passagesAt(ps, next, f, active[:0])
		sort.Slice(active, func(i, j int) bool { return active[i].w < active[j].w }) // far first, near on top
		for _, a := range active {
			r.draw(a)
		}
		// Changing light: slow brightness and contrast drift over the scene.
		ft := float64(f) / o.FPS
		alpha := 1 + 0.18*math.Sin(2*math.Pi*ft/17)
		beta := 18 * math.Sin(2*math.Pi*ft/11)
		r.frame.ConvertToWithParams(&lit, -1, float32(alpha), float32(beta))
		if err := vw.Write(lit); err != nil {
			return fmt.Errorf("simulate: writing frame %d: %w", f, err)
		}
	}
	return nil
}

// inView is a passage on one frame: its face's width and centre, and how
// far along the passage is (0–1).
type inView struct {
	p         *passage
	w, cx, cy float64
	t         float64
}

// passagesAt appends to active the passages in view on frame f: those
// started before (ps[:next]) that have not ended, then those starting now.
// ps is in start order; it returns the new next.
func passagesAt(ps []*passage, next, f int, active []inView) ([]inView, int) {
	for _, p := range ps[:next] {
		if f < p.start+p.frames {
			w, cx, cy, t := p.faceAt(f)
			active = append(active, inView{p, w, cx, cy, t})
		}
	}
	for next < len(ps) && ps[next].start <= f {
		p := ps[next]
		w, cx, cy, t := p.faceAt(f)
		active = append(active, inView{p, w, cx, cy, t})
		next++
	}
	return active, next
}

// renderer holds the frame being drawn and its scratch images.
type renderer struct {
	frame, tmp, tmp2 gocv.Mat
	kernels          map[[2]int]gocv.Mat // motion blur, by length and direction
	bounds           image.Rectangle
}

func newRenderer(w, h int) *renderer {
	return &renderer{frame: gocv.NewMat(), tmp: gocv.NewMat(), tmp2: gocv.NewMat(), kernels: map[[2]int]gocv.Mat{},
		bounds: image.Rect(0, 0, w, h)}
}

func (r *renderer) close() {
	for _, k := range r.kernels {
		k.Close()
	}
	r.frame.Close()
	r.tmp.Close()
	r.tmp2.Close()
}

// draw pastes a passage's sprite onto the frame at its scale, with its
// gain, motion blur early in the walk, and occlusion, through a mask of
// the head, neck and shoulders.
func (r *renderer) draw(a inView) {
	p := a.p
	s := a.w / float64(p.a.Face.Dx())
	sw := int(math.Round(float64(p.a.Sprite.Cols()) * s))
	sh := int(math.Round(float64(p.a.Sprite.Rows()) * s))
	fcx := float64(p.a.Face.Min.X+p.a.Face.Max.X) / 2 * s
	fcy := float64(p.a.Face.Min.Y+p.a.Face.Max.Y) / 2 * s
	origin := image.Pt(int(math.Round(a.cx-fcx)), int(math.Round(a.cy-fcy)))
	dst := image.Rect(0, 0, sw, sh).Add(origin).Intersect(r.bounds)
	if dst.Empty() || sw < 4 || sh < 4 {
		return
	}
	gocv.Resize(p.a.Sprite, &r.tmp, image.Pt(sw, sh), 0, 0, gocv.InterpolationLinear)
	r.tmp.ConvertToWithParams(&r.tmp2, -1, float32(p.gain), 0)
	cur := r.tmp2
	if p.blurredAt(a.t) {
		key := [2]int{p.blur, map[bool]int{true: 1}[p.blurDiag]}
		k, ok := r.kernels[key]
		if !ok {
			k = blurKernel(p.blur, p.blurDiag)
			r.kernels[key] = k
		}
		gocv.Filter2D(r.tmp2, &r.tmp, -1, k, image.Pt(-1, -1), 0, gocv.BorderReflect)
		cur = r.tmp
	}
	face := image.Rect(int(float64(p.a.Face.Min.X)*s), int(float64(p.a.Face.Min.Y)*s),
		int(float64(p.a.Face.Max.X)*s), int(float64(p.a.Face.Max.Y)*s))
	if p.occludedAt(a.t) {
		fw, fh := face.Dx(), face.Dy()
		o := image.Rect(face.Min.X-fw/10, face.Min.Y+fh*6/10, face.Max.X+fw/10, face.Max.Y+fh/4) // scarf / raised hand
		if p.occSide {
			o = image.Rect(face.Min.X-fw/5, face.Min.Y-fh/5, face.Min.X+fw*4/10, face.Max.Y+fh/5) // another pupil's shoulder
		}
		gocv.Rectangle(&cur, o, color.RGBA{70, 50, 40, 0}, -1)
	}
	mask := spriteMask(sw, sh, face)
	defer mask.Close()
	src := image.Rectangle{Min: dst.Min.Sub(origin), Max: dst.Max.Sub(origin)}
	sroi, mroi, froi := cur.Region(src), mask.Region(src), r.frame.Region(dst)
	sroi.CopyToWithMask(&froi, mroi)
	sroi.Close()
	mroi.Close()
	froi.Close()
}

// spriteMask is the part of a sw×sh sprite with its face at face that is
// pasted: an ellipse around the head, and the neck and shoulders below.
func spriteMask(sw, sh int, face image.Rectangle) gocv.Mat {
	mask := gocv.NewMatWithSize(sh, sw, gocv.MatTypeCV8U)
	mask.SetTo(gocv.NewScalar(0, 0, 0, 0))
	ctr := image.Pt((face.Min.X+face.Max.X)/2, (face.Min.Y+face.Max.Y)/2-face.Dy()/8)
	gocv.Ellipse(&mask, ctr, image.Pt(face.Dx()*8/10, face.Dy()*12/10), 0, 0, 360, color.RGBA{255, 255, 255, 0}, -1)
	gocv.Rectangle(&mask, image.Rect(face.Min.X-face.Dx()/4, face.Max.Y, face.Max.X+face.Dx()/4, sh), color.RGBA{255, 255, 255, 0}, -1) // neck and shoulders
	return mask
}
