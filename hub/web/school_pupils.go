package web

import (
	"net/http"
	"net/url"
	"strings"

	"github.com/gin-gonic/gin"

	"github.com/diemdanh/diemdanh/hub/api"
	"github.com/diemdanh/diemdanh/hub/auth"
	"github.com/diemdanh/diemdanh/hub/roster"
)

// PupilListRow is one pupil of the pupils page.
type PupilListRow struct {
	roster.Pupil
	Class string // class name
	Born  string // date of birth, dd/mm/yyyy
}

// PupilsData is the pupils page: the list (optionally one class) and the
// create form.
type PupilsData struct {
	SchoolNav
	Classes []roster.Class
	Class   string // filter
	Pupils  []PupilListRow
	Form    roster.Pupil
	Err     FormErr
}

func (s *Server) pupilsData(c *gin.Context, class string) (*PupilsData, error) {
	ctx := c.Request.Context()
	sc := schoolOf(c)
	d := &PupilsData{SchoolNav: SchoolNav{School: sc, Tab: "pupils"}, Class: class, Form: roster.Pupil{Active: true, ClassID: class}}
	var err error
	if d.Classes, err = s.d.Roster.Classes(ctx, sc.ID); err != nil {
		return nil, err
	}
	names := map[string]string{}
	for _, x := range d.Classes {
		names[x.ID] = x.Name
	}
	pupils, err := s.d.Roster.Pupils(ctx, sc.ID, roster.PupilFilter{ClassID: class})
	if err != nil {
		return nil, err
	}
	lang := s.lang(c)
	for _, p := range pupils {
		d.Pupils = append(d.Pupils, PupilListRow{Pupil: p, Class: names[p.ClassID], Born: FormatDate(lang, p.DateOfBirth)})
	}
	return d, nil
}

func (s *Server) pupilsPage(c *gin.Context) {
	d, err := s.pupilsData(c, c.Query("class"))
	if err != nil {
		s.failErr(c, err)
		return
	}
	pg := s.newPage(c, "sa.pupils_title", d)
	if n := c.Query("saved"); n != "" {
		pg.Flash = pg.Tr("sa.pupil_saved", "name", n)
	}
	s.render(c, http.StatusOK, "school_pupils", pg)
}

// pupilForm reads the pupil form over x; the date of birth is typed
// dd/mm/yyyy (ParseDate) and stored ISO. On a bad date x keeps what was
// typed, to show it again.
func pupilForm(c *gin.Context, x roster.Pupil) (roster.Pupil, error) {
	x.FullName, x.ClassID = c.PostForm("full_name"), c.PostForm("class_id")
	x.DateOfBirth, x.Gender = strings.TrimSpace(c.PostForm("date_of_birth")), c.PostForm("gender")
	x.Active, x.ManualAttendance = c.PostForm("active") == "1", c.PostForm("manual_attendance") == "1"
	if x.DateOfBirth == "" {
		return x, nil
	}
	iso, err := ParseDate(x.DateOfBirth)
	if err != nil {
		return x, api.Invalid("date_of_birth", "%v", err)
	}
	x.DateOfBirth = iso
	return x, nil
}

// pupilCreate adds a pupil through roster.Store.PutPupil, as POST
// /schools/{id}/pupils (refused when the personal ID exists).
func (s *Server) pupilCreate(c *gin.Context) {
	ctx := c.Request.Context()
	sc := schoolOf(c)
	x, err := pupilForm(c, roster.Pupil{ID: strings.TrimSpace(c.PostForm("id")), SchoolID: sc.ID})
	if err == nil {
		err = roster.CheckPersonalID("id", x.ID)
	}
	if err == nil {
		if _, e := s.d.Roster.Pupil(ctx, x.ID); e == nil {
			err = &api.Error{Code: api.CodeConflict, Field: "id", Message: "a pupil with this personal ID already exists"}
		}
	}
	if err == nil {
		x, err = s.d.Roster.PutPupil(ctx, x)
	}
	if err != nil {
		d, derr := s.pupilsData(c, x.ClassID)
		if derr != nil {
			s.failErr(c, derr)
			return
		}
		pg := s.newPage(c, "sa.pupils_title", d)
		fe, status, ok := formError(pg, err, "pupil")
		if !ok {
			s.failErr(c, err)
			return
		}
		d.Form, d.Err, pg.Error = x, fe, fe.Msg
		s.render(c, status, "school_pupils", pg)
		return
	}
	c.Redirect(http.StatusSeeOther, schoolURL(sc.ID, "pupils")+"?class="+url.QueryEscape(x.ClassID)+"&saved="+url.QueryEscape(x.FullName))
}

// pupilInSchool loads :pupil and 404s one of another school.
func (s *Server) pupilInSchool(c *gin.Context) (roster.Pupil, bool) {
	x, err := s.d.Roster.Pupil(c.Request.Context(), c.Param("pupil"))
	if err == nil && x.SchoolID != schoolOf(c).ID {
		err = api.ErrNotFound
	}
	if err != nil {
		s.failErr(c, err)
		return x, false
	}
	return x, true
}

// pupilUpdate saves the pupil page's form (PATCH /pupils/{id}'s PutPupil).
func (s *Server) pupilUpdate(c *gin.Context) {
	old, ok := s.pupilInSchool(c)
	if !ok {
		return
	}
	x, err := pupilForm(c, old)
	if err == nil {
		x, err = s.d.Roster.PutPupil(c.Request.Context(), x)
	}
	if err != nil {
		s.pupilPageWith(c, x, "pupil", err, nil)
		return
	}
	c.Redirect(http.StatusSeeOther, schoolURL(x.SchoolID, "pupils", x.ID)+"?saved=1")
}

// guardianAdd adds a guardian to :pupil (POST /pupils/{id}/guardians's
// PutGuardian) and, when a username is given, the parent's account
// linked to it (POST /accounts's CreateAccount, audited there); its
// one-time password is shown on this answer only.
func (s *Server) guardianAdd(c *gin.Context) {
	ctx := c.Request.Context()
	p, ok := s.pupilInSchool(c)
	if !ok {
		return
	}
	g := roster.Guardian{PupilID: p.ID, FullName: c.PostForm("full_name"), Phone: c.PostForm("phone"),
		Email: c.PostForm("email"), Relation: c.PostForm("relation")}
	user := strings.TrimSpace(c.PostForm("username"))
	if user != "" && s.d.Accounts == nil {
		s.fail(c, http.StatusServiceUnavailable, "sa.accounts_unavailable")
		return
	}
	g, err := s.d.Roster.PutGuardian(ctx, g)
	if err != nil {
		s.pupilPageWith(c, p, "guardian", err, nil)
		return
	}
	if user == "" {
		c.Redirect(http.StatusSeeOther, schoolURL(p.SchoolID, "pupils", p.ID)+"?guardian=1")
		return
	}
	acc, otp, err := s.d.Accounts.CreateAccount(ctx, principal(c).ActorID(), auth.NewAccount{Username: user, Role: auth.RoleParent,
		SchoolID: p.SchoolID, FullName: g.FullName, GuardianIDs: []int64{g.ID}})
	if err != nil {
		s.pupilPageWith(c, p, "guardian", err, &OneTime{Name: g.FullName})
		return
	}
	s.pupilPageWith(c, p, "", nil, &OneTime{Username: acc.Username, Password: otp, Name: g.FullName})
}

// OneTime is a new account's one-time password, or an existing
// account's after a reset, shown once.
type OneTime struct {
	Username, Password string
	Name               string // the guardian or staff member (also when the account was refused)
	Reset              bool   // a reset of an existing account's password
}
