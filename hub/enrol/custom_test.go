package enrol

import (
	"context"
	"errors"
	"math"
	"path/filepath"
	"strings"
	"testing"

	"github.com/diemdanh/diemdanh/models/conf"
	"github.com/diemdanh/diemdanh/models/faceengine"
	"github.com/diemdanh/diemdanh/models/match"
)

// customSFace declares the default embedder's file as a school's own
// model, with SFace's normalisation and alignment, and its distance
// profile testdata/school-sface.profile.json (same_max 1.20, vote_cap
// 0.98: the built-in SFace's values).
func customSFace() *faceengine.CustomModel {
	prof, err := filepath.Abs(filepath.Join("testdata", "school-sface.profile.json"))
	if err != nil {
		panic(err)
	}
	return &faceengine.CustomModel{
		Name: "school-sface", Version: "1", File: "face_recognition_sface_2021dec_bq_fp32.onnx",
		SHA256: faceengine.SFace2021DecBQ.File.SHA256, Input: []int{112, 112}, Layout: "NCHW", RGB: true,
		Mean: faceengine.CustomMean{0}, Scale: 1, Align: faceengine.CustomAlign{Template: faceengine.AlignArcFace112},
		Dim: 128, Flip: true, Profile: prof,
	}
}

// customConfig is the enrol section switched to customSFace, its
// distances left to the model's profile.
func customConfig() Config {
	c := DefaultConfig()
	c.Embedder, c.Custom = faceengine.CustomEmbedder, customSFace()
	return c
}

func TestCustomConfigValidate(t *testing.T) {
	if err := customConfig().Validate("enrol"); err != nil {
		t.Fatalf("valid custom section refused: %v", err)
	}
	cases := []struct {
		name  string
		edit  func(*Config)
		field string
	}{
		{"no block", func(c *Config) { c.Custom = nil }, "enrol.custom"},
		{"bad checksum", func(c *Config) { c.Custom.SHA256 = "abc" }, "enrol.custom.sha256"},
		{"no profile", func(c *Config) { c.Custom.Profile = "" }, "enrol.custom.profile"},
		{"no profile, explicit distances", func(c *Config) {
			c.Custom.Profile, c.ConsistencyMax, c.DuplicateMax, c.FeedbackMatchMax = "", 1.2, 0.98, 1.2
		}, "enrol.custom.profile"},
		{"another model's profile", func(c *Config) { c.Custom.SHA256 = strings.Repeat("0", 64) }, "enrol.custom.profile"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := customConfig()
			tc.edit(&c)
			var fe *conf.FieldError
			if err := c.Validate("enrol"); !errors.As(err, &fe) || fe.Field != tc.field {
				t.Fatalf("got %v, want a FieldError on %s", err, tc.field)
			}
		})
	}
	if m, ok := customConfig().EngineConfig().Model(); !ok || m != customSFace().ModelID() {
		t.Fatalf("engine config model %v %v", m, ok)
	}
	got, err := customConfig().ForModel("enrol", customSFace().ModelID())
	if err != nil || got.ConsistencyMax != 1.2 || got.DuplicateMax != 0.98 || got.FeedbackMatchMax != 1.2 {
		t.Fatalf("distances from the profile: %+v, %v", got, err)
	}
}

// Switching the hub to a custom model re-embeds the kept photos at start:
// a custom declaration of the default embedder's file is another model ID,
// so the built-in model's template is rebuilt under the custom ID, with
// the descriptor the built-in engine computes from the same photo. A
// second start has nothing to do.
func TestUpgradeTemplatesToCustomModel(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	photo := readPhotoT(t, "bona.jpg")
	faces, err := engine(t).Recognize(ctx, photo)
	if err != nil || len(faces) != 1 {
		t.Fatalf("built-in engine: %d faces, %v", len(faces), err)
	}
	if _, err := f.tpl.Add(ctx, pupilA, faces[0].Descriptor, engine(t).Model(), match.Quality{}, photo); err != nil {
		t.Fatal(err)
	}
	cfg := customConfig()
	ecfg := cfg.EngineConfig()
	ecfg.ModelsDir, ecfg.Workers = conf.TestModelsDir(), 1
	eng, err := faceengine.NewEngine(ecfg, nil)
	if err != nil {
		t.Fatalf("custom engine: %v", err)
	}
	defer eng.Close()
	svc, err := New(f.db, eng, f.tpl, f.reg, f.al, cfg, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	custom := customSFace().ModelID()
	if f.tpl.Model() != custom || svc.Config().Embedder != faceengine.CustomEmbedder {
		t.Fatalf("template store model %v, service embedder %q", f.tpl.Model(), svc.Config().Embedder)
	}
	rep, err := svc.UpgradeTemplates(ctx)
	if err != nil || rep == nil || rep.Reembedded != 1 || len(rep.Flagged) != 0 {
		t.Fatalf("switch: %+v, %v", rep, err)
	}
	model, byPupil, err := f.tpl.ActiveDescriptors(ctx, "s1")
	if err != nil || model != custom || len(byPupil[pupilA]) != 1 {
		t.Fatalf("served %v %d descriptors, %v", model, len(byPupil[pupilA]), err)
	}
	got, want := byPupil[pupilA][0], faces[0].Descriptor
	for i := range want {
		if math.Abs(float64(got[i]-want[i])) > 1e-6 {
			t.Fatalf("re-embedded descriptor differs at %d: %g vs %g", i, got[i], want[i])
		}
	}
	if n := f.count(t, `SELECT count(*) FROM audit_log WHERE actor = 'system' AND detail LIKE '%model_upgrade%'`); n != 1 {
		t.Fatalf("%d audit entries for the switch, want 1", n)
	}
	if rep, err := svc.UpgradeTemplates(ctx); err != nil || rep != nil {
		t.Fatalf("second start: %+v, %v; want nothing to do", rep, err)
	}
}
