package pipeline

import (
	"image"
	"testing"
	"time"
)

func TestIoU(t *testing.T) {
	a := image.Rect(0, 0, 10, 10)
	cases := []struct {
		b    image.Rectangle
		want float64
	}{
		{a, 1},
		{image.Rect(20, 20, 30, 30), 0},
		{image.Rect(5, 0, 15, 10), 50.0 / 150},
		{image.Rect(0, 0, 5, 10), 0.5},
	}
	for _, c := range cases {
		if got := IoU(a, c.b); got < c.want-1e-9 || got > c.want+1e-9 {
			t.Errorf("IoU(%v,%v)=%g want %g", a, c.b, got, c.want)
		}
	}
}

// walk returns a face box that grows and moves down as a pupil walks in.
func walk(x, step int) image.Rectangle {
	s := 100 + 4*step
	y := 100 + 3*step
	return image.Rect(x-s/2, y, x+s/2, y+s)
}

func TestTrackerFollowsTwoWalkers(t *testing.T) {
	tr := NewTracker(TrackerConfig{MinIoU: 0.3, MaxMissed: 2})
	t0 := time.Unix(1_800_000_000, 0)
	var idA, idB int64
	for f := 0; f < 30; f++ {
		dets := []image.Rectangle{walk(300, f), walk(900, f)}
		if f%2 == 1 { // detection order must not matter
			dets[0], dets[1] = dets[1], dets[0]
		}
		as, ended := tr.Update(dets, int64(f), t0.Add(time.Duration(f)*40*time.Millisecond))
		if len(ended) != 0 {
			t.Fatalf("frame %d: tracks ended early", f)
		}
		a, b := as[0], as[1]
		if f%2 == 1 {
			a, b = b, a
		}
		if f == 0 {
			idA, idB = a.ID, b.ID
		}
		if a.ID != idA || b.ID != idB {
			t.Fatalf("frame %d: identities swapped or restarted: %d,%d", f, a.ID, b.ID)
		}
	}
	if len(tr.Active()) != 2 {
		t.Fatalf("active %d", len(tr.Active()))
	}
}

func TestTrackerEndsAfterMissesAndSurvivesGap(t *testing.T) {
	tr := NewTracker(TrackerConfig{MinIoU: 0.3, MaxMissed: 2})
	now := time.Unix(1_800_000_000, 0)
	as, _ := tr.Update([]image.Rectangle{walk(300, 0)}, 0, now)
	id := as[0].ID
	// Two missed frames (an occlusion) are tolerated.
	tr.Update(nil, 1, now)
	tr.Update(nil, 2, now)
	as, ended := tr.Update([]image.Rectangle{walk(300, 3)}, 3, now)
	if len(ended) != 0 || as[0].ID != id {
		t.Fatalf("gap of 2 broke the track: ended=%d id=%d want %d", len(ended), as[0].ID, id)
	}
	// Three misses end it.
	var all []*Track
	for f := 4; f < 7; f++ {
		_, e := tr.Update(nil, int64(f), now)
		all = append(all, e...)
	}
	if len(all) != 1 || all[0].ID != id || !all[0].Ended {
		t.Fatalf("track not ended after 3 misses: %v", all)
	}
	// A face far away starts a new track.
	as, _ = tr.Update([]image.Rectangle{image.Rect(1000, 100, 1100, 200)}, 7, now)
	if as[0].ID == id {
		t.Fatal("a new face reused an ended track")
	}
	if got := tr.Flush(); len(got) != 1 || !got[0].Ended || len(tr.Active()) != 0 {
		t.Fatal("flush did not end the remaining track")
	}
}

func TestTrackerDoesNotMergeCrossingFaces(t *testing.T) {
	tr := NewTracker(TrackerConfig{MinIoU: 0.3, MaxMissed: 1})
	now := time.Now()
	a := image.Rect(100, 100, 200, 200)
	b := image.Rect(400, 100, 500, 200)
	as, _ := tr.Update([]image.Rectangle{a, b}, 0, now)
	ida, idb := as[0].ID, as[1].ID
	// Both move 20 px toward each other: each keeps its own track.
	as, _ = tr.Update([]image.Rectangle{b.Sub(image.Pt(20, 0)), a.Add(image.Pt(20, 0))}, 1, now)
	if as[0].ID != idb || as[1].ID != ida {
		t.Fatalf("ids %d,%d want %d,%d", as[0].ID, as[1].ID, idb, ida)
	}
}
