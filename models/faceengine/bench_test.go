package faceengine

import (
	"context"
	"image"
	"testing"

	"github.com/diemdanh/diemdanh/models/imagecheck"
	"gocv.io/x/gocv"
)

// Benchmarks for deploy/PERFORMANCE.md:
//   go test -run '^$' -bench . -benchmem ./models/faceengine/

func benchFrame(b *testing.B, w, h int) gocv.Mat {
	b.Helper()
	m, _, err := DecodeMat(readImage(b, "chaeyoung2.jpg"), imagecheck.DefaultLimits())
	if err != nil {
		b.Fatal(err)
	}
	defer m.Close()
	// Letterbox the photo into a w×h frame, as a gate camera frame would be.
	frame := gocv.NewMatWithSize(h, w, gocv.MatTypeCV8UC3)
	scale := float64(h) / float64(m.Rows())
	small := gocv.NewMat()
	defer small.Close()
	gocv.Resize(m, &small, image.Pt(int(float64(m.Cols())*scale), h), 0, 0, gocv.InterpolationArea)
	x := (w - small.Cols()) / 2
	roi := frame.Region(image.Rect(x, 0, x+small.Cols(), h))
	small.CopyTo(&roi)
	roi.Close()
	return frame
}

func benchmarkHOG(b *testing.B, w, h int) {
	frame := benchFrame(b, w, h)
	defer frame.Close()
	gray := gocv.NewMat()
	defer gray.Close()
	gocv.CvtColor(frame, &gray, gocv.ColorBGRToGray)
	pix := gray.ToBytes()
	d, err := NewHOGDetector()
	if err != nil {
		b.Fatal(err)
	}
	defer d.Close()
	dets, err := d.DetectGray(pix, w, h, w, 0, 0)
	if err != nil || len(dets) != 1 {
		b.Fatalf("setup: %d faces, %v", len(dets), err)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := d.DetectGray(pix, w, h, w, 0, 0); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkHOGDetect640x480 is the gate's first stage at its default width.
func BenchmarkHOGDetect640x480(b *testing.B) { benchmarkHOG(b, 640, 480) }

// BenchmarkHOGDetect640x360 is detector hog's coarse pass on a 1280×720
// frame at detect_width 640 (BenchmarkYuNetDetect640x360 is the default's).
func BenchmarkHOGDetect640x360(b *testing.B) { benchmarkHOG(b, 640, 360) }

// BenchmarkHOGDetect1280x720 is detection on a full 720p frame.
func BenchmarkHOGDetect1280x720(b *testing.B) { benchmarkHOG(b, 1280, 720) }

// BenchmarkDescribeCrop is the per-face cost on the gate: crop, scale, go-face
// (HOG on the crop, 5 landmarks, ResNet descriptor).
func BenchmarkDescribeCrop(b *testing.B) { benchmarkDescribeCrop(b, engine(b)) }

// benchmarkDescribeCrop times DescribeCrop on the one face of a 720p frame.
func benchmarkDescribeCrop(b *testing.B, e *Engine) {
	frame := benchFrame(b, 1280, 720)
	defer frame.Close()
	faces, err := e.RecognizeMat(context.Background(), frame)
	if err != nil || len(faces) != 1 {
		b.Fatalf("setup: %d faces, %v", len(faces), err)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		f, err := e.DescribeCrop(context.Background(), frame, faces[0].Box)
		if err != nil || f == nil {
			b.Fatal("no face in crop", err)
		}
	}
}

// BenchmarkRecognizeFullFrame720 is the naive path: go-face on a whole
// 1280×720 frame (JPEG encode, HOG over the frame, landmarks, descriptor).
func BenchmarkRecognizeFullFrame720(b *testing.B) {
	e := engine(b)
	frame := benchFrame(b, 1280, 720)
	defer frame.Close()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := e.RecognizeMat(context.Background(), frame); err != nil {
			b.Fatal(err)
		}
	}
}
