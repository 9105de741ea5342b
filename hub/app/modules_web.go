package app

import (
	"context"
	"fmt"

	"github.com/diemdanh/diemdanh/hub/attendance"
	"github.com/diemdanh/diemdanh/hub/enrol"
	"github.com/diemdanh/diemdanh/hub/gallerysrv"
	"github.com/diemdanh/diemdanh/hub/learn"
	"github.com/diemdanh/diemdanh/hub/modeltrial"
	"github.com/diemdanh/diemdanh/hub/notify"
	"github.com/diemdanh/diemdanh/hub/web"
)

// buildWeb wires the web packages: the notification outbox (hub/notify) and
// the browser UI (hub/web) with its live board and the review of the faces
// the gates did not recognise (hub/learn). Both listen to ingest.
func (a *App) buildWeb(ctx context.Context) error {
	m := &a.Mods
	cfg := a.Cfg
	// Client IPs (login limits, audit) come from X-Forwarded-For only
	// behind the configured proxies; api.NewServer trusts none.
	if err := a.API.SetTrustedProxies(cfg.HTTP.TrustedProxies); err != nil {
		return fmt.Errorf("app: http.trusted_proxies: %w", err)
	}
	var err error
	if m.Notify, err = notify.New(ctx, cfg.Notify, a.DB, a.Log, a.Now); err != nil {
		return fmt.Errorf("app: %w", err)
	}
	a.AddEventListener(m.Notify)
	a.Go("notify", m.Notify.Run)

	deps := web.Deps{DB: a.DB, Log: a.Log, Now: a.Now, Sessions: m.Auth, Audit: m.Audit, Notify: m.Notify}
	if m.Gallery != nil {
		deps.OperatingPoints = m.Gallery // /admin/operating-point
		deps.Candidates = m.Gallery      // /admin/candidates
	}
	if m.Attendance != nil {
		att := m.Attendance
		deps.Attendance = web.OverrideFunc(func(ctx context.Context, pupil, day, status, reason, actor string) error {
			_, err := att.AddOverride(ctx, pupil, day, status, reason, actor)
			return err
		})
	}
	if m.Attendance != nil {
		deps.Days = m.Attendance // one rule for the day's status: daily_attendance
	}
	// School set-up pages: the same stores as the API (nil interfaces stay nil).
	deps.Roster = m.Roster
	if m.Templates != nil {
		deps.Templates = m.Templates
	}
	if m.Consent != nil {
		deps.Consent = m.Consent
	}
	if m.FaceReview != nil && m.Attendance != nil {
		// The board's faces the gates did not recognise: "this is
		// <pupil>" marks attendance and teaches the gates (hub/learn).
		guard, err := teacherGuard(cfg.Enrol)
		if err != nil {
			return fmt.Errorf("app: %w", err)
		}
		c, err := learn.NewConfirmer(learn.ConfirmDeps{Review: m.FaceReview, Attendance: m.Attendance, Templates: m.Templates,
			Audit: m.Audit, Log: a.Log.With("component", "learn"), Guard: guard})
		if err != nil {
			return fmt.Errorf("app: %w", err)
		}
		deps.Faces, deps.Learn = m.FaceReview, webLearner{c}
	}
	if m.Enrol != nil {
		deps.Feedback = enrol.WebFeedback{S: m.Enrol}
		deps.Enroller = enrol.WebEnroller{S: m.Enrol}
		deps.Reviewer = enrol.WebReview{S: m.Enrol}
	}
	if err := a.buildModelTrial(&deps); err != nil {
		return err
	}
	if m.Web, err = web.New(cfg.Web, deps); err != nil {
		return fmt.Errorf("app: %w", err)
	}
	a.AddEventListener(m.Web)
	a.Go("web-live", func(ctx context.Context) error {
		m.Web.Start(ctx)
		<-ctx.Done()
		return nil
	})
	if m.Enrol != nil {
		m.Enrol.OnFeedback(func(ctx context.Context, _, pupil string) { m.Web.PupilChanged(ctx, pupil) })
	}
	if m.Attendance != nil {
		// Overrides through the JSON API, the cut-off check and the
		// attendance worker's recomputes reach open boards at once.
		m.Attendance.OnChange(func(ctx context.Context, d attendance.Day) { m.Web.PupilChanged(ctx, d.PupilID) })
	}
	m.Web.Routes(a.API.Engine)
	return nil
}

// webLearner adapts hub/learn's Confirmer to the board (web.FaceLearner).
type webLearner struct{ c *learn.Confirmer }

func (l webLearner) Confirm(ctx context.Context, face int64, pupil, actor, ip string) (web.FaceConfirmation, error) {
	r, err := l.c.Confirm(ctx, face, pupil, actor, ip)
	return web.FaceConfirmation{Day: r.Day, Present: r.Present, Status: r.Status, TemplateID: r.TemplateID, NoTemplate: r.NoTemplate}, err
}

func (l webLearner) NotMine(ctx context.Context, face int64, class, actor string) (bool, error) {
	return l.c.NotMine(ctx, face, class, actor)
}

// buildModelTrial wires "try before you switch" (hub/modeltrial) behind
// the operating-point page: the hub's models from hub/enrol, the kept
// photos from the template store, the calibrated point at
// gallery.target_far.
func (a *App) buildModelTrial(deps *web.Deps) error {
	m := &a.Mods
	if m.Enrol == nil || m.Templates == nil {
		return nil
	}
	far := a.Cfg.Gallery.TargetFAR
	if far == 0 {
		far = gallerysrv.DefaultTargetFAR
	}
	r, err := modeltrial.New(enrol.TrialModels{S: m.Enrol}, m.Templates, m.Audit, modeltrial.Config{TargetFAR: far},
		a.Log.With("component", "modeltrial"), a.Now)
	if err != nil {
		return fmt.Errorf("app: %w", err)
	}
	a.Go("model-trial", r.Run)
	deps.ModelTrial = r
	return nil
}
