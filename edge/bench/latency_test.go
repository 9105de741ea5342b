package bench

import (
	"testing"
	"time"
)

// TestRecognisableLatencyAndInView checks the latency from the first
// recognisable frame and the share announced in view, in real time and in
// fast mode, on hand-made passages and events.
func TestRecognisableLatencyAndInView(t *testing.T) {
	t0 := time.Date(2026, 12, 5, 7, 0, 0, 0, time.UTC)
	tr := &Truth{FPS: 25, Passages: []Passage{
		// Recognisable from frame 20, in view until 60; decided at 25, acked 80 ms later.
		{StudentID: "a", Enrolled: true, FirstFrame: 0, LastFrame: 60, FirstRecognisable: 20, LastInView: 60},
		// Decided at frame 58 (in view until 60), acked 200 ms later: after it left (58 + 5 frames).
		{StudentID: "b", Enrolled: true, FirstFrame: 0, LastFrame: 60, FirstRecognisable: 40, LastInView: 60},
		// Decided on a blurred face before the truth calls it recognisable: 0 ms.
		{StudentID: "c", Enrolled: true, FirstFrame: 100, LastFrame: 160, FirstRecognisable: 130, LastInView: 160},
		// Never recognisable: in the share, not in the recognisable latency.
		{StudentID: "d", Enrolled: true, FirstFrame: 200, LastFrame: 260, FirstRecognisable: -1, LastInView: 255},
		// Decided but never acknowledged.
		{StudentID: "e", Enrolled: true, FirstFrame: 300, LastFrame: 360, FirstRecognisable: 310, LastInView: 360},
		// Not announced at all, and a visitor: in neither.
		{StudentID: "f", Enrolled: true, FirstFrame: 400, LastFrame: 460, FirstRecognisable: 410, LastInView: 460},
		{FirstFrame: 0, LastFrame: 60},
	}}
	decs := []decision{
		{student: "a", frame: 25, enqueued: true, eventID: "ea", at: t0},
		{student: "b", frame: 58, enqueued: true, eventID: "eb", at: t0},
		{student: "c", frame: 120, enqueued: true, eventID: "ec", at: t0},
		{student: "d", frame: 250, enqueued: true, eventID: "ed", at: t0},
		{student: "e", frame: 320, enqueued: true, eventID: "ee", at: t0},
		{student: "a", frame: 420, enqueued: false, eventID: "", at: t0}, // a debounced repeat is no announcement
	}
	acks := map[string]time.Time{
		"ea": t0.Add(80 * time.Millisecond), "eb": t0.Add(200 * time.Millisecond),
		"ec": t0.Add(40 * time.Millisecond), "ed": t0.Add(100 * time.Millisecond),
	}
	anns := announcements(tr, decs, acks)
	if len(anns) != 5 {
		t.Fatalf("%d announcements, want 5 (a, b, c, d, e)", len(anns))
	}
	var rt latencyFigures
	rt.add(tr.FPS, anns, true)
	// a: (25-20)*40 + 80 = 280; b: (58-40)*40 + 200 = 920; c: max(0, -400+40) = 0.
	wantRecog := []float64{280, 920, 0}
	if !equalFloats(rt.fromRecog, wantRecog) {
		t.Fatalf("recognisable latencies %v, want %v", rt.fromRecog, wantRecog)
	}
	// From the first frame: a 1080, b 2520, c 840, d 2100.
	if want := []float64{1080, 2520, 840, 2100}; !equalFloats(rt.fromFirst, want) {
		t.Fatalf("latencies from the first frame %v, want %v", rt.fromFirst, want)
	}
	// In view in real time: a (27 ≤ 60), c, d (252.5 ≤ 255); not b (63 > 60) nor e (no PUBACK).
	if rt.announced != 5 || rt.inView != 3 || rt.share() != 0.6 {
		t.Fatalf("real time: %d of %d in view (%v), want 3 of 5", rt.inView, rt.announced, rt.share())
	}
	// Fast mode compares the decision frame: b (58) and e (320) were decided in view.
	var fast latencyFigures
	fast.add(tr.FPS, anns, false)
	if fast.inView != 5 || fast.share() != 1 {
		t.Fatalf("fast mode: %d of %d in view", fast.inView, fast.announced)
	}
	var none latencyFigures
	if none.share() != 0 {
		t.Fatal("share with nothing announced")
	}
}

func equalFloats(a, b []float64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if d := a[i] - b[i]; d > 1e-9 || d < -1e-9 {
			return false
		}
	}
	return true
}
