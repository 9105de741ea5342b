package pipeline

import (
	"math"
	"sort"

	"github.com/diemdanh/diemdanh/models/faceengine"
	"github.com/diemdanh/diemdanh/models/match"
)

// VoteConfig is the decision rule of a track.
type VoteConfig struct {
	// Threshold is the largest real L2 distance a descriptor may have to an
	// enrolled identity to vote for it. 0 (the default) fixes none: the
	// gallery's hub-calibrated point is used, else the gate's own
	// calibration (calibrate_far), capped by the embedder's profile
	// (faceengine.DistanceProfile.VoteCap), which is also the fallback for a
	// gallery too small to calibrate. A value above 0 replaces the
	// profile's cap: the gate's calibration may only tighten it, and it is
	// the fixed threshold when nothing is calibrated.
	Threshold float64 `yaml:"threshold"`
	// MinMargin is how much nearer the voted identity must be than the
	// second-best identity. The hub's calibrated point may replace it.
	MinMargin float64 `yaml:"min_margin"`
	// K is how many of the track's best-quality descriptors are considered.
	K int `yaml:"k"`
	// M is how many of those must vote for the same identity, with no
	// accepted vote for anyone else.
	M int `yaml:"m"`
	// Profiles gives the embedder's measured profile by model ID: the
	// built-in ones, and a custom model's read from engine.custom.profile
	// (faceengine.EngineConfig.Profiles, set by the gate's config). The
	// zero value knows the built-in models only.
	Profiles faceengine.Profiles `yaml:"-"`
}

// DefaultVoteConfig is strict: see models/README.md, Recognition quality, for
// the measurements behind it. The threshold comes from calibration (see
// VoteConfig.Threshold), never from a constant of one embedder.
func DefaultVoteConfig() VoteConfig { return VoteConfig{MinMargin: 0.06, K: 5, M: 2} }

// Cap is the loosest threshold the gate accepts for descriptors of model:
// the configured Threshold when set, else the embedder profile's VoteCap;
// 0 when neither exists (an unmeasured embedder without vote.threshold:
// only a calibrated threshold can then accept anyone).
func (c VoteConfig) Cap(model match.ModelID) float64 {
	if c.Threshold > 0 {
		return c.Threshold
	}
	if p, ok := c.Profiles.Of(model); ok {
		return p.VoteCap
	}
	return 0
}

// InForce is the threshold used for a gallery of model, given the hub's
// calibrated threshold from the gallery file (0: none or not used) and
// the gate's own calibrated one (0: none). The hub's point wins (as an
// explicit vote.threshold never overrode it) but never exceeds the
// profile's VoteCap; the gate's is capped by Cap; with neither, Cap.
func (c VoteConfig) InForce(model match.ModelID, hub, calibrated float64) float64 {
	if hub > 0 {
		if p, ok := c.Profiles.Of(model); ok && hub > p.VoteCap {
			return p.VoteCap
		}
		return hub
	}
	limit := c.Cap(model)
	if calibrated > 0 && (limit <= 0 || calibrated < limit) {
		return calibrated
	}
	return limit
}

// Vote is one descriptor of a track matched against the gallery.
type Vote struct {
	Match      match.Result
	Descriptor match.Descriptor // for the mean rule (DecideMean)
	Quality    match.Quality
	Score      float64 // Quality.Score(), to rank crops
	Frame      int64
	JPEG       []byte // small face crop, for the event
}

// Accepted reports whether the vote is under the threshold with the margin.
func (v Vote) Accepted(c VoteConfig) bool {
	return v.Match.PersonID != "" && v.Match.Distance <= c.Threshold && v.Match.Margin() >= c.MinMargin
}

// bestByQuality returns a copy of the k best-quality votes (all when
// k <= 0), best first; between equal scores the later frame first.
func bestByQuality(votes []Vote, k int) []Vote {
	best := append([]Vote(nil), votes...)
	sort.SliceStable(best, func(i, j int) bool {
		if best[i].Score != best[j].Score {
			return best[i].Score > best[j].Score
		}
		return best[i].Frame > best[j].Frame
	})
	if k > 0 && len(best) > k {
		best = best[:k]
	}
	return best
}

// Decision is the outcome of a decision rule on a track.
type Decision struct {
	OK        bool
	StudentID string
	// Distance: votes, the mean distance of the winning votes; mean, the
	// mean descriptor's distance to the pupil.
	Distance float64
	// Margin: votes, the smallest margin among the winning votes; mean,
	// the mean descriptor's margin to the next pupil.
	Margin float64
	// FramesUsed: votes, the winning votes; mean, the descriptors averaged.
	FramesUsed int
	// Best: the best-quality vote for the pupil (its crop and quality go
	// into the event).
	Best   Vote
	Reason string // why not decided, for logs and tests
}

// Decide applies the M-of-K rule: among the K best-quality votes, at least
// M must be accepted for the same identity and none for another.
func Decide(votes []Vote, c VoteConfig) Decision {
	if len(votes) == 0 {
		return Decision{Reason: "no votes"}
	}
	best := bestByQuality(votes, c.K)
	counts := map[string]int{}
	for _, v := range best {
		if v.Accepted(c) {
			counts[v.Match.PersonID]++
		}
	}
	if len(counts) == 0 {
		return Decision{Reason: "no accepted vote"}
	}
	if len(counts) > 1 {
		return Decision{Reason: "conflicting identities"}
	}
	var who string
	var n int
	for k, v := range counts {
		who, n = k, v
	}
	if n < c.M {
		return Decision{Reason: "too few agreeing votes"}
	}
	d := Decision{OK: true, StudentID: who, FramesUsed: n, Margin: math.Inf(1)}
	bestScore := math.Inf(-1)
	for _, v := range best {
		if !v.Accepted(c) {
			continue
		}
		d.Distance += v.Match.Distance / float64(n)
		d.Margin = math.Min(d.Margin, v.Match.Margin())
		if v.Score > bestScore {
			bestScore, d.Best = v.Score, v
		}
	}
	return d
}
