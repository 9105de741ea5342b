package pipeline

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/diemdanh/diemdanh/models/faceengine"
	"github.com/diemdanh/diemdanh/models/match"
	"github.com/diemdanh/diemdanh/models/profile"
)

// A custom model's vote cap is its profile file's: Cap and InForce find it
// by the gallery's model ID through VoteConfig.Profiles, as they find a
// built-in model's constant; without the profile nothing is assumed.
func TestVoteCapFromCustomProfile(t *testing.T) {
	dir := t.TempDir()
	custom := &faceengine.CustomModel{Name: "school-arcface", Version: "1", File: "m.onnx",
		SHA256: "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef", Profile: "m.profile.json"}
	model := custom.ModelID()
	sets := []profile.Set{{Name: "school", Rule: true, Images: 60, Identities: 20, GenuinePairs: 60, ImpostorPairs: 1710,
		GenuineMedian: 0.8, GenuineP99: 1.26, ImpostorP01: 0.913, ImpostorMedian: 1.3}}
	f, err := profile.New(model, time.Now(), sets, func(float64) (float64, float64) { return 0, 0 }, 0.03, 1.05)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Write(filepath.Join(dir, custom.Profile)); err != nil {
		t.Fatal(err)
	}
	ec := faceengine.EngineConfig{ModelsDir: dir, Embedder: faceengine.CustomEmbedder, Custom: custom}
	ps, err := ec.Profiles("engine")
	if err != nil {
		t.Fatal(err)
	}
	with, without := DefaultVoteConfig(), DefaultVoteConfig()
	with.Profiles = ps
	builtin := faceengine.DistanceProfiles[match.DefaultEmbedder.Name].VoteCap
	for _, tc := range []struct {
		name               string
		c                  VoteConfig
		model              match.ModelID
		hub, calibrated    float64
		wantCap, wantForce float64
	}{
		{"custom: the profile's cap", with, model, 0, 0, 0.91, 0.91},
		{"custom: the hub's point is capped", with, model, 1.05, 0, 0.91, 0.91},
		{"custom: a tighter calibration wins", with, model, 0, 0.85, 0.91, 0.85},
		{"custom without its profile: no cap", without, model, 0, 0.85, 0, 0.85},
		{"built-in through the same Profiles", with, match.DefaultEmbedder, 1.5, 0, builtin, builtin},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.c.Cap(tc.model); got != tc.wantCap {
				t.Errorf("Cap = %v, want %v", got, tc.wantCap)
			}
			if got := tc.c.InForce(tc.model, tc.hub, tc.calibrated); got != tc.wantForce {
				t.Errorf("InForce = %v, want %v", got, tc.wantForce)
			}
		})
	}
}
