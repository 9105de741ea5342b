package sim

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/diemdanh/diemdanh/models/conf"
	"github.com/diemdanh/diemdanh/models/faceengine"
	"github.com/diemdanh/diemdanh/models/match"
	"github.com/diemdanh/diemdanh/models/wire"
	"gocv.io/x/gocv"
)

func testEngine(t *testing.T) *faceengine.Engine {
	t.Helper()
	ec := faceengine.DefaultEngineConfig()
	ec.ModelsDir = conf.TestModelsDir()
	ec.Workers = 2
	eng, err := faceengine.NewEngine(ec, nil)
	if err != nil {
		t.Fatalf("face engine (set MODELS_DIR): %v", err)
	}
	t.Cleanup(eng.Close)
	return eng
}

func outputs(dir string, o Options) Options {
	o.Out = filepath.Join(dir, "gate.avi")
	o.TruthOut = filepath.Join(dir, "truth.json")
	o.GalleryOut = filepath.Join(dir, "gallery.json")
	return o
}

// TestGenerateDeterministicAndHonest generates a short video from go-face's
// photos twice with one seed and once with another, and checks: same seed
// → byte-identical truth, gallery and video; every enrolled walker is in
// the gallery under its student_id while the photo walked is not one of
// its enrolment photos; visitors are not in the gallery; the video has
// the frames and size the truth claims; people overlap in time.
func TestGenerateDeterministicAndHonest(t *testing.T) {
	td, err := conf.TestDataDir()
	if err != nil {
		t.Fatal(err)
	}
	eng := testEngine(t)
	ctx := context.Background()
	o := DefaultOptions()
	o.Photos = []string{filepath.Join(td, "faces")}
	o.Seed = 7
	o.People, o.Visitors = 4, 3
	all, err := collect(o.Photos)
	if err != nil {
		t.Fatal(err)
	}
	var warn bytes.Buffer
	ref, closeRef, err := eng.ReferenceEngine()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(closeRef)
	ana, err := analyse(ctx, eng, ref, capPerPerson(all, maxPhotosPerPerson), &warn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for _, a := range ana {
			a.Sprite.Close()
		}
	})
	t.Logf("analysis notes:\n%s", warn.String())
	run := func(seed int64) (Options, *Summary) {
		oo := outputs(t.TempDir(), o)
		oo.Seed = seed
		sum, err := generateFrom(ctx, oo, ana, eng.Model(), io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		return oo, sum
	}
	a, sum := run(7)
	b, _ := run(7)
	c, _ := run(8)
	for _, f := range []func(Options) string{
		func(o Options) string { return o.TruthOut }, func(o Options) string { return o.GalleryOut }, func(o Options) string { return o.Out }} {
		x, _ := os.ReadFile(f(a))
		y, _ := os.ReadFile(f(b))
		if len(x) == 0 || !bytes.Equal(x, y) {
			t.Fatalf("%s differs between two runs with the same seed", filepath.Base(f(a)))
		}
	}
	ta, _ := os.ReadFile(a.TruthOut)
	tc, _ := os.ReadFile(c.TruthOut)
	if bytes.Equal(ta, tc) {
		t.Fatal("another seed gave the same truth")
	}
	if sum.EnrolledPassages != 4 || sum.VisitorPassages != 3 {
		t.Fatalf("summary %+v", sum)
	}

	var truth Truth
	if err := json.Unmarshal(ta, &truth); err != nil {
		t.Fatal(err)
	}
	_, g, err := wire.LoadGalleryFile(a.GalleryOut)
	if err != nil {
		t.Fatal(err)
	}
	byRel := map[string]*analysed{}
	for _, x := range ana {
		byRel[x.Rel] = x
	}
	maxOverlap := 0
	for _, p := range truth.Passages {
		if p.FirstFrame < 0 || p.LastFrame >= int64(truth.Frames) || p.LastFrame <= p.FirstFrame {
			t.Fatalf("%s: frames %d..%d of %d", p.ID, p.FirstFrame, p.LastFrame, truth.Frames)
		}
		walked := byRel[p.Photo]
		if walked == nil {
			t.Fatalf("%s: unknown photo %s", p.ID, p.Photo)
		}
		if !p.Enrolled {
			if p.StudentID != "" {
				t.Fatalf("visitor %s has student_id %s", p.ID, p.StudentID)
			}
			m := g.Match(walked.Desc)
			t.Logf("visitor %s (%s): nearest %s at %.3f", p.ID, p.Name, m.PersonID, m.Distance)
			continue
		}
		descs := g.Descriptors(p.StudentID)
		if m := g.Match(walked.Desc); true {
			t.Logf("enrolled %s (%s): nearest %s at %.3f (self: %v), second %s at %.3f", p.ID, p.Name, m.PersonID, m.Distance, m.PersonID == p.StudentID, m.SecondPersonID, m.SecondDistance)
		}
		if len(descs) == 0 {
			t.Fatalf("%s: %s not in the gallery", p.ID, p.StudentID)
		}
		for _, d := range descs {
			if match.Distance(d, walked.Desc) < 1e-4 {
				t.Fatalf("%s: walked photo %s was also used for enrolment", p.ID, p.Photo)
			}
		}
		n := 0
		for _, q := range truth.Passages {
			if q.FirstFrame <= p.FirstFrame && p.FirstFrame <= q.LastFrame {
				n++
			}
		}
		maxOverlap = max(maxOverlap, n)
	}
	if maxOverlap < 2 {
		t.Fatalf("never two people at once (max %d)", maxOverlap)
	}

	vc, err := gocv.VideoCaptureFile(a.Out)
	if err != nil {
		t.Fatal(err)
	}
	defer vc.Close()
	m := gocv.NewMat()
	defer m.Close()
	n := 0
	for vc.Read(&m) && !m.Empty() {
		if m.Cols() != 1280 || m.Rows() != 720 {
			t.Fatalf("frame %d is %dx%d", n, m.Cols(), m.Rows())
		}
		n++
	}
	if n != truth.Frames {
		t.Fatalf("video has %d frames, truth says %d", n, truth.Frames)
	}
}

func TestCollectGroupsPeople(t *testing.T) {
	root := t.TempDir()
	flat := filepath.Join(root, "faces", "images")
	nested := filepath.Join(root, "kpop", "train", "Irene")
	for _, d := range []string{flat, nested} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range []string{filepath.Join(flat, "jimin.jpg"), filepath.Join(flat, "jimin2.jpg"), filepath.Join(flat, "bona.jpg"),
		filepath.Join(flat, "notes.txt"), filepath.Join(nested, "a.jpg"), filepath.Join(nested, "b.png")} {
		if err := os.WriteFile(f, nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	ps, err := collect([]string{filepath.Join(root, "faces"), filepath.Join(root, "kpop")})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]int{}
	for _, p := range ps {
		got[p.Person]++
	}
	want := map[string]int{"0:jimin": 2, "0:bona": 1, "1:irene": 2}
	if len(got) != len(want) {
		t.Fatalf("got %v", got)
	}
	for k, v := range want {
		if got[k] != v {
			t.Fatalf("got %v want %v", got, want)
		}
	}
	if ps[0].Rel != "faces/images/bona.jpg" {
		t.Fatalf("rel path %q", ps[0].Rel)
	}
	if _, err := collect([]string{filepath.Join(root, "missing")}); err == nil {
		t.Fatal("missing folder accepted")
	}
	empty := t.TempDir()
	if _, err := collect([]string{empty}); err == nil {
		t.Fatal("folder without images accepted")
	}
}

func TestSameName(t *testing.T) {
	cases := []struct {
		a, b string
		want bool
	}{
		{"seulgi", "seulgi", true}, {"chaeyong", "chaeyoung", true}, {"nana", "sana", false},
		{"chaeyeon", "chaeyoung", false}, {"jimin", "jimin", true}, {"irene", "irena", false},
	}
	for _, c := range cases {
		if got := sameName(c.a, c.b); got != c.want {
			t.Errorf("sameName(%q,%q)=%v", c.a, c.b, got)
		}
	}
}

func TestMainBadArguments(t *testing.T) {
	cases := []struct {
		args  []string
		field string
	}{
		{[]string{"--out", "x.avi", "--truth", "t.json", "--gallery-out", "g.json"}, "photos"},
		{[]string{"--photos", "p", "--truth", "t.json", "--gallery-out", "g.json"}, "out"},
		{[]string{"--photos", "p", "--out", "x.avi", "--truth", "t.json", "--gallery-out", "g.json", "--min-face", "300"}, "min-face"},
		{[]string{"--photos", "p", "--out", "x.avi", "--truth", "t.json", "--gallery-out", "g.json", "--school", "Bad School"}, "school"},
		{[]string{"--photos", "p", "--out", "x.avi", "--truth", "t.json", "--gallery-out", "g.json", "--days", "3"}, "days"},
		{[]string{"--suite", "s", "--photos", "p", "--out", "x.avi"}, "out"},
		{[]string{"--suite", "s", "--photos", "p", "--days", "-1"}, "days"},
		{[]string{"--suite", "s", "--photos", "p", "--scut-enrolled", "-5"}, "scut-enrolled"},
		{[]string{"--suite", "s", "--photos", "p", "--visitors", "-2"}, "visitors"},
	}
	for _, c := range cases {
		err := Main(context.Background(), c.args, io.Discard, io.Discard)
		var fe *conf.FieldError
		if !errors.As(err, &fe) || fe.Field != c.field {
			t.Errorf("%v: got %v, want error on %s", c.args, err, c.field)
		}
	}
	if err := Main(context.Background(), []string{"--bogus"}, io.Discard, io.Discard); err == nil {
		t.Error("unknown flag accepted")
	}
}
