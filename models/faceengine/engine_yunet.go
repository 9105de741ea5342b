package faceengine

import (
	"context"
	"image"
	"math"

	"github.com/diemdanh/diemdanh/models/errkind"
	"github.com/diemdanh/diemdanh/models/match"
	"gocv.io/x/gocv"
)

// pointEmbedder is an embedder that can align a face on YuNet's five
// landmarks (ONNXSpec.Align5).
type pointEmbedder interface {
	Aligns5() bool
	EmbedPoints(ctx context.Context, img gocv.Mat, lm [5]Point2) (match.Descriptor, error)
}

// Aligns5 reports whether the embedder aligns on YuNet's landmarks.
func (e *ONNXEmbedder) Aligns5() bool { return e.spec.Align5 }

// UsesYuNet reports whether the engine detects and places landmarks with
// YuNet (its embedder aligns on YuNet's five points) rather than dlib.
func (e *Engine) UsesYuNet() bool { return e.pe != nil }

func (e *Engine) loadYuNet() error {
	e.pe = e.emb.(pointEmbedder)
	e.yn = make(chan *YuNetDetector, e.cfg.Workers)
	for i := 0; i < e.cfg.Workers; i++ {
		d, err := NewYuNetDetector(e.cfg.ModelsDir)
		if err != nil {
			return err
		}
		e.ynAll = append(e.ynAll, d)
		e.yn <- d
	}
	return nil
}

// detectYuNet runs one of the pool's detectors on img. The caller holds
// e.mu for reading.
func (e *Engine) detectYuNet(ctx context.Context, img gocv.Mat) ([]FaceBox, error) {
	var d *YuNetDetector
	select {
	case d = <-e.yn:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	defer func() { e.yn <- d }()
	return d.Detect(img)
}

// YuNetPhotoSide is the long side, in pixels, a whole image is scaled down
// to before YuNet looks for faces in it (enrolment photos, identify, the
// evaluation harness). Landmarks are mapped back and faces are aligned
// from the full-resolution image.
const YuNetPhotoSide = 640

// recognizeYuNet finds every face in a BGR image with YuNet and embeds each
// from its five landmarks at the image's full resolution.
func (e *Engine) recognizeYuNet(ctx context.Context, src gocv.Mat) ([]match.Face, error) {
	e.mu.RLock()
	defer e.mu.RUnlock()
	if e.shut {
		return nil, errkind.New(errkind.Closed, "recognize", nil, "engine closed")
	}
	work, scale := src, 1.0
	if long := max(src.Cols(), src.Rows()); long > YuNetPhotoSide {
		scale = float64(YuNetPhotoSide) / float64(long)
		small := gocv.NewMat()
		defer small.Close()
		gocv.Resize(src, &small, image.Pt(int(math.Round(float64(src.Cols())*scale)), int(math.Round(float64(src.Rows())*scale))), 0, 0, gocv.InterpolationArea)
		work = small
	}
	if work.Cols() < 8 || work.Rows() < 8 {
		return nil, nil
	}
	boxes, err := e.detectYuNet(ctx, work)
	if err != nil {
		return nil, err
	}
	out := make([]match.Face, 0, len(boxes))
	for _, b := range boxes {
		f := b.scaled(1/scale, image.Point{})
		if r, err := e.refineYuNet(ctx, src, f.Box); err != nil {
			return nil, err
		} else if r != nil {
			f = *r
		}
		fc, err := e.embedFaceBox(ctx, src, f)
		if err != nil {
			return nil, err
		}
		out = append(out, *fc)
	}
	return out, nil
}

// scaled maps a detection from an image scaled by 1/k (and offset by off
// in the original) back to the original's coordinates.
func (f FaceBox) scaled(k float64, off image.Point) FaceBox {
	o := FaceBox{Score: f.Score, Box: image.Rect(int(math.Round(float64(f.Box.Min.X)*k)), int(math.Round(float64(f.Box.Min.Y)*k)),
		int(math.Round(float64(f.Box.Max.X)*k)), int(math.Round(float64(f.Box.Max.Y)*k))).Add(off)}
	for i, p := range f.Landmarks {
		o.Landmarks[i] = Point2{p.X*k + float64(off.X), p.Y*k + float64(off.Y)}
	}
	return o
}

func (e *Engine) embedFaceBox(ctx context.Context, src gocv.Mat, f FaceBox) (*match.Face, error) {
	d, err := e.pe.EmbedPoints(ctx, src, f.Landmarks)
	if err != nil {
		return nil, err
	}
	q := MeasureCrop(src, f.Box)
	q.YawDeg, q.RollDeg = PoseFrom5(f.Landmarks)
	return &match.Face{Box: f.Box, Landmarks: f.Points(), Descriptor: d, Quality: q}, nil
}

// describeYuNet is DescribeCrop for Align5 embedders: YuNet runs again on
// a crop around box at a resolution where the face is about
// describeFacePx wide, which places the five landmarks precisely whatever
// detector found the box (the gate's coarse pass works on a downscaled
// frame); the face overlapping box best is embedded. (nil, nil) when YuNet
// finds no face there.
func (e *Engine) describeYuNet(ctx context.Context, m gocv.Mat, box image.Rectangle) (*match.Face, error) {
	if m.Type() != gocv.MatTypeCV8UC3 {
		return nil, errkind.New(errkind.Invalid, "describe", nil, "need an 8-bit BGR frame, got type %v", m.Type())
	}
	e.mu.RLock()
	defer e.mu.RUnlock()
	if e.shut {
		return nil, errkind.New(errkind.Closed, "describe", nil, "engine closed")
	}
	r, err := e.refineYuNet(ctx, m, box)
	if err != nil || r == nil {
		return nil, err
	}
	return e.embedFaceBox(ctx, m, *r)
}

// refineYuNet runs YuNet again on a crop around box, with half the box's
// width of context on every side (replicated where the crop leaves the
// image: tight ID crops have none) and scaled so the face is about
// describeFacePx wide. Landmarks from a face that fills YuNet's whole input,
// or that is only a few pixels across, are imprecise; so placed, they are
// consistent whatever the photo or detector. It returns the detection that
// overlaps box best, in m's coordinates, or nil when there is none.
// The caller holds e.mu for reading.
func (e *Engine) refineYuNet(ctx context.Context, m gocv.Mat, box image.Rectangle) (*FaceBox, error) {
	bounds := image.Rect(0, 0, m.Cols(), m.Rows())
	box = box.Intersect(bounds)
	if box.Dx() < 8 || box.Dy() < 8 {
		return nil, nil
	}
	// A square of twice the face's width around its centre, always
	// scaled to the same input size (one network shape, so OpenCV keeps
	// one set of buffers).
	side := 2 * box.Dx()
	c := image.Pt((box.Min.X+box.Max.X)/2, (box.Min.Y+box.Max.Y)/2)
	want := image.Rect(c.X-side/2, c.Y-side/2, c.X-side/2+side, c.Y-side/2+side)
	rr := want.Intersect(bounds)
	roi := m.Region(rr)
	defer roi.Close()
	crop := roi
	if rr != want {
		ext := gocv.NewMat()
		defer ext.Close()
		gocv.CopyMakeBorder(roi, &ext, rr.Min.Y-want.Min.Y, want.Max.Y-rr.Max.Y, rr.Min.X-want.Min.X, want.Max.X-rr.Max.X, gocv.BorderReplicate, ColorBlack())
		crop = ext
	}
	const in = 2 * describeFacePx
	k := float64(in) / float64(side)
	work := gocv.NewMat()
	defer work.Close()
	interp := gocv.InterpolationLinear
	if k < 1 {
		interp = gocv.InterpolationArea
	}
	gocv.Resize(crop, &work, image.Pt(in, in), 0, 0, interp)
	found, err := e.detectYuNet(ctx, work)
	if err != nil {
		return nil, err
	}
	inCrop := box.Sub(want.Min)
	best, bestIoU := -1, 0.2
	for i, f := range found {
		if v := IoU(f.scaled(1/k, image.Point{}).Box, inCrop); v > bestIoU {
			best, bestIoU = i, v
		}
	}
	if best < 0 {
		return nil, nil
	}
	r := found[best].scaled(1/k, want.Min)
	r.Box = r.Box.Intersect(bounds)
	return &r, nil
}

// describeFacePx is the face width YuNet re-detects a gate crop at.
const describeFacePx = 200

// PoseFrom5 estimates yaw and roll in degrees from YuNet's five landmarks,
// like PoseFromLandmarks does from dlib's (the nose tip stands in for the
// nose base).
func PoseFrom5(lm [5]Point2) (yaw, roll float64) {
	return poseFromEyesNose([2]float64{lm[0].X, lm[0].Y}, [2]float64{lm[1].X, lm[1].Y}, [2]float64{lm[2].X, lm[2].Y}, yuNetNoseDepth)
}

// yuNetNoseDepth is the nose tip's offset along the eye line, in eye
// distances, at 90° of yaw (TestPoseFrom5MatchesDlib checks it against
// dlib's estimate).
const yuNetNoseDepth = 0.55
