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
	"github.com/diemdanh/diemdanh/hub/roster"
	"github.com/diemdanh/diemdanh/hub/store"
	"github.com/diemdanh/diemdanh/models/conf"
	"github.com/google/uuid"
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

// NewAccount is what an admin fills in to create an account.
type NewAccount struct {
	Username string `json:"username"`
	Password string `json:"password"` // empty: a one-time password is generated and returned
	Role     Role   `json:"role"`
	SchoolID string `json:"school_id"`
	StaffID  string `json:"staff_id"`
	FullName string `json:"full_name"`
	// GuardianIDs links a parent account to guardian rows (one per child).
	GuardianIDs []int64 `json:"guardian_ids"`
}

// Account is an account without secrets.
type Account struct {
	ID         string  `json:"id"`
	Username   string  `json:"username"`
	Role       Role    `json:"role"`
	SchoolID   string  `json:"school_id"`
	StaffID    string  `json:"staff_id,omitempty"`
	FullName   string  `json:"full_name"`
	MustChange bool    `json:"must_change"`
	Active     bool    `json:"active"`
	Guardians  []int64 `json:"guardian_ids,omitempty"`
}

func validUsername(u string) bool {
	if len(u) < 2 || len(u) > 64 {
		return false
	}
	for _, r := range u {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-' || r == '@') {
			return false
		}
	}
	return true
}

// CreateAccount creates an account and returns it with the one-time
// password when none was given (the account must change it at first login).
func (s *Service) CreateAccount(ctx context.Context, actor string, n NewAccount) (Account, string, error) {
	n.FullName = roster.NormalizeText(n.FullName) // trimmed, NFC
	if !validUsername(n.Username) {
		return Account{}, "", api.Invalid("username", "2–64 letters, digits or . _ - @")
	}
	switch n.Role {
	case RoleAdmin, RoleTeacher, RoleParent:
	default:
		return Account{}, "", api.Invalid("role", "must be admin, teacher or parent")
	}
	if n.Role == RoleTeacher && n.StaffID == "" {
		return Account{}, "", api.Invalid("staff_id", "a teacher account must link to a staff row")
	}
	if n.Role == RoleParent && len(n.GuardianIDs) == 0 {
		return Account{}, "", api.Invalid("guardian_ids", "a parent account must link to at least one guardian row")
	}
	if n.Role != RoleAdmin && n.SchoolID == "" {
		return Account{}, "", api.Invalid("school_id", "is required for teachers and parents")
	}
	if err := s.checkLinks(ctx, n); err != nil {
		return Account{}, "", err
	}
	otp := ""
	must := 0
	if n.Password == "" {
		otp = randToken(12)
		n.Password = otp
		must = 1
	} else if len(n.Password) < s.cfg.MinPasswordLen {
		return Account{}, "", api.Invalid("password", "must be at least %d characters", s.cfg.MinPasswordLen)
	}
	hash, err := bcrypt.GenerateFromPassword([]byte(n.Password), s.cfg.BcryptCost)
	if err != nil {
		return Account{}, "", fmt.Errorf("auth: %w", err)
	}
	id := uuid.NewString()
	now := s.now().UnixMilli()
	err = s.db.Tx(ctx, func(tx *sql.Tx) error {
		var staff any
		if n.StaffID != "" {
			staff = n.StaffID
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO accounts(id, username, role, school_id, staff_id, full_name, password_hash, must_change, created_at, updated_at)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`, id, n.Username, string(n.Role), n.SchoolID, staff, n.FullName, string(hash), must, now, now); err != nil {
			if strings.Contains(err.Error(), "UNIQUE") {
				return api.Errorf(api.CodeConflict, "username %q is taken", n.Username)
			}
			if strings.Contains(err.Error(), "FOREIGN KEY") {
				return api.Invalid("staff_id", "unknown staff %q", n.StaffID)
			}
			return fmt.Errorf("auth: create account: %w", err)
		}
		for _, g := range n.GuardianIDs {
			if _, err := tx.ExecContext(ctx, `INSERT INTO account_guardians(account_id, guardian_id) VALUES (?, ?)`, id, g); err != nil {
				return api.Invalid("guardian_ids", "unknown guardian %d", g)
			}
		}
		return s.audit.RecordTx(ctx, tx, actor, audit.ActionAccountCreate, "account:"+n.Username,
			map[string]any{"role": n.Role, "school_id": n.SchoolID, "staff_id": n.StaffID, "guardian_ids": n.GuardianIDs}, "")
	})
	if err != nil {
		return Account{}, "", err
	}
	return Account{ID: id, Username: n.Username, Role: n.Role, SchoolID: n.SchoolID, StaffID: n.StaffID,
		FullName: n.FullName, MustChange: must == 1, Active: true, Guardians: n.GuardianIDs}, otp, nil
}

// checkLinks refuses a staff row or guardian rows of another school than
// the account's: the account would see that school's classes or pupils
// through them (CanSeeClass, CanSeePupil).
func (s *Service) checkLinks(ctx context.Context, n NewAccount) error {
	if n.SchoolID == "" {
		return nil
	}
	if n.StaffID != "" && !s.staffInSchool(ctx, n.StaffID, n.SchoolID) {
		return api.Invalid("staff_id", "unknown staff %q in school %q", n.StaffID, n.SchoolID)
	}
	for _, g := range n.GuardianIDs {
		var school string
		err := s.db.R.QueryRowContext(ctx, `SELECT pu.school_id FROM guardians g JOIN pupils pu ON pu.id = g.pupil_id WHERE g.id = ?`, g).Scan(&school)
		if err != nil || school != n.SchoolID {
			return api.Invalid("guardian_ids", "unknown guardian %d of a pupil in school %q", g, n.SchoolID)
		}
	}
	return nil
}

// Bootstrap creates the first admin when there is none and logs its
// one-time password. It returns the password ("" when an admin existed).
func (s *Service) Bootstrap(ctx context.Context) (string, error) {
	var n int
	if err := s.db.W.QueryRowContext(ctx, `SELECT count(*) FROM accounts WHERE role = 'admin' AND active = 1`).Scan(&n); err != nil {
		return "", fmt.Errorf("auth: bootstrap: %w", err)
	}
	if n > 0 {
		return "", nil
	}
	name := "admin"
	var taken int
	_ = s.db.W.QueryRowContext(ctx, `SELECT count(*) FROM accounts WHERE username = ?`, name).Scan(&taken)
	if taken > 0 {
		name = "admin-" + randToken(3)
	}
	_, otp, err := s.CreateAccount(ctx, "system", NewAccount{Username: name, Role: RoleAdmin, FullName: "Administrator"})
	if err != nil {
		return "", err
	}
	s.log.Warn("first admin account created; log in and change this one-time password now",
		"username", name, "one_time_password", otp)
	return otp, nil
}

// ListAccounts returns every account.
func (s *Service) ListAccounts(ctx context.Context) ([]Account, error) {
	rows, err := s.db.R.QueryContext(ctx, `SELECT id, username, role, school_id, COALESCE(staff_id, ''), full_name, must_change, active FROM accounts ORDER BY username`)
	if err != nil {
		return nil, fmt.Errorf("auth: %w", err)
	}
	defer rows.Close()
	out := []Account{}
	for rows.Next() {
		var a Account
		if err := rows.Scan(&a.ID, &a.Username, &a.Role, &a.SchoolID, &a.StaffID, &a.FullName, &a.MustChange, &a.Active); err != nil {
			return nil, err
		}
		out = append(out, a)
	}
	return out, rows.Err()
}

// AssignClass lets a teacher (staff row) see a class besides their
// homeroom class, or takes it away.
func (s *Service) AssignClass(ctx context.Context, actor, staffID, classID string, assign bool) error {
	return s.db.Tx(ctx, func(tx *sql.Tx) error {
		q := `INSERT OR IGNORE INTO teacher_classes(staff_id, class_id) VALUES (?, ?)`
		if !assign {
			q = `DELETE FROM teacher_classes WHERE staff_id = ? AND class_id = ?`
		}
		if _, err := tx.ExecContext(ctx, q, staffID, classID); err != nil {
			if strings.Contains(err.Error(), "FOREIGN KEY") {
				return api.Invalid("class_id", "unknown staff or class")
			}
			return fmt.Errorf("auth: %w", err)
		}
		return s.audit.RecordTx(ctx, tx, actor, audit.ActionAccountUpdate, "staff:"+staffID, map[string]any{"class_id": classID, "assigned": assign}, "")
	})
}

// SetActive enables or disables an account; disabling ends its sessions.
func (s *Service) SetActive(ctx context.Context, actor, username string, active bool) error {
	return s.db.Tx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE accounts SET active = ?, updated_at = ? WHERE username = ?`, active, s.now().UnixMilli(), username)
		if err != nil {
			return fmt.Errorf("auth: %w", err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return api.ErrNotFound
		}
		if !active {
			if _, err := tx.ExecContext(ctx, `DELETE FROM sessions WHERE account_id = (SELECT id FROM accounts WHERE username = ?)`, username); err != nil {
				return err
			}
		}
		return s.audit.RecordTx(ctx, tx, actor, audit.ActionAccountUpdate, "account:"+username, map[string]any{"active": active}, "")
	})
}

// ActionPasswordReset is the audit action of an admin's password reset
// (named as hub/audit's account actions are; the detail never holds the
// password).
const ActionPasswordReset = "password_reset"

// errResetSelf: an admin changes their own password with the old one.
var errResetSelf = api.Invalid("username", "change your own password on the password page / hãy tự đổi mật khẩu của bạn ở trang đổi mật khẩu")

// ResetPassword gives the account username a new one-time password (as
// CreateAccount generates), returned once; like the first admin's, it
// must be changed at the next login. The account's sessions end and its
// failed-login count is cleared. Only an admin may reset, an admin of one
// school only accounts of that school: another school's account or a
// hub-wide one is not found (404), as for POST /accounts/{username}/active.
// Audited (password_reset, as actor from ip).
func (s *Service) ResetPassword(ctx context.Context, actor *Principal, username, ip string) (string, error) {
	if actor == nil || actor.Role != RoleAdmin || actor.MustChange {
		return "", errDenied
	}
	var id, school string
	err := s.db.R.QueryRowContext(ctx, `SELECT id, school_id FROM accounts WHERE username = ?`, username).Scan(&id, &school)
	switch {
	case errors.Is(err, sql.ErrNoRows) || err == nil && !manages(actor, school):
		return "", api.ErrNotFound // names of other schools are not revealed
	case err != nil:
		return "", fmt.Errorf("auth: reset password: %w", err)
	case id == actor.AccountID:
		return "", errResetSelf
	}
	otp := randToken(12)
	hash, err := bcrypt.GenerateFromPassword([]byte(otp), s.cfg.BcryptCost)
	if err != nil {
		return "", fmt.Errorf("auth: reset password: %w", err)
	}
	err = s.db.Tx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `UPDATE accounts SET password_hash = ?, must_change = 1, updated_at = ? WHERE id = ?`,
			string(hash), s.now().UnixMilli(), id); err != nil {
			return err
		}
		res, err := tx.ExecContext(ctx, `DELETE FROM sessions WHERE account_id = ?`, id)
		if err != nil {
			return err
		}
		n, _ := res.RowsAffected()
		return s.audit.RecordTx(ctx, tx, actor.ActorID(), ActionPasswordReset, "account:"+username, map[string]any{"sessions_ended": n}, ip)
	})
	if err != nil {
		return "", fmt.Errorf("auth: reset password: %w", err)
	}
	if err := s.lim.reset(ctx, "acct:"+strings.ToLower(username)); err != nil {
		s.log.Warn("password reset: the account's failed logins are still counted", "username", trunc(username), "err", err)
	}
	return otp, nil
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
