package gallery

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/diemdanh/diemdanh/models/conf"
	"github.com/diemdanh/diemdanh/models/wire"
)

// SyncConfig configures fetching the gallery from the hub.
type SyncConfig struct {
	HubURL   string `yaml:"hub_url"` // e.g. http://hub.local:8080; empty disables syncing
	GateID   string `yaml:"gate_id"`
	Username string `yaml:"username"` // HTTP basic auth, the gate's device account
	Password string `yaml:"password"`
	CAFile   string `yaml:"ca_file"` // PEM roots for an https hub

	Interval time.Duration `yaml:"interval"`  // periodic check besides the MQTT announcement
	Timeout  time.Duration `yaml:"timeout"`   // one HTTP request
	RetryMax time.Duration `yaml:"retry_max"` // cap of the backoff after failures
}

// DefaultSyncConfig returns the defaults.
func DefaultSyncConfig() SyncConfig {
	return SyncConfig{Interval: time.Minute, Timeout: 20 * time.Second, RetryMax: 5 * time.Minute}
}

// Validate names the first bad field (as gallery.sync.<key>).
func (c SyncConfig) Validate() error {
	if c.HubURL == "" {
		return nil // syncing disabled
	}
	u, err := url.Parse(c.HubURL)
	switch {
	case err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "":
		return conf.Fieldf("gallery.sync.hub_url", "must be an http(s) URL, got %q", c.HubURL)
	case !wire.ValidID(c.GateID):
		return conf.Fieldf("gallery.sync.gate_id", "invalid %q", c.GateID)
	case c.Password != "" && c.Username == "":
		return conf.Fieldf("gallery.sync.username", "is required when a password is set")
	case c.CAFile != "" && u.Scheme != "https":
		return conf.Fieldf("gallery.sync.ca_file", "only for an https hub_url")
	case c.Interval < time.Second:
		return conf.Fieldf("gallery.sync.interval", "must be at least 1s")
	case c.Timeout <= 0:
		return conf.Fieldf("gallery.sync.timeout", "must be positive")
	case c.RetryMax < time.Second:
		return conf.Fieldf("gallery.sync.retry_max", "must be at least 1s")
	}
	return nil
}

// Sync keeps a Store up to date with the hub.
type Sync struct {
	cfg    SyncConfig
	st     *Store
	hc     *http.Client
	log    *slog.Logger
	now    func() time.Time
	url    string
	notify chan struct{}
	last   atomic.Int64 // Unix ms of the last successful check
}

// NewSync builds the worker. hc may be nil (a client with cfg.Timeout and
// cfg.CAFile is made).
func NewSync(cfg SyncConfig, st *Store, hc *http.Client, log *slog.Logger, now func() time.Time) (*Sync, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.HubURL == "" {
		return nil, conf.Fieldf("gallery.sync.hub_url", "is required for syncing")
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if now == nil {
		now = time.Now
	}
	if hc == nil {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		if cfg.CAFile != "" {
			pem, err := os.ReadFile(cfg.CAFile)
			if err != nil {
				return nil, conf.Fieldf("gallery.sync.ca_file", "%v", err)
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				return nil, conf.Fieldf("gallery.sync.ca_file", "no PEM certificate in %s", cfg.CAFile)
			}
			tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
		}
		hc = &http.Client{Timeout: cfg.Timeout, Transport: tr}
	}
	u := strings.TrimRight(cfg.HubURL, "/") + "/api/v1/gates/" + url.PathEscape(cfg.GateID) + "/gallery"
	return &Sync{cfg: cfg, st: st, hc: hc, log: log, now: now, url: u, notify: make(chan struct{}, 1)}, nil
}

// Notify asks for a check now (coalesced).
func (s *Sync) Notify() {
	select {
	case s.notify <- struct{}{}:
	default:
	}
}

// OnAnnounce handles the hub's retained gallery announcement: a version
// other than the current one triggers a fetch. Pass it as the MQTT
// publisher's OnGalleryAnnounce.
func (s *Sync) OnAnnounce(a wire.GalleryAnnounce) {
	if a.Version != s.st.Version() {
		s.Notify()
	}
}

// LastSuccess is when the hub last answered (zero if never).
func (s *Sync) LastSuccess() time.Time {
	if ms := s.last.Load(); ms > 0 {
		return time.UnixMilli(ms)
	}
	return time.Time{}
}

// ETag is the entity tag of a gallery version, as the hub sends it.
func ETag(version int64) string { return `"v` + strconv.FormatInt(version, 10) + `"` }

// ErrUnauthorized means the hub refused the gate's credentials.
var ErrUnauthorized = errors.New("gallery: hub refused the gate's credentials")

// SyncOnce asks the hub for a newer gallery and installs it. changed is
// true when a new gallery was swapped in. On any error the current gallery
// stays in force.
func (s *Sync) SyncOnce(ctx context.Context) (changed bool, err error) {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.url, nil)
	if err != nil {
		return false, fmt.Errorf("gallery sync: %w", err)
	}
	if s.cfg.Username != "" {
		req.SetBasicAuth(s.cfg.Username, s.cfg.Password)
	}
	req.Header.Set("Accept", "application/json")
	cur := s.st.Version()
	if cur > 0 {
		req.Header.Set("If-None-Match", ETag(cur))
	}
	resp, err := s.hc.Do(req)
	if err != nil {
		return false, fmt.Errorf("gallery sync: %w", err)
	}
	defer resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusNotModified:
		s.last.Store(s.now().UnixMilli())
		return false, nil
	case http.StatusOK:
	case http.StatusUnauthorized, http.StatusForbidden:
		return false, fmt.Errorf("%w (HTTP %d)", ErrUnauthorized, resp.StatusCode)
	default:
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return false, fmt.Errorf("gallery sync: hub answered HTTP %d: %s", resp.StatusCode, strings.TrimSpace(string(msg)))
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, wire.MaxGalleryBytes+1))
	if err != nil {
		return false, fmt.Errorf("gallery sync: reading body: %w", err)
	}
	doc, _, err := wire.DecodeGallery(body)
	if err != nil {
		return false, fmt.Errorf("gallery sync: hub sent a bad gallery: %w", err)
	}
	s.last.Store(s.now().UnixMilli())
	if doc.Version == cur && cur > 0 {
		return false, nil // hub ignored If-None-Match; nothing new
	}
	if err := s.st.ReplaceBytes(body); err != nil {
		return false, err
	}
	return true, nil
}

// Run checks at start, every Interval and on Notify, backing off (capped
// at RetryMax) while the hub is unreachable. It logs one line when an
// outage starts and one when it ends, and returns when ctx ends.
func (s *Sync) Run(ctx context.Context) error {
	wait := time.Duration(0)
	down := false
	failures := 0
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-timer.C:
		case <-s.notify:
			if !timer.Stop() {
				select {
				case <-timer.C:
				default:
				}
			}
		}
		_, err := s.SyncOnce(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			failures++
			if !down {
				s.log.Warn("gallery sync outage; keeping the current gallery", "hub", s.cfg.HubURL, "version", s.st.Version(), "err", err)
				down = true
			} else {
				s.log.Debug("gallery sync failed again", "err", err)
			}
			wait = min(time.Second<<min(failures-1, 16), s.cfg.RetryMax, s.cfg.Interval)
		} else {
			if down {
				s.log.Info("gallery sync recovered", "hub", s.cfg.HubURL, "version", s.st.Version(), "failures", failures)
				down = false
			}
			failures = 0
			wait = s.cfg.Interval
		}
		timer.Reset(wait)
	}
}
