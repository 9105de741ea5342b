package web

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/gin-gonic/gin"

	"github.com/diemdanh/diemdanh/hub/api"
	"github.com/diemdanh/diemdanh/hub/auth"
	"github.com/diemdanh/diemdanh/hub/consent"
	"github.com/diemdanh/diemdanh/hub/facetemplates"
	"github.com/diemdanh/diemdanh/hub/gallerysrv"
	"github.com/diemdanh/diemdanh/hub/roster"
)

// School setup pages (/admin/school/…): classes, pupils, guardians, staff
// accounts, CSV imports and a pupil's page. Every action calls the domain
// function the JSON API calls (hub/roster's Store, hub/auth's account
// administration, hub/gallerysrv's candidate restriction) with the same
// permission check (hub/auth's Allowed: a school's admin only in their
// school, a hub-wide admin everywhere) and so the same audit entries;
// handlers only read forms and render.

// Accounts is hub/auth's account administration (auth.Service implements it).
type Accounts interface {
	CreateAccount(ctx context.Context, actor string, n auth.NewAccount) (auth.Account, string, error)
	ListAccounts(ctx context.Context) ([]auth.Account, error)
	AssignClass(ctx context.Context, actor, staffID, classID string, assign bool) error
	SetActive(ctx context.Context, actor, username string, active bool) error
	// ResetPassword gives username a new one-time password (scoped to
	// actor's school, audited, the account's sessions ended).
	ResetPassword(ctx context.Context, actor *auth.Principal, username, ip string) (string, error)
	// Classes lists the classes a teacher (StaffID) sees: homeroom and assigned.
	Classes(ctx context.Context, p *auth.Principal) ([]string, error)
}

// Policy is hub/auth's scope rule (auth.Service.Allowed implements it).
type Policy interface {
	Allowed(ctx context.Context, p *auth.Principal, a api.Access) error
}

// ConsentReader reads a pupil's consent (hub/consent's Registry).
type ConsentReader interface {
	Current(ctx context.Context, pupilID string) (*consent.Consent, error)
	History(ctx context.Context, pupilID string) ([]consent.Consent, error)
}

// TemplateLister lists a pupil's face templates without their secrets
// (hub/facetemplates' Store).
type TemplateLister interface {
	List(ctx context.Context, pupilID string) ([]facetemplates.Info, error)
}

// CandidateImporter imports class sessions or gate classes from CSV
// (hub/gallerysrv's Server; Deps.Candidates when it implements it).
type CandidateImporter interface {
	ImportCandidatesCSV(ctx context.Context, actor, ip, school string, r io.Reader) (gallerysrv.CandidateImport, error)
}

// withSchoolDeps fills the school pages' collaborators left nil: a roster
// store over DB (telling the gallery server of changes when Candidates is
// one), hub/auth's accounts and policy from Sessions, a read-only consent
// registry. Templates stay nil (the pupil page says so).
func withSchoolDeps(d Deps) Deps {
	if d.Roster == nil {
		d.Roster = roster.New(d.DB, d.Log, d.Now)
		if ch, ok := d.Candidates.(interface{ Changed(context.Context, string) }); ok {
			d.Roster.Subscribe(ch.Changed)
		}
	}
	if a, ok := d.Sessions.(Accounts); ok && d.Accounts == nil {
		d.Accounts = a
	}
	if p, ok := d.Sessions.(Policy); ok && d.Policy == nil {
		d.Policy = p
	}
	if d.Consent == nil {
		d.Consent = consent.New(d.DB, nil, d.Audit, d.Log, d.Now)
	}
	return d
}

// schoolRoutes registers the school setup pages under a (/admin, admins).
func (s *Server) schoolRoutes(a gin.IRouter) {
	a.GET("/school", s.schoolPick)
	g := a.Group("/school/:school", s.schoolScope)
	g.GET("", s.schoolHome)
	g.GET("/classes", s.classesPage)
	g.POST("/classes", s.csrf, s.classSave)
	g.GET("/classes/:class", s.classPage)
	g.POST("/classes/:class", s.csrf, s.classSave)
	g.GET("/pupils", s.pupilsPage)
	g.POST("/pupils", s.csrf, s.pupilCreate)
	g.GET("/pupils/:pupil", s.pupilPage)
	g.POST("/pupils/:pupil", s.csrf, s.pupilUpdate)
	g.POST("/pupils/:pupil/guardians", s.csrf, s.guardianAdd)
	g.GET("/staff", s.staffPage)
	g.POST("/staff", s.csrf, s.staffCreate)
	g.POST("/staff/:staff/account", s.csrf, s.staffAccount)
	g.POST("/staff/:staff/active", s.csrf, s.staffActive)
	g.POST("/staff/:staff/reset-password", s.csrf, s.staffResetPassword)
	g.POST("/staff/:staff/classes", s.csrf, s.staffClasses)
	g.GET("/import", s.importPage)
	g.POST("/import/pupils", s.uploadLimit, s.csrf, s.importPupils)
	g.POST("/import/candidates", s.uploadLimit, s.csrf, s.importCandidates)
}

const keySchool = "diemdanh.web.school"

// schoolResource is what a school page is about, for the policy.
func schoolResource(route string) string {
	rest := strings.TrimPrefix(route, "/admin/school/:school")
	switch {
	case strings.HasPrefix(rest, "/classes"):
		return "classes"
	case strings.HasPrefix(rest, "/pupils/:pupil/guardians"):
		return "guardians"
	case strings.HasPrefix(rest, "/pupils"), strings.HasPrefix(rest, "/import"):
		return "pupils"
	case strings.HasPrefix(rest, "/staff"):
		return "staff"
	}
	return "schools"
}

// allowed asks hub/auth's policy; without one every school page refuses.
func (s *Server) allowed(ctx context.Context, p *auth.Principal, a api.Access) error {
	if s.d.Policy == nil || p == nil {
		return api.ErrForbidden
	}
	return s.d.Policy.Allowed(ctx, p, a)
}

// schoolScope checks the caller may read (GET) or write (else) :school —
// before looking it up, so another school's admin learns nothing — and
// loads it.
func (s *Server) schoolScope(c *gin.Context) {
	ctx := c.Request.Context()
	id := c.Param("school")
	action := api.ActionWrite
	if c.Request.Method == http.MethodGet {
		action = api.ActionRead
	}
	if err := s.allowed(ctx, principal(c), api.Access{Action: action, Resource: schoolResource(c.FullPath()), SchoolID: id}); err != nil {
		s.failErr(c, err)
		return
	}
	sc, err := s.d.Roster.School(ctx, id)
	if err != nil {
		s.failErr(c, err)
		return
	}
	c.Set(keySchool, sc)
	// The roster writes of these pages are audited as the admin, from the
	// client's address (as the JSON API's are).
	c.Request = c.Request.WithContext(roster.WithActor(ctx, principal(c).ActorID(), c.ClientIP()))
	c.Next()
}

func schoolOf(c *gin.Context) roster.School { v, _ := c.Get(keySchool); return v.(roster.School) }

// uploadLimit bounds an upload before the CSRF check reads the form.
func (s *Server) uploadLimit(c *gin.Context) {
	c.Request.Body = http.MaxBytesReader(c.Writer, c.Request.Body, roster.MaxCSVBytes+64<<10)
	c.Next()
}

// schoolPick sends a school's admin to their school and lists every
// school for a hub-wide admin.
func (s *Server) schoolPick(c *gin.Context) {
	p := principal(c)
	if p.SchoolID != "" {
		c.Redirect(http.StatusSeeOther, "/admin/school/"+url.PathEscape(p.SchoolID))
		return
	}
	if err := s.allowed(c.Request.Context(), p, api.Access{Action: api.ActionRead, Resource: "schools"}); err != nil {
		s.failErr(c, err)
		return
	}
	all, err := s.d.Roster.Schools(c.Request.Context())
	if err != nil {
		s.failErr(c, err)
		return
	}
	s.render(c, http.StatusOK, "school_pick", s.newPage(c, "sa.pick_title", all))
}

// SchoolNav is the school pages' heading and tabs.
type SchoolNav struct {
	School roster.School
	Tab    string // home, classes, pupils, staff, import
}

// Tabs lists the tabs in order.
func (SchoolNav) Tabs() []string { return []string{"home", "classes", "pupils", "staff", "import"} }

// TabURL is the address of tab t.
func (n SchoolNav) TabURL(t string) string {
	base := "/admin/school/" + url.PathEscape(n.School.ID)
	if t == "home" {
		return base
	}
	return base + "/" + t
}

// SchoolHome is the school's setup overview.
type SchoolHome struct {
	SchoolNav
	Classes, Pupils, Staff int
}

func (s *Server) schoolHome(c *gin.Context) {
	ctx := c.Request.Context()
	sc := schoolOf(c)
	d := &SchoolHome{SchoolNav: SchoolNav{School: sc, Tab: "home"}}
	cls, err := s.d.Roster.Classes(ctx, sc.ID)
	if err != nil {
		s.failErr(c, err)
		return
	}
	pupils, err := s.d.Roster.Pupils(ctx, sc.ID, roster.PupilFilter{ActiveOnly: true})
	if err != nil {
		s.failErr(c, err)
		return
	}
	staff, err := s.d.Roster.StaffList(ctx, sc.ID)
	if err != nil {
		s.failErr(c, err)
		return
	}
	d.Classes, d.Pupils, d.Staff = len(cls), len(pupils), len(staff)
	pg := s.newPage(c, "sa.home_title", d)
	pg.Title = pg.Tr("sa.home_title", "school", sc.Name)
	s.render(c, http.StatusOK, "school_home", pg)
}

// FormErr is a refused form: the field and the message shown by it.
type FormErr struct{ Field, Msg string }

// formError turns a domain refusal into the message shown on form: a
// translated one where the catalogue has it (sa.err.<form>.<field>, for
// a conflict sa.err.<form>.conflict[_<field>] or sa.err.conflict), else
// the domain's own. ok is false for an error that is not a refusal of
// input.
func formError(pg *page, err error, form string) (FormErr, int, bool) {
	var ae *api.Error
	if !errors.As(err, &ae) || ae.Code == api.CodeInternal || ae.Code == api.CodeUnavailable || ae.Code == api.CodeForbidden {
		return FormErr{}, 0, false
	}
	fe := FormErr{Field: ae.Field, Msg: ae.Message}
	keys := []string{"sa.err." + form + "." + ae.Field}
	if ae.Code == api.CodeConflict {
		k := "sa.err." + form + ".conflict"
		if ae.Field != "" {
			k += "_" + ae.Field
		}
		keys = []string{k, "sa.err.conflict"}
	}
	for _, k := range keys {
		if t := pg.T(k); t != k {
			fe.Msg = t
			break
		}
	}
	return fe, api.CodeOf(err).Status(), true
}

// schoolURL is the address of a school page.
func schoolURL(school string, parts ...string) string {
	u := "/admin/school/" + url.PathEscape(school)
	for _, p := range parts {
		u += "/" + url.PathEscape(p)
	}
	return u
}
