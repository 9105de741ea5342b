package capture

import (
	"testing"
	"time"
)

// TestFreshness plays a 25 fps stream's timestamps against the wall clock.
func TestFreshness(t *testing.T) {
	t0 := time.Date(2026, 9, 7, 6, 45, 0, 0, time.UTC)
	type step struct {
		wallMs, posMs float64
		want          verdict
	}
	ms := func(v float64) time.Duration { return time.Duration(v * float64(time.Millisecond)) }
	for _, tc := range []struct {
		name  string
		steps []step
	}{
		{"steady stream", []step{{1000, 40, frameFresh}, {1040, 80, frameFresh}, {1080, 120, frameFresh}, {1125, 160, frameFresh}}},
		{"burst at connect is fresh", []step{{1000, 40, frameFresh}, {1001, 80, frameFresh}, {1002, 120, frameFresh}, {1010, 1000, frameFresh}}},
		{"repeated and backward timestamps", []step{{1000, 40, frameFresh}, {1040, 40, frameRepeated}, {1080, 20, frameRepeated}, {1080, 80, frameFresh}}},
		{"backlog after a 5 s stall", []step{{1000, 40, frameFresh}, {1040, 80, frameFresh},
			{6040, 120, frameLate}, {6041, 160, frameLate}, {6045, 4000, frameFresh}, {6080, 5080, frameFresh}}},
		{"stall within max_lag", []step{{1000, 40, frameFresh}, {2900, 80, frameFresh}, {2905, 1900, frameFresh}}},
		{"source without timestamps", []step{{1000, 0, frameFresh}, {9000, 0, frameFresh}}},
		{"clock jump is followed", []step{{1000, 40000, frameFresh}, {1040, 40040, frameFresh},
			{1080, 100, frameRepeated}, {1120, 50000, frameFresh}, {1160, 50040, frameFresh}}},
		{"clock falling behind for good is rebased", []step{{1000, 40, frameFresh}, {4000, 80, frameLate},
			{6000, 2080, frameLate}, {8100, 4180, frameRebased}, {8140, 4220, frameFresh}}},
	} {
		f := newFreshness(2*time.Second, t0)
		for i, s := range tc.steps {
			if got := f.check(t0.Add(ms(s.wallMs)), s.posMs); got != s.want {
				t.Errorf("%s: step %d (wall %v ms, pts %v ms) = %v, want %v", tc.name, i, s.wallMs, s.posMs, got, s.want)
			}
		}
	}
	off := newFreshness(0, t0)
	if got := off.check(t0.Add(time.Hour), 40); got != frameFresh {
		t.Errorf("max_lag 0 judged a frame %v", got)
	}
}
