package app

import (
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"time"

	"github.com/diemdanh/diemdanh/edge/capture"
	"github.com/diemdanh/diemdanh/edge/gallery"
	"github.com/diemdanh/diemdanh/edge/pipeline"
	"github.com/diemdanh/diemdanh/edge/publish"
	"github.com/diemdanh/diemdanh/edge/store"
	"github.com/diemdanh/diemdanh/models/conf"
	"github.com/diemdanh/diemdanh/models/faceengine"
	"github.com/diemdanh/diemdanh/models/wire"
)

// Config is the gate service's configuration (configs/edge.example.yaml).
type Config struct {
	SchoolID  string `yaml:"school_id"`
	GateID    string `yaml:"gate_id"`
	Direction string `yaml:"direction"` // in or out, for this camera
	Timezone  string `yaml:"timezone"`  // IANA name; "per day" is counted in it
	// DataDir holds the store (outbox, debounce) and the gallery file
	// unless their paths are set.
	DataDir string `yaml:"data_dir"`

	Log      conf.LogConfig          `yaml:"log"`
	Camera   capture.Config          `yaml:"camera"`
	Engine   faceengine.EngineConfig `yaml:"engine"`
	Pipeline pipeline.Config         `yaml:"pipeline"`
	Store    StoreConfig             `yaml:"store"`
	MQTT     publish.Config          `yaml:"mqtt"`
	Gallery  GalleryConfig           `yaml:"gallery"`
	HTTP     HTTPConfig              `yaml:"http"`
	// HeartbeatInterval between heartbeat messages with the gate's metrics.
	HeartbeatInterval time.Duration `yaml:"heartbeat_interval"`
	// ClockOffset shifts the gate's clock by this much (a test aid for
	// the hub's clock-skew handling; 0 on every real gate).
	ClockOffset time.Duration `yaml:"clock_offset"`
}

// StoreConfig places the edge's SQLite store.
type StoreConfig struct {
	Path          string `yaml:"path"` // default DATA_DIR/edge.db
	store.Options `yaml:",inline"`
}

// GalleryConfig places the local gallery file.
type GalleryConfig struct {
	Path string             `yaml:"path"` // default DATA_DIR/gallery.json
	Sync gallery.SyncConfig `yaml:"sync"` // hub syncing; off while sync.hub_url is empty
}

// HTTPConfig is the operations endpoint.
type HTTPConfig struct {
	// Listen is host:port for /healthz and /metrics ("" turns it off).
	Listen  string        `yaml:"listen"`
	Preview PreviewConfig `yaml:"preview"`
}

// PreviewConfig is the installer's MJPEG preview with boxes and names at
// /preview. Off by default; it needs a password when on.
type PreviewConfig struct {
	Enabled  bool    `yaml:"enabled"`
	Username string  `yaml:"username"`
	Password string  `yaml:"password"`
	FPS      float64 `yaml:"fps"`
	Width    int     `yaml:"width"`
}

// Default returns the defaults: camera 0, direction in, strict voting.
func Default() Config {
	mq := publish.Default()
	return Config{
		Direction:         wire.DirectionIn,
		Timezone:          "Asia/Ho_Chi_Minh",
		DataDir:           "/var/lib/diemdanh-edge",
		Log:               conf.LogConfig{Level: "info", Format: "text"},
		Camera:            capture.DefaultConfig(),
		Engine:            faceengine.DefaultEngineConfig(),
		Pipeline:          pipeline.DefaultConfig(),
		Gallery:           GalleryConfig{Sync: gallery.DefaultSyncConfig()},
		Store:             StoreConfig{Options: store.DefaultOptions()},
		MQTT:              mq,
		HTTP:              HTTPConfig{Listen: "127.0.0.1:9110", Preview: PreviewConfig{FPS: 5, Width: 960, Username: "installer"}},
		HeartbeatInterval: 30 * time.Second,
	}
}

// LoadConfig reads a YAML file over the defaults, applies environment
// overrides (MODELS_DIR) and fills derived fields. It does not validate.
func LoadConfig(path string) (Config, error) {
	c := Default()
	if err := conf.LoadYAML(path, &c); err != nil {
		return c, err
	}
	conf.EnvOverride(&c.Engine.ModelsDir, "MODELS_DIR")
	c.fill()
	return c, nil
}

// fill derives the defaults that depend on other fields.
func (c *Config) fill() {
	if c.Store.Path == "" && c.DataDir != "" {
		c.Store.Path = filepath.Join(c.DataDir, "edge.db")
	}
	if c.Gallery.Path == "" && c.DataDir != "" {
		c.Gallery.Path = filepath.Join(c.DataDir, "gallery.json")
	}
	if c.MQTT.SchoolID == "" {
		c.MQTT.SchoolID = c.SchoolID
	}
	if c.MQTT.GateID == "" {
		c.MQTT.GateID = c.GateID
	}
	if c.Gallery.Sync.GateID == "" {
		c.Gallery.Sync.GateID = c.GateID
	}
	c.Pipeline.SchoolID, c.Pipeline.GateID, c.Pipeline.Direction = c.SchoolID, c.GateID, c.Direction
}

// Validate names the first bad field.
func (c *Config) Validate() error {
	c.fill()
	switch {
	case !wire.ValidID(c.SchoolID):
		return conf.Fieldf("school_id", "is required: lowercase letters, digits, - and _ (got %q)", c.SchoolID)
	case !wire.ValidID(c.GateID):
		return conf.Fieldf("gate_id", "is required: lowercase letters, digits, - and _ (got %q)", c.GateID)
	case c.Direction != wire.DirectionIn && c.Direction != wire.DirectionOut:
		return conf.Fieldf("direction", "must be in or out, got %q", c.Direction)
	case c.Store.Path == "":
		return conf.Fieldf("store.path", "is required (or set data_dir)")
	case c.Gallery.Path == "":
		return conf.Fieldf("gallery.path", "is required (or set data_dir)")
	case c.HeartbeatInterval < time.Second:
		return conf.Fieldf("heartbeat_interval", "must be at least 1s")
	case c.ClockOffset < -24*time.Hour || c.ClockOffset > 24*time.Hour:
		return conf.Fieldf("clock_offset", "must be within ±24h, got %s", c.ClockOffset)
	case c.MQTT.SchoolID != c.SchoolID:
		return conf.Fieldf("mqtt.school_id", "must equal school_id or be left out")
	case c.MQTT.GateID != c.GateID:
		return conf.Fieldf("mqtt.gate_id", "must equal gate_id or be left out")
	}
	loc, err := time.LoadLocation(c.Timezone)
	if err != nil || c.Timezone == "" {
		return conf.Fieldf("timezone", "unknown time zone %q", c.Timezone)
	}
	c.Pipeline.Location = loc
	if err := c.Log.Validate("log"); err != nil {
		return err
	}
	if err := c.Camera.Validate("camera"); err != nil {
		return err
	}
	if err := c.Engine.Validate("engine"); err != nil {
		return err
	}
	// A custom model's vote cap is its measured profile's: without one
	// the gate refuses to run (faceengine.EngineConfig.Profiles).
	profiles, err := c.Engine.Profiles("engine")
	if err != nil {
		return err
	}
	c.Pipeline.Vote.Profiles = profiles
	if err := c.Pipeline.Validate("pipeline"); err != nil {
		return err
	}
	if err := c.Store.Options.Validate("store"); err != nil {
		return err
	}
	if err := c.MQTT.Validate(); err != nil {
		return err
	}
	if err := c.Gallery.Sync.Validate(); err != nil {
		return err
	}
	if c.HTTP.Listen != "" {
		if _, _, err := net.SplitHostPort(c.HTTP.Listen); err != nil {
			return conf.Fieldf("http.listen", "must be host:port, got %q", c.HTTP.Listen)
		}
	}
	if p := c.HTTP.Preview; p.Enabled {
		switch {
		case c.HTTP.Listen == "":
			return conf.Fieldf("http.preview.enabled", "needs http.listen")
		case len(p.Password) < 8:
			return conf.Fieldf("http.preview.password", "is required when the preview is on (at least 8 characters)")
		case p.Username == "":
			return conf.Fieldf("http.preview.username", "is required when the preview is on")
		case !(p.FPS > 0 && p.FPS <= 25):
			return conf.Fieldf("http.preview.fps", "must be in (0, 25]")
		case p.Width < 160 || p.Width > 1920:
			return conf.Fieldf("http.preview.width", "must be 160..1920")
		}
	}
	return nil
}

// errUsage marks command-line mistakes (exit code 2).
var errUsage = errors.New("usage")

func usageErr(format string, args ...any) error {
	return fmt.Errorf("%w: %s", errUsage, fmt.Sprintf(format, args...))
}
