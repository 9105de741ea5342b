// Package broker connects the hub to its gates over MQTT, in one of two
// modes:
//
//   - embedded (default): a mochi-mqtt v2 broker runs inside the hub. Gates
//     log in with their own username and password (bcrypt hashes in the
//     gates table), an ACL lets a gate publish only to its own topics and
//     read only its school's gallery topic, and repeated failed logins are
//     locked out per username and per remote address. Gate events are
//     ingested inside the broker's publish hook and the PUBACK is written
//     only after the event's transaction committed (see Embedded).
//   - external: a paho client subscribes to an existing broker (mosquitto,
//     EMQX) with QoS 1, a persistent session and manual acknowledgement, so
//     an event that was not committed is redelivered. deploy/mosquitto holds
//     a matching mosquitto configuration; MosquittoACL generates its ACL.
//
// Both modes implement Announcer: the retained gallery announcement.
package broker

import (
	"context"
	"strings"
	"time"

	"github.com/diemdanh/diemdanh/models/conf"
	"github.com/diemdanh/diemdanh/models/wire"
)

// Modes.
const (
	ModeEmbedded = "embedded"
	ModeExternal = "external"
)

// Config is the broker section of the hub configuration.
type Config struct {
	Mode string `yaml:"mode"` // embedded (default) or external
	// Embedded broker.
	Listen         string        `yaml:"listen"`           // TCP address, e.g. ":1883"
	TLSCert        string        `yaml:"tls_cert"`         // PEM file; with tls_key, the listener speaks TLS
	TLSKey         string        `yaml:"tls_key"`          // PEM file
	MaxPacketBytes int           `yaml:"max_packet_bytes"` // larger packets disconnect the client
	Lockout        LockoutConfig `yaml:"lockout"`
	// SessionCheck is how often connected gates are checked against the
	// gates table: a rotated password or a deactivated gate is
	// disconnected within this interval (at most 1s).
	SessionCheck time.Duration `yaml:"session_check"`
	// External broker.
	External ExternalConfig `yaml:"external"`
}

// LockoutConfig rate-limits failed logins, per username and per remote IP.
type LockoutConfig struct {
	// FreeFailures is how many failures in a row are allowed before lockout.
	FreeFailures int `yaml:"free_failures"`
	// Base is the first lockout; each further failure doubles it up to Max.
	Base time.Duration `yaml:"base"`
	Max  time.Duration `yaml:"max"`
}

// ExternalConfig is how the hub reaches an external broker.
type ExternalConfig struct {
	URL      string `yaml:"url"`       // tcp://host:1883 or ssl://host:8883
	Username string `yaml:"username"`  // the hub's service user
	Password string `yaml:"password"`  // or env DIEMDANH_BROKER_PASSWORD
	ClientID string `yaml:"client_id"` // fixed: the persistent session's name
	CAFile   string `yaml:"ca_file"`   // PEM CA for ssl://
}

// Default returns the embedded defaults.
func Default() Config {
	return Config{Mode: ModeEmbedded, Listen: ":1883", MaxPacketBytes: 1 << 20, SessionCheck: 250 * time.Millisecond,
		Lockout:  LockoutConfig{FreeFailures: 3, Base: 2 * time.Second, Max: 10 * time.Minute},
		External: ExternalConfig{ClientID: "diemdanh-hub"}}
}

// Validate names the first bad field under prefix (e.g. "broker.").
func (c Config) Validate(prefix string) error {
	switch {
	case c.Mode != ModeEmbedded && c.Mode != ModeExternal:
		return conf.Fieldf(join(prefix, "mode"), "must be embedded or external, got %q", c.Mode)
	case c.Mode == ModeEmbedded && c.Listen == "":
		return conf.Fieldf(join(prefix, "listen"), "required")
	case (c.TLSCert == "") != (c.TLSKey == ""):
		return conf.Fieldf(join(prefix, "tls_cert"), "tls_cert and tls_key go together")
	case c.MaxPacketBytes < wire.MaxPayloadBytes+1024:
		return conf.Fieldf(join(prefix, "max_packet_bytes"), "must be at least %d", wire.MaxPayloadBytes+1024)
	case c.SessionCheck <= 0 || c.SessionCheck > time.Second:
		return conf.Fieldf(join(prefix, "session_check"), "must be in (0, 1s], got %s", c.SessionCheck)
	case c.Lockout.FreeFailures < 1:
		return conf.Fieldf(join(prefix, "lockout.free_failures"), "must be at least 1")
	case c.Lockout.Base <= 0 || c.Lockout.Max < c.Lockout.Base:
		return conf.Fieldf(join(prefix, "lockout.base"), "must be positive and not above lockout.max")
	case c.Mode == ModeExternal && c.External.URL == "":
		return conf.Fieldf(join(prefix, "external.url"), "required in external mode")
	case c.Mode == ModeExternal && c.External.ClientID == "":
		return conf.Fieldf(join(prefix, "external.client_id"), "required in external mode (persistent session)")
	}
	return nil
}

// Announcer publishes the retained gallery announcement of a school.
type Announcer interface {
	Announce(ctx context.Context, schoolID string, a wire.GalleryAnnounce) error
}

// join makes "prefix.name" ("name" when prefix is empty).
func join(prefix, name string) string {
	prefix = strings.TrimSuffix(prefix, ".")
	if prefix == "" {
		return name
	}
	return prefix + "." + name
}
