// Package breach is the hub's register of personal-data breaches (table
// breaches, written only here). Law 91/2025 on personal data protection and
// Decree 13/2023 require the school, as controller, to notify the
// authority (the Ministry of Public Security's A05) within 72 hours of
// finding a breach, and to record what happened, whose data, the actions
// taken and the notifications. Each change is audited (hub/audit) in the
// same transaction. A school's admin sees and changes only its school's
// breaches; a hub-wide admin (school "") every one.
package breach

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/diemdanh/diemdanh/hub/api"
	"github.com/diemdanh/diemdanh/hub/audit"
	"github.com/diemdanh/diemdanh/hub/store"
)

// Deadline is how long after finding a breach the authority must be told.
const Deadline = 72 * time.Hour

// Audit actions.
const (
	ActionCreate          = "breach_create"
	ActionAction          = "breach_action"
	ActionNotifyAuthority = "breach_notify_authority"
	ActionNotifySubjects  = "breach_notify_subjects"
	ActionClose           = "breach_close"
)

// Scopes: whose data the breach touched.
var Scopes = []string{"pupils", "classes", "all"}

// Breach is one entry of the register. Zero times are "not yet".
type Breach struct {
	ID                  int64     `json:"id"`
	SchoolID            string    `json:"school_id"`
	What                string    `json:"what"`
	OccurredAt          time.Time `json:"occurred_at,omitzero"`
	FoundAt             time.Time `json:"found_at"`
	Scope               string    `json:"scope"`
	Subjects            string    `json:"subjects"`
	Count               int       `json:"affected_count"`
	Actions             string    `json:"actions"`
	AuthorityNotifiedAt time.Time `json:"authority_notified_at,omitzero"`
	AuthorityName       string    `json:"authority_name"`
	SubjectsNotifiedAt  time.Time `json:"subjects_notified_at,omitzero"`
	ClosedAt            time.Time `json:"closed_at,omitzero"`
	CreatedBy           string    `json:"created_by"`
	CreatedAt           time.Time `json:"created_at"`
	UpdatedAt           time.Time `json:"updated_at"`
}

// DueAt is when the authority must have been told.
func (b Breach) DueAt() time.Time { return b.FoundAt.Add(Deadline) }

// Open reports whether the breach is not closed.
func (b Breach) Open() bool { return b.ClosedAt.IsZero() }

// Pending reports whether the 72-hour clock runs: open, authority not told.
func (b Breach) Pending() bool { return b.Open() && b.AuthorityNotifiedAt.IsZero() }

// Left is the time left on the clock at now (negative: overdue).
func (b Breach) Left(now time.Time) time.Duration { return b.DueAt().Sub(now) }

// New is what an admin records when a breach is found.
type New struct {
	SchoolID   string    `json:"school_id"`
	What       string    `json:"what"`
	OccurredAt time.Time `json:"occurred_at,omitzero"`
	FoundAt    time.Time `json:"found_at"`
	Scope      string    `json:"scope"`
	Subjects   string    `json:"subjects"`
	Count      int       `json:"affected_count"`
	Actions    string    `json:"actions"`
}

// ErrNotFound is a breach that does not exist or is of another school.
var ErrNotFound = &api.Error{Code: api.CodeNotFound, Message: "no such breach / không có sự cố này"}

// Register is the breach register.
type Register struct {
	db    *store.DB
	audit *audit.Log
	now   func() time.Time
}

// NewRegister returns the register over db; now defaults to time.Now.
func NewRegister(db *store.DB, al *audit.Log, now func() time.Time) *Register {
	if now == nil {
		now = time.Now
	}
	return &Register{db: db, audit: al, now: now}
}

const maxText = 8000

func (n New) validate(now time.Time) error {
	switch {
	case strings.TrimSpace(n.What) == "" || len(n.What) > maxText:
		return api.Invalid("what", "say what happened (at most 8000 bytes)")
	case n.FoundAt.IsZero() || n.FoundAt.After(now.Add(time.Minute)):
		return api.Invalid("found_at", "when the breach was found, not in the future")
	case !n.OccurredAt.IsZero() && n.OccurredAt.After(n.FoundAt):
		return api.Invalid("occurred_at", "cannot be after found_at")
	case !validScope(n.Scope):
		return api.Invalid("scope", "must be pupils, classes or all")
	case n.Count < 0 || n.Count > 10_000_000:
		return api.Invalid("affected_count", "must be 0..10000000")
	case len(n.Subjects) > maxText || len(n.Actions) > maxText:
		return api.Invalid("subjects", "at most 8000 bytes")
	}
	return nil
}

func validScope(s string) bool {
	for _, x := range Scopes {
		if s == x {
			return true
		}
	}
	return false
}

func ms(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t.UnixMilli()
}

// Create records a breach of school (a school admin's own school; "" for
// a hub-wide admin, who names n.SchoolID) and audits it.
func (r *Register) Create(ctx context.Context, school string, n New, actor, ip string) (Breach, error) {
	if school != "" {
		n.SchoolID = school
	}
	now := r.now()
	if err := n.validate(now); err != nil {
		return Breach{}, err
	}
	var id int64
	err := r.db.Tx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `INSERT INTO breaches(school_id, what, occurred_at, found_at, scope, subjects, affected_count,
			actions, created_by, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			n.SchoolID, strings.TrimSpace(n.What), ms(n.OccurredAt), n.FoundAt.UnixMilli(), n.Scope, n.Subjects, n.Count,
			actionLine(now, actor, n.Actions), actor, now.UnixMilli(), now.UnixMilli())
		if err != nil {
			return fmt.Errorf("breach: create: %w", err)
		}
		if id, err = res.LastInsertId(); err != nil {
			return fmt.Errorf("breach: create: %w", err)
		}
		return r.audit.RecordTx(ctx, tx, actor, ActionCreate, subject(id), map[string]any{"school_id": n.SchoolID,
			"scope": n.Scope, "affected_count": n.Count, "found_at": n.FoundAt.UnixMilli()}, ip)
	})
	if err != nil {
		return Breach{}, err
	}
	return r.Get(ctx, school, id)
}

func subject(id int64) string { return fmt.Sprintf("breach:%d", id) }

// actionLine is one dated line of the actions taken ("" for no text).
func actionLine(at time.Time, actor, text string) string {
	text = strings.TrimSpace(text)
	if text == "" {
		return ""
	}
	return at.In(zone).Format("02/01/2006 15:04") + " " + actor + ": " + text
}

// zone is the schools' time zone (Vietnam, UTC+7, no daylight saving).
var zone = time.FixedZone("ICT", 7*3600)

// AddAction appends a dated line to the actions taken.
func (r *Register) AddAction(ctx context.Context, school string, id int64, text, actor, ip string) (Breach, error) {
	if strings.TrimSpace(text) == "" || len(text) > maxText {
		return Breach{}, api.Invalid("action", "say what was done (at most 8000 bytes)")
	}
	now := r.now()
	return r.change(ctx, school, id, ActionAction, map[string]any{"action": strings.TrimSpace(text)}, actor, ip,
		`UPDATE breaches SET actions = CASE actions WHEN '' THEN ?1 ELSE actions || char(10) || ?1 END, updated_at = ?2 WHERE id = ?3`,
		actionLine(now, actor, text), now.UnixMilli(), id)
}

// NotifyAuthority records when the authority was told, and whom.
func (r *Register) NotifyAuthority(ctx context.Context, school string, id int64, at time.Time, to, actor, ip string) (Breach, error) {
	to = strings.TrimSpace(to)
	switch {
	case to == "" || len(to) > 200:
		return Breach{}, api.Invalid("authority", "name the authority told (at most 200 bytes)")
	case at.IsZero() || at.After(r.now().Add(time.Minute)):
		return Breach{}, api.Invalid("at", "when it was told, not in the future")
	}
	return r.change(ctx, school, id, ActionNotifyAuthority, map[string]any{"at": at.UnixMilli(), "to": to}, actor, ip,
		`UPDATE breaches SET authority_notified_at = ?1, authority_name = ?2, updated_at = ?3 WHERE id = ?4`,
		at.UnixMilli(), to, r.now().UnixMilli(), id)
}

// NotifySubjects records when the data subjects (pupils' families) were told.
func (r *Register) NotifySubjects(ctx context.Context, school string, id int64, at time.Time, actor, ip string) (Breach, error) {
	if at.IsZero() || at.After(r.now().Add(time.Minute)) {
		return Breach{}, api.Invalid("at", "when they were told, not in the future")
	}
	return r.change(ctx, school, id, ActionNotifySubjects, map[string]any{"at": at.UnixMilli()}, actor, ip,
		`UPDATE breaches SET subjects_notified_at = ?1, updated_at = ?2 WHERE id = ?3`, at.UnixMilli(), r.now().UnixMilli(), id)
}

// Close closes the breach; it leaves the overview's clock.
func (r *Register) Close(ctx context.Context, school string, id int64, actor, ip string) (Breach, error) {
	now := r.now().UnixMilli()
	return r.change(ctx, school, id, ActionClose, nil, actor, ip,
		`UPDATE breaches SET closed_at = COALESCE(closed_at, ?1), updated_at = ?1 WHERE id = ?2`, now, id)
}

// change runs one UPDATE of a breach the caller may see, with its audit
// entry, in one transaction.
func (r *Register) change(ctx context.Context, school string, id int64, action string, detail map[string]any,
	actor, ip, q string, args ...any) (Breach, error) {
	if _, err := r.Get(ctx, school, id); err != nil {
		return Breach{}, err
	}
	err := r.db.Tx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, q, args...); err != nil {
			return fmt.Errorf("breach: %s: %w", action, err)
		}
		return r.audit.RecordTx(ctx, tx, actor, action, subject(id), detail, ip)
	})
	if err != nil {
		return Breach{}, err
	}
	return r.Get(ctx, school, id)
}

const columns = `id, school_id, what, COALESCE(occurred_at, 0), found_at, scope, subjects, affected_count, actions,
	COALESCE(authority_notified_at, 0), authority_name, COALESCE(subjects_notified_at, 0), COALESCE(closed_at, 0),
	created_by, created_at, updated_at`

func scan(row interface{ Scan(...any) error }) (Breach, error) {
	var b Breach
	var occ, found, auth, subj, closed, created, updated int64
	err := row.Scan(&b.ID, &b.SchoolID, &b.What, &occ, &found, &b.Scope, &b.Subjects, &b.Count, &b.Actions,
		&auth, &b.AuthorityName, &subj, &closed, &b.CreatedBy, &created, &updated)
	t := func(v int64) time.Time {
		if v == 0 {
			return time.Time{}
		}
		return time.UnixMilli(v)
	}
	b.OccurredAt, b.FoundAt, b.AuthorityNotifiedAt, b.SubjectsNotifiedAt = t(occ), t(found), t(auth), t(subj)
	b.ClosedAt, b.CreatedAt, b.UpdatedAt = t(closed), t(created), t(updated)
	return b, err
}

// Get returns breach id if school ("" = any) may see it.
func (r *Register) Get(ctx context.Context, school string, id int64) (Breach, error) {
	b, err := scan(r.db.R.QueryRowContext(ctx, `SELECT `+columns+` FROM breaches WHERE id = ? AND (? = '' OR school_id = ?)`,
		id, school, school))
	if errors.Is(err, sql.ErrNoRows) {
		return Breach{}, ErrNotFound
	}
	if err != nil {
		return Breach{}, fmt.Errorf("breach: get: %w", err)
	}
	return b, nil
}

// List returns school's breaches ("" = every school), open ones first,
// newest found first.
func (r *Register) List(ctx context.Context, school string) ([]Breach, error) {
	return r.list(ctx, `SELECT `+columns+` FROM breaches WHERE (?1 = '' OR school_id = ?1)
		ORDER BY closed_at IS NOT NULL, found_at DESC LIMIT 500`, school)
}

// Pending returns the open breaches of school ("" = every school) whose
// authority was not told yet, the earliest deadline first.
func (r *Register) Pending(ctx context.Context, school string) ([]Breach, error) {
	return r.list(ctx, `SELECT `+columns+` FROM breaches WHERE (?1 = '' OR school_id = ?1)
		AND closed_at IS NULL AND authority_notified_at IS NULL ORDER BY found_at`, school)
}

func (r *Register) list(ctx context.Context, q, school string) ([]Breach, error) {
	rows, err := r.db.R.QueryContext(ctx, q, school)
	if err != nil {
		return nil, fmt.Errorf("breach: list: %w", err)
	}
	defer rows.Close()
	var out []Breach
	for rows.Next() {
		b, err := scan(rows)
		if err != nil {
			return nil, fmt.Errorf("breach: list: %w", err)
		}
		out = append(out, b)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("breach: list: %w", err)
	}
	return out, nil
}
