package app

import (
	"context"
	"fmt"

	"github.com/diemdanh/diemdanh/hub/citysync"
)

// buildCitySync wires the city database sync when city_sync.dsn
// (or DIEMDANH_CITYDB_DSN) is set; otherwise it does nothing, so the hub
// runs without PostgreSQL. It must run before the ingest wiring so its
// listener (a wake-up on every stored event) is registered in time.
func (a *App) buildCitySync(_ context.Context) error {
	cfg := a.Cfg.CitySync
	cfg.ApplyEnv()
	if !cfg.Enabled() {
		a.Log.Info("city sync off (no city_sync.dsn)")
		return nil
	}
	opts := []citysync.Option{citysync.WithRegisterer(a.API.Registry)}
	if a.Mods.Templates != nil {
		opts = append(opts, citysync.WithGallery(a.Mods.Templates))
	}
	w, err := citysync.New(cfg, a.DB, a.Log, a.Now, opts...)
	if err != nil {
		return fmt.Errorf("app: %w", err)
	}
	a.Mods.CitySync = w
	a.AddEventListener(w)
	a.Go("citysync", w.Run)
	a.OnStop(PhaseCloseBroker, "citysync", func(context.Context) error { w.Close(); return nil })
	return nil
}
