package learn

import (
	"context"
	"fmt"
	"math"

	"github.com/diemdanh/diemdanh/models/match"
)

// Why a confirmation added no gate template, when the guard refused it
// (Confirmation.NoTemplate).
const (
	// NoTemplateUnlike: the capture is farther than the model's
	// same-person limit from every template of the pupil.
	NoTemplateUnlike = "unlike_pupil"
	// NoTemplateNearOther: the capture is nearer another pupil's template
	// than the pupil's own (within Guard.MinMargin): as a template it would
	// draw that pupil's faces to this one.
	NoTemplateNearOther = "near_other"
)

// Guard decides whether a teacher-confirmed capture may become a gate
// template. The teacher's word decides attendance; the gallery only learns
// captures that sit with the pupil's own templates and apart from every
// other pupil's, the same reasoning as enrolment's consistency check and
// duplicate guard. A pupil with no template of the model yet gets the
// capture as their first.
type Guard struct {
	// SameMax gives a model's same-person limit (its distance profile's
	// SameMax); without one for the model the first check is skipped.
	SameMax func(match.ModelID) (float64, bool)
	// MinMargin is how much nearer the pupil's own nearest template must
	// be than any other pupil's (real L2).
	MinMargin float64
}

// DefaultGuardMargin is Guard.MinMargin by default: half the gate's own
// decision margin, so a confirmed capture the gate nearly decided for
// this pupil still teaches it.
const DefaultGuardMargin = 0.05

// served is the part of the template store the guard reads: the school's
// active templates as the gates hold them.
type served interface {
	ActiveDescriptors(ctx context.Context, schoolID string) (match.ModelID, map[string][]match.Descriptor, error)
}

// check returns "" when desc may become pupil's gate template in school,
// else the NoTemplate reason.
func (g *Guard) check(ctx context.Context, s served, school, pupil string, desc match.Descriptor) (string, error) {
	model, gallery, err := s.ActiveDescriptors(ctx, school)
	if err != nil {
		return "", fmt.Errorf("learn: guard: %w", err)
	}
	own, other := math.Inf(1), math.Inf(1)
	for p, ds := range gallery {
		for _, d := range ds {
			dist := match.Distance(desc, d)
			if p == pupil {
				own = math.Min(own, dist)
			} else {
				other = math.Min(other, dist)
			}
		}
	}
	if math.IsInf(own, 1) {
		// The pupil has no template of this model (not enrolled yet, or
		// flagged for re-enrolment after a model change): nothing to
		// compare with, and the teacher's capture is their first.
		return "", nil
	}
	if limit, ok := g.sameMax(model); ok && own > limit {
		return NoTemplateUnlike, nil
	}
	if other < own+g.MinMargin {
		return NoTemplateNearOther, nil
	}
	return "", nil
}

func (g *Guard) sameMax(m match.ModelID) (float64, bool) {
	if g.SameMax == nil {
		return 0, false
	}
	return g.SameMax(m)
}
