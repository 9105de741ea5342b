package profile

import (
	"math"
	"time"

	"github.com/diemdanh/diemdanh/models/conf"
	"github.com/diemdanh/diemdanh/models/match"
)

// RuleText is the rule written in every profile file.
const RuleText = "same_max = feedback_match_max = the rule sets' largest genuine p99, rounded up to 0.05; " +
	"vote_cap = duplicate_max = the rule sets' smallest impostor p01, rounded down to 0.01"

// SameMaxStep and VoteCapStep are the rule's rounding steps.
const (
	SameMaxStep = 0.05
	VoteCapStep = 0.01
)

// Rule derives the same-person limit and the vote cap from the sets marked
// Rule, as faceengine.DistanceProfiles derives the built-in models':
//
//	SameMax          = largest genuine p99 of the rule sets, rounded up to 0.05
//	VoteCap          = smallest impostor p01 of the rule sets, rounded down to 0.01
//	DuplicateMax     = VoteCap
//	FeedbackMatchMax = SameMax
//
// The built-in rule sets are asian/casia-facev5 and asian/kpop; kpop is
// the harder one (its impostor p01 is the lower), so VoteCap is kpop's
// impostor p01 as the built-in constants' comment says. A school's own
// photos are one rule set. Quantiles are order statistics of the sorted
// distances: p = sorted[min(n−1, ⌊p·n⌋)], as `edge eval` reports them.
func Rule(sets []Set) (sameMax, voteCap float64, err error) {
	genP99, impP01, n := 0.0, math.Inf(1), 0
	for _, s := range sets {
		if !s.Rule {
			continue
		}
		n++
		genP99 = math.Max(genP99, s.GenuineP99)
		impP01 = math.Min(impP01, s.ImpostorP01)
	}
	if n == 0 {
		return 0, 0, conf.Fieldf("sets", "no set is a rule set (rule: true): nothing to derive the distances from")
	}
	return RoundUp(genP99, SameMaxStep), RoundDown(impP01, VoteCapStep), nil
}

// RoundUp rounds v up to a multiple of step, to two decimals (a value
// already on the grid, within float error, stays).
func RoundUp(v, step float64) float64 {
	return round2(math.Ceil(v/step-1e-9) * step)
}

// RoundDown rounds v down to a multiple of step, to two decimals.
func RoundDown(v, step float64) float64 {
	return round2(math.Floor(v/step+1e-9) * step)
}

func round2(v float64) float64 { return math.Round(v*100) / 100 }

// Rates gives the FAR and FRR over all pairs at a threshold.
type Rates func(threshold float64) (far, frr float64)

// New builds a profile of model measured on day: the four distances by
// Rule from sets, and FAR and FRR at each of them from rates. The result
// is validated.
func New(model match.ModelID, day time.Time, sets []Set, rates Rates, eer, eerThreshold float64) (File, error) {
	sameMax, voteCap, err := Rule(sets)
	if err != nil {
		return File{}, err
	}
	f := File{Version: Version, Model: model, Measured: day.Format(DateLayout), Rule: RuleText, Sets: sets,
		SameMax: sameMax, DuplicateMax: voteCap, FeedbackMatchMax: sameMax, VoteCap: voteCap,
		EER: eer, EERThreshold: eerThreshold}
	for _, s := range sets {
		f.GenuinePairs += s.GenuinePairs
		f.ImpostorPairs += s.ImpostorPairs
	}
	for _, k := range Fields {
		far, frr := rates(f.Value(k))
		f.At = append(f.At, Point{Field: k, Threshold: f.Value(k), FAR: far, FRR: frr})
	}
	return f, f.Validate()
}
