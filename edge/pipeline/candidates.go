package pipeline

import (
	"fmt"
	"sync"
	"time"

	"github.com/diemdanh/diemdanh/models/conf"
	"github.com/diemdanh/diemdanh/models/match"
	"github.com/prometheus/client_golang/prometheus"
)

// Candidate restriction: a probe is compared only with the pupils expected
// at this gate now. The hub already serves a gate only the pupils of the
// classes assigned to it; in "session" mode the gate further keeps, during
// a session window (ca sáng, ca chiều), only the pupils whose class
// attends that session (wire.GalleryPerson.Sessions). Fewer candidates
// means fewer chances for a visitor to resemble somebody, so the visitor
// false-accept rate drops — and at the same target rate a self-calibrated
// threshold may be looser (match.CalibrateThresholdFor).

// Candidate modes.
const (
	CandidatesAll     = "all"     // every pupil of the gallery
	CandidatesSession = "session" // pupils of the current session window
)

// SessionWindow is one session's time window in the gate's local time
// (config timezone): From inclusive, To exclusive, "HH:MM".
type SessionWindow struct {
	Name string `yaml:"name"`
	From string `yaml:"from"`
	To   string `yaml:"to"`
}

// CandidatesConfig is pipeline.candidates.
type CandidatesConfig struct {
	// Mode is "all" (default) or "session".
	Mode string `yaml:"mode"`
	// Sessions are the windows of "session" mode; outside every window all
	// pupils are candidates.
	Sessions []SessionWindow `yaml:"sessions"`
}

// DefaultCandidatesConfig: mode all, with the usual two-shift windows ready
// for "session" mode.
func DefaultCandidatesConfig() CandidatesConfig {
	return CandidatesConfig{Mode: CandidatesAll, Sessions: []SessionWindow{
		{Name: match.SessionMorning, From: "05:30", To: "11:30"},
		{Name: match.SessionAfternoon, From: "12:00", To: "17:30"},
	}}
}

// parseHM parses "HH:MM" into minutes after midnight.
func parseHM(s string) (int, error) {
	t, err := time.Parse("15:04", s)
	if err != nil || len(s) != 5 {
		return 0, fmt.Errorf("must be HH:MM (24-hour), got %q", s)
	}
	return t.Hour()*60 + t.Minute(), nil
}

// Validate names the first bad field under prefix.
func (c CandidatesConfig) Validate(prefix string) error {
	if c.Mode != "" && c.Mode != CandidatesAll && c.Mode != CandidatesSession {
		return conf.Fieldf(prefix+".mode", "must be %q or %q, got %q", CandidatesAll, CandidatesSession, c.Mode)
	}
	if c.Mode == CandidatesSession && len(c.Sessions) == 0 {
		return conf.Fieldf(prefix+".sessions", "session mode needs at least one window")
	}
	type span struct{ from, to int }
	var spans []span
	for i, w := range c.Sessions {
		f := fmt.Sprintf("%s.sessions[%d]", prefix, i)
		if !match.ValidSession(w.Name) {
			return conf.Fieldf(f+".name", "unknown session %q (want one of %v)", w.Name, match.Sessions)
		}
		for _, prev := range c.Sessions[:i] {
			if prev.Name == w.Name {
				return conf.Fieldf(f+".name", "duplicate session %q", w.Name)
			}
		}
		from, err := parseHM(w.From)
		if err != nil {
			return conf.Fieldf(f+".from", "%v", err)
		}
		to, err := parseHM(w.To)
		if err != nil {
			return conf.Fieldf(f+".to", "%v", err)
		}
		if to <= from {
			return conf.Fieldf(f+".to", "must be after from (%s), got %s", w.From, w.To)
		}
		for j, s := range spans {
			if from < s.to && s.from < to {
				return conf.Fieldf(f, "window %s–%s overlaps sessions[%d] %s–%s", w.From, w.To, j, c.Sessions[j].From, c.Sessions[j].To)
			}
		}
		spans = append(spans, span{from, to})
	}
	return nil
}

// WindowAt returns the session whose window contains t in loc, or "" when
// t is outside every window or the mode is "all".
func (c CandidatesConfig) WindowAt(t time.Time, loc *time.Location) string {
	if c.Mode != CandidatesSession {
		return ""
	}
	if loc == nil {
		loc = time.UTC
	}
	lt := t.In(loc)
	m := lt.Hour()*60 + lt.Minute()
	for _, w := range c.Sessions {
		from, err1 := parseHM(w.From)
		to, err2 := parseHM(w.To)
		if err1 == nil && err2 == nil && m >= from && m < to {
			return w.Name
		}
	}
	return ""
}

// candState remembers the last window the pipeline used, to log each
// change once.
type candState struct {
	mu     sync.Mutex
	inited bool
	window string
}

// CandidateWindow returns the session window in force at the pipeline's
// clock ("" outside every window or in mode "all") and how many pupils of
// the current gallery a probe is compared against. A window change is
// logged once.
func (p *Pipeline) CandidateWindow() (string, int) {
	w := p.cfg.Candidates.WindowAt(p.now(), p.cfg.Location)
	_, gal := p.gal.Current()
	n := 0
	if gal != nil {
		n = gal.SessionCandidates(w)
	}
	p.cand.mu.Lock()
	changed := !p.cand.inited || p.cand.window != w
	p.cand.inited, p.cand.window = true, w
	p.cand.mu.Unlock()
	if changed && p.cfg.Candidates.Mode == CandidatesSession {
		if w == "" {
			p.log.Info("candidates: outside every session window; matching all pupils", "candidates", n)
		} else {
			p.log.Info("candidates: session window", "session", w, "candidates", n)
		}
	}
	return w, n
}

// candidateFilter is the MatchFiltered filter for the current window (nil:
// everybody).
func (p *Pipeline) candidateFilter(gal *match.Gallery) match.Filter {
	if p.cfg.Candidates.Mode != CandidatesSession {
		return nil
	}
	w, n := p.CandidateWindow()
	if w == "" || n == gal.People() {
		return nil
	}
	return match.SessionFilter{G: gal, Session: w}
}

// calibrationCandidates is the candidate count the gate-side calibration
// uses for gal now, and the key it is cached under.
func (p *Pipeline) calibrationCandidates(gal *match.Gallery) (string, int) {
	if p.cfg.Candidates.Mode != CandidatesSession {
		return "", gal.People()
	}
	w, n := p.CandidateWindow()
	if n == gal.People() {
		return "", n // same candidates as no restriction: one calibration
	}
	return w, max(n, 1)
}

// RegisterCandidateMetrics exports edge_candidates (pupils a probe is
// compared against now) and edge_candidate_window{session} (1 for the
// window in force; session "" outside every window), computed at scrape
// time from the pipeline's clock.
func (p *Pipeline) RegisterCandidateMetrics(reg prometheus.Registerer) error {
	cs := []prometheus.Collector{prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "edge_candidates",
		Help: "Enrolled pupils a face is compared against now (candidate restriction)."},
		func() float64 { _, n := p.CandidateWindow(); return float64(n) })}
	names := []string{""}
	for _, w := range p.cfg.Candidates.Sessions {
		names = append(names, w.Name)
	}
	for _, name := range names {
		cs = append(cs, prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "edge_candidate_window",
			Help:        "1 for the session window in force (session=\"\": none, all pupils are candidates).",
			ConstLabels: prometheus.Labels{"session": name}},
			func() float64 {
				if w, _ := p.CandidateWindow(); w == name {
					return 1
				}
				return 0
			}))
	}
	for _, c := range cs {
		if err := reg.Register(c); err != nil {
			return fmt.Errorf("pipeline: candidate metrics: %w", err)
		}
	}
	return nil
}
