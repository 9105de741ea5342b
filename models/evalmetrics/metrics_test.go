package evalmetrics

import (
	"math"
	"testing"

	"github.com/diemdanh/diemdanh/models/match"
)

// fixture: five 1-D points (as 2-D descriptors, values exact in float32)
// whose figures are worked out by hand below.
//
//	A: 0, 1    B: 1.5, 3    C: 10 (a singleton)
//
// genuine pairs: A 1, B 1.5                         → [1, 1.5]
// impostor pairs: A0B0 1.5, A0B1 3, A1B0 0.5, A1B1 2,
// A0C 10, A1C 9, B0C 8.5, B1C 7                       → [0.5 1.5 2 3 7 8.5 9 10]
//
// probes (own nearest; nearest other identity; second other identity):
//
//	a0: own 1;   B 1.5; C 10  → correct
//	a1: own 1;   B 0.5; C 9   → wrong (B is nearer)
//	b0: own 1.5; A 0.5; C 8.5 → wrong
//	b1: own 1.5; A 2;   C 7   → correct
//	c:  own ∞;   B 7;   A 9   → not a closed-set probe
func fixture() []Sample {
	pt := func(id string, x float32) Sample { return Sample{Identity: id, Desc: match.Descriptor{x, 0}} }
	return []Sample{pt("A", 0), pt("A", 1), pt("B", 1.5), pt("B", 3), pt("C", 10)}
}

func near(a, b float64) bool { return math.Abs(a-b) < 1e-9 }

func TestFiguresOnHandComputedFixture(t *testing.T) {
	pairs, probes := Analyse(fixture())
	wantG := []float64{1, 1.5}
	wantI := []float64{0.5, 1.5, 2, 3, 7, 8.5, 9, 10}
	if len(pairs.Genuine) != 2 || len(pairs.Impostor) != 8 {
		t.Fatalf("pairs: %v %v", pairs.Genuine, pairs.Impostor)
	}
	for i, w := range wantG {
		if !near(pairs.Genuine[i], w) {
			t.Errorf("genuine[%d] = %g, want %g", i, pairs.Genuine[i], w)
		}
	}
	for i, w := range wantI {
		if !near(pairs.Impostor[i], w) {
			t.Errorf("impostor[%d] = %g, want %g", i, pairs.Impostor[i], w)
		}
	}
	for _, c := range []struct{ t, far, frr float64 }{
		{0.25, 0, 1}, {0.5, 0.125, 1}, {1.0, 0.125, 0.5}, {1.25, 0.125, 0.5}, {1.5, 0.25, 0}, {2.5, 0.375, 0}, {10, 1, 0},
	} {
		if far, frr := pairs.FAR(c.t), pairs.FRR(c.t); !near(far, c.far) || !near(frr, c.frr) {
			t.Errorf("t=%g: FAR %g FRR %g, want %g %g", c.t, far, frr, c.far, c.frr)
		}
	}
	// EER: |FAR-FRR| is 0.875, 0.375, 0.25, 0.375 at 0.5, 1, 1.5, 2: the
	// smallest at 1.5, where FAR 2/8 and FRR 0.
	if eer, th := pairs.EER(); !near(eer, 0.125) || !near(th, 1.5) {
		t.Errorf("EER %g at %g, want 0.125 at 1.5", eer, th)
	}
	// FAR ≤ 0.1 allows no impostor: only genuine under 0.5 (none).
	// FAR ≤ 0.2 allows one (0.5): genuine under 1.5 (one of two).
	// FAR ≤ 0.3 allows two: genuine under 2 (both).
	for _, c := range []struct{ far, tar float64 }{{0.1, 0}, {0.2, 0.5}, {0.3, 1}} {
		if tar, _ := pairs.TARAtFAR(c.far); !near(tar, c.tar) {
			t.Errorf("TAR@%g = %g, want %g", c.far, tar, c.tar)
		}
	}
	if r := Rank1(probes); r.Count != 2 || r.Total != 4 {
		t.Errorf("rank-1 %d/%d, want 2/4", r.Count, r.Total)
	}
	// t=1.25, no margin: visitors a1 (0.5) and b0 (0.5) of 5; genuine a0
	// only (b1's own 1.5 is over); wrong a1 and b0.
	o := OpenSetAt(probes, 1.25, 0)
	if o.VisitorAccept.Count != 2 || o.VisitorAccept.Total != 5 || o.GenuineAccept.Count != 1 || o.GenuineAccept.Total != 4 || o.WrongAccept.Count != 2 {
		t.Errorf("t=1.25: %+v", o)
	}
	// margin 0.75: a0's runner-up is 0.5 behind: refused. a1's wrong match
	// has its own 1 as runner-up (0.5 behind): refused; b0's runner-up is
	// its own 1.5 (1.0 behind): accepted. Visitors a1, b0 have C 8+ behind.
	o = OpenSetAt(probes, 1.25, 0.75)
	if o.VisitorAccept.Count != 2 || o.GenuineAccept.Count != 0 || o.WrongAccept.Count != 1 {
		t.Errorf("t=1.25 m=0.75: %+v", o)
	}
	if th := ThresholdForGenuine(probes, 0.5, 0); !near(th, 1.5) {
		t.Errorf("threshold for 50%% genuine = %g, want 1.5", th)
	}
	if th := ThresholdForGenuine(probes, 0.25, 0); !near(th, 1) {
		t.Errorf("threshold for 25%% genuine = %g, want 1", th)
	}
	if th := ThresholdForGenuine(probes, 0.75, 0); !math.IsNaN(th) {
		t.Errorf("75%% genuine is unreachable (rank-1 50%%), got %g", th)
	}
	// Visitors sorted: 0.5 0.5 1.5 2 7. At most 1 of 5 (20%): the tie at
	// 0.5 forces a threshold under 0.5, accepting none.
	if th := ThresholdForVisitor(probes, 0.2); !(th < 0.5 && th > 0.49) {
		t.Errorf("threshold for 20%% visitors = %g", th)
	}
	if th := ThresholdForVisitor(probes, 0.4); !(th < 1.5 && th > 1.49) {
		t.Errorf("threshold for 40%% visitors = %g", th)
	}
}
