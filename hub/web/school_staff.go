package web

import (
	"net/http"
	"slices"
	"strings"

	"github.com/gin-gonic/gin"

	"github.com/diemdanh/diemdanh/hub/api"
	"github.com/diemdanh/diemdanh/hub/auth"
	"github.com/diemdanh/diemdanh/hub/roster"
)

// StaffRow is one staff member with their accounts and classes.
type StaffRow struct {
	roster.Staff
	Accounts []auth.Account
	Classes  []roster.Class // homeroom and assigned
}

// HasActiveAccount reports whether one of r's accounts is enabled (else
// the page offers to create one; an enabled account's forgotten password
// is reset instead: staffResetPassword).
func (r StaffRow) HasActiveAccount() bool {
	for _, a := range r.Accounts {
		if a.Active {
			return true
		}
	}
	return false
}

// StaffData is the staff and accounts page.
type StaffData struct {
	SchoolNav
	Staff       []StaffRow
	Classes     []roster.Class
	Form        roster.Staff
	Username    string
	Err         FormErr
	OneTime     *OneTime
	HasAccounts bool
}

func (s *Server) staffData(c *gin.Context) (*StaffData, error) {
	ctx := c.Request.Context()
	sc := schoolOf(c)
	d := &StaffData{SchoolNav: SchoolNav{School: sc, Tab: "staff"}, Form: roster.Staff{Role: "teacher", Active: true},
		HasAccounts: s.d.Accounts != nil}
	staff, err := s.d.Roster.StaffList(ctx, sc.ID)
	if err != nil {
		return nil, err
	}
	if d.Classes, err = s.d.Roster.Classes(ctx, sc.ID); err != nil {
		return nil, err
	}
	byID := map[string]roster.Class{}
	for _, x := range d.Classes {
		byID[x.ID] = x
	}
	var accs []auth.Account
	if s.d.Accounts != nil {
		if accs, err = s.d.Accounts.ListAccounts(ctx); err != nil {
			return nil, err
		}
	}
	for _, st := range staff {
		r := StaffRow{Staff: st}
		for _, a := range accs {
			if a.StaffID == st.ID && a.SchoolID == sc.ID {
				r.Accounts = append(r.Accounts, a)
			}
		}
		if s.d.Accounts != nil {
			ids, err := s.d.Accounts.Classes(ctx, &auth.Principal{Role: auth.RoleTeacher, SchoolID: sc.ID, StaffID: st.ID})
			if err != nil {
				return nil, err
			}
			for _, id := range ids {
				r.Classes = append(r.Classes, byID[id])
			}
		}
		d.Staff = append(d.Staff, r)
	}
	return d, nil
}

func (s *Server) staffPage(c *gin.Context) { s.staffPageWith(c, nil, nil, nil) }

// staffPageWith renders the page with a refused form (form, err) or a new
// account's one-time password.
func (s *Server) staffPageWith(c *gin.Context, form *StaffData, err error, ot *OneTime) {
	d, derr := s.staffData(c)
	if derr != nil {
		s.failErr(c, derr)
		return
	}
	pg := s.newPage(c, "sa.staff_title", d)
	status := http.StatusOK
	d.OneTime = ot
	if err != nil {
		fe, st, ok := formError(pg, err, "staff")
		if !ok {
			s.failErr(c, err)
			return
		}
		d.Err, pg.Error, status = fe, fe.Msg, st
	}
	if form != nil {
		d.Form, d.Username = form.Form, form.Username
	}
	if c.Query("saved") != "" {
		pg.Flash = pg.T("board.saved")
	}
	s.render(c, status, "school_staff", pg)
}

// staffCreate adds a staff member (POST /schools/{id}/staff's PutStaff),
// with their account when a username is given (POST /accounts's
// CreateAccount, audited there; the one-time password shown once) and,
// for a teacher, the classes ticked (POST /teacher-classes's AssignClass).
func (s *Server) staffCreate(c *gin.Context) {
	ctx := c.Request.Context()
	sc := schoolOf(c)
	form := &StaffData{Form: roster.Staff{ID: strings.TrimSpace(c.PostForm("id")), SchoolID: sc.ID, FullName: c.PostForm("full_name"),
		Email: c.PostForm("email"), Phone: c.PostForm("phone"), Role: c.PostForm("role"), Active: true},
		Username: strings.TrimSpace(c.PostForm("username"))}
	x := form.Form
	err := s.checkNewStaff(c, x, form.Username)
	if err == nil {
		x, err = s.d.Roster.PutStaff(ctx, x)
	}
	if err != nil {
		s.staffPageWith(c, form, err, nil)
		return
	}
	if x.Role == "teacher" && s.d.Accounts != nil {
		for _, id := range c.PostFormArray("class_id") {
			if err := s.assignClass(c, x.ID, id, true); err != nil {
				s.staffPageWith(c, nil, err, nil)
				return
			}
		}
	}
	if form.Username == "" {
		c.Redirect(http.StatusSeeOther, schoolURL(sc.ID, "staff")+"?saved=1")
		return
	}
	s.createStaffAccount(c, x, form.Username)
}

// checkNewStaff refuses an existing staff ID or username before anything
// is written.
func (s *Server) checkNewStaff(c *gin.Context, x roster.Staff, user string) error {
	ctx := c.Request.Context()
	if _, err := s.d.Roster.StaffMember(ctx, x.ID); err == nil {
		return &api.Error{Code: api.CodeConflict, Field: "id", Message: "staff member already exists"}
	}
	if user == "" {
		return nil
	}
	if s.d.Accounts == nil {
		return api.Errorf(api.CodeUnavailable, "accounts are not available here")
	}
	accs, err := s.d.Accounts.ListAccounts(ctx)
	if err != nil {
		return err
	}
	for _, a := range accs {
		if strings.EqualFold(a.Username, user) {
			return &api.Error{Code: api.CodeConflict, Field: "username", Message: "username is taken"}
		}
	}
	return nil
}

// createStaffAccount creates x's account (a teacher's, or a school
// admin's for an admin staff row) and shows its one-time password.
func (s *Server) createStaffAccount(c *gin.Context, x roster.Staff, user string) {
	role := auth.RoleTeacher
	if x.Role == "admin" {
		role = auth.RoleAdmin
	}
	acc, otp, err := s.d.Accounts.CreateAccount(c.Request.Context(), principal(c).ActorID(), auth.NewAccount{Username: user, Role: role,
		SchoolID: x.SchoolID, StaffID: x.ID, FullName: x.FullName})
	if err != nil {
		s.staffPageWith(c, &StaffData{Form: roster.Staff{Role: "teacher"}, Username: user}, err, nil)
		return
	}
	s.staffPageWith(c, nil, nil, &OneTime{Username: acc.Username, Password: otp, Name: x.FullName})
}

// staffInSchool loads :staff and 404s one of another school.
func (s *Server) staffInSchool(c *gin.Context) (roster.Staff, bool) {
	x, err := s.d.Roster.StaffMember(c.Request.Context(), c.Param("staff"))
	if err == nil && x.SchoolID != schoolOf(c).ID {
		err = api.ErrNotFound
	}
	if err == nil && s.d.Accounts == nil {
		err = api.Errorf(api.CodeUnavailable, "accounts are not available here")
	}
	if err != nil {
		s.failErr(c, err)
		return x, false
	}
	return x, true
}

// staffAccount creates an account for an existing staff member.
func (s *Server) staffAccount(c *gin.Context) {
	x, ok := s.staffInSchool(c)
	if !ok {
		return
	}
	user := strings.TrimSpace(c.PostForm("username"))
	if err := s.checkNewStaff(c, roster.Staff{}, user); err != nil || user == "" {
		if err == nil {
			err = api.Invalid("username", "is required")
		}
		s.staffPageWith(c, nil, err, nil)
		return
	}
	s.createStaffAccount(c, x, user)
}

// staffActive disables or enables a staff member's accounts (POST
// /accounts/{username}/active's SetActive: disabling ends their sessions)
// and marks the staff row (PutStaff).
func (s *Server) staffActive(c *gin.Context) {
	x, ok := s.staffInSchool(c)
	if !ok {
		return
	}
	x.Active = c.PostForm("active") == "1"
	if err := s.setStaffActive(c, x); err != nil {
		s.failErr(c, err)
		return
	}
	c.Redirect(http.StatusSeeOther, schoolURL(x.SchoolID, "staff")+"?saved=1")
}

func (s *Server) setStaffActive(c *gin.Context, x roster.Staff) error {
	ctx := c.Request.Context()
	accs, err := s.d.Accounts.ListAccounts(ctx)
	if err != nil {
		return err
	}
	for _, a := range accs {
		if a.StaffID == x.ID && a.SchoolID == x.SchoolID {
			if err := s.d.Accounts.SetActive(ctx, principal(c).ActorID(), a.Username, x.Active); err != nil {
				return err
			}
		}
	}
	_, err = s.d.Roster.PutStaff(ctx, x)
	return err
}

// staffResetPassword gives one of the staff member's accounts a new
// one-time password (POST /accounts/{username}/reset-password's
// ResetPassword: scoped to the admin's school, audited, the account's
// sessions ended, the password to be changed at the next login) and shows
// it once. An account that is not this staff member's is not found.
func (s *Server) staffResetPassword(c *gin.Context) {
	x, ok := s.staffInSchool(c)
	if !ok {
		return
	}
	ctx := c.Request.Context()
	user := c.PostForm("username")
	accs, err := s.d.Accounts.ListAccounts(ctx)
	if err == nil && !slices.ContainsFunc(accs, func(a auth.Account) bool {
		return a.Username == user && a.StaffID == x.ID && a.SchoolID == x.SchoolID
	}) {
		err = api.ErrNotFound
	}
	var otp string
	if err == nil {
		otp, err = s.d.Accounts.ResetPassword(ctx, principal(c), user, c.ClientIP())
	}
	if err != nil {
		s.failErr(c, err)
		return
	}
	s.staffPageWith(c, nil, nil, &OneTime{Username: user, Password: otp, Name: x.FullName, Reset: true})
}

// staffClasses links a teacher to a class of the school or unlinks them.
func (s *Server) staffClasses(c *gin.Context) {
	x, ok := s.staffInSchool(c)
	if !ok {
		return
	}
	if err := s.assignClass(c, x.ID, c.PostForm("class_id"), c.PostForm("assign") != "0"); err != nil {
		s.staffPageWith(c, nil, err, nil)
		return
	}
	c.Redirect(http.StatusSeeOther, schoolURL(x.SchoolID, "staff")+"?saved=1")
}

// assignClass checks the class is the school's (as POST /teacher-classes
// does) and calls AssignClass.
func (s *Server) assignClass(c *gin.Context, staff, class string, assign bool) error {
	cl, err := s.d.Roster.Class(c.Request.Context(), class)
	if err != nil || cl.SchoolID != schoolOf(c).ID {
		return api.Invalid("class_id", "no class %q in this school", class)
	}
	return s.d.Accounts.AssignClass(c.Request.Context(), principal(c).ActorID(), staff, class, assign)
}
