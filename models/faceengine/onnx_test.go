package faceengine

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"image"
	"math"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/diemdanh/diemdanh/models/conf"
	"github.com/diemdanh/diemdanh/models/errkind"
	"github.com/diemdanh/diemdanh/models/imagecheck"
	"github.com/diemdanh/diemdanh/models/match"
	"gocv.io/x/gocv"
)

// onnxModelsDir is where `make models` put the ONNX files. A missing model
// fails the test (run `make models`); it is never skipped.
func onnxModelsDir(t testing.TB) string {
	t.Helper()
	dir := conf.TestModelsDir()
	if err := VerifyModels(dir, ONNXModels); err != nil {
		t.Fatalf("ONNX models: %v (run `make models`)", err)
	}
	return dir
}

var (
	onnxEngineOnce sync.Once
	onnxEngine     *Engine
	onnxEngineErr  error
)

func mfnEngine(t testing.TB) *Engine {
	t.Helper()
	onnxModelsDir(t)
	onnxEngineOnce.Do(func() {
		cfg := DefaultEngineConfig()
		cfg.ModelsDir = conf.TestModelsDir()
		cfg.Workers = 2
		cfg.Embedder = FacepluginMFNV1.Model.Name
		onnxEngine, onnxEngineErr = NewEngine(cfg, nil)
	})
	if onnxEngineErr != nil {
		t.Fatalf("ONNX engine: %v", onnxEngineErr)
	}
	return onnxEngine
}

func TestONNXManifestMatchesSHA256SUMS(t *testing.T) {
	root, err := conf.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(root, "models", "SHA256SUMS"))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		if f := strings.Fields(line); len(f) == 2 {
			want[f[1]] = f[0]
		}
	}
	if len(ONNXModels) == 0 {
		t.Fatal("no ONNX models pinned")
	}
	for _, m := range ONNXModels {
		if want[m.Name] != m.SHA256 {
			t.Errorf("%s: Go manifest %s, SHA256SUMS %q", m.Name, m.SHA256, want[m.Name])
		}
	}
	for name, s := range ONNXSpecs {
		if name != s.Model.Name || s.Validate() != nil {
			t.Errorf("spec %q: name %q, %v", name, s.Model.Name, s.Validate())
		}
	}
}

func TestONNXMissingModel(t *testing.T) {
	_, err := NewONNXEmbedder(t.TempDir(), FacepluginMFNV1, 1)
	if errkind.Of(err) != errkind.ModelMissing || !strings.Contains(err.Error(), "fr_feature.onnx") {
		t.Fatalf("err = %v, want model_missing naming the file", err)
	}
	cfg := DefaultEngineConfig()
	cfg.ModelsDir, cfg.Embedder, cfg.Workers = t.TempDir(), FacepluginMFNV1.Model.Name, 1
	if _, err := NewEngine(cfg, nil); errkind.Of(err) != errkind.ModelMissing {
		t.Fatalf("engine: err = %v, want model_missing", err)
	}
}

func copyModel(t *testing.T, flip bool) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(onnxModelsDir(t), FacepluginMFNV1.File.Name))
	if err != nil {
		t.Fatal(err)
	}
	if flip {
		b[len(b)/2] ^= 0x40
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, FacepluginMFNV1.File.Name), b, 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestONNXWrongChecksum(t *testing.T) {
	dir := copyModel(t, true)
	_, err := NewONNXEmbedder(dir, FacepluginMFNV1, 1)
	if errkind.Of(err) != errkind.ModelCorrupt || !strings.Contains(err.Error(), "sha256") {
		t.Fatalf("err = %v, want model_corrupt with the checksum", err)
	}
}

// A file that passes its (test-pinned) checksum but is no ONNX model is
// refused with a typed error before OpenCV, which would abort the process,
// ever sees it.
func TestONNXNotAModel(t *testing.T) {
	dir := t.TempDir()
	junk := []byte("\x08\x07\x12\x04junk\x3a\xff\xff\xff\x0f")
	if err := os.WriteFile(filepath.Join(dir, "junk.onnx"), junk, 0o644); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(junk)
	spec := FacepluginMFNV1
	spec.File = ModelFile{"junk.onnx", hex.EncodeToString(sum[:])}
	if _, err := NewONNXEmbedder(dir, spec, 1); errkind.Of(err) != errkind.ModelCorrupt {
		t.Fatalf("err = %v, want model_corrupt", err)
	}
}

func TestONNXWrongInputSize(t *testing.T) {
	dir := onnxModelsDir(t)
	spec := FacepluginMFNV1
	spec.Input = 100
	_, err := NewONNXEmbedder(dir, spec, 1)
	if errkind.Of(err) != errkind.Invalid || !strings.Contains(err.Error(), "112") {
		t.Fatalf("spec input 100: err = %v, want invalid naming the model's 112", err)
	}
	spec = FacepluginMFNV1
	spec.Dim = 128
	if _, err := NewONNXEmbedder(dir, spec, 1); errkind.Of(err) != errkind.Invalid {
		t.Fatalf("spec dim 128: err = %v, want invalid", err)
	}
	emb, err := NewONNXEmbedder(dir, FacepluginMFNV1, 1)
	if err != nil {
		t.Fatal(err)
	}
	defer emb.Close()
	for _, sz := range []image.Point{{100, 100}, {112, 96}, {224, 224}} {
		chip := gocv.NewMatWithSize(sz.Y, sz.X, gocv.MatTypeCV8UC3)
		_, err := emb.EmbedChip(context.Background(), chip)
		chip.Close()
		if errkind.Of(err) != errkind.Invalid {
			t.Errorf("chip %v: err = %v, want invalid", sz, err)
		}
	}
	gray := gocv.NewMatWithSize(112, 112, gocv.MatTypeCV8UC1)
	defer gray.Close()
	if _, err := emb.EmbedChip(context.Background(), gray); errkind.Of(err) != errkind.Invalid {
		t.Errorf("gray chip: err = %v, want invalid", err)
	}
	emb.Close()
	ok := gocv.NewMatWithSize(112, 112, gocv.MatTypeCV8UC3)
	defer ok.Close()
	if _, err := emb.EmbedChip(context.Background(), ok); errkind.Of(err) != errkind.Closed {
		t.Errorf("after close: err = %v, want closed", err)
	}
}

func TestEngineConfigEmbedder(t *testing.T) {
	cfg := DefaultEngineConfig()
	cfg.Embedder = "arcface-r100"
	var fe *conf.FieldError
	if err := cfg.Validate("engine"); !errors.As(err, &fe) || fe.Field != "engine.embedder" {
		t.Fatalf("unknown embedder: %v", err)
	}
	for _, n := range EmbedderNames() {
		cfg.Embedder = n
		if err := cfg.Validate("engine"); err != nil {
			t.Errorf("%s: %v", n, err)
		}
	}
	if m, ok := EmbedderModel(""); !ok || m != match.DefaultEmbedder {
		t.Errorf("empty name = %v %v, want the default embedder", m, ok)
	}
}

// The ONNX engine end to end on real photos: RecognizeJPEG, RecognizeMat
// and DescribeCrop all give unit-length 512-d descriptors of the right
// model, and the same person is nearer than another person.
func TestONNXEngineSeparatesPeople(t *testing.T) {
	e := mfnEngine(t)
	if e.Model() != FacepluginMFNV1.Model {
		t.Fatalf("model %v", e.Model())
	}
	desc := func(name string) match.Descriptor {
		faces, err := e.RecognizeJPEG(context.Background(), readImage(t, name))
		if err != nil || len(faces) != 1 {
			t.Fatalf("%s: %d faces, %v", name, len(faces), err)
		}
		d := faces[0].Descriptor
		var n float64
		for _, v := range d {
			n += float64(v) * float64(v)
		}
		if len(d) != 512 || math.Abs(n-1) > 1e-4 {
			t.Fatalf("%s: len %d, norm² %g", name, len(d), n)
		}
		return d
	}
	a, a2 := desc("chaeyoung.jpg"), desc("chaeyoung2.jpg")
	j, j2 := desc("jimin.jpg"), desc("jimin2.jpg")
	same1, same2 := match.Distance(a, a2), match.Distance(j, j2)
	for _, other := range []float64{match.Distance(a, j), match.Distance(a, j2), match.Distance(a2, j), match.Distance(a2, j2)} {
		if other <= same1 || other <= same2 {
			t.Errorf("impostor %.3f not above genuine %.3f / %.3f", other, same1, same2)
		}
	}
	// DescribeCrop on a HOG box: the gate's path.
	m, _, err := DecodeMat(readImage(t, "chaeyoung2.jpg"), imagecheck.DefaultLimits())
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	whole, err := e.RecognizeMat(context.Background(), m)
	if err != nil || len(whole) != 1 {
		t.Fatalf("RecognizeMat: %d faces, %v", len(whole), err)
	}
	f, err := e.DescribeCrop(context.Background(), m, whole[0].Box)
	if err != nil || f == nil {
		t.Fatalf("DescribeCrop: %v %v", f, err)
	}
	if len(f.Descriptor) != 512 {
		t.Fatalf("DescribeCrop: %d-d", len(f.Descriptor))
	}
	if d := match.Distance(f.Descriptor, whole[0].Descriptor); d > 0.5 {
		t.Errorf("DescribeCrop vs whole image: %.3f apart (same photo)", d)
	}
	if d := match.Distance(f.Descriptor, a2); d > same1 {
		t.Errorf("DescribeCrop vs JPEG path: %.3f apart, more than the genuine pair %.3f", d, same1)
	}
}

// BenchmarkONNXEmbedChip is one forward pass of faceplugin-mfn-v1 on an
// aligned 112×112 chip (the extra cost over go-face's HOG + landmarks).
func BenchmarkONNXEmbedChip(b *testing.B) { benchmarkEmbedChip(b, FacepluginMFNV1) }

// benchmarkEmbedChip times one embedder's EmbedChip on a random chip.
func benchmarkEmbedChip(b *testing.B, spec ONNXSpec) {
	emb, err := NewONNXEmbedder(onnxModelsDir(b), spec, 1)
	if err != nil {
		b.Fatal(err)
	}
	defer emb.Close()
	chip := gocv.NewMatWithSize(spec.Input, spec.Input, gocv.MatTypeCV8UC3)
	defer chip.Close()
	gocv.RandU(&chip, gocv.NewScalar(0, 0, 0, 0), gocv.NewScalar(255, 255, 255, 0))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := emb.EmbedChip(context.Background(), chip); err != nil {
			b.Fatal(err)
		}
	}
}
