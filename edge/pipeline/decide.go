package pipeline

// Decision rules (Config.Decision).
const (
	// DecisionVotes decides a track by M-of-K votes of its per-frame
	// matches (Decide).
	DecisionVotes = "votes"
)

// decideLocked applies the configured decision rule to a track's votes
// (p.mu held: the votes belong to a track).
func (p *Pipeline) decideLocked(votes []Vote, vc VoteConfig) Decision {
	return Decide(votes, vc)
}
