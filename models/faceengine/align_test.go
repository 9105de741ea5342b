package faceengine

import (
	"context"
	"image"
	"math"
	"math/rand"
	"os"
	"path/filepath"
	"testing"

	"github.com/diemdanh/diemdanh/models/conf"
	"github.com/diemdanh/diemdanh/models/errkind"
	"github.com/diemdanh/diemdanh/models/imagecheck"
)

func TestSimilarityTransformRecoversKnownTransform(t *testing.T) {
	rng := rand.New(rand.NewSource(7))
	for i := 0; i < 50; i++ {
		ang := (rng.Float64() - 0.5) * math.Pi
		s := 0.2 + 3*rng.Float64()
		want := Affine{A: s * math.Cos(ang), B: -s * math.Sin(ang), C: rng.Float64()*400 - 200,
			D: s * math.Sin(ang), E: s * math.Cos(ang), F: rng.Float64()*400 - 200}
		src := ArcFace112[:]
		dst := make([]Point2, len(src))
		for k, p := range src {
			dst[k] = want.Apply(p)
		}
		got, err := SimilarityTransform(src, dst)
		if err != nil {
			t.Fatal(err)
		}
		for k, p := range src {
			q := got.Apply(p)
			if math.Hypot(q.X-dst[k].X, q.Y-dst[k].Y) > 1e-6 {
				t.Fatalf("case %d point %d: got %v want %v", i, k, q, dst[k])
			}
		}
		if math.Abs(got.Scale()-s) > 1e-9 {
			t.Fatalf("scale %g want %g", got.Scale(), s)
		}
	}
}

func TestSimilarityTransformRejectsDegenerateInput(t *testing.T) {
	p := Point2{1, 1}
	for _, c := range []struct{ src, dst []Point2 }{
		{nil, nil},
		{[]Point2{p}, []Point2{p}},
		{[]Point2{p, p}, []Point2{{0, 0}, {1, 0}}},
		{[]Point2{p, {2, 2}}, []Point2{{0, 0}}},
	} {
		if _, err := SimilarityTransform(c.src, c.dst); errkind.Of(err) != errkind.Invalid {
			t.Errorf("%v -> %v: err %v, want errkind.Invalid", c.src, c.dst, err)
		}
	}
	if _, _, _, err := Dlib5(make([]image.Point, 68)); errkind.Of(err) != errkind.Invalid {
		t.Errorf("68 landmarks: %v", err)
	}
}

// A face's real dlib landmarks, mapped through the embedder's alignment,
// land on its template: the eyes within 6 px and the nose base within 8 px
// (a least-squares fit of three points whose nose target is set lower than
// the average face's, see FacepluginMFNV1); aligned by the eyes alone, the
// eyes land exactly.
func TestAlignRealLandmarksToTemplate(t *testing.T) {
	e := engine(t)
	for _, name := range []string{"chaeyoung2.jpg", "elkie.jpg", "joy.jpg"} {
		m, _, err := DecodeMat(readImage(t, name), imagecheck.DefaultLimits())
		if err != nil {
			t.Fatal(err)
		}
		faces, err := e.RecognizeMat(context.Background(), m)
		if err != nil || len(faces) != 1 {
			m.Close()
			t.Fatalf("%s: %d faces, %v", name, len(faces), err)
		}
		tpl := FacepluginMFNV1.Template
		tr, err := tpl.AlignTransform(faces[0].Landmarks)
		if err != nil {
			t.Fatal(err)
		}
		le, re, nb, _ := Dlib5(faces[0].Landmarks)
		eyesOnly, err := Template3{LeftEye: tpl.LeftEye, RightEye: tpl.RightEye}.AlignTransform(faces[0].Landmarks)
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range []struct {
			name     string
			got, tpl Point2
			tol      float64
		}{{"left eye", tr.Apply(le), tpl.LeftEye, 6}, {"right eye", tr.Apply(re), tpl.RightEye, 6}, {"nose base", tr.Apply(nb), tpl.NoseBase, 8},
			{"left eye (eyes only)", eyesOnly.Apply(le), tpl.LeftEye, 0.01}, {"right eye (eyes only)", eyesOnly.Apply(re), tpl.RightEye, 0.01}} {
			if d := math.Hypot(c.got.X-c.tpl.X, c.got.Y-c.tpl.Y); d > c.tol {
				t.Errorf("%s: %s maps to (%.1f,%.1f), template (%.1f,%.1f): %.1f px off", name, c.name, c.got.X, c.got.Y, c.tpl.X, c.tpl.Y, d)
			}
		}
		chip, _, err := tpl.AlignChip(m, faces[0].Landmarks, 112)
		if err != nil || chip.Cols() != 112 || chip.Rows() != 112 || chip.Channels() != 3 {
			t.Errorf("%s: chip %dx%dx%d, %v", name, chip.Cols(), chip.Rows(), chip.Channels(), err)
		}
		chip.Close()
		m.Close()
	}
}

// TestDlibNoseBaseTarget measures where dlib's nose base lands when faces
// are aligned by their eyes alone onto the ArcFace template, and checks the
// documented DlibNoseBaseArcFace112 agrees within 1.5 px. It uses 10
// casia-facev5 people × 2 photos.
func TestDlibNoseBaseTarget(t *testing.T) {
	root, err := conf.TestDataDir()
	if err != nil {
		t.Fatal(err)
	}
	e := engine(t)
	eyes := Template3{LeftEye: ArcFace112[0], RightEye: ArcFace112[1]}
	var sx, sy float64
	n := 0
	for id := 0; id < 10; id++ {
		for k := 1; k <= 2; k++ {
			p := filepath.Join(root, "asian", "casia-facev5", pad3(id), pad3(id)+"_"+string(rune('0'+k))+".bmp")
			b, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
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
			if len(faces) == 0 {
				continue
			}
			tr, err := eyes.AlignTransform(faces[0].Landmarks)
			if err != nil {
				t.Fatal(err)
			}
			_, _, nb, _ := Dlib5(faces[0].Landmarks)
			q := tr.Apply(nb)
			sx += q.X
			sy += q.Y
			n++
		}
	}
	if n < 15 {
		t.Fatalf("only %d of 20 casia photos gave a face", n)
	}
	mean := Point2{sx / float64(n), sy / float64(n)}
	t.Logf("dlib nose base under eyes-only ArcFace alignment: (%.2f, %.2f) over %d faces", mean.X, mean.Y, n)
	want := DlibNoseBaseArcFace112
	if d := math.Hypot(mean.X-want.X, mean.Y-want.Y); d > 1.5 {
		t.Errorf("measured (%.1f,%.1f), documented (%.1f,%.1f): %.1f px apart", mean.X, mean.Y, want.X, want.Y, d)
	}
}

func pad3(i int) string {
	s := "00" + string(rune('0'+i/10)) + string(rune('0'+i%10))
	return s[len(s)-3:]
}
