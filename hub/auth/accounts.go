package auth

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"

	"github.com/diemdanh/diemdanh/hub/api"
	"github.com/diemdanh/diemdanh/hub/audit"
	"github.com/diemdanh/diemdanh/hub/roster"
	"github.com/google/uuid"
	"golang.org/x/crypto/bcrypt"
)

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
