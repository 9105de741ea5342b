package app

import (
	"context"
	"fmt"
	"time"

	"github.com/diemdanh/diemdanh/hub/attendance"
	"github.com/diemdanh/diemdanh/hub/backup"
	"github.com/diemdanh/diemdanh/hub/breach"
	"github.com/diemdanh/diemdanh/hub/citysync"
	"github.com/diemdanh/diemdanh/hub/facereview"
	"github.com/diemdanh/diemdanh/hub/facetemplates"
	"github.com/diemdanh/diemdanh/hub/gallerysrv"
	"github.com/diemdanh/diemdanh/hub/ingest"
	"github.com/diemdanh/diemdanh/hub/learn"
	"github.com/diemdanh/diemdanh/hub/roster"

	"github.com/diemdanh/diemdanh/hub/audit"
	"github.com/diemdanh/diemdanh/hub/auth"
	"github.com/diemdanh/diemdanh/hub/consent"
	"github.com/diemdanh/diemdanh/hub/enrol"

	"github.com/diemdanh/diemdanh/hub/notify"
	"github.com/diemdanh/diemdanh/hub/web"
)

// Modules holds every component the hub runs. Helpers add a field for
// their component here and its construction in buildModules (small,
// additive edits; keep the order: data first, then producers, then
// consumers).
type Modules struct {
	Roster     *roster.Store
	Templates  *facetemplates.Store // encrypted face templates
	Audit      *audit.Log           // append-only audit log
	Auth       *auth.Service        // accounts, sessions, access control
	Consent    *consent.Registry    // consent registry
	Enrol      *enrol.Service       // the one enrolment path (API, web page, CLI)
	Gallery    *gallerysrv.Server
	Attendance *attendance.Service
	Backup     *backup.Backuper
	Web        *web.Server       // pages and the live board (see modules_web.go)
	Notify     *notify.Notifier  // notification outbox
	MQTT       *MQTTModule       // ingest + broker (see modules_mqtt.go)
	CitySync   *citysync.Worker  // city database sync, nil when off (modules_citysync.go)
	FaceReview *facereview.Store // unrecognised faces for review (modules_facereview.go)
	Automatic  *learn.Updater    // automatic gate templates from the gates' offers (modules_automatic.go)

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
	key, err := facetemplates.LoadKey(cfg.Templates.KeyFile)
	if err != nil {
		return fmt.Errorf("app: %w", err)
	}
	if m.Templates, err = facetemplates.Open(a.DB, key, a.Log.With("component", "templates"), a.Now); err != nil {
		return fmt.Errorf("app: %w", err)
	}
	// One model for the hub's engine, its templates and the galleries it
	// serves (enrol.embedder, or the candidate an admin switched to; the
	// gates' engine.embedder must match).
	if ec, chosen, err := enrol.ApplyChoice(ctx, a.DB, cfg.Enrol); err != nil {
		return fmt.Errorf("app: %w", err)
	} else if chosen != "" {
		a.Log.Info("the hub runs the model an admin switched to, not enrol.embedder", "candidate", chosen)
		a.Cfg.Enrol, cfg.Enrol = ec, ec
	}
	model, _ := cfg.Enrol.EngineConfig().Model()
	m.Templates.SetModel(model)
	if err := m.Templates.SetGateConfig(cfg.Templates.Gate); err != nil {
		return fmt.Errorf("app: %w", err)
	}
	a.Go("gate-templates-purge", m.Templates.RunPurge)

	// ---- audit, accounts and access control (installed before any
	// route below: gin copies middleware into routes when they are added),
	// consent, enrolment, retention.
	if err := a.buildEnrol(ctx); err != nil {
		return err
	}
	if err := a.buildFaceReview(key); err != nil {
		return err
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

	// ---- notifications, pages, live board (modules_web.go); before
	// the ingest wiring so their listeners are registered in time.
	if err := a.buildWeb(ctx); err != nil {
		return err
	}

	// ---- city database sync (modules_citysync.go; off without a dsn)
	if err := a.buildCitySync(ctx); err != nil {
		return err
	}

	// ---- automatic gate templates (modules_automatic.go; an ingest
	// listener, so before the ingest wiring)
	if err := a.buildAutomatic(); err != nil {
		return err
	}

	// ---- broker + ingest (modules_mqtt.go; started by Run)
	if err := a.buildMQTT(ctx); err != nil {
		return err
	}

	// ---- routes
	for _, p := range [][]byte{roster.OpenAPIPaths(), attendance.OpenAPIPaths(), gallerysrv.OpenAPIPaths(), consent.OpenAPIPaths(),
		breach.OpenAPIPaths()} {
		if err := a.API.AddPaths(p); err != nil {
			return err
		}
	}
	m.Roster.Routes(a.API.V1)
	m.Attendance.Routes(a.API.V1)
	m.Gallery.Routes(a.API.V1)
	breach.NewRegister(a.DB, m.Audit, a.Now).Routes(a.API.V1) // the breach register (its page: hub/web)
	return nil
}

// buildEnrol wires the enrolment and privacy packages (hub/audit, hub/auth, hub/consent,
// hub/enrol). It must run before any route is registered.
func (a *App) buildEnrol(ctx context.Context) error {
	m := &a.Mods
	cfg := a.Cfg
	var err error
	m.Audit = audit.New(a.DB, a.Log.With("component", "audit"), a.Now)
	if m.Auth, err = auth.New(a.DB, m.Audit, cfg.Auth, a.Log.With("component", "auth"), a.Now); err != nil {
		return fmt.Errorf("app: %w", err)
	}
	a.API.SetAuthorizer(m.Auth)
	a.API.Engine.Use(m.Auth.Middleware())
	a.API.V1.Use(m.Auth.Middleware())
	if _, err := m.Auth.Bootstrap(ctx); err != nil {
		return fmt.Errorf("app: %w", err)
	}
	m.Consent = consent.New(a.DB, m.Templates, m.Audit, a.Log.With("component", "consent"), a.Now)
	eng := enrol.NewLazyEngine(cfg.Enrol.EngineConfig(), a.Log.With("component", "enrol"))
	if m.Enrol, err = enrol.New(a.DB, eng, m.Templates, m.Consent, m.Audit, cfg.Enrol, a.Log.With("component", "enrol"), a.Now); err != nil {
		eng.Close()
		return fmt.Errorf("app: %w", err)
	}
	a.OnStop(PhaseFlush, "enrol engine", func(context.Context) error { eng.Close(); m.Enrol.Close(); return nil })
	if cfg.Enrol.ReembedOnUpgrade {
		a.Go("reembed-on-upgrade", func(ctx context.Context) error {
			if _, err := m.Enrol.UpgradeTemplates(ctx); err != nil && ctx.Err() == nil {
				a.Log.Error("templates of an earlier model version were not re-embedded", "err", err)
			}
			return nil
		})
	}
	// "Not this pupil": the event stops counting; recompute that day.
	m.Enrol.OnFeedback(func(ctx context.Context, eventID, pupil string) {
		if m.Attendance == nil {
			return
		}
		var at int64
		var tz string
		if err := a.DB.R.QueryRowContext(ctx, `SELECT e.captured_at, s.timezone FROM events e JOIN schools s ON s.id = e.school_id
			WHERE e.event_id = ?`, eventID).Scan(&at, &tz); err != nil {
			return
		}
		loc, err := time.LoadLocation(tz)
		if err != nil {
			loc = time.FixedZone("ICT", 7*3600)
		}
		if _, err := m.Attendance.Recompute(ctx, pupil, time.UnixMilli(at).In(loc).Format("2006-01-02")); err != nil {
			a.Log.Warn("recompute after feedback", "pupil", pupil, "err", err)
		}
	})
	ret := audit.NewRetention(m.Audit, cfg.Audit.RetentionDays, time.Hour)
	a.Go("retention", ret.Run)
	m.Auth.Routes(a.API.V1)
	m.Consent.Routes(a.API.V1)
	m.Enrol.Routes(a.API.V1)
	m.Audit.Routes(a.API.V1, auth.Require(auth.PermAudit), func() int { return cfg.Audit.RetentionDays })
	return nil
}
