package eval

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"runtime"
	"strings"
	"time"

	"github.com/diemdanh/diemdanh/models/conf"
	"github.com/diemdanh/diemdanh/models/faceengine"
	"github.com/diemdanh/diemdanh/models/match"
)

// LoadEngine reads the engine section of a gate's config file (--config):
// edge/app passes its config loader, so a custom model is measured exactly
// as the gate declares it.
type LoadEngine func(path string) (faceengine.EngineConfig, error)

// flags are the command line's values that are not Config fields.
type flags struct {
	rgb                       *string
	mean, scale, noseW, noseY *float64
	config                    *string
	profile                   ProfileConfig
}

func newFlagSet(c *Config, stderr io.Writer) (*flag.FlagSet, *flags) {
	fl := flag.NewFlagSet("eval", flag.ContinueOnError)
	fl.SetOutput(stderr)
	fl.StringVar(&c.Embedder, "embedder", match.DefaultEmbedder.Name, "embedder (a descriptors .json is always dlib-resnet-v1): "+strings.Join(faceengine.EmbedderNames(), " | ")+"; a custom model through --config")
	fl.StringVar(&c.ModelsDir, "models", conf.ResolveModelsDir(conf.DefaultModelsDir), "models folder (MODELS_DIR)")
	fl.IntVar(&c.Workers, "workers", 0, "recognizers in parallel (0 = CPUs)")
	fl.BoolVar(&c.JSON, "json", false, "print one JSON object")
	fl.StringVar(&c.Plot, "plot", "", "write a PNG with the DET curve and the distance histograms")
	fl.Float64Var(&c.TargetFAR, "target-far", 0.01, "visitor false-accept rate the calibrated threshold aims at")
	fl.Float64Var(&c.Margin, "margin", 0, "margin over the second-best identity at the operating points")
	fl.StringVar(&c.Label, "label", "auto", "identity of an image: dir (its folder's name), stem (file name without trailing digits), auto")
	fl.IntVar(&c.PerID, "per-id", 0, "use at most N images per identity (0 = all)")
	fl.IntVar(&c.MaxIDs, "max-ids", 0, "use at most N identities (0 = all)")
	f := &flags{
		rgb:    fl.String("onnx-rgb", "", "tuning: override the ONNX spec's channel order (true|false)"),
		mean:   fl.Float64("onnx-mean", math.NaN(), "tuning: override the ONNX spec's pixel mean"),
		scale:  fl.Float64("onnx-scale", math.NaN(), "tuning: override the ONNX spec's pixel scale"),
		noseW:  fl.Float64("onnx-nose-weight", math.NaN(), "tuning: weight of dlib's nose base in the alignment (0 = eyes only)"),
		noseY:  fl.Float64("onnx-nose-y", math.NaN(), "tuning: template y of dlib's nose base"),
		config: fl.String("config", "", "gate config file whose engine section gives the model (engine.embedder: custom with engine.custom)"),
	}
	fl.StringVar(&f.profile.Out, "profile", "", "measure the model's distance profile and write it to this file (no DIR argument)")
	fl.StringVar(&f.profile.Photos, "photos", "", "with --profile: a school's own photos, DIR/<pupil_id>/*.jpg, in place of the built-in sets")
	fl.StringVar(&f.profile.Testdata, "testdata", os.Getenv("ATTENDANCE_TESTDATA"), "with --profile: the built-in sets' folder (ATTENDANCE_TESTDATA)")
	fl.Usage = func() {
		fmt.Fprintln(stderr, "usage: edge eval [flags] DIR|descriptors.json\n  DIR holds DIR/<identity>/*.{jpg,png,bmp} (or, with -label stem, name123.jpg files)\n"+
			"       edge eval --profile OUT.json [--embedder NAME | --config CONFIG.yaml] [--photos DIR]")
		fl.PrintDefaults()
	}
	return fl, f
}

// tune applies the --onnx-* overrides to the embedder's spec.
func (f *flags) tune(c *Config) {
	spec, ok := faceengine.ONNXSpecs[c.Embedder]
	if !ok {
		return
	}
	changed := false
	if *f.rgb != "" {
		spec.RGB, changed = *f.rgb == "true", true
	}
	for _, o := range []struct {
		v   float64
		dst *float64
	}{{*f.mean, &spec.Mean}, {*f.scale, &spec.Scale}, {*f.noseW, &spec.Template.NoseWeight}, {*f.noseY, &spec.Template.NoseBase.Y}} {
		if !math.IsNaN(o.v) {
			*o.dst, changed = o.v, true
		}
	}
	if changed {
		c.ONNX = &spec
	}
}

// Main is `edge eval [flags] PATH` and `edge eval --profile OUT.json`.
// load reads --config (nil: --config is refused).
func Main(ctx context.Context, args []string, load LoadEngine, stdout, stderr io.Writer) error {
	c := Config{}
	fl, f := newFlagSet(&c, stderr)
	if err := fl.Parse(args); err != nil {
		return err
	}
	if err := f.engine(&c, fl, load); err != nil {
		return err
	}
	if f.profile.Out != "" {
		if fl.NArg() != 0 {
			return conf.Fieldf("profile", "takes no DIR argument (the built-in sets, or --photos DIR), got %v", fl.Args())
		}
		f.profile.Engine, f.profile.Workers = c.engineConfig(), c.Workers
		return MainProfile(ctx, f.profile, time.Now, stdout, stderr)
	}
	if fl.NArg() != 1 {
		fl.Usage()
		return conf.Fieldf("input", "want exactly one DIR or .json, got %d arguments", fl.NArg())
	}
	c.Input = fl.Arg(0)
	embedderSet := false
	fl.Visit(func(fv *flag.Flag) { embedderSet = embedderSet || fv.Name == "embedder" })
	if !embedderSet && c.Engine == nil && strings.HasSuffix(strings.ToLower(c.Input), ".json") {
		c.Embedder = match.DlibResNetV1.Name // descriptor files hold dlib descriptors
	}
	f.tune(&c)
	if err := c.Validate(); err != nil {
		return err
	}
	rep, err := Run(ctx, c, stderr)
	if err != nil {
		return err
	}
	if c.Plot != "" {
		if err := WritePlot(c.Plot, rep); err != nil {
			return err
		}
	}
	if c.JSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", " ")
		return enc.Encode(rep)
	}
	rep.WriteText(stdout)
	return nil
}

// engine reads --config's engine section into c.Engine; --embedder then
// may only repeat the section's embedder.
func (f *flags) engine(c *Config, fl *flag.FlagSet, load LoadEngine) error {
	if *f.config == "" {
		if c.Embedder == faceengine.CustomEmbedder {
			return conf.Fieldf("config", "--embedder %s needs --config CONFIG.yaml, whose engine.custom block declares the model", faceengine.CustomEmbedder)
		}
		return nil
	}
	if load == nil {
		return conf.Fieldf("config", "this command cannot read config files")
	}
	ec, err := load(*f.config)
	if err != nil {
		return fmt.Errorf("config %s: %w", *f.config, err)
	}
	embedderSet := false
	fl.Visit(func(fv *flag.Flag) { embedderSet = embedderSet || fv.Name == "embedder" })
	if embedderSet && c.Embedder != ec.Embedder {
		return conf.Fieldf("embedder", "is %q but %s's engine.embedder is %q", c.Embedder, *f.config, ec.Embedder)
	}
	modelsSet := false
	fl.Visit(func(fv *flag.Flag) { modelsSet = modelsSet || fv.Name == "models" })
	if modelsSet {
		ec.ModelsDir = c.ModelsDir
	}
	c.Engine, c.Embedder, c.ModelsDir = &ec, ec.Embedder, ec.ModelsDir
	return nil
}

// engineConfig is the engine c runs: --config's section, or the default
// one with --embedder, --models and the ONNX tuning.
func (c Config) engineConfig() faceengine.EngineConfig {
	ec := faceengine.DefaultEngineConfig()
	if c.Engine != nil {
		ec = *c.Engine
	} else {
		ec.ModelsDir, ec.Embedder, ec.ONNX = c.ModelsDir, c.Embedder, c.ONNX
	}
	ec.Workers = c.Workers
	if ec.Workers == 0 {
		ec.Workers = runtime.NumCPU()
	}
	return ec
}
