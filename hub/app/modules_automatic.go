package app

import (
	"fmt"

	"github.com/diemdanh/diemdanh/hub/enrol"
	"github.com/diemdanh/diemdanh/hub/learn"
	"github.com/diemdanh/diemdanh/models/faceengine"
	"github.com/diemdanh/diemdanh/models/match"
)

// buildAutomatic wires hub/learn's automatic gate templates: the Updater
// listens to ingest (so it must be built before buildMQTT), considers the
// templates the gates offer on its own goroutine, and counts the results
// in diemdanh_automatic_templates_total. It needs the template store.
func (a *App) buildAutomatic() error {
	profiles, err := modelProfiles(a.Cfg.Enrol)
	if err != nil {
		return fmt.Errorf("app: %w", err)
	}
	u, err := learn.NewUpdater(a.Cfg.Automatic, learn.AutomaticDeps{DB: a.DB, Templates: a.Mods.Templates, VoteCap: voteCap(profiles),
		Registerer: a.API.Registry, Log: a.Log.With("component", "automatic-templates"), Now: a.Now})
	if err != nil {
		return fmt.Errorf("app: %w", err)
	}
	a.Mods.Automatic = u
	a.AddEventListener(u)
	a.Go("automatic-templates", u.Run)
	return nil
}

// modelProfiles reads the distance profiles of the hub's model and of
// every enrol.candidates entry, so the automatic templates' guard follows
// an admin's switch to a candidate without a restart. A custom model
// without a valid profile is refused, naming its key.
func modelProfiles(c enrol.Config) ([]faceengine.Profiles, error) {
	base := c.EngineConfig()
	p, err := base.Profiles("enrol")
	if err != nil {
		return nil, err
	}
	all := []faceengine.Profiles{p}
	for i, cand := range c.Candidates {
		ec := base
		ec.Embedder, ec.Custom = cand.Embedder, cand.Custom
		p, err := ec.Profiles(fmt.Sprintf("enrol.candidates[%d]", i))
		if err != nil {
			return nil, err
		}
		all = append(all, p)
	}
	return all, nil
}

// voteCap gives the measured vote cap of a model (the automatic
// templates' default drift guard): a built-in embedder's constant, or a
// declared custom model's from its profile file.
func voteCap(profiles []faceengine.Profiles) func(match.ModelID) (float64, bool) {
	return func(m match.ModelID) (float64, bool) {
		for _, ps := range profiles {
			if p, ok := ps.Of(m); ok {
				return p.VoteCap, true
			}
		}
		return 0, false
	}
}

// teacherGuard is the guard on the gate templates teachers' confirmations
// make: a capture becomes a template only within the model's same-person
// limit (enrol.consistency_max when set, else the model's profile) of the
// pupil's own templates and nearer them than any other pupil's.
func teacherGuard(c enrol.Config) (*learn.Guard, error) {
	profiles, err := modelProfiles(c)
	if err != nil {
		return nil, err
	}
	same := func(m match.ModelID) (float64, bool) {
		if c.ConsistencyMax > 0 {
			return c.ConsistencyMax, true
		}
		for _, ps := range profiles {
			if p, ok := ps.Of(m); ok {
				return p.SameMax, true
			}
		}
		return 0, false
	}
	return &learn.Guard{SameMax: same, MinMargin: learn.DefaultGuardMargin}, nil
}
