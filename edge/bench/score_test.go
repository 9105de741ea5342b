package bench

import "testing"

// TestScore checks the benchmark's accounting on a hand-made truth.
func TestScore(t *testing.T) {
	tr := &Truth{FPS: 25, Passages: []Passage{
		{ID: "a", StudentID: "079000000001", Enrolled: true, FirstFrame: 0, LastFrame: 50},
		{ID: "b", StudentID: "079000000002", Enrolled: true, FirstFrame: 40, LastFrame: 90},
		{ID: "v", FirstFrame: 200, LastFrame: 250},
		{ID: "a2", StudentID: "079000000001", Enrolled: true, FirstFrame: 300, LastFrame: 350},
		{ID: "c", StudentID: "079000000003", Enrolled: true, FirstFrame: 400, LastFrame: 450},
	}}
	cases := []struct {
		name string
		decs []decision
		want Accuracy
	}{
		{"nothing announced", nil, Accuracy{Passages: 5, Enrolled: 4, Visitors: 1}},
		{"all right, repeat debounced", []decision{
			{student: "079000000001", frame: 30, enqueued: true},
			{student: "079000000002", frame: 70, enqueued: true},
			{student: "079000000001", frame: 320, enqueued: false}, // a's second passage, debounced
			{student: "079000000003", frame: 440, enqueued: true},
		}, Accuracy{Passages: 5, Enrolled: 4, Visitors: 1, Announced: 4, TPIR: 1}},
		{"visitor taken for a pupil", []decision{
			{student: "079000000003", frame: 220, enqueued: true},
		}, Accuracy{Passages: 5, Enrolled: 4, Visitors: 1, VisitorAsStudent: 1}},
		{"wrong pupil while two walk", []decision{
			{student: "079000000003", frame: 45, enqueued: true},
		}, Accuracy{Passages: 5, Enrolled: 4, Visitors: 1, WrongStudent: 1}},
		{"announced twice", []decision{
			{student: "079000000001", frame: 30, enqueued: true},
			{student: "079000000001", frame: 310, enqueued: true},
		}, Accuracy{Passages: 5, Enrolled: 4, Visitors: 1, Announced: 2, TPIR: 0.5, Duplicates: 1}},
		// Decided a little after the face left (last descriptors): still counts.
		{"within a second of slack", []decision{
			{student: "079000000003", frame: 470, enqueued: true},
		}, Accuracy{Passages: 5, Enrolled: 4, Visitors: 1, Announced: 1, TPIR: 0.25}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := score(tr, c.decs); got != c.want {
				t.Fatalf("got %+v\nwant %+v", got, c.want)
			}
		})
	}
}

func TestPercentile(t *testing.T) {
	v := []float64{5, 1, 4, 2, 3}
	if pct(v, 50) != 3 || pct(v, 95) != 5 || pct(nil, 95) != 0 || pct(v, 100) != 5 {
		t.Fatalf("pct: %v %v %v", pct(v, 50), pct(v, 95), pct(v, 100))
	}
}

// TestMOfKFrames checks the baseline's M-of-K-over-frames rule.
func TestMOfKFrames(t *testing.T) {
	d := func(s string, f int64) decision { return decision{student: s, frame: f} }
	cases := []struct {
		name string
		in   []decision
		m, k int
		want map[string]int64 // student → decision frame
	}{
		{"one frame is not enough for m=2", []decision{d("a", 10)}, 2, 5, map[string]int64{}},
		{"m=1 decides on the first frame", []decision{d("a", 10), d("a", 11)}, 1, 5, map[string]int64{"a": 10}},
		{"two frames inside the window", []decision{d("a", 10), d("a", 14)}, 2, 5, map[string]int64{"a": 14}},
		{"two frames just outside the window", []decision{d("a", 10), d("a", 15)}, 2, 5, map[string]int64{}},
		{"two faces in one frame count once", []decision{d("a", 10), d("a", 10)}, 2, 5, map[string]int64{}},
		{"later pair decides", []decision{d("a", 1), d("a", 20), d("a", 22), d("b", 3), d("b", 4)}, 2, 5, map[string]int64{"a": 22, "b": 4}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := mOfKFrames(tc.in, tc.m, tc.k)
			if len(got) != len(tc.want) {
				t.Fatalf("got %d decisions %+v, want %v", len(got), got, tc.want)
			}
			for _, g := range got {
				if f, ok := tc.want[g.student]; !ok || f != g.frame || !g.enqueued {
					t.Errorf("decision %+v, want frame %d (present %v)", g, f, ok)
				}
			}
		})
	}
}
