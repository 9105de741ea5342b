package notify

import (
	"time"

	"github.com/diemdanh/diemdanh/models/conf"
)

// Config configures the notification outbox and its channels. A channel
// with no address configured (SMTP addr, webhook URL) is off.
type Config struct {
	Workers     int           `yaml:"workers"`      // concurrent deliveries
	MaxAttempts int           `yaml:"max_attempts"` // then the message is marked failed
	BackoffBase time.Duration `yaml:"backoff_base"` // first retry delay, doubled per attempt
	BackoffMax  time.Duration `yaml:"backoff_max"`  // cap of the retry delay
	SendTimeout time.Duration `yaml:"send_timeout"` // per delivery attempt
	Poll        time.Duration `yaml:"poll"`         // safety-net scan interval (events also poke)
	CutoffEvery time.Duration `yaml:"cutoff_every"` // how often the "not arrived" rule runs
	// CutoffWindow: the "not arrived" message is only sent this long after
	// the cut-off (a hub started in the afternoon does not send it).
	CutoffWindow time.Duration `yaml:"cutoff_window"`
	// SchoolDays are the weekdays (0 = Sunday) with classes.
	SchoolDays []int `yaml:"school_days"`
	// PortalURL is put in messages so parents can open the portal.
	PortalURL string        `yaml:"portal_url"`
	SMTP      SMTPConfig    `yaml:"smtp"`
	Webhook   WebhookConfig `yaml:"webhook"`
	Push      PushConfig    `yaml:"push"`
}

// SMTPConfig is the e-mail channel (net/smtp). Empty Addr = off.
type SMTPConfig struct {
	Addr     string `yaml:"addr"` // host:port
	From     string `yaml:"from"`
	Username string `yaml:"username"`
	Password string `yaml:"password"` // env DIEMDANH_SMTP_PASSWORD overrides
	StartTLS bool   `yaml:"starttls"` // require STARTTLS (use it whenever offered anyway)
}

// WebhookConfig is the signed webhook channel (SMS gateway, Zalo ZNS
// bridge). Empty URL = off.
type WebhookConfig struct {
	URL    string `yaml:"url"`
	Secret string `yaml:"secret"` // HMAC-SHA256 key; env DIEMDANH_WEBHOOK_SECRET overrides
}

// PushConfig is the Web Push channel. VAPID keys are generated on first
// start and kept in the database.
type PushConfig struct {
	Enabled    bool   `yaml:"enabled"`
	Subscriber string `yaml:"subscriber"` // mailto: or https: contact for push services
	TTL        int    `yaml:"ttl"`        // seconds a push service may hold the message
}

// Default returns working defaults: push on, e-mail and webhook off.
func Default() Config {
	return Config{
		Workers:      8,
		MaxAttempts:  12,
		BackoffBase:  2 * time.Second,
		BackoffMax:   10 * time.Minute,
		SendTimeout:  15 * time.Second,
		Poll:         2 * time.Second,
		CutoffEvery:  30 * time.Second,
		CutoffWindow: 3 * time.Hour,
		SchoolDays:   []int{1, 2, 3, 4, 5},
		PortalURL:    "http://localhost:8080/parent",
		SMTP:         SMTPConfig{From: "diemdanh@localhost"},
		Push:         PushConfig{Enabled: true, Subscriber: "mailto:admin@localhost", TTL: 4 * 3600},
	}
}

// Validate names the first bad field, prefixed (e.g. "notify.").
func (c *Config) Validate(prefix string) error {
	conf.EnvOverride(&c.SMTP.Password, "DIEMDANH_SMTP_PASSWORD")
	conf.EnvOverride(&c.Webhook.Secret, "DIEMDANH_WEBHOOK_SECRET")
	switch {
	case c.Workers < 1 || c.Workers > 256:
		return conf.Fieldf(prefix+"workers", "must be 1..256, got %d", c.Workers)
	case c.MaxAttempts < 1:
		return conf.Fieldf(prefix+"max_attempts", "must be at least 1")
	case c.BackoffBase <= 0 || c.BackoffMax < c.BackoffBase:
		return conf.Fieldf(prefix+"backoff_max", "must be >= backoff_base > 0")
	case c.SendTimeout <= 0:
		return conf.Fieldf(prefix+"send_timeout", "must be positive")
	case c.Poll <= 0 || c.CutoffEvery <= 0:
		return conf.Fieldf(prefix+"poll", "poll and cutoff_every must be positive")
	case c.SMTP.Addr != "" && c.SMTP.From == "":
		return conf.Fieldf(prefix+"smtp.from", "required when smtp.addr is set")
	case c.Webhook.URL != "" && len(c.Webhook.Secret) < 16:
		return conf.Fieldf(prefix+"webhook.secret", "at least 16 characters required when webhook.url is set")
	}
	for _, d := range c.SchoolDays {
		if d < 0 || d > 6 {
			return conf.Fieldf(prefix+"school_days", "weekday %d not in 0..6", d)
		}
	}
	return nil
}
