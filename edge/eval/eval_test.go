package eval

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/diemdanh/diemdanh/models/conf"
	"github.com/diemdanh/diemdanh/models/faceengine"
	"github.com/diemdanh/diemdanh/models/match"
)

// fixture: five 1-D points (as 2-D descriptors, values exact in float32)
// whose figures are worked out by hand below.
//
//	A: 0, 1    B: 1.5, 3    C: 10 (a singleton)
//
// genuine pairs: A 1, B 1.5                         → [1, 1.5]
// impostor pairs: A0B0 1.5, A0B1 3, A1B0 0.5, A1B1 2,
// A0C 10, A1C 9, B0C 8.5, B1C 7                       → [0.5 1.5 2 3 7 8.5 9 10]
//
// probes (own nearest; nearest other identity; second other identity):
//
//	a0: own 1;   B 1.5; C 10  → correct
//	a1: own 1;   B 0.5; C 9   → wrong (B is nearer)
//	b0: own 1.5; A 0.5; C 8.5 → wrong
//	b1: own 1.5; A 2;   C 7   → correct
//	c:  own ∞;   B 7;   A 9   → not a closed-set probe
func fixture() []Sample {
	pt := func(id string, x float32) Sample { return Sample{Identity: id, Desc: match.Descriptor{x, 0}} }
	return []Sample{pt("A", 0), pt("A", 1), pt("B", 1.5), pt("B", 3), pt("C", 10)}
}

func near(a, b float64) bool { return math.Abs(a-b) < 1e-9 }

func TestFiguresOnHandComputedFixture(t *testing.T) {
	pairs, probes := Analyse(fixture())
	wantG := []float64{1, 1.5}
	wantI := []float64{0.5, 1.5, 2, 3, 7, 8.5, 9, 10}
	if len(pairs.Genuine) != 2 || len(pairs.Impostor) != 8 {
		t.Fatalf("pairs: %v %v", pairs.Genuine, pairs.Impostor)
	}
	for i, w := range wantG {
		if !near(pairs.Genuine[i], w) {
			t.Errorf("genuine[%d] = %g, want %g", i, pairs.Genuine[i], w)
		}
	}
	for i, w := range wantI {
		if !near(pairs.Impostor[i], w) {
			t.Errorf("impostor[%d] = %g, want %g", i, pairs.Impostor[i], w)
		}
	}
	for _, c := range []struct{ t, far, frr float64 }{
		{0.25, 0, 1}, {0.5, 0.125, 1}, {1.0, 0.125, 0.5}, {1.25, 0.125, 0.5}, {1.5, 0.25, 0}, {2.5, 0.375, 0}, {10, 1, 0},
	} {
		if far, frr := pairs.FAR(c.t), pairs.FRR(c.t); !near(far, c.far) || !near(frr, c.frr) {
			t.Errorf("t=%g: FAR %g FRR %g, want %g %g", c.t, far, frr, c.far, c.frr)
		}
	}
	// EER: |FAR-FRR| is 0.875, 0.375, 0.25, 0.375 at 0.5, 1, 1.5, 2: the
	// smallest at 1.5, where FAR 2/8 and FRR 0.
	if eer, th := pairs.EER(); !near(eer, 0.125) || !near(th, 1.5) {
		t.Errorf("EER %g at %g, want 0.125 at 1.5", eer, th)
	}
	// FAR ≤ 0.1 allows no impostor: only genuine under 0.5 (none).
	// FAR ≤ 0.2 allows one (0.5): genuine under 1.5 (one of two).
	// FAR ≤ 0.3 allows two: genuine under 2 (both).
	for _, c := range []struct{ far, tar float64 }{{0.1, 0}, {0.2, 0.5}, {0.3, 1}} {
		if tar, _ := pairs.TARAtFAR(c.far); !near(tar, c.tar) {
			t.Errorf("TAR@%g = %g, want %g", c.far, tar, c.tar)
		}
	}
	if r := Rank1(probes); r.Count != 2 || r.Total != 4 {
		t.Errorf("rank-1 %d/%d, want 2/4", r.Count, r.Total)
	}
	// t=1.25, no margin: visitors a1 (0.5) and b0 (0.5) of 5; genuine a0
	// only (b1's own 1.5 is over); wrong a1 and b0.
	o := OpenSetAt(probes, 1.25, 0)
	if o.VisitorAccept.Count != 2 || o.VisitorAccept.Total != 5 || o.GenuineAccept.Count != 1 || o.GenuineAccept.Total != 4 || o.WrongAccept.Count != 2 {
		t.Errorf("t=1.25: %+v", o)
	}
	// margin 0.75: a0's runner-up is 0.5 behind: refused. a1's wrong match
	// has its own 1 as runner-up (0.5 behind): refused; b0's runner-up is
	// its own 1.5 (1.0 behind): accepted. Visitors a1, b0 have C 8+ behind.
	o = OpenSetAt(probes, 1.25, 0.75)
	if o.VisitorAccept.Count != 2 || o.GenuineAccept.Count != 0 || o.WrongAccept.Count != 1 {
		t.Errorf("t=1.25 m=0.75: %+v", o)
	}
	if th := ThresholdForGenuine(probes, 0.5, 0); !near(th, 1.5) {
		t.Errorf("threshold for 50%% genuine = %g, want 1.5", th)
	}
	if th := ThresholdForGenuine(probes, 0.25, 0); !near(th, 1) {
		t.Errorf("threshold for 25%% genuine = %g, want 1", th)
	}
	if th := ThresholdForGenuine(probes, 0.75, 0); !math.IsNaN(th) {
		t.Errorf("75%% genuine is unreachable (rank-1 50%%), got %g", th)
	}
	// Visitors sorted: 0.5 0.5 1.5 2 7. At most 1 of 5 (20%): the tie at
	// 0.5 forces a threshold under 0.5, accepting none.
	if th := ThresholdForVisitor(probes, 0.2); !(th < 0.5 && th > 0.49) {
		t.Errorf("threshold for 20%% visitors = %g", th)
	}
	if th := ThresholdForVisitor(probes, 0.4); !(th < 1.5 && th > 1.49) {
		t.Errorf("threshold for 40%% visitors = %g", th)
	}
}

func testData(t *testing.T) string {
	t.Helper()
	d, err := conf.TestDataDir()
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func modelsDir(t *testing.T) string {
	t.Helper()
	d := conf.TestModelsDir()
	if err := faceengine.VerifyModels(d, faceengine.ModelFilesFor(faceengine.FacepluginMFNV1.Model.Name)); err != nil {
		t.Fatalf("models: %v (run `make models`)", err)
	}
	return d
}

// On go-face's descriptors, rank-1 from the harness equals a brute-force
// leave-one-out through match.Gallery built anew for every probe.
func TestDescriptorFileMatchesBruteForce(t *testing.T) {
	path := filepath.Join(testData(t), "faces", "idols.json")
	c := Config{Input: path, Embedder: match.DlibResNetV1.Name, TargetFAR: 0.01, Label: "auto", MaxIDs: 12}
	rep, err := Run(context.Background(), c, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	samples, err := loadDescriptors(c)
	if err != nil {
		t.Fatal(err)
	}
	correct, probes, genuine := 0, 0, 0
	count := map[string]int{}
	for _, s := range samples {
		count[s.Identity]++
	}
	for _, n := range count {
		genuine += n * (n - 1) / 2
	}
	for i, s := range samples {
		if count[s.Identity] < 2 {
			continue
		}
		g := match.NewGallery(1, match.DlibResNetV1)
		for j, o := range samples {
			if j != i {
				_ = g.Add(o.Identity, o.Desc)
			}
		}
		probes++
		if g.Match(s.Desc).PersonID == s.Identity {
			correct++
		}
	}
	if rep.Identities != 12 || len(count) != 12 {
		t.Fatalf("identities %d / %d, want 12", rep.Identities, len(count))
	}
	if rep.Rank1.Count != correct || rep.Rank1.Total != probes {
		t.Errorf("rank-1 %d/%d, brute force %d/%d", rep.Rank1.Count, rep.Rank1.Total, correct, probes)
	}
	if rep.Genuine.Pairs != genuine || rep.Genuine.Pairs+rep.Impostor.Pairs != len(samples)*(len(samples)-1)/2 {
		t.Errorf("pairs %d+%d, want %d genuine of %d", rep.Genuine.Pairs, rep.Impostor.Pairs, genuine, len(samples)*(len(samples)-1)/2)
	}
	if _, err := Run(context.Background(), Config{Input: path, Embedder: faceengine.FacepluginMFNV1.Model.Name, TargetFAR: 0.01, Label: "auto"}, &bytes.Buffer{}); err == nil {
		t.Error("an ONNX embedder on dlib descriptors must be refused")
	}
}

// The harness on real tight crops (casia-facev5, 4 people × 3 photos)
// through Main with --json and --plot, checked against descriptors
// computed here directly with the engine and matched by brute force.
func TestMainOnSharedPhotos(t *testing.T) {
	dir := filepath.Join(testData(t), "asian", "casia-facev5")
	models := modelsDir(t)
	for _, emb := range []string{match.DlibResNetV1.Name, faceengine.FacepluginMFNV1.Model.Name} {
		t.Run(emb, func(t *testing.T) {
			png := filepath.Join(t.TempDir(), "det.png")
			var out, errb bytes.Buffer
			args := []string{"-json", "-plot", png, "-embedder", emb, "-models", models, "-workers", "2", "-max-ids", "4", "-per-id", "3", dir}
			if err := Main(context.Background(), args, &out, &errb); err != nil {
				t.Fatalf("%v\n%s", err, errb.String())
			}
			var rep Report
			if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
				t.Fatalf("json: %v\n%s", err, out.String())
			}
			// Independent: the engine on the same 12 files.
			items, err := ListLabelled(dir, "auto")
			if err != nil {
				t.Fatal(err)
			}
			items = subset(items, 3, 4)
			cfg := faceengine.DefaultEngineConfig()
			cfg.ModelsDir, cfg.Workers, cfg.Embedder = models, 1, emb
			eng, err := faceengine.NewEngine(cfg, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer eng.Close()
			var samples []Sample
			for _, it := range items {
				s, _, err := describeOne(context.Background(), eng, it)
				if err != nil {
					t.Fatal(err)
				}
				if s != nil {
					samples = append(samples, *s)
				}
			}
			if len(items) != 12 || rep.Images != 12 || rep.FTE.Count != 12-len(samples) {
				t.Fatalf("images %d/%d, FTE %d, engine found %d", rep.Images, len(items), rep.FTE.Count, len(samples))
			}
			correct := 0
			for i, s := range samples {
				g := match.NewGallery(1, eng.Model())
				for j, o := range samples {
					if j != i {
						_ = g.Add(o.Identity, o.Desc)
					}
				}
				if g.Match(s.Desc).PersonID == s.Identity {
					correct++
				}
			}
			if rep.Rank1.Count != correct {
				t.Errorf("rank-1 %d, brute force %d", rep.Rank1.Count, correct)
			}
			if rep.Embedder != eng.Model() || !(rep.Genuine.Median < rep.Impostor.Median) {
				t.Errorf("model %v, genuine median %.3f, impostor %.3f", rep.Embedder, rep.Genuine.Median, rep.Impostor.Median)
			}
			if rep.Calibration.Identities != 4 || rep.Calibration.Threshold <= 0 {
				t.Errorf("calibration %+v", rep.Calibration)
			}
			b, err := os.ReadFile(png)
			if err != nil || len(b) < 1000 || !bytes.HasPrefix(b, []byte("\x89PNG")) {
				t.Errorf("plot: %d bytes, %v", len(b), err)
			}
		})
	}
}

func TestMainRejectsBadArguments(t *testing.T) {
	var fe *conf.FieldError
	for _, args := range [][]string{
		{},
		{"-embedder", "arcface-r100", "x"},
		{"-target-far", "2", "x"},
		{"-label", "guess", "x"},
	} {
		err := Main(context.Background(), args, &bytes.Buffer{}, &bytes.Buffer{})
		if !errors.As(err, &fe) {
			t.Errorf("%q: %v, want a field error", args, err)
		}
	}
	err := Main(context.Background(), []string{filepath.Join(t.TempDir(), "none")}, &bytes.Buffer{}, &bytes.Buffer{})
	if err == nil || !strings.Contains(err.Error(), "none") {
		t.Errorf("missing folder: %v", err)
	}
}
