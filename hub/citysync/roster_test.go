package citysync_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/diemdanh/diemdanh/hub/citysync"
)

func TestSyncOffWithoutDSN(t *testing.T) {
	cfg := citysync.Default()
	if cfg.Enabled() {
		t.Fatal("default config has sync enabled")
	}
	if err := cfg.Validate("city_sync"); err != nil {
		t.Fatalf("default config invalid: %v", err)
	}
	if _, err := citysync.New(cfg, nil, nil, nil); !errors.Is(err, citysync.ErrDisabled) {
		t.Fatalf("New without DSN: %v, want ErrDisabled", err)
	}
	cfg.DSN = "postgres://x@127.0.0.1/db"
	cfg.BatchSize = 0
	if err := cfg.Validate("city_sync"); err == nil || !strings.Contains(err.Error(), "city_sync.batch_size") {
		t.Fatalf("bad batch size: %v, want an error naming city_sync.batch_size", err)
	}
}

func TestRosterPullAndBadCityData(t *testing.T) {
	f := newFixture(t, cluster)
	f.seedRoster(2, 5) // C1, C2 with 5 pupils each
	// Bad data, row by row: a class with no teacher (and a pupil in it),
	// a missing and a malformed personal ID, a duplicate pupil.
	mustExec(t, f.admin, `INSERT INTO records.classes (school_id, class_id, name, grade) VALUES ('S1', 'C9', '5A', 5)`)
	mustExec(t, f.admin, `INSERT INTO records.pupils (school_id, pupil_code, personal_id, class_id, full_name) VALUES
		('S1', 'HS9001', '079000009001', 'C9', 'Lớp không có GVCN'),
		('S1', 'BAD1', NULL, 'C1', 'Không có mã'),
		('S1', 'BAD2', '07900000X001', 'C1', 'Mã sai'),
		('S1', 'DUP1', '079000005555', 'C2', 'Trùng một'),
		('S1', 'DUP2', '079000005555', 'C2', 'Trùng hai')`)
	mustExec(t, f.admin, `INSERT INTO records.guardians (school_id, pupil_code, guardian_no, full_name, phone, relation) VALUES
		('S1', 'HS1001', 1, 'Nguyễn Thị Mai', '0901234567', 'mother')`)
	// A pupil the hub created itself, unknown to the city.
	f.hubExec(`INSERT INTO schools (id, name) VALUES ('S1', 'local name')`)
	f.hubExec(`INSERT INTO pupils (id, school_id, full_name, source) VALUES ('079099999999', 'S1', 'Local only', 'local')`)
	f.worker()

	rep := f.sync()
	if !rep.RosterPulled {
		t.Fatal("first sync did not pull the roster")
	}
	// 10 good pupils + the one whose class was skipped (kept without class).
	if n := f.hubInt(`SELECT count(*) FROM pupils WHERE source = 'city' AND active = 1`); n != 11 {
		t.Errorf("city pupils on the hub = %d, want 11", n)
	}
	if n := f.hubInt(`SELECT count(*) FROM pupils WHERE id = '079000009001' AND class_id IS NULL`); n != 1 {
		t.Error("pupil of the teacher-less class should be imported without a class")
	}
	if n := f.hubInt(`SELECT count(*) FROM classes`); n != 2 {
		t.Errorf("classes on the hub = %d, want 2 (C9 has no teacher)", n)
	}
	if n := f.hubInt(`SELECT count(*) FROM pupils WHERE id = '079000005555'`); n != 0 {
		t.Error("a duplicated personal ID was imported")
	}
	if n := f.hubInt(`SELECT count(*) FROM guardians WHERE pupil_id = ? AND phone = '0901234567'`, pid(1001)); n != 1 {
		t.Error("guardian not imported")
	}
	if got := f.hubInt(`SELECT count(*) FROM schools WHERE id = 'S1' AND name = 'Trường Tiểu học Lê Ngọc Hân' AND district = 'Quận 1'`); got != 1 {
		t.Error("school row not updated from the city")
	}
	wantIssues := map[string]string{
		"class C9":     "no homeroom teacher",
		"pupil BAD1":   "no personal ID",
		"pupil BAD2":   "malformed personal ID",
		"pupil DUP1":   "duplicate pupil",
		"pupil DUP2":   "duplicate pupil",
		"pupil HS9001": "is not on the hub",
	}
	got := map[string]string{}
	for _, is := range rep.NewIssues {
		got[is.Kind+" "+is.CityKey] = is.Reason
	}
	for k, want := range wantIssues {
		if !strings.Contains(got[k], want) {
			t.Errorf("issue %s = %q, want it to mention %q", k, got[k], want)
		}
	}
	if len(got) != len(wantIssues) {
		t.Errorf("issues = %v, want exactly %d", rep.NewIssues, len(wantIssues))
	}
	if n := f.hubInt(`SELECT count(*) FROM citysync_issues`); n != len(wantIssues) {
		t.Errorf("citysync_issues has %d rows, want %d", n, len(wantIssues))
	}
	for _, line := range []string{"BAD1", "DUP2", "C9"} {
		if !strings.Contains(f.logs.String(), line) {
			t.Errorf("issue %s not logged", line)
		}
	}

	// Nothing changed in the city: nothing re-imported, a local edit stands.
	f.hubExec(`UPDATE pupils SET full_name = 'Sửa tại trường', manual_attendance = 1 WHERE id = ?`, pid(1002))
	f.w.ForceRoster()
	if rep := f.sync(); rep.RosterChanged != 0 || len(rep.NewIssues) != 0 {
		t.Errorf("unchanged city roster: changed %d, new issues %v; want 0, none", rep.RosterChanged, rep.NewIssues)
	}
	// The city changes one pupil: only that row is applied.
	mustExec(t, f.admin, `UPDATE records.pupils SET class_id = 'C2' WHERE pupil_code = 'HS1003'`)
	f.w.ForceRoster()
	if rep := f.sync(); rep.RosterChanged != 1 {
		t.Errorf("one city change applied %d rows, want 1", rep.RosterChanged)
	}
	if n := f.hubInt(`SELECT count(*) FROM pupils WHERE id = ? AND class_id = 'C2'`, pid(1003)); n != 1 {
		t.Error("class change not applied")
	}
	if n := f.hubInt(`SELECT count(*) FROM pupils WHERE id = ? AND full_name = 'Sửa tại trường' AND manual_attendance = 1`, pid(1002)); n != 1 {
		t.Error("local edit of a pupil the city did not change was overwritten")
	}

	// A pupil leaves; another disappears from the city: both deactivated,
	// the gallery version moves; the hub's own pupil is untouched.
	v0 := f.hubInt(`SELECT coalesce(max(version), 0) FROM gallery_versions WHERE school_id = 'S1'`)
	mustExec(t, f.admin, `UPDATE records.pupils SET status = 'transferred' WHERE pupil_code = 'HS1004'`)
	mustExec(t, f.admin, `DELETE FROM records.pupils WHERE pupil_code = 'HS2005'`)
	// The bad rows get fixed: the issues go away.
	mustExec(t, f.admin, `UPDATE records.pupils SET personal_id = '079000000777' WHERE pupil_code = 'BAD2'`)
	f.w.ForceRoster()
	rep = f.sync()
	if rep.Deactivated != 2 {
		t.Errorf("deactivated %d, want 2", rep.Deactivated)
	}
	if n := f.hubInt(`SELECT count(*) FROM pupils WHERE id IN (?, ?) AND active = 0`, pid(1004), pid(2005)); n != 2 {
		t.Error("leavers still active")
	}
	if v := f.hubInt(`SELECT coalesce(max(version), 0) FROM gallery_versions WHERE school_id = 'S1'`); v <= v0 {
		t.Errorf("gallery version %d not bumped (was %d)", v, v0)
	}
	if n := f.hubInt(`SELECT count(*) FROM pupils WHERE id = '079099999999' AND active = 1`); n != 1 {
		t.Error("the hub's own pupil was deactivated")
	}
	if n := f.hubInt(`SELECT count(*) FROM pupils WHERE id = '079000000777' AND active = 1`); n != 1 {
		t.Error("fixed personal ID not imported")
	}
	if n := f.hubInt(`SELECT count(*) FROM citysync_issues WHERE city_key = 'BAD2'`); n != 0 {
		t.Error("fixed row still reported")
	}
}
