package pipeline

import (
	"math"
	"testing"

	"github.com/diemdanh/diemdanh/models/match"
)

const (
	pupilA = "079123456789"
	pupilB = "079123456780"
)

func v(id string, dist, second float64, score float64) Vote {
	return Vote{Match: match.Result{PersonID: id, Distance: dist, SecondDistance: second}, Score: score}
}

func TestDecide(t *testing.T) {
	c := VoteConfig{Threshold: 0.40, MinMargin: 0.06, K: 5, M: 2}
	cases := []struct {
		name  string
		votes []Vote
		ok    bool
		who   string
		n     int
	}{
		{"no votes", nil, false, "", 0},
		{"one good vote is not enough", []Vote{v(pupilA, 0.30, 0.50, 0.9)}, false, "", 0},
		{"two agreeing", []Vote{v(pupilA, 0.30, 0.50, 0.9), v(pupilA, 0.35, 0.48, 0.8)}, true, pupilA, 2},
		{"three agreeing", []Vote{v(pupilA, 0.30, 0.50, 0.9), v(pupilA, 0.35, 0.48, 0.8), v(pupilA, 0.33, 0.47, 0.7)}, true, pupilA, 3},
		// A visitor: nearest identities are far (dlib impostor median ~0.50).
		{"visitor far from everyone", []Vote{v(pupilA, 0.47, 0.52, 0.9), v(pupilB, 0.49, 0.50, 0.8), v(pupilA, 0.45, 0.55, 0.7)}, false, "", 0},
		// A visitor who happens to fall under the threshold on one frame only.
		{"visitor with one lucky frame", []Vote{v(pupilA, 0.39, 0.50, 0.9), v(pupilA, 0.46, 0.51, 0.8), v(pupilB, 0.47, 0.49, 0.7)}, false, "", 0},
		// A look-alike: close to two pupils, tiny margin, never accepted.
		{"look-alike without margin", []Vote{v(pupilA, 0.33, 0.35, 0.9), v(pupilA, 0.34, 0.36, 0.8), v(pupilB, 0.32, 0.35, 0.7)}, false, "", 0},
		// Twins-like conflict: accepted votes for two identities → no decision.
		{"conflicting identities", []Vote{v(pupilA, 0.30, 0.45, 0.9), v(pupilA, 0.31, 0.45, 0.85), v(pupilB, 0.30, 0.45, 0.8)}, false, "", 0},
		{"under threshold exactly at the edge", []Vote{v(pupilA, 0.40, 0.46, 0.9), v(pupilA, 0.40, 0.46, 0.8)}, true, pupilA, 2},
		{"margin just short", []Vote{v(pupilA, 0.30, 0.359, 0.9), v(pupilA, 0.30, 0.359, 0.8)}, false, "", 0},
		// Only the K best-quality votes count: poor early crops (small,
		// blurred) for B are outranked by the good ones for A.
		{"k best by quality", []Vote{v(pupilB, 0.30, 0.45, 0.1), v(pupilA, 0.30, 0.45, 0.9), v(pupilA, 0.31, 0.45, 0.8),
			v(pupilA, 0.32, 0.45, 0.8), v(pupilA, 0.33, 0.45, 0.7), v(pupilA, 0.34, 0.45, 0.6)}, true, pupilA, 5},
		{"single-identity gallery has infinite margin", []Vote{v(pupilA, 0.30, math.Inf(1), 0.9), v(pupilA, 0.30, math.Inf(1), 0.9)}, true, pupilA, 2},
		{"empty person never wins", []Vote{v("", 0.1, 0.9, 0.9), v("", 0.1, 0.9, 0.9)}, false, "", 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			d := Decide(tc.votes, c)
			if d.OK != tc.ok || d.StudentID != tc.who || d.FramesUsed != tc.n {
				t.Fatalf("got ok=%v who=%q n=%d (%s); want ok=%v who=%q n=%d", d.OK, d.StudentID, d.FramesUsed, d.Reason, tc.ok, tc.who, tc.n)
			}
			if d.OK {
				if d.Distance > c.Threshold || d.Margin < c.MinMargin {
					t.Fatalf("decision outside the rule: %+v", d)
				}
				if d.Best.Match.PersonID != tc.who {
					t.Fatal("best vote is not the winner's")
				}
			} else if d.Reason == "" {
				t.Fatal("undecided without a reason")
			}
		})
	}
}

func TestDecideMOfK(t *testing.T) {
	votes := []Vote{v(pupilA, 0.30, 0.45, 0.9), v(pupilA, 0.31, 0.45, 0.8), v(pupilA, 0.5, 0.55, 0.7)}
	for m, want := range map[int]bool{1: true, 2: true, 3: false} {
		if got := Decide(votes, VoteConfig{Threshold: 0.4, MinMargin: 0.05, K: 3, M: m}).OK; got != want {
			t.Errorf("M=%d: ok=%v want %v", m, got, want)
		}
	}
}
