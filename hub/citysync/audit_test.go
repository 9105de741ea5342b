package citysync_test

import (
	"strings"
	"testing"
)

// TestRosterPullAudited: the roster writes of a city pull are in the audit
// log as the actor "citysync", one entry per row written, with the
// school and IDs and field names only; a pull that changes nothing
// records nothing, and a leaver is one pupil_update of "active".
func TestRosterPullAudited(t *testing.T) {
	f := newFixture(t, cluster)
	f.seedRoster(2, 3) // staff T1, T2; classes C1, C2; 6 pupils
	mustExec(t, f.admin, `INSERT INTO records.guardians (school_id, pupil_code, guardian_no, full_name, phone, relation) VALUES
		('S1', 'HS1001', 1, 'Nguyễn Thị Mai', '0901234567', 'mother')`)
	f.worker()
	f.sync()

	counts := func() map[string]int {
		rows, err := f.hub.R.Query(`SELECT action, count(*) FROM audit_log WHERE actor = 'citysync' AND school_id = 'S1' GROUP BY action`)
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		out := map[string]int{}
		for rows.Next() {
			var a string
			var n int
			if err := rows.Scan(&a, &n); err != nil {
				t.Fatal(err)
			}
			out[a] = n
		}
		return out
	}
	want := map[string]int{"staff_create": 2, "class_create": 2, "pupil_create": 6, "guardian_create": 1}
	got := counts()
	for a, n := range want {
		if got[a] != n {
			t.Errorf("%s entries by citysync = %d, want %d (all: %v)", a, got[a], n, got)
		}
	}
	if n := f.hubInt(`SELECT count(*) FROM audit_log WHERE actor <> 'citysync'`); n != 0 {
		t.Errorf("%d audit entries by another actor, want 0", n)
	}

	f.w.ForceRoster()
	f.sync()
	if n := f.hubInt(`SELECT count(*) FROM audit_log`); n != 11 {
		t.Errorf("audit entries after an unchanged pull = %d, want still 11", n)
	}

	mustExec(t, f.admin, `UPDATE records.pupils SET status = 'transferred' WHERE pupil_code = 'HS1002'`)
	f.w.ForceRoster()
	f.sync()
	if n := f.hubInt(`SELECT count(*) FROM audit_log WHERE actor = 'citysync' AND action = 'pupil_update' AND subject = ?
		AND detail = '{"fields":["active"]}'`, "pupil:"+pid(1002)); n != 1 {
		t.Errorf("leaver's pupil_update entries = %d, want 1", n)
	}

	rows, err := f.hub.R.Query(`SELECT detail FROM audit_log`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	for rows.Next() {
		var d string
		if err := rows.Scan(&d); err != nil {
			t.Fatal(err)
		}
		for _, v := range []string{"Nguyễn", "0901234567", "Học sinh", "Giáo viên", "2018-05-01", "1A1"} {
			if strings.Contains(d, v) {
				t.Errorf("audit detail %s carries %q", d, v)
			}
		}
	}
}
