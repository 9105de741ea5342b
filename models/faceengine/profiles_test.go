package faceengine

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/diemdanh/diemdanh/models/conf"
	"github.com/diemdanh/diemdanh/models/match"
	"github.com/diemdanh/diemdanh/models/profile"
)

// writeProfile writes a valid profile of model into dir/name: one rule
// set whose genuine p99 1.26 and impostor p01 0.913 give same_max 1.30
// and vote_cap 0.91, values no built-in model has.
func writeProfile(t *testing.T, dir, name string, model match.ModelID) {
	t.Helper()
	sets := []profile.Set{{Name: "school", Rule: true, Images: 60, Identities: 20, GenuinePairs: 60, ImpostorPairs: 1710,
		GenuineMedian: 0.8, GenuineP99: 1.26, ImpostorP01: 0.913, ImpostorMedian: 1.3}}
	f, err := profile.New(model, time.Date(2026, 12, 6, 0, 0, 0, 0, time.UTC), sets,
		func(float64) (float64, float64) { return 0.01, 0.02 }, 0.03, 1.05)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Write(filepath.Join(dir, name)); err != nil {
		t.Fatal(err)
	}
}

// A custom model's distances come from its profile file, found through
// Profiles.Of by model ID like a built-in model's; a custom model without
// a profile, with a missing or broken file, or with another model's
// profile is refused naming engine.custom.profile, and the refusal of a
// missing profile gives the command that makes one.
func TestProfilesOfCustomModel(t *testing.T) {
	dir := t.TempDir()
	c := decodeCustom(t, customSFaceYAML)
	c.ModelsDir = dir
	model := c.Custom.ModelID()
	writeProfile(t, dir, "school-sface.profile.json", model)
	writeProfile(t, dir, "other.profile.json", match.ModelID{Name: model.Name, Version: "1.000000000000"})
	abs := filepath.Join(dir, "school-sface.profile.json")

	for _, tc := range []struct {
		name, profile, want string
	}{
		{"relative to models_dir", "school-sface.profile.json", ""},
		{"absolute", abs, ""},
		{"none", "", "bin/edge eval --profile"},
		{"missing file", "nope.json", "no such file"},
		{"another model's", "other.profile.json", "not of " + model.String()},
		{"not a profile", "../" + filepath.Base(dir), "profile"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cc := c
			custom := *c.Custom
			custom.Profile = tc.profile
			cc.Custom = &custom
			ps, err := cc.Profiles("engine")
			if tc.want != "" {
				var fe *conf.FieldError
				if !errors.As(err, &fe) || fe.Field != "engine.custom.profile" || !strings.Contains(err.Error(), tc.want) {
					t.Fatalf("err %v, want a refusal naming engine.custom.profile with %q", err, tc.want)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got, ok := ps.Of(model)
			want := DistanceProfile{Model: model, SameMax: 1.30, DuplicateMax: 0.91, FeedbackMatchMax: 1.30, VoteCap: 0.91}
			if !ok || got != want {
				t.Fatalf("Of(%v) = %+v %v, want %+v", model, got, ok, want)
			}
			if got, ok := ps.Of(match.DefaultEmbedder); !ok || got != DistanceProfiles[match.DefaultEmbedder.Name] {
				t.Fatalf("the built-in model's profile through the same Profiles: %+v %v", got, ok)
			}
		})
	}
}

// A built-in embedder reads no file and its Profiles are the built-in
// ones; the zero Profiles knows no custom model.
func TestProfilesOfBuiltinModel(t *testing.T) {
	c := DefaultEngineConfig()
	c.ModelsDir = t.TempDir()
	ps, err := c.Profiles("engine")
	if err != nil {
		t.Fatal(err)
	}
	if got, ok := ps.Of(match.DefaultEmbedder); !ok || got != DistanceProfiles[match.DefaultEmbedder.Name] {
		t.Fatalf("Of(default) = %+v %v", got, ok)
	}
	custom := decodeCustom(t, customSFaceYAML).Custom.ModelID()
	if _, ok := (Profiles{}).Of(custom); ok {
		t.Fatalf("the zero Profiles knows custom model %v", custom)
	}
}
