package app

import (
	"context"
	"fmt"

	"github.com/diemdanh/diemdanh/hub/attendance"
	"github.com/diemdanh/diemdanh/hub/backup"
	"github.com/diemdanh/diemdanh/hub/gallerysrv"
	"github.com/diemdanh/diemdanh/hub/ingest"
	"github.com/diemdanh/diemdanh/hub/roster"
	"github.com/diemdanh/diemdanh/hub/templates"
)

// Modules holds every component the hub runs. Helpers add a field for
// their component here and its construction in buildModules (small,
// additive edits; keep the order: data first, then producers, then
// consumers).
type Modules struct {
	Roster     *roster.Store
	Templates  *templates.Store // encrypted face templates (ENROL's package)
	Gallery    *gallerysrv.Server
	Attendance *attendance.Service
	Backup     *backup.Backuper

	// listeners are told about every stored event; the ingest wiring
	// passes them to ingest.AddListener (see AddEventListener).
	listeners []ingest.Listener
}

// AddEventListener registers an ingest listener (attendance, live board,
// notifications, city sync). The ingest wiring adds all of them to the
// Ingester with EventListeners().
func (a *App) AddEventListener(l ingest.Listener) { a.Mods.listeners = append(a.Mods.listeners, l) }

// EventListeners returns the registered listeners.
func (a *App) EventListeners() []ingest.Listener { return a.Mods.listeners }

// buildModules constructs and wires the components. Each component:
//   - gets a.DB, a.Log, a.Now and its own section of a.Cfg;
//   - registers routes on a.API.V1 (JSON API) or a.API.Engine (pages) and
//     its OpenAPI paths with a.API.AddPaths;
//   - registers background loops with a.Go and shutdown steps with
//     a.OnStop(phase, …);
//   - registers ingest listeners with a.AddEventListener.
func (a *App) buildModules(ctx context.Context) error {
	m := &a.Mods
	cfg := a.Cfg

	// ---- data: roster and templates
	m.Roster = roster.New(a.DB, a.Log.With("component", "roster"), a.Now)
	key, err := templates.LoadKey(cfg.Templates.KeyFile)
	if err != nil {
		return fmt.Errorf("app: %w", err)
	}
	if m.Templates, err = templates.Open(a.DB, key, a.Log.With("component", "templates"), a.Now); err != nil {
		return fmt.Errorf("app: %w", err)
	}

	// ---- gallery distribution (announcer set by the broker wiring below:
	// m.Gallery.SetAnnouncer(broker))
	m.Gallery = gallerysrv.New(a.DB, m.Templates, nil, cfg.Gallery, a.Log.With("component", "gallery"), a.Now)
	m.Roster.Subscribe(m.Gallery.Changed)
	m.Templates.Subscribe(func(school string, _ int64) { m.Gallery.Changed(ctx, school) })
	a.Go("gallery", m.Gallery.Run)

	// ---- attendance
	m.Attendance = attendance.New(a.DB, cfg.Attendance, a.Log.With("component", "attendance"), a.Now)
	a.AddEventListener(m.Attendance)
	a.Go("attendance", m.Attendance.Run)

	// ---- backup
	m.Backup = backup.New(a.DB, cfg.Backup, a.Log.With("component", "backup"), a.Now)
	a.Go("backup", m.Backup.Run)

	// ---- HUB-B: broker + ingest here (ingest.AddListener for each of
	// a.EventListeners(), m.Gallery.SetAnnouncer(broker), OnStop hooks:
	// PhaseStopAccepting broker listeners, PhaseDrain ingest,
	// PhaseCloseBroker broker).

	// ---- routes
	for _, p := range [][]byte{roster.OpenAPIPaths(), attendance.OpenAPIPaths(), gallerysrv.OpenAPIPaths()} {
		if err := a.API.AddPaths(p); err != nil {
			return err
		}
	}
	m.Roster.Routes(a.API.V1)
	m.Attendance.Routes(a.API.V1)
	m.Gallery.Routes(a.API.V1)
	return nil
}
