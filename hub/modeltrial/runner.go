package modeltrial

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/diemdanh/diemdanh/hub/audit"
	"github.com/diemdanh/diemdanh/hub/facetemplates"
	"github.com/diemdanh/diemdanh/models/conf"
)

// Audit actions.
const (
	ActionTrial  = "model_trial"  // a trial started (school, candidate, photos)
	ActionSwitch = "model_switch" // the hub's model switched (from, to, the re-embedding's report)
)

// Candidate is a model the hub may run: a built-in embedder or a custom
// model of the hub's config.
type Candidate struct {
	Name    string `json:"name"`    // what the admin picks (the embedder, or the custom model's name)
	Model   string `json:"model"`   // name@version
	Current bool   `json:"current"` // the hub runs it now
}

// Models is the hub's face models (hub/enrol implements it over
// faceengine).
type Models interface {
	// Candidates lists the models that may be tried, the current one
	// among them.
	Candidates() []Candidate
	// Open loads a fresh engine of candidate name with one worker, for a
	// trial; close frees it.
	Open(name string) (emb facetemplates.Embedder, close func(), err error)
	// Switch makes name the hub's model (kept across restarts) and
	// re-embeds every template from its kept photo, which bumps the
	// galleries so the gates fetch the new model's.
	Switch(ctx context.Context, name string) (facetemplates.ReembedReport, error)
}

// Photos is where the kept photos are (facetemplates.Store).
type Photos interface {
	KeptPhotos(ctx context.Context, school string) ([]facetemplates.KeptRef, int, error)
	Photo(ctx context.Context, id int64) ([]byte, error)
}

// Config is the trial's settings.
type Config struct {
	// TargetFAR is the visitor false-accept rate of the calibrated point
	// (the gallery server's target_far).
	TargetFAR float64
}

// Validate names the bad field.
func (c Config) Validate(prefix string) error {
	if !(c.TargetFAR > 0 && c.TargetFAR < 1) {
		return conf.Fieldf(prefix+".target_far", "must be in (0,1), got %g", c.TargetFAR)
	}
	return nil
}

// States of a job.
const (
	StateRunning   = "running"
	StateDone      = "done"
	StateFailed    = "failed"
	StateCancelled = "cancelled"
)

// Trial is one trial's state: progress while running, both columns when
// done.
type Trial struct {
	School    string    `json:"school"`
	Candidate string    `json:"candidate"`
	State     string    `json:"state"`
	Error     string    `json:"error,omitempty"`
	Done      int       `json:"done"`  // photos run through both models
	Total     int       `json:"total"` // kept photos
	Started   time.Time `json:"started"`
	Finished  time.Time `json:"finished,omitzero"`
	// WithoutPhoto counts the pupils with no kept photo: a switch flags
	// them for re-enrolment.
	WithoutPhoto int     `json:"pupils_without_photo"`
	Current      *Column `json:"current,omitempty"`
	Tried        *Column `json:"candidate_column,omitempty"`
}

// Switch is the state of a model switch.
type Switch struct {
	Candidate string                       `json:"candidate"`
	State     string                       `json:"state"`
	Error     string                       `json:"error,omitempty"`
	Started   time.Time                    `json:"started"`
	Finished  time.Time                    `json:"finished,omitzero"`
	Report    *facetemplates.ReembedReport `json:"report,omitempty"`
}

// ErrBusy: a trial or a switch is already running on the hub (one at a
// time: the hub's CPUs serve the gates first).
var ErrBusy = errors.New("modeltrial: a trial or a model switch is running")

// ErrUnknown: the candidate is not one of Models.Candidates.
var ErrUnknown = errors.New("modeltrial: unknown candidate")

// Runner runs trials and switches in the background, one at a time.
type Runner struct {
	models Models
	photos Photos
	audit  *audit.Log
	cfg    Config
	log    *slog.Logger
	now    func() time.Time

	mu     sync.Mutex
	base   context.Context // Run's; nil before Run and after it returns
	trials map[string]*Trial
	sw     *Switch
	cancel context.CancelFunc // the running job's
	busy   bool
	wg     sync.WaitGroup
}

// New returns a runner; Run must be running for Start and StartSwitch.
func New(models Models, photos Photos, al *audit.Log, cfg Config, log *slog.Logger, now func() time.Time) (*Runner, error) {
	if err := cfg.Validate("modeltrial"); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if now == nil {
		now = time.Now
	}
	return &Runner{models: models, photos: photos, audit: al, cfg: cfg, log: log, now: now, trials: map[string]*Trial{}}, nil
}

// Run lets jobs start until ctx ends, then cancels the running one and
// waits for it.
func (r *Runner) Run(ctx context.Context) error {
	r.mu.Lock()
	r.base = ctx
	r.mu.Unlock()
	<-ctx.Done()
	r.mu.Lock()
	r.base = nil
	if r.cancel != nil {
		r.cancel()
	}
	r.mu.Unlock()
	r.wg.Wait()
	return nil
}

// Candidates lists the models that may be tried.
func (r *Runner) Candidates() []Candidate { return r.models.Candidates() }

// ErrNotRunning: Run has not started or has returned.
var ErrNotRunning = errors.New("modeltrial: not running")

// lookup returns the candidate called name.
func (r *Runner) lookup(name string) (Candidate, error) {
	r.mu.Lock()
	up := r.base != nil
	r.mu.Unlock()
	if !up {
		return Candidate{}, ErrNotRunning
	}
	for _, c := range r.models.Candidates() {
		if c.Name == name {
			return c, nil
		}
	}
	return Candidate{}, fmt.Errorf("%w: %q", ErrUnknown, name)
}

// claim reserves the runner for one job; the caller starts it and calls
// release when it ends.
func (r *Runner) claim() (context.Context, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.base == nil {
		return nil, ErrNotRunning
	}
	if r.busy {
		return nil, ErrBusy
	}
	ctx, cancel := context.WithCancel(r.base)
	r.busy, r.cancel = true, cancel
	r.wg.Add(1)
	return ctx, nil
}

func (r *Runner) release() {
	r.mu.Lock()
	r.busy = false
	if r.cancel != nil {
		r.cancel()
		r.cancel = nil
	}
	r.mu.Unlock()
	r.wg.Done()
}

// Busy says whether a trial or a switch is running.
func (r *Runner) Busy() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.busy
}

// Cancel stops the running trial of school (a switch is never cancelled:
// it is one action). It reports whether one was running.
func (r *Runner) Cancel(school string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	t := r.trials[school]
	if t == nil || t.State != StateRunning || r.cancel == nil {
		return false
	}
	r.cancel()
	return true
}

// Trial returns a copy of school's last trial.
func (r *Runner) Trial(school string) (Trial, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	t := r.trials[school]
	if t == nil {
		return Trial{}, false
	}
	return *t, true
}

// LastSwitch returns a copy of the last switch.
func (r *Runner) LastSwitch() (Switch, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.sw == nil {
		return Switch{}, false
	}
	return *r.sw, true
}

// update changes a job's state under the lock.
func (r *Runner) update(fn func()) {
	r.mu.Lock()
	fn()
	r.mu.Unlock()
}
