package app

import (
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"time"

	"github.com/diemdanh/diemdanh/models/conf"
)

// Config is the hub's whole configuration: general settings plus one
// sub-section per component. Each component owns its XxxConfig with
// Default()/Validate(prefix); add a field here (one line) and its default
// in Default() and check in Validate().
type Config struct {
	Log conf.LogConfig `yaml:"log"`
	// DataDir holds the database, backups, keys and the demo's files.
	DataDir string `yaml:"data_dir"`
	// DBPath is the SQLite file; default <data_dir>/hub.db.
	DBPath string     `yaml:"db_path"`
	HTTP   HTTPConfig `yaml:"http"`
	// ShutdownTimeout bounds each shutdown phase.
	ShutdownTimeout time.Duration `yaml:"shutdown_timeout"`

	Components `yaml:",inline"`
}

// HTTPConfig is the web server (API, gallery, web pages).
type HTTPConfig struct {
	// Addr is host:port. Until accounts are configured (hub/auth), the hub
	// forces the host to 127.0.0.1.
	Addr string `yaml:"addr"`
	// PublicURL is how gates reach the hub (gallery announce URL base);
	// default http://<addr>.
	PublicURL string `yaml:"public_url"`
	// TrustedProxies are the reverse proxies (IPs or CIDRs) whose
	// X-Forwarded-For / X-Real-IP headers give the client's address (login
	// rate limits, audit log). Empty (the default): the headers are
	// ignored and the connection's address is the client's.
	TrustedProxies []string `yaml:"trusted_proxies"`
}

// Validate names the first bad field under prefix ("http").
func (h HTTPConfig) Validate(prefix string) error {
	if _, port, err := net.SplitHostPort(h.Addr); err != nil || port == "" {
		return conf.Fieldf(prefix+".addr", "must be host:port, got %q", h.Addr)
	}
	for i, p := range h.TrustedProxies {
		if !validProxy(p) {
			return conf.Fieldf(fmt.Sprintf("%s.trusted_proxies[%d]", prefix, i), "must be an IP or a CIDR, got %q", p)
		}
	}
	return nil
}

func validProxy(p string) bool {
	if strings.Contains(p, "/") {
		_, _, err := net.ParseCIDR(p)
		return err == nil
	}
	return net.ParseIP(p) != nil
}

// Default returns the embedded defaults (what `hub demo` uses).
func Default() Config {
	return Config{
		Log:             conf.LogConfig{Level: "info", Format: "text"},
		DataDir:         "data",
		HTTP:            HTTPConfig{Addr: "127.0.0.1:8080"},
		ShutdownTimeout: 10 * time.Second,
		Components:      defaultComponents(),
	}
}

// Load reads a YAML file over the defaults (strict: unknown keys are
// errors) and applies DIEMDANH_DATA_DIR / DIEMDANH_HTTP_ADDR overrides.
func Load(path string) (Config, error) {
	c := Default()
	if err := conf.LoadYAML(path, &c); err != nil {
		return c, err
	}
	c.ApplyEnv()
	return c, nil
}

// ApplyEnv applies environment overrides.
func (c *Config) ApplyEnv() {
	conf.EnvOverride(&c.DataDir, "DIEMDANH_DATA_DIR")
	conf.EnvOverride(&c.HTTP.Addr, "DIEMDANH_HTTP_ADDR")
	conf.EnvOverride(&c.Log.Level, "DIEMDANH_LOG_LEVEL")
}

// DB returns the database path.
func (c Config) DB() string {
	if c.DBPath != "" {
		return c.DBPath
	}
	return filepath.Join(c.DataDir, "hub.db")
}

// Validate checks every field; the error names the bad one.
func (c Config) Validate() error {
	if err := c.Log.Validate("log"); err != nil {
		return err
	}
	if c.DataDir == "" {
		return conf.Fieldf("data_dir", "is required")
	}
	if err := c.HTTP.Validate("http"); err != nil {
		return err
	}
	if c.ShutdownTimeout <= 0 || c.ShutdownTimeout > 5*time.Minute {
		return conf.Fieldf("shutdown_timeout", "must be in (0, 5m], got %s", c.ShutdownTimeout)
	}
	return c.Components.validate()
}
