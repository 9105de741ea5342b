package faceengine

import (
	"context"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/diemdanh/diemdanh/models/conf"
	"github.com/diemdanh/diemdanh/models/imagecheck"
	"github.com/diemdanh/diemdanh/models/match"
)

// Every built-in embedder has a distance profile whose fields are ordered
// the way their meaning requires, and the default embedder is the one the
// engine config uses.
func TestDistanceProfilesComplete(t *testing.T) {
	if got := DefaultEngineConfig().Embedder; got != match.DefaultEmbedder.Name {
		t.Fatalf("DefaultEngineConfig().Embedder = %q, DefaultEmbedder = %q", got, match.DefaultEmbedder.Name)
	}
	if m, ok := EmbedderModel(""); !ok || m != match.DefaultEmbedder {
		t.Fatalf(`EmbedderModel("") = %v %v`, m, ok)
	}
	if ReferenceModel != match.DlibResNetV1 {
		t.Fatalf("ReferenceModel must stay dlib, is %v", ReferenceModel)
	}
	for _, name := range EmbedderNames() {
		if _, external := ExternalONNXSpecs[name]; external {
			continue
		}
		p, ok := ProfileFor(name)
		if !ok {
			t.Errorf("%s: no distance profile", name)
			continue
		}
		m, _ := EmbedderModel(name)
		if pm, ok := ProfileOf(m); !ok || pm != p {
			t.Errorf("%s: ProfileOf(%v) = %v %v", name, m, pm, ok)
		}
		if !(p.DuplicateMax > 0 && p.VoteCap > 0 && p.VoteCap <= p.FeedbackMatchMax && p.FeedbackMatchMax <= p.SameMax &&
			p.DuplicateMax < p.SameMax && p.SameMax <= 2) {
			t.Errorf("%s: profile out of order: %+v", name, p)
		}
	}
	if _, ok := ProfileFor("no-such-model"); ok {
		t.Error("an unknown embedder has a profile")
	}
}

// The default embedder's profile agrees with its distances recomputed
// here on casia-facev5 (real model, real photos): the consistency check
// accepts the bulk of genuine pairs, the duplicate guard and the vote cap
// sit below the impostor distribution's low tail and above the genuine
// median.
func TestDefaultProfileMatchesCasia(t *testing.T) {
	root, err := conf.TestDataDir()
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(root, "asian", "casia-facev5")
	ids, err := os.ReadDir(dir)
	if err != nil {
		t.Fatalf("casia-facev5: %v", err)
	}
	cfg := DefaultEngineConfig()
	cfg.ModelsDir, cfg.Workers = conf.TestModelsDir(), 2
	eng, err := NewEngine(cfg, nil)
	if err != nil {
		t.Fatalf("face engine: %v (run `make models`)", err)
	}
	defer eng.Close()
	if eng.Model() != match.DefaultEmbedder {
		t.Fatalf("engine model %v, want %v", eng.Model(), match.DefaultEmbedder)
	}
	type sample struct {
		id string
		d  match.Descriptor
	}
	var samples []sample
	for _, id := range ids {
		if !id.IsDir() {
			continue
		}
		files, err := os.ReadDir(filepath.Join(dir, id.Name()))
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range files {
			if !strings.HasSuffix(f.Name(), ".bmp") {
				continue
			}
			b, err := os.ReadFile(filepath.Join(dir, id.Name(), f.Name()))
			if err != nil {
				t.Fatal(err)
			}
			m, _, err := DecodeMat(b, imagecheck.DefaultLimits())
			if err != nil {
				t.Fatalf("%s: %v", f.Name(), err)
			}
			faces, err := eng.RecognizeTight(context.Background(), m)
			m.Close()
			if err != nil {
				t.Fatalf("%s: %v", f.Name(), err)
			}
			if len(faces) > 0 {
				samples = append(samples, sample{id.Name(), faces[0].Descriptor})
			}
		}
	}
	if len(samples) < 150 {
		t.Fatalf("only %d casia photos gave a face", len(samples))
	}
	var gen, imp []float64
	for i := range samples {
		for j := i + 1; j < len(samples); j++ {
			d := match.Distance(samples[i].d, samples[j].d)
			if samples[i].id == samples[j].id {
				gen = append(gen, d)
			} else {
				imp = append(imp, d)
			}
		}
	}
	sort.Float64s(gen)
	sort.Float64s(imp)
	q := func(s []float64, p float64) float64 { return s[min(len(s)-1, int(p*float64(len(s))))] }
	gMed, g95 := q(gen, 0.5), q(gen, 0.95)
	i05 := q(imp, 0.05)
	p, ok := ProfileOf(match.DefaultEmbedder)
	if !ok {
		t.Fatalf("no profile for %v", match.DefaultEmbedder)
	}
	t.Logf("%v on casia: %d genuine pairs median %.3f p95 %.3f; %d impostor pairs p01 %.3f p05 %.3f; profile %+v",
		match.DefaultEmbedder, len(gen), gMed, g95, len(imp), q(imp, 0.01), i05, p)
	if p.SameMax < g95 {
		t.Errorf("SameMax %.3f < genuine p95 %.3f: the consistency check would refuse >5%% of true photos", p.SameMax, g95)
	}
	if p.FeedbackMatchMax < g95 {
		t.Errorf("FeedbackMatchMax %.3f < genuine p95 %.3f", p.FeedbackMatchMax, g95)
	}
	if p.DuplicateMax > i05 {
		t.Errorf("DuplicateMax %.3f > impostor p05 %.3f: >5%% of unrelated pairs held for review", p.DuplicateMax, i05)
	}
	if p.VoteCap > i05 {
		t.Errorf("VoteCap %.3f > impostor p05 %.3f", p.VoteCap, i05)
	}
	if p.DuplicateMax <= gMed || p.VoteCap <= gMed {
		t.Errorf("DuplicateMax %.3f / VoteCap %.3f at or below the genuine median %.3f: they would miss most duplicates / refuse most pupils",
			p.DuplicateMax, p.VoteCap, gMed)
	}
}
