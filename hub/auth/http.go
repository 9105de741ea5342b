package auth

import (
	"context"
	"crypto/subtle"
	"database/sql"
	"errors"
	"net/http"
	"net/url"
	"strings"

	"github.com/diemdanh/diemdanh/hub/api"
	"github.com/diemdanh/diemdanh/hub/store"
	"github.com/gin-gonic/gin"
)

// Cookie and header names.
const (
	SessionCookie   = "dd_session"
	LoginCSRFCookie = "dd_login_csrf"
	CSRFHeader      = "X-CSRF-Token"
	CSRFField       = "csrf_token"
	// MaxFormBody bounds a form or multipart body read by the CSRF check
	// (enrolment uploads are at most 10 photos; each is checked again).
	MaxFormBody = 64 << 20
)

// PrincipalOf returns the authenticated principal of the request, or nil.
func PrincipalOf(c *gin.Context) *Principal {
	if v, ok := c.Get(api.PrincipalKey); ok {
		if p, ok := v.(*Principal); ok {
			return p
		}
	}
	return nil
}

// CSRFToken returns the token pages must put in their forms (field
// csrf_token) or send as X-CSRF-Token; "" when not logged in by session.
func CSRFToken(c *gin.Context) string {
	if p := PrincipalOf(c); p != nil {
		return p.CSRF
	}
	return ""
}

// LoginCSRF sets the double-submit cookie for the login form and returns
// the token to put in the form's csrf_token field.
func (s *Service) LoginCSRF(c *gin.Context) string {
	if v, err := c.Cookie(LoginCSRFCookie); err == nil && len(v) >= 32 {
		return v
	}
	t := randToken(32)
	s.setCookie(c, LoginCSRFCookie, t, 3600)
	return t
}

func (s *Service) setCookie(c *gin.Context, name, value string, maxAge int) {
	http.SetCookie(c.Writer, &http.Cookie{Name: name, Value: value, Path: "/", MaxAge: maxAge,
		Secure: s.cfg.CookieSecure, HttpOnly: true, SameSite: http.SameSiteLaxMode})
}

func stateChanging(m string) bool {
	return m != http.MethodGet && m != http.MethodHead && m != http.MethodOptions
}

func isForm(c *gin.Context) bool {
	ct := c.ContentType()
	return ct == "application/x-www-form-urlencoded" || ct == "multipart/form-data"
}

// formValue reads a form field with the body bounded by MaxFormBody.
func formValue(c *gin.Context, name string) (string, error) {
	if !isForm(c) {
		return "", nil
	}
	c.Request.Body = http.MaxBytesReader(c.Writer, c.Request.Body, MaxFormBody)
	if c.ContentType() == "multipart/form-data" {
		if err := c.Request.ParseMultipartForm(8 << 20); err != nil {
			var mbe *http.MaxBytesError
			if errors.As(err, &mbe) {
				return "", &api.Error{Code: api.CodeTooLarge, Message: "request body too large / dữ liệu gửi lên quá lớn"}
			}
			return "", api.Invalid("body", "malformed multipart form")
		}
	}
	return c.PostForm(name), nil
}

// Middleware authenticates every request (session cookie or basic auth),
// enforces CSRF on state-changing session requests, refuses accounts that
// must change their password, and applies the route Policy. Install it
// on the engine before any route.
func (s *Service) Middleware() gin.HandlerFunc {
	return func(c *gin.Context) {
		ctx := c.Request.Context()
		ip := c.ClientIP()
		var p *Principal
		if user, pass, ok := c.Request.BasicAuth(); ok {
			// Gate devices first (their usernames are gate IDs), then accounts.
			var err error
			p, err = s.Gate(ctx, user, pass, ip)
			if errors.Is(err, errNoSuchGate) {
				p, err = s.checkPassword(ctx, user, pass, ip)
			}
			if err != nil {
				api.Fail(c, err)
				return
			}
		} else if tok, err := c.Cookie(SessionCookie); err == nil && tok != "" {
			if sp, err := s.Session(ctx, tok); err == nil {
				p = sp
			}
		}
		if p != nil {
			c.Set(api.PrincipalKey, p)
		}
		rule, _ := s.MatchRule(c.Request.Method, c.FullPath())
		// Public routes (the login form) carry their own double-submit check.
		if p != nil && p.ViaSession && stateChanging(c.Request.Method) && !rule.Public {
			got := c.GetHeader(CSRFHeader)
			if got == "" {
				v, err := formValue(c, CSRFField)
				if err != nil {
					api.Fail(c, err)
					return
				}
				got = v
			}
			if got == "" || subtle.ConstantTimeCompare([]byte(got), []byte(p.CSRF)) != 1 {
				api.Fail(c, &api.Error{Code: api.CodeForbidden, Field: CSRFField, Message: "missing or wrong CSRF token / thiếu mã chống giả mạo"})
				return
			}
		}
		if c.FullPath() == "" { // no route: let gin answer 404
			c.Next()
			return
		}
		if rule.Public {
			c.Next()
			return
		}
		page := !strings.HasPrefix(c.Request.URL.Path, api.Prefix+"/") && c.Request.Method == http.MethodGet
		if p == nil {
			if page && !strings.HasSuffix(c.Request.URL.Path, "/live") {
				c.Redirect(http.StatusSeeOther, "/login?next="+url.QueryEscape(c.Request.URL.RequestURI()))
				c.Abort()
				return
			}
			api.Fail(c, api.ErrUnauthenticated)
			return
		}
		if p.MustChange && !rule.DuringPasswordChange {
			if page {
				c.Redirect(http.StatusSeeOther, "/password")
				c.Abort()
				return
			}
			api.Fail(c, ErrMustChange)
			return
		}
		if !rule.allows(p.Role) {
			api.Fail(c, &api.Error{Code: api.CodeForbidden, Message: "your role may not use this / vai trò của bạn không được phép"})
			return
		}
		c.Next()
	}
}

// Require refuses the request unless the principal holds every perm.
func Require(perms ...Perm) gin.HandlerFunc {
	return func(c *gin.Context) {
		p := PrincipalOf(c)
		if p == nil {
			api.Fail(c, api.ErrUnauthenticated)
			return
		}
		for _, pm := range perms {
			if !p.Has(pm) {
				api.Fail(c, &api.Error{Code: api.CodeForbidden, Message: "not allowed: " + string(pm)})
				return
			}
		}
		c.Next()
	}
}

// Authorize implements api.Authorizer: least privilege per role and scope.
func (s *Service) Authorize(c *gin.Context, a api.Access) error {
	p := PrincipalOf(c)
	if p == nil {
		return api.ErrUnauthenticated
	}
	return s.Allowed(c.Request.Context(), p, a)
}

// errDenied is the refusal of Allowed.
var errDenied = &api.Error{Code: api.CodeForbidden, Message: "forbidden / không được phép"}

// Allowed is Authorize without a request (used by pages and tests). An
// Access naming no school, class, pupil or gate is about every school (a
// list across schools): only a hub-wide admin (no school) may make it.
func (s *Service) Allowed(ctx context.Context, p *Principal, a api.Access) error {
	if p.MustChange {
		return ErrMustChange
	}
	if a.SchoolID != "" && p.SchoolID != "" && a.SchoolID != p.SchoolID {
		return errDenied
	}
	var ok bool
	switch p.Role {
	case RoleAdmin:
		ok = s.adminMay(ctx, p, a)
	case RoleGate:
		ok = a.Action != api.ActionWrite && (a.Resource == "gallery" || a.Resource == "gates") && a.GateID != "" && a.GateID == p.GateID
	case RoleTeacher:
		ok = s.teacherMay(ctx, p, a)
	case RoleParent:
		ok = s.parentMay(ctx, p, a)
	}
	if !ok {
		return errDenied
	}
	return nil
}

func unscoped(a api.Access) bool {
	return a.SchoolID == "" && a.ClassID == "" && a.PupilID == "" && a.GateID == ""
}

// adminMay: a hub-wide admin everything; an admin of one school only what
// is scoped to it (its school, or a pupil or class in it).
func (s *Service) adminMay(ctx context.Context, p *Principal, a api.Access) bool {
	if p.SchoolID == "" {
		return true
	}
	if unscoped(a) {
		return false
	}
	if a.SchoolID == "" {
		if a.PupilID != "" && !s.pupilInSchool(ctx, a.PupilID, p.SchoolID) {
			return false
		}
		if a.ClassID != "" && !s.classInSchool(ctx, a.ClassID, p.SchoolID) {
			return false
		}
		if a.GateID != "" && !s.gateInSchool(ctx, a.GateID, p.SchoolID) {
			return false
		}
	}
	return true
}

// teacherMay: read their school; read their classes and pupils; fix
// attendance and give feedback there.
func (s *Service) teacherMay(ctx context.Context, p *Principal, a api.Access) bool {
	write := a.Action == api.ActionWrite
	switch a.Resource {
	case "schools":
		return !write && a.SchoolID != "" && a.SchoolID == p.SchoolID
	case "classes", "pupils", "events", "guardians", "consents":
		if write {
			return false
		}
	case "attendance", "overrides", "feedback":
	default:
		return false
	}
	if a.PupilID != "" {
		return s.CanSeePupil(ctx, p, a.PupilID)
	}
	return a.ClassID != "" && s.CanSeeClass(ctx, p, a.ClassID)
}

// parentMay: read the schools of their children, their children; manage
// their own notification preferences.
func (s *Service) parentMay(ctx context.Context, p *Principal, a api.Access) bool {
	write := a.Action == api.ActionWrite
	switch a.Resource {
	case "schools":
		return !write && a.SchoolID != "" && s.childInSchool(ctx, p, a.SchoolID)
	case "notifications", "subscriptions":
		return a.PupilID == "" || s.CanSeePupil(ctx, p, a.PupilID) // their own preferences
	case "pupils", "attendance", "events":
		return !write && a.PupilID != "" && s.CanSeePupil(ctx, p, a.PupilID)
	}
	return false
}

func (s *Service) childInSchool(ctx context.Context, p *Principal, school string) bool {
	var one int
	return s.db.R.QueryRowContext(ctx, `SELECT 1 FROM account_guardians ag JOIN guardians g ON g.id = ag.guardian_id
		JOIN pupils pu ON pu.id = g.pupil_id WHERE ag.account_id = ? AND pu.school_id = ? LIMIT 1`, p.AccountID, school).Scan(&one) == nil
}

func (s *Service) staffInSchool(ctx context.Context, staff, school string) bool {
	var one int
	return s.db.R.QueryRowContext(ctx, `SELECT 1 FROM staff WHERE id = ? AND school_id = ?`, staff, school).Scan(&one) == nil
}

func (s *Service) gateInSchool(ctx context.Context, gate, school string) bool {
	var one int
	return s.db.R.QueryRowContext(ctx, `SELECT 1 FROM gates WHERE id = ? AND school_id = ?`, gate, school).Scan(&one) == nil
}

func (s *Service) pupilInSchool(ctx context.Context, pupil, school string) bool {
	var one int
	return s.db.R.QueryRowContext(ctx, `SELECT 1 FROM pupils WHERE id = ? AND school_id = ?`, pupil, school).Scan(&one) == nil
}

func (s *Service) classInSchool(ctx context.Context, class, school string) bool {
	var one int
	return s.db.R.QueryRowContext(ctx, `SELECT 1 FROM classes WHERE id = ? AND school_id = ?`, class, school).Scan(&one) == nil
}

// CanSeeClass reports whether p may see classID: admins of its school; a
// teacher whose homeroom or assigned class it is. Parents and gates never.
func (s *Service) CanSeeClass(ctx context.Context, p *Principal, classID string) bool {
	if p == nil {
		return false
	}
	switch p.Role {
	case RoleAdmin:
		return p.SchoolID == "" || s.classInSchool(ctx, classID, p.SchoolID)
	case RoleTeacher:
		if p.StaffID == "" {
			return false
		}
		var one int
		err := s.db.R.QueryRowContext(ctx, `SELECT 1 FROM classes WHERE id = ? AND homeroom_teacher_id = ?
			UNION SELECT 1 FROM teacher_classes WHERE class_id = ? AND staff_id = ?`, classID, p.StaffID, classID, p.StaffID).Scan(&one)
		return err == nil
	}
	return false
}

// CanSeePupil reports whether p may see pupilID: admins of its school; a
// teacher of the pupil's class; a parent linked to one of the pupil's
// guardian rows.
func (s *Service) CanSeePupil(ctx context.Context, p *Principal, pupilID string) bool {
	if p == nil {
		return false
	}
	switch p.Role {
	case RoleAdmin:
		return p.SchoolID == "" || s.pupilInSchool(ctx, pupilID, p.SchoolID)
	case RoleTeacher:
		var class sql.NullString
		if err := s.db.R.QueryRowContext(ctx, `SELECT class_id FROM pupils WHERE id = ?`, pupilID).Scan(&class); err != nil || !class.Valid {
			return false
		}
		return s.CanSeeClass(ctx, p, class.String)
	case RoleParent:
		var one int
		err := s.db.R.QueryRowContext(ctx, `SELECT 1 FROM account_guardians ag JOIN guardians g ON g.id = ag.guardian_id
			WHERE ag.account_id = ? AND g.pupil_id = ?`, p.AccountID, pupilID).Scan(&one)
		return err == nil
	}
	return false
}

// Children returns the pupil IDs a parent account may see.
func (s *Service) Children(ctx context.Context, p *Principal) ([]string, error) {
	return store.Strings(ctx, s.db.R, `SELECT DISTINCT g.pupil_id FROM account_guardians ag JOIN guardians g ON g.id = ag.guardian_id
		WHERE ag.account_id = ? ORDER BY g.pupil_id`, p.AccountID)
}

// Classes returns the class IDs a teacher may see (homeroom and assigned).
func (s *Service) Classes(ctx context.Context, p *Principal) ([]string, error) {
	return store.Strings(ctx, s.db.R, `SELECT id FROM classes WHERE homeroom_teacher_id = ?
		UNION SELECT class_id FROM teacher_classes WHERE staff_id = ? ORDER BY 1`, p.StaffID, p.StaffID)
}

// safeNext accepts only a local absolute path as a redirect target.
func safeNext(n string) string {
	u, err := url.Parse(n)
	if n == "" || err != nil || u.IsAbs() || u.Host != "" || !strings.HasPrefix(n, "/") || strings.HasPrefix(n, "//") || strings.Contains(n, "\\") {
		return "/"
	}
	return n
}

type loginReq struct {
	Username string `json:"username" form:"username"`
	Password string `json:"password" form:"password"`
	Next     string `json:"next" form:"next"`
}

// Routes registers the account API under r (/api/v1):
//
//	POST /auth/login      JSON {username,password} or form (+ double-submit csrf_token)
//	POST /auth/logout
//	GET  /auth/me
//	POST /auth/password   {old_password,new_password}
//	GET  /accounts        admin
//	POST /accounts        admin: create (one-time password returned when none given)
//	POST /accounts/:username/active  admin {active}
//	POST /accounts/:username/reset-password  admin: a new one-time password, returned once
func (s *Service) Routes(r gin.IRouter) {
	r.POST("/auth/login", s.handleLogin)
	r.POST("/auth/logout", func(c *gin.Context) {
		p := PrincipalOf(c)
		tok, _ := c.Cookie(SessionCookie)
		if p == nil || tok == "" {
			api.Fail(c, api.ErrUnauthenticated)
			return
		}
		if err := s.Logout(c.Request.Context(), tok, p, c.ClientIP()); err != nil {
			api.Fail(c, err)
			return
		}
		s.setCookie(c, SessionCookie, "", -1)
		api.JSON(c, gin.H{"ok": true})
	})
	r.GET("/auth/me", func(c *gin.Context) {
		p := PrincipalOf(c)
		if p == nil {
			api.Fail(c, api.ErrUnauthenticated)
			return
		}
		api.JSON(c, gin.H{"principal": p, "csrf_token": p.CSRF})
	})
	r.POST("/auth/password", func(c *gin.Context) {
		p := PrincipalOf(c)
		if p == nil || p.Role == RoleGate {
			api.Fail(c, api.ErrUnauthenticated)
			return
		}
		var req struct {
			Old string `json:"old_password" form:"old_password"`
			New string `json:"new_password" form:"new_password"`
		}
		if err := c.ShouldBind(&req); err != nil {
			api.Fail(c, api.Invalid("body", "want old_password and new_password"))
			return
		}
		tok, _ := c.Cookie(SessionCookie)
		if err := s.ChangePassword(c.Request.Context(), p, req.Old, req.New, c.ClientIP(), tok); err != nil {
			api.Fail(c, err)
			return
		}
		api.JSON(c, gin.H{"ok": true})
	})
	r.GET("/accounts", Require(PermAccounts), s.handleListAccounts)
	r.POST("/accounts", Require(PermAccounts), s.handleCreateAccount)
	r.POST("/teacher-classes", Require(PermAccounts), s.handleTeacherClasses)
	r.POST("/accounts/:username/active", Require(PermAccounts), s.handleSetActive)
	r.POST("/accounts/:username/reset-password", Require(PermAccounts), s.handleResetPassword)
}

// errOtherSchool refuses an admin of one school anything about another
// school's accounts, staff or classes, and creating hub-wide accounts.
var errOtherSchool = &api.Error{Code: api.CodeForbidden, Message: "an admin of one school manages that school only / quản trị một trường chỉ quản lý trường đó"}

// manages reports whether p may manage accounts of school ("" = hub-wide):
// a hub-wide admin all, an admin of one school that school only.
func manages(p *Principal, school string) bool {
	return p != nil && (p.SchoolID == "" || p.SchoolID == school)
}

func (s *Service) handleListAccounts(c *gin.Context) {
	l, err := s.ListAccounts(c.Request.Context())
	if err != nil {
		api.Fail(c, err)
		return
	}
	p := PrincipalOf(c)
	out := make([]Account, 0, len(l))
	for _, a := range l {
		if manages(p, a.SchoolID) {
			out = append(out, a)
		}
	}
	api.JSON(c, gin.H{"accounts": out})
}

func (s *Service) handleCreateAccount(c *gin.Context) {
	var n NewAccount
	if err := api.BindJSON(c, &n, 1<<16); err != nil {
		api.Fail(c, err)
		return
	}
	if !manages(PrincipalOf(c), n.SchoolID) {
		api.Fail(c, errOtherSchool)
		return
	}
	acc, otp, err := s.CreateAccount(c.Request.Context(), api.Actor(c), n)
	if err != nil {
		api.Fail(c, err)
		return
	}
	c.JSON(http.StatusCreated, gin.H{"account": acc, "one_time_password": otp})
}

func (s *Service) handleTeacherClasses(c *gin.Context) {
	var req struct {
		StaffID string `json:"staff_id"`
		ClassID string `json:"class_id"`
		Remove  bool   `json:"remove"`
	}
	if err := api.BindJSON(c, &req, 1024); err != nil {
		api.Fail(c, err)
		return
	}
	ctx := c.Request.Context()
	if p := PrincipalOf(c); p == nil || p.SchoolID != "" && (!s.staffInSchool(ctx, req.StaffID, p.SchoolID) || !s.classInSchool(ctx, req.ClassID, p.SchoolID)) {
		api.Fail(c, errOtherSchool)
		return
	}
	if err := s.AssignClass(ctx, api.Actor(c), req.StaffID, req.ClassID, !req.Remove); err != nil {
		api.Fail(c, err)
		return
	}
	api.JSON(c, gin.H{"ok": true})
}

func (s *Service) handleSetActive(c *gin.Context) {
	var req struct {
		Active bool `json:"active"`
	}
	if err := api.BindJSON(c, &req, 1024); err != nil {
		api.Fail(c, err)
		return
	}
	ctx := c.Request.Context()
	user := c.Param("username")
	if p := PrincipalOf(c); p == nil || p.SchoolID != "" {
		var school string
		err := s.db.R.QueryRowContext(ctx, `SELECT school_id FROM accounts WHERE username = ?`, user).Scan(&school)
		if err != nil || !manages(p, school) {
			api.Fail(c, api.ErrNotFound) // as for an unknown account: names of other schools are not revealed
			return
		}
	}
	if err := s.SetActive(ctx, api.Actor(c), user, req.Active); err != nil {
		api.Fail(c, err)
		return
	}
	api.JSON(c, gin.H{"ok": true})
}

// handleResetPassword answers {username, one_time_password}; the scope
// (an admin of one school: its accounts only, else 404) is ResetPassword's.
func (s *Service) handleResetPassword(c *gin.Context) {
	user := c.Param("username")
	otp, err := s.ResetPassword(c.Request.Context(), PrincipalOf(c), user, c.ClientIP())
	if err != nil {
		api.Fail(c, err)
		return
	}
	c.Header("Cache-Control", "no-store")
	api.JSON(c, gin.H{"username": user, "one_time_password": otp})
}

func (s *Service) handleLogin(c *gin.Context) {
	var req loginReq
	form := isForm(c)
	if form {
		// Login CSRF: the form must echo the double-submit cookie.
		ck, _ := c.Cookie(LoginCSRFCookie)
		got, err := formValue(c, CSRFField)
		if err != nil {
			api.Fail(c, err)
			return
		}
		if ck == "" || subtle.ConstantTimeCompare([]byte(ck), []byte(got)) != 1 {
			api.Fail(c, &api.Error{Code: api.CodeForbidden, Field: CSRFField, Message: "missing or wrong CSRF token / thiếu mã chống giả mạo"})
			return
		}
		req.Username, req.Password, req.Next = c.PostForm("username"), c.PostForm("password"), c.PostForm("next")
	} else if c.ContentType() != "application/json" {
		// A cross-site form can post text/plain that looks like JSON; only
		// a real JSON request (which needs a CORS preflight) is taken.
		api.Fail(c, &api.Error{Code: api.CodeUnsupported, Message: "send JSON (application/json) or the login form"})
		return
	} else if err := api.BindJSON(c, &req, 4096); err != nil {
		api.Fail(c, err)
		return
	}
	tok, p, err := s.Login(c.Request.Context(), req.Username, req.Password, c.ClientIP())
	if err != nil {
		if form {
			c.Set("auth.login_error", err)
		}
		api.Fail(c, err)
		return
	}
	s.setCookie(c, SessionCookie, tok, int(s.cfg.SessionTTL.Seconds()))
	if form {
		next := safeNext(req.Next)
		if p.MustChange {
			next = "/password?next=" + url.QueryEscape(next)
		}
		c.Redirect(http.StatusSeeOther, next)
		return
	}
	api.JSON(c, gin.H{"principal": p, "csrf_token": p.CSRF})
}
