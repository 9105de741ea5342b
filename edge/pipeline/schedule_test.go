package pipeline

import (
	"testing"

	"github.com/diemdanh/diemdanh/models/match"
)

// TestGrownEnough checks the descriptor schedule: a failed attempt is
// retried once the face has grown or waited DescribeMaxGap frames, an
// accepted vote awaiting corroboration is retried at once, and growth 0
// keeps the plain describe_every cadence.
func TestGrownEnough(t *testing.T) {
	cfg := DefaultConfig()
	cfg.DescribeGrowth, cfg.DescribeMaxGap = 0.10, 6
	p := &Pipeline{cfg: cfg}
	vc := cfg.Vote
	vc.Threshold = vc.Cap(match.DefaultEmbedder) // distances below in units of it
	th, mm := vc.Threshold, vc.MinMargin
	accepted := Vote{Match: match.Result{PersonID: "a", Distance: 0.75 * th, SecondDistance: 0.75*th + 2*mm, SecondPersonID: "b"}}
	rejected := Vote{Match: match.Result{PersonID: "a", Distance: 0.97 * th, SecondDistance: 0.97*th + mm/2, SecondPersonID: "b"}}
	if !accepted.Accepted(vc) || rejected.Accepted(vc) {
		t.Fatalf("setup: accepted %v rejected %v under %+v", accepted.Accepted(vc), rejected.Accepted(vc), vc)
	}
	cases := []struct {
		name   string
		votes  []Vote
		lastPx int
		px     int
		gap    int64
		growth float64
		want   bool
	}{
		{"first attempt", nil, 0, 80, 100, 0.10, true},
		{"not grown, short gap", []Vote{rejected}, 100, 105, 2, 0.10, false},
		{"grown 10%", []Vote{rejected}, 100, 110, 2, 0.10, true},
		{"no vote yet, not grown", nil, 100, 104, 3, 0.10, false},
		{"max gap reached", []Vote{rejected}, 100, 100, 6, 0.10, true},
		{"accepted vote waits for corroboration", []Vote{accepted}, 100, 100, 2, 0.10, true},
		{"growth off", []Vote{rejected}, 100, 100, 2, 0, true},
	}
	for _, c := range cases {
		p.cfg.DescribeGrowth = c.growth
		tr := &Track{Votes: c.votes, LastDescribePx: c.lastPx, LastDescribe: 50}
		if got := p.grownEnough(tr, c.px, 50+c.gap, vc); got != c.want {
			t.Errorf("%s: grownEnough = %v, want %v", c.name, got, c.want)
		}
	}
}
