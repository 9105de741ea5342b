package sim

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/diemdanh/diemdanh/models/conf"
	"github.com/diemdanh/diemdanh/models/faceengine"
	"github.com/diemdanh/diemdanh/models/match"
	"github.com/diemdanh/diemdanh/models/wire"
)

// casiaSubset links the photos of a few casia-facev5 people into a fresh
// folder (links, not copies: the data stays outside the repo). The people
// include one with a single usable photo (019, a visitor) and ones whose
// photos are far apart in faceplugin-mfn-v1 distances (000, 021, 028).
func casiaSubset(t *testing.T) string {
	t.Helper()
	td, err := conf.TestDataDir()
	if err != nil {
		t.Fatal(err)
	}
	src := filepath.Join(td, "asian", "casia-facev5")
	root := filepath.Join(t.TempDir(), "casia")
	for _, id := range []string{"000", "004", "013", "019", "021", "028", "035"} {
		files, err := filepath.Glob(filepath.Join(src, id, "*.bmp"))
		if err != nil || len(files) == 0 {
			t.Fatalf("casia-facev5 person %s: no photos under %s (%v)", id, src, err)
		}
		dst := filepath.Join(root, id)
		if err := os.MkdirAll(dst, 0o755); err != nil {
			t.Fatal(err)
		}
		for _, f := range files {
			if err := os.Symlink(f, filepath.Join(dst, filepath.Base(f))); err != nil {
				t.Fatal(err)
			}
		}
	}
	return root
}

func engineFor(t *testing.T, embedder string) *faceengine.Engine {
	t.Helper()
	ec := faceengine.DefaultEngineConfig()
	ec.ModelsDir = conf.TestModelsDir()
	ec.Workers = 2
	ec.Embedder = embedder
	eng, err := faceengine.NewEngine(ec, nil)
	if err != nil {
		t.Fatalf("face engine %s (set MODELS_DIR, run make models): %v", embedder, err)
	}
	t.Cleanup(eng.Close)
	return eng
}

// TestSelectionDoesNotDependOnEmbedder simulates the same photos with the
// same seed using dlib-resnet-v1 and faceplugin-mfn-v1. People, photos and
// frames are chosen on the reference model, so the truth files and videos
// must be byte-identical and the galleries must enrol the same students
// with the same number of photos, each gallery in its own model. The test
// also checks that the photo set would have split people had the dlib
// same-person rule been applied to the ONNX embedder's distances (the old
// behaviour), so it can tell the two behaviours apart.
func TestSelectionDoesNotDependOnEmbedder(t *testing.T) {
	photos := casiaSubset(t)
	ctx := context.Background()
	type run struct {
		o    Options
		sum  *Summary
		warn string
		doc  *wire.GalleryDoc
		g    *match.Gallery
	}
	gen := func(embedder string) run {
		eng := engineFor(t, embedder)
		o := outputs(t.TempDir(), DefaultOptions())
		o.Photos = []string{photos}
		o.Seed = 3
		o.Width, o.Height, o.MinFace, o.MaxFace = 640, 360, 40, 120
		var warn bytes.Buffer
		sum, err := Generate(ctx, o, eng, &warn)
		if err != nil {
			t.Fatalf("%s: %v", embedder, err)
		}
		doc, g, err := wire.LoadGalleryFile(o.GalleryOut)
		if err != nil {
			t.Fatalf("%s: %v", embedder, err)
		}
		t.Logf("%s: %+v\n%s", embedder, *sum, warn.String())
		return run{o, sum, warn.String(), doc, g}
	}
	dl := gen(match.DlibResNetV1.Name)
	mf := gen("faceplugin-mfn-v1")

	for _, f := range []func(Options) string{
		func(o Options) string { return o.TruthOut }, func(o Options) string { return o.Out }} {
		x, err1 := os.ReadFile(f(dl.o))
		y, err2 := os.ReadFile(f(mf.o))
		if err1 != nil || err2 != nil || len(x) == 0 {
			t.Fatalf("reading outputs: %v %v", err1, err2)
		}
		if !bytes.Equal(x, y) {
			t.Errorf("%s differs between dlib-resnet-v1 and faceplugin-mfn-v1", filepath.Base(f(dl.o)))
		}
	}
	if dl.sum.EnrolledPassages < 3 || dl.sum.Passages != mf.sum.Passages || dl.sum.EnrolledPassages != mf.sum.EnrolledPassages ||
		dl.sum.VisitorPassages != mf.sum.VisitorPassages || dl.sum.SkippedPhotos != mf.sum.SkippedPhotos || dl.sum.GalleryPeople != mf.sum.GalleryPeople {
		t.Errorf("summaries differ or too few people:\n dlib %+v\n mfn  %+v", *dl.sum, *mf.sum)
	}
	// The selection notes (photos dropped as inconsistent, people dropped)
	// are the same: only the embedder's own notes may be added.
	selection := func(s string) []string {
		var out []string
		for _, l := range strings.Split(s, "\n") {
			if strings.Contains(l, "does not look like") || strings.Contains(l, "disagree") || strings.Contains(l, "skipping") {
				out = append(out, l)
			}
		}
		return out
	}
	if a, b := selection(dl.warn), selection(mf.warn); !slices.Equal(a, b) {
		t.Errorf("selection notes differ:\n dlib %q\n mfn  %q", a, b)
	}

	if dl.doc.Model != match.DlibResNetV1 || mf.doc.Model.Name != "faceplugin-mfn-v1" {
		t.Fatalf("gallery models %v and %v", dl.doc.Model, mf.doc.Model)
	}
	if dl.sum.Embedder != dl.doc.Model.String() || mf.sum.Embedder != mf.doc.Model.String() ||
		mf.sum.Reference != faceengine.ReferenceModel.String() {
		t.Errorf("summary models: %q/%q, %q/%q", dl.sum.Embedder, dl.sum.Reference, mf.sum.Embedder, mf.sum.Reference)
	}
	if dl.g.Dim() == mf.g.Dim() {
		t.Errorf("both galleries have %d-d descriptors: the mfn gallery was not made by its embedder", dl.g.Dim())
	}
	ids := dl.g.PersonIDs()
	if !slices.Equal(ids, mf.g.PersonIDs()) {
		t.Fatalf("student IDs differ:\n dlib %v\n mfn  %v", ids, mf.g.PersonIDs())
	}
	split := 0
	for _, id := range ids {
		a, b := dl.g.Descriptors(id), mf.g.Descriptors(id)
		if len(a) != len(b) {
			t.Errorf("%s: %d enrolment photos with dlib, %d with mfn", id, len(a), len(b))
		}
		for i := range b {
			for j := i + 1; j < len(b); j++ {
				if match.Distance(b[i], b[j]) >= dlibRefSameFace {
					split++
				}
			}
		}
	}
	// Enrolment photos the reference kept together but which are farther
	// apart than the dlib rule's distance on the ONNX scale: the old code
	// would have dropped them, and the truth files would have differed.
	if split == 0 {
		t.Fatal("no enrolment pair is beyond the dlib rule's distance in faceplugin-mfn-v1 space; this photo set cannot show the bug")
	}
	t.Logf("%d mfn enrolment pairs at or beyond %.2f that the reference keeps", split, dlibRefSameFace)
}
