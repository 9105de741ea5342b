package facereview

import (
	"strings"
	"time"

	"github.com/diemdanh/diemdanh/models/conf"
)

// Bounds of Config.Retention: at least an hour (a morning's faces must
// survive until the teachers look), at most 30 days (crops of people
// nobody has named are not kept for long).
const (
	MinRetention = time.Hour
	MaxRetention = 30 * 24 * time.Hour
)

// Config is the review section of the hub config (hub.yaml `review:`).
type Config struct {
	// Retention: a face, with its crop, is deleted this long after it
	// reached the hub (hub clock), whatever its status.
	Retention time.Duration `yaml:"retention"`
	// PurgeInterval is how often the purge worker runs.
	PurgeInterval time.Duration `yaml:"purge_interval"`
}

// Default returns the production settings: 7 days, purged hourly.
func Default() Config {
	return Config{Retention: 7 * 24 * time.Hour, PurgeInterval: time.Hour}
}

// Validate names the first bad field under prefix ("review").
func (c Config) Validate(prefix string) error {
	switch {
	case c.Retention < MinRetention || c.Retention > MaxRetention:
		return conf.Fieldf(join(prefix, "retention"), "must be %s..%s, got %s", MinRetention, MaxRetention, c.Retention)
	case c.PurgeInterval < time.Second || c.PurgeInterval > 24*time.Hour:
		return conf.Fieldf(join(prefix, "purge_interval"), "must be 1s..24h, got %s", c.PurgeInterval)
	}
	return nil
}

// join makes "prefix.name" ("name" when prefix is empty).
func join(prefix, name string) string {
	prefix = strings.TrimSuffix(prefix, ".")
	if prefix == "" {
		return name
	}
	return prefix + "." + name
}
