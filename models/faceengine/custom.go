package faceengine

import (
	"errors"
	"fmt"
	"image"
	"math"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/diemdanh/diemdanh/models/conf"
	"github.com/diemdanh/diemdanh/models/errkind"
	"github.com/diemdanh/diemdanh/models/match"
	"gocv.io/x/gocv"
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
	// Profile is the path of the model's distance profile (relative to
	// models_dir, or absolute), written by `edge eval --profile`; the gate
	// and the hub refuse a custom model without one (Profiles).
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

// Sentinels under the errkind errors of a forward pass, so a custom
// model's refusal can name the field at fault.
var (
	errOutputLen = errors.New("wrong output length")
	errNotFinite = errors.New("output not finite")
)

// customError names a custom model's config field and keeps the engine's
// typed error (errkind) underneath: errors.As finds both.
type customError struct {
	field *conf.FieldError
	err   error
}

func (e *customError) Error() string   { return e.field.Error() }
func (e *customError) Unwrap() []error { return []error{e.field, e.err} }

func customErr(field string, err error, format string, args ...any) error {
	fe := &conf.FieldError{Field: field, Reason: fmt.Sprintf(format, args...)}
	if err == nil {
		return fe
	}
	fe.Reason += ": " + err.Error()
	return &customError{field: fe, err: err}
}

// Spec is the ONNXSpec the declaration stands for, with the folder its
// file is in (modelsDir, or the file's own when File is absolute). A
// custom model always aligns on YuNet's five landmarks.
func (c CustomModel) Spec(modelsDir string) (ONNXSpec, string) {
	dir, name := modelsDir, c.File
	if filepath.IsAbs(c.File) {
		dir, name = filepath.Dir(c.File), filepath.Base(c.File)
	}
	mean := c.Mean.Channels()
	pts := c.Align.targets(c.Input[0], c.Input[1])
	return ONNXSpec{
		Model: c.ModelID(), File: ModelFile{Name: name, SHA256: c.SHA256},
		Input: c.Input[0], Height: c.Input[1], Dim: c.Dim, Scale: c.Scale, RGB: c.RGB, Flip: c.Flip,
		Align5: true, NHWC: c.Layout == "NHWC", ChannelMean: &mean, Points5: &pts,
	}, dir
}

// NewCustomEmbedder checks the declared model before OpenCV sees it, then
// loads it like a built-in ONNX embedder. Every refusal names the field
// under prefix (e.g. "engine.custom") and keeps the errkind kind: a missing
// file (file, ModelMissing), another checksum (sha256, ModelCorrupt), a
// file that is not ONNX (file), input or output shapes other than declared
// (input, layout or dim, Invalid; checked from the graph in Go because
// OpenCV aborts the process on some mismatches), a graph OpenCV cannot
// load or run (file: probed inside a C++ try/catch first, since gocv lets
// the importer's exceptions abort the process), and on one blank chip an
// output of the wrong length (dim) or not finite (file).
func NewCustomEmbedder(modelsDir string, c CustomModel, workers int, prefix string) (*ONNXEmbedder, error) {
	if err := c.Validate(prefix); err != nil {
		return nil, err
	}
	spec, dir := c.Spec(modelsDir)
	if err := spec.Validate(); err != nil {
		return nil, customErr(prefix, err, "not a usable embedder")
	}
	raw, err := readONNX(dir, spec.File)
	if errkind.Of(err) == errkind.ModelCorrupt {
		return nil, customErr(prefix+".sha256", err, "%s is not the declared file", c.File)
	} else if err != nil {
		return nil, customErr(prefix+".file", err, "cannot read %s", c.File)
	}
	in, out, err := onnxIOShapes(raw)
	if err != nil {
		return nil, customErr(prefix+".file", errkind.New(errkind.ModelCorrupt, "onnx", err, "reading the graph"), "%s is not an ONNX model", c.File)
	}
	if what, msg := spec.shapeProblem(in, out); what != "" {
		return nil, customErr(prefix+"."+what, errkind.New(errkind.Invalid, "onnx", nil, "%s", msg), "%s disagrees with the declaration", c.File)
	}
	if _, err := probeONNX(raw, spec); err != nil {
		return nil, customErr(prefix+".file", err, "OpenCV 4.6 cannot run %s", c.File)
	}
	e, err := loadONNX(raw, spec, workers)
	if err != nil {
		return nil, customErr(prefix+".file", err, "OpenCV 4.6 cannot load %s", c.File)
	}
	if err := e.blankForward(); err != nil {
		e.Close()
		if errors.Is(err, errOutputLen) {
			return nil, customErr(prefix+".dim", err, "the network's output on a blank chip")
		}
		return nil, customErr(prefix+".file", err, "the network's output on a blank chip")
	}
	return e, nil
}

// size is the input's width and height.
func (s ONNXSpec) size() (int, int) {
	if s.Height != 0 {
		return s.Input, s.Height
	}
	return s.Input, s.Input
}

func (s ONNXSpec) meanScalar() gocv.Scalar {
	if m := s.ChannelMean; m != nil {
		return gocv.NewScalar(m[0], m[1], m[2], 0)
	}
	return gocv.NewScalar(s.Mean, s.Mean, s.Mean, 0)
}

// blob turns a w×h BGR chip into the network's input tensor. OpenCV's
// mean is in the network's channel order (it swaps it with the channels).
func (s ONNXSpec) blob(chip gocv.Mat) (gocv.Mat, error) {
	w, h := s.size()
	b := gocv.BlobFromImage(chip, s.Scale, image.Pt(w, h), s.meanScalar(), s.RGB, false)
	if !s.NHWC {
		return b, nil
	}
	defer b.Close()
	return nchwToNHWC(b, w, h)
}

// nchwToNHWC copies a 1×3×h×w float blob into a new 1×h×w×3 one.
func nchwToNHWC(b gocv.Mat, w, h int) (gocv.Mat, error) {
	src, err := b.DataPtrFloat32()
	if err != nil || len(src) < 3*w*h {
		return gocv.NewMat(), errkind.New(errkind.Unknown, "embed", err, "reading the input blob")
	}
	dst := gocv.NewMatWithSizes([]int{1, h, w, 3}, gocv.MatTypeCV32F)
	dp, err := dst.DataPtrFloat32()
	if err != nil || len(dp) < 3*w*h {
		dst.Close()
		return gocv.NewMat(), errkind.New(errkind.Unknown, "embed", err, "writing the NHWC blob")
	}
	for c := 0; c < 3; c++ {
		for i := 0; i < w*h; i++ {
			dp[i*3+c] = src[c*w*h+i]
		}
	}
	return dst, nil
}

// shapeProblem compares the graph's declared input and output shapes (-1
// or 0: not fixed) with the spec. It returns the custom field at fault
// (input, layout or dim) and why, or "" when they agree.
func (s ONNXSpec) shapeProblem(in, out []int64) (string, string) {
	w, h := s.size()
	if len(in) != 4 {
		return "input", fmt.Sprintf("the graph's input has shape %v, want 4 dimensions", in)
	}
	layout, c, ih, iw, other := "NCHW", in[1], in[2], in[3], in[3]
	if s.NHWC {
		layout, c, ih, iw, other = "NHWC", in[3], in[1], in[2], in[1]
	}
	if c > 0 && c != 3 {
		if other == 3 {
			return "layout", fmt.Sprintf("the graph's input %v is not %s", in, layout)
		}
		return "input", fmt.Sprintf("the graph's input %v has %d channels, want 3", in, c)
	}
	if (iw > 0 && iw != int64(w)) || (ih > 0 && ih != int64(h)) {
		return "input", fmt.Sprintf("the graph's input %v (%s) is %d×%d, declared %d×%d (width×height)", in, layout, iw, ih, w, h)
	}
	n, known := int64(1), len(out) > 0
	for i, d := range out {
		if i == 0 && len(out) > 1 {
			continue // the batch
		}
		known = known && d > 0
		n *= d
	}
	if known && n != int64(s.Dim) {
		return "dim", fmt.Sprintf("the graph's output %v has %d values, declared %d", out, n, s.Dim)
	}
	return "", ""
}
