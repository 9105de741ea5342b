// Package web is the hub's browser UI: server-rendered pages
// (html/template, embedded templates, static files and an i18n catalogue,
// Vietnamese by default, English by switch) for teachers (live class
// board over Server-Sent Events, manual corrections, history, term
// summary, CSV and printable exports, the faces the gates did not
// recognise with "this is <pupil>" and "not my pupil"), admins (all
// classes, gate health, quarantine, enrolment with photo upload or the
// browser camera) and parents (their own children only, notification
// preferences, Web Push).
//
// Accounts, sessions and roles come from hub/auth; every status shown is
// hub/attendance's (DayStatus: daily_attendance, one rule); manual attendance
// changes go through an AttendanceWriter (hub/attendance), "not this
// pupil" through a Feedback (hub/enrol), enrolment through an Enroller
// (hub/enrol). Live updates are fed by hub/ingest: Server implements
// ingest.Listener.
//
// Every state-changing request carries the session's CSRF token (form
// field csrf_token or header X-CSRF-Token); pages send a strict Content
// Security Policy (no inline script) and declare UTF-8.
package web

import (
	"context"
	"embed"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/diemdanh/diemdanh/hub/attendance"
	"github.com/diemdanh/diemdanh/hub/audit"
	"github.com/diemdanh/diemdanh/hub/auth"
	"github.com/diemdanh/diemdanh/hub/breach"
	"github.com/diemdanh/diemdanh/hub/notify"
	"github.com/diemdanh/diemdanh/hub/roster"
	"github.com/diemdanh/diemdanh/hub/store"
	"github.com/diemdanh/diemdanh/models/conf"
)

//go:embed templates/*.html
var templatesFS embed.FS

//go:embed static
var staticFS embed.FS

// Config is the web section of the hub config.
type Config struct {
	// CookieSecure marks the session cookie Secure. Browsers accept Secure
	// cookies on http://localhost and 127.0.0.1, so it stays on in tests.
	CookieSecure bool `yaml:"cookie_secure"`
	// DefaultLang is vi or en.
	DefaultLang string `yaml:"default_lang"`
	// HistoryDays is how far back the parents' portal shows.
	HistoryDays int `yaml:"history_days"`
	// MaxUpload is the most bytes one enrolment upload may carry.
	MaxUpload int64 `yaml:"max_upload"`
	// SSEClientBuffer is the per-client queue; a client that falls this
	// far behind is disconnected (its browser reconnects and reloads).
	SSEClientBuffer int `yaml:"sse_client_buffer"`
}

// Default returns the defaults.
func Default() Config {
	return Config{CookieSecure: true, DefaultLang: "vi", HistoryDays: 30, MaxUpload: 60 << 20, SSEClientBuffer: 256}
}

// Validate names the first bad field under prefix (e.g. "web.").
func (c Config) Validate(prefix string) error {
	switch {
	case c.DefaultLang != "vi" && c.DefaultLang != "en":
		return conf.Fieldf(prefix+"default_lang", "must be vi or en, got %q", c.DefaultLang)
	case c.HistoryDays < 1 || c.HistoryDays > 366:
		return conf.Fieldf(prefix+"history_days", "must be 1..366")
	case c.MaxUpload < 1<<20:
		return conf.Fieldf(prefix+"max_upload", "must be at least 1 MiB")
	case c.SSEClientBuffer < 1:
		return conf.Fieldf(prefix+"sse_client_buffer", "must be positive")
	}
	return nil
}

// Sessions is what the UI needs from hub/auth (auth.Service implements it).
type Sessions interface {
	Login(ctx context.Context, username, password, ip string) (string, *auth.Principal, error)
	Session(ctx context.Context, tok string) (*auth.Principal, error)
	Logout(ctx context.Context, tok string, p *auth.Principal, ip string) error
	ChangePassword(ctx context.Context, p *auth.Principal, old, newPw, ip, keepToken string) error
}

// AttendanceWriter records a manual correction (hub/attendance). The
// default writes attendance_overrides directly.
type AttendanceWriter interface {
	Override(ctx context.Context, pupilID, day, status, reason, actor string) error
}

// OverrideFunc adapts a function (e.g. hub/attendance's AddOverride) to
// AttendanceWriter; the UI then audits the change itself.
type OverrideFunc func(ctx context.Context, pupilID, day, status, reason, actor string) error

// Override implements AttendanceWriter.
func (f OverrideFunc) Override(ctx context.Context, pupilID, day, status, reason, actor string) error {
	return f(ctx, pupilID, day, status, reason, actor)
}

// Feedback records "not this pupil" on a recognition (hub/enrol's
// negative feedback). The default marks the event rejected and records it.
type Feedback interface {
	NotThisPupil(ctx context.Context, eventID, reason, actor string) error
}

// DayStatus is hub/attendance's computation of a pupil's day — the one
// rule for present/late/absent/not_yet/excused (attendance.Service
// implements it). The board, exports, term summary and parents' portal
// show what it stores in daily_attendance.
type DayStatus interface {
	Recompute(ctx context.Context, pupilID, day string) (attendance.Day, error)
	ClassPupilDays(ctx context.Context, classID, day, pupilID string) ([]attendance.PupilDay, error)
}

// PhotoVerdict is the result of one enrolment photo.
type PhotoVerdict struct {
	File     string   `json:"file"`
	Status   string   `json:"status"` // enrolled, rejected, review
	Reasons  []string `json:"reasons,omitempty"`
	CropJPEG []byte   `json:"crop_jpeg,omitempty"` // the accepted face crop
}

// Enroller enrols photos of a pupil (hub/enrol). Nil disables the page.
type Enroller interface {
	EnrolPhotos(ctx context.Context, pupilID string, files []string, photos [][]byte, actor, ip string) ([]PhotoVerdict, error)
}

// Deps are the collaborators of the UI. DB, Sessions are required.
type Deps struct {
	DB         *store.DB
	Log        *slog.Logger
	Now        func() time.Time
	Sessions   Sessions
	Audit      *audit.Log
	Attendance AttendanceWriter
	Days       DayStatus // nil: an attendance.Service on DB with default settings (its worker not run)
	Feedback   Feedback
	Enroller   Enroller
	Reviewer   Reviewer         // nil: the review page shows feedback only
	Notify     *notify.Notifier // nil: preferences page without push
	// OperatingPoints (hub/gallerysrv) feeds /admin/operating-point; nil:
	// the page says it is unavailable.
	OperatingPoints OperatingPoints
	// Candidates (hub/gallerysrv) feeds /admin/candidates; nil: the page
	// says it is unavailable.
	Candidates Candidates
	// ModelTrial (hub/modeltrial) feeds /admin/model-trial; nil: the page
	// says it is unavailable.
	ModelTrial ModelTrial
	// School setup pages (/admin/school/…, school_admin.go). Nil Roster:
	// a roster.Store over DB; nil Accounts, Policy: Sessions when it
	// implements them (auth.Service does); nil Consent: hub/consent's
	// registry over DB (read only); nil Templates: the pupil's page says
	// templates are unavailable.
	Roster    *roster.Store
	Accounts  Accounts
	Policy    Policy
	Consent   ConsentReader
	Templates TemplateLister
	// Faces (hub/facereview) and Learn (hub/learn) put the faces the
	// gates did not decide on the class board (faces.go); nil either: the
	// board has no such section.
	Faces FaceReview
	Learn FaceLearner
	// Breaches (hub/breach) is the breach register of /admin/breaches and
	// the overview's 72-hour clocks; nil: a register over DB and Audit.
	Breaches *breach.Register
}

// Server serves the pages and the live feed.
type Server struct {
	cfg   Config
	d     Deps
	log   *slog.Logger
	now   func() time.Time
	tmpl  map[string]*template.Template
	cat   *Catalogue
	live  *Live
	files http.Handler
	// auditOverrides: the AttendanceWriter does not audit, the UI does.
	auditOverrides bool
}

// New builds the UI. Call Start to run the live-update worker.
func New(cfg Config, d Deps) (*Server, error) {
	if err := cfg.Validate("web."); err != nil {
		return nil, err
	}
	if d.DB == nil || d.Sessions == nil {
		return nil, fmt.Errorf("web: DB and Sessions are required")
	}
	if d.Log == nil {
		d.Log = slog.New(slog.DiscardHandler)
	}
	if d.Now == nil {
		d.Now = time.Now
	}
	if d.Audit == nil {
		d.Audit = audit.New(d.DB, d.Log, d.Now)
	}
	auditOverrides := d.Attendance != nil
	if d.Attendance == nil {
		d.Attendance = &sqlOverrides{db: d.DB, audit: d.Audit, now: d.Now}
	}
	if d.Days == nil {
		d.Days = attendance.New(d.DB, attendance.Default(), d.Log, d.Now)
	}
	if d.Feedback == nil {
		d.Feedback = &sqlFeedback{db: d.DB, audit: d.Audit, now: d.Now}
	}
	if d.Breaches == nil {
		d.Breaches = breach.NewRegister(d.DB, d.Audit, d.Now)
	}
	d = withSchoolDeps(d)
	cat, err := LoadCatalogue()
	if err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, d: d, log: d.Log.With("component", "web"), now: d.Now, cat: cat, auditOverrides: auditOverrides}
	if s.tmpl, err = s.parseTemplates(); err != nil {
		return nil, err
	}
	sub, _ := fs.Sub(staticFS, "static")
	s.files = http.StripPrefix("/static/", http.FileServer(http.FS(sub)))
	s.live = NewLive(s, cfg.SSEClientBuffer)
	return s, nil
}

// Live returns the live-update hub (for benchmarks).
func (s *Server) Live() *Live { return s.live }

// Start runs the live-update worker until ctx ends.
func (s *Server) Start(ctx context.Context) { s.live.Start(ctx) }

// Routes registers every page on r (the hub's root engine).
func (s *Server) Routes(r gin.IRouter) {
	r.GET("/static/*file", func(c *gin.Context) {
		c.Header("Cache-Control", "public, max-age=3600")
		s.files.ServeHTTP(c.Writer, c.Request)
	})
	r.GET("/sw.js", s.serviceWorker)
	g := r.Group("/", s.secure, s.session)
	g.GET("/", s.home)
	g.GET("/login", s.loginPage)
	g.POST("/login", s.loginSubmit)
	g.GET("/lang/:code", s.setLang)
	g.POST("/logout", s.require(), s.csrf, s.logout)
	g.GET("/password", s.require(), s.passwordPage)
	g.POST("/password", s.require(), s.csrf, s.passwordSubmit)

	t := g.Group("/teacher", s.require(auth.RoleTeacher, auth.RoleAdmin))
	t.GET("", s.teacherHome)
	t.GET("/class/:class", s.classScope, s.board)
	t.GET("/class/:class/live", s.classScope, s.liveFeed)
	t.GET("/class/:class/day.csv", s.classScope, s.exportDayCSV)
	t.GET("/class/:class/day/print", s.classScope, s.printDay)
	t.GET("/class/:class/term", s.classScope, s.term)
	t.GET("/class/:class/term.csv", s.classScope, s.exportTermCSV)
	t.GET("/class/:class/term/print", s.classScope, s.printTerm)
	t.POST("/class/:class/override", s.classScope, s.csrf, s.override)
	t.POST("/class/:class/reject", s.classScope, s.csrf, s.reject)
	t.GET("/crop/:event", s.crop)
	t.GET("/class/:class/faces/:face/crop", s.classScope, s.faceCrop)
	t.POST("/class/:class/faces/:face/confirm", s.classScope, s.csrf, s.faceConfirm)
	t.POST("/class/:class/faces/:face/dismiss", s.classScope, s.csrf, s.faceDismiss)

	a := g.Group("/admin", s.require(auth.RoleAdmin))
	a.GET("", s.adminOverview)
	a.GET("/enrol", s.enrolPage)
	a.POST("/enrol", s.csrf, s.enrolSubmit)
	a.GET("/review", s.reviewPage)
	a.POST("/review/:tid/approve", s.csrf, s.reviewDecide(true))
	a.POST("/review/:tid/reject", s.csrf, s.reviewDecide(false))
	a.GET("/review/:tid/photo", s.reviewPhoto)
	a.GET("/operating-point", s.operatingPointPage)
	a.GET("/model-trial", s.modelTrialPage)
	a.POST("/model-trial/start", s.csrf, s.modelTrialAction("start"))
	a.POST("/model-trial/cancel", s.csrf, s.modelTrialAction("cancel"))
	a.POST("/model-trial/switch", s.csrf, s.modelTrialAction("switch"))
	a.GET("/candidates", s.candidatesPage)
	a.POST("/candidates", s.csrf, s.candidatesSave)
	s.schoolRoutes(a) // /admin/school/…: classes, pupils, staff, CSV imports (school_admin.go)
	s.breachRoutes(a) // /admin/breaches: the breach register (breach.go)

	p := g.Group("/parent", s.require(auth.RoleParent))
	p.GET("", s.parentHome)
	p.POST("/prefs", s.csrf, s.parentPrefs)
	p.POST("/push", s.csrf, s.parentPush)
	p.GET("/withdraw/:pupil", s.parentWithdrawPage) // parent_withdraw.go
	p.POST("/withdraw/:pupil", s.csrf, s.parentWithdraw)
}
