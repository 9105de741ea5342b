package pipeline

import (
	"math"

	"github.com/diemdanh/diemdanh/models/match"
)

// Decision rules (Config.Decision).
const (
	// DecisionVotes decides a track by M-of-K votes of its per-frame
	// matches (Decide).
	DecisionVotes = "votes"
	// DecisionMean decides a track by the match of the quality-weighted
	// mean of its best descriptors (DecideMean).
	DecisionMean = "mean"
)

// decideLocked applies the configured decision rule to a track's votes
// (p.mu held: the votes belong to a track). The mean rule matches one
// more descriptor against the gallery, with the candidate filter in force.
func (p *Pipeline) decideLocked(votes []Vote, vc VoteConfig) Decision {
	if p.cfg.Decision != DecisionMean {
		return Decide(votes, vc)
	}
	_, gal := p.gal.Current()
	if gal == nil || gal.Len() == 0 {
		return Decision{Reason: "empty gallery"}
	}
	return DecideMean(votes, gal, p.candidateFilter(gal), vc)
}

// DecideMean applies the mean rule. Of the track's votes whose descriptor
// fits the gallery, the K best by quality are used; the mean of their
// descriptors (MeanDescriptor) is matched against the gallery (f restricts
// it to the candidates). With fewer than M such votes nothing is decided
// (the default M of 2 never decides from one frame). A pupil is accepted
// when
//
//   - the mean's real L2 distance to the pupil is within c.Threshold and
//     its margin to the next pupil is at least c.MinMargin;
//   - at least M of the frames used name that pupil as their own nearest
//     identity (same-person corroboration: one lucky frame cannot carry
//     a visitor's mean);
//   - no frame used is accepted on its own (Vote.Accepted) for another
//     pupil (conflicting identities).
//
// The decision carries the mean's distance and margin, the number of
// descriptors averaged, and the best-quality frame naming the pupil.
func DecideMean(votes []Vote, gal *match.Gallery, f match.Filter, c VoteConfig) Decision {
	var usable []Vote
	for _, v := range votes {
		if gal != nil && len(v.Descriptor) == gal.Dim() && len(v.Descriptor) > 0 {
			usable = append(usable, v)
		}
	}
	if len(usable) == 0 {
		return Decision{Reason: "no votes"}
	}
	best := bestByQuality(usable, c.K)
	if len(best) < c.M {
		return Decision{Reason: "too few describes"}
	}
	mean := MeanDescriptor(best)
	if mean == nil {
		return Decision{Reason: "descriptors cancel out"}
	}
	m := gal.MatchFiltered(mean, f)
	switch {
	case m.PersonID == "":
		return Decision{Reason: "no candidate"}
	case !(m.Distance <= c.Threshold):
		return Decision{Reason: "mean beyond threshold"}
	case !(m.Margin() >= c.MinMargin):
		return Decision{Reason: "mean without margin"}
	}
	d := Decision{OK: true, StudentID: m.PersonID, Distance: m.Distance, Margin: m.Margin(), FramesUsed: len(best)}
	naming := 0
	for _, v := range best {
		switch {
		case v.Accepted(c) && v.Match.PersonID != m.PersonID:
			return Decision{Reason: "conflicting identities"}
		case v.Match.PersonID == m.PersonID:
			if naming == 0 {
				d.Best = v // best is sorted by quality
			}
			naming++
		}
	}
	if naming < c.M {
		return Decision{Reason: "too few frames name the pupil"}
	}
	return d
}

// MeanDescriptor is the quality-weighted mean of the votes' descriptors
// in the embedder's own scale: each descriptor is L2-normalised, weighted
// by its vote's Score (equal weights when no score is positive), the sum
// normalised to length 1 and scaled to the weighted mean length of the
// descriptors. For embedders whose descriptors have length 1 (SFace,
// fused) that is the re-normalised mean; for dlib it keeps distances in
// dlib's units. Nil when no descriptor has a length or they cancel out.
func MeanDescriptor(votes []Vote) match.Descriptor {
	if len(votes) == 0 {
		return nil
	}
	equal := true
	for _, v := range votes {
		equal = equal && !(v.Score > 0)
	}
	sum := make([]float64, len(votes[0].Descriptor))
	var wsum, lsum float64
	for _, v := range votes {
		n := norm(v.Descriptor)
		if n == 0 || len(v.Descriptor) != len(sum) {
			continue
		}
		w := 1.0
		if !equal {
			w = math.Max(v.Score, 0)
		}
		for i, x := range v.Descriptor {
			sum[i] += w * float64(x) / n
		}
		wsum += w
		lsum += w * n
	}
	s := 0.0
	for _, x := range sum {
		s += x * x
	}
	if wsum == 0 || s == 0 {
		return nil
	}
	scale := lsum / wsum / math.Sqrt(s)
	out := make(match.Descriptor, len(sum))
	for i, x := range sum {
		out[i] = float32(x * scale)
	}
	return out
}

func norm(d match.Descriptor) float64 {
	var s float64
	for _, x := range d {
		s += float64(x) * float64(x)
	}
	return math.Sqrt(s)
}
