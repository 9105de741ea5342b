package gatefault

import (
	"testing"
	"time"
)

// TestFaultClockSkew: the real gate runs with its clock 10 minutes fast
// (clock_offset). The class starts between the hub's time of the passages
// and the gate's: by the gate's clock every pupil is late, by the hub's
// on time. Asserted at the hub: each event stored once with
// gate_captured_at 10 min after captured_at (the hub's clock), captured_at
// before it was received, every announced pupil present (not late) with
// that arrival time, the gate's clock_skew_ms about -10 min, clock_warn set
// and the warning audited once.
func TestFaultClockSkew(t *testing.T) {
	const offset = 10 * time.Minute
	dir := t.TempDir()
	bin := buildEdge(t, dir)
	so, _ := gateVideo(t, dir, "v", "faces", 3, 5, 0)
	loc, err := time.LoadLocation("Asia/Ho_Chi_Minh")
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().In(loc)
	if now.Day() != now.Add(offset+5*time.Minute).Day() {
		// The gate's clock would be on the next school day: wait for the
		// hub's to get there too (at most 15 minutes, once a day).
		wait := time.Until(time.Date(now.Year(), now.Month(), now.Day()+1, 0, 1, 0, 0, loc))
		t.Logf("near the school's midnight (%s): waiting %s", now.Format("15:04"), wait.Round(time.Second))
		time.Sleep(wait)
		now = time.Now().In(loc)
	}
	start := now.Add(4 * time.Minute).Truncate(time.Minute) // after the passages, before the gate's clock
	hubDB := dir + "/hub.db"
	seedHub(t, hubDB, start.Format("15:04"), 0, so.GalleryOut)
	hub := startHub(t, hubDB)
	r := startEdge(t, bin, dir, "gate", dir+"/data", so.Out, false, so.GalleryOut, hub.addr, "clock_offset: 10m\n")
	r.waitExit(t, 120*time.Second)

	events := hub.events(t)
	if len(events) == 0 {
		t.Fatal("no event reached the hub")
	}
	seen := map[string]bool{}
	for _, e := range events {
		if seen[e.student] {
			t.Errorf("pupil %s stored twice", e.student)
		}
		seen[e.student] = true
		if d := time.Duration(e.gateCaptured-e.captured) * time.Millisecond; d < offset-5*time.Second || d > offset+5*time.Second {
			t.Errorf("event %s: gate clock minus hub clock %s, want about %s", e.id, d, offset)
		}
		if e.captured > e.recv || e.captured >= start.UnixMilli() || e.gateCaptured <= start.UnixMilli() {
			t.Errorf("event %s: captured %d (gate %d), received %d, class start %d", e.id, e.captured, e.gateCaptured, e.recv, start.UnixMilli())
		}
	}
	waitFor(t, 20*time.Second, "every announced pupil's day at the hub", func() bool {
		return hub.count(t, `SELECT count(*) FROM daily_attendance WHERE status IN ('present', 'late')`) == len(seen)
	})
	if n := hub.count(t, `SELECT count(*) FROM daily_attendance d JOIN events e ON e.event_id = d.arrival_event_id
		WHERE d.status = 'present' AND d.arrived_at = e.captured_at`); n != len(seen) {
		t.Errorf("%d of %d pupils present at the hub's time; the others were judged by the gate's clock", n, len(seen))
	}
	if n := hub.count(t, `SELECT count(*) FROM gates WHERE id = ? AND clock_warn = 1 AND clock_skew_ms BETWEEN ? AND ?`,
		gate, -(offset + 5*time.Second).Milliseconds(), -(offset - 5*time.Second).Milliseconds()); n != 1 {
		t.Error("the gate's clock skew is not recorded with its warning")
	}
	if n := hub.count(t, `SELECT count(*) FROM audit_log WHERE action = 'gate_clock_skew' AND subject = ?`, "gate:"+gate); n != 1 {
		t.Errorf("%d clock-skew audit entries, want 1", n)
	}
	t.Logf("%d pupils present by the hub's clock; the class started %s, the gate's clock read %s later", len(seen), start.Format("15:04"), offset)
}
