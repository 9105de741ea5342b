// Package auth is the hub's accounts, sessions and access control.
//
// Roles: admin, teacher and parent accounts log in with a password
// (bcrypt); gate devices authenticate with HTTP basic auth against the
// gates table. Browsers get a session cookie (Secure, HttpOnly,
// SameSite=Lax; the token is stored only as a SHA-256 hash) and a
// synchroniser CSRF token that every state-changing request must echo in
// the X-CSRF-Token header or a csrf_token form field. Requests
// authenticated with basic auth (gates, scripts) carry no ambient
// credential and are exempt. Failed logins are rate-limited per account
// and per client IP (the connection's address unless it is one of the
// hub's http.trusted_proxies); a gate username is locked after failures
// in a row from any address, with exponential backoff (gate_lockout).
// Both counters are kept in SQLite (hub/loginlock, scopes "http" and
// "http-gate"), so a limit or lock holds across a restart of the hub.
//
// Least privilege is enforced twice: Middleware refuses any route whose
// policy rule (Policy) does not list the caller's role, and Authorizer
// (api.Authorizer) scopes each request to what the caller may touch: a
// teacher only their homeroom and assigned classes, a parent only their
// own children (through linked guardian rows), a gate only its own
// gallery. An admin with a school is that school's admin: anything not
// scoped to a school, class, pupil or gate (a list across schools) is for
// hub-wide admins only, and so are accounts of other schools. Handlers use
// CanSeeClass / CanSeePupil for lists.
//
// On first start with no admin, Bootstrap creates "admin" with a one-time
// password printed to the log; it must be changed at the first login.
package auth

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"database/sql"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/diemdanh/diemdanh/hub/api"
	"github.com/diemdanh/diemdanh/hub/audit"
	"github.com/diemdanh/diemdanh/hub/loginlock"
	"github.com/diemdanh/diemdanh/hub/store"
	"github.com/diemdanh/diemdanh/models/conf"
	"golang.org/x/crypto/bcrypt"
)

// Role of a principal.
type Role string

// Roles.
const (
	RoleAdmin   Role = "admin"
	RoleTeacher Role = "teacher"
	RoleParent  Role = "parent"
	RoleGate    Role = "gate"
)

// Roles lists every role (for tests and docs).
var Roles = []Role{RoleAdmin, RoleTeacher, RoleParent, RoleGate}

// Config is the auth section of the hub config.
type Config struct {
	// CookieSecure marks cookies Secure (sent over HTTPS only). Turn it off
	// only for development on http://localhost; browsers drop Secure
	// cookies on plain http except for localhost in some versions.
	CookieSecure bool          `yaml:"cookie_secure"`
	SessionTTL   time.Duration `yaml:"session_ttl"`
	// Failed logins allowed per window, per account and per client IP.
	MaxFailuresAccount int           `yaml:"max_failures_account"`
	MaxFailuresIP      int           `yaml:"max_failures_ip"`
	FailureWindow      time.Duration `yaml:"failure_window"`
	BcryptCost         int           `yaml:"bcrypt_cost"`
	MinPasswordLen     int           `yaml:"min_password_len"`
	// GateLockout locks a gate's basic-auth username after failures in a
	// row from any address, with exponential backoff; a good login resets
	// it. It holds even for the right password while it lasts.
	GateLockout api.LockoutConfig `yaml:"gate_lockout"`
}

// DefaultConfig returns the defaults.
func DefaultConfig() Config {
	return Config{CookieSecure: true, SessionTTL: 12 * time.Hour, MaxFailuresAccount: 5, MaxFailuresIP: 20,
		FailureWindow: 15 * time.Minute, BcryptCost: 11, MinPasswordLen: 10, GateLockout: api.DefaultLockout()}
}

// Validate names the first bad field under prefix.
func (c Config) Validate(prefix string) error {
	switch {
	case c.SessionTTL < time.Minute || c.SessionTTL > 30*24*time.Hour:
		return conf.Fieldf(prefix+".session_ttl", "must be 1m..720h, got %v", c.SessionTTL)
	case c.MaxFailuresAccount < 1 || c.MaxFailuresIP < 1:
		return conf.Fieldf(prefix+".max_failures_account", "failure limits must be ≥ 1")
	case c.FailureWindow < time.Second:
		return conf.Fieldf(prefix+".failure_window", "must be ≥ 1s")
	case c.BcryptCost < bcrypt.MinCost || c.BcryptCost > 16:
		return conf.Fieldf(prefix+".bcrypt_cost", "must be %d..16", bcrypt.MinCost)
	case c.MinPasswordLen < 8 || c.MinPasswordLen > 128:
		return conf.Fieldf(prefix+".min_password_len", "must be 8..128")
	}
	return c.GateLockout.Validate(prefix + ".gate_lockout")
}

// Principal is who a request comes from.
type Principal struct {
	AccountID  string `json:"account_id,omitempty"`
	Username   string `json:"username"`
	Role       Role   `json:"role"`
	SchoolID   string `json:"school_id,omitempty"` // '' = every school (admins only)
	StaffID    string `json:"staff_id,omitempty"`
	GateID     string `json:"gate_id,omitempty"`
	FullName   string `json:"full_name,omitempty"`
	MustChange bool   `json:"must_change"`
	CSRF       string `json:"-"`
	ViaSession bool   `json:"-"`
}

// ActorID implements api.Principal: "role:username" or "gate:id".
func (p *Principal) ActorID() string {
	if p.Role == RoleGate {
		return "gate:" + p.GateID
	}
	return string(p.Role) + ":" + p.Username
}

// Service holds accounts and sessions.
type Service struct {
	db    *store.DB
	audit *audit.Log
	log   *slog.Logger
	now   func() time.Time
	cfg   Config
	// lim: failed logins per account and per address (scope "http").
	lim *limiter
	// gateLock: per gate username, from any address (Gate; scope "http-gate").
	gateLock *api.Lockout

	rmu   sync.RWMutex
	rules []Rule

	gmu       sync.Mutex
	gateCache map[string]gateEntry // sha256(user:pass) -> gate
}

type gateEntry struct {
	p   Principal
	exp time.Time
}

// New returns the service.
func New(db *store.DB, al *audit.Log, cfg Config, log *slog.Logger, now func() time.Time) (*Service, error) {
	if err := cfg.Validate("auth"); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if now == nil {
		now = time.Now
	}
	if al == nil {
		al = audit.New(db, log, now)
	}
	return &Service{db: db, audit: al, log: log, now: now, cfg: cfg, gateCache: map[string]gateEntry{},
		lim:      newLimiter(now, loginlock.New(db, loginlock.ScopeHTTP), cfg.FailureWindow),
		gateLock: api.NewStoredLockout(cfg.GateLockout, now, loginlock.New(db, loginlock.ScopeHTTPGate)),
		rules:    append([]Rule(nil), DefaultRules...)}, nil
}

// Config returns the config in force.
func (s *Service) Config() Config { return s.cfg }

// Errors.
var (
	ErrBadCredentials = &api.Error{Code: api.CodeUnauthenticated, Message: "wrong username or password / sai tên đăng nhập hoặc mật khẩu"}
	ErrRateLimited    = &api.Error{Code: api.CodeRateLimited, Message: "too many failed logins; try again later / đăng nhập sai quá nhiều lần, hãy thử lại sau"}
	ErrMustChange     = &api.Error{Code: api.CodeForbidden, Message: "password change required / cần đổi mật khẩu trước"}
)

func randToken(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic("auth: crypto/rand: " + err.Error())
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

func hashToken(t string) string {
	h := sha256.Sum256([]byte(t))
	return hex.EncodeToString(h[:])
}

func (s *Service) loadAccount(ctx context.Context, where string, arg any) (*Principal, string, bool, error) {
	var p Principal
	var hash string
	var active bool
	err := s.db.R.QueryRowContext(ctx, `SELECT id, username, role, school_id, COALESCE(staff_id, ''), full_name, must_change, password_hash, active
		FROM accounts WHERE `+where, arg).Scan(&p.AccountID, &p.Username, &p.Role, &p.SchoolID, &p.StaffID, &p.FullName, &p.MustChange, &hash, &active)
	if err != nil {
		return nil, "", false, err
	}
	return &p, hash, active, nil
}

// dummyHash makes a login for an unknown user cost as much as a real one.
var dummyHash, _ = bcrypt.GenerateFromPassword([]byte("not a password"), bcrypt.DefaultCost)

// checkPassword verifies username/password with rate limiting. A limit
// the store cannot read refuses the login (fails closed).
func (s *Service) checkPassword(ctx context.Context, username, password, ip string) (*Principal, error) {
	username = strings.TrimSpace(username)
	akey := "acct:" + strings.ToLower(username)
	if err := s.limited(ctx, ip, akey); err != nil {
		if errors.Is(err, ErrRateLimited) {
			_ = s.audit.Record(ctx, "anonymous", audit.ActionLoginFailed, "account:"+trunc(username), map[string]any{"reason": "rate_limited"}, ip)
		}
		return nil, err
	}
	p, hash, active, err := s.loadAccount(ctx, `username = ?`, username)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("auth: %w", err)
	}
	if err != nil {
		_ = bcrypt.CompareHashAndPassword(dummyHash, []byte(password))
	}
	if err != nil || !active || bcrypt.CompareHashAndPassword([]byte(hash), []byte(password)) != nil {
		if ferr := errors.Join(s.lim.fail(ctx, akey, s.cfg.MaxFailuresAccount),
			s.lim.fail(ctx, "ip:"+ip, s.cfg.MaxFailuresIP)); ferr != nil {
			s.log.Warn("failed login not stored: it counts until the hub restarts", "username", trunc(username), "err", ferr)
		}
		_ = s.audit.Record(ctx, "anonymous", audit.ActionLoginFailed, "account:"+trunc(username), nil, ip)
		return nil, ErrBadCredentials
	}
	if err := s.lim.reset(ctx, akey); err != nil {
		return nil, err
	}
	return p, nil
}

// limited returns ErrRateLimited when the address or one of keys has
// reached its failure limit, or the store's error.
func (s *Service) limited(ctx context.Context, ip string, keys ...string) error {
	ok, err := s.lim.allow(ctx, "ip:"+ip, s.cfg.MaxFailuresIP)
	for _, k := range keys {
		if err != nil || !ok {
			break
		}
		ok, err = s.lim.allow(ctx, k, s.cfg.MaxFailuresAccount)
	}
	switch {
	case err != nil:
		return err
	case !ok:
		return ErrRateLimited
	}
	return nil
}

// trunc bounds a username quoted in an audit target, an error or a log
// line to 64 bytes.
func trunc(s string) string { return conf.Truncate(s, 64, conf.Bytes, "") }

// Login checks the password and opens a session; it returns the cookie
// token (never stored in clear) and the principal with its CSRF token.
func (s *Service) Login(ctx context.Context, username, password, ip string) (string, *Principal, error) {
	p, err := s.checkPassword(ctx, username, password, ip)
	if err != nil {
		return "", nil, err
	}
	tok, csrf := randToken(32), randToken(32)
	now := s.now()
	err = s.db.Tx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `DELETE FROM sessions WHERE expires_at < ?`, now.UnixMilli()); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO sessions(token_hash, account_id, csrf, created_at, expires_at, ip) VALUES (?, ?, ?, ?, ?, ?)`,
			hashToken(tok), p.AccountID, csrf, now.UnixMilli(), now.Add(s.cfg.SessionTTL).UnixMilli(), ip); err != nil {
			return err
		}
		return s.audit.RecordTx(ctx, tx, p.ActorID(), audit.ActionLogin, "account:"+p.Username, nil, ip)
	})
	if err != nil {
		return "", nil, fmt.Errorf("auth: login: %w", err)
	}
	p.CSRF, p.ViaSession = csrf, true
	return tok, p, nil
}

// Session resolves a cookie token to its principal.
func (s *Service) Session(ctx context.Context, tok string) (*Principal, error) {
	var accID, csrf string
	var exp int64
	err := s.db.R.QueryRowContext(ctx, `SELECT account_id, csrf, expires_at FROM sessions WHERE token_hash = ?`, hashToken(tok)).Scan(&accID, &csrf, &exp)
	if err != nil || exp < s.now().UnixMilli() {
		return nil, api.ErrUnauthenticated
	}
	p, _, active, err := s.loadAccount(ctx, `id = ?`, accID)
	if err != nil || !active {
		return nil, api.ErrUnauthenticated
	}
	p.CSRF, p.ViaSession = csrf, true
	return p, nil
}

// Logout ends the session of tok.
func (s *Service) Logout(ctx context.Context, tok string, p *Principal, ip string) error {
	return s.db.Tx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `DELETE FROM sessions WHERE token_hash = ?`, hashToken(tok)); err != nil {
			return err
		}
		return s.audit.RecordTx(ctx, tx, p.ActorID(), audit.ActionLogout, "account:"+p.Username, nil, ip)
	})
}

// ChangePassword sets a new password after checking the old one, clears
// must_change and ends the account's other sessions.
func (s *Service) ChangePassword(ctx context.Context, p *Principal, old, newPw, ip, keepToken string) error {
	if _, err := s.checkPassword(ctx, p.Username, old, ip); err != nil {
		return err
	}
	if len(newPw) < s.cfg.MinPasswordLen {
		return api.Invalid("new_password", "must be at least %d characters / mật khẩu phải có ít nhất %d ký tự", s.cfg.MinPasswordLen, s.cfg.MinPasswordLen)
	}
	if newPw == old {
		return api.Invalid("new_password", "must differ from the old one / phải khác mật khẩu cũ")
	}
	hash, err := bcrypt.GenerateFromPassword([]byte(newPw), s.cfg.BcryptCost)
	if err != nil {
		return fmt.Errorf("auth: %w", err)
	}
	return s.db.Tx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `UPDATE accounts SET password_hash = ?, must_change = 0, updated_at = ? WHERE id = ?`, string(hash), s.now().UnixMilli(), p.AccountID); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM sessions WHERE account_id = ? AND token_hash != ?`, p.AccountID, hashToken(keepToken)); err != nil {
			return err
		}
		return s.audit.RecordTx(ctx, tx, p.ActorID(), audit.ActionPasswordChange, "account:"+p.Username, nil, ip)
	})
}

// Gate authenticates a gate device by its username/password (gates table).
// The username's lockout (cfg.GateLockout, failures from any address) and
// the address's failure limit (shared with logins) are checked before the
// cache of good passwords, so a lock holds even for the right password.
func (s *Service) Gate(ctx context.Context, username, password, ip string) (*Principal, error) {
	ukey := "gate:" + username
	_, locked, err := s.gateLock.Locked(ctx, ukey)
	if err != nil {
		return nil, fmt.Errorf("auth: gate %q: %w", trunc(username), err)
	}
	if locked {
		return nil, ErrRateLimited
	}
	if err := s.limited(ctx, ip); err != nil {
		return nil, err
	}
	key := hashToken(username + "\x00" + password)
	if p, ok := s.cachedGate(key); ok {
		return p, s.gateLock.Reset(ctx, ukey)
	}
	var p Principal
	var hash string
	var active bool
	err = s.db.R.QueryRowContext(ctx, `SELECT id, school_id, password_hash, active FROM gates WHERE username = ?`, username).Scan(&p.GateID, &p.SchoolID, &hash, &active)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, errNoSuchGate
	}
	if err != nil {
		return nil, fmt.Errorf("auth: gate %q: %w", trunc(username), err)
	}
	if !active || bcrypt.CompareHashAndPassword([]byte(hash), []byte(password)) != nil {
		s.gateFailed(ctx, username, ip)
		return nil, ErrBadCredentials
	}
	if err := s.gateLock.Reset(ctx, ukey); err != nil {
		return nil, err
	}
	p.Role, p.Username = RoleGate, username
	s.gmu.Lock()
	s.gateCache[key] = gateEntry{p: p, exp: s.now().Add(time.Minute)}
	s.gmu.Unlock()
	return &p, nil
}

func (s *Service) cachedGate(key string) (*Principal, bool) {
	s.gmu.Lock()
	e, ok := s.gateCache[key]
	s.gmu.Unlock()
	if !ok || !s.now().Before(e.exp) {
		return nil, false
	}
	p := e.p
	return &p, true
}

// gateFailed counts a wrong gate password against the username and the
// address, and audits it (with the lock it caused, if any).
func (s *Service) gateFailed(ctx context.Context, username, ip string) {
	lock, err := s.gateLock.Fail(ctx, "gate:"+username)
	err = errors.Join(err, s.lim.fail(ctx, "ip:"+ip, s.cfg.MaxFailuresIP))
	if err != nil {
		s.log.Warn("failed gate login not stored: it counts until the hub restarts", "username", trunc(username), "err", err)
	}
	detail := map[string]any{"kind": "gate"}
	if lock > 0 {
		detail["locked_for"] = lock.String()
		s.log.Warn("gate username locked after failed logins", "username", trunc(username), "for", lock, "ip", ip)
	}
	_ = s.audit.Record(ctx, "anonymous", audit.ActionLoginFailed, "gate:"+trunc(username), detail, ip)
}

// errNoSuchGate: the basic-auth user is not a gate (try accounts).
var errNoSuchGate = errors.New("auth: no such gate")
