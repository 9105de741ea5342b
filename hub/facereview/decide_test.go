package facereview_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/diemdanh/diemdanh/hub/audit"
	"github.com/diemdanh/diemdanh/hub/facereview"
)

// auditRows returns the audit entries of action, oldest first.
func auditRows(t *testing.T, f *fixture, action string) []audit.Entry {
	t.Helper()
	es, err := f.audit.List(context.Background(), audit.Filter{Scope: audit.Scope{All: true}, Action: action})
	if err != nil {
		t.Fatal(err)
	}
	for i, j := 0, len(es)-1; i < j; i, j = i+1, j-1 {
		es[i], es[j] = es[j], es[i]
	}
	return es
}

// TestAssignAndDismissAudited: each decision is recorded on the face and
// in the audit log (once, however often it is repeated), and a pupil or
// class outside the face's school is refused without a trace.
func TestAssignAndDismissAudited(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	u := f.capture(t, f.gates[0], f.clock().Add(-time.Minute))
	id := f.ingest(t, u)
	a1, a2, b1 := f.pupils["thcs-a"][0], f.pupils["thcs-a"][1], f.pupils["thcs-b"][0]
	if _, err := f.db.W.Exec(`UPDATE pupils SET active = 0 WHERE id = ?`, f.pupils["thcs-a"][4]); err != nil {
		t.Fatal(err)
	}
	steps := []struct {
		name    string
		do      func() error
		err     error // nil: succeeds
		assigns int   // audit entries of each action after the step
		dismiss int
	}{
		{"pupil of another school", func() error { _, err := f.st.Assign(ctx, id, b1, "teacher:lan"); return err }, facereview.ErrInvalid, 0, 0},
		{"unknown pupil", func() error { _, err := f.st.Assign(ctx, id, "999999999999", "teacher:lan"); return err }, facereview.ErrInvalid, 0, 0},
		{"pupil who left", func() error { _, err := f.st.Assign(ctx, id, f.pupils["thcs-a"][4], "teacher:lan"); return err }, facereview.ErrInvalid, 0, 0},
		{"unknown face", func() error { _, err := f.st.Assign(ctx, id+100, a1, "teacher:lan"); return err }, facereview.ErrNotFound, 0, 0},
		{"dismiss for a class of another school", func() error { _, err := f.st.Dismiss(ctx, id, "thcs-b-1a", "teacher:lan"); return err }, facereview.ErrInvalid, 0, 0},
		{"dismiss for the class", func() error { return wantNew(f.st.Dismiss(ctx, id, "thcs-a-1a", "teacher:lan")) }, nil, 0, 1},
		{"dismiss again", func() error { return wantOld(f.st.Dismiss(ctx, id, "thcs-a-1a", "teacher:lan")) }, nil, 0, 1},
		{"assign", func() error { return assignNew(f.st.Assign(ctx, id, a1, "teacher:lan")) }, nil, 1, 1},
		{"assign again to the same pupil", func() error { return assignOld(f.st.Assign(ctx, id, a1, "admin:root")) }, nil, 1, 1},
		{"assign to another pupil", func() error { _, err := f.st.Assign(ctx, id, a2, "teacher:lan"); return err }, facereview.ErrAssigned, 1, 1},
	}
	for _, s := range steps {
		err := s.do()
		if (s.err == nil && err != nil) || (s.err != nil && !errors.Is(err, s.err)) {
			t.Fatalf("%s: got %v, want %v", s.name, err, s.err)
		}
		if n, m := len(auditRows(t, f, facereview.ActionAssign)), len(auditRows(t, f, facereview.ActionDismiss)); n != s.assigns || m != s.dismiss {
			t.Fatalf("%s: %d assign and %d dismiss audit entries, want %d and %d", s.name, n, m, s.assigns, s.dismiss)
		}
	}
	got, err := f.st.Get(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if got.Status != facereview.StatusAssigned || got.PupilID != a1 || got.DecidedBy != "teacher:lan" || got.DecidedAt != f.clock().UnixMilli() {
		t.Fatalf("face after the decisions: %+v", got)
	}
	if len(got.DismissedFor) != 1 || got.DismissedFor[0] != "thcs-a-1a" {
		t.Fatalf("dismissed for %v, want [thcs-a-1a]", got.DismissedFor)
	}
	checkAuditEntry(t, auditRows(t, f, facereview.ActionAssign)[0], "pupil:"+a1, u.CaptureID, id)
	checkAuditEntry(t, auditRows(t, f, facereview.ActionDismiss)[0], "class:thcs-a-1a", u.CaptureID, id)
}

func wantNew(added bool, err error) error {
	if err == nil && !added {
		return errors.New("dismissal not reported as new")
	}
	return err
}

func wantOld(added bool, err error) error {
	if err == nil && added {
		return errors.New("repeated dismissal reported as new")
	}
	return err
}

func assignNew(a facereview.Assignment, err error) error {
	switch {
	case err != nil:
		return err
	case !a.New || a.Status != facereview.StatusAssigned || len(a.Candidates) != 3 || len(a.Crop) == 0:
		return errors.New("the assignment lacks what the next steps need (new, status, candidates, crop)")
	case !bytes.HasPrefix(a.Crop, []byte{0xFF, 0xD8}):
		return errors.New("the assignment's crop is not the JPEG")
	}
	return nil
}

func assignOld(a facereview.Assignment, err error) error {
	if err == nil && a.New {
		return errors.New("a repeated assignment was reported as new")
	}
	return err
}

func checkAuditEntry(t *testing.T, e audit.Entry, subject, capture string, id int64) {
	t.Helper()
	var d struct {
		FaceID    int64  `json:"face_id"`
		CaptureID string `json:"capture_id"`
		GateID    string `json:"gate_id"`
	}
	if err := json.Unmarshal(e.Detail, &d); err != nil {
		t.Fatal(err)
	}
	if e.Subject != subject || e.Actor != "teacher:lan" || e.School != "thcs-a" || d.FaceID != id || d.CaptureID != capture || d.GateID == "" {
		t.Fatalf("audit entry %+v (detail %s), want subject %s by teacher:lan in thcs-a about face %d", e, e.Detail, subject, id)
	}
}

// TestListByDayAndGates: List returns the school's faces of one local day
// at the gates asked for, newest first, each with its status per class.
func TestListByDayAndGates(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	hcm, err := time.LoadLocation("Asia/Ho_Chi_Minh")
	if err != nil {
		t.Fatal(err)
	}
	day := time.Date(2026, 11, 20, 0, 0, 0, 0, hcm)
	g1, g2, gb := f.gates[0], f.gates[1], f.gates[2]
	early := f.ingest(t, f.capture(t, g1, day.Add(10*time.Minute))) // 00:10 local
	late := f.ingest(t, f.capture(t, g2, day.Add(23*time.Hour)))    // 23:00 local
	f.ingest(t, f.capture(t, g1, day.Add(-time.Minute)))            // the day before
	f.ingest(t, f.capture(t, gb, day.Add(8*time.Hour)))             // another school
	if _, err := f.st.Dismiss(ctx, late, "thcs-a-1a", "teacher:lan"); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		gates []string
		day   string
		want  []int64
	}{
		{"every gate", nil, "2026-11-20", []int64{late, early}},
		{"one gate", []string{g1.ID}, "2026-11-20", []int64{early}},
		{"another school's gate", []string{gb.ID}, "2026-11-20", nil},
		{"a day without faces", nil, "2026-11-21", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := f.st.List(ctx, "thcs-a", tc.gates, tc.day)
			if err != nil {
				t.Fatal(err)
			}
			var ids []int64
			for _, x := range got {
				ids = append(ids, x.ID)
			}
			if len(ids) != len(tc.want) || (len(ids) > 0 && (ids[0] != tc.want[0] || ids[len(ids)-1] != tc.want[len(tc.want)-1])) {
				t.Fatalf("faces %v, want %v", ids, tc.want)
			}
		})
	}
	all, err := f.st.List(ctx, "thcs-a", nil, "2026-11-20")
	if err != nil {
		t.Fatal(err)
	}
	if s := all[0].StatusFor("thcs-a-1a"); s != facereview.StatusDismissed {
		t.Fatalf("dismissed face is %s for its class", s)
	}
	if s := all[0].StatusFor("thcs-a-2b"); s != facereview.StatusOpen {
		t.Fatalf("dismissed face is %s for another class", s)
	}
	if _, err := f.st.List(ctx, "thcs-a", nil, "20/11/2026"); !errors.Is(err, facereview.ErrInvalid) {
		t.Fatalf("a malformed day: %v", err)
	}
}
