package roster

import (
	"context"
	"database/sql"
	"strconv"
	"strings"
	"testing"
)

// TestCityHelpersWriteAuditAndReport: the city roster's helpers write the
// city's fields, keep the school's own (timetable, manual attendance, a
// row's school), audit each change as the context's actor with IDs and
// field names only (nothing for a write that changes nothing), and report
// a pupil activated or deactivated as a gallery change.
func TestCityHelpersWriteAuditAndReport(t *testing.T) {
	s := newStore(t)
	ctx := WithActor(context.Background(), "citysync", "")
	const p = "001234567890"
	row := func(action, subject string, detail map[string]any) auditRow {
		return auditRow{actor: "citysync", action: action, subject: subject, school: "thcs-a", detail: detail}
	}
	fields := func(f ...any) map[string]any { return map[string]any{"fields": f} }
	staff := Staff{ID: "gv-1", SchoolID: "thcs-a", FullName: "Phạm Thu", Phone: "0901234567", Role: "teacher", Active: true}
	class := Class{ID: "7b", SchoolID: "thcs-a", Name: "Lớp 7B", Grade: 7, HomeroomTeacherID: "gv-1", Active: true}
	pupil := Pupil{ID: p, SchoolID: "thcs-a", ClassID: "6a", FullName: "Nguyễn Văn An", DateOfBirth: "2014-03-02", Active: true}
	mum := Guardian{PupilID: p, FullName: "Lê Thị Mai", Phone: "0912345678", Relation: "mother"}
	cases := []struct {
		name    string
		write   func(tx *sql.Tx) (Change, error)
		want    Change
		entries []auditRow
		query   string // a count that must be 1 afterwards
	}{
		{"staff created", func(tx *sql.Tx) (Change, error) { return Change{}, UpsertCityStaffTx(ctx, tx, staff, txAt) },
			Change{}, []auditRow{row(ActionStaffCreate, "staff:gv-1", map[string]any{})},
			`SELECT count(*) FROM staff WHERE id = 'gv-1' AND phone = '0901234567' AND active = 1`},
		{"staff updated", func(tx *sql.Tx) (Change, error) {
			x := staff
			x.Phone, x.Role = "0987654321", "admin"
			return Change{}, UpsertCityStaffTx(ctx, tx, x, txAt)
		}, Change{}, []auditRow{row(ActionStaffUpdate, "staff:gv-1", fields("phone", "role"))},
			`SELECT count(*) FROM staff WHERE id = 'gv-1' AND phone = '0987654321' AND role = 'admin'`},
		{"class created", func(tx *sql.Tx) (Change, error) { return Change{}, UpsertCityClassTx(ctx, tx, class, txAt) },
			Change{}, []auditRow{row(ActionClassCreate, "class:7b", map[string]any{})},
			`SELECT count(*) FROM classes WHERE id = '7b' AND homeroom_teacher_id = 'gv-1' AND grade = 7`},
		{"class updated, its timetable kept", func(tx *sql.Tx) (Change, error) {
			if _, err := tx.Exec(`UPDATE classes SET start_time = '06:45' WHERE id = '7b'`); err != nil {
				return Change{}, err
			}
			x := class
			x.Name = "Lớp 7B1"
			return Change{}, UpsertCityClassTx(ctx, tx, x, txAt)
		}, Change{}, []auditRow{row(ActionClassUpdate, "class:7b", fields("name"))},
			`SELECT count(*) FROM classes WHERE id = '7b' AND name = 'Lớp 7B1' AND start_time = '06:45'`},
		{"pupil created", func(tx *sql.Tx) (Change, error) { return UpsertCityPupilTx(ctx, tx, pupil, txAt) },
			Change{School: "thcs-a", Changed: true}, []auditRow{row(ActionPupilCreate, "pupil:"+p, map[string]any{})},
			`SELECT count(*) FROM pupils WHERE id = '` + p + `' AND source = 'city' AND class_id = '6a' AND active = 1`},
		{"pupil moved, manual attendance kept", func(tx *sql.Tx) (Change, error) {
			if _, err := tx.Exec(`UPDATE pupils SET manual_attendance = 1, source = 'local' WHERE id = ?`, p); err != nil {
				return Change{}, err
			}
			x := pupil
			x.ClassID, x.FullName = "7b", "Nguyễn Văn Ân"
			return UpsertCityPupilTx(ctx, tx, x, txAt)
		}, Change{School: "thcs-a", Changed: true}, []auditRow{row(ActionPupilUpdate, "pupil:"+p, fields("class_id", "full_name", "source"))},
			`SELECT count(*) FROM pupils WHERE id = '` + p + `' AND class_id = '7b' AND manual_attendance = 1 AND source = 'city'`},
		{"pupil left: the gallery changes", func(tx *sql.Tx) (Change, error) {
			x := pupil
			x.ClassID, x.FullName, x.Active = "7b", "Nguyễn Văn Ân", false
			return UpsertCityPupilTx(ctx, tx, x, txAt)
		}, Change{School: "thcs-a", Changed: true, Gallery: true}, []auditRow{row(ActionPupilUpdate, "pupil:"+p, fields("active"))},
			`SELECT count(*) FROM pupils WHERE id = '` + p + `' AND active = 0`},
		{"pupil back", func(tx *sql.Tx) (Change, error) { return SetPupilActiveTx(ctx, tx, p, true, txAt) },
			Change{School: "thcs-a", Changed: true, Gallery: true}, []auditRow{row(ActionPupilUpdate, "pupil:"+p, fields("active"))},
			`SELECT count(*) FROM pupils WHERE id = '` + p + `' AND active = 1 AND updated_at = ` + strconv.FormatInt(txAt.UnixMilli(), 10)},
		{"pupil already active", func(tx *sql.Tx) (Change, error) { return SetPupilActiveTx(ctx, tx, p, true, txAt) },
			Change{School: "thcs-a"}, nil, `SELECT count(*) FROM pupils WHERE id = '` + p + `' AND active = 1`},
		{"no such pupil", func(tx *sql.Tx) (Change, error) { return SetPupilActiveTx(ctx, tx, "009999999999", false, txAt) },
			Change{}, nil, `SELECT 1`},
		{"guardian added", func(tx *sql.Tx) (Change, error) { return MergeCityGuardianTx(ctx, tx, mum, txAt) },
			Change{Changed: true}, []auditRow{row(ActionGuardianCreate, "pupil:"+p, map[string]any{"guardian_id": float64(1)})},
			`SELECT count(*) FROM guardians WHERE pupil_id = '` + p + `' AND phone = '0912345678'`},
		{"guardian unchanged", func(tx *sql.Tx) (Change, error) { return MergeCityGuardianTx(ctx, tx, mum, txAt) },
			Change{}, nil, `SELECT count(*) FROM guardians`},
		{"guardian matched by phone, renamed", func(tx *sql.Tx) (Change, error) {
			g := mum
			g.FullName, g.Email = "Lê Thị Mai Anh", "mai@example.com"
			return MergeCityGuardianTx(ctx, tx, g, txAt)
		}, Change{Changed: true}, []auditRow{row(ActionGuardianUpdate, "pupil:"+p, map[string]any{"guardian_id": float64(1), "fields": []any{"full_name", "email"}})},
			`SELECT count(*) FROM guardians WHERE id = 1 AND full_name = 'Lê Thị Mai Anh' AND email = 'mai@example.com'`},
		{"guardian matched by name, new phone", func(tx *sql.Tx) (Change, error) {
			g := mum
			g.FullName, g.Email, g.Phone = "Lê Thị Mai Anh", "mai@example.com", "0933333333"
			return MergeCityGuardianTx(ctx, tx, g, txAt)
		}, Change{Changed: true}, []auditRow{row(ActionGuardianUpdate, "pupil:"+p, map[string]any{"guardian_id": float64(1), "fields": []any{"phone"}})},
			`SELECT count(*) FROM guardians WHERE id = 1 AND phone = '0933333333' AND (SELECT count(*) FROM guardians) = 1`},
		{"class retired", func(tx *sql.Tx) (Change, error) { return DeactivateClassTx(ctx, tx, "7b", txAt) },
			Change{School: "thcs-a", Changed: true}, []auditRow{row(ActionClassUpdate, "class:7b", fields("active"))},
			`SELECT count(*) FROM classes WHERE id = '7b' AND active = 0`},
		{"class already retired", func(tx *sql.Tx) (Change, error) { return DeactivateClassTx(ctx, tx, "7b", txAt) },
			Change{}, nil, `SELECT count(*) FROM classes WHERE id = '7b' AND active = 0`},
		{"staff retired", func(tx *sql.Tx) (Change, error) { return DeactivateStaffTx(ctx, tx, "gv-1", txAt) },
			Change{School: "thcs-a", Changed: true}, []auditRow{row(ActionStaffUpdate, "staff:gv-1", fields("active"))},
			`SELECT count(*) FROM staff WHERE id = 'gv-1' AND active = 0`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			last := lastAuditID(t, s)
			var got Change
			if err := inTx(t, s, func(tx *sql.Tx) (err error) { got, err = c.write(tx); return err }); err != nil {
				t.Fatal(err)
			}
			if got != c.want {
				t.Errorf("change %+v, want %+v", got, c.want)
			}
			wantEntries(t, s, last, c.entries)
			var n int
			if err := s.db.R.QueryRow(c.query).Scan(&n); err != nil || n != 1 {
				t.Errorf("%s = %d (%v), want 1", c.query, n, err)
			}
		})
	}
	assertNoPersonalData(t, s, "Phạm Thu", "Lớp 7B", "Nguyễn", "Lê Thị", "0901234567", "0912345678", "0933333333", "mai@example.com", "2014-03-02")
}

// TestCityUpsertKeepsAnotherSchoolsStaff: the city's staff upsert leaves a
// stored row's school as it is, and the audit entry names no school change.
func TestCityUpsertKeepsAnotherSchoolsStaff(t *testing.T) {
	s := newStore(t)
	bg := context.Background()
	if _, err := s.PutSchool(bg, School{ID: "thcs-b", Name: "THCS B"}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.PutStaff(bg, Staff{ID: "gv-1", SchoolID: "thcs-b", FullName: "Phạm Thu", Role: "teacher", Active: true}); err != nil {
		t.Fatal(err)
	}
	last := lastAuditID(t, s)
	ctx := WithActor(bg, "citysync", "")
	x := Staff{ID: "gv-1", SchoolID: "thcs-a", FullName: "Phạm Thu Hà", Role: "teacher", Active: true}
	if err := inTx(t, s, func(tx *sql.Tx) error { return UpsertCityStaffTx(ctx, tx, x, txAt) }); err != nil {
		t.Fatal(err)
	}
	got, err := s.StaffMember(bg, "gv-1")
	if err != nil || got.SchoolID != "thcs-b" || got.FullName != "Phạm Thu Hà" {
		t.Fatalf("staff %+v (%v), want school thcs-b kept and the new name", got, err)
	}
	wantEntries(t, s, last, []auditRow{{actor: "citysync", action: ActionStaffUpdate, subject: "staff:gv-1", school: "thcs-b",
		detail: map[string]any{"fields": []any{"full_name"}}}})
}

// assertNoPersonalData fails when an audit entry carries one of values.
func assertNoPersonalData(t *testing.T, s *Store, values ...string) {
	t.Helper()
	entries, _ := auditSince(t, s, 0)
	if len(entries) == 0 {
		t.Fatal("no audit entries to check")
	}
	rows, err := s.db.R.Query(`SELECT detail FROM audit_log`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	for rows.Next() {
		var d string
		if err := rows.Scan(&d); err != nil {
			t.Fatal(err)
		}
		for _, v := range values {
			if strings.Contains(d, v) {
				t.Errorf("audit detail %s carries %q", d, v)
			}
		}
	}
}
