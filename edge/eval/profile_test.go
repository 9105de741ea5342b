package eval

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/diemdanh/diemdanh/models/conf"
	"github.com/diemdanh/diemdanh/models/faceengine"
	"github.com/diemdanh/diemdanh/models/match"
	"github.com/diemdanh/diemdanh/models/profile"
)

// schoolPhotos lays out n CASIA-FaceV5 people as a school's photos,
// DIR/<pupil_id>/*.bmp, with 12-digit pupil IDs as folder names.
func schoolPhotos(t *testing.T, n int) string {
	t.Helper()
	src := filepath.Join(testData(t), "asian", "casia-facev5")
	dir := filepath.Join(t.TempDir(), "school-photos")
	for i := 0; i < n; i++ {
		from := filepath.Join(src, fmt.Sprintf("%03d", i))
		to := filepath.Join(dir, fmt.Sprintf("0791234567%02d", i))
		if err := os.MkdirAll(to, 0o755); err != nil {
			t.Fatal(err)
		}
		files, err := filepath.Glob(filepath.Join(from, "*.bmp"))
		if err != nil || len(files) != 5 {
			t.Fatalf("%s: %d photos, %v", from, len(files), err)
		}
		for _, f := range files {
			if err := os.Symlink(f, filepath.Join(to, filepath.Base(f))); err != nil {
				t.Fatal(err)
			}
		}
	}
	return dir
}

// `edge eval --profile OUT --photos DIR` on a school's own photos (8
// pupils, 5 photos each) writes a valid profile of the default embedder
// whose distances are the rule's on the same quantiles `edge eval DIR`
// reports; by construction FAR at the vote cap and FRR at the same-person
// limit are at most 1 %.
func TestProfileOnSchoolPhotos(t *testing.T) {
	dir := schoolPhotos(t, 8)
	out := filepath.Join(t.TempDir(), "sface.profile.json")
	var stdout, stderr bytes.Buffer
	args := []string{"--profile", out, "--photos", dir, "--models", modelsDir(t), "--workers", "2"}
	if err := Main(context.Background(), args, nil, &stdout, &stderr); err != nil {
		t.Fatalf("%v\n%s", err, stderr.String())
	}
	f, err := profile.Read(out)
	if err != nil {
		t.Fatal(err)
	}
	if f.Model != match.DefaultEmbedder || len(f.Sets) != 1 || f.Measured != time.Now().Format(profile.DateLayout) {
		t.Fatalf("profile %+v", f)
	}
	s := f.Sets[0]
	if s.Name != "school-photos" || !s.Rule || s.Images != 40 || s.Identities != 8 || s.GenuinePairs+s.ImpostorPairs != 40*39/2 {
		t.Fatalf("set %+v", s)
	}
	rep, err := Run(context.Background(), Config{Input: dir, Embedder: match.DefaultEmbedder.Name, ModelsDir: modelsDir(t),
		Workers: 2, TargetFAR: 0.01, Label: "dir"}, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	if s.GenuineP99 != rep.Genuine.P99 || s.ImpostorP01 != rep.Impostor.P01 || s.GenuinePairs != rep.Genuine.Pairs {
		t.Fatalf("set %+v, edge eval genuine %+v impostor %+v", s, rep.Genuine, rep.Impostor)
	}
	if f.VoteCap != profile.RoundDown(rep.Impostor.P01, 0.01) || f.SameMax != profile.RoundUp(rep.Genuine.P99, 0.05) {
		t.Fatalf("vote_cap %v same_max %v from p01 %v p99 %v", f.VoteCap, f.SameMax, rep.Impostor.P01, rep.Genuine.P99)
	}
	at := map[string]profile.Point{}
	for _, p := range f.At {
		at[p.Field] = p
	}
	if at["vote_cap"].FAR > 0.01 || at["same_max"].FRR > 0.01 || math.Abs(f.EER-float64(rep.EER)) > 1e-12 {
		t.Fatalf("at %+v, EER %v (edge eval %v)", f.At, f.EER, rep.EER)
	}
	if !strings.Contains(stdout.String(), "vote_cap") || !strings.Contains(stdout.String(), out) {
		t.Fatalf("stdout:\n%s", stdout.String())
	}
}

// Too few photos for the quantiles, a DIR argument, and a custom model
// without --config are refused, naming the flag.
func TestProfileRefusals(t *testing.T) {
	small := schoolPhotos(t, 2) // 20 genuine but 25 impostor pairs
	out := filepath.Join(t.TempDir(), "p.json")
	for _, tc := range []struct {
		name, field string
		args        []string
	}{
		{"too few pupils", "photos", []string{"--profile", out, "--photos", small, "--models", modelsDir(t), "--workers", "1"}},
		{"a DIR argument", "profile", []string{"--profile", out, small}},
		{"custom without --config", "config", []string{"--profile", out, "--embedder", faceengine.CustomEmbedder}},
		{"no built-in sets", "testdata", []string{"--profile", out, "--testdata", "", "--models", modelsDir(t)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := Main(context.Background(), tc.args, nil, &bytes.Buffer{}, &bytes.Buffer{})
			var fe *conf.FieldError
			if !errors.As(err, &fe) || fe.Field != tc.field {
				t.Fatalf("err %v, want a refusal naming %s", err, tc.field)
			}
			if _, err := os.Stat(out); !errors.Is(err, os.ErrNotExist) {
				t.Fatalf("a profile was written: %v", err)
			}
		})
	}
}

// The built-in SFace measured on the built-in rule sets (casia-facev5 and
// kpop) gives its built-in constants (faceengine.DistanceProfiles, derived
// by the same rule on 2026-11-22). The tolerance comes from the data: a
// quantile of n pairs is uncertain by about sqrt(n·p·(1−p)) order
// statistics (the binomial spread of how many pairs fall under it); when
// the order statistics two such spreads either side round to the same
// value, the measured distance must equal the constant exactly, otherwise
// it may differ by one rounding step.
func TestBuiltinSFaceProfileMatchesConstants(t *testing.T) {
	var rule []ProfileSet
	for _, s := range BuiltinSets(testData(t)) {
		if s.Rule {
			rule = append(rule, s)
		}
	}
	ec := faceengine.DefaultEngineConfig()
	ec.ModelsDir, ec.Workers = modelsDir(t), 2
	eng, err := faceengine.NewEngine(ec, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer eng.Close()
	var logw bytes.Buffer
	sets, pairs, err := measureSets(context.Background(), eng, 2, rule, &logw)
	if err != nil {
		t.Fatalf("%v\n%s", err, logw.String())
	}
	sameMax, voteCap, err := profile.Rule(sets)
	if err != nil {
		t.Fatal(err)
	}
	want, ok := faceengine.ProfileOf(eng.Model())
	if !ok || eng.Model() != faceengine.SFace2021DecBQ.Model {
		t.Fatalf("engine model %v has no built-in profile", eng.Model())
	}
	// The rule sets' extreme quantiles: the largest genuine p99, the
	// smallest impostor p01.
	g, i := 0, 0
	for k, s := range sets {
		if s.GenuineP99 > sets[g].GenuineP99 {
			g = k
		}
		if s.ImpostorP01 < sets[i].ImpostorP01 {
			i = k
		}
	}
	gen, imp := pairs[g].Genuine, pairs[i].Impostor
	sameTol := roundingTolerance(gen, 0.99, func(v float64) float64 { return profile.RoundUp(v, profile.SameMaxStep) }, profile.SameMaxStep)
	capTol := roundingTolerance(imp, 0.01, func(v float64) float64 { return profile.RoundDown(v, profile.VoteCapStep) }, profile.VoteCapStep)
	t.Logf("%s\nmeasured same_max %.2f (tolerance %.2f), vote_cap %.2f (tolerance %.2f); constants %.2f and %.2f",
		logw.String(), sameMax, sameTol, voteCap, capTol, want.SameMax, want.VoteCap)
	for _, c := range []struct {
		name           string
		got, want, tol float64
	}{
		{"same_max", sameMax, want.SameMax, sameTol},
		{"feedback_match_max", sameMax, want.FeedbackMatchMax, sameTol},
		{"vote_cap", voteCap, want.VoteCap, capTol},
		{"duplicate_max", voteCap, want.DuplicateMax, capTol},
	} {
		if math.Abs(c.got-c.want) > c.tol+1e-9 {
			t.Errorf("%s: measured %.2f, built-in %.2f, tolerance %.2f", c.name, c.got, c.want, c.tol)
		}
	}
}

// roundingTolerance is 0 when the order statistics two binomial spreads
// either side of sorted's p-quantile round to the same value, else step.
func roundingTolerance(sorted []float64, p float64, round func(float64) float64, step float64) float64 {
	n := len(sorted)
	k := min(n-1, int(p*float64(n)))
	spread := int(math.Ceil(2 * math.Sqrt(float64(n)*p*(1-p))))
	lo, hi := sorted[max(0, k-spread)], sorted[min(n-1, k+spread)]
	if round(lo) == round(hi) {
		return 0
	}
	return step
}
