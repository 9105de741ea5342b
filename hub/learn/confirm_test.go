package learn_test

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/diemdanh/diemdanh/hub/attendance"
	"github.com/diemdanh/diemdanh/hub/audit"
	"github.com/diemdanh/diemdanh/hub/facereview"
	"github.com/diemdanh/diemdanh/hub/learn"
	"github.com/diemdanh/diemdanh/models/match"
)

const (
	day      = "2026-11-20"
	clientIP = "203.0.113.7"
)

// consentCase is the consent a pupil has in a confirmation case.
type consentCase int

const (
	noConsent      consentCase = iota
	scopeOff                   // face attendance without gate templates
	scopeOn                    // gate templates allowed
	scopeOnTurned7             // allowed by the guardian while under 7; the pupil is 7 now and has not consented
)

// TestConfirm: "this is <pupil>" assigns the face, marks the pupil present
// for the capture's day (an audited override naming the face) unless the
// gate already saw them, and keeps the capture as a teacher gate template
// only where the consent allows it, the gate sent the descriptor and the
// model is the hub's; otherwise it says why not.
func TestConfirm(t *testing.T) {
	other := match.ModelID{Name: "arcface-r100", Version: "1"}
	cases := []struct {
		name        string
		consent     consentCase
		noDesc      bool
		model       *match.ModelID
		arrival     string // a recognised arrival at this local time; "" none
		absent      bool   // the teacher had marked the pupil absent
		wantPresent string
		wantStatus  string
		wantNo      string // "": a template is added
	}{
		{"scope on", scopeOn, false, nil, "", false, learn.PresentMarked, attendance.Present, ""},
		{"scope off", scopeOff, false, nil, "", false, learn.PresentMarked, attendance.Present, learn.NoTemplateConsent},
		{"no consent", noConsent, false, nil, "", false, learn.PresentMarked, attendance.Present, learn.NoTemplateConsent},
		{"turned 7 without own consent", scopeOnTurned7, false, nil, "", false, learn.PresentMarked, attendance.Present, learn.NoTemplateOwnConsent},
		{"no descriptor from the gate", scopeOn, true, nil, "", false, learn.PresentMarked, attendance.Present, learn.NoTemplateDescriptor},
		{"another model at the gate", scopeOn, false, &other, "", false, learn.PresentMarked, attendance.Present, learn.NoTemplateModel},
		{"already present from the gate", scopeOn, false, nil, "07:05", false, learn.PresentAlready, attendance.Present, ""},
		{"already late from the gate", scopeOff, false, nil, "07:25", false, learn.PresentAlready, attendance.Late, learn.NoTemplateConsent},
		{"marked absent before", scopeOn, false, nil, "", true, learn.PresentMarked, attendance.Present, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := newConfirmFixture(t)
			ctx := context.Background()
			g, pupil := f.gates[0], f.pupils["thcs-a"][1]
			f.setConsent(t, pupil, tc.consent)
			if tc.arrival != "" {
				f.arrive(t, g, pupil, localTime(t, tc.arrival))
			}
			if tc.absent {
				if _, err := f.att.AddOverride(ctx, pupil, day, attendance.Absent, "không thấy ở lớp", "teacher:lan"); err != nil {
					t.Fatal(err)
				}
			}
			model := match.DefaultEmbedder
			if tc.model != nil {
				model = *tc.model
			}
			desc := descriptor(7)
			if tc.noDesc {
				desc = nil
			}
			id, capture := f.face(t, g, desc, model)
			before := f.version(t, "thcs-a")

			res, err := f.c.Confirm(ctx, id, pupil, "teacher:lan", clientIP)
			if err != nil {
				t.Fatal(err)
			}
			want := learn.Confirmation{FaceID: id, CaptureID: capture, PupilID: pupil, Day: day, New: true,
				Present: tc.wantPresent, Status: tc.wantStatus, TemplateID: res.TemplateID, NoTemplate: tc.wantNo}
			if res != want || (tc.wantNo == "") != (res.TemplateID != 0) {
				t.Fatalf("confirmation %+v\nwant %+v (a template: %v)", res, want, tc.wantNo == "")
			}
			f.checkDay(t, pupil, tc.wantStatus)
			marked := tc.wantPresent == learn.PresentMarked
			f.checkMark(t, pupil, id, capture, marked)
			f.checkTemplate(t, pupil, capture, desc, tc.wantNo == "", before)
			if got, _ := f.review.Get(ctx, id); got.Status != facereview.StatusAssigned || got.PupilID != pupil {
				t.Fatalf("face after the confirmation: %s to %q", got.Status, got.PupilID)
			}
		})
	}
}

// setConsent records the consent of consentCase c for pupil.
func (f *confirmFixture) setConsent(t *testing.T, pupil string, c consentCase) {
	t.Helper()
	switch c {
	case scopeOff:
		f.grant(t, pupil, false, true)
	case scopeOn:
		f.grant(t, pupil, true, true)
	case scopeOnTurned7:
		f.exec(t, `UPDATE pupils SET date_of_birth = '2021-06-01' WHERE id = ?`, pupil)
		f.grant(t, pupil, true, false)
		f.exec(t, `UPDATE pupils SET date_of_birth = '2019-11-01' WHERE id = ?`, pupil)
	}
}

func localTime(t *testing.T, hhmm string) time.Time {
	t.Helper()
	loc, err := time.LoadLocation("Asia/Ho_Chi_Minh")
	if err != nil {
		t.Fatal(err)
	}
	at, err := time.ParseInLocation("2006-01-02 15:04", day+" "+hhmm, loc)
	if err != nil {
		t.Fatal(err)
	}
	return at
}

func (f *confirmFixture) version(t *testing.T, school string) int64 {
	t.Helper()
	v, err := f.tpl.Version(context.Background(), school)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// checkDay: the stored day of pupil has status.
func (f *confirmFixture) checkDay(t *testing.T, pupil, status string) {
	t.Helper()
	var got string
	if err := f.db.R.QueryRow(`SELECT status FROM daily_attendance WHERE pupil_id = ? AND day = ?`, pupil, day).Scan(&got); err != nil || got != status {
		t.Fatalf("daily attendance %q (%v), want %q", got, err, status)
	}
}

// checkMark: exactly one override naming face id and one audit entry of
// it (with the face, capture, day and client IP) when marked; none
// otherwise.
func (f *confirmFixture) checkMark(t *testing.T, pupil string, id int64, capture string, marked bool) {
	t.Helper()
	want := 0
	if marked {
		want = 1
	}
	if n := f.count(t, `SELECT count(*) FROM attendance_overrides WHERE pupil_id = ? AND day = ? AND status = 'present'
		AND actor = 'teacher:lan' AND reason = ?`, pupil, day, "Ảnh ở cổng, khuôn mặt #"+strconv.FormatInt(id, 10)+" / gate capture, face #"+strconv.FormatInt(id, 10)); n != want {
		t.Fatalf("%d present overrides naming face %d, want %d", n, id, want)
	}
	es, err := f.audit.List(context.Background(), audit.Filter{Scope: audit.Scope{All: true}, Action: learn.ActionOverride, Subject: "pupil:" + pupil})
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range es {
		var d struct {
			FaceID    int64  `json:"face_id"`
			CaptureID string `json:"capture_id"`
			Day       string `json:"day"`
		}
		if err := json.Unmarshal(e.Detail, &d); err != nil {
			t.Fatal(err)
		}
		if d.FaceID == id && d.CaptureID == capture && d.Day == day && e.IP == clientIP && e.Actor == "teacher:lan" && e.School == "thcs-a" {
			n++
		}
	}
	if n != want {
		t.Fatalf("%d audited marks with face %d (of %d entries), want %d", n, id, len(es), want)
	}
}

// checkTemplate: when added, one teacher template of pupil from capture,
// served in the school's active descriptors, the gallery version bumped;
// otherwise none and the version unchanged.
func (f *confirmFixture) checkTemplate(t *testing.T, pupil, capture string, desc match.Descriptor, added bool, before int64) {
	t.Helper()
	want := 0
	if added {
		want = 1
	}
	if n := f.count(t, `SELECT count(*) FROM face_templates WHERE pupil_id = ? AND source = 'teacher' AND event_id = ?`, pupil, capture); n != want {
		t.Fatalf("%d teacher templates from capture %s, want %d", n, capture, want)
	}
	if n := f.count(t, `SELECT count(*) FROM face_templates WHERE source != 'enrolment'`); n != want {
		t.Fatalf("%d gate templates in all, want %d", n, want)
	}
	if after := f.version(t, "thcs-a"); (after > before) != added {
		t.Fatalf("gallery version %d → %d with a template added %v", before, after, added)
	}
	_, byPupil, err := f.tpl.ActiveDescriptors(context.Background(), "thcs-a")
	if err != nil {
		t.Fatal(err)
	}
	served := slices.ContainsFunc(byPupil[pupil], func(d match.Descriptor) bool { return slices.Equal(d, desc) })
	if served != added {
		t.Fatalf("the capture's descriptor served to the gates: %v, want %v", served, added)
	}
}

// TestConfirmIdempotent: confirming again, by anyone, writes nothing new;
// a confirmation interrupted after the assignment is completed by the
// next one.
func TestConfirmIdempotent(t *testing.T) {
	for _, tc := range []struct {
		name        string
		interrupted bool // the face was assigned but nothing else was done
	}{{"repeated", false}, {"interrupted after the assignment", true}} {
		t.Run(tc.name, func(t *testing.T) {
			f := newConfirmFixture(t)
			ctx := context.Background()
			pupil := f.pupils["thcs-a"][2]
			f.grant(t, pupil, true, true)
			id, capture := f.face(t, f.gates[1], descriptor(9), match.DefaultEmbedder)
			before := f.version(t, "thcs-a")
			if tc.interrupted {
				if _, err := f.review.Assign(ctx, id, pupil, "teacher:lan"); err != nil {
					t.Fatal(err)
				}
			}
			first, err := f.c.Confirm(ctx, id, pupil, "teacher:lan", clientIP)
			if err != nil || first.Present != learn.PresentMarked || first.TemplateID == 0 || first.New == tc.interrupted {
				t.Fatalf("first confirmation %+v, %v", first, err)
			}
			v1 := f.version(t, "thcs-a")
			for _, actor := range []string{"teacher:lan", "admin:root"} {
				again, err := f.c.Confirm(ctx, id, pupil, actor, clientIP)
				if err != nil {
					t.Fatal(err)
				}
				if again.New || again.Present != learn.PresentAlready || again.TemplateID != first.TemplateID || again.Status != attendance.Present {
					t.Fatalf("confirmation again by %s: %+v (first %+v)", actor, again, first)
				}
			}
			if v := f.version(t, "thcs-a"); v != v1 || v1 <= before {
				t.Fatalf("gallery versions %d → %d → %d: want one bump", before, v1, v)
			}
			f.checkMark(t, pupil, id, capture, true)
			f.checkTemplate(t, pupil, capture, descriptor(9), true, before)
			if n := f.count(t, `SELECT count(*) FROM audit_log WHERE action = ?`, facereview.ActionAssign); n != 1 {
				t.Fatalf("%d assignment audit entries, want 1", n)
			}
		})
	}
}

// TestConfirmRefused: a pupil outside the face's school, an unknown face
// or a face already named as another pupil is refused, and nothing is
// marked or kept.
func TestConfirmRefused(t *testing.T) {
	f := newConfirmFixture(t)
	ctx := context.Background()
	a0, a1, b0 := f.pupils["thcs-a"][0], f.pupils["thcs-a"][1], f.pupils["thcs-b"][0]
	for _, p := range []string{a0, a1, b0} {
		f.grant(t, p, true, true)
	}
	id, _ := f.face(t, f.gates[0], descriptor(3), match.DefaultEmbedder)
	if _, err := f.c.Confirm(ctx, id, a0, "teacher:lan", clientIP); err != nil {
		t.Fatal(err)
	}
	overrides, templates := f.count(t, `SELECT count(*) FROM attendance_overrides`), f.count(t, `SELECT count(*) FROM face_templates`)
	for _, tc := range []struct {
		name  string
		id    int64
		pupil string
		want  error
	}{
		{"pupil of another school", id, b0, facereview.ErrInvalid},
		{"unknown pupil", id, "999999999999", facereview.ErrInvalid},
		{"unknown face", id + 100, a1, facereview.ErrNotFound},
		{"named as another pupil", id, a1, facereview.ErrAssigned},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res, err := f.c.Confirm(ctx, tc.id, tc.pupil, "teacher:lan", clientIP)
			if !errors.Is(err, tc.want) || res != (learn.Confirmation{}) {
				t.Fatalf("got %+v, %v; want %v", res, err, tc.want)
			}
			if o, tp := f.count(t, `SELECT count(*) FROM attendance_overrides`), f.count(t, `SELECT count(*) FROM face_templates`); o != overrides || tp != templates {
				t.Fatalf("overrides %d → %d, templates %d → %d", overrides, o, templates, tp)
			}
		})
	}
}

// TestNotMine: "not my pupil" hides the face from that class only, once,
// audited; a class of another school is refused; the face can still be
// confirmed by a class it was not hidden from.
func TestNotMine(t *testing.T) {
	f := newConfirmFixture(t)
	ctx := context.Background()
	id, _ := f.face(t, f.gates[0], descriptor(4), match.DefaultEmbedder)
	steps := []struct {
		name   string
		class  string
		new    bool
		err    error
		hidden []string // classes the face is hidden from after the step
	}{
		{"class 1A", "thcs-a-1a", true, nil, []string{"thcs-a-1a"}},
		{"class 1A again", "thcs-a-1a", false, nil, []string{"thcs-a-1a"}},
		{"a class of another school", "thcs-b-1a", false, facereview.ErrInvalid, []string{"thcs-a-1a"}},
		{"unknown class", "thcs-a-9z", false, facereview.ErrInvalid, []string{"thcs-a-1a"}},
	}
	for _, s := range steps {
		added, err := f.c.NotMine(ctx, id, s.class, "teacher:lan")
		if added != s.new || (s.err == nil) != (err == nil) || (s.err != nil && !errors.Is(err, s.err)) {
			t.Fatalf("%s: got %v, %v; want %v, %v", s.name, added, err, s.new, s.err)
		}
		got, err := f.review.Get(ctx, id)
		if err != nil || !slices.Equal(got.DismissedFor, s.hidden) {
			t.Fatalf("%s: hidden from %v (%v), want %v", s.name, got.DismissedFor, err, s.hidden)
		}
		if got.StatusFor("thcs-a-1a") != facereview.StatusDismissed || got.StatusFor("thcs-a-2b") != facereview.StatusOpen {
			t.Fatalf("%s: status %s for 1A and %s for 2B", s.name, got.StatusFor("thcs-a-1a"), got.StatusFor("thcs-a-2b"))
		}
	}
	if n := f.count(t, `SELECT count(*) FROM audit_log WHERE action = ? AND subject = 'class:thcs-a-1a'`, facereview.ActionDismiss); n != 1 {
		t.Fatalf("%d dismissal audit entries, want 1", n)
	}
	if res, err := f.c.Confirm(ctx, id, f.pupils["thcs-a"][3], "teacher:hoa", clientIP); err != nil || res.Present != learn.PresentMarked {
		t.Fatalf("confirmation after another class's dismissal: %+v, %v", res, err)
	}
}
