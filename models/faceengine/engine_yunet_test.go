package faceengine

import (
	"context"
	"image"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/diemdanh/diemdanh/models/conf"
	"github.com/diemdanh/diemdanh/models/errkind"
	"github.com/diemdanh/diemdanh/models/imagecheck"
	"github.com/diemdanh/diemdanh/models/match"
	"gocv.io/x/gocv"
)

// yunetEngine is an engine whose embedder aligns on YuNet's landmarks
// (SFace, Align5), so detection and landmarks come from YuNet.
func yunetEngine(t testing.TB, workers int) *Engine {
	t.Helper()
	e := specEngine(t, SFace2021DecBQ, workers)
	if !e.UsesYuNet() || e.sp != nil {
		t.Fatalf("engine with %v does not use YuNet", e.Model())
	}
	t.Cleanup(e.Close)
	return e
}

// ArcFace5 maps five points that are the template moved by a known
// similarity back onto the template.
func TestArcFace5MapsOntoTemplate(t *testing.T) {
	th, s, tx, ty := 0.3, 2.5, 140.0, -20.0
	var lm [5]Point2
	for i, p := range ArcFace112 {
		lm[i] = Point2{s*(p.X*math.Cos(th)-p.Y*math.Sin(th)) + tx, s*(p.X*math.Sin(th)+p.Y*math.Cos(th)) + ty}
	}
	for _, size := range []int{112, 224} {
		tr, err := ArcFace5(lm, size)
		if err != nil {
			t.Fatal(err)
		}
		k := float64(size) / 112
		for i, p := range lm {
			got, want := tr.Apply(p), Point2{ArcFace112[i].X * k, ArcFace112[i].Y * k}
			if math.Hypot(got.X-want.X, got.Y-want.Y) > 1e-6 {
				t.Errorf("size %d point %d: %v, want %v", size, i, got, want)
			}
		}
		if math.Abs(tr.Scale()-k/s) > 1e-9 {
			t.Errorf("size %d: scale %g, want %g", size, tr.Scale(), k/s)
		}
	}
}

// The YuNet engine separates people like the dlib-aligned one does, fills
// five landmarks inside each box, and its gate path (DescribeCrop on a box
// another detector found, here dlib's HOG) gives the descriptor the
// whole-image path gives for the same face.
func TestYuNetEngineSeparatesPeople(t *testing.T) {
	e := yunetEngine(t, 2)
	ctx := context.Background()
	desc := func(name string) (match.Descriptor, gocv.Mat, match.Face) {
		m, _, err := DecodeMat(readImage(t, name), imagecheck.DefaultLimits())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { m.Close() })
		faces, err := e.RecognizeMat(ctx, m)
		if err != nil || len(faces) != 1 {
			t.Fatalf("%s: %d faces, %v", name, len(faces), err)
		}
		f := faces[0]
		if len(f.Descriptor) != 128 || len(f.Landmarks) != 5 {
			t.Fatalf("%s: %d-d descriptor, %d landmarks", name, len(f.Descriptor), len(f.Landmarks))
		}
		for _, p := range f.Landmarks {
			if !p.In(f.Box) {
				t.Errorf("%s: landmark %v outside %v", name, p, f.Box)
			}
		}
		if math.Abs(f.Quality.YawDeg) > 30 || f.Quality.Sharpness <= 0 {
			t.Errorf("%s: quality %+v", name, f.Quality)
		}
		return f.Descriptor, m, f
	}
	a, _, _ := desc("chaeyoung.jpg")
	a2, m2, f2 := desc("chaeyoung2.jpg")
	j, _, _ := desc("jimin.jpg")
	j2, _, _ := desc("jimin2.jpg")
	same1, same2 := match.Distance(a, a2), match.Distance(j, j2)
	minOther := math.Inf(1)
	for _, other := range []float64{match.Distance(a, j), match.Distance(a, j2), match.Distance(a2, j), match.Distance(a2, j2)} {
		minOther = math.Min(minOther, other)
		if other <= same1 || other <= same2 {
			t.Errorf("impostor %.3f not above genuine %.3f / %.3f", other, same1, same2)
		}
	}
	// The gate's path, from a HOG box of the same face.
	var hb image.Rectangle
	for _, b := range hogBoxes(t, m2) {
		if IoU(b, f2.Box) > IoU(hb, f2.Box) {
			hb = b
		}
	}
	if IoU(hb, f2.Box) < 0.4 {
		t.Fatalf("no HOG box on the face (%v vs %v)", hb, f2.Box)
	}
	g, err := e.DescribeCrop(ctx, m2, hb)
	if err != nil || g == nil {
		t.Fatalf("DescribeCrop: %v %v", g, err)
	}
	if d := match.Distance(g.Descriptor, a2); d > same1/2 || d > minOther/3 {
		t.Errorf("DescribeCrop vs whole image: %.3f apart (genuine pair %.3f, nearest impostor %.3f)", d, same1, minOther)
	}
	if IoU(g.Box, f2.Box) < 0.8 {
		t.Errorf("DescribeCrop box %v, whole-image box %v", g.Box, f2.Box)
	}
}

// A tight ID crop (the face fills the image) still gets its face: the
// refinement crop replicates the border YuNet needs around a face.
func TestYuNetEngineTightCrop(t *testing.T) {
	e := yunetEngine(t, 1)
	for _, rel := range landmarkPhotos[:4] { // casia-facev5: 168×193 crops
		m := loadPhoto(t, rel)
		faces, err := e.RecognizeTight(context.Background(), m)
		m.Close()
		if err != nil || len(faces) != 1 {
			t.Errorf("%s: %d faces, %v", rel, len(faces), err)
		}
	}
}

func TestYuNetDescribeCropBadInput(t *testing.T) {
	e := yunetEngine(t, 1)
	ctx := context.Background()
	blank := gocv.NewMatWithSize(480, 640, gocv.MatTypeCV8UC3)
	defer blank.Close()
	if f, err := e.DescribeCrop(ctx, blank, image.Rect(100, 100, 200, 200)); f != nil || err != nil {
		t.Errorf("no face: %v, %v", f, err)
	}
	if f, err := e.DescribeCrop(ctx, blank, image.Rect(900, 900, 1000, 1000)); f != nil || err != nil {
		t.Errorf("box outside the frame: %v, %v", f, err)
	}
	gray := gocv.NewMatWithSize(480, 640, gocv.MatTypeCV8U)
	defer gray.Close()
	if _, err := e.DescribeCrop(ctx, gray, image.Rect(100, 100, 200, 200)); errkind.Of(err) != errkind.Invalid {
		t.Errorf("grey frame: %v", err)
	}
	e.Close()
	if _, err := e.DescribeCrop(ctx, blank, image.Rect(100, 100, 200, 200)); errkind.Of(err) != errkind.Closed {
		t.Errorf("closed: %v", err)
	}
	if _, err := e.RecognizeMat(ctx, blank); errkind.Of(err) != errkind.Closed {
		t.Errorf("closed: %v", err)
	}
}

// PoseFrom5 (YuNet's nose tip) agrees with PoseFromLandmarks (dlib's nose
// base) on real photos, so one yaw limit (vote_quality.max_yaw_deg) means
// the same with either detector.
func TestPoseFrom5MatchesDlib(t *testing.T) {
	dl := engine(t)
	yn := yunetEngine(t, 1)
	ctx := context.Background()
	var n int
	var sumAbs, sumRoll float64
	for _, name := range []string{"chaeyoung.jpg", "chaeyoung2.jpg", "jimin.jpg", "jimin2.jpg", "jimin4.jpg", "joy.jpg",
		"sejeong.jpg", "elkie.jpg", "meiqi.jpg", "tzuyu2.jpg", "nayoung.jpg", "luda2.jpg", "chaeyeon3.jpg", "eunseo2.jpg"} {
		m, _, err := DecodeMat(readImage(t, name), imagecheck.DefaultLimits())
		if err != nil {
			t.Fatal(err)
		}
		a, err1 := dl.RecognizeMat(ctx, m)
		b, err2 := yn.RecognizeMat(ctx, m)
		m.Close()
		if err1 != nil || err2 != nil {
			t.Fatalf("%s: %v %v", name, err1, err2)
		}
		if len(a) != 1 || len(b) != 1 {
			t.Logf("%s: dlib %d faces, YuNet %d: not compared", name, len(a), len(b))
			continue
		}
		dy := b[0].Quality.YawDeg - a[0].Quality.YawDeg
		dr := b[0].Quality.RollDeg - a[0].Quality.RollDeg
		t.Logf("%s: yaw dlib %5.1f yunet %5.1f; roll dlib %5.1f yunet %5.1f", name, a[0].Quality.YawDeg, b[0].Quality.YawDeg, a[0].Quality.RollDeg, b[0].Quality.RollDeg)
		if math.Abs(dr) > 12 {
			t.Errorf("%s: roll differs by %.1f°", name, dr)
		}
		sumAbs += math.Abs(dy)
		sumRoll += math.Abs(dr)
		n++
	}
	if n < 10 {
		t.Fatalf("only %d photos with one face for both", n)
	}
	t.Logf("mean |Δyaw| %.1f°, mean |Δroll| %.1f° over %d photos", sumAbs/float64(n), sumRoll/float64(n), n)
	if mean := sumAbs / float64(n); mean > 8 {
		t.Errorf("yaw differs by %.1f° on average", mean)
	}
	if mean := sumRoll / float64(n); mean > 6 {
		t.Errorf("roll differs by %.1f° on average", mean)
	}
}

// Every model file but YuNet's: the default engine refuses to start and
// names the missing file (the gate and the hub report it as is).
func TestEngineMissingYuNet(t *testing.T) {
	dir := t.TempDir()
	src := conf.TestModelsDir()
	for _, f := range ModelFilesFor(match.DefaultEmbedder.Name) {
		if f == YuNet2023MarBQ {
			continue
		}
		abs, err := filepath.Abs(filepath.Join(src, f.Name))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(abs, filepath.Join(dir, f.Name)); err != nil {
			t.Fatal(err)
		}
	}
	cfg := DefaultEngineConfig()
	cfg.ModelsDir, cfg.Workers = dir, 1
	e, err := NewEngine(cfg, nil)
	if err == nil {
		e.Close()
		t.Fatal("engine started without YuNet")
	}
	if errkind.Of(err) != errkind.ModelMissing || !strings.Contains(err.Error(), YuNet2023MarBQ.Name) {
		t.Fatalf("error %v, want model_missing naming %s", err, YuNet2023MarBQ.Name)
	}
}
