package learn_test

import (
	"context"
	"math"
	"testing"

	"github.com/diemdanh/diemdanh/hub/attendance"
	"github.com/diemdanh/diemdanh/hub/learn"
	"github.com/diemdanh/diemdanh/models/match"
)

// mix is the unit vector along a + w·b.
func mix(a, b match.Descriptor, w float64) match.Descriptor {
	d := make(match.Descriptor, len(a))
	var n float64
	for i := range a {
		v := float64(a[i]) + w*float64(b[i])
		d[i], n = float32(v), n+v*v
	}
	for i := range d {
		d[i] /= float32(math.Sqrt(n))
	}
	return d
}

// TestConfirmGuard: with the guard, a confirmed capture becomes a gate
// template only when it is within the model's same-person limit of the
// pupil's own templates and nearer them than any other pupil's by the
// margin; a refused one still marks the pupil present and says why.
func TestConfirmGuard(t *testing.T) {
	own, other := descriptor(101), descriptor(202)
	cases := []struct {
		name    string
		capture match.Descriptor
		sameMax float64
		wantNo  string
	}{
		{"near the pupil's own template", mix(own, descriptor(303), 0.5), 1.2, ""},
		{"nearer another pupil's template", mix(other, own, 0.6), 1.2, learn.NoTemplateNearOther},
		{"as near the other as the own, within the margin", mix(own, other, 0.97), 1.2, learn.NoTemplateNearOther},
		{"beyond the same-person limit", mix(descriptor(404), own, 0.2), 1.2, learn.NoTemplateUnlike},
		{"as far, but the model has no limit", mix(descriptor(404), own, 0.2), 0, ""},
		{"the pupil's first template", mix(descriptor(404), other, 0.1), 1.2, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := newConfirmFixture(t)
			ctx := context.Background()
			pupil, neighbour := f.pupils["thcs-a"][1], f.pupils["thcs-a"][2]
			f.setConsent(t, pupil, scopeOn)
			for p, d := range map[string]match.Descriptor{pupil: own, neighbour: other} {
				if p == pupil && tc.name == "the pupil's first template" {
					continue
				}
				if _, err := f.tpl.Add(ctx, p, d, match.DefaultEmbedder, match.Quality{}, nil); err != nil {
					t.Fatal(err)
				}
			}
			g := &learn.Guard{MinMargin: learn.DefaultGuardMargin, SameMax: func(m match.ModelID) (float64, bool) {
				return tc.sameMax, tc.sameMax > 0 && m == match.DefaultEmbedder
			}}
			c, err := learn.NewConfirmer(learn.ConfirmDeps{Review: f.review, Attendance: f.att, Templates: f.tpl, Audit: f.audit, Guard: g})
			if err != nil {
				t.Fatal(err)
			}
			dOwn, dOther := match.Distance(tc.capture, own), match.Distance(tc.capture, other)
			id, capture := f.face(t, f.gates[0], tc.capture, match.DefaultEmbedder)
			before := f.version(t, "thcs-a")
			res, err := c.Confirm(ctx, id, pupil, "teacher:lan", clientIP)
			if err != nil {
				t.Fatal(err)
			}
			if res.NoTemplate != tc.wantNo || (tc.wantNo == "") != (res.TemplateID != 0) {
				t.Fatalf("own %.3f, other %.3f: confirmation %+v, want no_template %q", dOwn, dOther, res, tc.wantNo)
			}
			if res.Present != learn.PresentMarked {
				t.Fatalf("present %q: the guard must not stop the mark", res.Present)
			}
			f.checkDay(t, pupil, attendance.Present)
			f.checkTemplate(t, pupil, capture, tc.capture, tc.wantNo == "", before)
		})
	}
}
