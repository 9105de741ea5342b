package faceengine

import (
	"context"
	"fmt"
	"image"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/diemdanh/diemdanh/models/conf"
	"github.com/diemdanh/diemdanh/models/errkind"
	"github.com/diemdanh/diemdanh/models/imagecheck"
	"github.com/diemdanh/diemdanh/models/match"
	"gocv.io/x/gocv"
)

// newDirectEngine is an engine with a pluggable ONNX embedder aligned on
// dlib's landmarks (SFace as version flip.2 aligned it), so DescribeCrop
// takes the direct path (describeBox).
func newDirectEngine(t testing.TB, workers int) *Engine {
	t.Helper()
	e := specEngine(t, SFace2021DecBQDlib5, workers)
	if e.emb == nil || e.sp == nil {
		t.Fatalf("embedder %v has no direct path", e.Model())
	}
	return e
}

// specEngine is an engine whose ONNX embedder is spec (overriding the
// registered spec of that name).
func specEngine(t testing.TB, spec ONNXSpec, workers int) *Engine {
	t.Helper()
	cfg := DefaultEngineConfig()
	cfg.ModelsDir, cfg.Workers, cfg.Embedder, cfg.ONNX = conf.TestModelsDir(), workers, spec.Model.Name, &spec
	e, err := NewEngine(cfg, nil)
	if err != nil {
		t.Fatalf("face engine: %v (run `make models` or set MODELS_DIR)", err)
	}
	return e
}

// hogBoxes runs the gate's HOG detector on a BGR photo (upsampling once
// when a small ID photo gives nothing at its own scale).
func hogBoxes(t testing.TB, m gocv.Mat) []image.Rectangle {
	t.Helper()
	hog, err := NewHOGDetector()
	if err != nil {
		t.Fatal(err)
	}
	defer hog.Close()
	gray := toGray(m)
	defer gray.Close()
	var out []image.Rectangle
	for up := 0; up <= 1 && len(out) == 0; up++ {
		dets, err := hog.DetectGray(gray.ToBytes(), gray.Cols(), gray.Rows(), gray.Cols(), up, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range dets {
			out = append(out, d.Box)
		}
	}
	return out
}

// casiaGenuineMedian is the embedder's median genuine distance measured
// on casia-facev5's first people (5 ID photos each), whole-image path.
func casiaGenuineMedian(t testing.TB, e *Engine, people int) float64 {
	t.Helper()
	root, err := conf.TestDataDir()
	if err != nil {
		t.Fatal(err)
	}
	var dists []float64
	for p := 0; p < people; p++ {
		id := fmt.Sprintf("%03d", p)
		var ds []match.Descriptor
		for i := 0; i < 5; i++ {
			b, err := os.ReadFile(filepath.Join(root, "asian", "casia-facev5", id, fmt.Sprintf("%s_%d.bmp", id, i)))
			if err != nil {
				t.Fatalf("casia-facev5: %v", err)
			}
			m, _, err := DecodeMat(b, imagecheck.DefaultLimits())
			if err != nil {
				t.Fatal(err)
			}
			faces, err := e.RecognizeTight(context.Background(), m)
			m.Close()
			if err != nil {
				t.Fatal(err)
			}
			if len(faces) > 0 {
				ds = append(ds, faces[0].Descriptor)
			}
		}
		for i := range ds {
			for j := i + 1; j < len(ds); j++ {
				dists = append(dists, match.Distance(ds[i], ds[j]))
			}
		}
	}
	if len(dists) < 10*people/2 {
		t.Fatalf("only %d genuine pairs on %d casia people", len(dists), people)
	}
	sort.Float64s(dists)
	return dists[len(dists)/2]
}

// DescribeCrop's direct path (dlib shape predictor on the HOG box, then the
// embedder) gives the descriptor the whole-image path (go-face's landmarks,
// same embedder) gives for the same face: closer than half the embedder's
// genuine median measured here, while every other person's face is
// farther than that bound. Quality carries pose and sharpness.
func TestDescribeCropDirectPathMatchesWholeImage(t *testing.T) {
	e := newDirectEngine(t, 2)
	defer e.Close()
	ctx := context.Background()
	bound := casiaGenuineMedian(t, e, 8) / 2
	t.Logf("%s: bound = genuine median / 2 = %.3f", e.Model(), bound)

	type res struct {
		name        string
		crop, whole *match.Face
	}
	var rs []res
	for _, rel := range landmarkPhotos {
		m := loadPhoto(t, rel)
		whole, err := e.RecognizeMat(ctx, m)
		if err != nil || len(whole) == 0 {
			m.Close()
			t.Fatalf("%s: RecognizeMat: %d faces, %v", rel, len(whole), err)
		}
		var hb image.Rectangle
		for _, b := range hogBoxes(t, m) {
			if iou(b, whole[0].Box) > iou(hb, whole[0].Box) {
				hb = b
			}
		}
		if iou(hb, whole[0].Box) < 0.5 {
			m.Close()
			t.Fatalf("%s: no HOG box on go-face's %v (best %v)", rel, whole[0].Box, hb)
		}
		f, err := e.DescribeCrop(ctx, m, hb)
		hb = hb.Intersect(image.Rect(0, 0, m.Cols(), m.Rows())) // DescribeCrop clips
		m.Close()
		if err != nil || f == nil {
			t.Fatalf("%s: DescribeCrop: %v, %v", rel, f, err)
		}
		w := whole[0]
		rs = append(rs, res{rel, f, &w})
		if f.Box != hb || len(f.Landmarks) != 5 || len(f.Descriptor) != len(w.Descriptor) {
			t.Errorf("%s: box %v (asked %v), %d landmarks, %d-d descriptor (whole %d-d)", rel, f.Box, hb, len(f.Landmarks), len(f.Descriptor), len(w.Descriptor))
		}
		q := f.Quality
		if q.SizePx != hb.Dx() || !(q.Sharpness > 0) || !(q.Brightness > 0) {
			t.Errorf("%s: quality not measured: %+v", rel, q)
		}
		if math.Abs(q.YawDeg-w.Quality.YawDeg) > 10 || math.Abs(q.RollDeg-w.Quality.RollDeg) > 5 {
			t.Errorf("%s: pose yaw %.1f roll %.1f, whole image yaw %.1f roll %.1f", rel, q.YawDeg, q.RollDeg, w.Quality.YawDeg, w.Quality.RollDeg)
		}
	}
	posed := 0
	for _, r := range rs {
		if r.crop.Quality.YawDeg != 0 || r.crop.Quality.RollDeg != 0 {
			posed++
		}
	}
	if posed == 0 {
		t.Error("pose is zero on every photo: not filled in")
	}
	for i, r := range rs {
		same := match.Distance(r.crop.Descriptor, r.whole.Descriptor)
		nearestOther := math.Inf(1)
		for j, o := range rs {
			if j != i {
				nearestOther = math.Min(nearestOther, match.Distance(r.crop.Descriptor, o.whole.Descriptor))
			}
		}
		t.Logf("%s: direct vs whole %.3f, nearest other person %.3f", r.name, same, nearestOther)
		if same >= bound {
			t.Errorf("%s: direct path %.3f from the whole-image descriptor, bound %.3f", r.name, same, bound)
		}
		if nearestOther <= bound {
			t.Errorf("%s: another person's face is only %.3f away: bound %.3f separates nothing", r.name, nearestOther, bound)
		}
	}
}

// Boxes too small or outside the frame give (nil, nil); frames the path
// cannot take give typed errors; nothing panics.
func TestDescribeCropDirectPathBadInput(t *testing.T) {
	for name, mk := range gatePathEngines {
		t.Run(name, func(t *testing.T) { testDescribeCropBadInput(t, mk(t, 1)) })
	}
}

// gatePathEngines are the two DescribeCrop paths a pluggable embedder has:
// dlib's landmarks on the given box, or YuNet re-run around it.
var gatePathEngines = map[string]func(testing.TB, int) *Engine{"dlib-landmarks": newDirectEngine, "yunet": yunetEngine}

func testDescribeCropBadInput(t *testing.T, e *Engine) {
	defer e.Close()
	ctx := context.Background()
	m := loadPhoto(t, "faces/images/chaeyoung2.jpg")
	defer m.Close()
	good := image.Rect(336, 405, 646, 714)
	for _, b := range []image.Rectangle{
		{}, image.Rect(100, 100, 110, 110), image.Rect(100, 100, 300, 105),
		image.Rect(-300, -300, -100, -100), image.Rect(m.Cols()+10, 0, m.Cols()+200, 200),
		image.Rect(m.Cols()-5, m.Rows()-5, m.Cols()+200, m.Rows()+200),
	} {
		f, err := e.DescribeCrop(ctx, m, b)
		if f != nil || err != nil {
			t.Errorf("box %v: %v, %v; want nil, nil", b, f, err)
		}
	}
	// A box partly outside the frame is clipped and described. dlib's
	// predictor describes whatever the box holds; YuNet needs the face in
	// it, so it gets a frame that cuts the face at the chin instead.
	frame, box := m, good.Add(image.Pt(0, m.Rows()-good.Max.Y+40))
	if e.UsesYuNet() {
		frame = m.Region(image.Rect(0, 0, m.Cols(), 700)) // the face ends at y≈730
		defer frame.Close()
		box = image.Rect(325, 314, 625, 760)
	}
	if f, err := e.DescribeCrop(ctx, frame, box); err != nil || f == nil {
		t.Errorf("box over the bottom edge: %v, %v", f, err)
	} else if !f.Box.In(image.Rect(0, 0, frame.Cols(), frame.Rows())) {
		t.Errorf("box %v not clipped to the frame", f.Box)
	}

	empty := gocv.NewMat()
	defer empty.Close()
	if _, err := e.DescribeCrop(ctx, empty, good); errkind.Of(err) != errkind.EmptyImage {
		t.Errorf("empty frame: %v, want empty_image", err)
	}
	gray := toGray(m)
	defer gray.Close()
	bgra, deep := gocv.NewMat(), gocv.NewMat()
	defer bgra.Close()
	defer deep.Close()
	gocv.CvtColor(m, &bgra, gocv.ColorBGRToBGRA)
	m.ConvertTo(&deep, gocv.MatTypeCV16UC3)
	for name, img := range map[string]gocv.Mat{"grey": gray, "bgra": bgra, "16-bit": deep} {
		f, err := e.DescribeCrop(ctx, img, good)
		if f != nil || errkind.Of(err) != errkind.Invalid {
			t.Errorf("%s frame: %v, %v; want invalid", name, f, err)
		}
	}
}

// With a pluggable embedder the go-face recognizers load on first use
// only: DescribeCrop never loads them, RecognizeMat does and works.
func TestONNXEngineLoadsRecognizersLazily(t *testing.T) {
	e := newDirectEngine(t, 2)
	defer e.Close()
	ctx := context.Background()
	m := loadPhoto(t, "faces/images/elkie.jpg")
	defer m.Close()
	if n := len(e.all); n != 0 {
		t.Fatalf("%d recognizers loaded before first use", n)
	}
	boxes := hogBoxes(t, m)
	if len(boxes) == 0 {
		t.Fatal("no HOG box on elkie.jpg")
	}
	if f, err := e.DescribeCrop(ctx, m, boxes[0]); err != nil || f == nil {
		t.Fatalf("DescribeCrop: %v, %v", f, err)
	}
	if n := len(e.all); n != 0 {
		t.Fatalf("DescribeCrop loaded %d go-face recognizers", n)
	}
	faces, err := e.RecognizeMat(ctx, m)
	if err != nil || len(faces) != 1 || len(faces[0].Descriptor) != e.emb.Dim() {
		t.Fatalf("RecognizeMat: %d faces, %v", len(faces), err)
	}
	if n := len(e.all); n != e.Workers() {
		t.Fatalf("%d recognizers after RecognizeMat, want %d", n, e.Workers())
	}
}

// Close while both paths are in use: every call either succeeds or
// returns errkind.Closed; after Close both do, and a second Close is a no-op.
func TestONNXEngineCloseDuringUse(t *testing.T) {
	for name, mk := range gatePathEngines {
		t.Run(name, func(t *testing.T) { testEngineCloseDuringUse(t, mk(t, 2)) })
	}
}

func testEngineCloseDuringUse(t *testing.T, e *Engine) {
	ctx := context.Background()
	m := loadPhoto(t, "faces/images/elkie.jpg")
	defer m.Close()
	boxes := hogBoxes(t, m)
	if len(boxes) == 0 {
		t.Fatal("no HOG box on elkie.jpg")
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	ok, closed := 0, 0
	var bad []string
	first := make(chan struct{})
	var once sync.Once
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := 0; i < 30; i++ {
				var err error
				if g%2 == 0 {
					_, err = e.DescribeCrop(ctx, m, boxes[0])
				} else {
					_, err = e.RecognizeMat(ctx, m)
				}
				mu.Lock()
				switch {
				case err == nil:
					ok++
					once.Do(func() { close(first) })
				case errkind.Of(err) == errkind.Closed:
					closed++
				default:
					bad = append(bad, err.Error())
				}
				mu.Unlock()
				if errkind.Of(err) == errkind.Closed {
					return
				}
			}
		}(g)
	}
	select { // close while the others are still busy
	case <-first:
	case <-time.After(2 * time.Minute):
		t.Fatal("no call finished in 2 minutes")
	}
	e.Close()
	wg.Wait()
	if len(bad) > 0 {
		t.Fatalf("errors other than closed: %s", strings.Join(bad, "; "))
	}
	if ok == 0 {
		t.Fatal("no call succeeded before Close")
	}
	t.Logf("%d calls done, %d refused as closed", ok, closed)
	if _, err := e.DescribeCrop(ctx, m, boxes[0]); errkind.Of(err) != errkind.Closed {
		t.Errorf("DescribeCrop after Close: %v, want closed", err)
	}
	if _, err := e.RecognizeMat(ctx, m); errkind.Of(err) != errkind.Closed {
		t.Errorf("RecognizeMat after Close: %v, want closed", err)
	}
	e.Close()
}
