package app

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/diemdanh/diemdanh/models/conf"
	"github.com/diemdanh/diemdanh/models/match"
	"github.com/diemdanh/diemdanh/models/wire"
)

// A gate whose engine section declares a custom model (the SFace file
// under a school's own name) loads it from YAML and refuses, at start, a
// gallery file of another custom model: the same name and version, another
// file's checksum.
func TestGateRefusesGalleryOfAnotherCustomModel(t *testing.T) {
	dir := t.TempDir()
	other := match.NewGallery(1, match.ModelID{Name: "school-sface", Version: "1.87aacdfe5751"})
	d := make(match.Descriptor, 128)
	d[0] = 1
	if err := other.Add("079123456781", d); err != nil {
		t.Fatal(err)
	}
	b, err := wire.DocFromGallery("school-1", other).Encode()
	if err != nil {
		t.Fatal(err)
	}
	galPath := filepath.Join(dir, "gallery.json")
	if err := os.WriteFile(galPath, b, 0o600); err != nil {
		t.Fatal(err)
	}
	y := "school_id: school-1\ngate_id: gate-1\ndata_dir: " + dir + "\nhttp:\n  listen: \"\"\n" +
		"engine:\n  models_dir: " + conf.TestModelsDir() + "\n  workers: 1\n  embedder: custom\n  custom:\n" +
		"    name: school-sface\n    version: \"1\"\n    file: face_recognition_sface_2021dec_bq_fp32.onnx\n" +
		"    sha256: c9507617a7cbd15fb6b785e7580a58f63396cad7ba185118dcf1ca53f7b58c3b\n" +
		"    input: [112, 112]\n    layout: NCHW\n    rgb: true\n    mean: 0\n    scale: 1\n    align: arcface112\n    dim: 128\n    flip: true\n" +
		"    profile: " + writeCustomProfile(t, dir, match.ModelID{Name: "school-sface", Version: "1.c9507617a7cb"}) + "\n" +
		"pipeline:\n  vote:\n    threshold: 0.98\n" +
		"gallery:\n  path: " + galPath + "\n"
	cfgPath := filepath.Join(dir, "edge.yaml")
	if err := os.WriteFile(cfgPath, []byte(y), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var out, errb bytes.Buffer
	code := Main(ctx, []string{"run", "--config", cfgPath}, &out, &errb)
	if code != 1 || !strings.Contains(errb.String(), "school-sface@1.87aacdfe5751") || !strings.Contains(errb.String(), "school-sface@1.c9507617a7cb") {
		t.Fatalf("code %d, stderr:\n%s\nwant a refusal naming both models", code, errb.String())
	}
}
