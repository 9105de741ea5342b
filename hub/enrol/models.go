package enrol

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/diemdanh/diemdanh/hub/facetemplates"
	"github.com/diemdanh/diemdanh/hub/modeltrial"
	"github.com/diemdanh/diemdanh/hub/store"
	"github.com/diemdanh/diemdanh/models/conf"
	"github.com/diemdanh/diemdanh/models/faceengine"
)

// ChoiceMeta is the meta key holding the model an admin switched the hub
// to (a candidate's name); it outlives restarts (ApplyChoice).
const ChoiceMeta = "enrol.model"

// Candidate is a model the admin may try on the school's kept photos and
// switch to (enrol.candidates): a built-in embedder, or embedder: custom
// with the same custom block as enrol.custom.
type Candidate struct {
	Embedder string                  `yaml:"embedder"`
	Custom   *faceengine.CustomModel `yaml:"custom"`
}

// Name is what the admin picks: the embedder's name, or the custom
// model's declared name.
func (c Candidate) Name() string {
	if c.Embedder == faceengine.CustomEmbedder && c.Custom != nil {
		return c.Custom.Name
	}
	return c.Embedder
}

// engineConfig is the engine of candidate c with base's limits and
// models folder; refusals name prefix.
func (c Candidate) engineConfig(base faceengine.EngineConfig, prefix string) faceengine.EngineConfig {
	base.Embedder, base.Custom, base.Key, base.ONNX = c.Embedder, c.Custom, prefix, nil
	return base
}

// validateCandidates names the first bad enrol.candidates entry: an
// unknown embedder, a custom block's bad field, or two entries (or one
// and enrol.embedder) of the same name but another model.
func (c Config) validateCandidates(prefix string) error {
	seen := map[string]string{}
	if m, ok := c.EngineConfig().Model(); ok {
		seen[c.current().Name()] = m.String()
	}
	for i, cand := range c.Candidates {
		p := fmt.Sprintf("%s.candidates[%d]", prefix, i)
		if cand.Embedder == "" {
			return conf.Fieldf(p+".embedder", "is required")
		}
		ec := cand.engineConfig(c.EngineConfig(), p)
		if err := ec.Validate(p); err != nil {
			return err
		}
		m, ok := ec.Model()
		if !ok {
			return conf.Fieldf(p+".embedder", "unknown embedder %q", cand.Embedder)
		}
		if was, dup := seen[cand.Name()]; dup && was != m.String() {
			return conf.Fieldf(p+".custom.name", "%q names two models (%s and %s)", cand.Name(), was, m)
		}
		seen[cand.Name()] = m.String()
	}
	return nil
}

// current is the configured model as a candidate.
func (c Config) current() Candidate {
	return Candidate{Embedder: c.EngineConfig().Embedder, Custom: c.Custom}
}

// all lists the configured model first, then the other candidates by
// name, once each.
func (c Config) all() []Candidate {
	out := []Candidate{c.current()}
	seen := map[string]bool{out[0].Name(): true}
	for _, x := range c.Candidates {
		if !seen[x.Name()] {
			seen[x.Name()] = true
			out = append(out, x)
		}
	}
	return out
}

// find returns the candidate called name.
func (c Config) find(name string) (Candidate, bool) {
	for _, x := range c.all() {
		if x.Name() == name {
			return x, true
		}
	}
	return Candidate{}, false
}

// ApplyChoice returns cfg with the model an admin switched the hub to
// (ChoiceMeta) in place of enrol.embedder and enrol.custom, when one was
// chosen and is still among enrol.candidates (or is enrol.embedder);
// chosen is its name ("" when the config's model stands).
func ApplyChoice(ctx context.Context, db *store.DB, cfg Config) (out Config, chosen string, err error) {
	var name string
	err = db.R.QueryRowContext(ctx, `SELECT value FROM meta WHERE key = ?`, ChoiceMeta).Scan(&name)
	if errors.Is(err, sql.ErrNoRows) {
		return cfg, "", nil
	}
	if err != nil {
		return cfg, "", fmt.Errorf("enrol: model choice: %w", err)
	}
	cand, ok := cfg.find(name)
	if !ok {
		return cfg, "", nil
	}
	cfg.Embedder, cfg.Custom = cand.Embedder, cand.Custom
	return cfg, name, nil
}

// switched says whether an admin switched the hub's model (ChoiceMeta).
func (s *Service) switched(ctx context.Context) bool {
	var n int
	err := s.db.R.QueryRowContext(ctx, `SELECT count(*) FROM meta WHERE key = ?`, ChoiceMeta).Scan(&n)
	return err == nil && n > 0
}

// SwitchModel makes candidate name the hub's model: the enrolment engine
// and the distances follow it at once, the choice is kept in ChoiceMeta
// for the next start, and every template is re-embedded from its kept
// photo (facetemplates.Store.Reembed: pupils without one are flagged for
// re-enrolment; the galleries bump, so the gates fetch the new model's).
// The caller audits it.
func (s *Service) SwitchModel(ctx context.Context, name string) (facetemplates.ReembedReport, error) {
	cfg := s.config()
	cand, ok := cfg.find(name)
	if !ok {
		return facetemplates.ReembedReport{}, fmt.Errorf("enrol: %w: %q", modeltrial.ErrUnknown, name)
	}
	next := cfg
	next.Embedder, next.Custom = cand.Embedder, cand.Custom
	next.ConsistencyMax, next.DuplicateMax, next.FeedbackMatchMax = s.base.ConsistencyMax, s.base.DuplicateMax, s.base.FeedbackMatchMax
	eng := NewLazyEngine(next.EngineConfig(), s.log)
	next, err := next.ForModel("enrol", eng.Model())
	if err != nil {
		return facetemplates.ReembedReport{}, err
	}
	if _, err := eng.get(); err != nil { // refuse before anything changes
		return facetemplates.ReembedReport{}, err
	}
	if _, err := s.db.W.ExecContext(ctx, `INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)`, ChoiceMeta, name); err != nil {
		eng.Close()
		return facetemplates.ReembedReport{}, fmt.Errorf("enrol: model choice: %w", err)
	}
	s.commit.Lock() // no enrolment compares against a half-switched store
	s.mmu.Lock()
	s.eng, s.cfg = eng, next
	s.engines = append(s.engines, eng)
	s.mmu.Unlock()
	s.commit.Unlock()
	s.log.Info("hub model switched", "model", eng.Model().String())
	return s.tpl.Reembed(ctx, eng)
}

// Close frees the engines SwitchModel loaded (the first engine is its
// caller's).
func (s *Service) Close() {
	s.mmu.Lock()
	defer s.mmu.Unlock()
	for _, e := range s.engines {
		e.Close()
	}
	s.engines = nil
}

// TrialModels is the hub's models for hub/modeltrial: the configured
// model and enrol.candidates, each loaded on its own for a trial, and
// the switch.
type TrialModels struct{ S *Service }

// Candidates implements modeltrial.Models.
func (m TrialModels) Candidates() []modeltrial.Candidate {
	cur := m.S.engine().Model()
	var out []modeltrial.Candidate
	for _, c := range m.S.config().all() {
		model, ok := c.engineConfig(m.S.config().EngineConfig(), "enrol").Model()
		if !ok {
			continue
		}
		out = append(out, modeltrial.Candidate{Name: c.Name(), Model: model.String(), Current: model == cur})
	}
	return out
}

// Open implements modeltrial.Models: a fresh engine with one worker.
func (m TrialModels) Open(name string) (facetemplates.Embedder, func(), error) {
	cfg := m.S.config()
	cand, ok := cfg.find(name)
	if !ok {
		return nil, nil, fmt.Errorf("enrol: %w: %q", modeltrial.ErrUnknown, name)
	}
	ec := cand.engineConfig(cfg.EngineConfig(), "enrol")
	ec.Workers = 1
	eng := NewLazyEngine(ec, m.S.log)
	if _, err := eng.get(); err != nil {
		return nil, nil, err
	}
	return eng, eng.Close, nil
}

// Switch implements modeltrial.Models.
func (m TrialModels) Switch(ctx context.Context, name string) (facetemplates.ReembedReport, error) {
	return m.S.SwitchModel(ctx, name)
}
