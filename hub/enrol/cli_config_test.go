package enrol

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/diemdanh/diemdanh/hub/facetemplates"
)

// TestEnrolConfigFlag: `hub enrol` takes the model from --embedder, or
// from the hub config's enrol section with --config (never both), and
// names the file when it cannot be read.
func TestEnrolConfigFlag(t *testing.T) {
	fromFile := customConfig()
	load := func(path string) (Config, error) {
		if path != "hub.yaml" {
			return Config{}, fmt.Errorf("open %s: no such file", path)
		}
		return fromFile, nil
	}
	cases := []struct {
		name     string
		args     []string
		load     func(string) (Config, error)
		embedder string // the model's embedder; "" = refused
		usage    bool
	}{
		{"default", nil, load, DefaultConfig().EngineConfig().Embedder, false},
		{"--embedder", []string{"--embedder", "dlib-resnet-v1"}, load, "dlib-resnet-v1", false},
		{"--config", []string{"--config", "hub.yaml"}, load, fromFile.Embedder, false},
		{"--config and --embedder", []string{"--config", "hub.yaml", "--embedder", "dlib-resnet-v1"}, load, "", true},
		{"--config without a loader", []string{"--config", "hub.yaml"}, nil, "", true},
		{"--config unreadable", []string{"--config", "other.yaml"}, load, "", false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			fs := flag.NewFlagSet("enrol", flag.ContinueOnError)
			embedder := fs.String("embedder", DefaultConfig().EngineConfig().Embedder, "")
			config := fs.String("config", "", "")
			if err := fs.Parse(tc.args); err != nil {
				t.Fatal(err)
			}
			c, err := enrolConfig(fs, *config, *embedder, tc.load)
			if tc.embedder == "" {
				if err == nil || errors.Is(err, ErrUsage) != tc.usage {
					t.Fatalf("accepted or wrong kind: %v (usage %v)", err, tc.usage)
				}
				if !tc.usage && !strings.Contains(err.Error(), "other.yaml") {
					t.Fatalf("the error does not name the file: %v", err)
				}
				return
			}
			if err != nil || c.EngineConfig().Embedder != tc.embedder {
				t.Fatalf("embedder %q, %v; want %q", c.EngineConfig().Embedder, err, tc.embedder)
			}
			if tc.name == "--config" && (c.Custom == nil || c.Custom.Name != fromFile.Custom.Name) {
				t.Fatalf("the custom block was not taken from the config: %+v", c.Custom)
			}
		})
	}
}

// TestEnrolCommandCustomModel: `hub enrol --config` with the hub on a
// custom model enrols real photos into templates of that model, not the
// built-in one --embedder would give.
func TestEnrolCommandCustomModel(t *testing.T) {
	f := newFixture(t)
	keyFile := filepath.Join(f.dir, "template.key")
	if err := os.WriteFile(keyFile, []byte(hex.EncodeToString(bytes.Repeat([]byte{9}, facetemplates.KeySize))), 0o600); err != nil {
		t.Fatal(err)
	}
	photos := filepath.Join(f.dir, "photos")
	if err := os.Mkdir(photos, 0o700); err != nil {
		t.Fatal(err)
	}
	const id = "000000000777"
	if _, err := f.db.W.Exec(`INSERT INTO pupils(id, school_id, class_id, full_name, date_of_birth) VALUES (?, 's1', 'c1', 'Học sinh', '2017-01-01')`, id); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(photos, id+".jpg"), readPhotoT(t, "bona.jpg"), 0o600); err != nil {
		t.Fatal(err)
	}
	roster := filepath.Join(f.dir, "roster.csv")
	if err := os.WriteFile(roster, []byte("personal_id,consent_ref,consent_guardian,consent_pupil\n"+id+",DK-7,Phụ huynh,yes\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := customConfig()
	load := func(string) (Config, error) { return cfg, nil }
	var out, errb bytes.Buffer
	err := EnrolCommand(load)(context.Background(), []string{"--config", "hub.yaml", "--roster", roster, "--photos", photos,
		"--db", f.db.Path, "--key-file", keyFile, "--models", os.Getenv("MODELS_DIR"), "--workers", "1",
		"--report", filepath.Join(f.dir, "r.csv")}, &out, &errb)
	if err != nil {
		t.Fatalf("hub enrol --config: %v\n%s", err, errb.String())
	}
	want := cfg.Custom.ModelID().String()
	if n := f.count(t, `SELECT count(*) FROM face_templates WHERE pupil_id = ? AND model = ?`, id, want); n != 1 {
		t.Fatalf("%d templates of %s for the pupil; out: %s", n, want, out.String())
	}
}
