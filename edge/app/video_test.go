package app

import (
	"context"
	"encoding/json"
	"image"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/diemdanh/diemdanh/edge/bench"
	"github.com/diemdanh/diemdanh/models/conf"
	"github.com/diemdanh/diemdanh/models/faceengine"
	"gocv.io/x/gocv"
)

var (
	engOnce sync.Once
	engT    *faceengine.Engine
	engErr  error
)

// testEngine is shared by the tests of this package; missing models fail.
func testEngine(t testing.TB) *faceengine.Engine {
	t.Helper()
	engOnce.Do(func() {
		c := faceengine.DefaultEngineConfig()
		c.ModelsDir = conf.TestModelsDir()
		c.Workers = 2
		engT, engErr = faceengine.NewEngine(c, nil)
	})
	if engErr != nil {
		t.Fatalf("face engine: %v (set MODELS_DIR or run make models)", engErr)
	}
	return engT
}

func facePhoto(t testing.TB, name string) string {
	t.Helper()
	d, err := conf.TestDataDir()
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Join(d, "faces", "images", name)
}

// walker is one person in a test video.
type walker struct {
	photo     string
	student   string // "" for a visitor
	start, n  int    // first frame and number of frames
	x         int    // horizontal centre
	faceStart int    // face width at the first and last frame
	faceEnd   int
}

// writeGateVideo renders a small synthetic gate video: each walker's face
// (cut from a real photo) moves down and grows from faceStart to faceEnd
// px wide. It returns the truth as the simulator would write it.
func writeGateVideo(t testing.TB, path string, frames, w, h int, walkers []walker) *bench.Truth {
	t.Helper()
	eng := testEngine(t)
	type cut struct {
		img  gocv.Mat
		face image.Rectangle // within img
	}
	cuts := make([]cut, len(walkers))
	for i, wk := range walkers {
		b, err := os.ReadFile(wk.photo)
		if err != nil {
			t.Fatal(err)
		}
		m, _, err := faceengine.DecodeMat(b, eng.Limits())
		if err != nil {
			t.Fatal(err)
		}
		faces, err := eng.RecognizeMat(context.Background(), m)
		if err != nil || len(faces) == 0 {
			t.Fatalf("%s: no face (%v)", wk.photo, err)
		}
		f := faces[0].Box
		mg := f.Dx() * 6 / 10
		r := image.Rect(f.Min.X-mg, f.Min.Y-mg, f.Max.X+mg, f.Max.Y+mg).Intersect(image.Rect(0, 0, m.Cols(), m.Rows()))
		reg := m.Region(r)
		cuts[i] = cut{img: reg.Clone(), face: f.Sub(r.Min)}
		reg.Close()
		m.Close()
	}
	defer func() {
		for _, c := range cuts {
			c.img.Close()
		}
	}()
	vw, err := gocv.VideoWriterFile(path, "MJPG", 25, w, h, true)
	if err != nil {
		t.Fatal(err)
	}
	defer vw.Close()
	frame := gocv.NewMatWithSizeFromScalar(gocv.NewScalar(90, 100, 110, 0), h, w, gocv.MatTypeCV8UC3)
	defer frame.Close()
	bg := frame.Clone()
	defer bg.Close()
	gocv.Rectangle(&bg, image.Rect(0, h*2/3, w, h), colorGrey(), -1) // floor
	for f := 0; f < frames; f++ {
		bg.CopyTo(&frame)
		for i, wk := range walkers {
			k := f - wk.start
			if k < 0 || k >= wk.n {
				continue
			}
			fw := wk.faceStart + (wk.faceEnd-wk.faceStart)*k/max(wk.n-1, 1)
			s := float64(fw) / float64(cuts[i].face.Dx())
			sw, sh := int(float64(cuts[i].img.Cols())*s), int(float64(cuts[i].img.Rows())*s)
			scaled := gocv.NewMat()
			gocv.Resize(cuts[i].img, &scaled, image.Pt(sw, sh), 0, 0, gocv.InterpolationArea)
			y := h/10 + k*2
			dst := image.Rect(wk.x-sw/2, y, wk.x-sw/2+sw, y+sh).Intersect(image.Rect(0, 0, w, h))
			src := dst.Sub(image.Pt(wk.x-sw/2, y))
			sr := scaled.Region(src)
			dr := frame.Region(dst)
			sr.CopyTo(&dr)
			sr.Close()
			dr.Close()
			scaled.Close()
		}
		if err := vw.Write(frame); err != nil {
			t.Fatal(err)
		}
	}
	tr := &bench.Truth{Format: bench.TruthFormat, FPS: 25, Width: w, Height: h, Frames: frames}
	for i, wk := range walkers {
		tr.Passages = append(tr.Passages, bench.Passage{ID: string(rune('a' + i)), StudentID: wk.student, Enrolled: wk.student != "",
			Photo: filepath.Base(wk.photo), FirstFrame: int64(wk.start), LastFrame: int64(wk.start + wk.n - 1)})
	}
	return tr
}

func writeJSON(t testing.TB, path string, v any) {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}
