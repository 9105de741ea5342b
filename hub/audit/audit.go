// Package audit is the hub's append-only audit log (who did what, when:
// enrolments, consent changes, views of a pupil's photos, exports,
// deletions, logins), the data-processing record a school needs for its
// impact assessment under Decree 13/2023, and the retention job that
// deletes gate face crops after a configurable number of days.
//
// Append-only is enforced by the database: triggers on audit_log RAISE on
// any UPDATE or DELETE, so no code path (nor a stray SQL console) can
// rewrite history without dropping the trigger first.
package audit

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"github.com/diemdanh/diemdanh/hub/api"
	"github.com/diemdanh/diemdanh/hub/store"
	"github.com/gin-gonic/gin"
)

// Actions recorded in the log.
const (
	ActionLogin           = "login"
	ActionLoginFailed     = "login_failed"
	ActionLogout          = "logout"
	ActionPasswordChange  = "password_change"
	ActionAccountCreate   = "account_create"
	ActionAccountUpdate   = "account_update"
	ActionEnrol           = "enrol"
	ActionEnrolReview     = "enrol_review"
	ActionEnrolRejected   = "enrol_rejected"
	ActionTemplateStatus  = "template_status"
	ActionConsentGiven    = "consent_given"
	ActionConsentWithdraw = "consent_withdrawn"
	ActionPhotoView       = "photo_view"
	ActionExport          = "export"
	ActionDelete          = "delete"
	ActionFeedback        = "not_this_pupil"
	ActionRetention       = "retention"
	ActionAuditView       = "audit_view"
)

// Entry is one audit record.
type Entry struct {
	ID      int64           `json:"id"`
	At      int64           `json:"at"` // Unix ms, hub clock
	Actor   string          `json:"actor"`
	Action  string          `json:"action"`
	Subject string          `json:"subject"` // e.g. pupil:012345678901
	Detail  json.RawMessage `json:"detail"`
	IP      string          `json:"ip,omitempty"`
	School  string          `json:"school_id,omitempty"` // the school it is about; "" none
}

// Log writes and reads the audit log.
type Log struct {
	db  *store.DB
	log *slog.Logger
	now func() time.Time
}

// New returns the audit log over db.
func New(db *store.DB, log *slog.Logger, now func() time.Time) *Log {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if now == nil {
		now = time.Now
	}
	return &Log{db: db, log: log, now: now}
}

func (l *Log) row(actor, action, subject string, detail any, ip string) (int64, string, string, string, string, string) {
	b, err := json.Marshal(detail)
	if err != nil || detail == nil {
		b = []byte("{}")
	}
	if actor == "" {
		actor = "system"
	}
	return l.now().UnixMilli(), actor, action, subject, string(b), ip
}

// Record appends one entry in its own transaction.
func (l *Log) Record(ctx context.Context, actor, action, subject string, detail any, ip string) error {
	return l.db.Tx(ctx, func(tx *sql.Tx) error { return l.RecordTx(ctx, tx, actor, action, subject, detail, ip) })
}

// RecordTx appends one entry inside tx, so the audit record commits (or
// not) together with the change it describes.
// The entry's school (what school admins may read) is its subject's, else
// its actor's (schoolFor).
func (l *Log) RecordTx(ctx context.Context, tx *sql.Tx, actor, action, subject string, detail any, ip string) error {
	school, err := schoolFor(ctx, tx, actor, subject)
	if err != nil {
		return err
	}
	return l.insert(ctx, tx, school, actor, action, subject, detail, ip)
}

func (l *Log) insert(ctx context.Context, tx *sql.Tx, school sql.NullString, actor, action, subject string, detail any, ip string) error {
	at, a, ac, s, d, i := l.row(actor, action, subject, detail, ip)
	if _, err := tx.ExecContext(ctx, `INSERT INTO audit_log(at, actor, action, subject, detail, ip, school_id) VALUES (?, ?, ?, ?, ?, ?, ?)`,
		at, a, ac, s, d, i, school); err != nil {
		return fmt.Errorf("audit: %w", err)
	}
	return nil
}

// recordReader records a reader's own use of the log under the reader's
// school (not the school of the subject they filtered on).
func (l *Log) recordReader(c *gin.Context, sc Scope, action, subject string, detail any) error {
	return l.db.Tx(c.Request.Context(), func(tx *sql.Tx) error {
		return l.insert(c.Request.Context(), tx, readerSchool(sc), api.Actor(c), action, subject, detail, c.ClientIP())
	})
}

// RecordC records from a request: actor and IP from the gin context.
func (l *Log) RecordC(c *gin.Context, action, subject string, detail any) error {
	return l.Record(c.Request.Context(), api.Actor(c), action, subject, detail, c.ClientIP())
}

// Filter selects entries; zero fields match everything but Scope, which
// must be set (the zero Scope is refused).
type Filter struct {
	Scope    Scope `json:"-"`
	Subject  string
	Action   string
	Actor    string
	Since    int64
	BeforeID int64 // paging: entries with id below this
	Limit    int
}

// List returns matching entries, newest first.
func (l *Log) List(ctx context.Context, f Filter) ([]Entry, error) {
	if f.Limit <= 0 || f.Limit > 1000 {
		f.Limit = 200
	}
	if !f.Scope.valid() {
		return nil, fmt.Errorf("audit: list: %w", errNoScope)
	}
	q := `SELECT id, at, actor, action, subject, detail, ip, COALESCE(school_id, '') FROM audit_log WHERE 1=1`
	var args []any
	if !f.Scope.All {
		q += ` AND school_id = ?`
		args = append(args, f.Scope.School)
	}
	if f.Subject != "" {
		q += ` AND subject = ?`
		args = append(args, f.Subject)
	}
	if f.Action != "" {
		q += ` AND action = ?`
		args = append(args, f.Action)
	}
	if f.Actor != "" {
		q += ` AND actor = ?`
		args = append(args, f.Actor)
	}
	if f.Since > 0 {
		q += ` AND at >= ?`
		args = append(args, f.Since)
	}
	if f.BeforeID > 0 {
		q += ` AND id < ?`
		args = append(args, f.BeforeID)
	}
	q += ` ORDER BY id DESC LIMIT ?`
	args = append(args, f.Limit)
	rows, err := l.db.R.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("audit: list: %w", err)
	}
	defer rows.Close()
	out := []Entry{}
	for rows.Next() {
		var e Entry
		var d string
		if err := rows.Scan(&e.ID, &e.At, &e.Actor, &e.Action, &e.Subject, &d, &e.IP, &e.School); err != nil {
			return nil, fmt.Errorf("audit: list: %w", err)
		}
		e.Detail = json.RawMessage(d)
		out = append(out, e)
	}
	return out, rows.Err()
}

// Routes registers the admin-only audit API. require must refuse everyone
// but admins (auth.Require(auth.PermAudit)); each handler then reads only
// the scope of the request's principal (Reader): a hub-wide admin the
// whole log and hub, an admin of one school that school's entries and
// processing record.
//
//	GET /api/v1/audit?subject=&action=&actor=&since=&before_id=&limit=
//	GET /api/v1/audit/processing-record
func (l *Log) Routes(r gin.IRouter, require gin.HandlerFunc, retentionDays func() int) {
	r.GET("/audit", require, l.listHandler)
	r.GET("/audit/processing-record", require, func(c *gin.Context) {
		sc, err := scopeOf(c)
		if err != nil {
			api.Fail(c, err)
			return
		}
		rec, err := l.ProcessingRecord(c.Request.Context(), retentionDays(), sc)
		if err != nil {
			api.Fail(c, err)
			return
		}
		if err := l.recordReader(c, sc, ActionExport, "processing-record", gin.H{"format": "json"}); err != nil {
			api.Fail(c, err)
			return
		}
		c.Header("Content-Disposition", `attachment; filename="processing-record.json"`)
		api.JSON(c, rec)
	})
}

func (l *Log) listHandler(c *gin.Context) {
	sc, err := scopeOf(c)
	if err != nil {
		api.Fail(c, err)
		return
	}
	f := Filter{Scope: sc, Subject: c.Query("subject"), Action: c.Query("action"), Actor: c.Query("actor")}
	f.Since, _ = strconv.ParseInt(c.Query("since"), 10, 64)
	f.BeforeID, _ = strconv.ParseInt(c.Query("before_id"), 10, 64)
	f.Limit, _ = strconv.Atoi(c.Query("limit"))
	es, err := l.List(c.Request.Context(), f)
	if err != nil {
		api.Fail(c, err)
		return
	}
	if err := l.recordReader(c, sc, ActionAuditView, f.Subject, f); err != nil {
		api.Fail(c, err)
		return
	}
	api.JSON(c, gin.H{"entries": es})
}
