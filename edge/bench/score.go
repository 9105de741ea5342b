package bench

import "time"

// latencies measures, for each enrolled pupil's passage announced and
// acknowledged, the time from the first frame to the PUBACK, its wait
// and processing parts, and the same for the clean passages.
func (res *Result) latencies(truth *Truth, decs []decision, acks map[string]time.Time) {
	var lat, proc, wait, clean []float64
	for _, p := range truth.Passages {
		if p.Visitor() {
			continue
		}
		for _, d := range decs {
			if d.enqueued && d.student == p.StudentID && d.frame >= p.FirstFrame && d.frame <= p.LastFrame+int64(truth.FPS) {
				if at, ok := acks[d.eventID]; ok {
					pr := float64(at.Sub(d.at).Microseconds()) / 1000
					lat = append(lat, float64(d.frame-p.FirstFrame)*1000/truth.FPS+pr)
					proc = append(proc, pr)
					wait = append(wait, float64(d.frame-p.FirstFrame)*1000/truth.FPS)
					if !p.Blur && !p.Occluded {
						clean = append(clean, lat[len(lat)-1])
					}
				}
				break
			}
		}
	}
	res.LatencyP50, res.LatencyP95, res.LatencyMax = pct(lat, 50), pct(lat, 95), pct(lat, 100)
	res.ProcessingMS = pct(proc, 95)
	res.WaitMSP50, res.WaitMSP95 = pct(wait, 50), pct(wait, 95)
	res.CleanLatencyP50, res.CleanLatencyP95 = pct(clean, 50), pct(clean, 95)
	for _, p := range truth.Passages {
		if !p.Visitor() && !p.Blur && !p.Occluded {
			res.CleanPassages++
		}
	}
}

// score matches decisions to passages (scorePassages).
func score(t *Truth, decs []decision) Accuracy {
	a, _ := scorePassages(t, decs)
	return a
}

// scorePassages matches decisions to passages and says, per passage of
// t, whether it was announced. A decision counts for a passage of the same
// pupil whose frames (plus a second of slack for the last descriptors)
// contain the decision frame. A repeat suppressed by the debounce still
// counts as announced (the pupil was announced already).
func scorePassages(t *Truth, decs []decision) (Accuracy, []bool) {
	var a Accuracy
	found := make([]bool, len(t.Passages))
	for i, p := range t.Passages {
		a.Passages++
		if p.Visitor() {
			a.Visitors++
			continue
		}
		a.Enrolled++
		for _, d := range decs {
			if d.student == p.StudentID && inPassage(t, p, d.frame) {
				a.Announced++
				found[i] = true
				break
			}
		}
	}
	a.WrongStudent, a.VisitorAsStudent, a.Duplicates = judgeEvents(t, decs)
	if a.Enrolled > 0 {
		a.TPIR = float64(a.Announced) / float64(a.Enrolled)
	}
	return a, found
}

// inPassage reports whether frame f lies in p's frames or the second
// after them.
func inPassage(t *Truth, p Passage, f int64) bool {
	return f >= p.FirstFrame && f <= p.LastFrame+int64(t.FPS)
}

// judgeEvents classifies the enqueued decisions: an event is right when a
// passage of its pupil is in view; otherwise it took a visitor for a pupil
// when only visitors were in view, and named the wrong pupil when somebody
// enrolled was. A pupil's events beyond the first are duplicates.
func judgeEvents(t *Truth, decs []decision) (wrong, visitor, dups int) {
	perStudent := map[string]int{}
	for _, d := range decs {
		if !d.enqueued {
			continue
		}
		perStudent[d.student]++
		ok, visitorNear, enrolledNear := false, false, false
		for _, p := range t.Passages {
			if !inPassage(t, p, d.frame) {
				continue
			}
			if p.Visitor() {
				visitorNear = true
				continue
			}
			enrolledNear = true
			ok = ok || p.StudentID == d.student
		}
		switch {
		case ok:
		case visitorNear && !enrolledNear:
			visitor++
		default:
			wrong++
		}
	}
	for _, n := range perStudent {
		if n > 1 {
			dups += n - 1
		}
	}
	return wrong, visitor, dups
}
