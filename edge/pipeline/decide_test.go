package pipeline

import (
	"math"
	"strings"
	"testing"

	"github.com/diemdanh/diemdanh/models/match"
)

func TestDecisionConfigValidate(t *testing.T) {
	cases := []struct {
		decision string
		ok       bool
	}{
		{DecisionVotes, true},
		{DecisionMean, true},
		{"", false},
		{"majority", false},
		{"Votes", false},
	}
	for _, tc := range cases {
		t.Run(tc.decision, func(t *testing.T) {
			c := DefaultConfig()
			c.Decision = tc.decision
			err := c.Validate("pipeline")
			if tc.ok != (err == nil) {
				t.Fatalf("decision %q: err = %v, want ok=%v", tc.decision, err, tc.ok)
			}
			if err != nil && !strings.Contains(err.Error(), "pipeline.decision") {
				t.Fatalf("error does not name the field: %v", err)
			}
		})
	}
	if DefaultConfig().Decision != DecisionVotes {
		t.Fatalf("default decision %q, want %q", DefaultConfig().Decision, DecisionVotes)
	}
}

// uvec is a unit vector of 8 dimensions along the given (axis, weight)
// components, times scale.
func uvec(scale float64, comps ...float64) match.Descriptor {
	d := make(match.Descriptor, 8)
	var n float64
	for i := 0; i+1 < len(comps); i += 2 {
		d[int(comps[i])] += float32(comps[i+1])
		n += comps[i+1] * comps[i+1]
	}
	for i := range d {
		d[i] = float32(float64(d[i]) / math.Sqrt(n) * scale)
	}
	return d
}

// galleryOf enrols one descriptor per pupil.
func galleryOf(t *testing.T, ds ...match.Descriptor) *match.Gallery {
	t.Helper()
	g := match.NewGallery(1, match.DefaultEmbedder)
	for i, d := range ds {
		if err := g.Add([]string{pupilA, pupilB, "079123456781", "079123456782"}[i], d); err != nil {
			t.Fatal(err)
		}
	}
	return g
}

// mvote is a crop's vote: d matched against g like a worker does.
func mvote(g *match.Gallery, d match.Descriptor, score float64, frame int64) Vote {
	return Vote{Match: g.Match(d), Descriptor: d, Score: score, Frame: frame}
}

// TestDecideMean: the mean rule on synthetic descriptors, matched against
// real galleries. Pupils A, B, C, D sit on axes 0–3 (√2 apart); per-frame
// descriptors near A are 0.378 from it, outside the 0.30 threshold alone.
// The expected distances are the arithmetic of the weighted mean, worked
// out by hand (cos of the angle between the mean and A).
func TestDecideMean(t *testing.T) {
	g := galleryOf(t, uvec(1, 0, 1), uvec(1, 1, 1), uvec(1, 2, 1), uvec(1, 3, 1))
	nearA1, nearA2, nearA3 := uvec(1, 0, 1, 2, 0.4), uvec(1, 0, 1, 3, 0.4), uvec(1, 0, 1, 2, -0.4)
	towardB := uvec(1, 1, 1, 0, 0.5) // nearest B at 0.460, not accepted alone
	// A look-alike pair: B' is 0.30 (normalised) along axis 1 from A.
	gLook := galleryOf(t, uvec(1, 0, 1), uvec(1, 0, 1, 1, 0.3))
	// An embedder whose descriptors are 0.6 long (dlib-like scale).
	gScaled := galleryOf(t, uvec(0.6, 0, 1), uvec(0.6, 1, 1), uvec(0.6, 2, 1), uvec(0.6, 3, 1))
	def := VoteConfig{Threshold: 0.30, MinMargin: 0.10, K: 5, M: 2}
	cases := []struct {
		name   string
		g      *match.Gallery
		c      VoteConfig // zero: def
		votes  []Vote
		who    string  // "" refused
		dist   float64 // expected mean distance when accepted
		n      int     // descriptors averaged when accepted
		reason string  // when refused
	}{
		{name: "accept within threshold and margin, where no frame is accepted alone", g: g,
			votes: []Vote{mvote(g, nearA1, 0.9, 1), mvote(g, nearA2, 0.8, 3), mvote(g, nearA3, 0.7, 5)}, who: pupilA, dist: 0.13648, n: 3},
		{name: "quality weighting keeps the mean near A", g: g,
			votes: []Vote{mvote(g, nearA1, 0.9, 1), mvote(g, nearA3, 0.9, 3), mvote(g, towardB, 0.1, 5)}, who: pupilA, dist: 0.05207, n: 3},
		{name: "the same crops with equal quality pull the mean out of threshold", g: g,
			votes: []Vote{mvote(g, nearA1, 0.5, 1), mvote(g, nearA3, 0.5, 3), mvote(g, towardB, 0.5, 5)}, reason: "mean beyond threshold"},
		{name: "only the K best by quality are averaged", g: g, c: VoteConfig{Threshold: 0.30, MinMargin: 0.10, K: 3, M: 2},
			votes: []Vote{mvote(g, uvec(1, 1, 1), 0.1, 0), mvote(g, nearA1, 0.9, 1), mvote(g, nearA2, 0.8, 3),
				mvote(g, uvec(1, 1, 1), 0.1, 4), mvote(g, nearA3, 0.7, 5)}, who: pupilA, dist: 0.13648, n: 3},
		{name: "keeps the embedder's scale: distances in its own units", g: gScaled,
			votes: []Vote{mvote(gScaled, uvec(0.6, 0, 1, 2, 0.4), 0.9, 1), mvote(gScaled, uvec(0.6, 0, 1, 3, 0.4), 0.8, 3),
				mvote(gScaled, uvec(0.6, 0, 1, 2, -0.4), 0.7, 5)}, who: pupilA, dist: 0.6 * 0.13648, n: 3},
		{name: "refuse on margin: a look-alike pair", g: gLook,
			votes: []Vote{mvote(gLook, uvec(1, 0, 1, 1, 0.15, 2, 0.1), 0.9, 1), mvote(gLook, uvec(1, 0, 1, 1, 0.15, 3, 0.1), 0.8, 3)}, reason: "mean without margin"},
		{name: "refuse a visitor far from everyone", g: g,
			votes: []Vote{mvote(g, uvec(1, 5, 1, 0, 0.3, 6, 0.2), 0.9, 1), mvote(g, uvec(1, 5, 1, 0, 0.3, 7, 0.2), 0.8, 3)}, reason: "mean beyond threshold"},
		{name: "refuse with too few describes: one perfect frame", g: g,
			votes: []Vote{mvote(g, uvec(1, 0, 1), 0.9, 1)}, reason: "too few describes"},
		{name: "descriptors of another length are not averaged", g: g,
			votes: []Vote{mvote(g, uvec(1, 0, 1), 0.9, 1), {Match: g.Match(uvec(1, 0, 1)), Descriptor: uvec(1, 0, 1)[:4], Score: 0.9, Frame: 3}}, reason: "too few describes"},
		// One lucky frame (exactly A) carries the mean to 0.376 of A; the
		// other frames are nearest C and D: no corroboration.
		{name: "refuse one lucky frame without corroboration", g: g, c: VoteConfig{Threshold: 0.40, MinMargin: 0.10, K: 5, M: 2},
			votes:  []Vote{mvote(g, uvec(1, 0, 1), 0.9, 1), mvote(g, uvec(1, 0, 1, 2, 1.05), 0.8, 3), mvote(g, uvec(1, 0, 1, 3, 1.05), 0.7, 5)},
			reason: "too few frames name the pupil"},
		{name: "refuse when a frame is accepted for another pupil", g: g,
			votes: []Vote{mvote(g, nearA1, 0.9, 1), mvote(g, nearA3, 0.9, 3), mvote(g, uvec(1, 1, 1), 0.2, 5)}, reason: "conflicting identities"},
		{name: "no votes", g: g, reason: "no votes"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := tc.c
			if c == (VoteConfig{}) {
				c = def
			}
			d := DecideMean(tc.votes, tc.g, nil, c)
			if tc.who == "" {
				if d.OK || !strings.Contains(d.Reason, tc.reason) {
					t.Fatalf("got ok=%v who=%q reason %q; want refused for %q", d.OK, d.StudentID, d.Reason, tc.reason)
				}
				return
			}
			if !d.OK || d.StudentID != tc.who || d.FramesUsed != tc.n {
				t.Fatalf("got ok=%v who=%q n=%d (%s); want %q from %d descriptors", d.OK, d.StudentID, d.FramesUsed, d.Reason, tc.who, tc.n)
			}
			if math.Abs(d.Distance-tc.dist) > 2e-4 || d.Distance > c.Threshold || d.Margin < c.MinMargin {
				t.Fatalf("distance %.5f margin %.5f, want distance %.5f within %.2f and margin ≥ %.2f", d.Distance, d.Margin, tc.dist, c.Threshold, c.MinMargin)
			}
			if d.Best.Match.PersonID != tc.who || d.Best.Score != 0.9 {
				t.Fatalf("best vote %+v, want the best-quality frame naming %s", d.Best.Match, tc.who)
			}
		})
	}
}

// TestDecideMeanBeyondVotes: on the crops of the first case above the
// M-of-K rule decides nothing (no frame within the threshold); the mean
// rule does. On a candidate filter that leaves A out, nobody is decided.
func TestDecideMeanBeyondVotes(t *testing.T) {
	g := galleryOf(t, uvec(1, 0, 1), uvec(1, 1, 1), uvec(1, 2, 1), uvec(1, 3, 1))
	votes := []Vote{mvote(g, uvec(1, 0, 1, 2, 0.4), 0.9, 1), mvote(g, uvec(1, 0, 1, 3, 0.4), 0.8, 3), mvote(g, uvec(1, 0, 1, 2, -0.4), 0.7, 5)}
	c := VoteConfig{Threshold: 0.30, MinMargin: 0.10, K: 5, M: 2}
	if d := Decide(votes, c); d.OK {
		t.Fatalf("votes rule decided %+v", d)
	}
	if d := DecideMean(votes, g, nil, c); !d.OK || d.StudentID != pupilA {
		t.Fatalf("mean rule: %+v", d)
	}
	if d := DecideMean(votes, g, notPerson(pupilA), c); d.OK {
		t.Fatalf("mean rule decided a pupil the candidate filter leaves out: %+v", d)
	}
}

type notPerson string

func (n notPerson) Allow(p string) bool { return p != string(n) }

func TestMeanDescriptor(t *testing.T) {
	cases := []struct {
		name  string
		votes []Vote
		want  match.Descriptor // nil: none
	}{
		{"weights by score", []Vote{{Descriptor: uvec(1, 0, 1), Score: 0.75}, {Descriptor: uvec(1, 1, 1), Score: 0.25}}, uvec(1, 0, 0.75, 1, 0.25)},
		{"normalises before weighting", []Vote{{Descriptor: uvec(3, 0, 1), Score: 0.5}, {Descriptor: uvec(1, 1, 1), Score: 0.5}}, uvec(2, 0, 1, 1, 1)},
		{"no positive score: equal weights", []Vote{{Descriptor: uvec(1, 0, 1)}, {Descriptor: uvec(1, 1, 1)}}, uvec(1, 0, 1, 1, 1)},
		{"opposite descriptors cancel out", []Vote{{Descriptor: uvec(1, 0, 1), Score: 0.5}, {Descriptor: uvec(1, 0, -1), Score: 0.5}}, nil},
		{"no votes", nil, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := MeanDescriptor(tc.votes)
			if tc.want == nil {
				if got != nil {
					t.Fatalf("got %v, want none", got)
				}
				return
			}
			if got == nil || match.Distance(got, tc.want) > 1e-6 {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
		})
	}
}
