package gatekit

import (
	"errors"
	"strings"
	"testing"
)

func TestEngineConfigValidate(t *testing.T) {
	cases := []struct {
		name  string
		edit  func(*EngineConfig)
		field string // "" = valid
	}{
		{"defaults", func(*EngineConfig) {}, ""},
		{"no models dir", func(c *EngineConfig) { c.ModelsDir = "" }, "engine.models_dir"},
		{"negative workers", func(c *EngineConfig) { c.Workers = -1 }, "engine.workers"},
		{"too many workers", func(c *EngineConfig) { c.Workers = 65 }, "engine.workers"},
		{"blas threads", func(c *EngineConfig) { c.BLASThreads = -2 }, "engine.blas_threads"},
		{"negative limit", func(c *EngineConfig) { c.Limits.MaxPixels = -1 }, "engine.limits"},
		{"pad", func(c *EngineConfig) { c.TightCropPad = 3 }, "engine.tight_crop_pad"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg := DefaultEngineConfig()
			c.edit(&cfg)
			err := cfg.Validate("engine")
			if c.field == "" {
				if err != nil {
					t.Fatalf("unexpected error %v", err)
				}
				return
			}
			var fe *FieldError
			if !errors.As(err, &fe) || fe.Field != c.field {
				t.Fatalf("got %v, want a FieldError on %s", err, c.field)
			}
		})
	}
}

func TestLogConfigValidate(t *testing.T) {
	if err := (LogConfig{Level: "debug", Format: "json"}).Validate("log"); err != nil {
		t.Fatal(err)
	}
	err := (LogConfig{Level: "loud"}).Validate("log")
	if err == nil || !strings.HasPrefix(err.Error(), "log.level") {
		t.Fatalf("got %v", err)
	}
	err = (LogConfig{Format: "xml"}).Validate("log")
	if err == nil || !strings.HasPrefix(err.Error(), "log.format") {
		t.Fatalf("got %v", err)
	}
}

func TestDecodeYAMLStrict(t *testing.T) {
	type cfg struct {
		Engine EngineConfig `yaml:"engine"`
	}
	c := cfg{Engine: DefaultEngineConfig()}
	if err := DecodeYAML([]byte("engine:\n  workers: 3\n"), &c); err != nil || c.Engine.Workers != 3 || c.Engine.ModelsDir != DefaultModelsDir {
		t.Fatalf("decode: %v %+v", err, c.Engine)
	}
	if err := DecodeYAML([]byte("engine:\n  wokers: 3\n"), &c); err == nil || !strings.Contains(err.Error(), "wokers") {
		t.Fatalf("unknown key not reported: %v", err)
	}
	if err := DecodeYAML([]byte("engine: [1, 2"), &c); err == nil {
		t.Fatal("malformed YAML accepted")
	}
}

func TestEnvOverride(t *testing.T) {
	t.Setenv("A_UNSET_VAR", "")
	t.Setenv("B_SET_VAR", "/x")
	s := "default"
	EnvOverride(&s, "A_UNSET_VAR", "B_SET_VAR")
	if s != "/x" {
		t.Fatalf("got %q", s)
	}
	t.Setenv("MODELS_DIR", "/m")
	if got := ResolveModelsDir("models"); got != "/m" {
		t.Fatalf("MODELS_DIR override: %q", got)
	}
}

func TestGalleryMatchMarginIsPerIdentity(t *testing.T) {
	g := NewGallery(1, DlibResNetV1)
	mk := func(x float32) Descriptor {
		d := make(Descriptor, DescriptorLen)
		d[0] = x
		return d
	}
	// Person A has two descriptors near the probe; B is further away. The
	// margin must be measured to B (the second identity), not A's second descriptor.
	for _, p := range []struct {
		id string
		x  float32
	}{{"A", 0.10}, {"A", 0.12}, {"B", 0.40}, {"C", 0.90}} {
		if err := g.Add(p.id, mk(p.x)); err != nil {
			t.Fatal(err)
		}
	}
	m := g.Match(mk(0))
	if m.PersonID != "A" || m.SecondPersonID != "B" {
		t.Fatalf("got %+v", m)
	}
	if d := m.Margin() - 0.30; d > 1e-6 || d < -1e-6 {
		t.Fatalf("margin %.6f, want 0.30", m.Margin())
	}
	if err := g.Add("D", make(Descriptor, 64)); err == nil {
		t.Fatal("mixed descriptor lengths accepted")
	}
	if m := g.Match(make(Descriptor, 64)); m.PersonID != "" {
		t.Fatal("probe of another length matched")
	}
}
