package app

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/diemdanh/diemdanh/models/conf"
)

func testConfig(t *testing.T) Config {
	t.Helper()
	c := Default()
	c.DataDir = t.TempDir()
	c.HTTP.Addr = "127.0.0.1:0"
	c.Broker.Listen = "127.0.0.1:0"
	c.Log.Level = "warn"
	return c
}

func TestConfigValidate(t *testing.T) {
	cases := []struct {
		name  string
		edit  func(*Config)
		field string // "" = valid
	}{
		{"defaults", func(*Config) {}, ""},
		{"log level", func(c *Config) { c.Log.Level = "loud" }, "log.level"},
		{"no data dir", func(c *Config) { c.DataDir = "" }, "data_dir"},
		{"http addr", func(c *Config) { c.HTTP.Addr = "8080" }, "http.addr"},
		{"shutdown timeout", func(c *Config) { c.ShutdownTimeout = 0 }, "shutdown_timeout"},
		{"attendance tick", func(c *Config) { c.Attendance.Tick = time.Millisecond }, "attendance.tick"},
		{"attendance cutoff", func(c *Config) { c.Attendance.DefaultCutoff = "9h" }, "attendance.default_cutoff"},
		{"gallery interval", func(c *Config) { c.Gallery.CheckInterval = 0 }, "gallery.check_interval"},
		{"gallery threshold", func(c *Config) { c.Gallery.Threshold = 7 }, "gallery.threshold"},
		{"backup keep", func(c *Config) { c.Backup.Keep = 0 }, "backup.keep"},
		{"backup at", func(c *Config) { c.Backup.At = "2:30am" }, "backup.at"},
		{"backup disabled ignores keep", func(c *Config) { c.Backup.Enabled = false; c.Backup.Keep = 0 }, ""},
		{"review retention too short", func(c *Config) { c.Review.Retention = time.Minute }, "review.retention"},
		{"review retention too long", func(c *Config) { c.Review.Retention = 31 * 24 * time.Hour }, "review.retention"},
		{"review purge interval", func(c *Config) { c.Review.PurgeInterval = 0 }, "review.purge_interval"},
		{"automatic templates drift", func(c *Config) { c.Automatic.DriftMax = -1 }, "automatic_templates.drift_max"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := Default()
			tc.edit(&c)
			err := c.Validate()
			if tc.field == "" {
				if err != nil {
					t.Fatalf("want valid, got %v", err)
				}
				return
			}
			var fe *conf.FieldError
			if !errors.As(err, &fe) || fe.Field != tc.field {
				t.Fatalf("want an error naming %q, got %v", tc.field, err)
			}
		})
	}
}

func TestExampleConfigLoads(t *testing.T) {
	root, err := conf.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	c, err := Load(filepath.Join(root, "configs", "hub.example.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	// Unknown keys are refused (strict YAML).
	if err := conf.DecodeYAML([]byte("htttp:\n  addr: x\n"), &c); err == nil {
		t.Fatal("a misspelt key was accepted")
	}
}

func TestOpenAPICoversEveryRoute(t *testing.T) {
	a, err := New(context.Background(), testConfig(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	missing, err := a.API.MissingFromSpec()
	if err != nil {
		t.Fatal(err)
	}
	if len(missing) > 0 {
		t.Fatalf("routes missing from /api/v1/openapi.json (add them with API.AddPaths):\n  %s", strings.Join(missing, "\n  "))
	}
	n := 0
	for _, r := range a.API.Engine.Routes() {
		if strings.HasPrefix(r.Path, "/api/v1/") {
			n++
		}
	}
	if n < 30 {
		t.Fatalf("only %d API routes registered", n)
	}
}

func TestRunServesAndShutsDownInOrder(t *testing.T) {
	a, err := New(context.Background(), testConfig(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	var order []string
	for _, p := range []Phase{PhaseCloseBroker, PhaseFlush, PhaseDrain, PhaseStopAccepting} {
		a.OnStop(p, phaseNames[p], func(context.Context) error { order = append(order, phaseNames[p]); return nil })
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	var spec map[string]any
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := http.Get(a.BaseURL() + "/api/v1/openapi.json")
		if err == nil {
			err = json.NewDecoder(resp.Body).Decode(&spec)
			resp.Body.Close()
			if err == nil {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("hub not serving: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if spec["openapi"] != "3.0.3" {
		t.Fatalf("openapi document: %v", spec["openapi"])
	}
	for _, p := range []string{"/healthz", "/metrics"} {
		resp, err := http.Get(a.BaseURL() + p)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("%s: %v %v", p, err, resp)
		}
		resp.Body.Close()
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("run: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("shutdown hung")
	}
	want := []string{"stop accepting", "drain", "flush", "close broker"}
	if strings.Join(order, ",") != strings.Join(want, ",") {
		t.Fatalf("shutdown order %v, want %v", order, want)
	}
	if _, err := http.Get(a.BaseURL() + "/healthz"); err == nil {
		t.Fatal("still serving after shutdown")
	}
	if err := a.DB.W.Ping(); err == nil {
		t.Fatal("database still open after Run returned")
	}
}
