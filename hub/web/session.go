package web

import (
	"crypto/subtle"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"strings"

	"github.com/gin-gonic/gin"

	"github.com/diemdanh/diemdanh/hub/api"
	"github.com/diemdanh/diemdanh/hub/auth"
)

// Cookie names.
const (
	SessionCookie = auth.SessionCookie
	LangCookie    = "diemdanh_lang"
	preCSRFCookie = auth.LoginCSRFCookie // double-submit token of the login form
	keyToken      = "diemdanh.web.token"
)

// secure sets the security headers of every page.
func (s *Server) secure(c *gin.Context) {
	h := c.Writer.Header()
	h.Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data: blob:; media-src 'self' blob:; style-src 'self'; script-src 'self'; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "same-origin")
	h.Set("Permissions-Policy", "camera=(self), microphone=()")
	c.Next()
}

// session resolves the session cookie (if any) to a principal.
func (s *Server) session(c *gin.Context) {
	if ck, err := c.Cookie(SessionCookie); err == nil && ck != "" {
		if p, err := s.d.Sessions.Session(c.Request.Context(), ck); err == nil && p != nil {
			c.Set(api.PrincipalKey, p)
			c.Set(keyToken, ck)
		}
	}
	c.Next()
}

func principal(c *gin.Context) *auth.Principal {
	if v, ok := c.Get(api.PrincipalKey); ok {
		if p, ok := v.(*auth.Principal); ok {
			return p
		}
	}
	return nil
}

// require refuses anonymous requests (to the login page for a GET) and
// roles not listed (none listed = any signed-in role). An account with a
// one-time password is sent to the password page first.
func (s *Server) require(roles ...auth.Role) gin.HandlerFunc {
	return func(c *gin.Context) {
		p := principal(c)
		if p == nil {
			if c.Request.Method == http.MethodGet && !strings.HasSuffix(c.Request.URL.Path, "/live") {
				c.Redirect(http.StatusSeeOther, "/login?next="+url.QueryEscape(c.Request.URL.RequestURI()))
				c.Abort()
				return
			}
			s.fail(c, http.StatusUnauthorized, "error.forbidden")
			return
		}
		if p.MustChange && c.Request.URL.Path != "/password" && c.Request.URL.Path != "/logout" {
			c.Redirect(http.StatusSeeOther, "/password")
			c.Abort()
			return
		}
		if len(roles) > 0 {
			ok := false
			for _, r := range roles {
				ok = ok || p.Role == r
			}
			if !ok {
				s.fail(c, http.StatusForbidden, "error.forbidden")
				return
			}
		}
		c.Next()
	}
}

// csrf checks the synchroniser token of the session on a state change.
func (s *Server) csrf(c *gin.Context) {
	p := principal(c)
	got := c.GetHeader("X-CSRF-Token")
	if got == "" {
		got = c.PostForm("csrf_token")
	}
	if p == nil || p.CSRF == "" || got == "" || subtle.ConstantTimeCompare([]byte(got), []byte(p.CSRF)) != 1 {
		s.fail(c, http.StatusForbidden, "error.csrf")
		return
	}
	c.Next()
}

// lang is the UI language: the cookie, else the default.
func (s *Server) lang(c *gin.Context) string {
	if l, err := c.Cookie(LangCookie); err == nil && (l == "vi" || l == "en") {
		return l
	}
	return s.cfg.DefaultLang
}

func (s *Server) setLang(c *gin.Context) {
	l := c.Param("code")
	if l != "vi" && l != "en" {
		s.fail(c, http.StatusBadRequest, "error.invalid")
		return
	}
	s.setCookie(c, LangCookie, l, 365*24*3600, false)
	c.Redirect(http.StatusSeeOther, safeNext(c.Query("next")))
}

// safeNext keeps redirects on this site.
func safeNext(n string) string {
	if n == "" || !strings.HasPrefix(n, "/") || strings.HasPrefix(n, "//") || len(n) > 2048 {
		return "/"
	}
	for _, r := range n {
		// Browsers drop tabs and newlines and read "\" as "/" in URLs:
		// "/\t/evil" would become "//evil".
		if r < 0x20 || r == 0x7f || r == '\\' {
			return "/"
		}
	}
	return n
}

func (s *Server) setCookie(c *gin.Context, name, value string, maxAge int, httpOnly bool) {
	http.SetCookie(c.Writer, &http.Cookie{Name: name, Value: value, Path: "/", MaxAge: maxAge,
		Secure: s.cfg.CookieSecure, HttpOnly: httpOnly, SameSite: http.SameSiteLaxMode})
}

// page is what every template gets.
type page struct {
	Lang  string
	Other string // the other language, for the switch
	Title string
	P     *auth.Principal
	CSRF  string
	Path  string
	Flash string
	Error string
	D     any
	cat   *Catalogue
}

// T translates key.
func (p *page) T(key string) string { return p.cat.T(p.Lang, key) }

// Tr translates key and fills {name} placeholders from pairs.
func (p *page) Tr(key string, pairs ...string) string {
	s := p.cat.T(p.Lang, key)
	for i := 0; i+1 < len(pairs); i += 2 {
		s = strings.ReplaceAll(s, "{"+pairs[i]+"}", pairs[i+1])
	}
	return s
}

// Status is the label of an attendance status.
func (p *page) Status(code string) string { return p.cat.T(p.Lang, "status."+code) }

// StatusLabels is the JSON map code→label for the board's script.
func (p *page) StatusLabels() string {
	m := map[string]string{}
	for _, st := range Statuses {
		m[st] = p.Status(st)
	}
	b, _ := json.Marshal(m)
	return string(b)
}

func (s *Server) newPage(c *gin.Context, title string, d any) *page {
	l := s.lang(c)
	other := "en"
	if l == "en" {
		other = "vi"
	}
	p := &page{Lang: l, Other: other, P: principal(c), Path: c.Request.URL.RequestURI(), D: d, cat: s.cat}
	if p.P != nil {
		p.CSRF = p.P.CSRF
	}
	p.Title = p.T(title)
	return p
}

func (s *Server) render(c *gin.Context, status int, name string, p *page) {
	t := s.tmpl[name]
	if t == nil {
		s.log.Error("no template", "name", name)
		c.Status(http.StatusInternalServerError)
		return
	}
	c.Header("Content-Type", "text/html; charset=utf-8")
	c.Header("Cache-Control", "no-store")
	c.Status(status)
	if err := t.ExecuteTemplate(c.Writer, "base", p); err != nil {
		s.log.Error("render", "template", name, "err", err)
	}
}

// fail renders the error page (or JSON for script requests) and aborts.
func (s *Server) fail(c *gin.Context, status int, key string) {
	if wantsJSON(c) {
		p := s.newPage(c, key, nil)
		c.AbortWithStatusJSON(status, gin.H{"error": p.T(key), "code": key})
		return
	}
	p := s.newPage(c, "error.title", nil)
	p.Error = p.T(key)
	s.render(c, status, "error", p)
	c.Abort()
}

// failErr maps an error from a collaborator through api.Error codes.
func (s *Server) failErr(c *gin.Context, err error) {
	var ae *api.Error
	if errors.As(err, &ae) {
		key := "error.invalid"
		switch ae.Code {
		case api.CodeForbidden, api.CodeUnauthenticated:
			key = "error.forbidden"
		case api.CodeNotFound:
			key = "error.not_found"
		case api.CodeInternal, api.CodeUnavailable:
			key = "error.internal"
		}
		if wantsJSON(c) {
			c.AbortWithStatusJSON(ae.Code.Status(), gin.H{"error": ae.Message, "field": ae.Field, "code": key})
			return
		}
		s.fail(c, ae.Code.Status(), key)
		return
	}
	s.log.Error("request failed", "path", c.Request.URL.Path, "err", err)
	s.fail(c, http.StatusInternalServerError, "error.internal")
}

func wantsJSON(c *gin.Context) bool {
	return strings.Contains(c.GetHeader("Accept"), "application/json") || c.GetHeader("X-Requested-With") != ""
}
