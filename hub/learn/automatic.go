package learn

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/diemdanh/diemdanh/hub/facetemplates"
	"github.com/diemdanh/diemdanh/hub/ingest"
	"github.com/diemdanh/diemdanh/hub/store"
	"github.com/diemdanh/diemdanh/models/conf"
	"github.com/diemdanh/diemdanh/models/match"
)

// Automatic updates: a stored event whose gate offered its best crop
// (wire.Event.Template: the decision was well inside the gate's operating
// point) may become an automatic gate template (facetemplates source
// "automatic", event the event's ID). The Updater is an ingest Listener:
// ingest tells it about each event once, after the event's commit, and
// nothing here can refuse or undo the event.

// Results of Automatic, counted by diemdanh_automatic_templates_total
// {result}: AutoAdded or why the offer was refused.
const (
	AutoAdded        = "added"          // kept as an automatic gate template
	AutoNoConsent    = "no_consent"     // the consent in force does not allow gate templates
	AutoOwnConsent   = "own_consent"    // the pupil is 7 or older and has not consented themselves
	AutoPaused       = "paused"         // "not this pupil" paused the pupil's automatic templates
	AutoToday        = "already_today"  // the pupil has an automatic template from an event of the same school day
	AutoDrift        = "drift"          // farther than drift_max from every enrolment template of the pupil
	AutoNoEnrolment  = "no_enrolment"   // no active enrolment template of the hub's model to compare with
	AutoOtherModel   = "other_model"    // the gate's model, or the descriptor's length, is not the hub's
	AutoNoDriftLimit = "no_drift_limit" // drift_max is 0 and the hub's model has no measured profile
	AutoUnknownPupil = "unknown_pupil"  // the pupil is no longer in the roster
	AutoQueueFull    = "queue_full"     // the Updater's queue was full: the offer was dropped
	AutoError        = "error"          // a database failure (logged)
)

// AutoResults lists every result, in the metric's order.
var AutoResults = []string{AutoAdded, AutoNoConsent, AutoOwnConsent, AutoPaused, AutoToday, AutoDrift,
	AutoNoEnrolment, AutoOtherModel, AutoNoDriftLimit, AutoUnknownPupil, AutoQueueFull, AutoError}

// AutomaticActor is the audit actor of automatic templates.
const AutomaticActor = "system"

// AutomaticConfig is automatic_templates in the hub config.
type AutomaticConfig struct {
	// Enabled considers the templates the gates offer.
	Enabled bool `yaml:"enabled"`
	// DriftMax is the drift guard: an offered descriptor farther than
	// this (real L2) from every active enrolment template of the pupil is
	// refused. 0 takes the hub model's measured vote cap
	// (AutomaticDeps.VoteCap: faceengine.DistanceProfile.VoteCap, SFace
	// 0.98), the loosest distance at which a gate may accept anyone.
	DriftMax float64 `yaml:"drift_max"`
	// Queue bounds the stored events waiting to be considered.
	Queue int `yaml:"queue"`
}

// DefaultAutomaticConfig is on, with the model's drift guard and a queue
// of 1,024 events.
func DefaultAutomaticConfig() AutomaticConfig {
	return AutomaticConfig{Enabled: true, Queue: 1024}
}

// Validate names the first bad field under prefix.
func (c AutomaticConfig) Validate(prefix string) error {
	switch {
	case !(c.DriftMax >= 0 && c.DriftMax <= 4):
		return conf.Fieldf(prefix+".drift_max", "must be 0 (the model's vote cap) or a real L2 distance up to 4, got %g", c.DriftMax)
	case c.Queue < 1 || c.Queue > 1<<20:
		return conf.Fieldf(prefix+".queue", "must be 1..%d, got %d", 1<<20, c.Queue)
	}
	return nil
}

// AutomaticDeps are what an Updater works through. DB and Templates are
// required; VoteCap, Registerer, Log and Now may be nil.
type AutomaticDeps struct {
	DB        *store.DB
	Templates *facetemplates.Store
	// VoteCap gives a model's measured vote cap, the drift guard when
	// drift_max is 0 (the app passes faceengine.ProfileOf's: this package
	// does not link the face engine). Nil, or a model it does not know:
	// only drift_max guards.
	VoteCap    func(match.ModelID) (float64, bool)
	Registerer prometheus.Registerer
	Log        *slog.Logger
	Now        func() time.Time
}

// Updater considers the templates the gates offer with their events. It
// is safe for concurrent use; one offer is considered at a time.
type Updater struct {
	cfg    AutomaticConfig
	d      AutomaticDeps
	mu     sync.Mutex // the once-a-day check and the add, one offer at a time
	counts map[string]*atomic.Int64
	metric *prometheus.CounterVec
	queue  chan ingest.StoredEvent
	busy   pending
	warned atomic.Bool
}

// NewUpdater checks cfg and returns an Updater; its metric is registered
// on d.Registerer when there is one.
func NewUpdater(cfg AutomaticConfig, d AutomaticDeps) (*Updater, error) {
	if err := cfg.Validate("automatic_templates"); err != nil {
		return nil, err
	}
	if d.DB == nil || d.Templates == nil {
		return nil, errors.New("learn: the database and the template store are required")
	}
	if d.Log == nil {
		d.Log = slog.New(slog.DiscardHandler)
	}
	if d.Now == nil {
		d.Now = time.Now
	}
	u := &Updater{cfg: cfg, d: d, counts: map[string]*atomic.Int64{}, queue: make(chan ingest.StoredEvent, cfg.Queue),
		metric: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "diemdanh_automatic_templates_total",
			Help: "Templates the gates offered with their events: added as automatic gate templates, or why not."}, []string{"result"})}
	for _, r := range AutoResults {
		u.counts[r] = &atomic.Int64{}
		u.metric.WithLabelValues(r)
	}
	if d.Registerer != nil {
		if err := d.Registerer.Register(u.metric); err != nil {
			return nil, fmt.Errorf("learn: metric: %w", err)
		}
	}
	return u, nil
}

// Counts returns how many offers ended in each result (AutoResults).
func (u *Updater) Counts() map[string]int64 {
	out := make(map[string]int64, len(u.counts))
	for r, n := range u.counts {
		out[r] = n.Load()
	}
	return out
}

func (u *Updater) count(result string) {
	u.counts[result].Add(1)
	u.metric.WithLabelValues(result).Inc()
}

// AutoOutcome is what Automatic did with one event.
type AutoOutcome struct {
	// Result is one of AutoResults, or "" when the event offered no
	// template (or automatic templates are off).
	Result     string  `json:"result,omitempty"`
	TemplateID int64   `json:"template_id,omitempty"`
	Distance   float64 `json:"distance,omitempty"` // to the nearest enrolment template, once measured
}

// Automatic considers the template ev offers. It adds it as an
// automatic gate template of the event's pupil (the event's quality, its
// stored crop, the event's ID) only if, in this order:
//
//   - the event's model is the hub's current model;
//   - the consent in force allows gate templates and "not this pupil"
//     has not paused the pupil's automatic templates
//     (facetemplates.AutomaticAllowed);
//   - no automatic template of the pupil comes from an event captured on
//     the same school-local day (the school's time zone);
//   - the drift guard passes: the descriptor is within drift_max of one
//     of the pupil's active ENROLMENT templates of that model (gate
//     templates never count, so a drift cannot feed on itself);
//   - facetemplates.AddGateTemplate accepts it (it checks consent, the
//     pupil's own consent from age 7 and the pause again, in its
//     transaction).
//
// The result is counted. An error (a database failure) is counted as
// AutoError and returned; the event itself is already stored either way.
func (u *Updater) Automatic(ctx context.Context, ev ingest.StoredEvent) (AutoOutcome, error) {
	if !u.cfg.Enabled || ev.Template == nil || ev.Unknown {
		return AutoOutcome{}, nil
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	out, err := u.consider(ctx, ev)
	if err != nil {
		out.Result = AutoError
		u.d.Log.Warn("automatic template not considered", "event_id", ev.EventID, "pupil", ev.StudentID, "err", err)
	} else if out.Result == AutoAdded {
		u.d.Log.Info("automatic template added", "event_id", ev.EventID, "pupil", ev.StudentID, "template", out.TemplateID,
			"distance", out.Distance)
	} else {
		u.d.Log.Debug("automatic template refused", "event_id", ev.EventID, "pupil", ev.StudentID, "result", out.Result,
			"distance", out.Distance)
	}
	u.count(out.Result)
	return out, err
}

// consider is Automatic's decision, under u.mu.
func (u *Updater) consider(ctx context.Context, ev ingest.StoredEvent) (AutoOutcome, error) {
	pupil, model := ev.StudentID, u.d.Templates.Model()
	if ev.Model != model {
		return AutoOutcome{Result: AutoOtherModel}, nil
	}
	desc, err := ev.Template.DescriptorValues()
	if err != nil {
		return AutoOutcome{}, fmt.Errorf("learn: template of event %s: %w", ev.EventID, err)
	}
	if r, err := u.allowed(ctx, pupil); err != nil || r != "" {
		return AutoOutcome{Result: r}, err
	}
	list, err := u.d.Templates.List(ctx, pupil)
	if err != nil {
		return AutoOutcome{}, fmt.Errorf("learn: templates of %s: %w", pupil, err)
	}
	if r, err := u.onceToday(ctx, ev, list); err != nil || r != "" {
		return AutoOutcome{Result: r}, err
	}
	dist, r, err := u.driftGuard(ctx, desc, model, list)
	if err != nil || r != "" {
		return AutoOutcome{Result: r, Distance: dist}, err
	}
	id, err := u.d.Templates.AddGateTemplate(ctx, pupil, desc, ev.Quality, ev.FaceJPEG, facetemplates.SourceAutomatic,
		ev.EventID, AutomaticActor)
	var se *facetemplates.ScopeError
	var pe *facetemplates.PausedError
	switch {
	case errors.As(err, &se) && se.OwnConsent:
		return AutoOutcome{Result: AutoOwnConsent, Distance: dist}, nil
	case errors.As(err, &se):
		return AutoOutcome{Result: AutoNoConsent, Distance: dist}, nil
	case errors.As(err, &pe):
		return AutoOutcome{Result: AutoPaused, Distance: dist}, nil
	case errors.Is(err, facetemplates.ErrNotFound):
		return AutoOutcome{Result: AutoUnknownPupil, Distance: dist}, nil
	case err != nil:
		return AutoOutcome{Distance: dist}, fmt.Errorf("learn: automatic template of %s: %w", pupil, err)
	}
	return AutoOutcome{Result: AutoAdded, TemplateID: id, Distance: dist}, nil
}

// allowed is "" when an automatic template may be added for pupil now,
// else why not (AutoUnknownPupil, AutoNoConsent, AutoPaused).
func (u *Updater) allowed(ctx context.Context, pupil string) (string, error) {
	ok, err := u.d.Templates.AutomaticAllowed(ctx, pupil, u.d.Now())
	switch {
	case errors.Is(err, facetemplates.ErrNotFound):
		return AutoUnknownPupil, nil
	case err != nil:
		return "", fmt.Errorf("learn: automatic allowed for %s: %w", pupil, err)
	case ok:
		return "", nil
	}
	var scope bool
	err = u.d.DB.R.QueryRowContext(ctx, `SELECT `+facetemplates.GateTemplatesAllowed("p.id")+` FROM pupils p WHERE p.id = ?`, pupil).
		Scan(&scope)
	if err != nil {
		return "", fmt.Errorf("learn: gate-template scope of %s: %w", pupil, err)
	}
	if !scope {
		return AutoNoConsent, nil
	}
	return AutoPaused, nil
}

// onceToday is AutoToday when one of the pupil's automatic templates
// (list) comes from an event captured on the school-local day of ev.
func (u *Updater) onceToday(ctx context.Context, ev ingest.StoredEvent, list []facetemplates.Info) (string, error) {
	var ids []any
	for _, t := range list {
		if t.Source == facetemplates.SourceAutomatic && t.EventID != "" {
			ids = append(ids, t.EventID)
		}
	}
	if len(ids) == 0 {
		return "", nil
	}
	start, end := u.schoolDay(ctx, ev.SchoolID, ev.CapturedAt)
	var n int
	err := u.d.DB.R.QueryRowContext(ctx, `SELECT count(*) FROM events WHERE captured_at >= ? AND captured_at < ?
		AND event_id IN (?`+strings.Repeat(",?", len(ids)-1)+`)`, append([]any{start, end}, ids...)...).Scan(&n)
	if err != nil {
		return "", fmt.Errorf("learn: automatic templates of the day: %w", err)
	}
	if n > 0 {
		return AutoToday, nil
	}
	return "", nil
}

// schoolDay is the school-local day holding capturedAt (Unix ms), as
// [start, end) in Unix ms, in the school's time zone (Ho Chi Minh City's
// when the school's is unknown).
func (u *Updater) schoolDay(ctx context.Context, school string, capturedAt int64) (int64, int64) {
	var name string
	if err := u.d.DB.R.QueryRowContext(ctx, `SELECT timezone FROM schools WHERE id = ?`, school).Scan(&name); err != nil {
		name = "Asia/Ho_Chi_Minh"
	}
	loc, err := time.LoadLocation(name)
	if err != nil {
		loc = time.FixedZone("ICT", 7*3600)
	}
	t := time.UnixMilli(capturedAt).In(loc)
	start := time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, loc)
	return start.UnixMilli(), start.AddDate(0, 0, 1).UnixMilli()
}

// driftGuard measures desc against the pupil's active enrolment templates
// of model (in list) and returns the nearest distance, with AutoDrift
// when it is beyond the limit, AutoNoEnrolment when there is none,
// AutoOtherModel when none has desc's length, AutoNoDriftLimit when no
// limit is known.
func (u *Updater) driftGuard(ctx context.Context, desc match.Descriptor, model match.ModelID, list []facetemplates.Info) (float64, string, error) {
	limit := u.cfg.DriftMax
	if limit == 0 {
		var ok bool
		if u.d.VoteCap != nil {
			limit, ok = u.d.VoteCap(model)
		}
		if !ok || !(limit > 0) {
			if !u.warned.Swap(true) {
				u.d.Log.Warn("automatic templates need automatic_templates.drift_max: the hub's model has no measured vote cap", "model", model.String())
			}
			return 0, AutoNoDriftLimit, nil
		}
	}
	best, enrolled := math.Inf(1), 0
	for _, t := range list {
		if t.Source != facetemplates.SourceEnrolment || t.Status != facetemplates.StatusActive || t.Model != model.String() {
			continue
		}
		enrolled++
		e, err := u.d.Templates.Descriptor(ctx, t.ID)
		if err != nil {
			return 0, "", fmt.Errorf("learn: enrolment template %d: %w", t.ID, err)
		}
		if len(e) == len(desc) {
			best = math.Min(best, match.Distance(desc, e))
		}
	}
	switch {
	case enrolled == 0:
		return 0, AutoNoEnrolment, nil
	case math.IsInf(best, 1):
		return 0, AutoOtherModel, nil
	case !(best <= limit):
		return best, AutoDrift, nil
	}
	return best, "", nil
}

var _ ingest.Listener = (*Updater)(nil)

// EventStored implements ingest.Listener: an event that offers a template
// is queued for Run without blocking ingest. When the queue is full the
// offer is dropped and counted (AutoQueueFull); the event stands.
func (u *Updater) EventStored(_ context.Context, ev ingest.StoredEvent) {
	if !u.cfg.Enabled || ev.Template == nil || ev.Unknown {
		return
	}
	u.busy.add()
	select {
	case u.queue <- ev:
	default:
		u.busy.done()
		u.count(AutoQueueFull)
		u.d.Log.Warn("automatic template dropped: the queue is full", "event_id", ev.EventID, "queue", u.cfg.Queue)
	}
}

// Run considers the queued offers (Automatic) until ctx ends; offers
// still queued then are dropped with one log line.
func (u *Updater) Run(ctx context.Context) error {
	for {
		select {
		case <-ctx.Done():
			if n := len(u.queue); n > 0 {
				u.d.Log.Info("automatic templates not considered at shutdown", "events", n)
			}
			return nil
		case ev := <-u.queue:
			_, _ = u.Automatic(ctx, ev) // counted and logged there
			u.busy.done()
		}
	}
}

// Drain waits until every queued offer has been considered (or ctx ends):
// for tests and the benchmark, which rebuild the gallery after a day.
func (u *Updater) Drain(ctx context.Context) error { return u.busy.wait(ctx) }

// pending counts queued offers not yet considered; wait returns once
// there are none.
type pending struct {
	mu   sync.Mutex
	n    int
	idle chan struct{} // closed while n is 0
}

func (p *pending) add() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.n == 0 {
		p.idle = make(chan struct{})
	}
	p.n++
}

func (p *pending) done() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.n--
	if p.n == 0 {
		close(p.idle)
	}
}

func (p *pending) wait(ctx context.Context) error {
	p.mu.Lock()
	if p.n == 0 {
		p.mu.Unlock()
		return nil
	}
	idle := p.idle
	p.mu.Unlock()
	select {
	case <-idle:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
