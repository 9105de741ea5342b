package bench

import (
	"reflect"
	"testing"
)

// TestWilson checks the interval against values computed by hand (and
// published ones: 50 of 100 gives [0.404, 0.596]) and its edge cases.
func TestWilson(t *testing.T) {
	cases := []struct {
		k, n int
		want [2]float64
	}{
		{5, 6, [2]float64{0.436, 0.970}}, // the faces video of the issue: about 0.44 to 0.97
		{50, 100, [2]float64{0.404, 0.596}},
		{396, 400, [2]float64{0.975, 0.996}},
		{0, 10, [2]float64{0, 0.278}},    // none: the low end is 0, the high end is not
		{10, 10, [2]float64{0.722, 1}},   // all: the high end is 1, the low end is not
		{39, 39, [2]float64{0.910, 1}},   // the casia video
		{1, 1, [2]float64{0.207, 1}},     // one passage says little
		{0, 0, [2]float64{0, 1}},         // nothing measured: nothing known
		{3, -1, [2]float64{0, 1}},        // no trials
		{400, 400, [2]float64{0.990, 1}}, // 400 of 400 is what measures 0.99
	}
	for _, c := range cases {
		if got := Wilson(c.k, c.n); got != c.want {
			t.Errorf("Wilson(%d, %d) = %v, want %v", c.k, c.n, got, c.want)
		}
	}
}

// dayTruth is a hand-made day: two kpop pupils (one missed), one casia
// pupil, a faces pupil walking in a group with a visitor, and a scut
// visitor alone.
func dayTruth() *Truth {
	return &Truth{FPS: 25, Day: 1, Passages: []Passage{
		{ID: "k1", StudentID: "k1", Enrolled: true, Set: "kpop", FirstFrame: 0, LastFrame: 50},
		{ID: "k2", StudentID: "k2", Enrolled: true, Set: "kpop", FirstFrame: 100, LastFrame: 150},
		{ID: "c1", StudentID: "c1", Enrolled: true, Set: "casia", FirstFrame: 200, LastFrame: 250},
		{ID: "f1", StudentID: "f1", Enrolled: true, Set: "faces", FirstFrame: 300, LastFrame: 350},
		{ID: "v1", Set: "faces", FirstFrame: 310, LastFrame: 360},
		{ID: "v2", Set: "scut", FirstFrame: 500, LastFrame: 550},
	}}
}

// TestTallyAndBySet checks the per-day tally, the teacher actions and the
// per-set counts on a hand-made day.
func TestTallyAndBySet(t *testing.T) {
	tr := dayTruth()
	decs := []decision{
		{student: "k1", frame: 30, enqueued: true},
		{student: "c1", frame: 240, enqueued: true},
		{student: "k2", frame: 320, enqueued: true}, // k2's name on f1 or the visitor: wrong pupil
		{student: "f1", frame: 340, enqueued: true},
		{student: "c1", frame: 530, enqueued: true}, // the scut visitor taken for c1, and c1's second event
	}
	acc, found := scorePassages(tr, decs)
	got := tallyOf(acc)
	want := Tally{Enrolled: 4, Visitors: 2, Announced: 3, TPIR: 0.75, TPIRCI: Wilson(3, 4), WrongStudent: 1,
		VisitorAsStudent: 1, Duplicates: 1, TeacherActions: 1 + 1 + 1}
	if got != want {
		t.Fatalf("tally\n got %+v\nwant %+v", got, want)
	}
	if wantFound := []bool{true, false, true, true, false, false}; !reflect.DeepEqual(found, wantFound) {
		t.Fatalf("announced per passage %v, want %v", found, wantFound)
	}
	sets := map[string]SetTally{}
	bySet(tr.Passages, found, sets)
	wantSets := map[string]SetTally{
		"kpop":  {Enrolled: 2, Announced: 1, TPIR: 0.5, TPIRCI: Wilson(1, 2)},
		"casia": {Enrolled: 1, Announced: 1, TPIR: 1, TPIRCI: Wilson(1, 1)},
		"faces": {Enrolled: 1, Announced: 1, TPIR: 1, TPIRCI: Wilson(1, 1)},
	}
	if !reflect.DeepEqual(sets, wantSets) {
		t.Fatalf("by set\n got %+v\nwant %+v", sets, wantSets)
	}
	// A second day adds up: totals and sets are sums, rates recomputed.
	total := got
	total.add(tallyOf(Accuracy{Enrolled: 4, Visitors: 1, Announced: 4}))
	if total.Enrolled != 8 || total.Announced != 7 || total.TPIR != 0.875 || total.TPIRCI != Wilson(7, 8) || total.TeacherActions != 1+1+1 {
		t.Fatalf("two days: %+v", total)
	}
	bySet(tr.Passages, []bool{true, true, true, true, false, false}, sets)
	if k := sets["kpop"]; k.Enrolled != 4 || k.Announced != 3 || k.TPIR != 0.75 {
		t.Fatalf("kpop over two days: %+v", k)
	}
}

// TestFramesWithWrongName checks the peer's count of frames with an
// enrolled name on the wrong face, and its one-event-per-pupil rule.
func TestFramesWithWrongName(t *testing.T) {
	tr := dayTruth()
	d := func(s string, f int64) decision { return decision{student: s, frame: f} }
	matches := []decision{
		d("k1", 10), d("k1", 11), // right
		d("k1", 60),                // k1 has left (no slack for a per-frame rule): wrong
		d("f1", 320), d("f1", 320), // one name on two faces: wrong once
		d("k2", 320), // k2 is not in view: the same frame, counted once
		d("c1", 520), // on the scut visitor
		d("c1", 230), // right, c1's first match
	}
	if n := framesWithWrongName(tr, matches); n != 3 {
		t.Fatalf("frames with a wrong name: %d, want 3 (60, 320, 520)", n)
	}
	sortByFrame(matches)
	decs := announceFirst(matches)
	acc := score(tr, decs)
	// Events: k1@10, k2@320 (wrong), f1@320, c1@230 (first); c1@520 is a repeat.
	if acc.Announced != 3 || acc.WrongStudent != 1 || acc.VisitorAsStudent != 0 || acc.Duplicates != 0 {
		t.Fatalf("peer accuracy %+v", acc)
	}
}
