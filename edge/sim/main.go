package sim

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/diemdanh/diemdanh/models/conf"
	"github.com/diemdanh/diemdanh/models/faceengine"
)

// simFlags are the command line's values besides the options.
type simFlags struct {
	photos, models, embedder *string
	set                      map[string]bool // flags given
}

// Main implements `edge simulate`: one video (--out, --truth,
// --gallery-out), or a suite of school days (--suite DIR).
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	o, so := DefaultOptions(), DefaultSuiteOptions()
	fs := flag.NewFlagSet("simulate", flag.ContinueOnError)
	fs.SetOutput(stderr)
	sf := bindFlags(fs, &o, &so)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("simulate: unexpected argument %q", fs.Arg(0))
	}
	sf.set = map[string]bool{}
	fs.Visit(func(f *flag.Flag) { sf.set[f.Name] = true })
	for _, p := range strings.Split(*sf.photos, ",") {
		if p = strings.TrimSpace(p); p != "" {
			o.Photos = append(o.Photos, p)
		}
	}
	var err error
	if so.Dir != "" {
		err = suiteFromFlags(o, &so, sf)
	} else {
		err = singleFromFlags(o, sf)
	}
	if err != nil {
		return fmt.Errorf("simulate: %w", err)
	}
	ec := faceengine.DefaultEngineConfig()
	ec.ModelsDir = conf.ResolveModelsDir(*sf.models)
	if *sf.embedder != "" {
		ec.Embedder = *sf.embedder
	}
	eng, err := faceengine.NewEngine(ec, nil)
	if err != nil {
		return fmt.Errorf("simulate: %w", err)
	}
	defer eng.Close()
	var sum any
	if so.Dir != "" {
		sum, err = GenerateSuite(ctx, so, eng, stderr)
	} else {
		sum, err = Generate(ctx, o, eng, stderr)
	}
	if err != nil {
		return err
	}
	b, _ := json.Marshal(sum)
	fmt.Fprintln(stdout, string(b))
	return nil
}

func bindFlags(fs *flag.FlagSet, o *Options, so *SuiteOptions) simFlags {
	var sf simFlags
	sf.photos = fs.String("photos", "", "photo folder(s), comma-separated (e.g. ../shared/testdata/faces,../shared/testdata/asian/kpop); with --suite the default is every shared set under ATTENDANCE_TESTDATA")
	fs.StringVar(&o.Out, "out", "", "output video (.avi, MJPG)")
	fs.StringVar(&o.TruthOut, "truth", "", "output ground-truth JSON")
	fs.StringVar(&o.GalleryOut, "gallery-out", "", "output gallery file")
	fs.Int64Var(&o.Seed, "seed", o.Seed, "seed; the same seed gives the same truth and gallery")
	fs.Float64Var(&o.Duration, "duration", 0, "video length in seconds (0: long enough for every passage)")
	fs.IntVar(&o.People, "people", o.People, "enrolled people who walk past (-1: all)")
	fs.IntVar(&o.Visitors, "visitors", o.Visitors, fmt.Sprintf("visitors (not in the gallery) who walk past (-1: all); with --suite, visitor passages over the whole suite (default %d)", so.Visitors))
	fs.StringVar(&o.School, "school", o.School, "school_id written into the gallery")
	fs.IntVar(&o.MinFace, "min-face", o.MinFace, "face width in px when a person appears")
	fs.IntVar(&o.MaxFace, "max-face", o.MaxFace, "face width in px nearest the camera")
	sf.models = fs.String("models", "", "models folder (default: MODELS_DIR or models/)")
	sf.embedder = fs.String("embedder", "", "face embedder for the gallery (default: the engine's default; must match the gate's); people and photos are always selected with dlib-resnet-v1, so every embedder gets the same video and truth")
	fs.StringVar(&so.Dir, "suite", "", "build a suite of school days in this folder (videos, truths, galleries, suite.json) instead of one video")
	fs.IntVar(&so.Days, "days", 0, "with --suite: school days (0: the fewest giving 400 enrolled passages; never more than the photos allow)")
	fs.IntVar(&so.ScutEnrolled, "scut-enrolled", so.ScutEnrolled, "with --suite: SCUT faces enrolled as pupils who never walk")
	fs.StringVar(&so.AnalysisCache, "analysis-cache", "", "with --suite: per-photo analysis cache (default: DIR/analysis.json; - for none)")
	return sf
}

// singleFromFlags checks the flags of one video.
func singleFromFlags(o Options, sf simFlags) error {
	for _, f := range []string{"days", "scut-enrolled", "analysis-cache"} {
		if sf.set[f] {
			return conf.Fieldf(f, "only with --suite")
		}
	}
	return o.Validate()
}

// suiteFromFlags moves the shared flags into so and checks them.
func suiteFromFlags(o Options, so *SuiteOptions, sf simFlags) error {
	for _, f := range []string{"out", "truth", "gallery-out", "duration", "people"} {
		if sf.set[f] {
			return conf.Fieldf(f, "not used with --suite")
		}
	}
	so.Seed, so.School, so.MinFace, so.MaxFace = o.Seed, o.School, o.MinFace, o.MaxFace
	if sf.set["visitors"] {
		so.Visitors = o.Visitors
	}
	so.Photos = o.Photos
	if len(so.Photos) == 0 {
		td, err := conf.TestDataDir()
		if err != nil {
			return conf.Fieldf("photos", "none given and no shared test data: %v", err)
		}
		so.Photos = DefaultSuitePhotos(td)
	}
	return so.Validate()
}
