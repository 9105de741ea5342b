package roster

import (
	"context"
	"net/http/httptest"
	"slices"
	"testing"

	"github.com/diemdanh/diemdanh/hub/api"
	"github.com/gin-gonic/gin"
)

// oneSchool is an Authorizer that allows whatever concerns school and
// refuses the rest (403), as a school's admin account does.
type oneSchool string

func (o oneSchool) Authorize(_ *gin.Context, a api.Access) error {
	if a.SchoolID == string(o) {
		return nil
	}
	return &api.Error{Code: api.CodeForbidden, Message: "another school"}
}

// TestRecordRoutesStatusAndAudit: for every kind of record, the order of
// the checks shows in the status (a missing record is a 404 before any
// authorization, except a school, which is authorized on its ID first and
// so reveals nothing of another school), a bad body is a 400, a PATCH
// cannot move a record's ID or owner, a create of an existing ID is a 409,
// and only the successful writes are audited, one entry each.
func TestRecordRoutesStatusAndAudit(t *testing.T) {
	s := newStore(t) // thcs-a with class 6a
	ctx := context.Background()
	const pa, pb = "001234567890", "001234567891"
	seed := []func() error{
		func() error { _, err := s.PutSchool(ctx, School{ID: "thcs-b", Name: "THCS B"}); return err },
		func() error {
			_, err := s.PutClass(ctx, Class{ID: "6b", SchoolID: "thcs-b", Name: "6B", Grade: 6, Active: true})
			return err
		},
		func() error {
			_, err := s.PutPupil(ctx, Pupil{ID: pa, SchoolID: "thcs-a", FullName: "An", Active: true})
			return err
		},
		func() error {
			_, err := s.PutPupil(ctx, Pupil{ID: pb, SchoolID: "thcs-b", FullName: "Bình", Active: true})
			return err
		},
		func() error {
			_, err := s.PutStaff(ctx, Staff{ID: "gv-a", SchoolID: "thcs-a", FullName: "A", Role: "teacher"})
			return err
		},
		func() error {
			_, err := s.PutStaff(ctx, Staff{ID: "gv-b", SchoolID: "thcs-b", FullName: "B", Role: "teacher"})
			return err
		},
		func() error { _, err := s.CreateGate(ctx, Gate{ID: "cong-a", SchoolID: "thcs-a"}); return err },
		func() error { _, err := s.CreateGate(ctx, Gate{ID: "cong-b", SchoolID: "thcs-b"}); return err },
	}
	for _, f := range seed {
		if err := f(); err != nil {
			t.Fatal(err)
		}
	}
	ga, err := s.PutGuardian(ctx, Guardian{PupilID: pa, FullName: "Mẹ An", Phone: "0901234567"})
	if err != nil {
		t.Fatal(err)
	}
	gb, err := s.PutGuardian(ctx, Guardian{PupilID: pb, FullName: "Mẹ Bình", Phone: "0912345678"})
	if err != nil {
		t.Fatal(err)
	}
	srv := api.NewServer(nil, nil, oneSchool("thcs-b"))
	s.Routes(srv.V1)
	ts := httptest.NewServer(srv.Engine)
	defer ts.Close()
	c := client{t, ts.URL}

	cases := []struct {
		method, path string
		body         any
		status       int
		action       string // the one audit entry; "" for none
	}{
		{"GET", "/schools/thcs-a", nil, 403, ""},
		{"GET", "/schools/nope", nil, 403, ""},
		{"GET", "/schools/thcs-b", nil, 200, ""},
		{"PATCH", "/schools/thcs-a", map[string]any{"name": "x"}, 403, ""},
		{"PATCH", "/schools/thcs-b", `{"name":`, 400, ""},
		{"PATCH", "/schools/thcs-b", map[string]any{"id": "thcs-z", "name": "THCS B2"}, 200, ActionSchoolUpdate},
		{"DELETE", "/schools/nope", nil, 403, ""},
		{"POST", "/schools", map[string]any{"id": "thcs-b", "name": "again"}, 409, ""},

		{"GET", "/classes/6a", nil, 403, ""},
		{"GET", "/classes/nope", nil, 404, ""},
		{"PATCH", "/classes/6a", map[string]any{"grade": 7}, 403, ""},
		{"PATCH", "/classes/6b", `{"grade":`, 400, ""},
		{"PATCH", "/classes/6b", map[string]any{"id": "6z", "school_id": "thcs-a", "grade": 7}, 200, ActionClassUpdate},
		{"DELETE", "/classes/nope", nil, 404, ""},
		{"POST", "/schools/thcs-a/classes", map[string]any{"id": "6c", "name": "6C", "grade": 6}, 403, ""},
		{"POST", "/schools/thcs-b/classes", map[string]any{"id": "6a", "name": "6A", "grade": 6}, 409, ""},

		{"GET", "/pupils/" + pa, nil, 403, ""},
		{"GET", "/pupils/001234567899", nil, 404, ""},
		{"PATCH", "/pupils/" + pa, map[string]any{"active": false}, 403, ""},
		{"PATCH", "/pupils/" + pb, map[string]any{"id": pa, "school_id": "thcs-a", "full_name": "Bình Mới"}, 200, ActionPupilUpdate},
		{"DELETE", "/pupils/" + pa, nil, 403, ""},
		{"POST", "/schools/thcs-b/pupils", map[string]any{"id": pa, "full_name": "X"}, 409, ""},

		{"PATCH", "/guardians/" + itoa(ga.ID), map[string]any{"full_name": "x"}, 403, ""},
		{"PATCH", "/guardians/abc", map[string]any{"full_name": "x"}, 400, ""},
		{"PATCH", "/guardians/99999", map[string]any{"full_name": "x"}, 404, ""},
		{"PATCH", "/guardians/" + itoa(gb.ID), map[string]any{"id": ga.ID, "pupil_id": pa, "full_name": "Bố Bình"}, 200, ActionGuardianUpdate},
		{"DELETE", "/guardians/" + itoa(ga.ID), nil, 403, ""},

		{"GET", "/staff/gv-a", nil, 403, ""},
		{"GET", "/staff/nope", nil, 404, ""},
		{"PATCH", "/staff/gv-b", map[string]any{"id": "gv-z", "school_id": "thcs-a", "full_name": "B2"}, 200, ActionStaffUpdate},
		{"DELETE", "/staff/gv-a", nil, 403, ""},
		{"POST", "/schools/thcs-b/staff", map[string]any{"id": "gv-a", "full_name": "X", "role": "teacher"}, 409, ""},

		{"GET", "/gates/cong-a", nil, 403, ""},
		{"GET", "/gates/nope", nil, 404, ""},
		{"PATCH", "/gates/cong-a", map[string]any{"name": "x"}, 403, ""},
		{"PATCH", "/gates/cong-b", map[string]any{"id": "cong-z"}, 400, ""},
		{"PATCH", "/gates/cong-b", map[string]any{"name": "Cổng sau", "active": false}, 200, ActionGateUpdate},
		{"DELETE", "/gates/cong-a", nil, 403, ""},
	}
	last := lastAuditID(t, s)
	for _, tc := range cases {
		c.do(tc.method, tc.path, tc.body, tc.status, nil)
		var got []auditRow
		got, last = auditSince(t, s, last)
		var actions []string
		for _, r := range got {
			actions = append(actions, r.action)
		}
		want := []string{tc.action}
		if tc.action == "" {
			want = nil
		}
		if !slices.Equal(actions, want) {
			t.Errorf("%s %s: audited %v, want %v", tc.method, tc.path, actions, want)
		}
	}

	// The PATCHes kept every ID and owner.
	if x, err := s.School(ctx, "thcs-b"); err != nil || x.Name != "THCS B2" {
		t.Errorf("school: %+v %v", x, err)
	}
	if x, err := s.Class(ctx, "6b"); err != nil || x.SchoolID != "thcs-b" || x.Grade != 7 {
		t.Errorf("class: %+v %v", x, err)
	}
	if x, err := s.Pupil(ctx, pb); err != nil || x.SchoolID != "thcs-b" || x.FullName != "Bình Mới" {
		t.Errorf("pupil: %+v %v", x, err)
	}
	if x, err := s.Pupil(ctx, pa); err != nil || x.FullName != "An" || !x.Active {
		t.Errorf("the other school's pupil changed: %+v %v", x, err)
	}
	if x, err := s.Guardian(ctx, gb.ID); err != nil || x.PupilID != pb || x.FullName != "Bố Bình" {
		t.Errorf("guardian: %+v %v", x, err)
	}
	if x, err := s.Guardian(ctx, ga.ID); err != nil || x.FullName != "Mẹ An" {
		t.Errorf("the other school's guardian changed: %+v %v", x, err)
	}
	if x, err := s.StaffMember(ctx, "gv-b"); err != nil || x.SchoolID != "thcs-b" || x.FullName != "B2" {
		t.Errorf("staff: %+v %v", x, err)
	}
	if x, err := s.Gate(ctx, "cong-b"); err != nil || x.Name != "Cổng sau" || x.Active {
		t.Errorf("gate: %+v %v", x, err)
	}
	for _, missing := range []func() error{
		func() error { _, err := s.School(ctx, "thcs-z"); return err },
		func() error { _, err := s.Class(ctx, "6z"); return err },
		func() error { _, err := s.StaffMember(ctx, "gv-z"); return err },
		func() error { _, err := s.Gate(ctx, "cong-z"); return err },
	} {
		if api.CodeOf(missing()) != api.CodeNotFound {
			t.Error("a PATCH created a record under a new ID")
		}
	}
}
