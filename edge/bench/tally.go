package bench

import (
	"math"
)

// wilsonZ is the normal quantile of a two-sided 95 % interval.
const wilsonZ = 1.959963984540054

// Wilson is the 95 % Wilson score interval [low, high] of a proportion
// of k successes in n trials, rounded to 0.001. It stays inside [0, 1]
// and is wide for small n (5 of 6 gives about [0.44, 0.97]), which is
// why a tpir is reported with it. With no trials it is [0, 1]: nothing
// is known.
func Wilson(k, n int) [2]float64 {
	if n <= 0 {
		return [2]float64{0, 1}
	}
	p, nf, z2 := float64(k)/float64(n), float64(n), wilsonZ*wilsonZ
	den := 1 + z2/nf
	centre := (p + z2/(2*nf)) / den
	half := wilsonZ / den * math.Sqrt(p*(1-p)/nf+z2/(4*nf*nf))
	r := func(f float64) float64 { return math.Round(f*1000) / 1000 }
	return [2]float64{r(math.Max(0, centre-half)), r(math.Min(1, centre+half))}
}

// Tally is the accuracy of one run, one day or several days: the keys
// every part of the suite report shares.
type Tally struct {
	Enrolled         int        `json:"enrolled_passages"`
	Visitors         int        `json:"visitor_passages"`
	Announced        int        `json:"announced"`
	TPIR             float64    `json:"tpir"`
	TPIRCI           [2]float64 `json:"tpir_ci"`
	WrongStudent     int        `json:"wrong_student"`
	VisitorAsStudent int        `json:"visitor_as_student"`
	Duplicates       int        `json:"duplicates"`
	// TeacherActions is what the day costs a teacher: each unrecognised
	// enrolled passage to mark by hand, plus each wrong announcement
	// (wrong pupil, visitor taken for a pupil) to undo. A duplicate of a
	// right announcement needs nothing.
	TeacherActions int `json:"teacher_actions"`
}

// tallyOf turns an Accuracy into a Tally with its interval and teacher
// actions.
func tallyOf(a Accuracy) Tally {
	t := Tally{Enrolled: a.Enrolled, Visitors: a.Visitors, Announced: a.Announced, WrongStudent: a.WrongStudent,
		VisitorAsStudent: a.VisitorAsStudent, Duplicates: a.Duplicates}
	t.finish()
	return t
}

// add sums the counts of u into t (finish recomputes the rates).
func (t *Tally) add(u Tally) {
	t.Enrolled += u.Enrolled
	t.Visitors += u.Visitors
	t.Announced += u.Announced
	t.WrongStudent += u.WrongStudent
	t.VisitorAsStudent += u.VisitorAsStudent
	t.Duplicates += u.Duplicates
	t.finish()
}

// finish computes tpir, its interval and the teacher actions from the
// counts.
func (t *Tally) finish() {
	t.TPIR = 0
	if t.Enrolled > 0 {
		t.TPIR = math.Round(float64(t.Announced)/float64(t.Enrolled)*10000) / 10000
	}
	t.TPIRCI = Wilson(t.Announced, t.Enrolled)
	t.TeacherActions = t.Enrolled - t.Announced + t.WrongStudent + t.VisitorAsStudent
}

// SetTally is the recognition of the enrolled passages walked from one
// source of photos, so that one set cannot hide another.
type SetTally struct {
	Enrolled  int        `json:"enrolled_passages"`
	Announced int        `json:"announced"`
	TPIR      float64    `json:"tpir"`
	TPIRCI    [2]float64 `json:"tpir_ci"`
}

// bySet counts, per passage set, the enrolled passages and how many were
// announced (announced[i] for passages[i]). Visitors are left out (a set
// whose people only visit, such as SCUT's crowd, has no entry); a passage
// without a set is counted under "".
func bySet(passages []Passage, announced []bool, into map[string]SetTally) {
	for i, p := range passages {
		if p.Visitor() {
			continue
		}
		s := into[passageSet(p)]
		s.Enrolled++
		if announced[i] {
			s.Announced++
		}
		into[passageSet(p)] = s
	}
	for k, s := range into {
		s.TPIR = 0
		if s.Enrolled > 0 {
			s.TPIR = math.Round(float64(s.Announced)/float64(s.Enrolled)*10000) / 10000
		}
		s.TPIRCI = Wilson(s.Announced, s.Enrolled)
		into[k] = s
	}
}
