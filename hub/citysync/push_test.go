package citysync_test

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

func TestEventsPushedTwiceAndOutOfOrderStoredOnce(t *testing.T) {
	f := newFixture(t, cluster)
	f.seedRoster(2, 20)
	f.cfg.BatchSize = 7 // many small batches
	f.worker()
	f.sync()
	base := time.Date(2025, 10, 6, 7, 0, 0, 0, hcm)
	// 40 events stored in reverse capture order, plus a redelivery of the same
	// content through the change log (a second trigger row for each event).
	n := 0
	for c := 2; c >= 1; c-- {
		for p := 20; p >= 1; p-- {
			i := c*1000 + p
			f.ingest(fmt.Sprintf("ev-%d", i), pid(i), base.Add(time.Duration(i)*time.Second))
			n++
		}
	}
	f.hubExec(`INSERT INTO citysync_changes (kind, k1, created_at) SELECT 'event', event_id, 0 FROM events ORDER BY captured_at`)
	rep := f.sync()
	if rep.Events < n {
		t.Errorf("pushed %d event rows, want at least %d", rep.Events, n)
	}
	// Push everything once more from scratch: cursor reset, log rebuilt.
	f.hubExec(`UPDATE citysync_state SET value = '0' WHERE key = 'cursor'`)
	f.hubExec(`INSERT INTO citysync_changes (kind, k1, created_at) SELECT 'event', event_id, 0 FROM events ORDER BY random()`)
	f.sync()
	if got := f.cityInt(`SELECT count(*) FROM attendance.events`); got != n {
		t.Fatalf("city has %d events, want %d", got, n)
	}
	if got := f.cityInt(`SELECT count(DISTINCT event_id) FROM attendance.events WHERE school_id = 'S1'`); got != n {
		t.Errorf("distinct events %d, want %d", got, n)
	}
	// Content equals the hub's.
	var hubSum, citySum int64
	if err := f.hub.R.QueryRowContext(f.ctx, `SELECT sum(captured_at) FROM events`).Scan(&hubSum); err != nil {
		t.Fatal(err)
	}
	if err := f.admin.QueryRow(f.ctx, `SELECT sum((extract(epoch FROM captured_at) * 1000)::bigint) FROM attendance.events`).Scan(&citySum); err != nil {
		t.Fatal(err)
	}
	if hubSum != citySum {
		t.Errorf("captured_at checksum hub %d city %d", hubSum, citySum)
	}
	// Staff mark one event "not this pupil": the change reaches the city.
	f.hubExec(`UPDATE events SET rejected = 1 WHERE event_id = 'ev-1005'`)
	f.sync()
	if got := f.cityInt(`SELECT count(*) FROM attendance.events WHERE event_id = 'ev-1005' AND rejected`); got != 1 {
		t.Error("rejection not pushed")
	}
	if lag := f.w.LagRows(); lag != 0 {
		t.Errorf("lag rows %v after sync, want 0", lag)
	}
	if got := f.cityInt(`SELECT count(*) FROM attendance.sync_status WHERE school_id = 'S1' AND lag_rows = 0`); got != 1 {
		t.Error("sync_status row missing")
	}
}

func TestHeadcountsAndAbsenceTotals(t *testing.T) {
	f := newFixture(t, cluster)
	f.seedRoster(3, 10)
	f.cfg.Meals = []string{"breakfast", "lunch"}
	f.worker()
	f.sync()
	day := "2025-10-06" // a Monday, term 1 of 2025-2026
	f.clock.Set(time.Date(2025, 10, 6, 8, 0, 0, 0, hcm))
	statuses := []string{"present", "present", "late", "absent", "present", "not_yet", "excused", "present", "late", "absent"}
	for c := 1; c <= 3; c++ {
		for p := 1; p <= 10; p++ {
			f.setDaily(pid(c*1000+p), day, statuses[(p+c)%len(statuses)], "auto")
		}
	}
	// Earlier days of the term, for the totals.
	for d, st := range map[string]string{"2025-09-29": "absent", "2025-09-30": "excused", "2025-10-01": "absent", "2025-10-02": "present"} {
		for p := 1; p <= 4; p++ {
			f.setDaily(pid(1000+p), d, st, "auto")
		}
	}
	// Before the 09:00 cut-off: no headcount for today, only past days.
	f.sync()
	if got := f.cityInt(`SELECT count(*) FROM nutrition.headcounts WHERE day = $1`, day); got != 0 {
		t.Fatalf("%d headcounts for today before the cut-off", got)
	}
	checkHeads := func(when string) {
		t.Helper()
		rows, err := f.hub.R.QueryContext(f.ctx, `SELECT p.class_id, count(*) FILTER (WHERE d.status IN ('present', 'late'))
			FROM daily_attendance d JOIN pupils p ON p.id = d.pupil_id WHERE d.day = ? GROUP BY p.class_id`, day)
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		classes := 0
		for rows.Next() {
			var class string
			var present int
			if err := rows.Scan(&class, &present); err != nil {
				t.Fatal(err)
			}
			classes++
			for _, meal := range []string{"breakfast", "lunch"} {
				if got := f.cityInt(`SELECT headcount FROM nutrition.headcounts WHERE school_id = 'S1' AND class_id = $1 AND day = $2 AND meal_code = $3`,
					class, day, meal); got != present {
					t.Errorf("%s: %s %s headcount %d, hub present count %d", when, class, meal, got, present)
				}
			}
		}
		if classes != 3 {
			t.Fatalf("hub has %d classes with statuses", classes)
		}
	}
	f.clock.Set(time.Date(2025, 10, 6, 9, 5, 0, 0, hcm))
	rep := f.sync()
	if rep.Headcounts != 6 {
		t.Errorf("pushed %d headcounts at the cut-off, want 6 (3 classes × 2 meals)", rep.Headcounts)
	}
	checkHeads("at cut-off")
	if rep := f.sync(); rep.Headcounts != 0 {
		t.Errorf("unchanged day pushed %d headcounts again", rep.Headcounts)
	}

	// A late arrival and a manual override change the counts: corrections.
	late := pid(1000 + 2) // statuses[(2+1)%10] = absent
	f.setDaily(late, day, "late", "auto")
	f.hubExec(`INSERT INTO attendance_overrides (pupil_id, day, status, reason, actor, created_at) VALUES (?, ?, 'excused', 'ốm, phụ huynh báo', 'T1', 0)`, pid(1000+1), "2025-09-29")
	f.setDaily(pid(1000+1), "2025-09-29", "excused", "manual")
	rep = f.sync()
	checkHeads("after corrections")
	if got := f.cityInt(`SELECT revision FROM nutrition.headcounts WHERE class_id = 'C1' AND day = $1 AND meal_code = 'lunch'`, day); got != 2 {
		t.Errorf("corrected headcount revision %d, want 2", got)
	}

	// Transcript totals equal the hub's daily statuses, per pupil, term 1.
	rows, err := f.hub.R.QueryContext(f.ctx, `SELECT pupil_id, count(*) FILTER (WHERE status = 'excused'), count(*) FILTER (WHERE status = 'absent')
		FROM daily_attendance WHERE day BETWEEN '2025-09-05' AND '2026-01-15' GROUP BY pupil_id`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	n := 0
	for rows.Next() {
		var p string
		var exc, unexc int
		if err := rows.Scan(&p, &exc, &unexc); err != nil {
			t.Fatal(err)
		}
		n++
		var ce, cu int
		if err := f.admin.QueryRow(f.ctx, `SELECT excused, unexcused FROM transcript.absence_totals
			WHERE school_id = 'S1' AND pupil_id = $1 AND school_year = '2025-2026' AND term = 1`, p).Scan(&ce, &cu); err != nil {
			t.Fatalf("totals of %s: %v", p, err)
		}
		if ce != exc || cu != unexc {
			t.Errorf("%s: city excused/unexcused %d/%d, hub %d/%d", p, ce, cu, exc, unexc)
		}
	}
	if n != 30 {
		t.Errorf("%d pupils with statuses, want 30", n)
	}
	// The override made pupil 1001's 29/9 excused: 1 excused (+30/9), 1 unexcused (1/10).
	var ce, cu int
	if err := f.admin.QueryRow(f.ctx, `SELECT excused, unexcused FROM transcript.absence_totals WHERE pupil_id = $1`, pid(1001)).Scan(&ce, &cu); err != nil {
		t.Fatal(err)
	}
	if ce != 2 || cu != 1+boolInt(statuses[(1+1)%10] == "absent") {
		t.Errorf("pupil 1001 totals %d/%d after override", ce, cu)
	}
	if got := f.cityInt(`SELECT count(*) FROM attendance.daily_status WHERE pupil_id = $1 AND day = '2025-09-29' AND status = 'excused' AND source = 'manual'`, pid(1001)); got != 1 {
		t.Error("manual override not in daily_status")
	}
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

func TestRowsRefusedByCitySkippedOneByOne(t *testing.T) {
	f := newFixture(t, cluster)
	f.seedRoster(1, 5)
	f.cfg.Meals = []string{"lunch", "tea"} // "tea" is not a city meal type: refused
	f.worker()
	f.sync()
	f.clock.Set(time.Date(2025, 10, 6, 10, 0, 0, 0, hcm))
	for p := 1; p <= 5; p++ {
		f.setDaily(pid(1000+p), "2025-10-06", "present", "auto")
	}
	// An event with an impossible direction never leaves the hub.
	f.hubExec(`INSERT INTO events (event_id, school_id, gate_id, direction, student_id, captured_at, received_at, distance, margin, frames_used, model)
		VALUES ('ev-bad', 'S1', 'G1', 'sideways', ?, 1, 1, 0.3, 0.1, 3, 'm')`, pid(1001))
	f.ingest("ev-good", pid(1002), time.Date(2025, 10, 6, 7, 1, 0, 0, hcm))
	rep := f.sync()
	if rep.Daily != 5 || rep.Events != 1 {
		t.Errorf("pushed daily %d events %d, want 5 and 1", rep.Daily, rep.Events)
	}
	if got := f.cityInt(`SELECT count(*) FROM nutrition.headcounts WHERE meal_code = 'lunch' AND headcount = 5`); got != 1 {
		t.Error("lunch headcount missing")
	}
	var reasons []string
	rows, err := f.hub.R.QueryContext(f.ctx, `SELECT kind || ' ' || city_key || ' ' || reason FROM citysync_issues ORDER BY 1`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var s string
		rows.Scan(&s)
		reasons = append(reasons, s)
	}
	rows.Close()
	all := strings.Join(reasons, "\n")
	if !strings.Contains(all, "push_event ev-bad") || !strings.Contains(all, "push_headcount C1/2025-10-06/tea") {
		t.Errorf("issues:\n%s\nwant the bad event and the tea headcount", all)
	}
	if f.w.LagRows() != 0 {
		t.Errorf("lag %v: refused rows must not block the log", f.w.LagRows())
	}
}

// A hub that ran without city sync keeps no change log; when sync is
// switched on, everything stored before is backfilled and pushed.
func TestEnableBackfillsHistory(t *testing.T) {
	f := newFixture(t, cluster)
	f.seedRoster(1, 5)
	f.hubExec(`INSERT INTO schools (id, name) VALUES ('S1', 'S1')`)
	f.hubExec(`INSERT INTO pupils (id, school_id, full_name) VALUES (?, 'S1', 'a'), (?, 'S1', 'b')`, pid(1001), pid(1002))
	f.ingest("old-1", pid(1001), time.Date(2025, 9, 8, 7, 0, 0, 0, hcm))
	f.ingest("old-2", pid(1002), time.Date(2025, 9, 8, 7, 1, 0, 0, hcm))
	f.setDaily(pid(1001), "2025-09-08", "present", "auto")
	f.setDaily(pid(1002), "2025-09-08", "absent", "auto")
	if n := f.hubInt(`SELECT count(*) FROM citysync_changes`); n != 0 {
		t.Fatalf("change log has %d rows before sync was ever enabled", n)
	}
	f.worker()
	rep := f.sync()
	if rep.Events != 2 || rep.Daily != 2 {
		t.Errorf("backfill pushed %d events, %d daily; want 2, 2", rep.Events, rep.Daily)
	}
	if got := f.cityInt(`SELECT unexcused FROM transcript.absence_totals WHERE pupil_id = $1`, pid(1002)); got != 1 {
		t.Errorf("backfilled absence total %d, want 1", got)
	}
	f.ingest("new-1", pid(1001), time.Date(2025, 9, 9, 7, 0, 0, 0, hcm))
	if rep := f.sync(); rep.Events != 1 {
		t.Errorf("after enabling, a new event pushed %d rows, want 1", rep.Events)
	}
}
