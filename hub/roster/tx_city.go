package roster

import (
	"context"
	"database/sql"
	"errors"
	"time"
)

// The city roster's writes (hub/citysync's pull), inside the pull's
// transaction. The city owns the identity and enrolment fields of the rows
// it sends; the rest of a row (class times, manual attendance, consent)
// is the school's and is kept. Each write is audited with the roster's own
// action as the actor of ctx (hub/citysync: "citysync"): IDs and the names
// of the fields changed, never their values. A write that changes nothing
// records nothing, except an upsert, which records its entry as PutPupil
// does.

// UpsertCityStaffTx stores staff member x as the city has them: a new row,
// or the name, e-mail, phone, role and active flag of the stored one (its
// school stays). Audited: staff_create, or staff_update with the fields
// changed.
func UpsertCityStaffTx(ctx context.Context, tx *sql.Tx, x Staff, now time.Time) error {
	old, err := scanStaff(tx.QueryRowContext(ctx, `SELECT `+staffCols+` FROM staff WHERE id = ?`, x.ID))
	existed, err := found(err)
	if err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO staff (id, school_id, full_name, email, phone, role, active, updated_at)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?)
			ON CONFLICT(id) DO UPDATE SET full_name = excluded.full_name, email = excluded.email, phone = excluded.phone,
			  role = excluded.role, active = excluded.active, updated_at = excluded.updated_at`,
		x.ID, x.SchoolID, x.FullName, x.Email, x.Phone, x.Role, b2i(x.Active), now.UnixMilli()); err != nil {
		return err
	}
	if existed {
		x.SchoolID = old.SchoolID
	}
	return recordPutTx(ctx, tx, now, ActionStaffCreate, ActionStaffUpdate, "staff:"+x.ID, existed, old, x, nil)
}

// UpsertCityClassTx stores class x as the city has it: a new row (with the
// default timetable), or the name, grade, homeroom teacher and active flag
// of the stored one (its school and timetable stay). Audited:
// class_create, or class_update with the fields changed.
func UpsertCityClassTx(ctx context.Context, tx *sql.Tx, x Class, now time.Time) error {
	old, err := scanClass(tx.QueryRowContext(ctx, `SELECT `+classCols+` FROM classes WHERE id = ?`, x.ID))
	existed, err := found(err)
	if err != nil {
		return err
	}
	var teacher any
	if x.HomeroomTeacherID != "" {
		teacher = x.HomeroomTeacherID
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO classes (id, school_id, name, grade, homeroom_teacher_id, active, updated_at)
			VALUES (?, ?, ?, ?, ?, ?, ?)
			ON CONFLICT(id) DO UPDATE SET name = excluded.name, grade = excluded.grade,
			  homeroom_teacher_id = excluded.homeroom_teacher_id, active = excluded.active, updated_at = excluded.updated_at`,
		x.ID, x.SchoolID, x.Name, x.Grade, teacher, b2i(x.Active), now.UnixMilli()); err != nil {
		return err
	}
	after := old
	after.Name, after.Grade, after.HomeroomTeacherID, after.Active = x.Name, x.Grade, x.HomeroomTeacherID, x.Active
	return recordPutTx(ctx, tx, now, ActionClassCreate, ActionClassUpdate, "class:"+x.ID, existed, old, after, nil)
}

// UpsertCityPupilTx stores pupil x as the city has them, with source
// "city": a new row, or the school, class ("" none), name, date of birth,
// gender and active flag of the stored one (manual attendance stays).
// Audited: pupil_create, or pupil_update with the fields changed. A stored
// pupil activated or deactivated changes the gallery (a new pupil has no
// templates yet).
func UpsertCityPupilTx(ctx context.Context, tx *sql.Tx, x Pupil, now time.Time) (Change, error) {
	old, err := scanPupil(tx.QueryRowContext(ctx, `SELECT `+pupilCols+` FROM pupils WHERE id = ?`, x.ID))
	existed, err := found(err)
	if err != nil {
		return Change{}, err
	}
	x.Source = "city"
	var class any
	if x.ClassID != "" {
		class = x.ClassID
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO pupils (id, school_id, class_id, full_name, date_of_birth, gender, active, source, updated_at)
			VALUES (?, ?, ?, ?, ?, ?, ?, 'city', ?)
			ON CONFLICT(id) DO UPDATE SET school_id = excluded.school_id, class_id = excluded.class_id, full_name = excluded.full_name,
			  date_of_birth = excluded.date_of_birth, gender = excluded.gender, active = excluded.active, source = 'city',
			  updated_at = excluded.updated_at`,
		x.ID, x.SchoolID, class, x.FullName, x.DateOfBirth, x.Gender, b2i(x.Active), now.UnixMilli()); err != nil {
		return Change{}, err
	}
	x.ManualAttendance = old.ManualAttendance
	c := Change{School: x.SchoolID, Changed: true, Gallery: existed && old.Active != x.Active}
	return c, recordPutTx(ctx, tx, now, ActionPupilCreate, ActionPupilUpdate, "pupil:"+x.ID, existed, old, x, nil)
}

// SetPupilActiveTx activates or deactivates stored pupil id (a pupil who
// left, or whose personal ID the city corrected); a change sets its
// updated_at, is audited (pupil_update, fields [active]) and changes the
// gallery. Without such a pupil, or when the flag is already so, nothing
// changes.
func SetPupilActiveTx(ctx context.Context, tx *sql.Tx, id string, active bool, now time.Time) (Change, error) {
	school, was, _, _, ok, err := pupilFlags(ctx, tx, id)
	if err != nil || !ok || was == active {
		return Change{School: school}, err
	}
	if _, err := tx.ExecContext(ctx, `UPDATE pupils SET active = ?, updated_at = ? WHERE id = ?`, b2i(active), now.UnixMilli(), id); err != nil {
		return Change{}, err
	}
	c := Change{School: school, Changed: true, Gallery: true}
	return c, recordTx(ctx, tx, now, ActionPupilUpdate, "pupil:"+id, map[string]any{"fields": []string{"active"}})
}

// DeactivateStaffTx deactivates staff member id (the city no longer sends
// them); a change sets updated_at and is audited (staff_update, fields
// [active]).
func DeactivateStaffTx(ctx context.Context, tx *sql.Tx, id string, now time.Time) (Change, error) {
	return deactivateTx(ctx, tx, now, ActionStaffUpdate, "staff:"+id,
		`UPDATE staff SET active = 0, updated_at = ? WHERE id = ? AND active = 1 RETURNING school_id`, id)
}

// DeactivateClassTx deactivates class id (the city no longer sends it); a
// change sets updated_at and is audited (class_update, fields [active]).
func DeactivateClassTx(ctx context.Context, tx *sql.Tx, id string, now time.Time) (Change, error) {
	return deactivateTx(ctx, tx, now, ActionClassUpdate, "class:"+id,
		`UPDATE classes SET active = 0, updated_at = ? WHERE id = ? AND active = 1 RETURNING school_id`, id)
}

// deactivateTx runs q (an UPDATE … RETURNING school_id of at most one row)
// and audits action about subject when it changed a row.
func deactivateTx(ctx context.Context, tx *sql.Tx, now time.Time, action, subject, q, id string) (Change, error) {
	var c Change
	err := tx.QueryRowContext(ctx, q, now.UnixMilli(), id).Scan(&c.School)
	if errors.Is(err, sql.ErrNoRows) {
		return Change{}, nil
	}
	if err != nil {
		return Change{}, err
	}
	c.Changed = true
	return c, recordTx(ctx, tx, now, action, subject, map[string]any{"fields": []string{"active"}})
}

// MergeCityGuardianTx adds the city's guardian g of pupil g.PupilID when
// the pupil has no guardian with g's phone (when g has one) or name, and
// otherwise refreshes the stored one (the one with g's phone first). It
// never deletes a guardian: parents' accounts and notifications refer to
// them. Audited about the pupil: guardian_create, or guardian_update with
// the fields changed (guardian_id in the detail); an unchanged guardian
// records nothing.
func MergeCityGuardianTx(ctx context.Context, tx *sql.Tx, g Guardian, now time.Time) (Change, error) {
	var old Guardian
	err := tx.QueryRowContext(ctx, `SELECT id, pupil_id, full_name, phone, email, relation FROM guardians
		WHERE pupil_id = ? AND ((phone <> '' AND phone = ?) OR full_name = ?)
		ORDER BY (phone = ?) DESC LIMIT 1`, g.PupilID, g.Phone, g.FullName, g.Phone).
		Scan(&old.ID, &old.PupilID, &old.FullName, &old.Phone, &old.Email, &old.Relation)
	existed, err := found(err)
	if err != nil {
		return Change{}, err
	}
	if !existed {
		res, err := tx.ExecContext(ctx, `INSERT INTO guardians (pupil_id, full_name, phone, email, relation, updated_at)
			VALUES (?, ?, ?, ?, ?, ?)`, g.PupilID, g.FullName, g.Phone, g.Email, g.Relation, now.UnixMilli())
		if err != nil {
			return Change{}, err
		}
		if g.ID, err = res.LastInsertId(); err != nil {
			return Change{}, err
		}
		return Change{Changed: true}, recordPutTx(ctx, tx, now, ActionGuardianCreate, ActionGuardianUpdate, "pupil:"+g.PupilID,
			false, nil, g, map[string]any{"guardian_id": g.ID})
	}
	g.ID = old.ID
	if g == old {
		return Change{}, nil
	}
	if _, err := tx.ExecContext(ctx, `UPDATE guardians SET full_name = ?, phone = ?, email = ?, relation = ?, updated_at = ? WHERE id = ?`,
		g.FullName, g.Phone, g.Email, g.Relation, now.UnixMilli(), g.ID); err != nil {
		return Change{}, err
	}
	return Change{Changed: true}, recordPutTx(ctx, tx, now, ActionGuardianCreate, ActionGuardianUpdate, "pupil:"+g.PupilID,
		true, old, g, map[string]any{"guardian_id": g.ID})
}
