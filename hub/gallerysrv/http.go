package gallerysrv

import (
	"crypto/sha256"
	"database/sql"
	_ "embed"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"

	"github.com/diemdanh/diemdanh/hub/api"
	"github.com/gin-gonic/gin"
	"golang.org/x/crypto/bcrypt"
)

//go:embed openapi.json
var openapiPaths []byte

// OpenAPIPaths is the OpenAPI "paths" fragment of these routes.
func OpenAPIPaths() []byte { return openapiPaths }

// Routes registers GET /gates/:gate_id/gallery and (admins)
// GET /schools/:school_id/operating-point and the candidate-restriction
// API under r (/api/v1).
func (s *Server) Routes(r gin.IRouter) {
	r.GET("/gates/:gate_id/gallery", s.get)
	r.GET("/schools/:school_id/operating-point", s.getOperatingPoint)
	s.candidateRoutes(r) // admins: class sessions, gate classes (candidates.go)
}

var (
	errBadCreds = &api.Error{Code: api.CodeUnauthenticated, Message: "gate username or password is wrong"}
	errLocked   = &api.Error{Code: api.CodeRateLimited, Message: "too many failed logins for this gate; try again later"}
)

var (
	dummyOnce sync.Once
	dummyHash []byte
)

type gateRow struct {
	id, school, hash string
	active           bool
}

// authenticate checks HTTP basic auth against the gates table. A username
// is locked after failures in a row from any address (api.Lockout, with
// exponential backoff; a good login resets it), checked before the cache
// of good passwords so that the lock holds even for the right one. The
// counters are kept in SQLite (hub/loginlock, scope "gallery-gate"), so a
// lock holds across a restart of the hub.
func (s *Server) authenticate(c *gin.Context) (gateRow, error) {
	user, pw, ok := c.Request.BasicAuth()
	if !ok || user == "" {
		return gateRow{}, &api.Error{Code: api.CodeUnauthenticated, Message: "gate credentials required (HTTP basic auth)"}
	}
	ctx, key := c.Request.Context(), "gate:"+user
	_, locked, err := s.lock.Locked(ctx, key)
	if err != nil {
		return gateRow{}, fmt.Errorf("gallerysrv: gate %q: %w", user, err)
	}
	if locked {
		return gateRow{}, errLocked
	}
	g, err := s.checkGate(c, user, pw)
	switch {
	case errors.Is(err, errBadCreds):
		if _, ferr := s.lock.Fail(ctx, key); ferr != nil {
			s.log.Warn("failed gallery login not stored: it counts until the hub restarts", "err", ferr)
		}
	case err == nil:
		if rerr := s.lock.Reset(ctx, key); rerr != nil {
			return gateRow{}, fmt.Errorf("gallerysrv: gate %q: %w", user, rerr)
		}
	}
	return g, err
}

// checkGate verifies user/pw against the gates table (cached bcrypt).
func (s *Server) checkGate(c *gin.Context, user, pw string) (gateRow, error) {
	var g gateRow
	var active int
	err := s.db.R.QueryRowContext(c.Request.Context(), `SELECT id, school_id, password_hash, active FROM gates WHERE username = ?`, user).
		Scan(&g.id, &g.school, &g.hash, &active)
	if errors.Is(err, sql.ErrNoRows) {
		// Same cost as a real check so timing does not reveal usernames.
		dummyOnce.Do(func() { dummyHash, _ = bcrypt.GenerateFromPassword([]byte("not a gate"), bcrypt.DefaultCost) })
		_ = bcrypt.CompareHashAndPassword(dummyHash, []byte(pw))
		return g, errBadCreds
	}
	if err != nil {
		return g, fmt.Errorf("gallerysrv: gate %q: %w", user, err)
	}
	g.active = active == 1
	sum := sha256.Sum256([]byte(pw))
	if !s.cachedOK(user, g.hash, sum) {
		if bcrypt.CompareHashAndPassword([]byte(g.hash), []byte(pw)) != nil {
			return g, errBadCreds
		}
		s.remember(user, g.hash, sum)
	}
	if !g.active {
		return g, &api.Error{Code: api.CodeForbidden, Message: "gate is deactivated"}
	}
	return g, nil
}

func (s *Server) get(c *gin.Context) {
	g, err := s.authenticate(c)
	if err != nil {
		api.Fail(c, err)
		return
	}
	if g.id != c.Param("gate_id") {
		api.Fail(c, &api.Error{Code: api.CodeForbidden, Message: "a gate may fetch only its own gallery"})
		return
	}
	_, etag, body, err := s.CurrentForGate(c.Request.Context(), g.school, g.id)
	if err != nil {
		api.Fail(c, err)
		return
	}
	c.Header("ETag", etag)
	c.Header("Cache-Control", "no-cache")
	for _, v := range strings.Split(c.GetHeader("If-None-Match"), ",") {
		if v = strings.TrimSpace(v); v == etag || v == "W/"+etag || v == "*" {
			c.Status(http.StatusNotModified)
			return
		}
	}
	c.Data(http.StatusOK, "application/json", body)
}
