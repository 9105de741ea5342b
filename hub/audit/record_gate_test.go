package audit

import (
	"context"
	"strings"
	"testing"
	"time"
)

// TestProcessingRecordGateTemplates: the processing record says, in
// Vietnamese and English, that gate captures are kept as templates only
// under the consent's scope, counts the pupils whose consent in force
// allows it (a later consent without the scope, or a withdrawal, takes a
// pupil out) per school, and lists the gate templates stored and the
// unrecognised faces the review store keeps, per school.
func TestProcessingRecordGateTemplates(t *testing.T) {
	db := open(t)
	ctx := context.Background()
	l := New(db, nil, func() time.Time { return time.Date(2026, 3, 2, 8, 0, 0, 0, time.UTC) })
	for _, q := range []string{
		`INSERT INTO schools(id, name) VALUES ('s1', 'A'), ('s2', 'B')`,
		`INSERT INTO pupils(id, school_id, full_name) VALUES ('000000000001', 's1', 'An'), ('000000000002', 's1', 'Bình'),
			('000000000003', 's1', 'Chi'), ('000000000004', 's2', 'Dũng')`,
		`INSERT INTO consents(pupil_id, guardian_name, pupil_consented, scope_face, scope_gate_templates, document_ref, given_at, recorded_by, withdrawn_at) VALUES
			('000000000001', 'Mẹ', 1, 1, 1, 'DK-1', 1, 'x', NULL),
			('000000000002', 'Bố', 1, 1, 1, 'DK-2', 1, 'x', NULL), ('000000000002', 'Bố', 1, 1, 0, 'DK-2b', 2, 'x', NULL),
			('000000000003', 'Mẹ', 1, 1, 1, 'DK-3', 1, 'x', 5),
			('000000000004', 'Mẹ', 1, 1, 1, 'DK-4', 1, 'x', NULL)`,
		`INSERT INTO face_templates(pupil_id, model, descriptor, created_at, source, event_id, expires_at) VALUES
			('000000000001', 'm@1', x'00', 1, 'enrolment', NULL, NULL), ('000000000001', 'm@1', x'00', 2, 'teacher', 'ev-1', 9),
			('000000000004', 'm@1', x'00', 2, 'automatic', 'ev-4', 9)`,
		`INSERT INTO unrecognised_faces(capture_id, school_id, gate_id, direction, kind, captured_at, received_at, frames_described, model, crop) VALUES
			('c-1', 's1', 'g1', 'in', 'unrecognised', 1, 1, 2, 'm@1', x'00'), ('c-2', 's1', 'g1', 'in', 'near_miss', 1, 1, 3, 'm@1', x'00'),
			('c-3', 's2', 'g2', 'in', 'unrecognised', 1, 1, 2, 'm@1', x'00')`,
	} {
		if _, err := db.W.Exec(q); err != nil {
			t.Fatal(err)
		}
	}
	cases := []struct {
		name         string
		scope        Scope
		allowing     int64
		templates    int64
		unrecognised int64
	}{
		{"hub", Scope{All: true}, 2, 2, 3},
		{"school s1", Scope{School: "s1"}, 1, 1, 2},
		{"school s2", Scope{School: "s2"}, 1, 1, 1},
	}
	for _, c := range cases {
		rec, err := l.ProcessingRecord(ctx, 30, c.scope)
		if err != nil {
			t.Fatal(err)
		}
		g := rec.GateTemplates
		if g.PupilsAllowing != c.allowing || !strings.Contains(g.VI, "giữ làm mẫu khuôn mặt") || !strings.Contains(g.EN, "kept as face templates") {
			t.Errorf("%s: %+v, want %d pupils allowing", c.name, g, c.allowing)
		}
		var item *DataItem
		for i := range rec.Items {
			if strings.Contains(rec.Items[i].Category, "gate captures") {
				item = &rec.Items[i]
			}
		}
		if item == nil || item.Count != c.templates {
			t.Errorf("%s: gate templates item %+v, want count %d", c.name, item, c.templates)
		}
		item = nil
		for i := range rec.Items {
			if strings.Contains(rec.Items[i].Category, "did not recognise") {
				item = &rec.Items[i]
			}
		}
		if item == nil || item.Count != c.unrecognised || !strings.Contains(item.Protected, "never sent to the city database") {
			t.Errorf("%s: unrecognised faces item %+v, want count %d", c.name, item, c.unrecognised)
		}
	}
}
