package roster

import (
	"context"
	"encoding/json"
	"slices"
	"strings"
	"testing"

	"github.com/diemdanh/diemdanh/hub/api"
)

// auditRow is one audit_log row as stored.
type auditRow struct {
	actor, action, subject, school, ip string
	detail                             map[string]any
}

// auditSince returns the audit rows after id and the last id.
func auditSince(t *testing.T, s *Store, id int64) ([]auditRow, int64) {
	t.Helper()
	rows, err := s.db.R.Query(`SELECT id, actor, action, subject, COALESCE(school_id, ''), ip, detail FROM audit_log WHERE id > ? ORDER BY id`, id)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []auditRow
	last := id
	for rows.Next() {
		var r auditRow
		var d string
		if err := rows.Scan(&last, &r.actor, &r.action, &r.subject, &r.school, &r.ip, &d); err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal([]byte(d), &r.detail); err != nil {
			t.Fatalf("detail %q: %v", d, err)
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out, last
}

func lastAuditID(t *testing.T, s *Store) int64 {
	t.Helper()
	var id int64
	if err := s.db.R.QueryRow(`SELECT COALESCE(max(id), 0) FROM audit_log`).Scan(&id); err != nil {
		t.Fatal(err)
	}
	return id
}

// personal are the names, phone numbers and e-mail addresses the writes
// below use: none may reach an audit entry.
var personal = []string{"Nguyễn", "Trần", "Lê Thị", "Phạm", "Vũ", "0901234567", "0912345678", "me@example.com", "Cổng", "THCS B", "Lớp", "Quận"}

// TestRosterWritesAudited: every kind of roster write records exactly one
// audit entry with the context's actor and address, the action, the
// subject and the subject's school, and IDs and changed field names only;
// a refused write records nothing.
func TestRosterWritesAudited(t *testing.T) {
	s := newStore(t)
	ctx := WithActor(context.Background(), "admin:lan", "10.0.0.7")
	const p1, p2 = "001234567890", "001234567891"
	var gid int64
	cases := []struct {
		name            string
		write           func() error
		action, subject string
		school          string
		detail          map[string]any // wanted keys and values (JSON-decoded)
	}{
		{"create school", func() error { _, err := s.PutSchool(ctx, School{ID: "thcs-b", Name: "THCS B"}); return err },
			ActionSchoolCreate, "school:thcs-b", "thcs-b", nil},
		{"update school", func() error {
			_, err := s.PutSchool(ctx, School{ID: "thcs-b", Name: "THCS B mới", District: "Quận Một"})
			return err
		}, ActionSchoolUpdate, "school:thcs-b", "thcs-b", map[string]any{"fields": []any{"name", "district"}}},
		{"create class", func() error {
			_, err := s.PutClass(ctx, Class{ID: "7b", SchoolID: "thcs-b", Name: "Lớp 7B", Grade: 7})
			return err
		}, ActionClassCreate, "class:7b", "thcs-b", nil},
		{"update class", func() error {
			_, err := s.PutClass(ctx, Class{ID: "7b", SchoolID: "thcs-b", Name: "Lớp 7B", Grade: 8})
			return err
		}, ActionClassUpdate, "class:7b", "thcs-b", map[string]any{"fields": []any{"grade"}}},
		{"create pupil", func() error {
			_, err := s.PutPupil(ctx, Pupil{ID: p1, SchoolID: "thcs-b", ClassID: "7b", FullName: "Nguyễn Văn An", Active: true})
			return err
		}, ActionPupilCreate, "pupil:" + p1, "thcs-b", nil},
		{"update pupil", func() error {
			_, err := s.PutPupil(ctx, Pupil{ID: p1, SchoolID: "thcs-b", ClassID: "7b", FullName: "Trần Văn An", Active: true})
			return err
		}, ActionPupilUpdate, "pupil:" + p1, "thcs-b", map[string]any{"fields": []any{"full_name"}}},
		{"create guardian", func() error {
			g, err := s.PutGuardian(ctx, Guardian{PupilID: p1, FullName: "Lê Thị Mai", Phone: "0901234567"})
			gid = g.ID
			return err
		}, ActionGuardianCreate, "pupil:" + p1, "thcs-b", map[string]any{"guardian_id": float64(1)}},
		{"update guardian", func() error {
			_, err := s.PutGuardian(ctx, Guardian{ID: gid, FullName: "Lê Thị Mai", Phone: "0912345678", Email: "me@example.com"})
			return err
		}, ActionGuardianUpdate, "pupil:" + p1, "thcs-b", map[string]any{"guardian_id": float64(1), "fields": []any{"phone", "email"}}},
		{"delete guardian", func() error { return s.DeleteGuardian(ctx, gid) },
			ActionGuardianDelete, "pupil:" + p1, "thcs-b", map[string]any{"guardian_id": float64(1)}},
		{"create staff", func() error {
			_, err := s.PutStaff(ctx, Staff{ID: "gv-1", SchoolID: "thcs-b", FullName: "Phạm Thu", Role: "teacher"})
			return err
		}, ActionStaffCreate, "staff:gv-1", "thcs-b", nil},
		{"update staff", func() error {
			_, err := s.PutStaff(ctx, Staff{ID: "gv-1", SchoolID: "thcs-b", FullName: "Phạm Thu", Role: "admin", Active: true})
			return err
		}, ActionStaffUpdate, "staff:gv-1", "thcs-b", map[string]any{"fields": []any{"role", "active"}}},
		{"delete staff", func() error { return s.DeleteStaff(ctx, "gv-1") }, ActionStaffDelete, "staff:gv-1", "thcs-b", nil},
		{"create gate", func() error {
			_, err := s.CreateGate(ctx, Gate{ID: "cong-1", SchoolID: "thcs-b", Name: "Cổng chính"})
			return err
		}, ActionGateCreate, "gate:cong-1", "thcs-b", nil},
		{"update gate", func() error {
			_, err := s.UpdateGate(ctx, Gate{ID: "cong-1", Name: "Cổng sau", Direction: "out", Active: true})
			return err
		}, ActionGateUpdate, "gate:cong-1", "thcs-b", map[string]any{"fields": []any{"name", "direction"}}},
		{"rotate gate password", func() error { _, err := s.RotateGatePassword(ctx, "cong-1"); return err },
			ActionGatePassword, "gate:cong-1", "thcs-b", nil},
		{"delete gate", func() error { return s.DeleteGate(ctx, "cong-1") }, ActionGateDelete, "gate:cong-1", "thcs-b", nil},
		{"import", func() error {
			csv := "personal_id,full_name,class,guardian1_name,guardian1_phone\n" +
				p1 + ",Trần Văn An,7b,Lê Thị Mai,0901234567\n" +
				p2 + ",Vũ Thị Hà,Lớp 7B,,\n"
			_, err := s.ImportPupilsCSV(ctx, "thcs-b", strings.NewReader(csv), false)
			return err
		}, ActionPupilImport, "school:thcs-b", "thcs-b", map[string]any{"rows": float64(2), "pupils_created": float64(1), "pupils_updated": float64(1),
			"guardians_created": float64(1), "guardians_updated": float64(0)}},
		{"delete pupil", func() error { return s.DeletePupil(ctx, p1) }, ActionPupilDelete, "pupil:" + p1, "thcs-b", nil},
		{"delete imported pupil", func() error { return s.DeletePupil(ctx, p2) }, ActionPupilDelete, "pupil:" + p2, "thcs-b", nil},
		{"delete class", func() error { return s.DeleteClass(ctx, "7b") }, ActionClassDelete, "class:7b", "thcs-b", nil},
		{"delete school", func() error { return s.DeleteSchool(ctx, "thcs-b") }, ActionSchoolDelete, "school:thcs-b", "thcs-b", nil},
	}
	last := lastAuditID(t, s)
	for _, tc := range cases {
		if err := tc.write(); err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		var got []auditRow
		got, last = auditSince(t, s, last)
		if len(got) != 1 {
			t.Fatalf("%s: %d audit rows %+v, want 1", tc.name, len(got), got)
		}
		checkAuditRow(t, tc.name, got[0], auditRow{actor: "admin:lan", ip: "10.0.0.7", action: tc.action, subject: tc.subject, school: tc.school}, tc.detail)
	}
}

func checkAuditRow(t *testing.T, name string, got, want auditRow, detail map[string]any) {
	t.Helper()
	if got.actor != want.actor || got.ip != want.ip || got.action != want.action || got.subject != want.subject || got.school != want.school {
		t.Errorf("%s: audited %+v, want %+v", name, got, want)
	}
	for k, v := range detail {
		if b, _ := json.Marshal(got.detail[k]); string(b) != mustJSON(v) {
			t.Errorf("%s: detail[%s] = %s, want %s", name, k, b, mustJSON(v))
		}
	}
	b, _ := json.Marshal(got.detail)
	for _, p := range personal {
		if strings.Contains(string(b), p) {
			t.Errorf("%s: detail %s holds personal data %q", name, b, p)
		}
	}
	if _, ok := got.detail["fields"]; ok != strings.HasSuffix(want.action, "_update") {
		t.Errorf("%s: detail %s: fields listed on a non-update or missing on an update", name, b)
	}
}

// TestRosterRefusedWritesNotAudited: a write the store refuses (bad
// input, a conflict, a missing record, a record still in use, a file with
// a bad row, a dry run) records no audit entry.
func TestRosterRefusedWritesNotAudited(t *testing.T) {
	s := newStore(t)
	ctx := WithActor(context.Background(), "admin:lan", "10.0.0.7")
	if _, err := s.PutPupil(ctx, Pupil{ID: "001234567890", SchoolID: "thcs-a", ClassID: "6a", FullName: "Nguyễn Văn An"}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.PutSchool(ctx, School{ID: "thcs-b", Name: "THCS B"}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreateGate(ctx, Gate{ID: "cong-1", SchoolID: "thcs-a"}); err != nil {
		t.Fatal(err)
	}
	badCSV := "personal_id,full_name,class\n001234567891,Lê Chi,6a\n12345,Sai Mã,6a\n"
	goodCSV := "personal_id,full_name,class\n001234567891,Lê Chi,6a\n"
	cases := []struct {
		name  string
		write func() error
		code  api.Code
	}{
		{"invalid school ID", func() error { _, err := s.PutSchool(ctx, School{ID: "Bad ID", Name: "x"}); return err }, api.CodeInvalid},
		{"invalid personal ID", func() error {
			_, err := s.PutPupil(ctx, Pupil{ID: "12345", SchoolID: "thcs-a", FullName: "An"})
			return err
		}, api.CodeInvalid},
		{"pupil of another school", func() error {
			_, err := s.PutPupil(ctx, Pupil{ID: "001234567890", SchoolID: "thcs-b", FullName: "An"})
			return err
		}, api.CodeConflict},
		{"class ID of another school", func() error { _, err := s.PutClass(ctx, Class{ID: "6a", SchoolID: "thcs-b", Name: "6A"}); return err }, api.CodeConflict},
		{"bad guardian phone", func() error {
			_, err := s.PutGuardian(ctx, Guardian{PupilID: "001234567890", FullName: "Mẹ", Phone: "x"})
			return err
		}, api.CodeInvalid},
		{"missing guardian", func() error { _, err := s.PutGuardian(ctx, Guardian{ID: 999, FullName: "Mẹ"}); return err }, api.CodeNotFound},
		{"delete a school in use", func() error { return s.DeleteSchool(ctx, "thcs-a") }, api.CodeConflict},
		{"delete a missing class", func() error { return s.DeleteClass(ctx, "nope") }, api.CodeNotFound},
		{"update a missing gate", func() error { _, err := s.UpdateGate(ctx, Gate{ID: "nope", Direction: "in"}); return err }, api.CodeNotFound},
		{"short gate password", func() error { return s.SetGatePassword(ctx, "cong-1", "short") }, api.CodeInvalid},
		{"password of a missing gate", func() error { _, err := s.RotateGatePassword(ctx, "nope"); return err }, api.CodeNotFound},
		{"import with a bad row", func() error {
			_, err := s.ImportPupilsCSV(ctx, "thcs-a", strings.NewReader(badCSV), false)
			return err
		}, api.CodeInvalid},
		{"import dry run", func() error {
			_, err := s.ImportPupilsCSV(ctx, "thcs-a", strings.NewReader(goodCSV), true)
			return err
		}, ""},
	}
	last := lastAuditID(t, s)
	for _, tc := range cases {
		err := tc.write()
		if tc.code == "" && err != nil || tc.code != "" && api.CodeOf(err) != tc.code {
			t.Errorf("%s: %v, want code %q", tc.name, err, tc.code)
		}
		if got, _ := auditSince(t, s, last); len(got) != 0 {
			t.Errorf("%s: recorded %+v", tc.name, got)
		}
	}
	if n := countPupils(t, s); n != 1 {
		t.Errorf("refused writes left %d pupils, want 1", n)
	}
}

// TestRosterAPIWritesAuditedAsCaller: the JSON API's writes are audited as
// the request's actor (api.Actor: "local" without accounts) from its
// client address; writes without an actor in their context as "system".
func TestRosterAPIWritesAuditedAsCaller(t *testing.T) {
	s := newStore(t)
	c := serve(t, s)
	last := lastAuditID(t, s)
	steps := []struct {
		method, path string
		body         any
		status       int
		action       string
	}{
		{"POST", "/schools/thcs-a/classes", map[string]any{"id": "6b", "name": "6B", "grade": 6}, 201, ActionClassCreate},
		{"PATCH", "/classes/6b", map[string]any{"grade": 7}, 200, ActionClassUpdate},
		{"POST", "/schools/thcs-a/pupils/import", "personal_id,full_name,class\n001234567890,Nguyễn An,6b\n", 200, ActionPupilImport},
		{"POST", "/schools/thcs-a/gates", map[string]any{"id": "cong-1"}, 201, ActionGateCreate},
		{"POST", "/gates/cong-1/credentials", nil, 200, ActionGatePassword},
		{"DELETE", "/pupils/001234567890", nil, 204, ActionPupilDelete},
		{"POST", "/schools/thcs-a/classes", map[string]any{"id": "6c", "name": "6C", "start_time": "25:00"}, 400, ""},
	}
	for _, st := range steps {
		c.do(st.method, st.path, st.body, st.status, nil)
		var got []auditRow
		got, last = auditSince(t, s, last)
		var actions []string
		for _, r := range got {
			actions = append(actions, r.action)
			if r.actor != "local" || r.ip != "127.0.0.1" || r.school != "thcs-a" {
				t.Errorf("%s %s: audited %+v, want actor local from 127.0.0.1 about thcs-a", st.method, st.path, r)
			}
		}
		want := []string{st.action}
		if st.action == "" {
			want = nil
		}
		if !slices.Equal(actions, want) {
			t.Errorf("%s %s: audited %v, want %v", st.method, st.path, actions, want)
		}
	}
	if _, err := s.PutSchool(context.Background(), School{ID: "thcs-c", Name: "C"}); err != nil {
		t.Fatal(err)
	}
	if got, _ := auditSince(t, s, last); len(got) != 1 || got[0].actor != SystemActor || got[0].ip != "" {
		t.Errorf("write without an actor: audited %+v, want one entry by %q", got, SystemActor)
	}
}
