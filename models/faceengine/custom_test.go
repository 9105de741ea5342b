package faceengine

import (
	"errors"
	"strings"
	"testing"

	"github.com/diemdanh/diemdanh/models/conf"
	"github.com/diemdanh/diemdanh/models/match"
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
