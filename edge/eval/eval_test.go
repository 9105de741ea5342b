package eval

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/diemdanh/diemdanh/models/conf"
	"github.com/diemdanh/diemdanh/models/faceengine"
	"github.com/diemdanh/diemdanh/models/match"
)

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
			if err := Main(context.Background(), args, nil, &out, &errb); err != nil {
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
		err := Main(context.Background(), args, nil, &bytes.Buffer{}, &bytes.Buffer{})
		if !errors.As(err, &fe) {
			t.Errorf("%q: %v, want a field error", args, err)
		}
	}
	err := Main(context.Background(), []string{filepath.Join(t.TempDir(), "none")}, nil, &bytes.Buffer{}, &bytes.Buffer{})
	if err == nil || !strings.Contains(err.Error(), "none") {
		t.Errorf("missing folder: %v", err)
	}
}
