package faceengine

import (
	"fmt"
	"math"
	"regexp"
	"strings"

	"github.com/diemdanh/diemdanh/models/conf"
	"github.com/diemdanh/diemdanh/models/match"
	"gopkg.in/yaml.v3"
)

// CustomEmbedder is the engine.embedder (and the hub's enrol.embedder)
// value that selects the model declared in the config's custom block.
const CustomEmbedder = "custom"

// CustomModel declares an ONNX face embedder in a config file
// (engine.custom on the gate, enrol.custom on the hub; the two must be
// equal). Every field but rgb, flip and profile must be written out: there
// are no defaults, so a school's config says what the model is.
//
// The engine runs it like a built-in ONNX embedder: YuNet detects the face
// and places five landmarks (eyes, nose tip, mouth corners), a similarity
// transform puts them on Align, and the chip is normalised as
// value = (pixel − mean) × scale and fed to the network. The output is
// L2-normalised; distances are real L2.
type CustomModel struct {
	// Name and Version identify the model; the ModelID's version also
	// carries the first 12 hex digits of SHA256 (ModelID).
	Name    string `yaml:"name"`
	Version string `yaml:"version"`
	// File is the .onnx file, relative to engine.models_dir or absolute.
	File string `yaml:"file"`
	// SHA256 is the file's checksum, 64 lowercase hex digits.
	SHA256 string `yaml:"sha256"`
	// Input is the network's input size [width, height] in pixels.
	Input []int `yaml:"input"`
	// Layout is the input tensor's layout: NCHW (1×3×H×W) or NHWC (1×H×W×3).
	Layout string `yaml:"layout"`
	// RGB feeds the channels in RGB order (false: BGR).
	RGB bool `yaml:"rgb"`
	// Mean is subtracted from each channel: one value for all three or
	// three in the network's channel order (the order RGB sets).
	Mean CustomMean `yaml:"mean"`
	// Scale multiplies each value after the mean is subtracted.
	Scale float64 `yaml:"scale"`
	// Align is where the five landmarks go on the input: "arcface112" (the
	// ArcFace template, scaled to the input) or five [x, y] points in input
	// pixels (eye on the image's left, eye on its right, nose tip, mouth
	// corner on the left, on the right).
	Align CustomAlign `yaml:"align"`
	// Dim is the output's length.
	Dim int `yaml:"dim"`
	// Flip also runs the mirrored chip and adds the two outputs before
	// normalising (test-time augmentation; twice the network time).
	Flip bool `yaml:"flip"`
	// Profile is the path of the model's distance profile, written by
	// `edge eval --profile`.
	Profile string `yaml:"profile"`
}

// CustomMean is one mean for all channels or three, one per channel.
type CustomMean []float64

// UnmarshalYAML accepts a number or a list of numbers.
func (m *CustomMean) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.ScalarNode {
		var v float64
		if err := n.Decode(&v); err != nil {
			return fmt.Errorf("mean: %w", err)
		}
		*m = CustomMean{v}
		return nil
	}
	var vs []float64
	if err := n.Decode(&vs); err != nil {
		return fmt.Errorf("mean: %w", err)
	}
	*m = vs
	return nil
}

// Channels returns the mean of each of the three channels, in the
// network's channel order.
func (m CustomMean) Channels() [3]float64 {
	if len(m) == 1 {
		return [3]float64{m[0], m[0], m[0]}
	}
	var c [3]float64
	copy(c[:], m)
	return c
}

// AlignArcFace112 is the align value for the ArcFace 112×112 template.
const AlignArcFace112 = "arcface112"

// CustomAlign is a template name (Template) or five points (Points).
type CustomAlign struct {
	Template string
	Points   [][]float64
}

// UnmarshalYAML accepts a template name or a list of [x, y] points.
func (a *CustomAlign) UnmarshalYAML(n *yaml.Node) error {
	*a = CustomAlign{}
	if n.Kind == yaml.ScalarNode {
		return n.Decode(&a.Template)
	}
	if err := n.Decode(&a.Points); err != nil {
		return fmt.Errorf("align: %w", err)
	}
	return nil
}

// MarshalYAML writes the form it was read in.
func (a CustomAlign) MarshalYAML() (any, error) {
	if a.Template != "" {
		return a.Template, nil
	}
	return a.Points, nil
}

// targets returns the five landmark targets on a w×h input. ArcFace112 is
// scaled by w/112 across and h/112 down.
func (a CustomAlign) targets(w, h int) [5]Point2 {
	var t [5]Point2
	if a.Template == AlignArcFace112 {
		for i, p := range ArcFace112 {
			t[i] = Point2{p.X * float64(w) / 112, p.Y * float64(h) / 112}
		}
		return t
	}
	for i := range t {
		t[i] = Point2{a.Points[i][0], a.Points[i][1]}
	}
	return t
}

var (
	customNameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]*$`)
	sha256RE     = regexp.MustCompile(`^[0-9a-f]{64}$`)
)

// customVersionMax leaves room in a ModelID version (≤32 bytes, the
// event's limit) for "." and 12 hex digits of the checksum.
const customVersionMax = 32 - 13

// Validate names the first bad field under prefix (e.g. "engine.custom").
// It reads no file; NewCustomEmbedder checks the file against the
// declaration.
func (c CustomModel) Validate(prefix string) error {
	if err := c.validateIdentity(prefix); err != nil {
		return err
	}
	if len(c.Input) != 2 || c.Input[0] < 16 || c.Input[0] > 512 || c.Input[1] < 16 || c.Input[1] > 512 {
		return conf.Fieldf(prefix+".input", "must be [width, height], each 16..512, got %v", c.Input)
	}
	if c.Layout != "NCHW" && c.Layout != "NHWC" {
		return conf.Fieldf(prefix+".layout", "must be NCHW or NHWC, got %q", c.Layout)
	}
	if len(c.Mean) != 1 && len(c.Mean) != 3 {
		return conf.Fieldf(prefix+".mean", "must be one number or three (one per channel), got %d", len(c.Mean))
	}
	for _, v := range c.Mean {
		if math.IsNaN(v) || math.IsInf(v, 0) || math.Abs(v) > 1e6 {
			return conf.Fieldf(prefix+".mean", "must be finite, got %v", []float64(c.Mean))
		}
	}
	if !(c.Scale > 0) || math.IsInf(c.Scale, 0) {
		return conf.Fieldf(prefix+".scale", "must be a positive number, got %g", c.Scale)
	}
	if err := c.validateAlign(prefix + ".align"); err != nil {
		return err
	}
	if c.Dim < 2 || c.Dim > match.MaxDescriptorLen {
		return conf.Fieldf(prefix+".dim", "must be 2..%d, got %d", match.MaxDescriptorLen, c.Dim)
	}
	return nil
}

func (c CustomModel) validateIdentity(prefix string) error {
	switch {
	case c.Name == "" || len(c.Name) > 64 || !customNameRE.MatchString(c.Name):
		return conf.Fieldf(prefix+".name", "must be 1..64 characters of a-z 0-9 . _ - (starting with a letter or digit), got %q", c.Name)
	case c.Name == CustomEmbedder || isBuiltinEmbedder(c.Name):
		return conf.Fieldf(prefix+".name", "%q is a built-in embedder's name; give the model its own", c.Name)
	case c.Version == "" || len(c.Version) > customVersionMax || !customNameRE.MatchString(c.Version):
		return conf.Fieldf(prefix+".version", "must be 1..%d characters of a-z 0-9 . _ -, got %q", customVersionMax, c.Version)
	case strings.TrimSpace(c.File) == "":
		return conf.Fieldf(prefix+".file", "is required (the .onnx file, relative to models_dir or absolute)")
	case !sha256RE.MatchString(c.SHA256):
		return conf.Fieldf(prefix+".sha256", "must be the file's SHA-256, 64 lowercase hex digits, got %q", c.SHA256)
	}
	return nil
}

func (c CustomModel) validateAlign(field string) error {
	if c.Align.Template != "" {
		if c.Align.Template != AlignArcFace112 {
			return conf.Fieldf(field, "must be %q or five [x, y] points, got %q", AlignArcFace112, c.Align.Template)
		}
		return nil
	}
	if len(c.Align.Points) != 5 {
		return conf.Fieldf(field, "must be %q or five [x, y] points, got %d points", AlignArcFace112, len(c.Align.Points))
	}
	for i, p := range c.Align.Points {
		if len(p) != 2 || !(p[0] >= 0 && p[0] <= float64(c.Input[0])) || !(p[1] >= 0 && p[1] <= float64(c.Input[1])) {
			return conf.Fieldf(field, "point %d must be [x, y] inside the %d×%d input, got %v", i+1, c.Input[0], c.Input[1], p)
		}
	}
	t := c.Align.targets(c.Input[0], c.Input[1])
	if _, err := SimilarityTransform(t[:], ArcFace112[:]); err != nil {
		return conf.Fieldf(field, "the five points coincide")
	}
	return nil
}

// isBuiltinEmbedder reports whether name is an embedder this build knows.
func isBuiltinEmbedder(name string) bool {
	_, ok := EmbedderModel(name)
	return ok
}

// ModelID is the model's identity in templates, galleries and events: the
// declared name, and the declared version with the first 12 hex digits of
// the file's SHA-256, so two different files never share an ID.
func (c CustomModel) ModelID() match.ModelID {
	sum := c.SHA256
	if len(sum) > 12 {
		sum = sum[:12]
	}
	return match.ModelID{Name: c.Name, Version: c.Version + "." + sum}
}

// validateEmbedder checks c.Embedder and c.Custom under prefix.
func (c EngineConfig) validateEmbedder(prefix string) error {
	if c.Embedder == CustomEmbedder {
		switch {
		case c.Custom == nil:
			return conf.Fieldf(prefix+".custom", "is required with %s.embedder: %s", prefix, CustomEmbedder)
		case c.ONNX != nil:
			return conf.Fieldf(prefix+".embedder", "is %q but an ONNX spec override is set", CustomEmbedder)
		}
		return c.Custom.Validate(prefix + ".custom")
	}
	if c.Custom != nil {
		if err := c.Custom.Validate(prefix + ".custom"); err != nil {
			return err
		}
	}
	if c.ONNX != nil {
		if c.ONNX.Model.Name != c.Embedder {
			return conf.Fieldf(prefix+".embedder", "is %q but the ONNX spec override is %q", c.Embedder, c.ONNX.Model.Name)
		}
	} else if _, ok := EmbedderModel(c.Embedder); !ok {
		return conf.Fieldf(prefix+".embedder", "unknown embedder %q (one of %v or %s)", c.Embedder, EmbedderNames(), CustomEmbedder)
	}
	return nil
}

// Model returns the ModelID the engine configured by c produces: the
// custom model's with embedder: custom, else the named embedder's.
func (c EngineConfig) Model() (match.ModelID, bool) {
	if c.ONNX != nil {
		return c.ONNX.Model, true
	}
	if c.Embedder == CustomEmbedder {
		if c.Custom == nil {
			return match.ModelID{}, false
		}
		return c.Custom.ModelID(), true
	}
	return EmbedderModel(c.Embedder)
}
