package eval

import (
	"context"
	"fmt"
	"io"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/diemdanh/diemdanh/models/conf"
	"github.com/diemdanh/diemdanh/models/faceengine"
	"github.com/diemdanh/diemdanh/models/profile"
)

// ProfileConfig is `edge eval --profile`'s settings.
type ProfileConfig struct {
	// Out is the profile file written.
	Out string
	// Engine runs the model measured (a built-in embedder or engine.custom).
	Engine  faceengine.EngineConfig
	Workers int
	// Photos is a school's own photos, DIR/<pupil_id>/*.jpg: the one rule
	// set, in place of the built-in sets. "" measures the built-in sets
	// under Testdata.
	Photos   string
	Testdata string
}

// ProfileSet is one photo set to measure.
type ProfileSet struct {
	Name string
	Dir  string
	// Label is how an image's identity is known: dir (its folder), stem
	// (file name without trailing digits) or file (every image its own
	// identity: a set of impostors only).
	Label string
	// Rule: the set's quantiles give the distances (profile.Rule).
	Rule bool
}

// BuiltinSets are the sets under testdata (ATTENDANCE_TESTDATA) that
// `edge eval --profile` measures: the rule sets asian/casia-facev5 and
// asian/kpop, from which the built-in constants were derived
// (faceengine.DistanceProfiles), and, for the error rates over all pairs,
// go-face's photos (faces/images) and asian/scut-fbp5500 (1,981 people
// with one photo each: impostor pairs only).
func BuiltinSets(testdata string) []ProfileSet {
	return []ProfileSet{
		{Name: "casia-facev5", Dir: filepath.Join(testdata, "asian", "casia-facev5"), Label: "dir", Rule: true},
		{Name: "kpop", Dir: filepath.Join(testdata, "asian", "kpop"), Label: "dir", Rule: true},
		{Name: "faces", Dir: filepath.Join(testdata, "faces", "images"), Label: "stem"},
		{Name: "scut-fbp5500", Dir: filepath.Join(testdata, "asian", "scut-fbp5500"), Label: "file"},
	}
}

// Sets are the sets c measures: the school's photos, or the built-in ones.
func (c ProfileConfig) Sets() ([]ProfileSet, error) {
	if c.Photos != "" {
		return []ProfileSet{{Name: filepath.Base(filepath.Clean(c.Photos)), Dir: c.Photos, Label: "dir", Rule: true}}, nil
	}
	if c.Testdata == "" {
		return nil, conf.Fieldf("testdata", "the built-in sets' folder is needed: set ATTENDANCE_TESTDATA or --testdata, or measure the school's own photos with --photos DIR")
	}
	return BuiltinSets(c.Testdata), nil
}

// MainProfile measures c's model, writes the profile to c.Out and prints
// what it wrote.
func MainProfile(ctx context.Context, c ProfileConfig, now func() time.Time, stdout, logw io.Writer) error {
	if err := c.Engine.Validate("engine"); err != nil {
		return fmt.Errorf("config: %w", err)
	}
	sets, err := c.Sets()
	if err != nil {
		return err
	}
	eng, err := faceengine.NewEngine(c.Engine, nil)
	if err != nil {
		return err
	}
	defer eng.Close()
	f, err := MeasureProfile(ctx, eng, c.Workers, sets, now(), logw)
	if err != nil {
		return err
	}
	if err := f.Write(c.Out); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "wrote %s: %s, vote_cap %.2f, duplicate_max %.2f, same_max %.2f, feedback_match_max %.2f, EER %.2f%% at %.3f\n",
		c.Out, f.Model, f.VoteCap, f.DuplicateMax, f.SameMax, f.FeedbackMatchMax, 100*f.EER, f.EERThreshold)
	for _, p := range f.At {
		fmt.Fprintf(stdout, "  %-19s %.2f: FAR %.4g, FRR %.4g\n", p.Field, p.Threshold, p.FAR, p.FRR)
	}
	return nil
}

// MeasureProfile computes each set's genuine and impostor distances with
// eng (pairs within a set only: two sets may hold the same person), the
// profile's distances by profile.Rule, and EER, FAR and FRR over every
// set's pairs together.
func MeasureProfile(ctx context.Context, eng *faceengine.Engine, workers int, sets []ProfileSet, day time.Time, logw io.Writer) (profile.File, error) {
	out, per, err := measureSets(ctx, eng, workers, sets, logw)
	if err != nil {
		return profile.File{}, err
	}
	var all Pairs
	for _, pairs := range per {
		all.Genuine = append(all.Genuine, pairs.Genuine...)
		all.Impostor = append(all.Impostor, pairs.Impostor...)
	}
	sort.Float64s(all.Genuine)
	sort.Float64s(all.Impostor)
	eer, eerT := all.EER()
	rates := func(t float64) (float64, float64) { return all.FAR(t), all.FRR(t) }
	return profile.New(eng.Model(), day, out, rates, eer, eerT)
}

// measureSets measures each set: its summary and its sorted pairs.
func measureSets(ctx context.Context, eng *faceengine.Engine, workers int, sets []ProfileSet, logw io.Writer) ([]profile.Set, []Pairs, error) {
	if workers <= 0 {
		workers = eng.Workers()
	}
	var out []profile.Set
	var per []Pairs
	for _, s := range sets {
		ps, pairs, err := measureSet(ctx, eng, workers, s, logw)
		if err != nil {
			return nil, nil, err
		}
		out, per = append(out, ps), append(per, pairs)
	}
	return out, per, nil
}

// measureSet describes one set's images and summarises its pairs. A rule
// set with too few pairs for its quantiles is refused, naming the set.
func measureSet(ctx context.Context, eng *faceengine.Engine, workers int, s ProfileSet, logw io.Writer) (profile.Set, Pairs, error) {
	label := s.Label
	if label == "file" {
		label = "dir"
	}
	items, err := ListLabelled(s.Dir, label)
	if err != nil {
		return profile.Set{}, Pairs{}, err
	}
	if s.Label == "file" {
		for i := range items {
			items[i].Identity = strings.TrimSuffix(filepath.Base(items[i].Path), filepath.Ext(items[i].Path))
		}
	}
	if len(items) == 0 {
		return profile.Set{}, Pairs{}, conf.Fieldf("photos", "no .jpg/.png/.bmp images under %s (set %s)", s.Dir, s.Name)
	}
	var rep Report
	samples, err := describeWith(ctx, eng, workers, items, &rep, logw)
	if err != nil {
		return profile.Set{}, Pairs{}, err
	}
	samples, dups := dedupe(samples)
	ids := map[string]bool{}
	for _, x := range samples {
		ids[x.Identity] = true
	}
	pairs, _ := Analyse(samples)
	g, i := summarise(pairs.Genuine), summarise(pairs.Impostor)
	ps := profile.Set{Name: s.Name, Rule: s.Rule, Images: rep.Images, Identities: len(ids), FailureToEnrol: rep.FTE.Count,
		DuplicatesLeft: len(dups), GenuinePairs: g.Pairs, ImpostorPairs: i.Pairs,
		GenuineMedian: g.Median, GenuineP99: g.P99, ImpostorP01: i.P01, ImpostorMedian: i.Median}
	fmt.Fprintf(logw, "eval: %s: %d images, %d identities, %d failures to enrol; genuine %d pairs (p99 %.3f), impostor %d pairs (p01 %.3f)\n",
		s.Name, ps.Images, ps.Identities, ps.FailureToEnrol, ps.GenuinePairs, ps.GenuineP99, ps.ImpostorPairs, ps.ImpostorP01)
	if s.Rule && (ps.GenuinePairs < profile.MinGenuinePairs || ps.ImpostorPairs < profile.MinImpostorPairs) {
		return profile.Set{}, Pairs{}, conf.Fieldf("photos", "%s gives %d genuine and %d impostor pairs; the profile needs at least %d and %d "+
			"(pupils with two photos or more, and several pupils)", s.Dir, ps.GenuinePairs, ps.ImpostorPairs, profile.MinGenuinePairs, profile.MinImpostorPairs)
	}
	return ps, pairs, nil
}
