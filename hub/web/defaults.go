package web

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/diemdanh/diemdanh/hub/api"
	"github.com/diemdanh/diemdanh/hub/audit"
	"github.com/diemdanh/diemdanh/hub/store"
)

// ActionOverride is the audit action of a manual attendance mark.
const ActionOverride = "attendance_override"

// sqlOverrides is the default AttendanceWriter: append to
// attendance_overrides and audit in one transaction; the caller then has
// hub/attendance recompute the day (Server.dayChanged).
type sqlOverrides struct {
	db    *store.DB
	audit *audit.Log
	now   func() time.Time
}

func (o *sqlOverrides) Override(ctx context.Context, pupil, day, status, reason, actor string) error {
	now := o.now().UnixMilli()
	return o.db.Tx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `INSERT INTO attendance_overrides(pupil_id, day, status, reason, actor, created_at)
			VALUES (?, ?, ?, ?, ?, ?)`, pupil, day, status, reason, actor, now); err != nil {
			return fmt.Errorf("web: override: %w", err)
		}
		return o.audit.RecordTx(ctx, tx, actor, ActionOverride, "pupil:"+pupil,
			map[string]any{"day": day, "status": status, "reason": reason}, "")
	})
}

// sqlFeedback is the default Feedback: the event stops counting, the mark
// is recorded for the admin (recognition_feedback) and audited.
type sqlFeedback struct {
	db    *store.DB
	audit *audit.Log
	now   func() time.Time
}

func (f *sqlFeedback) NotThisPupil(ctx context.Context, eventID, reason, actor string) error {
	return f.db.Tx(ctx, func(tx *sql.Tx) error {
		var pupil sql.NullString
		var dist float64
		err := tx.QueryRowContext(ctx, `SELECT student_id, distance FROM events WHERE event_id = ?`, eventID).Scan(&pupil, &dist)
		if errors.Is(err, sql.ErrNoRows) || (err == nil && !pupil.Valid) {
			return api.ErrNotFound
		}
		if err != nil {
			return fmt.Errorf("web: feedback: %w", err)
		}
		if _, err := tx.ExecContext(ctx, `UPDATE events SET rejected = 1 WHERE event_id = ?`, eventID); err != nil {
			return fmt.Errorf("web: feedback: %w", err)
		}
		if _, err := tx.ExecContext(ctx, `INSERT OR IGNORE INTO recognition_feedback(event_id, pupil_id, actor, reason, action,
			distance, created_at) VALUES (?, ?, ?, ?, 'recorded', ?, ?)`, eventID, pupil.String, actor, reason, dist,
			f.now().UnixMilli()); err != nil {
			return fmt.Errorf("web: feedback: %w", err)
		}
		return f.audit.RecordTx(ctx, tx, actor, audit.ActionFeedback, "pupil:"+pupil.String,
			map[string]any{"event_id": eventID, "reason": reason}, "")
	})
}
