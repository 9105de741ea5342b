package profile

import (
	"bytes"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/diemdanh/diemdanh/models/conf"
	"github.com/diemdanh/diemdanh/models/match"
)

var update = flag.Bool("update", false, "rewrite testdata/valid.json")

// goldenSets are two rule sets shaped like the built-in measurement of
// SFace (casia and kpop, their quantiles as faceengine.DistanceProfiles
// quotes them) and one set measured for its impostors only.
func goldenSets() []Set {
	return []Set{
		{Name: "casia-facev5", Rule: true, Images: 200, Identities: 40, GenuinePairs: 400, ImpostorPairs: 19500,
			GenuineMedian: 0.651, GenuineP99: 1.157, ImpostorP01: 1.141, ImpostorMedian: 1.41},
		{Name: "kpop", Rule: true, Images: 391, Identities: 15, FailureToEnrol: 2, DuplicatesLeft: 3, GenuinePairs: 5600, ImpostorPairs: 69500,
			GenuineMedian: 0.934, GenuineP99: 1.175, ImpostorP01: 0.987, ImpostorMedian: 1.33},
		{Name: "scut-fbp5500", Images: 1981, Identities: 1981, ImpostorPairs: 1961190,
			ImpostorP01: 1.02, ImpostorMedian: 1.38},
	}
}

// linearRates is FAR and FRR of distances spread evenly over [0.5, 1.5]
// (genuine) and [0.9, 1.9] (impostor): enough to fill At.
func linearRates(t float64) (float64, float64) {
	clamp := func(v float64) float64 { return min(1, max(0, v)) }
	return clamp(t - 0.9), clamp(1.5 - t)
}

func goldenFile(t *testing.T) File {
	t.Helper()
	day := time.Date(2026, 12, 6, 9, 0, 0, 0, time.UTC)
	f, err := New(match.ModelID{Name: "school-arcface", Version: "r100.0123456789ab"}, day, goldenSets(), linearRates, 0.052, 1.08)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// The rule on the built-in quantiles of SFace gives its built-in
// constants (1.20 and 0.98); rounding keeps values already on the grid.
func TestRule(t *testing.T) {
	for _, tc := range []struct {
		name          string
		sets          []Set
		same, voteCap float64
	}{
		{"sface's casia and kpop", goldenSets(), 1.20, 0.98},
		{"on the grid", []Set{{Rule: true, GenuineP99: 1.15, ImpostorP01: 0.95}}, 1.15, 0.95},
		{"just over the grid", []Set{{Rule: true, GenuineP99: 1.1501, ImpostorP01: 0.9599}}, 1.20, 0.95},
		{"faceplugin's kpop", []Set{{Rule: true, GenuineP99: 1.221, ImpostorP01: 1.2}, {Rule: true, GenuineP99: 1.293, ImpostorP01: 0.955}}, 1.30, 0.95},
		{"sets that are not rule sets do not count", append(goldenSets(), Set{GenuineP99: 1.9, ImpostorP01: 0.2}), 1.20, 0.98},
	} {
		t.Run(tc.name, func(t *testing.T) {
			same, voteCap, err := Rule(tc.sets)
			if err != nil || same != tc.same || voteCap != tc.voteCap {
				t.Fatalf("Rule = %v, %v, %v; want %v, %v", same, voteCap, err, tc.same, tc.voteCap)
			}
		})
	}
	if _, _, err := Rule([]Set{{GenuineP99: 1, ImpostorP01: 1}}); err == nil || !strings.HasPrefix(err.Error(), "sets:") {
		t.Fatalf("no rule set: %v, want a refusal naming sets", err)
	}
}

// A profile written and read back is the same; the file matches the
// golden testdata/valid.json (go test -update rewrites it).
func TestRoundTrip(t *testing.T) {
	f := goldenFile(t)
	b, err := f.Encode()
	if err != nil {
		t.Fatal(err)
	}
	golden := filepath.Join("testdata", "valid.json")
	if *update {
		if err := os.WriteFile(golden, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(b, want) {
		t.Fatalf("encoded profile differs from %s:\n%s", golden, b)
	}
	path := filepath.Join(t.TempDir(), "p.json")
	if err := f.Write(path); err != nil {
		t.Fatal(err)
	}
	got, err := Read(path)
	if err != nil {
		t.Fatal(err)
	}
	again, _ := got.Encode()
	if !bytes.Equal(again, b) {
		t.Fatalf("read back:\n%s\nwant:\n%s", again, b)
	}
	if got.VoteCap != 0.98 || got.DuplicateMax != 0.98 || got.SameMax != 1.2 || got.FeedbackMatchMax != 1.2 || got.Measured != "2026-12-06" {
		t.Fatalf("distances %+v", got)
	}
	if far, frr := linearRates(0.98); got.At[3] != (Point{Field: "vote_cap", Threshold: 0.98, FAR: far, FRR: frr}) {
		t.Fatalf("at vote_cap: %+v", got.At[3])
	}
}

// Every file under testdata/refused is refused, naming the field its
// name gives (before "--" or ".json"); "json--" files are not JSON
// of the format at all (unknown key, wrong type, trailing data, cut short).
func TestRefusedFiles(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "refused", "*.json"))
	if err != nil || len(files) < 10 {
		t.Fatalf("refused goldens: %v %v", files, err)
	}
	for _, path := range files {
		name := strings.TrimSuffix(filepath.Base(path), ".json")
		t.Run(name, func(t *testing.T) {
			_, err := Read(path)
			if err == nil {
				t.Fatal("accepted")
			}
			want := strings.SplitN(name, "--", 2)[0]
			var fe *conf.FieldError
			if strings.HasPrefix(want, "json") {
				if errors.As(err, &fe) {
					t.Fatalf("want a JSON decoding error, got %v", err)
				}
				return
			}
			if !errors.As(err, &fe) || fe.Field != want {
				t.Fatalf("err %v, want one naming %q", err, want)
			}
		})
	}
}
