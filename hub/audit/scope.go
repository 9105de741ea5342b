package audit

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"

	"github.com/diemdanh/diemdanh/hub/api"
	"github.com/gin-gonic/gin"
)

// Scope is the part of the log a reader may see: every entry (a hub-wide
// admin), or only the entries about one school (an admin of that school).
// The zero Scope sees nothing, so a forgotten scope fails closed.
type Scope struct {
	All    bool   // every entry, also those about no school
	School string // else only entries whose school_id is this school
}

// where returns the SQL condition "col is in s" and its arguments: col is
// a school ID column, or a pupil ID column when pupil is true.
func (s Scope) where(col string, pupil bool) (string, []any) {
	switch {
	case s.All:
		return "1=1", nil
	case pupil:
		return col + " IN (SELECT id FROM pupils WHERE school_id = ?)", []any{s.School}
	}
	return col + " = ?", []any{s.School}
}

// valid reports whether s sees anything.
func (s Scope) valid() bool { return s.All || s.School != "" }

// Reader is what the audit routes need of the request's principal (stored
// by the Authorizer under api.PrincipalKey): the scope it may read.
// hub/auth's Principal implements it; a principal that does not is
// refused.
type Reader interface {
	AuditScope() Scope
}

var errNoScope = &api.Error{Code: api.CodeForbidden, Message: "the audit log is for admins / nhật ký chỉ dành cho quản trị viên"}

// scopeOf returns the scope of the request's principal, or a refusal.
func scopeOf(c *gin.Context) (Scope, error) {
	v, _ := c.Get(api.PrincipalKey)
	r, ok := v.(Reader)
	if !ok {
		return Scope{}, errNoScope
	}
	s := r.AuditScope()
	if !s.valid() {
		return Scope{}, errNoScope
	}
	return s, nil
}

// schoolQuery is the query of the school of a subject or actor of kind
// ("pupil:…", "admin:username", "gate:…"); "" for kinds of no school.
func schoolQuery(kind string, actor bool) string {
	if actor {
		switch kind {
		case "admin", "teacher", "parent":
			kind = "account"
		case "gate":
		default:
			return ""
		}
	}
	switch kind {
	case "pupil":
		return `SELECT school_id FROM pupils WHERE id = ?`
	case "class":
		return `SELECT school_id FROM classes WHERE id = ?`
	case "gate":
		return `SELECT school_id FROM gates WHERE id = ?`
	case "staff":
		return `SELECT school_id FROM staff WHERE id = ?`
	case "account":
		return `SELECT school_id FROM accounts WHERE username = ?`
	case "school":
		return `SELECT id FROM schools WHERE id = ?`
	case "event":
		return `SELECT school_id FROM events WHERE event_id = ?`
	}
	return ""
}

// schoolFor is the school an entry is about: its subject's when the
// subject names something of one school, else its actor's (the account's
// or gate's school). Neither (the system, a hub-wide admin acting on
// nothing school-bound, an unknown username): NULL, which only hub-wide
// readers see.
func schoolFor(ctx context.Context, tx *sql.Tx, actor, subject string) (sql.NullString, error) {
	s, err := lookupSchool(ctx, tx, subject, false)
	if err != nil || s.Valid {
		return s, err
	}
	return lookupSchool(ctx, tx, actor, true)
}

func lookupSchool(ctx context.Context, tx *sql.Tx, ref string, actor bool) (sql.NullString, error) {
	kind, id, ok := strings.Cut(ref, ":")
	q := schoolQuery(kind, actor)
	if !ok || id == "" || q == "" {
		return sql.NullString{}, nil
	}
	var s string
	err := tx.QueryRowContext(ctx, q, id).Scan(&s)
	switch {
	case errors.Is(err, sql.ErrNoRows) || (err == nil && s == ""):
		return sql.NullString{}, nil
	case err != nil:
		return sql.NullString{}, fmt.Errorf("audit: school of %s: %w", kind, err)
	}
	return sql.NullString{String: s, Valid: true}, nil
}

// readerSchool is the school recorded on a reader's own view of the log:
// theirs, or none for a hub-wide reader.
func readerSchool(s Scope) sql.NullString {
	if s.All {
		return sql.NullString{}
	}
	return sql.NullString{String: s.School, Valid: true}
}
