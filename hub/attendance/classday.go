package attendance

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/diemdanh/diemdanh/hub/api"
)

// PupilDay is one active pupil of a class on a day, as the class board
// shows it: the stored day (daily_attendance) and what goes with it.
type PupilDay struct {
	Day
	// Stored is false when the day has no row (a day without classes on
	// which nothing happened): Status is then not_yet and nothing else of
	// the day is set.
	Stored bool
	// ManualOnly: the pupil has no face attendance (no consent); staff
	// mark them by hand.
	ManualOnly bool
	// OverrideReason is the latest override's reason when Source is
	// manual.
	OverrideReason string
	// ArrivalGate is the arrival gate's name (its ID when it has none),
	// ArrivalCrop whether the arrival event has a face crop and
	// ArrivalReceivedAt when the hub received it (Unix ms, 0 when the
	// event is not found).
	ArrivalGate       string
	ArrivalCrop       bool
	ArrivalReceivedAt int64
}

// ClassPupilDays returns every active pupil of classID (only pupilID when
// not "") with their day, by full name then ID. Missing or not-final days
// (not_yet) are computed first: for the whole class as EnsureDay does (the
// OnChange hooks run for what changed), for one pupil as Recompute does.
// A pupilID that is not an active pupil of the class gives no rows.
func (s *Service) ClassPupilDays(ctx context.Context, classID, day, pupilID string) ([]PupilDay, error) {
	if _, err := time.Parse(time.DateOnly, day); err != nil {
		return nil, api.Invalid("day", "must be YYYY-MM-DD, got %q", day)
	}
	var err error
	if pupilID == "" {
		err = s.ensureClassDay(ctx, classID, day)
	} else {
		err = s.ensurePupilDay(ctx, classID, pupilID, day)
	}
	if err != nil {
		return nil, err
	}
	return s.readClassDay(ctx, classID, day, pupilID)
}

// ClassDay returns the stored day of every active pupil of class that has
// one, by full name then ID, computing missing or not-final rows first.
// It is what GET /classes/:class_id/attendance returns.
func (s *Service) ClassDay(ctx context.Context, classID, day string) ([]Day, error) {
	all, err := s.ClassPupilDays(ctx, classID, day, "")
	if err != nil {
		return nil, err
	}
	out := []Day{}
	for _, d := range all {
		if d.Stored {
			out = append(out, d.Day)
		}
	}
	return out, nil
}

// ensureClassDay computes the class's missing or not-final days
// (EnsureDay); an unknown class is not found.
func (s *Service) ensureClassDay(ctx context.Context, classID, day string) error {
	var school string
	if err := s.db.R.QueryRowContext(ctx, `SELECT school_id FROM classes WHERE id = ?`, classID).Scan(&school); err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			return &api.Error{Code: api.CodeNotFound, Message: "class " + classID + " not found"}
		}
		return fmt.Errorf("attendance: class: %w", err)
	}
	return s.EnsureDay(ctx, school, classID, day)
}

// ensurePupilDay recomputes the pupil's day (Recompute, no hooks) when it
// is missing or not final and the pupil is an active pupil of the class.
func (s *Service) ensurePupilDay(ctx context.Context, classID, pupilID, day string) error {
	var st sql.NullString
	err := s.db.R.QueryRowContext(ctx, `SELECT d.status FROM pupils p
		LEFT JOIN daily_attendance d ON d.pupil_id = p.id AND d.day = ?
		WHERE p.id = ? AND p.class_id = ? AND p.active = 1`, day, pupilID, classID).Scan(&st)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return nil
	case err != nil:
		return fmt.Errorf("attendance: pupil day: %w", err)
	case st.Valid && st.String != NotYet:
		return nil
	}
	if _, err := s.Recompute(ctx, pupilID, day); err != nil {
		return err
	}
	return nil
}

// classDayQuery reads the class's active pupils with their stored day, the
// latest override's reason and the arrival event's gate, crop and receipt
// time. The arrival event is looked up only among the pupil's own events.
const classDayQuery = `SELECT p.id, p.full_name, p.manual_attendance, d.status, d.arrived_at, d.departed_at,
	COALESCE(d.arrival_event_id, ''), COALESCE(d.arrival_gate_id, ''), COALESCE(d.source, ''),
	COALESCE((SELECT o.reason FROM attendance_overrides o WHERE o.pupil_id = p.id AND o.day = ? ORDER BY o.id DESC LIMIT 1), ''),
	COALESCE(NULLIF(g.name, ''), NULLIF(e.gate_id, ''), d.arrival_gate_id, ''), e.face_jpeg IS NOT NULL, COALESCE(e.received_at, 0)
	FROM pupils p
	LEFT JOIN daily_attendance d ON d.pupil_id = p.id AND d.day = ?
	LEFT JOIN events e ON e.event_id = d.arrival_event_id AND e.student_id = p.id
	LEFT JOIN gates g ON g.id = e.gate_id
	WHERE p.class_id = ? AND p.active = 1`

func (s *Service) readClassDay(ctx context.Context, classID, day, pupilID string) ([]PupilDay, error) {
	q, args := classDayQuery, []any{day, day, classID}
	if pupilID != "" {
		q += ` AND p.id = ?`
		args = append(args, pupilID)
	}
	rows, err := s.db.R.QueryContext(ctx, q+` ORDER BY p.full_name, p.id`, args...)
	if err != nil {
		return nil, fmt.Errorf("attendance: class day: %w", err)
	}
	defer rows.Close()
	out := []PupilDay{}
	for rows.Next() {
		d, err := scanPupilDay(rows, classID, day)
		if err != nil {
			return nil, err
		}
		out = append(out, d)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("attendance: class day: %w", err)
	}
	return out, nil
}

func scanPupilDay(rows *sql.Rows, classID, day string) (PupilDay, error) {
	d := PupilDay{Day: Day{Day: day, ClassID: classID}}
	var status sql.NullString
	var arr, dep sql.NullInt64
	var reason string
	if err := rows.Scan(&d.PupilID, &d.FullName, &d.ManualOnly, &status, &arr, &dep, &d.ArrivalEventID,
		&d.ArrivalGateID, &d.Source, &reason, &d.ArrivalGate, &d.ArrivalCrop, &d.ArrivalReceivedAt); err != nil {
		return d, fmt.Errorf("attendance: class day: %w", err)
	}
	d.Stored, d.Status = status.Valid, status.String
	if !d.Stored {
		d.Status = NotYet
	}
	if arr.Valid {
		d.ArrivedAt = &arr.Int64
	}
	if dep.Valid {
		d.DepartedAt = &dep.Int64
	}
	if d.Source == "manual" {
		d.OverrideReason = reason
	}
	if d.ArrivalEventID == "" {
		d.ArrivalGate = ""
	}
	return d, nil
}
