package faceengine

import (
	"image"
	"math"

	"github.com/diemdanh/diemdanh/models/match"
	"gocv.io/x/gocv"
)

// qualityRefWidth is the width faces are scaled to before measuring
// sharpness, so the figure does not depend on the face's size.
const qualityRefWidth = 112

// MeasureCrop computes size, sharpness and brightness of box within the BGR
// image m. Pose needs landmarks; see PoseFromLandmarks.
func MeasureCrop(m gocv.Mat, box image.Rectangle) match.Quality {
	box = box.Intersect(image.Rect(0, 0, m.Cols(), m.Rows()))
	q := match.Quality{SizePx: box.Dx()}
	if box.Dx() < 4 || box.Dy() < 4 {
		return q
	}
	roi := m.Region(box)
	defer roi.Close()
	gray := gocv.NewMat()
	defer gray.Close()
	if roi.Channels() == 1 {
		roi.CopyTo(&gray)
	} else {
		gocv.CvtColor(roi, &gray, gocv.ColorBGRToGray)
	}
	small := gocv.NewMat()
	defer small.Close()
	h := int(float64(box.Dy()) * qualityRefWidth / float64(box.Dx()))
	if h < 4 {
		h = 4
	}
	gocv.Resize(gray, &small, image.Pt(qualityRefWidth, h), 0, 0, gocv.InterpolationArea)
	lap := gocv.NewMat()
	defer lap.Close()
	gocv.Laplacian(small, &lap, gocv.MatTypeCV64F, 1, 1, 0, gocv.BorderDefault)
	mean, std := gocv.NewMat(), gocv.NewMat()
	defer mean.Close()
	defer std.Close()
	gocv.MeanStdDev(lap, &mean, &std)
	sd := std.GetDoubleAt(0, 0)
	q.Sharpness = sd * sd
	gocv.MeanStdDev(small, &mean, &std)
	q.Brightness = mean.GetDoubleAt(0, 0)
	return q
}

// PoseFromLandmarks estimates yaw and roll in degrees from dlib's 5-point
// landmarks (two corners of each eye, then the base of the nose). Roll is
// the angle of the line between the eye centres. Yaw comes from how far the
// nose sits off the eyes' midpoint, relative to the eye distance, taking the
// nose base to stand about 0.55 eye-distances in front of the eye plane.
// It is rough (±10°), enough to reject profile shots.
func PoseFromLandmarks(pts []image.Point) (yaw, roll float64) {
	if len(pts) < 5 {
		return 0, 0
	}
	return poseFromEyesNose(midpoint(pts[0], pts[1]), midpoint(pts[2], pts[3]), [2]float64{float64(pts[4].X), float64(pts[4].Y)}, 0.55)
}

// poseFromEyesNose: roll from the eye line, yaw from where the nose sits
// along it (depth: the nose's offset in eye distances at 90°).
func poseFromEyesNose(a, b, nose [2]float64, depth float64) (yaw, roll float64) {
	if a[0] > b[0] {
		a, b = b, a
	}
	dx, dy := b[0]-a[0], b[1]-a[1]
	iod := math.Hypot(dx, dy)
	if iod < 1 {
		return 0, 0
	}
	roll = math.Atan2(dy, dx) * 180 / math.Pi
	// Project the nose onto the eye line, in units of eye distance.
	mx, my := (a[0]+b[0])/2, (a[1]+b[1])/2
	nx, ny := nose[0]-mx, nose[1]-my
	along := (nx*dx + ny*dy) / (iod * iod)
	r := along / depth
	r = math.Max(-1, math.Min(1, r))
	yaw = math.Asin(r) * 180 / math.Pi
	return yaw, roll
}

func midpoint(p, q image.Point) [2]float64 {
	return [2]float64{float64(p.X+q.X) / 2, float64(p.Y+q.Y) / 2}
}
