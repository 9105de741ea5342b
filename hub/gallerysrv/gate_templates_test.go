package gallerysrv

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/diemdanh/diemdanh/hub/audit"
	"github.com/diemdanh/diemdanh/hub/consent"
	"github.com/diemdanh/diemdanh/hub/facetemplates"
	"github.com/diemdanh/diemdanh/models/match"
)

// TestGateTemplatesServedAndCalibrated: a teacher-confirmed gate template
// (real dlib descriptors: another photo of the same idol) joins its
// pupil's descriptors in the gallery gates fetch, under a new version,
// and the operating point is calibrated over it: the pupils stay the
// identities (a pupil's templates are genuine pairs, never impostors), the
// templates and impostor scores grow, and the false-reject rate becomes
// measurable from those genuine pairs.
func TestGateTemplatesServedAndCalibrated(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, nil, time.Hour)
	people := idolFaces(t)
	const n = 8
	f.enrolIdols(t, people, 0, n, 1)
	doc, _ := f.gateB(t)
	before := f.report(t).Current
	if before.Pupils != n || before.Templates != n || before.ExpectedFRR != -1 {
		t.Fatalf("enrolment only: %+v", before)
	}
	f.tpl.Subscribe(func(school string, _ int64) { f.srv.Changed(ctx, school) })
	reg := consent.New(f.db, f.tpl, audit.New(f.db, nil, time.Now), nil, time.Now)
	yes := true
	for i := 0; i < n; i++ {
		if len(people[i]) < 2 {
			t.Fatalf("idol %d has %d faces", i, len(people[i]))
		}
		if _, err := reg.Record(ctx, "admin:root", consent.Grant{PupilID: pupilID(i), GuardianName: "Mẹ", PupilConsented: true,
			ScopeFace: true, ScopeGateTemplates: &yes, DocumentRef: fmt.Sprintf("DK-%d", i)}); err != nil {
			t.Fatal(err)
		}
		if _, err := f.tpl.AddGateTemplate(ctx, pupilID(i), people[i][1], match.Quality{}, nil, facetemplates.SourceTeacher,
			fmt.Sprintf("ev-%d", i), "teacher:lan"); err != nil {
			t.Fatal(err)
		}
	}
	doc2, g2 := f.gateB(t)
	if doc2.Version <= doc.Version || g2.People() != n || g2.Len() != 2*n {
		t.Fatalf("after gate templates: v%d (was v%d), %d people, %d descriptors", doc2.Version, doc.Version, g2.People(), g2.Len())
	}
	for _, p := range doc2.People {
		var i int
		if _, err := fmt.Sscanf(p.StudentID, "0799%08d", &i); err != nil || len(p.Descriptors) != 2 {
			t.Fatalf("%s: %d descriptors (%v)", p.StudentID, len(p.Descriptors), err)
		}
		d, err := match.ParseDescriptorBase64(p.Descriptors[1])
		if err != nil || match.Distance(d, people[i][1]) > 1e-6 {
			t.Fatalf("%s: the second descriptor is not its gate template (%v)", p.StudentID, err)
		}
	}
	after := f.report(t).Current
	checkInvariants(t, after)
	if after.GalleryVersion != doc2.Version || after.Pupils != n || after.Identities != n || after.Templates != 2*n {
		t.Fatalf("point with gate templates %+v", after)
	}
	gateSide, err := match.CalibrateThreshold(g2, DefaultTargetFAR)
	if err != nil || gateSide.Threshold != doc2.Threshold || gateSide.ExpectedFRR != after.ExpectedFRR {
		t.Fatalf("calibrating the served gallery gives %+v (%v), doc has %g", gateSide, err, doc2.Threshold)
	}
}
