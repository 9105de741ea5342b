package enrol

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math"

	"github.com/diemdanh/diemdanh/hub/api"
	"github.com/diemdanh/diemdanh/hub/audit"
	"github.com/diemdanh/diemdanh/hub/facetemplates"
	"github.com/diemdanh/diemdanh/hub/roster"
	"github.com/diemdanh/diemdanh/models/faceengine"
	"github.com/diemdanh/diemdanh/models/match"
)

// Feedback actions.
const (
	FeedbackExcluded     = "excluded_template" // the template that matched was taken out of the gallery
	FeedbackNeedsReenrol = "needs_reenrol"     // it was the pupil's last template: out, and re-enrolment flagged
	FeedbackRecorded     = "recorded"          // no face crop to learn from (or no template near it): recorded only
)

// Feedback is one "not this pupil" mark.
type Feedback struct {
	ID         int64    `json:"id"`
	EventID    string   `json:"event_id"`
	PupilID    string   `json:"pupil_id"`
	Actor      string   `json:"actor"`
	Reason     string   `json:"reason"`
	Action     string   `json:"action"`
	TemplateID *int64   `json:"template_id,omitempty"`
	Distance   *float64 `json:"distance,omitempty"`
	CreatedAt  int64    `json:"created_at"`
}

// OnFeedback registers fn, called after an event is marked "not this
// pupil" (hub/attendance recomputes the pupil's day, the live board
// updates).
func (s *Service) OnFeedback(fn func(ctx context.Context, eventID, pupilID string)) {
	s.fmu.Lock()
	s.onFeedback = append(s.onFeedback, fn)
	s.fmu.Unlock()
}

// EventPupil returns the pupil an event named (for scope checks).
func (s *Service) EventPupil(ctx context.Context, eventID string) (string, error) {
	var pid sql.NullString
	err := s.db.R.QueryRowContext(ctx, `SELECT student_id FROM events WHERE event_id = ?`, eventID).Scan(&pid)
	if errors.Is(err, sql.ErrNoRows) {
		return "", &api.Error{Code: api.CodeNotFound, Message: "unknown event"}
	}
	if err != nil {
		return "", fmt.Errorf("enrol: %w", err)
	}
	if !pid.Valid || pid.String == "" {
		return "", api.Invalid("event_id", "the event is an unknown face, not a recognition")
	}
	return pid.String, nil
}

// MarkNotThisPupil records that a recognition was wrong and acts on it:
// the event is marked rejected (it no longer counts for attendance); the
// face crop of the event is embedded again and the named pupil's active
// template nearest to it (within FeedbackMatchMax) is excluded from the
// gallery — the template that let the wrong face through — which bumps the
// gallery version so every gate drops it at its next sync. If that was the
// pupil's last active template the pupil is flagged for re-enrolment. With
// no crop (retention deleted it) the mark is recorded only. In the same
// transaction, gate templates added from the event are deleted and
// automatic templates of the pupil paused
// (facetemplates.RemoveFromEventTx). Marking the same event twice is a
// conflict.
func (s *Service) MarkNotThisPupil(ctx context.Context, actor, eventID, reason string) (*Feedback, error) {
	pupil, err := s.EventPupil(ctx, eventID)
	if err != nil {
		return nil, err
	}
	var crop []byte
	var school string
	var rejected bool
	if err := s.db.R.QueryRowContext(ctx, `SELECT school_id, face_jpeg, rejected FROM events WHERE event_id = ?`, eventID).Scan(&school, &crop, &rejected); err != nil {
		return nil, fmt.Errorf("enrol: %w", err)
	}
	if rejected {
		return nil, &api.Error{Code: api.CodeConflict, Message: "already marked not this pupil"}
	}
	fb := &Feedback{EventID: eventID, PupilID: pupil, Actor: actor, Reason: truncate(reason, 500), Action: FeedbackRecorded, CreatedAt: s.now().UnixMilli()}
	var tplID int64
	if len(crop) > 0 {
		if d, ok := s.describeCrop(ctx, crop); ok {
			entries, err := s.tpl.Entries(ctx, school)
			if err != nil {
				return nil, err
			}
			best, bestD, active := int64(0), math.Inf(1), 0
			for _, e := range entries {
				if e.PupilID != pupil || e.Status != facetemplates.StatusActive || len(e.Descriptor) != len(d) {
					continue
				}
				active++
				if x := match.Distance(d, e.Descriptor); x < bestD {
					best, bestD = e.ID, x
				}
			}
			if best != 0 && bestD <= s.config().FeedbackMatchMax {
				tplID = best
				dist := round3(bestD)
				fb.TemplateID, fb.Distance = &tplID, &dist
				fb.Action = FeedbackExcluded
				if active <= 1 {
					fb.Action = FeedbackNeedsReenrol
				}
			}
		}
	}
	err = s.db.Tx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE events SET rejected = 1 WHERE event_id = ? AND rejected = 0`, eventID)
		if err != nil {
			return fmt.Errorf("enrol: feedback: %w", err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return &api.Error{Code: api.CodeConflict, Message: "already marked not this pupil"}
		}
		var tid any
		if fb.TemplateID != nil {
			tid = *fb.TemplateID
		}
		var dist any
		if fb.Distance != nil {
			dist = *fb.Distance
		}
		r, err := tx.ExecContext(ctx, `INSERT INTO recognition_feedback(event_id, pupil_id, actor, reason, action, template_id, distance, created_at)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?)`, eventID, pupil, actor, fb.Reason, fb.Action, tid, dist, fb.CreatedAt)
		if err != nil {
			return fmt.Errorf("enrol: feedback: %w", err)
		}
		fb.ID, _ = r.LastInsertId()
		if _, err := s.tpl.RemoveFromEventTx(ctx, tx, eventID, actor); err != nil && !errors.Is(err, facetemplates.ErrNotFound) {
			return err
		}
		entry := roster.Entry{Action: audit.ActionFeedback,
			Detail: map[string]any{"event_id": eventID, "action": fb.Action, "template_id": fb.TemplateID, "distance": fb.Distance, "reason": fb.Reason}}
		if tplID != 0 {
			if _, err := tx.ExecContext(ctx, `UPDATE face_templates SET status = 'excluded', note = ? || CASE WHEN instr(note, 'src:') > 0 THEN ' ' || substr(note, instr(note, 'src:')) ELSE '' END WHERE id = ?`,
				fmt.Sprintf("not_this_pupil:%s", eventID), tplID); err != nil {
				return fmt.Errorf("enrol: feedback: %w", err)
			}
			if err := s.tpl.BumpTx(ctx, tx, school); err != nil {
				return err
			}
			if fb.Action == FeedbackNeedsReenrol { // the flag is audited with the mark
				_, err := roster.MarkReenrolTx(roster.WithActor(ctx, actor, ""), tx, pupil, true, s.now(), entry)
				return err
			}
		}
		return s.audit.RecordTx(ctx, tx, actor, entry.Action, "pupil:"+pupil, entry.Detail, "")
	})
	if err != nil {
		return nil, err
	}
	s.tpl.Notify(ctx, school) // an excluded or removed template reaches the gates
	s.fmu.Lock()
	fns := append([]func(context.Context, string, string){}, s.onFeedback...)
	s.fmu.Unlock()
	for _, fn := range fns {
		fn(ctx, eventID, pupil)
	}
	return fb, nil
}

func (s *Service) describeCrop(ctx context.Context, jpg []byte) (match.Descriptor, bool) {
	m, _, err := faceengine.DecodeMat(jpg, s.engine().Limits())
	if err != nil {
		return nil, false
	}
	defer m.Close()
	faces, err := s.engine().RecognizeTight(ctx, m)
	if err != nil || len(faces) == 0 {
		return nil, false
	}
	// The largest face is the one the gate cropped around.
	best := 0
	for i, f := range faces {
		if f.Box.Dx() > faces[best].Box.Dx() {
			best = i
		}
	}
	return faces[best].Descriptor, true
}

// ListFeedback returns the latest "not this pupil" marks (admin view).
func (s *Service) ListFeedback(ctx context.Context, limit int) ([]Feedback, error) {
	if limit <= 0 || limit > 1000 {
		limit = 200
	}
	rows, err := s.db.R.QueryContext(ctx, `SELECT id, event_id, pupil_id, actor, reason, action, template_id, distance, created_at
		FROM recognition_feedback ORDER BY id DESC LIMIT ?`, limit)
	if err != nil {
		return nil, fmt.Errorf("enrol: %w", err)
	}
	defer rows.Close()
	out := []Feedback{}
	for rows.Next() {
		var f Feedback
		var tid sql.NullInt64
		var dist sql.NullFloat64
		if err := rows.Scan(&f.ID, &f.EventID, &f.PupilID, &f.Actor, &f.Reason, &f.Action, &tid, &dist, &f.CreatedAt); err != nil {
			return nil, err
		}
		if tid.Valid {
			f.TemplateID = &tid.Int64
		}
		if dist.Valid {
			f.Distance = &dist.Float64
		}
		out = append(out, f)
	}
	return out, rows.Err()
}
