package bench

// The simulator's per-passage fields the suite report reads, in one place.

// passageSet is the source set a passage's photo was walked from ("" in a
// single video's truth).
func passageSet(p Passage) string { return p.Set }

// recognisableFrame is the first frame in which p's face is recognisable
// (sim.Passage.FirstRecognisable); ok is false when no frame is.
func recognisableFrame(p Passage) (f int64, ok bool) {
	return p.FirstRecognisable, p.FirstRecognisable >= 0
}

// lastInView is the last frame in which any of p's face is in view; a
// truth without the field gives the passage's last frame.
func lastInView(p Passage) int64 {
	if p.LastInView > 0 {
		return p.LastInView
	}
	return p.LastFrame
}
