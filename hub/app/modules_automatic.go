package app

import (
	"fmt"

	"github.com/diemdanh/diemdanh/hub/learn"
	"github.com/diemdanh/diemdanh/models/faceengine"
	"github.com/diemdanh/diemdanh/models/match"
)

// buildAutomatic wires hub/learn's automatic gate templates: the Updater
// listens to ingest (so it must be built before buildMQTT), considers the
// templates the gates offer on its own goroutine, and counts the results
// in diemdanh_automatic_templates_total. It needs the template store.
func (a *App) buildAutomatic() error {
	profiles, err := a.Cfg.Enrol.EngineConfig().Profiles("enrol")
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

// voteCap gives the measured vote cap of a model (the automatic
// templates' default drift guard): a built-in embedder's constant, or the
// enrol.custom model's from its profile file.
func voteCap(profiles faceengine.Profiles) func(match.ModelID) (float64, bool) {
	return func(m match.ModelID) (float64, bool) {
		p, ok := profiles.Of(m)
		return p.VoteCap, ok
	}
}
