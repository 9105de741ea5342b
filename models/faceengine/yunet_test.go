package faceengine

import (
	"image"
	"path/filepath"
	"testing"

	"github.com/diemdanh/diemdanh/models/conf"
	"github.com/diemdanh/diemdanh/models/errkind"
	"gocv.io/x/gocv"
)

func yunet(t testing.TB) *YuNetDetector {
	t.Helper()
	d, err := NewYuNetDetector(conf.TestModelsDir())
	if err != nil {
		t.Fatalf("yunet: %v (run `make models`)", err)
	}
	t.Cleanup(d.Close)
	return d
}

func testImage(t testing.TB, name string) gocv.Mat {
	t.Helper()
	dir, err := conf.TestDataDir()
	if err != nil {
		t.Fatal(err)
	}
	m := gocv.IMRead(filepath.Join(dir, "faces", "images", name), gocv.IMReadColor)
	if m.Empty() {
		t.Fatalf("cannot read %s", name)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

// TestYuNetFindsFaces runs YuNet on real photos at sizes that are not
// multiples of 32 and checks every face has its landmarks in a plausible
// layout: inside the box, eyes above the nose, nose above the mouth, the
// image-left eye left of the image-right one.
func TestYuNetFindsFaces(t *testing.T) {
	d := yunet(t)
	for _, tc := range []struct {
		name    string
		min     int
		max     int
		resizeW int
	}{
		{"pristin.jpg", 9, 10, 1050},
		{"jimin.jpg", 1, 1, 0},
		{"jimin.jpg", 1, 1, 333},
	} {
		img := testImage(t, tc.name)
		if tc.resizeW > 0 {
			small := gocv.NewMat()
			defer small.Close()
			gocv.Resize(img, &small, image.Pt(tc.resizeW, img.Rows()*tc.resizeW/img.Cols()), 0, 0, gocv.InterpolationArea)
			img = small
		}
		faces, err := d.Detect(img)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if len(faces) < tc.min || len(faces) > tc.max {
			t.Errorf("%s at %d px: %d faces, want %d..%d", tc.name, img.Cols(), len(faces), tc.min, tc.max)
		}
		for _, f := range faces {
			lm := f.Landmarks
			grow := f.Box.Inset(-f.Box.Dx() / 5)
			for _, p := range f.Points() {
				if !p.In(grow) {
					t.Errorf("%s: landmark %v outside box %v", tc.name, p, f.Box)
				}
			}
			eyeY := (lm[0].Y + lm[1].Y) / 2
			mouthY := (lm[3].Y + lm[4].Y) / 2
			if !(lm[0].X < lm[1].X && eyeY < lm[2].Y && lm[2].Y < mouthY && lm[3].X < lm[4].X) {
				t.Errorf("%s: landmarks out of order %v", tc.name, lm)
			}
			if f.Score < d.MinScore || f.Score > 1 {
				t.Errorf("%s: score %g", tc.name, f.Score)
			}
		}
	}
}

func TestYuNetBadInput(t *testing.T) {
	d := yunet(t)
	empty := gocv.NewMat()
	defer empty.Close()
	if _, err := d.Detect(empty); errkind.Of(err) != errkind.EmptyImage {
		t.Errorf("empty: %v", err)
	}
	gray := gocv.NewMatWithSize(64, 64, gocv.MatTypeCV8U)
	defer gray.Close()
	if _, err := d.Detect(gray); errkind.Of(err) != errkind.Invalid {
		t.Errorf("gray: %v", err)
	}
	huge := gocv.NewMatWithSize(8, MaxYuNetSide+1, gocv.MatTypeCV8UC3)
	defer huge.Close()
	if _, err := d.Detect(huge); errkind.Of(err) != errkind.TooLarge {
		t.Errorf("huge: %v", err)
	}
	blank := gocv.NewMatWithSize(200, 300, gocv.MatTypeCV8UC3)
	defer blank.Close()
	if faces, err := d.Detect(blank); err != nil || len(faces) != 0 {
		t.Errorf("blank: %d faces, %v", len(faces), err)
	}
	if _, err := NewYuNetDetector(t.TempDir()); errkind.Of(err) != errkind.ModelMissing {
		t.Errorf("missing model: %v", err)
	}
	d.Close()
	if _, err := d.Detect(blank); errkind.Of(err) != errkind.Closed {
		t.Errorf("closed: %v", err)
	}
}

func TestNMS(t *testing.T) {
	in := []FaceBox{
		{Box: image.Rect(0, 0, 10, 10), Score: 0.7},
		{Box: image.Rect(1, 1, 11, 11), Score: 0.9},
		{Box: image.Rect(50, 50, 60, 60), Score: 0.8},
	}
	out := nms(in, 0.3)
	if len(out) != 2 || out[0].Score != 0.9 || out[1].Score != 0.8 {
		t.Errorf("nms: %+v", out)
	}
}

// BenchmarkYuNetDetect640x360 is the gate's coarse pass with YuNet on a
// 1280×720 frame downscaled to detect_width 640 (padded to 640×384);
// BenchmarkHOGDetect640x480 is the same stage with dlib's HOG.
func BenchmarkYuNetDetect640x360(b *testing.B) {
	frame := benchFrame(b, 640, 360)
	defer frame.Close()
	d := yunet(b)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		faces, err := d.Detect(frame)
		if err != nil || len(faces) != 1 {
			b.Fatalf("%d faces, %v", len(faces), err)
		}
	}
}

// BenchmarkYuNetAlternatingShapes is the gate's detection pattern on every
// frame: the coarse pass on the 640-px copy, then a fine window at full
// resolution (here 200×200, padded to 224×224). OpenCV sets a network up
// again whenever its input shape changes: "one-net" runs both passes on
// one network, as the pipeline does, "two-nets" gives each its own. The
// figure is per frame (both passes); deploy/PERFORMANCE.md says what the
// difference did to the whole pipeline.
func BenchmarkYuNetAlternatingShapes(b *testing.B) {
	frame := benchFrame(b, 640, 360)
	defer frame.Close()
	region := frame.Region(image.Rect(220, 40, 420, 240))
	window := region.Clone()
	region.Close()
	defer window.Close()
	run := func(b *testing.B, coarse, fine *YuNetDetector) {
		for i := 0; i < b.N; i++ {
			faces, err := coarse.Detect(frame)
			if err != nil || len(faces) != 1 {
				b.Fatalf("coarse: %d faces, %v", len(faces), err)
			}
			if _, err := fine.Detect(window); err != nil {
				b.Fatalf("fine: %v", err)
			}
		}
	}
	b.Run("one-net", func(b *testing.B) { d := yunet(b); b.ResetTimer(); run(b, d, d) })
	b.Run("two-nets", func(b *testing.B) { c, f := yunet(b), yunet(b); b.ResetTimer(); run(b, c, f) })
}
