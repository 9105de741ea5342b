package pipeline

import (
	"fmt"
	"image"

	"github.com/diemdanh/diemdanh/models/conf"
	"github.com/diemdanh/diemdanh/models/faceengine"
	"gocv.io/x/gocv"
)

// Detector names for Config.Detector.
const (
	DetectorAuto  = "auto"  // the detector the engine's landmarks expect (default)
	DetectorYuNet = "yunet" // OpenCV Zoo YuNet: finds faces from ~10 px, blurred and half-covered ones too
	DetectorHOG   = "hog"   // dlib's HOG: frontal, sharp faces from 80 px
)

// yunetUser is implemented by a Describer that places landmarks with
// YuNet (faceengine.Engine.UsesYuNet).
type yunetUser interface{ UsesYuNet() bool }

// DetectorName is the detector the pipeline runs (DetectorAuto resolved).
func (p *Pipeline) DetectorName() string { return p.detectorName() }

// detectorName resolves DetectorAuto: YuNet when the describer places its
// landmarks with YuNet (the default embedder), else HOG, whose boxes dlib's
// shape predictor was trained on (describing a YuNet box with it would
// misplace the landmarks).
func (p *Pipeline) detectorName() string {
	if p.cfg.Detector != DetectorAuto && p.cfg.Detector != "" {
		return p.cfg.Detector
	}
	if y, ok := p.desc.(yunetUser); ok && y.UsesYuNet() {
		return DetectorYuNet
	}
	return DetectorHOG
}

// faceDetector is what the detect stage needs: the faces in a BGR image
// (a downscaled frame, or a window of the full frame for the fine pass).
// It is used from the detect goroutine only.
type faceDetector interface {
	Detect(img gocv.Mat, coarse bool) ([]faceengine.Detection, error)
	// MinFace is the narrowest face, in pixels of the image given, that
	// the detector finds reliably.
	MinFace() int
	Close()
}

// newDetector builds the configured detector.
func (p *Pipeline) newDetector() (faceDetector, error) {
	name := p.detectorName()
	if y, ok := p.desc.(yunetUser); ok && name == DetectorYuNet && !y.UsesYuNet() {
		p.log.Warn("detector yunet with an embedder aligned on dlib's landmarks: the shape predictor will run on YuNet's boxes, which it was not trained on; use detector auto or hog")
	}
	switch name {
	case DetectorHOG:
		d, err := faceengine.NewHOGDetector()
		if err != nil {
			return nil, err
		}
		return &hogDetector{d: d, gray: gocv.NewMat(), upsample: p.cfg.Upsample, adjust: p.cfg.HOGAdjust}, nil
	case DetectorYuNet:
		d, err := faceengine.NewYuNetDetector(conf.ResolveModelsDir(p.modelsDir))
		if err != nil {
			return nil, err
		}
		d.MinScore = p.cfg.YuNetScore
		return &yunetDetector{d: d}, nil
	}
	return nil, fmt.Errorf("unknown detector %q", name)
}

type hogDetector struct {
	d        *faceengine.HOGDetector
	gray     gocv.Mat
	upsample int
	adjust   float64
}

func (h *hogDetector) Detect(img gocv.Mat, coarse bool) ([]faceengine.Detection, error) {
	gocv.CvtColor(img, &h.gray, gocv.ColorBGRToGray)
	pix, err := h.gray.DataPtrUint8()
	if err != nil {
		return nil, fmt.Errorf("frame buffer: %w", err)
	}
	up := 0
	if coarse {
		up = h.upsample
	}
	return h.d.DetectGray(pix, h.gray.Cols(), h.gray.Rows(), h.gray.Step(), up, h.adjust)
}

// MinFace is the HOG window: one detection scale finds faces from 80 px.
func (h *hogDetector) MinFace() int { return hogWindow }

func (h *hogDetector) Close() { h.d.Close(); h.gray.Close() }

type yunetDetector struct{ d *faceengine.YuNetDetector }

func (y *yunetDetector) Detect(img gocv.Mat, _ bool) ([]faceengine.Detection, error) {
	faces, err := y.d.Detect(img)
	if err != nil {
		return nil, err
	}
	out := make([]faceengine.Detection, len(faces))
	for i, f := range faces {
		out[i] = faceengine.Detection{Box: f.Box, Score: f.Score}
	}
	return out, nil
}

// MinFace: YuNet's smallest anchors (stride 8) find faces from about 10 px;
// 16 is where it finds them reliably on the simulator's gate videos.
func (y *yunetDetector) MinFace() int { return yunetMinFace }

const yunetMinFace = 16

func (y *yunetDetector) Close() { y.d.Close() }

// detectIn runs det on the part r of img and returns boxes in img's
// coordinates.
func detectIn(det faceDetector, img gocv.Mat, r image.Rectangle, coarse bool) ([]faceengine.Detection, error) {
	if r == image.Rect(0, 0, img.Cols(), img.Rows()) {
		return det.Detect(img, coarse)
	}
	region := img.Region(r)
	defer region.Close()
	dets, err := det.Detect(region, coarse)
	for i := range dets {
		dets[i].Box = dets[i].Box.Add(r.Min)
	}
	return dets, err
}
