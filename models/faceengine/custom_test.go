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
	"testing"

	"github.com/diemdanh/diemdanh/models/conf"
	"github.com/diemdanh/diemdanh/models/errkind"
	"github.com/diemdanh/diemdanh/models/imagecheck"
	"github.com/diemdanh/diemdanh/models/match"
	"gocv.io/x/gocv"
)

// customSFaceYAML declares the default embedder's file as a custom model,
// with the normalisation and alignment SFace2021DecBQ uses.
const customSFaceYAML = `engine:
  embedder: custom
  custom:
    name: school-sface
    version: "1"
    file: face_recognition_sface_2021dec_bq_fp32.onnx
    sha256: c9507617a7cbd15fb6b785e7580a58f63396cad7ba185118dcf1ca53f7b58c3b
    input: [112, 112]
    layout: NCHW
    rgb: true
    mean: 0
    scale: 1
    align: arcface112
    dim: 128
    flip: true
    profile: school-sface.profile.json
`

type customTestConfig struct {
	Engine EngineConfig `yaml:"engine"`
}

func decodeCustom(t *testing.T, y string) EngineConfig {
	t.Helper()
	c := customTestConfig{Engine: DefaultEngineConfig()}
	if err := conf.DecodeYAML([]byte(y), &c); err != nil {
		t.Fatalf("decode: %v", err)
	}
	return c.Engine
}

func TestCustomConfigDecodes(t *testing.T) {
	c := decodeCustom(t, customSFaceYAML)
	if err := c.Validate("engine"); err != nil {
		t.Fatalf("valid declaration refused: %v", err)
	}
	m := c.Custom
	if m.Name != "school-sface" || m.Input[0] != 112 || m.Input[1] != 112 || m.Layout != "NCHW" || !m.RGB ||
		m.Mean.Channels() != [3]float64{} || m.Scale != 1 || m.Align.Template != AlignArcFace112 || m.Dim != 128 || !m.Flip ||
		m.Profile != "school-sface.profile.json" {
		t.Fatalf("decoded %+v", *m)
	}
	want := match.ModelID{Name: "school-sface", Version: "1.c9507617a7cb"}
	if got, ok := c.Model(); !ok || got != want {
		t.Fatalf("Model() = %v %v, want %v", got, ok, want)
	}
	// Five points and three means decode too.
	pts := strings.Replace(customSFaceYAML, "align: arcface112", "align: [[38, 51], [73, 51], [56, 71], [41, 92], [70, 92]]", 1)
	pts = strings.Replace(pts, "mean: 0", "mean: [127.5, 127, 126]", 1)
	c = decodeCustom(t, pts)
	if err := c.Validate("engine"); err != nil {
		t.Fatalf("five points refused: %v", err)
	}
	if c.Custom.Align.targets(112, 112)[4] != (Point2{70, 92}) || c.Custom.Mean.Channels() != [3]float64{127.5, 127, 126} {
		t.Fatalf("decoded align %v mean %v", c.Custom.Align, c.Custom.Mean)
	}
	// An unknown key inside the block is refused by the strict decoder.
	bad := customTestConfig{Engine: DefaultEngineConfig()}
	if err := conf.DecodeYAML([]byte(strings.Replace(customSFaceYAML, "dim: 128", "dims: 128", 1)), &bad); err == nil || !strings.Contains(err.Error(), "dims") {
		t.Fatalf("unknown key not reported: %v", err)
	}
}

func TestCustomConfigRefusals(t *testing.T) {
	cases := []struct {
		name  string
		edit  func(*EngineConfig)
		field string
	}{
		{"no block", func(c *EngineConfig) { c.Custom = nil }, "engine.custom"},
		{"no name", func(c *EngineConfig) { c.Custom.Name = "" }, "engine.custom.name"},
		{"name with spaces", func(c *EngineConfig) { c.Custom.Name = "My Model" }, "engine.custom.name"},
		{"built-in name", func(c *EngineConfig) { c.Custom.Name = "sface-2021dec-bq" }, "engine.custom.name"},
		{"no version", func(c *EngineConfig) { c.Custom.Version = "" }, "engine.custom.version"},
		{"version too long", func(c *EngineConfig) { c.Custom.Version = strings.Repeat("9", 20) }, "engine.custom.version"},
		{"no file", func(c *EngineConfig) { c.Custom.File = " " }, "engine.custom.file"},
		{"short sha256", func(c *EngineConfig) { c.Custom.SHA256 = "c9507617" }, "engine.custom.sha256"},
		{"upper-case sha256", func(c *EngineConfig) { c.Custom.SHA256 = strings.ToUpper(c.Custom.SHA256) }, "engine.custom.sha256"},
		{"one input side", func(c *EngineConfig) { c.Custom.Input = []int{112} }, "engine.custom.input"},
		{"input too small", func(c *EngineConfig) { c.Custom.Input = []int{112, 8} }, "engine.custom.input"},
		{"layout", func(c *EngineConfig) { c.Custom.Layout = "nchw" }, "engine.custom.layout"},
		{"no mean", func(c *EngineConfig) { c.Custom.Mean = nil }, "engine.custom.mean"},
		{"two means", func(c *EngineConfig) { c.Custom.Mean = CustomMean{1, 2} }, "engine.custom.mean"},
		{"zero scale", func(c *EngineConfig) { c.Custom.Scale = 0 }, "engine.custom.scale"},
		{"no align", func(c *EngineConfig) { c.Custom.Align = CustomAlign{} }, "engine.custom.align"},
		{"unknown template", func(c *EngineConfig) { c.Custom.Align = CustomAlign{Template: "arcface128"} }, "engine.custom.align"},
		{"point outside", func(c *EngineConfig) {
			c.Custom.Align = CustomAlign{Points: [][]float64{{38, 51}, {73, 51}, {56, 71}, {41, 92}, {70, 200}}}
		}, "engine.custom.align"},
		{"points coincide", func(c *EngineConfig) {
			c.Custom.Align = CustomAlign{Points: [][]float64{{5, 5}, {5, 5}, {5, 5}, {5, 5}, {5, 5}}}
		}, "engine.custom.align"},
		{"no dim", func(c *EngineConfig) { c.Custom.Dim = 0 }, "engine.custom.dim"},
		{"dim too large", func(c *EngineConfig) { c.Custom.Dim = match.MaxDescriptorLen + 1 }, "engine.custom.dim"},
		{"bad block with another embedder", func(c *EngineConfig) { c.Embedder = match.DefaultEmbedder.Name; c.Custom.Dim = 0 }, "engine.custom.dim"},
		{"unknown embedder", func(c *EngineConfig) { c.Embedder = "customs" }, "engine.embedder"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := decodeCustom(t, customSFaceYAML)
			tc.edit(&c)
			err := c.Validate("engine")
			var fe *conf.FieldError
			if !errors.As(err, &fe) || fe.Field != tc.field {
				t.Fatalf("got %v, want a FieldError on %s", err, tc.field)
			}
		})
	}
}

func TestCustomModelIDCarriesChecksum(t *testing.T) {
	a := decodeCustom(t, customSFaceYAML).Custom
	b := *a
	b.SHA256 = "87aacdfe57510db2af90c0251df680e8eec88f122ee94712121d09bcaaaf3581"
	if a.ModelID() == b.ModelID() || a.ModelID().Name != b.ModelID().Name {
		t.Fatalf("two files share an ID: %v %v", a.ModelID(), b.ModelID())
	}
	if a.ModelID() == SFace2021DecBQ.Model {
		t.Fatal("custom declaration of the SFace file has the built-in ID")
	}
	if n := len(a.ModelID().Version); n > 32 {
		t.Fatalf("version %d bytes, over the event's limit", n)
	}
}

// customEngine builds an engine from a YAML engine block, models from the
// test models folder.
func customEngine(t *testing.T, y string) *Engine {
	t.Helper()
	onnxModelsDir(t)
	c := decodeCustom(t, y)
	c.ModelsDir, c.Workers = conf.TestModelsDir(), 1
	e, err := NewEngine(c, nil)
	if err != nil {
		t.Fatalf("custom engine: %v", err)
	}
	t.Cleanup(e.Close)
	return e
}

var customPhotos = []string{"bona.jpg", "chaeyeon.jpg", "elkie.jpg", "joy.jpg", "chaeyoung2.jpg"}

func maxAbsDiff(a, b match.Descriptor) float64 {
	if len(a) != len(b) {
		return math.Inf(1)
	}
	var m float64
	for i := range a {
		m = math.Max(m, math.Abs(float64(a[i]-b[i])))
	}
	return m
}

// The default embedder's file declared as a custom model with SFace's own
// normalisation and alignment gives the built-in engine's descriptors on
// real photos, under a model ID of its own.
func TestCustomSFaceMatchesBuiltin(t *testing.T) {
	builtin := yunetEngine(t, 1)
	custom := customEngine(t, customSFaceYAML)
	want := match.ModelID{Name: "school-sface", Version: "1.c9507617a7cb"}
	if custom.Model() != want || !custom.UsesYuNet() {
		t.Fatalf("custom engine model %v, YuNet %v", custom.Model(), custom.UsesYuNet())
	}
	ctx := context.Background()
	for _, name := range customPhotos {
		m, _, err := DecodeMat(readImage(t, name), imagecheck.DefaultLimits())
		if err != nil {
			t.Fatal(err)
		}
		a, errA := builtin.RecognizeMat(ctx, m)
		b, errB := custom.RecognizeMat(ctx, m)
		m.Close()
		if errA != nil || errB != nil || len(a) == 0 || len(a) != len(b) {
			t.Fatalf("%s: built-in %d faces (%v), custom %d (%v)", name, len(a), errA, len(b), errB)
		}
		for i := range a {
			if d := maxAbsDiff(a[i].Descriptor, b[i].Descriptor); d > 1e-6 {
				t.Errorf("%s face %d: descriptors differ by %g", name, i, d)
			}
		}
	}
}

const customFacepluginYAML = `engine:
  embedder: custom
  custom:
    name: school-mfn
    version: 0.0.1
    file: fr_feature.onnx
    sha256: 87aacdfe57510db2af90c0251df680e8eec88f122ee94712121d09bcaaaf3581
    input: [112, 112]
    layout: NCHW
    rgb: false
    mean: [127, 127, 127]
    scale: 0.0078125
    align: arcface112
    dim: 512
`

// faceplugin's file declared as a custom model normalises like the
// built-in spec: on chips aligned from real photos' YuNet landmarks the
// two give the same descriptor, through EmbedChip and through the custom
// model's own alignment (EmbedPoints).
func TestCustomFacepluginMatchesBuiltin(t *testing.T) {
	dir := onnxModelsDir(t)
	builtin, err := NewONNXEmbedder(dir, FacepluginMFNV1, 1)
	if err != nil {
		t.Fatal(err)
	}
	defer builtin.Close()
	c := decodeCustom(t, customFacepluginYAML)
	custom, err := NewCustomEmbedder(dir, *c.Custom, 1, "engine.custom")
	if err != nil {
		t.Fatal(err)
	}
	defer custom.Close()
	if custom.Model() != c.Custom.ModelID() || custom.Dim() != 512 {
		t.Fatalf("custom embedder %v dim %d", custom.Model(), custom.Dim())
	}
	det := yunetEngine(t, 1)
	ctx := context.Background()
	for _, name := range customPhotos {
		m, _, err := DecodeMat(readImage(t, name), imagecheck.DefaultLimits())
		if err != nil {
			t.Fatal(err)
		}
		faces, err := det.RecognizeMat(ctx, m)
		if err != nil || len(faces) == 0 {
			t.Fatalf("%s: %d faces, %v", name, len(faces), err)
		}
		var lm [5]Point2
		for i, p := range faces[0].Landmarks {
			lm[i] = Point2{float64(p.X), float64(p.Y)}
		}
		tr, err := ArcFace5(lm, 112)
		if err != nil {
			t.Fatal(err)
		}
		am := tr.Mat()
		chip := gocv.NewMat()
		gocv.WarpAffineWithParams(m, &chip, am, image.Pt(112, 112), gocv.InterpolationLinear, gocv.BorderReplicate, ColorBlack())
		want, errW := builtin.EmbedChip(ctx, chip)
		got, errG := custom.EmbedChip(ctx, chip)
		viaPoints, errP := custom.EmbedPoints(ctx, m, lm)
		chip.Close()
		am.Close()
		m.Close()
		if errW != nil || errG != nil || errP != nil {
			t.Fatalf("%s: %v %v %v", name, errW, errG, errP)
		}
		if d := maxAbsDiff(want, got); d > 1e-6 {
			t.Errorf("%s: EmbedChip descriptors differ by %g", name, d)
		}
		if d := maxAbsDiff(want, viaPoints); d > 1e-6 {
			t.Errorf("%s: EmbedPoints descriptor differs by %g", name, d)
		}
	}
}

// copyWithByteChanged copies src into dir with one byte in its middle
// changed and returns the copy's path.
func copyWithByteChanged(t *testing.T, src, dir string) string {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)/2] ^= 0x01
	p := filepath.Join(dir, "changed.onnx")
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// Every refusal names the field at fault and keeps the engine's error
// kind; none reaches OpenCV with a graph that disagrees with the
// declaration.
func TestCustomLoadRefusals(t *testing.T) {
	dir := onnxModelsDir(t)
	tmp := t.TempDir()
	changed := copyWithByteChanged(t, filepath.Join(dir, SFace2021DecBQ.File.Name), tmp)
	notONNX := filepath.Join(tmp, "not.onnx")
	junk := []byte(strings.Repeat("not an onnx graph ", 100))
	if err := os.WriteFile(notONNX, junk, 0o600); err != nil {
		t.Fatal(err)
	}
	junkSum := sha256.Sum256(junk)
	cases := []struct {
		name  string
		edit  func(*CustomModel)
		field string
		kind  errkind.Kind
	}{
		{"missing file", func(c *CustomModel) { c.File = "no-such-model.onnx" }, "engine.custom.file", errkind.ModelMissing},
		{"one byte changed", func(c *CustomModel) { c.File = changed }, "engine.custom.sha256", errkind.ModelCorrupt},
		{"not ONNX", func(c *CustomModel) { c.File, c.SHA256 = notONNX, hex.EncodeToString(junkSum[:]) }, "engine.custom.file", errkind.ModelCorrupt},
		{"YuNet as embedder", func(c *CustomModel) {
			c.File, c.SHA256 = YuNet2023MarBQ.Name, YuNet2023MarBQ.SHA256
		}, "engine.custom.input", errkind.Invalid},
		{"wrong input size", func(c *CustomModel) { c.Input = []int{128, 112} }, "engine.custom.input", errkind.Invalid},
		{"wrong layout", func(c *CustomModel) { c.Layout = "NHWC" }, "engine.custom.layout", errkind.Invalid},
		{"wrong dim", func(c *CustomModel) { c.Dim = 512 }, "engine.custom.dim", errkind.Invalid},
		{"output not finite", func(c *CustomModel) { c.Scale = 1e300 }, "engine.custom.file", errkind.Invalid},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := *decodeCustom(t, customSFaceYAML).Custom
			tc.edit(&c)
			e, err := NewCustomEmbedder(dir, c, 1, "engine.custom")
			if err == nil {
				e.Close()
				t.Fatal("accepted")
			}
			var fe *conf.FieldError
			if !errors.As(err, &fe) || fe.Field != tc.field || errkind.Of(err) != tc.kind {
				t.Fatalf("got %v (kind %v), want a FieldError on %s of kind %v", err, errkind.Of(err), tc.field, tc.kind)
			}
		})
	}
}

// An NHWC input tensor holds the NCHW blob's values transposed, and the
// per-channel mean is in the network's channel order.
func TestCustomBlobLayoutAndMean(t *testing.T) {
	chip := gocv.NewMatWithSizeFromScalar(gocv.NewScalar(10, 20, 30, 0), 3, 2, gocv.MatTypeCV8UC3)
	defer chip.Close()
	chip.SetUCharAt(1, 1*3+2, 90) // row 1, column 1, red
	mean := [3]float64{1, 2, 3}
	spec := ONNXSpec{Input: 2, Height: 3, RGB: true, Scale: 0.5, ChannelMean: &mean, Align5: true}
	nchw, err := spec.blob(chip)
	if err != nil {
		t.Fatal(err)
	}
	defer nchw.Close()
	spec.NHWC = true
	nhwc, err := spec.blob(chip)
	if err != nil {
		t.Fatal(err)
	}
	defer nhwc.Close()
	if s := nhwc.Size(); len(s) != 4 || s[0] != 1 || s[1] != 3 || s[2] != 2 || s[3] != 3 {
		t.Fatalf("NHWC size %v", s)
	}
	a, _ := nchw.DataPtrFloat32()
	b, _ := nhwc.DataPtrFloat32()
	rgb := [3]float64{30, 20, 10}
	for c := 0; c < 3; c++ {
		for y := 0; y < 3; y++ {
			for x := 0; x < 2; x++ {
				px := rgb[c]
				if c == 0 && y == 1 && x == 1 {
					px = 90
				}
				want := float32((px - mean[c]) * 0.5)
				if got := a[c*6+y*2+x]; got != want {
					t.Errorf("NCHW c%d y%d x%d = %g, want %g", c, y, x, got, want)
				}
				if got := b[(y*2+x)*3+c]; got != want {
					t.Errorf("NHWC c%d y%d x%d = %g, want %g", c, y, x, got, want)
				}
			}
		}
	}
}

// The commented custom block of configs/edge.example.yaml, uncommented
// under embedder: custom, is a valid declaration.
func TestCustomExampleBlockValidates(t *testing.T) {
	root, err := conf.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(root, "configs", "edge.example.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var block []string
	for _, line := range strings.Split(string(b), "\n") {
		switch {
		case strings.HasPrefix(line, "  # custom:"):
			block = append(block, "  custom:")
		case len(block) > 0 && strings.HasPrefix(line, "  #   "):
			block = append(block, "    "+strings.TrimPrefix(line, "  #   "))
		case len(block) > 0:
			if len(block) < 14 {
				t.Fatalf("example block has %d lines: %q", len(block), block)
			}
			c := decodeCustom(t, "engine:\n  embedder: custom\n"+strings.Join(block, "\n")+"\n")
			if err := c.Validate("engine"); err != nil {
				t.Fatalf("example block refused: %v", err)
			}
			return
		}
	}
	t.Fatal("no commented custom block in configs/edge.example.yaml")
}
