package facereview

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/diemdanh/diemdanh/models/match"
)

// Assignment is what "this is <pupil>" decided, with what the steps after
// it need (the attendance override with the face as evidence, a gate
// template where consent allows): the face with its candidates and
// event-like fields (school, gate, direction, captured_at, model,
// gallery_version), its decrypted crop and the crop's descriptor (nil when
// the gate sent none: then no gate template can be made of it).
type Assignment struct {
	Face
	Crop       []byte           `json:"-"`
	Descriptor match.Descriptor `json:"-"`
	// New is false when the face was already assigned to this pupil (a
	// repeated request): nothing was written or audited again.
	New bool `json:"new"`
}

// faceRef is what a decision reads of a face in its transaction.
type faceRef struct {
	school, capture, gate, kind, status, pupil string
	captured                                   int64
}

func readRef(ctx context.Context, tx *sql.Tx, id int64) (faceRef, error) {
	var r faceRef
	var pupil sql.NullString
	err := tx.QueryRowContext(ctx, `SELECT school_id, capture_id, gate_id, kind, status, pupil_id, captured_at
		FROM unrecognised_faces WHERE id = ?`, id).Scan(&r.school, &r.capture, &r.gate, &r.kind, &r.status, &pupil, &r.captured)
	if errors.Is(err, sql.ErrNoRows) {
		return r, fmt.Errorf("%w: face %d", ErrNotFound, id)
	}
	if err != nil {
		return r, fmt.Errorf("facereview: read face: %w", err)
	}
	r.pupil = pupil.String
	return r, nil
}

// Assign records that face id is pupilID, decided by actor (an account
// reference such as "teacher:lan"), with an audit entry about the pupil.
// The pupil must be an active pupil of the face's school. Assigning it
// again to the same pupil changes nothing (Assignment.New false); to
// another pupil it fails with ErrAssigned. Assign only records the
// decision: the attendance override and the gate template are the
// caller's, from the Assignment returned.
func (s *Store) Assign(ctx context.Context, id int64, pupilID, actor string) (Assignment, error) {
	var a Assignment
	err := s.db.Tx(ctx, func(tx *sql.Tx) error {
		r, err := readRef(ctx, tx, id)
		if err != nil {
			return err
		}
		if err := activeIn(ctx, tx, `SELECT school_id, active FROM pupils WHERE id = ?`, pupilID, r.school, "pupil"); err != nil {
			return err
		}
		switch {
		case r.status == StatusAssigned && r.pupil == pupilID:
			return nil
		case r.status == StatusAssigned:
			return fmt.Errorf("%w: face %d", ErrAssigned, id)
		}
		at := s.now().UnixMilli()
		if _, err := tx.ExecContext(ctx, `UPDATE unrecognised_faces SET status = ?, pupil_id = ?, decided_by = ?, decided_at = ?
			WHERE id = ?`, StatusAssigned, pupilID, actor, at, id); err != nil {
			return fmt.Errorf("facereview: assign: %w", err)
		}
		a.New = true
		return s.audit.RecordTx(ctx, tx, actor, ActionAssign, "pupil:"+pupilID, map[string]any{
			"face_id": id, "capture_id": r.capture, "gate_id": r.gate, "kind": r.kind, "captured_at": r.captured}, "")
	})
	if err != nil {
		return Assignment{}, err
	}
	if a.Face, err = s.Get(ctx, id); err != nil {
		return Assignment{}, err
	}
	if a.Crop, err = s.Crop(ctx, id); err != nil {
		return Assignment{}, err
	}
	if a.Descriptor, err = s.Descriptor(ctx, id); err != nil {
		return Assignment{}, err
	}
	return a, nil
}

// Dismiss hides face id from class classID ("not my pupil"), decided by
// actor, with an audit entry about the class. The class must be an active
// class of the face's school. It reports whether this was new: dismissing
// again for the same class changes nothing.
func (s *Store) Dismiss(ctx context.Context, id int64, classID, actor string) (bool, error) {
	var added bool
	err := s.db.Tx(ctx, func(tx *sql.Tx) error {
		r, err := readRef(ctx, tx, id)
		if err != nil {
			return err
		}
		if err := activeIn(ctx, tx, `SELECT school_id, active FROM classes WHERE id = ?`, classID, r.school, "class"); err != nil {
			return err
		}
		res, err := tx.ExecContext(ctx, `INSERT INTO unrecognised_dismissals(face_id, class_id, actor, at) VALUES (?,?,?,?)
			ON CONFLICT(face_id, class_id) DO NOTHING`, id, classID, actor, s.now().UnixMilli())
		if err != nil {
			return fmt.Errorf("facereview: dismiss: %w", err)
		}
		if n, err := res.RowsAffected(); err != nil || n == 0 {
			return err
		}
		added = true
		return s.audit.RecordTx(ctx, tx, actor, ActionDismiss, "class:"+classID, map[string]any{
			"face_id": id, "capture_id": r.capture, "gate_id": r.gate, "kind": r.kind, "captured_at": r.captured}, "")
	})
	if err != nil {
		return false, err
	}
	return added, nil
}

// activeIn checks that the row query finds for id (its school_id and
// active) is active and of school; what names it in the error.
func activeIn(ctx context.Context, tx *sql.Tx, query, id, school, what string) error {
	var sch string
	var active bool
	err := tx.QueryRowContext(ctx, query, id).Scan(&sch, &active)
	switch {
	case errors.Is(err, sql.ErrNoRows), err == nil && sch != school:
		return fmt.Errorf("%w: %s %q is not in school %q", ErrInvalid, what, id, school)
	case err != nil:
		return fmt.Errorf("facereview: %s lookup: %w", what, err)
	case !active:
		return fmt.Errorf("%w: %s %q is not active", ErrInvalid, what, id)
	}
	return nil
}
