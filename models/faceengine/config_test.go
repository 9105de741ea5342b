package faceengine

import (
	"errors"
	"strings"
	"testing"

	"github.com/diemdanh/diemdanh/models/conf"
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
			var fe *conf.FieldError
			if !errors.As(err, &fe) || fe.Field != c.field {
				t.Fatalf("got %v, want a FieldError on %s", err, c.field)
			}
		})
	}
}

func TestDecodeYAMLStrict(t *testing.T) {
	type cfg struct {
		Engine EngineConfig `yaml:"engine"`
	}
	c := cfg{Engine: DefaultEngineConfig()}
	if err := conf.DecodeYAML([]byte("engine:\n  workers: 3\n"), &c); err != nil || c.Engine.Workers != 3 || c.Engine.ModelsDir != conf.DefaultModelsDir {
		t.Fatalf("decode: %v %+v", err, c.Engine)
	}
	if err := conf.DecodeYAML([]byte("engine:\n  wokers: 3\n"), &c); err == nil || !strings.Contains(err.Error(), "wokers") {
		t.Fatalf("unknown key not reported: %v", err)
	}
	if err := conf.DecodeYAML([]byte("engine: [1, 2"), &c); err == nil {
		t.Fatal("malformed YAML accepted")
	}
}
