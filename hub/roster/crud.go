package roster

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/diemdanh/diemdanh/hub/api"
	"github.com/diemdanh/diemdanh/models/wire"
	"golang.org/x/crypto/bcrypt"
)

// ---- schools ----

// PutSchool creates or updates a school (audited: school_create, or
// school_update with the fields changed).
func (s *Store) PutSchool(ctx context.Context, x School) (School, error) {
	if err := x.Validate(); err != nil {
		return x, err
	}
	err := s.db.Tx(ctx, func(tx *sql.Tx) error {
		var old School
		existed, err := found(tx.QueryRowContext(ctx, `SELECT `+schoolCols+` FROM schools WHERE id = ?`, x.ID).
			Scan(&old.ID, &old.Name, &old.District, &old.Level, &old.Timezone))
		if err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO schools(id, name, district, level, timezone, updated_at) VALUES (?,?,?,?,?,?)
		ON CONFLICT(id) DO UPDATE SET name=excluded.name, district=excluded.district, level=excluded.level,
		timezone=excluded.timezone, updated_at=excluded.updated_at`,
			x.ID, x.Name, x.District, x.Level, x.Timezone, s.now().UnixMilli()); err != nil {
			return err
		}
		return s.recordPut(ctx, tx, ActionSchoolCreate, ActionSchoolUpdate, "school:"+x.ID, existed, old, x, nil)
	})
	return x, dbErr("school", err)
}

const schoolCols = `id, name, district, level, timezone`

func scanSchool(sc scanner) (School, error) {
	var x School
	err := sc.Scan(&x.ID, &x.Name, &x.District, &x.Level, &x.Timezone)
	return x, err
}

// School returns one school.
func (s *Store) School(ctx context.Context, id string) (School, error) {
	x, err := scanSchool(s.db.R.QueryRowContext(ctx, `SELECT `+schoolCols+` FROM schools WHERE id = ?`, id))
	return x, dbErr("school "+clip(id), err)
}

// Schools lists all schools.
func (s *Store) Schools(ctx context.Context) ([]School, error) {
	return queryAll(ctx, s.db.R, "schools", scanSchool, `SELECT `+schoolCols+` FROM schools ORDER BY id`)
}

// scanner reads one row: *sql.Row and *sql.Rows.
type scanner interface{ Scan(...any) error }

// queryAll runs q and reads every row with scan, in order (an empty slice
// when there are none); what names the records in errors (dbErr).
func queryAll[T any](ctx context.Context, db *sql.DB, what string, scan func(scanner) (T, error), q string, args ...any) ([]T, error) {
	rows, err := db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, dbErr(what, err)
	}
	defer rows.Close()
	out := []T{}
	for rows.Next() {
		x, err := scan(rows)
		if err != nil {
			return nil, dbErr(what, err)
		}
		out = append(out, x)
	}
	return out, dbErr(what, rows.Err())
}

// DeleteSchool deletes a school with nothing in it (409 otherwise).
func (s *Store) DeleteSchool(ctx context.Context, id string) error {
	return s.deleteOne(ctx, "school", ActionSchoolDelete, "school:"+id, nil, `DELETE FROM schools WHERE id = ?`, id)
}

// deleteOne deletes with q and records action about subject in the same
// transaction — the entry first, while the row still names its school. A
// missing row (404) or a refused delete (409: still in use) rolls the
// entry back with it.
func (s *Store) deleteOne(ctx context.Context, what, action, subject string, detail any, q string, args ...any) error {
	err := s.db.Tx(ctx, func(tx *sql.Tx) error {
		if err := s.record(ctx, tx, action, subject, detail); err != nil {
			return err
		}
		return updateTx(ctx, tx, what, q, args...)
	})
	return dbErr(what, err)
}

// updateTx runs q in tx: 404 when it touches no row.
func updateTx(ctx context.Context, tx *sql.Tx, what, q string, args ...any) error {
	res, err := tx.ExecContext(ctx, q, args...)
	if err != nil {
		return err
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return &api.Error{Code: api.CodeNotFound, Message: what + " not found"}
	}
	return nil
}

// ---- classes ----

const classCols = `id, school_id, name, grade, COALESCE(homeroom_teacher_id, ''), start_time, late_after_min, absent_cutoff, active`

func scanClass(sc scanner) (Class, error) {
	var x Class
	var active int
	err := sc.Scan(&x.ID, &x.SchoolID, &x.Name, &x.Grade, &x.HomeroomTeacherID, &x.StartTime, &x.LateAfterMin, &x.AbsentCutoff, &active)
	x.Active = active == 1
	return x, err
}

// PutClass creates or updates a class (audited: class_create, or
// class_update with the fields changed). A class ID of another school is
// a conflict.
func (s *Store) PutClass(ctx context.Context, x Class) (Class, error) {
	if err := x.Validate(); err != nil {
		return x, err
	}
	if err := s.checkSchoolRef(ctx, x.SchoolID); err != nil {
		return x, err
	}
	if x.HomeroomTeacherID != "" {
		var school string
		if err := s.db.R.QueryRowContext(ctx, `SELECT school_id FROM staff WHERE id = ?`, x.HomeroomTeacherID).Scan(&school); err != nil || school != x.SchoolID {
			return x, api.Invalid("homeroom_teacher_id", "no such staff member in school %s", x.SchoolID)
		}
	}
	var teacher any
	if x.HomeroomTeacherID != "" {
		teacher = x.HomeroomTeacherID
	}
	err := s.db.Tx(ctx, func(tx *sql.Tx) error {
		old, err := scanClass(tx.QueryRowContext(ctx, `SELECT `+classCols+` FROM classes WHERE id = ?`, x.ID))
		existed, err := found(err)
		if err != nil {
			return err
		}
		if existed && old.SchoolID != x.SchoolID {
			return &api.Error{Code: api.CodeConflict, Field: "id", Message: "class " + clip(x.ID) + " belongs to another school"}
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO classes(id, school_id, name, grade, homeroom_teacher_id, start_time, late_after_min, absent_cutoff, active, updated_at)
		VALUES (?,?,?,?,?,?,?,?,?,?)
		ON CONFLICT(id) DO UPDATE SET name=excluded.name, grade=excluded.grade, homeroom_teacher_id=excluded.homeroom_teacher_id,
		start_time=excluded.start_time, late_after_min=excluded.late_after_min, absent_cutoff=excluded.absent_cutoff,
		active=excluded.active, updated_at=excluded.updated_at WHERE classes.school_id = excluded.school_id`,
			x.ID, x.SchoolID, x.Name, x.Grade, teacher, x.StartTime, x.LateAfterMin, x.AbsentCutoff, b2i(x.Active), s.now().UnixMilli()); err != nil {
			return err
		}
		return s.recordPut(ctx, tx, ActionClassCreate, ActionClassUpdate, "class:"+x.ID, existed, old, x, nil)
	})
	return x, dbErr("class", err)
}

func (s *Store) checkSchoolRef(ctx context.Context, school string) error {
	var one int
	if err := s.db.R.QueryRowContext(ctx, `SELECT 1 FROM schools WHERE id = ?`, school).Scan(&one); err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			return &api.Error{Code: api.CodeNotFound, Message: "school " + clip(school) + " not found"}
		}
		return dbErr("school", err)
	}
	return nil
}

// Class returns one class.
func (s *Store) Class(ctx context.Context, id string) (Class, error) {
	x, err := scanClass(s.db.R.QueryRowContext(ctx, `SELECT `+classCols+` FROM classes WHERE id = ?`, id))
	return x, dbErr("class "+clip(id), err)
}

// Classes lists a school's classes.
func (s *Store) Classes(ctx context.Context, school string) ([]Class, error) {
	return queryAll(ctx, s.db.R, "classes", scanClass, `SELECT `+classCols+` FROM classes WHERE school_id = ? ORDER BY grade, name`, school)
}

// DeleteClass deletes a class without pupils.
func (s *Store) DeleteClass(ctx context.Context, id string) error {
	return s.deleteOne(ctx, "class", ActionClassDelete, "class:"+id, nil, `DELETE FROM classes WHERE id = ?`, id)
}

// ---- pupils ----

const pupilCols = `id, school_id, COALESCE(class_id, ''), full_name, date_of_birth, gender, active, manual_attendance, source`

func scanPupil(sc scanner) (Pupil, error) {
	var x Pupil
	var active, manual int
	err := sc.Scan(&x.ID, &x.SchoolID, &x.ClassID, &x.FullName, &x.DateOfBirth, &x.Gender, &active, &manual, &x.Source)
	x.Active, x.ManualAttendance = active == 1, manual == 1
	return x, err
}

// Pupil returns one pupil.
func (s *Store) Pupil(ctx context.Context, id string) (Pupil, error) {
	x, err := scanPupil(s.db.R.QueryRowContext(ctx, `SELECT `+pupilCols+` FROM pupils WHERE id = ?`, id))
	return x, dbErr("pupil "+clip(id), err)
}

// PupilFilter narrows Pupils.
type PupilFilter struct {
	ClassID    string
	ActiveOnly bool
}

// Pupils lists a school's pupils.
func (s *Store) Pupils(ctx context.Context, school string, f PupilFilter) ([]Pupil, error) {
	q := `SELECT ` + pupilCols + ` FROM pupils WHERE school_id = ?`
	args := []any{school}
	if f.ClassID != "" {
		q += ` AND class_id = ?`
		args = append(args, f.ClassID)
	}
	if f.ActiveOnly {
		q += ` AND active = 1`
	}
	return queryAll(ctx, s.db.R, "pupils", scanPupil, q+` ORDER BY class_id, full_name, id`, args...)
}

func putPupilTx(ctx context.Context, tx *sql.Tx, x Pupil, now int64) (galleryChange bool, err error) {
	var oldSchool string
	var oldActive, oldManual int
	err = tx.QueryRowContext(ctx, `SELECT school_id, active, manual_attendance FROM pupils WHERE id = ?`, x.ID).Scan(&oldSchool, &oldActive, &oldManual)
	exists := err == nil
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return false, err
	}
	if exists && oldSchool != x.SchoolID {
		return false, &api.Error{Code: api.CodeConflict, Field: "id", Message: "personal ID " + x.ID + " already belongs to a pupil of school " + oldSchool}
	}
	if x.ClassID != "" {
		var cs string
		if err := tx.QueryRowContext(ctx, `SELECT school_id FROM classes WHERE id = ?`, x.ClassID).Scan(&cs); err != nil || cs != x.SchoolID {
			return false, api.Invalid("class_id", "no such class %q in school %s", clip(x.ClassID), x.SchoolID)
		}
	}
	var class any
	if x.ClassID != "" {
		class = x.ClassID
	}
	_, err = tx.ExecContext(ctx, `INSERT INTO pupils(id, school_id, class_id, full_name, date_of_birth, gender, active, manual_attendance, source, updated_at)
		VALUES (?,?,?,?,?,?,?,?,?,?)
		ON CONFLICT(id) DO UPDATE SET class_id=excluded.class_id, full_name=excluded.full_name, date_of_birth=excluded.date_of_birth,
		gender=excluded.gender, active=excluded.active, manual_attendance=excluded.manual_attendance, source=excluded.source,
		updated_at=excluded.updated_at`,
		x.ID, x.SchoolID, class, x.FullName, x.DateOfBirth, x.Gender, b2i(x.Active), b2i(x.ManualAttendance), x.Source, now)
	if err != nil {
		return false, err
	}
	// The gallery holds active, face-attendance pupils: a change of either
	// flag changes it (a new pupil has no templates yet).
	return exists && (oldActive != b2i(x.Active) || oldManual != b2i(x.ManualAttendance)), nil
}

// PutPupil creates or updates a pupil (audited: pupil_create, or
// pupil_update with the fields changed).
func (s *Store) PutPupil(ctx context.Context, x Pupil) (Pupil, error) {
	if err := x.Validate(); err != nil {
		return x, err
	}
	if err := s.checkSchoolRef(ctx, x.SchoolID); err != nil {
		return x, err
	}
	var changed bool
	err := s.db.Tx(ctx, func(tx *sql.Tx) error {
		old, err := scanPupil(tx.QueryRowContext(ctx, `SELECT `+pupilCols+` FROM pupils WHERE id = ?`, x.ID))
		existed, err := found(err)
		if err != nil {
			return err
		}
		if changed, err = putPupilTx(ctx, tx, x, s.now().UnixMilli()); err != nil {
			return err
		}
		return s.recordPut(ctx, tx, ActionPupilCreate, ActionPupilUpdate, "pupil:"+x.ID, existed, old, x, nil)
	})
	if err != nil {
		return x, dbErr("pupil", err)
	}
	if changed {
		s.changed(ctx, x.SchoolID)
	}
	return x, nil
}

// DeletePupil removes a pupil from the roster with their guardians, daily
// attendance and face templates (ON DELETE CASCADE); events keep the ID.
func (s *Store) DeletePupil(ctx context.Context, id string) error {
	p, err := s.Pupil(ctx, id)
	if err != nil {
		return err
	}
	if err := s.deleteOne(ctx, "pupil", ActionPupilDelete, "pupil:"+id, nil, `DELETE FROM pupils WHERE id = ?`, id); err != nil {
		return err
	}
	s.changed(ctx, p.SchoolID)
	return nil
}

// ---- guardians ----

const guardianCols = `id, pupil_id, full_name, phone, email, relation`

func scanGuardian(sc scanner) (Guardian, error) {
	var x Guardian
	err := sc.Scan(&x.ID, &x.PupilID, &x.FullName, &x.Phone, &x.Email, &x.Relation)
	return x, err
}

// Guardians lists a pupil's guardians.
func (s *Store) Guardians(ctx context.Context, pupil string) ([]Guardian, error) {
	return queryAll(ctx, s.db.R, "guardians", scanGuardian, `SELECT `+guardianCols+` FROM guardians WHERE pupil_id = ? ORDER BY id`, pupil)
}

// Guardian returns one guardian.
func (s *Store) Guardian(ctx context.Context, id int64) (Guardian, error) {
	x, err := scanGuardian(s.db.R.QueryRowContext(ctx, `SELECT `+guardianCols+` FROM guardians WHERE id = ?`, id))
	return x, dbErr("guardian", err)
}

// PutGuardian creates (ID 0) or updates a guardian (audited about its
// pupil: guardian_create, or guardian_update with the fields changed;
// guardian_id in the detail).
func (s *Store) PutGuardian(ctx context.Context, x Guardian) (Guardian, error) {
	if err := x.Validate(); err != nil {
		return x, err
	}
	if x.ID == 0 {
		if _, err := s.Pupil(ctx, x.PupilID); err != nil {
			return x, err
		}
	}
	err := s.db.Tx(ctx, func(tx *sql.Tx) error {
		if x.ID == 0 {
			return s.addGuardianTx(ctx, tx, &x)
		}
		return s.updateGuardianTx(ctx, tx, &x)
	})
	return x, dbErr("guardian", err)
}

func (s *Store) addGuardianTx(ctx context.Context, tx *sql.Tx, x *Guardian) error {
	res, err := tx.ExecContext(ctx, `INSERT INTO guardians(pupil_id, full_name, phone, email, relation, updated_at) VALUES (?,?,?,?,?,?)`,
		x.PupilID, x.FullName, x.Phone, x.Email, x.Relation, s.now().UnixMilli())
	if err != nil {
		return err
	}
	if x.ID, err = res.LastInsertId(); err != nil {
		return err
	}
	return s.recordPut(ctx, tx, ActionGuardianCreate, ActionGuardianUpdate, "pupil:"+x.PupilID, false, nil, x, map[string]any{"guardian_id": x.ID})
}

// updateGuardianTx updates x (by ID; its pupil is the stored one's).
func (s *Store) updateGuardianTx(ctx context.Context, tx *sql.Tx, x *Guardian) error {
	old, err := scanGuardian(tx.QueryRowContext(ctx, `SELECT `+guardianCols+` FROM guardians WHERE id = ?`, x.ID))
	if errors.Is(err, sql.ErrNoRows) {
		return &api.Error{Code: api.CodeNotFound, Message: "guardian not found"}
	}
	if err != nil {
		return err
	}
	x.PupilID = old.PupilID
	if _, err := tx.ExecContext(ctx, `UPDATE guardians SET full_name=?, phone=?, email=?, relation=?, updated_at=? WHERE id=?`,
		x.FullName, x.Phone, x.Email, x.Relation, s.now().UnixMilli(), x.ID); err != nil {
		return err
	}
	return s.recordPut(ctx, tx, ActionGuardianCreate, ActionGuardianUpdate, "pupil:"+x.PupilID, true, old, *x, map[string]any{"guardian_id": x.ID})
}

// DeleteGuardian deletes a guardian (audited about its pupil).
func (s *Store) DeleteGuardian(ctx context.Context, id int64) error {
	g, err := s.Guardian(ctx, id)
	if err != nil {
		return err
	}
	return s.deleteOne(ctx, "guardian", ActionGuardianDelete, "pupil:"+g.PupilID, map[string]any{"guardian_id": id},
		`DELETE FROM guardians WHERE id = ?`, id)
}

// ---- staff ----

const staffCols = `id, school_id, full_name, email, phone, role, active`

func scanStaff(sc scanner) (Staff, error) {
	var x Staff
	var active int
	err := sc.Scan(&x.ID, &x.SchoolID, &x.FullName, &x.Email, &x.Phone, &x.Role, &active)
	x.Active = active == 1
	return x, err
}

// PutStaff creates or updates a staff member (audited: staff_create, or
// staff_update with the fields changed). A staff ID of another school is
// a conflict.
func (s *Store) PutStaff(ctx context.Context, x Staff) (Staff, error) {
	if err := x.Validate(); err != nil {
		return x, err
	}
	if err := s.checkSchoolRef(ctx, x.SchoolID); err != nil {
		return x, err
	}
	err := s.db.Tx(ctx, func(tx *sql.Tx) error {
		old, err := scanStaff(tx.QueryRowContext(ctx, `SELECT `+staffCols+` FROM staff WHERE id = ?`, x.ID))
		existed, err := found(err)
		if err != nil {
			return err
		}
		if existed && old.SchoolID != x.SchoolID {
			return &api.Error{Code: api.CodeConflict, Field: "id", Message: "staff member " + clip(x.ID) + " belongs to another school"}
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO staff(id, school_id, full_name, email, phone, role, active, updated_at) VALUES (?,?,?,?,?,?,?,?)
		ON CONFLICT(id) DO UPDATE SET full_name=excluded.full_name, email=excluded.email, phone=excluded.phone, role=excluded.role,
		active=excluded.active, updated_at=excluded.updated_at WHERE staff.school_id = excluded.school_id`,
			x.ID, x.SchoolID, x.FullName, x.Email, x.Phone, x.Role, b2i(x.Active), s.now().UnixMilli()); err != nil {
			return err
		}
		return s.recordPut(ctx, tx, ActionStaffCreate, ActionStaffUpdate, "staff:"+x.ID, existed, old, x, nil)
	})
	return x, dbErr("staff", err)
}

// StaffMember returns one staff member.
func (s *Store) StaffMember(ctx context.Context, id string) (Staff, error) {
	x, err := scanStaff(s.db.R.QueryRowContext(ctx, `SELECT `+staffCols+` FROM staff WHERE id = ?`, id))
	return x, dbErr("staff "+clip(id), err)
}

// StaffList lists a school's staff.
func (s *Store) StaffList(ctx context.Context, school string) ([]Staff, error) {
	return queryAll(ctx, s.db.R, "staff", scanStaff, `SELECT `+staffCols+` FROM staff WHERE school_id = ? ORDER BY full_name, id`, school)
}

// DeleteStaff deletes a staff member (409 while homeroom teacher of a class).
func (s *Store) DeleteStaff(ctx context.Context, id string) error {
	return s.deleteOne(ctx, "staff", ActionStaffDelete, "staff:"+id, nil, `DELETE FROM staff WHERE id = ?`, id)
}

// ---- gates ----

const gateCols = `id, school_id, name, direction, username, active, online, last_seen_at, last_heartbeat, clock_skew_ms`

func (s *Store) scanGate(sc scanner) (Gate, error) {
	var x Gate
	var active, online int
	var hb string
	err := sc.Scan(&x.ID, &x.SchoolID, &x.Name, &x.Direction, &x.Username, &active, &online, &x.LastSeenAt, &hb, &x.ClockSkewMS)
	if err != nil {
		return x, err
	}
	x.Active = active == 1
	// Online: the broker says so AND the gate was heard from recently.
	x.Online = online == 1 && s.now().Sub(msTime(x.LastSeenAt)) <= s.OfflineAfter
	if hb != "" {
		var h wire.Heartbeat
		if json.Unmarshal([]byte(hb), &h) == nil {
			x.LastHeartbeat = &h
			x.OutboxDepth = h.OutboxDepth
		}
	}
	return x, nil
}

// Gate returns one gate with its live status.
func (s *Store) Gate(ctx context.Context, id string) (Gate, error) {
	x, err := s.scanGate(s.db.R.QueryRowContext(ctx, `SELECT `+gateCols+` FROM gates WHERE id = ?`, id))
	return x, dbErr("gate "+clip(id), err)
}

// Gates lists a school's gates ("" = all schools) with live status.
func (s *Store) Gates(ctx context.Context, school string) ([]Gate, error) {
	return queryAll(ctx, s.db.R, "gates", s.scanGate, `SELECT `+gateCols+` FROM gates WHERE ? = '' OR school_id = ? ORDER BY school_id, id`, school, school)
}

// CreateGate registers a gate device and returns its credentials once:
// username = gate ID, a random password; only its bcrypt hash is stored
// (audited: gate_create).
func (s *Store) CreateGate(ctx context.Context, x Gate) (GateCredentials, error) {
	if err := x.Validate(); err != nil {
		return GateCredentials{}, err
	}
	if err := s.checkSchoolRef(ctx, x.SchoolID); err != nil {
		return GateCredentials{}, err
	}
	pw := NewPassword()
	hash, err := bcrypt.GenerateFromPassword([]byte(pw), s.BcryptCost)
	if err != nil {
		return GateCredentials{}, fmt.Errorf("roster: bcrypt: %w", err)
	}
	x.Username, x.Active = x.ID, true
	err = s.db.Tx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `INSERT INTO gates(id, school_id, name, direction, username, password_hash, active, updated_at) VALUES (?,?,?,?,?,?,1,?)`,
			x.ID, x.SchoolID, x.Name, x.Direction, x.Username, string(hash), s.now().UnixMilli()); err != nil {
			return err
		}
		return s.record(ctx, tx, ActionGateCreate, "gate:"+x.ID, nil)
	})
	if err != nil {
		return GateCredentials{}, dbErr("gate", err)
	}
	g, err := s.Gate(ctx, x.ID)
	return GateCredentials{Gate: g, Username: x.Username, Password: pw}, err
}

// SetGatePassword stores a given password for a gate (demo, provisioning;
// audited: gate_password, without the password).
func (s *Store) SetGatePassword(ctx context.Context, id, pw string) error {
	if len(pw) < 12 {
		return api.Invalid("password", "must be at least 12 characters")
	}
	hash, err := bcrypt.GenerateFromPassword([]byte(pw), s.BcryptCost)
	if err != nil {
		return fmt.Errorf("roster: bcrypt: %w", err)
	}
	err = s.db.Tx(ctx, func(tx *sql.Tx) error {
		if err := updateTx(ctx, tx, "gate", `UPDATE gates SET password_hash = ?, updated_at = ? WHERE id = ?`, string(hash), s.now().UnixMilli(), id); err != nil {
			return err
		}
		return s.record(ctx, tx, ActionGatePassword, "gate:"+id, nil)
	})
	return dbErr("gate", err)
}

// RotateGatePassword sets a new random password and returns it once.
func (s *Store) RotateGatePassword(ctx context.Context, id string) (GateCredentials, error) {
	pw := NewPassword()
	if err := s.SetGatePassword(ctx, id, pw); err != nil {
		return GateCredentials{}, err
	}
	g, err := s.Gate(ctx, id)
	return GateCredentials{Gate: g, Username: g.Username, Password: pw}, err
}

// gateEdit is what UpdateGate changes.
type gateEdit struct {
	Name      string `json:"name"`
	Direction string `json:"direction"`
	Active    bool   `json:"active"`
}

// UpdateGate changes a gate's name, direction and active flag (audited:
// gate_update with the fields changed).
func (s *Store) UpdateGate(ctx context.Context, x Gate) (Gate, error) {
	if err := x.Validate(); err != nil {
		return x, err
	}
	err := s.db.Tx(ctx, func(tx *sql.Tx) error {
		var old gateEdit
		err := tx.QueryRowContext(ctx, `SELECT name, direction, active FROM gates WHERE id = ?`, x.ID).Scan(&old.Name, &old.Direction, &old.Active)
		if errors.Is(err, sql.ErrNoRows) {
			return &api.Error{Code: api.CodeNotFound, Message: "gate not found"}
		}
		if err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `UPDATE gates SET name = ?, direction = ?, active = ?, updated_at = ? WHERE id = ?`,
			x.Name, x.Direction, b2i(x.Active), s.now().UnixMilli(), x.ID); err != nil {
			return err
		}
		return s.recordPut(ctx, tx, ActionGateCreate, ActionGateUpdate, "gate:"+x.ID, true, old, gateEdit{x.Name, x.Direction, x.Active}, nil)
	})
	if err != nil {
		return x, dbErr("gate", err)
	}
	return s.Gate(ctx, x.ID)
}

// DeleteGate removes a gate (its events stay).
func (s *Store) DeleteGate(ctx context.Context, id string) error {
	return s.deleteOne(ctx, "gate", ActionGateDelete, "gate:"+id, nil, `DELETE FROM gates WHERE id = ?`, id)
}

func msTime(ms int64) time.Time { return time.UnixMilli(ms) }
