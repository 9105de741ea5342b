package enrol

import (
	"context"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/diemdanh/diemdanh/hub/consent"
	"github.com/diemdanh/diemdanh/hub/facetemplates"
	"github.com/diemdanh/diemdanh/models/match"
)

// TestNotThisPupilRemovesGateTemplates: "not this pupil" on an event
// deletes the gate template added from it, in the mark's transaction,
// bumps the gallery and pauses automatic templates for the pupil.
func TestNotThisPupilRemovesGateTemplates(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	yes := true
	if _, err := f.reg.Record(ctx, "admin:test", consent.Grant{PupilID: pupilA, GuardianName: "Nguyễn Mẹ", PupilConsented: true,
		ScopeFace: true, ScopeGateTemplates: &yes, DocumentRef: "DK-001b"}); err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(1, 9))
	desc := make(match.Descriptor, match.DescriptorLen)
	for i := range desc {
		desc[i] = float32(r.NormFloat64() * 0.1)
	}
	if _, err := f.db.W.Exec(`INSERT INTO events(event_id, school_id, gate_id, direction, student_id, captured_at, received_at, distance, margin, frames_used, model)
		VALUES ('ev-g', 's1', 'g1', 'in', ?, 1, 1, 0.3, 0.1, 3, 'sface@1')`, pupilA); err != nil {
		t.Fatal(err)
	}
	if _, err := f.tpl.AddGateTemplate(ctx, pupilA, desc, match.Quality{}, nil, facetemplates.SourceAutomatic, "ev-g", "system"); err != nil {
		t.Fatal(err)
	}
	v, _ := f.tpl.Version(ctx, "s1")
	if _, err := f.svc.MarkNotThisPupil(ctx, "teacher:lan", "ev-g", "em khác"); err != nil {
		t.Fatal(err)
	}
	if n := f.count(t, `SELECT count(*) FROM face_templates WHERE event_id = 'ev-g'`); n != 0 {
		t.Fatal("the gate template from the event is still stored")
	}
	if v2, _ := f.tpl.Version(ctx, "s1"); v2 <= v {
		t.Fatalf("gallery version %d -> %d", v, v2)
	}
	if ok, err := f.tpl.AutomaticAllowed(ctx, pupilA, time.Now()); err != nil || ok {
		t.Fatalf("automatic templates allowed after the mark: %v %v", ok, err)
	}
}
