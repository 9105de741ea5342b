package web

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"net/http"

	"github.com/gin-gonic/gin"

	"github.com/diemdanh/diemdanh/hub/api"
	"github.com/diemdanh/diemdanh/hub/auth"
)

func randToken() string {
	b := make([]byte, 24)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// home sends each role to its start page.
func (s *Server) home(c *gin.Context) {
	p := principal(c)
	switch {
	case p == nil:
		c.Redirect(http.StatusSeeOther, "/login")
	case p.Role == auth.RoleAdmin:
		c.Redirect(http.StatusSeeOther, "/admin")
	case p.Role == auth.RoleTeacher:
		c.Redirect(http.StatusSeeOther, "/teacher")
	case p.Role == auth.RoleParent:
		c.Redirect(http.StatusSeeOther, "/parent")
	default:
		s.fail(c, http.StatusForbidden, "error.forbidden")
	}
}

type loginData struct{ Next, Username string }

func (s *Server) loginPage(c *gin.Context) {
	if principal(c) != nil {
		c.Redirect(http.StatusSeeOther, safeNext(c.Query("next")))
		return
	}
	s.renderLogin(c, http.StatusOK, "", c.Query("next"), "")
}

func (s *Server) renderLogin(c *gin.Context, status int, errKey, next, user string) {
	tok := randToken()
	s.setCookie(c, preCSRFCookie, tok, 3600, true)
	p := s.newPage(c, "login.title", loginData{Next: safeNext(next), Username: user})
	p.CSRF = tok
	if errKey != "" {
		p.Error = p.T(errKey)
	}
	s.render(c, status, "login", p)
}

func (s *Server) loginSubmit(c *gin.Context) {
	// Login CSRF: double-submit cookie set with the form.
	ck, _ := c.Cookie(preCSRFCookie)
	if ck == "" || subtle.ConstantTimeCompare([]byte(ck), []byte(c.PostForm("csrf_token"))) != 1 {
		s.fail(c, http.StatusForbidden, "error.csrf")
		return
	}
	user, next := c.PostForm("username"), c.PostForm("next")
	tok, p, err := s.d.Sessions.Login(c.Request.Context(), user, c.PostForm("password"), c.ClientIP())
	if err != nil {
		var ae *api.Error
		if errors.As(err, &ae) && ae.Code == api.CodeRateLimited {
			s.renderLogin(c, http.StatusTooManyRequests, "login.limited", next, user)
			return
		}
		if errors.As(err, &ae) && ae.Code == api.CodeUnauthenticated {
			s.renderLogin(c, http.StatusUnauthorized, "login.failed", next, user)
			return
		}
		s.failErr(c, err)
		return
	}
	s.setCookie(c, SessionCookie, tok, 0, true)
	s.setCookie(c, preCSRFCookie, "", -1, true)
	if p.MustChange {
		c.Redirect(http.StatusSeeOther, "/password")
		return
	}
	n := safeNext(next)
	if n == "/" || n == "/login" {
		n = "/"
	}
	c.Redirect(http.StatusSeeOther, n)
}

func (s *Server) logout(c *gin.Context) {
	tok, _ := c.Get(keyToken)
	if t, ok := tok.(string); ok {
		if err := s.d.Sessions.Logout(c.Request.Context(), t, principal(c), c.ClientIP()); err != nil {
			s.log.Warn("logout", "err", err)
		}
	}
	s.setCookie(c, SessionCookie, "", -1, true)
	c.Redirect(http.StatusSeeOther, "/login")
}

func (s *Server) passwordPage(c *gin.Context) {
	p := s.newPage(c, "password.title", nil)
	if p.P.MustChange {
		p.Flash = p.T("password.must")
	}
	s.render(c, http.StatusOK, "password", p)
}

func (s *Server) passwordSubmit(c *gin.Context) {
	tok, _ := c.Get(keyToken)
	t, _ := tok.(string)
	err := s.d.Sessions.ChangePassword(c.Request.Context(), principal(c), c.PostForm("old"), c.PostForm("new"), c.ClientIP(), t)
	if err != nil {
		var ae *api.Error
		p := s.newPage(c, "password.title", nil)
		p.Error = p.T("error.invalid")
		if errors.As(err, &ae) {
			p.Error = ae.Message
		}
		s.render(c, http.StatusBadRequest, "password", p)
		return
	}
	c.Redirect(http.StatusSeeOther, "/")
}

// serviceWorker is served from the root so it may control every page.
func (s *Server) serviceWorker(c *gin.Context) {
	b, err := staticFS.ReadFile("static/sw.js")
	if err != nil {
		c.Status(http.StatusNotFound)
		return
	}
	c.Header("Service-Worker-Allowed", "/")
	c.Data(http.StatusOK, "text/javascript; charset=utf-8", b)
}
