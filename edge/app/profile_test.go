package app

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/diemdanh/diemdanh/models/conf"
	"github.com/diemdanh/diemdanh/models/match"
	"github.com/diemdanh/diemdanh/models/profile"
)

// writeCustomProfile writes a valid profile of model into dir (one rule
// set: vote_cap 0.98, same_max 1.20) and returns its path.
func writeCustomProfile(t *testing.T, dir string, model match.ModelID) string {
	t.Helper()
	sets := []profile.Set{{Name: "school", Rule: true, Images: 60, Identities: 20, GenuinePairs: 60, ImpostorPairs: 1710,
		GenuineMedian: 0.8, GenuineP99: 1.17, ImpostorP01: 0.987, ImpostorMedian: 1.3}}
	f, err := profile.New(model, time.Now(), sets, func(float64) (float64, float64) { return 0.01, 0.01 }, 0.03, 1.05)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "custom.profile.json")
	if err := f.Write(path); err != nil {
		t.Fatal(err)
	}
	return path
}

// customSFaceConfig is a gate config declaring the SFace file as a custom
// model, with profileLine ("" or "    profile: PATH\n") in its block.
func customSFaceConfig(dir, profileLine string) string {
	return "school_id: school-1\ngate_id: gate-1\ndata_dir: " + dir + "\nhttp:\n  listen: \"\"\n" +
		"engine:\n  models_dir: " + conf.TestModelsDir() + "\n  workers: 1\n  embedder: custom\n  custom:\n" +
		"    name: school-sface\n    version: \"1\"\n    file: face_recognition_sface_2021dec_bq_fp32.onnx\n" +
		"    sha256: c9507617a7cbd15fb6b785e7580a58f63396cad7ba185118dcf1ca53f7b58c3b\n" +
		"    input: [112, 112]\n    layout: NCHW\n    rgb: true\n    mean: 0\n    scale: 1\n    align: arcface112\n    dim: 128\n    flip: true\n" +
		profileLine
}

// A gate whose custom model has no profile refuses to run, saying which
// command makes one; that command (`edge eval --profile --config`) on a
// school's photos writes the profile of the custom model's ID, and once
// engine.custom.profile names it the gate's vote cap is the profile's.
func TestCustomModelNeedsMeasuredProfile(t *testing.T) {
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "edge.yaml")
	if err := os.WriteFile(cfgPath, []byte(customSFaceConfig(dir, "")), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	var out, errb bytes.Buffer
	code := Main(ctx, []string{"run", "--config", cfgPath}, &out, &errb)
	if code != 1 || !strings.Contains(errb.String(), "engine.custom.profile: is required") ||
		!strings.Contains(errb.String(), "bin/edge eval --profile PROFILE.json --config CONFIG.yaml") {
		t.Fatalf("code %d, stderr:\n%s\nwant the refusal with the command that makes a profile", code, errb.String())
	}

	photos := casiaAsSchool(t, 8)
	prof := filepath.Join(dir, "school-sface.profile.json")
	out.Reset()
	errb.Reset()
	if code := Main(ctx, []string{"eval", "--profile", prof, "--config", cfgPath, "--photos", photos, "--workers", "1"}, &out, &errb); code != 0 {
		t.Fatalf("eval --profile: code %d\n%s", code, errb.String())
	}
	f, err := profile.Read(prof)
	want := match.ModelID{Name: "school-sface", Version: "1.c9507617a7cb"}
	if err != nil || f.Model != want || f.Sets[0].Identities != 8 {
		t.Fatalf("profile %+v, %v; want one of %v over 8 pupils", f, err, want)
	}

	if err := os.WriteFile(cfgPath, []byte(customSFaceConfig(dir, "    profile: "+prof+"\n")), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := LoadConfig(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatalf("config with its profile refused: %v", err)
	}
	if got := cfg.Pipeline.Vote.Cap(want); got != f.VoteCap {
		t.Fatalf("vote cap %v, want the profile's %v", got, f.VoteCap)
	}
}

// casiaAsSchool lays out n CASIA-FaceV5 people as DIR/<pupil_id>/*.bmp.
func casiaAsSchool(t *testing.T, n int) string {
	t.Helper()
	td, err := conf.TestDataDir()
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "photos")
	for i := 0; i < n; i++ {
		files, err := filepath.Glob(filepath.Join(td, "asian", "casia-facev5", fmt.Sprintf("%03d", i), "*.bmp"))
		if err != nil || len(files) == 0 {
			t.Fatalf("casia %03d: %v %v", i, files, err)
		}
		to := filepath.Join(dir, fmt.Sprintf("0791234567%02d", i))
		if err := os.MkdirAll(to, 0o755); err != nil {
			t.Fatal(err)
		}
		for _, f := range files {
			if err := os.Symlink(f, filepath.Join(to, filepath.Base(f))); err != nil {
				t.Fatal(err)
			}
		}
	}
	return dir
}
