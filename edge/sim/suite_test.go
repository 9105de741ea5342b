package sim

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/diemdanh/diemdanh/models/conf"
	"github.com/diemdanh/diemdanh/models/faceengine"
	"github.com/diemdanh/diemdanh/models/match"
	"github.com/diemdanh/diemdanh/models/wire"
	"gocv.io/x/gocv"
)

// suiteSubset links (never copies) part of every shared set into a fresh
// folder per set: all of faces/, three kpop idols (one only in
// validation/), five CASIA people (019 has a single usable photo) and the
// first 40 SCUT faces.
func suiteSubset(t *testing.T) []string {
	t.Helper()
	td, err := conf.TestDataDir()
	if err != nil {
		t.Fatal(err)
	}
	root := t.TempDir()
	link := func(srcDir, dstDir string, limit int) {
		files, err := os.ReadDir(srcDir)
		if err != nil || len(files) == 0 {
			t.Fatalf("shared photos missing under %s: %v", srcDir, err)
		}
		if err := os.MkdirAll(dstDir, 0o755); err != nil {
			t.Fatal(err)
		}
		for i, f := range files {
			if i == limit {
				break
			}
			if err := os.Symlink(filepath.Join(srcDir, f.Name()), filepath.Join(dstDir, f.Name())); err != nil {
				t.Fatal(err)
			}
		}
	}
	asian := filepath.Join(td, "asian")
	link(filepath.Join(td, "faces", "images"), filepath.Join(root, "faces", "images"), -1)
	for _, p := range []string{"train/Arin", "train/Sana", "validation/Dahyun"} {
		link(filepath.Join(asian, "kpop", p), filepath.Join(root, "kpop", p), -1)
	}
	for _, p := range []string{"000", "001", "002", "003", "019"} {
		link(filepath.Join(asian, "casia-facev5", p), filepath.Join(root, "casia-facev5", p), -1)
	}
	link(filepath.Join(asian, "scut-fbp5500"), filepath.Join(root, "scut-fbp5500"), 40)
	return []string{filepath.Join(root, "faces"), filepath.Join(root, "kpop"), filepath.Join(root, "casia-facev5"), filepath.Join(root, "scut-fbp5500")}
}

// TestSuiteSelectionRules generates a small real suite (three days, 20
// SCUT faces enrolled, 640×360) from the shared photos and checks the
// suite's rules on its files: no photo walked twice, no enrolment photo
// walked, no SCUT face both enrolled and a visitor, every walking pupil in
// both galleries and no visitor in either (by descriptor too), the day in
// each truth file, first_recognisable within [first_frame, last_in_view];
// then that a second generation with the same seed elsewhere is
// byte-identical and that generating into the same folder again reuses it.
func TestSuiteSelectionRules(t *testing.T) {
	eng := testEngine(t)
	ctx := context.Background()
	o := DefaultSuiteOptions()
	o.Photos = suiteSubset(t)
	o.Dir = filepath.Join(t.TempDir(), "a")
	o.Seed, o.Days, o.ScutEnrolled, o.Visitors = 4, 3, 20, -1
	o.Width, o.Height, o.MinFace, o.MaxFace = 640, 360, 40, 120
	o.AnalysisCache = filepath.Join(t.TempDir(), "analysis.json")
	var warn bytes.Buffer
	sum, err := GenerateSuite(ctx, o, eng, &warn)
	if err != nil {
		t.Fatalf("%v\n%s", err, warn.String())
	}
	t.Logf("%+v\n%s", *sum, warn.String())
	if sum.Cached || sum.Days != 3 || sum.ScutEnrolled != 20 || sum.EnrolledPassages < 20 || sum.VisitorsBySet["scut"] != 20 {
		t.Fatalf("summary %+v", *sum)
	}
	s, err := LoadSuite(sum.Manifest)
	if err != nil {
		t.Fatal(err)
	}
	checkSuiteFiles(t, s, o.AnalysisCache)

	// Same seed, another folder, the analysis from the cache: the same bytes.
	o2 := o
	o2.Dir = filepath.Join(t.TempDir(), "b")
	sum2, err := GenerateSuite(ctx, o2, eng, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	names := []string{suiteManifest}
	for _, f := range s.Files() {
		names = append(names, filepath.Base(f))
	}
	for _, n := range names {
		x, err1 := os.ReadFile(filepath.Join(o.Dir, n))
		y, err2 := os.ReadFile(filepath.Join(o2.Dir, n))
		if err1 != nil || err2 != nil || !bytes.Equal(x, y) {
			t.Errorf("%s differs between two generations with the same seed (%v %v)", n, err1, err2)
		}
	}
	if sum2.Cached {
		t.Error("a fresh folder reported a cached suite")
	}

	// The same folder again: nothing is rewritten.
	before := modTimes(t, o.Dir, names)
	time.Sleep(20 * time.Millisecond)
	sum3, err := GenerateSuite(ctx, o, eng, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if !sum3.Cached || sum3.EnrolledPassages != sum.EnrolledPassages || sum3.Frames != sum.Frames {
		t.Errorf("second run: %+v", *sum3)
	}
	if after := modTimes(t, o.Dir, names); after != before {
		t.Errorf("a cached suite was rewritten:\n%s\n%s", before, after)
	}
	// Another seed is another suite, in the same folder.
	o.Seed = 5
	sum4, err := GenerateSuite(ctx, o, eng, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	s4, err := LoadSuite(sum4.Manifest)
	if sum4.Cached || err != nil || s4.Key == s.Key || s4.Seed != 5 {
		t.Errorf("another seed: cached %v, key %s vs %s, %v", sum4.Cached, s4.Key, s.Key, err)
	}
}

func modTimes(t *testing.T, dir string, names []string) string {
	t.Helper()
	var b strings.Builder
	for _, n := range names {
		st, err := os.Stat(filepath.Join(dir, n))
		if err != nil {
			t.Fatal(err)
		}
		b.WriteString(n + "@" + st.ModTime().String() + " ")
	}
	return b.String()
}

// checkSuiteFiles asserts the suite's rules on its files.
func checkSuiteFiles(t *testing.T, s *Suite, analysisCache string) {
	t.Helper()
	desc, ref := analysisDescriptors(t, analysisCache)
	_, g, err := wire.LoadGalleryFile(s.Path(s.Gallery))
	if err != nil {
		t.Fatal(err)
	}
	_, rg, err := wire.LoadGalleryFile(s.Path(s.ReferenceGallery))
	if err != nil {
		t.Fatal(err)
	}
	if rg.Model != faceengine.ReferenceModel || g.People() != s.GallerySize || rg.People() != s.ReferenceGallerySize ||
		s.GallerySize != s.WalkingPupils+s.ScutEnrolled {
		t.Fatalf("galleries: %v %d people, %v %d people; manifest %d walking + %d scut", g.Model, g.People(), rg.Model, rg.People(), s.WalkingPupils, s.ScutEnrolled)
	}
	enrolment := map[string]SuitePupil{} // photo → pupil
	scut := 0
	for _, p := range s.Pupils {
		for _, ph := range p.Enrolment {
			enrolment[ph] = p
		}
		if p.Set == "scut" {
			scut++
		}
	}
	if scut != s.ScutEnrolled {
		t.Fatalf("%d scut pupils listed, %d enrolled", scut, s.ScutEnrolled)
	}
	walked := map[string]int{}
	for _, day := range s.Days {
		tr := loadTruth(t, s.Path(day.Truth))
		if tr.Day != day.Day || tr.Width != s.Width || tr.Frames != day.Frames {
			t.Fatalf("%s: day %d, width %d, frames %d; manifest day %d", day.Truth, tr.Day, tr.Width, tr.Frames, day.Day)
		}
		for _, p := range tr.Passages {
			if prev, dup := walked[p.Photo]; dup {
				t.Fatalf("%s walked on day %d and day %d", p.Photo, prev, day.Day)
			}
			walked[p.Photo] = day.Day
			if pu, ok := enrolment[p.Photo]; ok {
				t.Fatalf("day %d: enrolment photo %s of %s walked", day.Day, p.Photo, pu.StudentID)
			}
			if !(p.FirstFrame <= p.FirstRecognisable && p.FirstRecognisable <= p.LastInView && p.LastInView <= p.LastFrame) || p.Set == "" {
				t.Fatalf("%s: set %q, frames %d, recognisable %d, in view %d, last %d", p.ID, p.Set, p.FirstFrame, p.FirstRecognisable, p.LastInView, p.LastFrame)
			}
			if ref[p.Photo] == nil {
				t.Fatalf("%s: %s has no reference descriptor in the analysis", p.ID, p.Photo)
			}
			checkInGallery(t, p, ref[p.Photo], rg, rg)
			if d := desc[p.Photo]; d != nil {
				checkInGallery(t, p, d, g, rg)
			}
		}
		checkVideo(t, s.Path(day.Video), tr)
	}
}

// checkInGallery: the walked photo's descriptor d is nobody's enrolment
// descriptor in g (a visitor is not in the gallery, not even under
// another ID); a walking pupil is in g and in the reference gallery rg.
func checkInGallery(t *testing.T, p Passage, d match.Descriptor, g, rg *match.Gallery) {
	t.Helper()
	for _, id := range g.PersonIDs() {
		for _, e := range g.Descriptors(id) {
			if match.Distance(d, e) < 1e-4 {
				t.Fatalf("%s (%s, enrolled %v): walked photo %s is enrolled as %s", p.ID, p.Set, p.Enrolled, p.Photo, id)
			}
		}
	}
	if p.Visitor() {
		if p.StudentID != "" || p.Enrolled {
			t.Fatalf("visitor %s: %+v", p.ID, p)
		}
		return
	}
	if len(g.Descriptors(p.StudentID)) == 0 || len(rg.Descriptors(p.StudentID)) == 0 {
		t.Fatalf("%s: %s not in both galleries", p.ID, p.StudentID)
	}
}

func checkVideo(t *testing.T, path string, tr *Truth) {
	t.Helper()
	vc, err := gocv.VideoCaptureFile(path)
	if err != nil {
		t.Fatal(err)
	}
	defer vc.Close()
	m := gocv.NewMat()
	defer m.Close()
	n := 0
	for vc.Read(&m) && !m.Empty() {
		if m.Cols() != tr.Width || m.Rows() != tr.Height {
			t.Fatalf("%s frame %d is %dx%d", path, n, m.Cols(), m.Rows())
		}
		n++
	}
	if n != tr.Frames {
		t.Fatalf("%s has %d frames, truth says %d", path, n, tr.Frames)
	}
}

func loadTruth(t *testing.T, path string) *Truth {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var tr Truth
	if err := json.Unmarshal(b, &tr); err != nil || tr.Format != TruthFormat {
		t.Fatalf("%s: %v (format %q)", path, err, tr.Format)
	}
	return &tr
}

// analysisDescriptors reads the embedder's and the reference model's
// descriptors by photo (as in the truth files: set folder and below) from
// the analysis cache.
func analysisDescriptors(t *testing.T, path string) (desc, ref map[string]match.Descriptor) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var f analysisFile
	if err := json.Unmarshal(b, &f); err != nil {
		t.Fatal(err)
	}
	desc, ref = map[string]match.Descriptor{}, map[string]match.Descriptor{}
	for _, e := range f.Photos {
		if e.Error != "" {
			continue
		}
		r, err := match.ParseDescriptorBase64(e.Ref)
		if err != nil {
			t.Fatal(err)
		}
		var d match.Descriptor
		if e.Desc != "" {
			if d, err = match.ParseDescriptorBase64(e.Desc); err != nil {
				t.Fatal(err)
			}
		}
		// .../<set folder>/<rest>: the truth's photo is relative to the
		// set folder's parent.
		parts := strings.Split(filepath.ToSlash(e.Path), "/")
		for i := len(parts) - 1; i >= 0; i-- {
			if p := parts[i]; p == "faces" || p == "kpop" || p == "casia-facev5" || p == "scut-fbp5500" {
				rel := strings.Join(parts[i:], "/")
				desc[rel], ref[rel] = d, r
				break
			}
		}
	}
	return desc, ref
}

func TestLoadSuiteRejects(t *testing.T) {
	dir := t.TempDir()
	good := Suite{Format: SuiteFormat, Gallery: "g.json", ReferenceGallery: "r.json",
		Days: []SuiteDay{{Day: 1, Video: "day01.avi", Truth: "day01.truth.json"}}}
	cases := []struct {
		name string
		edit func(*Suite)
		want string
	}{
		{"good", func(*Suite) {}, ""},
		{"format", func(s *Suite) { s.Format = "other/1" }, "format"},
		{"no days", func(s *Suite) { s.Days = nil }, "no days"},
		{"day numbers", func(s *Suite) { s.Days[0].Day = 2 }, "days[0]"},
		{"no gallery", func(s *Suite) { s.ReferenceGallery = "" }, "reference_gallery"},
	}
	for _, c := range cases {
		s := good
		s.Days = append([]SuiteDay(nil), good.Days...)
		c.edit(&s)
		b, _ := json.Marshal(s)
		path := filepath.Join(dir, strings.ReplaceAll(c.name, " ", "-")+".json")
		if err := os.WriteFile(path, b, 0o644); err != nil {
			t.Fatal(err)
		}
		got, err := LoadSuite(path)
		switch {
		case c.want == "" && err != nil:
			t.Errorf("%s: %v", c.name, err)
		case c.want == "" && got.Path("day01.avi") != filepath.Join(dir, "day01.avi"):
			t.Errorf("%s: path %s", c.name, got.Path("day01.avi"))
		case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
			t.Errorf("%s: got %v, want an error naming %s", c.name, err, c.want)
		}
	}
	if _, err := LoadSuite(filepath.Join(dir, "missing.json")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing manifest: %v", err)
	}
}

func TestSuiteSources(t *testing.T) {
	specs, err := suiteSources([]string{"/d/faces", "/d/asian/kpop/", "/d/asian/casia-facev5", "/d/asian/scut-fbp5500"})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, s := range specs {
		got = append(got, s.Set+map[bool]string{true: "(crowd)"}[s.Crowd])
	}
	sort.Strings(got)
	if strings.Join(got, " ") != "casia faces kpop scut(crowd)" {
		t.Fatalf("sets %v", got)
	}
	var fe *conf.FieldError
	if _, err := suiteSources([]string{"/a/kpop", "/b/kpop-2"}); !errors.As(err, &fe) || fe.Field != "photos" {
		t.Fatalf("two folders of one set: %v", err)
	}
}
