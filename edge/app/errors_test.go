package app

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/diemdanh/diemdanh/edge/capture"
	"github.com/diemdanh/diemdanh/edge/pipeline"
	"github.com/diemdanh/diemdanh/models/conf"
)

func validConfig(t *testing.T) Config {
	c := Default()
	c.SchoolID, c.GateID = "school-1", "gate-1"
	c.DataDir = t.TempDir()
	c.Engine.ModelsDir = conf.TestModelsDir()
	return c
}

// TestConfigValidateNamesField: each bad setting is refused with its name.
func TestConfigValidateNamesField(t *testing.T) {
	cases := []struct {
		field string
		mod   func(*Config)
	}{
		{"school_id", func(c *Config) { c.SchoolID = "" }},
		{"gate_id", func(c *Config) { c.GateID = "Gate 1" }},
		{"direction", func(c *Config) { c.Direction = "sideways" }},
		{"timezone", func(c *Config) { c.Timezone = "Mars/Olympus" }},
		{"heartbeat_interval", func(c *Config) { c.HeartbeatInterval = 0 }},
		{"log.level", func(c *Config) { c.Log.Level = "loud" }},
		{"camera.source", func(c *Config) { c.Camera.Source = " " }},
		{"camera.reconnect_max", func(c *Config) { c.Camera.ReconnectMax = time.Millisecond }},
		{"engine.workers", func(c *Config) { c.Engine.Workers = -1 }},
		{"pipeline.detect_width", func(c *Config) { c.Pipeline.DetectWidth = 10 }},
		{"pipeline.roi", func(c *Config) { c.Pipeline.ROI = []float64{0.5, 0.5, 0.4, 0.9} }},
		{"pipeline.max_faces", func(c *Config) { c.Pipeline.MaxFaces = 0 }},
		{"pipeline.vote.threshold", func(c *Config) { c.Pipeline.Vote.Threshold = -0.1 }},
		{"pipeline.vote.min_margin", func(c *Config) { c.Pipeline.Vote.MinMargin = -0.1 }},
		{"pipeline.vote.m", func(c *Config) { c.Pipeline.Vote.M = 9 }},
		{"pipeline.decision", func(c *Config) { c.Pipeline.Decision = "majority" }},
		{"pipeline.tracker.min_iou", func(c *Config) { c.Pipeline.Tracker.MinIoU = 1.5 }},
		{"pipeline.vote_quality.max_yaw_deg", func(c *Config) { c.Pipeline.VoteQuality.MaxYawDeg = 120 }},
		{"pipeline.cooldown", func(c *Config) { c.Pipeline.Cooldown = -time.Second }},
		{"pipeline.describe_growth", func(c *Config) { c.Pipeline.DescribeGrowth = 3 }},
		{"pipeline.describe_max_gap", func(c *Config) { c.Pipeline.DescribeMaxGap = -1 }},
		{"store.max_outbox", func(c *Config) { c.Store.MaxOutbox = -1 }},
		{"mqtt.broker", func(c *Config) { c.MQTT.Broker = "not a url" }},
		{"mqtt.gate_id", func(c *Config) { c.MQTT.GateID = "other" }},
		{"gallery.sync.hub_url", func(c *Config) { c.Gallery.Sync.HubURL = "ftp://hub" }},
		{"http.listen", func(c *Config) { c.HTTP.Listen = "nope" }},
		{"http.preview.password", func(c *Config) { c.HTTP.Preview.Enabled = true; c.HTTP.Preview.Password = "short" }},
	}
	c := validConfig(t)
	if err := c.Validate(); err != nil {
		t.Fatalf("valid config refused: %v", err)
	}
	for _, tc := range cases {
		t.Run(tc.field, func(t *testing.T) {
			c := validConfig(t)
			tc.mod(&c)
			err := c.Validate()
			var fe *conf.FieldError
			if !errors.As(err, &fe) || fe.Field != tc.field {
				t.Fatalf("got %v, want an error naming %s", err, tc.field)
			}
		})
	}
}

func TestLoadConfigExampleAndUnknownKey(t *testing.T) {
	root, err := conf.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	c, err := LoadConfig(filepath.Join(root, "configs", "edge.example.yaml"))
	if err != nil {
		t.Fatalf("example config: %v", err)
	}
	if err := c.Validate(); err != nil {
		t.Fatalf("example config invalid: %v", err)
	}
	p := filepath.Join(t.TempDir(), "bad.yaml")
	os.WriteFile(p, []byte("school_id: a\npipeline:\n  vote:\n    treshold: 0.5\n"), 0o644)
	if _, err := LoadConfig(p); err == nil || !strings.Contains(err.Error(), "treshold") {
		t.Fatalf("unknown key accepted or not named: %v", err)
	}
	if c.Pipeline.Decision != pipeline.DecisionVotes {
		t.Fatalf("example config decides by %q, want %q", c.Pipeline.Decision, pipeline.DecisionVotes)
	}
	os.WriteFile(p, []byte("school_id: a\npipeline:\n  decision: mean\n"), 0o644)
	if c, err := LoadConfig(p); err != nil || c.Pipeline.Decision != pipeline.DecisionMean {
		t.Fatalf("pipeline.decision: mean loaded as %q (%v)", c.Pipeline.Decision, err)
	}
	os.WriteFile(p, []byte("school_id: a\npipeline:\n  vote:\n    decision: mean\n"), 0o644)
	if _, err := LoadConfig(p); err == nil || !strings.Contains(err.Error(), "decision") {
		t.Fatalf("decision under vote: accepted or not named: %v", err)
	}
}

// TestMainErrors runs the command line on bad input: every case ends with
// a clear message and a non-zero code, never a panic.
func TestMainErrors(t *testing.T) {
	dir := t.TempDir()
	badGallery := filepath.Join(dir, "bad-gallery.json")
	os.WriteFile(badGallery, []byte(`{"format":"diemdanh-gallery/1","model":{"name":"dlib-resnet-v1"},"people":[{"student_id":"12","descriptors":["AAAA"]}]}`), 0o644)
	notVideo := filepath.Join(dir, "notes.txt")
	os.WriteFile(notVideo, []byte("this is not a video"), 0o644)
	cfgWith := func(mod func(*Config)) string {
		c := validConfig(t)
		c.HTTP.Listen = ""
		mod(&c)
		p := filepath.Join(t.TempDir(), "edge.yaml")
		var b bytes.Buffer
		b.WriteString("school_id: school-1\ngate_id: gate-1\ndata_dir: " + c.DataDir + "\nhttp:\n  listen: \"\"\n")
		b.WriteString("engine:\n  models_dir: " + c.Engine.ModelsDir + "\n  workers: 1\n")
		b.WriteString("camera:\n  source: " + c.Camera.Source + "\n")
		b.WriteString("gallery:\n  path: " + c.Gallery.Path + "\n")
		os.WriteFile(p, b.Bytes(), 0o644)
		return p
	}
	cases := []struct {
		name string
		args []string
		env  map[string]string
		code int
		msg  string
	}{
		{"no command", nil, nil, 2, "usage"},
		{"unknown command", []string{"fly"}, nil, 2, "unknown command"},
		{"run without config", []string{"run"}, nil, 2, "--config"},
		{"missing config file", []string{"run", "--config", filepath.Join(dir, "none.yaml")}, nil, 1, "no such file"},
		{"bad gallery file", []string{"run", "--config", cfgWith(func(c *Config) { c.Gallery.Path = badGallery })}, nil, 1, "people[0].student_id"},
		{"missing model", []string{"run", "--config", cfgWith(func(c *Config) { c.Gallery.Path = filepath.Join(dir, "g.json") })},
			map[string]string{"MODELS_DIR": t.TempDir()}, 1, "face engine"},
		{"unreadable video file", []string{"run", "--config", cfgWith(func(c *Config) { c.Camera.Source = notVideo; c.Gallery.Path = filepath.Join(dir, "g.json") })}, nil, 1, "cannot open"},
		{"missing video file", []string{"run", "--config", cfgWith(func(c *Config) {
			c.Camera.Source = filepath.Join(dir, "none.mp4")
			c.Gallery.Path = filepath.Join(dir, "g.json")
		})}, nil, 1, "no such file"},
		{"identify bad gallery", []string{"identify", "--gallery", badGallery, facePhoto(t, "bona.jpg")}, nil, 1, "student_id"},
		{"identify without image", []string{"identify", "--gallery", badGallery}, nil, 2, "IMAGE"},
		{"gallery build without out", []string{"gallery", "build", "--photos", dir}, nil, 2, "--out"},
		{"gallery build empty", []string{"gallery", "build", "--photos", t.TempDir(), "--out", filepath.Join(dir, "o.json")}, nil, 1, "no photo passed"},
		{"bench missing truth", []string{"bench", "--video", notVideo, "--truth", filepath.Join(dir, "none.json"), "--gallery", badGallery}, nil, 1, "truth"},
		{"bench without inputs", []string{"bench", "--video", notVideo}, nil, 2, "--suite"},
		{"bench missing suite", []string{"bench", "--suite", filepath.Join(dir, "none.json")}, nil, 1, "suite"},
		{"bench unknown decision rule", []string{"bench", "--suite", filepath.Join(dir, "none.json"), "--decision", "votes,coin"}, nil, 2, "--decision coin"},
		{"bench learning without a suite", []string{"bench", "--video", notVideo, "--truth", filepath.Join(dir, "none.json"), "--gallery", badGallery, "--learn"}, nil, 2, "--learn needs --suite"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			var out, errb bytes.Buffer
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			code := Main(ctx, tc.args, &out, &errb)
			if code != tc.code || !strings.Contains(errb.String(), tc.msg) {
				t.Fatalf("code %d (want %d), stderr:\n%s\nwant it to mention %q", code, tc.code, errb.String(), tc.msg)
			}
		})
	}
}

// TestCaptureCorruptFrames: a video whose second half is garbage yields the
// good frames and ends cleanly.
func TestCaptureCorruptFrames(t *testing.T) {
	dir := t.TempDir()
	video := filepath.Join(dir, "v.avi")
	writeGateVideo(t, video, 40, 320, 240, []walker{{photo: facePhoto(t, "bona.jpg"), start: 0, n: 40, x: 160, faceStart: 60, faceEnd: 80}})
	b, err := os.ReadFile(video)
	if err != nil {
		t.Fatal(err)
	}
	for i := len(b) / 2; i < len(b)-64; i += 97 {
		b[i] ^= 0x5A
	}
	os.WriteFile(video, b, 0o644)
	c, err := capture.New(capture.Config{Source: video, ReconnectMin: time.Millisecond, ReconnectMax: time.Millisecond, MaxBadFrames: 5}, nil, time.Now)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	err = c.Run(context.Background(), func(f capture.Frame) { n++; f.Mat.Close() })
	if err == nil || err.Error() != "EOF" {
		t.Fatalf("want io.EOF at the end, got %v", err)
	}
	if n == 0 || n > 40 {
		t.Fatalf("read %d frames", n)
	}
	t.Logf("read %d of 40 frames, %d unreadable", n, c.BadFrames())
}
