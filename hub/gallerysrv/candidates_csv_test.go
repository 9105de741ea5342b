package gallerysrv

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/diemdanh/diemdanh/hub/api"
)

// TestImportCandidatesCSV: class sessions and gate classes from CSV files,
// classes and gates named by ID or name, Vietnamese headers and session
// words; a file with any bad row changes nothing and reports every bad row
// with its line and column; a clean file is saved, audited and bumps the
// gallery version; the JSON API endpoint is admins-only and scoped.
func TestImportCandidatesCSV(t *testing.T) {
	f := newFixture(t, nil, time.Hour)
	ctx := context.Background()
	for _, q := range []string{
		`INSERT INTO staff(id, school_id, full_name, role) VALUES ('t1', 'thcs-a', 'Cô Lan', 'teacher')`,
		`INSERT INTO classes(id, school_id, name, grade, homeroom_teacher_id) VALUES ('cA', 'thcs-a', '6A', 6, 't1')`,
		`INSERT INTO classes(id, school_id, name, grade) VALUES ('cB', 'thcs-a', '6B', 6), ('cX', 'thcs-b', '7X', 7)`,
		`UPDATE gates SET name = 'Cổng chính' WHERE id = 'gate-a'`,
		`INSERT INTO guardians(id, pupil_id, full_name) VALUES (1, '` + pupils[0] + `', 'Mẹ')`,
	} {
		if _, err := f.db.W.Exec(q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	settings := func() (map[string][]string, map[string][]string) {
		t.Helper()
		cs, err := f.srv.CandidateSettings(ctx, "thcs-a")
		if err != nil {
			t.Fatal(err)
		}
		cl, gt := map[string][]string{}, map[string][]string{}
		for _, c := range cs.Classes {
			cl[c.ID] = c.Sessions
		}
		for _, g := range cs.Gates {
			gt[g.ID] = g.ClassIDs
		}
		return cl, gt
	}
	cl0, gt0 := settings()
	v0 := f.get(t, "gate-a", "gate-a", f.pwA, "").etag

	// A bad file: every bad row reported, nothing written.
	bad := "lớp;ca học\n6A;ca sáng\n9Z;sáng\ncB;buổi tối\n6A;chiều\n"
	rep, err := f.srv.ImportCandidatesCSV(ctx, "admin:x", "", "thcs-a", strings.NewReader(bad))
	var ae *api.Error
	if !errors.As(err, &ae) || ae.Code != api.CodeInvalid || rep.Applied || rep.Kind != CandidateCSVSessions {
		t.Fatalf("bad file: %+v, %v", rep, err)
	}
	var lines []int
	for _, e := range rep.Errors {
		lines = append(lines, e.Line)
	}
	if !slices.Equal(lines, []int{3, 4, 5}) || rep.Errors[1].Field != "sessions" || !strings.Contains(rep.Errors[2].Reason, "line 2") {
		t.Errorf("row report: %+v", rep.Errors)
	}
	if cl, gt := settings(); !reflect.DeepEqual(cl, cl0) || !reflect.DeepEqual(gt, gt0) {
		t.Errorf("a refused file changed settings: %v %v", cl, gt)
	}

	// Clean files: by name and by ID, BOM, Vietnamese words.
	rep, err = f.srv.ImportCandidatesCSV(ctx, "admin:x", "10.0.0.1", "thcs-a", strings.NewReader("\uFEFFclass,sessions\n6A,ca sáng\ncB,\"morning, afternoon\"\n"))
	if err != nil || !rep.Applied || rep.Rows != 2 || rep.Changed != 1 {
		t.Fatalf("sessions file: %+v, %v", rep, err)
	}
	rep, err = f.srv.ImportCandidatesCSV(ctx, "admin:x", "", "thcs-a", strings.NewReader("cổng,các lớp\nCổng chính,6a | cB\n"))
	if err != nil || !rep.Applied || rep.Kind != CandidateCSVGates || rep.Changed != 1 {
		t.Fatalf("gates file: %+v, %v", rep, err)
	}
	cl, gt := settings()
	if !slices.Equal(cl["cA"], []string{"morning"}) || len(cl["cB"]) != 2 || !slices.Equal(gt["gate-a"], []string{"cA", "cB"}) {
		t.Errorf("stored: %v %v", cl, gt)
	}
	var n int
	if err := f.db.R.QueryRow(`SELECT count(*) FROM audit_log WHERE actor = 'admin:x' AND action IN (?, ?)`, ActionClassSessions, ActionGateClasses).Scan(&n); err != nil || n != 2 {
		t.Errorf("audit entries: %d %v", n, err)
	}
	if v := f.get(t, "gate-a", "gate-a", f.pwA, "").etag; v == v0 {
		t.Errorf("gallery version did not change: %s", v)
	}
	// Another school's class is not found by name or ID.
	if rep, err = f.srv.ImportCandidatesCSV(ctx, "admin:x", "", "thcs-a", strings.NewReader("gate,classes\ngate-a,7X\n")); err == nil || len(rep.Errors) != 1 {
		t.Errorf("other school's class: %+v %v", rep, err)
	}

	// The JSON API: admins of the school only.
	ts := authAPIServer(t, f, "thcs-a")
	for _, c := range []struct {
		user, school string
		want         int
	}{{"", "thcs-a", 401}, {"lan", "thcs-a", 403}, {"me", "thcs-a", 403}, {"admin-b", "thcs-a", 403}, {"admin-a", "thcs-a", 200}, {"root", "thcs-a", 200}} {
		req, _ := http.NewRequest("POST", ts.URL+"/api/v1/schools/"+c.school+"/candidates/import", strings.NewReader("class,sessions\n6B,chiều\n"))
		req.Header.Set("Content-Type", "text/csv")
		if c.user != "" {
			req.SetBasicAuth(c.user, testPassword)
		}
		r, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var got CandidateImport
		_ = json.NewDecoder(r.Body).Decode(&got)
		r.Body.Close()
		if r.StatusCode != c.want || (c.want == 200 && (!got.Applied || got.Rows != 1)) {
			t.Errorf("%q: %d %+v, want %d", c.user, r.StatusCode, got, c.want)
		}
	}
	if cl, _ := settings(); !slices.Equal(cl["cB"], []string{"afternoon"}) {
		t.Errorf("after the API import: %v", cl["cB"])
	}
}
