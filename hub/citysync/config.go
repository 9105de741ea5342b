package citysync

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"regexp"
	"strings"
	"time"

	"github.com/diemdanh/diemdanh/models/conf"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Config is the city_sync section of the hub configuration. Sync is off
// when DSN is empty (the default), so a hub runs without PostgreSQL.
type Config struct {
	// DSN of the city database, e.g.
	// postgres://citydb.hcm.edu.vn:5432/citydb?sslmode=verify-full.
	// Env DIEMDANH_CITYDB_DSN overrides it.
	DSN string `yaml:"dsn"`
	// User and Password are the school's own role (they override the DSN's).
	// PasswordFile (one line) is preferred to Password; env
	// DIEMDANH_CITYDB_PASSWORD overrides both.
	User         string    `yaml:"user"`
	Password     string    `yaml:"password"`
	PasswordFile string    `yaml:"password_file"`
	TLS          TLSConfig `yaml:"tls"`
	// SchoolID is this hub's school in the city database; default: the
	// only school in the hub database.
	SchoolID string `yaml:"school_id"`
	// Interval between syncs when nothing wakes the worker earlier.
	Interval time.Duration `yaml:"interval"`
	// Debounce is how long the worker waits after an ingest notification,
	// so one push carries a burst of events.
	Debounce time.Duration `yaml:"debounce"`
	// RosterInterval between roster pulls (each pull first compares a cheap
	// fingerprint and downloads only when the city changed something).
	RosterInterval time.Duration `yaml:"roster_interval"`
	// MaxBackoff caps the exponential backoff while the city is unreachable.
	MaxBackoff time.Duration `yaml:"max_backoff"`
	// BatchSize is the number of changes pushed per transaction.
	BatchSize int `yaml:"batch_size"`
	// Meals the school serves (nutrition.meal_types codes); one headcount each.
	Meals []string `yaml:"meals"`
	// Terms, when set, are the exact term dates. Otherwise the city's
	// records.terms are used, and for days they do not cover, TermRule.
	Terms    []Term   `yaml:"terms"`
	TermRule TermRule `yaml:"term_rule"`
}

// TLSConfig is the client side of TLS to the city database. With CAFile
// set the server certificate is verified against it (and ServerName);
// CertFile/KeyFile add a client certificate.
type TLSConfig struct {
	CAFile     string `yaml:"ca_file"`
	CertFile   string `yaml:"cert_file"`
	KeyFile    string `yaml:"key_file"`
	ServerName string `yaml:"server_name"`
}

// Term is one term of a school year.
type Term struct {
	SchoolYear string `yaml:"school_year"` // 2025-2026
	Term       int    `yaml:"term"`        // 1 or 2
	Start      string `yaml:"start"`       // YYYY-MM-DD
	End        string `yaml:"end"`         // YYYY-MM-DD, inclusive
}

// TermRule gives term dates as month-day for every year: term 1 runs from
// Term1Start to the day before Term2Start, term 2 from Term2Start to YearEnd.
// Days between YearEnd and Term1Start are holidays (no term).
type TermRule struct {
	Term1Start string `yaml:"term1_start"` // MM-DD, default 09-05
	Term2Start string `yaml:"term2_start"` // MM-DD, default 01-16
	YearEnd    string `yaml:"year_end"`    // MM-DD, default 05-31
}

// Default returns the defaults: sync off.
func Default() Config {
	return Config{
		Interval:       30 * time.Second,
		Debounce:       time.Second,
		RosterInterval: 15 * time.Minute,
		MaxBackoff:     5 * time.Minute,
		BatchSize:      5000,
		Meals:          []string{"lunch"},
		TermRule:       TermRule{Term1Start: "09-05", Term2Start: "01-16", YearEnd: "05-31"},
	}
}

// ApplyEnv applies the environment overrides.
func (c *Config) ApplyEnv() {
	conf.EnvOverride(&c.DSN, "DIEMDANH_CITYDB_DSN")
	conf.EnvOverride(&c.Password, "DIEMDANH_CITYDB_PASSWORD")
}

// Enabled reports whether sync is configured.
func (c Config) Enabled() bool { return c.DSN != "" }

var (
	mmdd     = regexp.MustCompile(`^(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])$`)
	yearRe   = regexp.MustCompile(`^([0-9]{4})-([0-9]{4})$`)
	mealCode = regexp.MustCompile(`^[a-z_]{1,32}$`)
)

// Validate checks the section; errors name the field under prefix.
func (c Config) Validate(prefix string) error {
	f := func(name string) string { return prefix + "." + name }
	if !c.Enabled() {
		return nil
	}
	if _, err := pgxpool.ParseConfig(c.DSN); err != nil {
		return conf.Fieldf(f("dsn"), "not a PostgreSQL DSN: %v", err)
	}
	if c.Interval <= 0 {
		return conf.Fieldf(f("interval"), "must be positive")
	}
	if c.Debounce < 0 {
		return conf.Fieldf(f("debounce"), "must not be negative")
	}
	if c.RosterInterval <= 0 {
		return conf.Fieldf(f("roster_interval"), "must be positive")
	}
	if c.MaxBackoff < time.Second {
		return conf.Fieldf(f("max_backoff"), "must be at least 1s")
	}
	if c.BatchSize < 1 || c.BatchSize > 50000 {
		return conf.Fieldf(f("batch_size"), "must be 1..50000, got %d", c.BatchSize)
	}
	for i, m := range c.Meals {
		if !mealCode.MatchString(m) {
			return conf.Fieldf(fmt.Sprintf("%s[%d]", f("meals"), i), "bad meal code %q", m)
		}
	}
	if (c.TLS.CertFile == "") != (c.TLS.KeyFile == "") {
		return conf.Fieldf(f("tls.cert_file"), "cert_file and key_file go together")
	}
	for i, t := range c.Terms {
		p := fmt.Sprintf("%s[%d]", f("terms"), i)
		if _, err := parseTerm(t); err != nil {
			return conf.Fieldf(p, "%v", err)
		}
	}
	for name, v := range map[string]string{"term1_start": c.TermRule.Term1Start, "term2_start": c.TermRule.Term2Start, "year_end": c.TermRule.YearEnd} {
		if !mmdd.MatchString(v) {
			return conf.Fieldf(f("term_rule."+name), "want MM-DD, got %q", v)
		}
	}
	return nil
}

// poolConfig builds the pgx pool configuration: DSN, role credentials, TLS.
func (c Config) poolConfig() (*pgxpool.Config, error) {
	pc, err := pgxpool.ParseConfig(c.DSN)
	if err != nil {
		return nil, fmt.Errorf("citysync: dsn: %w", err)
	}
	if c.User != "" {
		pc.ConnConfig.User = c.User
	}
	pw := c.Password
	if pw == "" && c.PasswordFile != "" {
		b, err := os.ReadFile(c.PasswordFile)
		if err != nil {
			return nil, fmt.Errorf("citysync: password file: %w", err)
		}
		pw = strings.TrimSpace(string(b))
	}
	if pw != "" {
		pc.ConnConfig.Password = pw
	}
	if c.TLS.CAFile != "" {
		pem, err := os.ReadFile(c.TLS.CAFile)
		if err != nil {
			return nil, fmt.Errorf("citysync: tls ca: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("citysync: tls ca: no certificate in %s", c.TLS.CAFile)
		}
		tc := &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12, ServerName: c.TLS.ServerName}
		if tc.ServerName == "" {
			tc.ServerName = pc.ConnConfig.Host
		}
		if c.TLS.CertFile != "" {
			cert, err := tls.LoadX509KeyPair(c.TLS.CertFile, c.TLS.KeyFile)
			if err != nil {
				return nil, fmt.Errorf("citysync: tls client cert: %w", err)
			}
			tc.Certificates = []tls.Certificate{cert}
		}
		pc.ConnConfig.TLSConfig = tc
		pc.ConnConfig.Fallbacks = nil
	}
	pc.MaxConns = 2
	pc.MinConns = 0
	pc.MaxConnIdleTime = 5 * time.Minute
	if pc.ConnConfig.ConnectTimeout == 0 {
		pc.ConnConfig.ConnectTimeout = 10 * time.Second
	}
	pc.ConnConfig.RuntimeParams["application_name"] = "diemdanh-hub"
	return pc, nil
}
