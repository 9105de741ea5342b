package faceengine

import (
	"image"
	"math"

	"github.com/diemdanh/diemdanh/models/errkind"
	"gocv.io/x/gocv"
)

// Point2 is a sub-pixel point.
type Point2 struct{ X, Y float64 }

// Affine is a 2×3 affine transform: x' = A*x + B*y + C, y' = D*x + E*y + F.
type Affine struct{ A, B, C, D, E, F float64 }

// Apply maps p through t.
func (t Affine) Apply(p Point2) Point2 {
	return Point2{t.A*p.X + t.B*p.Y + t.C, t.D*p.X + t.E*p.Y + t.F}
}

// Scale is the isotropic scale of a similarity transform.
func (t Affine) Scale() float64 { return math.Hypot(t.A, t.D) }

// Mat returns t as a 2×3 CV_64F Mat for gocv.WarpAffine. The caller closes it.
func (t Affine) Mat() gocv.Mat {
	m := gocv.NewMatWithSize(2, 3, gocv.MatTypeCV64F)
	for i, v := range []float64{t.A, t.B, t.C, t.D, t.E, t.F} {
		m.SetDoubleAt(i/3, i%3, v)
	}
	return m
}

// SimilarityTransform returns the least-squares similarity transform
// (rotation, isotropic scale, translation; no reflection or shear) that maps
// src onto dst (Umeyama 1991, in closed form for 2-D). It needs at least two
// distinct points; with exactly two the fit is exact.
func SimilarityTransform(src, dst []Point2) (Affine, error) {
	return WeightedSimilarity(src, dst, nil)
}

// WeightedSimilarity is SimilarityTransform with a weight per point pair
// (nil = all 1).
func WeightedSimilarity(src, dst []Point2, w []float64) (Affine, error) {
	n := len(src)
	if n < 2 || len(dst) != n || (w != nil && len(w) != n) {
		return Affine{}, errkind.New(errkind.Invalid, "align", nil, "need ≥2 point pairs, got %d and %d", len(src), len(dst))
	}
	wt := func(i int) float64 {
		if w == nil {
			return 1
		}
		return w[i]
	}
	var msx, msy, mdx, mdy, sw float64
	for i := range src {
		msx += wt(i) * src[i].X
		msy += wt(i) * src[i].Y
		mdx += wt(i) * dst[i].X
		mdy += wt(i) * dst[i].Y
		sw += wt(i)
	}
	if sw <= 0 {
		return Affine{}, errkind.New(errkind.Invalid, "align", nil, "weights sum to %g", sw)
	}
	msx, msy, mdx, mdy = msx/sw, msy/sw, mdx/sw, mdy/sw
	// With complex numbers s = x+iy (centred), the best a+ib minimises
	// Σw|d - (a+ib)s|², so a+ib = Σw·conj(s)·d / Σw|s|².
	var num, numI, den float64
	for i := range src {
		sx, sy := src[i].X-msx, src[i].Y-msy
		dx, dy := dst[i].X-mdx, dst[i].Y-mdy
		num += wt(i) * (sx*dx + sy*dy)
		numI += wt(i) * (sx*dy - sy*dx)
		den += wt(i) * (sx*sx + sy*sy)
	}
	if den < 1e-9 {
		return Affine{}, errkind.New(errkind.Invalid, "align", nil, "source points coincide")
	}
	a, b := num/den, numI/den
	return Affine{A: a, B: -b, C: mdx - (a*msx - b*msy), D: b, E: a, F: mdy - (b*msx + a*msy)}, nil
}

// ArcFace112 is the standard 5-point reference template for 112×112
// ArcFace/MobileFaceNet crops, in image coordinates: left eye, right eye
// (as seen in the image), nose tip, left and right mouth corners.
var ArcFace112 = [5]Point2{
	{38.2946, 51.6963}, {73.5318, 51.5014}, {56.0252, 71.7366}, {41.5493, 92.3655}, {70.7299, 92.2041},
}

// DlibNoseBaseArcFace112 is where dlib's nose base lands on average when
// faces are aligned by their eye centres alone onto ArcFace112 (measured
// on casia-facev5; TestDlibNoseBaseTarget re-measures it).
var DlibNoseBaseArcFace112 = Point2{56.3, 75.6}

// Dlib5 are the three points we can derive from dlib's 5-point shape
// predictor (eye corners and the base of the nose): the centre of the eye
// on the image's left, the centre of the eye on its right, and the nose
// base (subnasale). dlib orders its points 0,1 = the eye on the image's
// right (outer, inner corner), 2,3 = the eye on the image's left (outer,
// inner), 4 = the nose base; the order is checked here, not assumed, by
// comparing x coordinates, so a mirrored face still maps correctly.
func Dlib5(lm []image.Point) (leftEye, rightEye, noseBase Point2, err error) {
	if len(lm) != 5 {
		return Point2{}, Point2{}, Point2{}, errkind.New(errkind.Invalid, "align", nil, "want 5 dlib landmarks, got %d", len(lm))
	}
	mid := func(p, q image.Point) Point2 { return Point2{float64(p.X+q.X) / 2, float64(p.Y+q.Y) / 2} }
	e1, e2 := mid(lm[0], lm[1]), mid(lm[2], lm[3])
	if e1.X > e2.X {
		e1, e2 = e2, e1
	}
	return e1, e2, Point2{float64(lm[4].X), float64(lm[4].Y)}, nil
}

// Template3 is what an ONNX embedder aligns dlib's three derived points to,
// in the embedder's input coordinates.
type Template3 struct {
	LeftEye, RightEye, NoseBase Point2
	// NoseWeight weights the nose base in the least-squares fit (0 = eyes
	// only, an exact 2-point similarity; 1 = all three points count alike).
	NoseWeight float64
}

// AlignTransform returns the similarity transform that maps a face's dlib
// landmarks onto the template.
func (t Template3) AlignTransform(lm []image.Point) (Affine, error) {
	le, re, nb, err := Dlib5(lm)
	if err != nil {
		return Affine{}, err
	}
	if t.NoseWeight == 0 {
		return SimilarityTransform([]Point2{le, re}, []Point2{t.LeftEye, t.RightEye})
	}
	return WeightedSimilarity([]Point2{le, re, nb}, []Point2{t.LeftEye, t.RightEye, t.NoseBase}, []float64{1, 1, t.NoseWeight})
}

// AlignChip warps img (BGR) so the face's landmarks land on the template,
// into a size×size chip. The caller closes the chip.
func (t Template3) AlignChip(img gocv.Mat, lm []image.Point, size int) (gocv.Mat, Affine, error) {
	tr, err := t.AlignTransform(lm)
	if err != nil {
		return gocv.NewMat(), tr, err
	}
	m := tr.Mat()
	defer m.Close()
	chip := gocv.NewMat()
	gocv.WarpAffineWithParams(img, &chip, m, image.Pt(size, size), gocv.InterpolationLinear, gocv.BorderReplicate, ColorBlack())
	return chip, tr, nil
}
