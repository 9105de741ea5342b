package citysync_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/diemdanh/diemdanh/deploy/citydb/pgtest"
)

// TestOutageCatchUp really stops PostgreSQL while the hub keeps storing a
// school day, restarts it and checks the worker catches up with nothing
// lost or duplicated, lag back to 0, one outage line and one recovery line.
func TestOutageCatchUp(t *testing.T) {
	own, err := pgtest.Start(pgtest.Options{}) // always a cluster we may stop
	if err != nil {
		t.Fatal(err)
	}
	defer own.Close()
	f := newFixture(t, own)
	const classes, perClass = 3, 100
	f.seedRoster(classes, perClass)
	f.cfg.Interval = 100 * time.Millisecond
	f.cfg.Debounce = 10 * time.Millisecond
	f.cfg.MaxBackoff = time.Second
	f.cfg.BatchSize = 64
	w := f.worker()
	f.sync() // roster

	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); _ = w.Run(ctx) }()
	defer func() { cancel(); wg.Wait() }()

	day := "2025-10-06"
	start := time.Date(2025, 10, 6, 6, 45, 0, 0, hcm)
	n := 0
	arrive := func(c, p int) {
		i := c*1000 + p
		at := start.Add(time.Duration(n) * 2 * time.Second)
		f.ingest(fmt.Sprintf("ev-%d-a", i), pid(i), at)
		if p%7 == 0 { // a second pass at the gate: another event, same day status
			f.ingest(fmt.Sprintf("ev-%d-b", i), pid(i), at.Add(3*time.Second))
		}
		st := "present"
		if p%5 == 0 {
			st = "late"
		}
		f.setDaily(pid(i), day, st, "auto")
		w.Notify()
		n++
	}
	waitFor := func(what string, d time.Duration, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(d)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s\nlogs:\n%s", what, f.logs.String())
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	// Morning, city up: the first class arrives and is pushed.
	for p := 1; p <= perClass; p++ {
		arrive(1, p)
	}
	waitFor("first class pushed", 20*time.Second, func() bool {
		return f.cityInt(`SELECT count(*) FROM attendance.daily_status`) == perClass
	})

	if err := own.StopServer(); err != nil {
		t.Fatal(err)
	}
	// The hub keeps going: two more classes, absences, a manual override, the cut-off.
	for c := 2; c <= classes; c++ {
		for p := 1; p <= perClass; p++ {
			if p%10 == 3 {
				continue // absent today
			}
			arrive(c, p)
		}
	}
	f.clock.Set(time.Date(2025, 10, 6, 9, 30, 0, 0, hcm))
	for c := 2; c <= classes; c++ {
		for p := 3; p <= perClass; p += 10 {
			f.setDaily(pid(c*1000+p), day, "absent", "auto")
		}
	}
	f.setDaily(pid(2003), day, "excused", "manual")
	w.Notify()
	waitFor("outage noticed", 20*time.Second, func() bool { return strings.Contains(f.logs.String(), "outage started") })
	time.Sleep(1500 * time.Millisecond) // at least one retry while down
	if w.LagRows() == 0 {
		t.Fatal("lag is 0 while the city database is down")
	}

	if err := own.StartServer(); err != nil {
		t.Fatal(err)
	}
	f.reconnectAdmin()
	waitFor("catch-up", 60*time.Second, func() bool { return w.LagRows() == 0 && strings.Contains(f.logs.String(), "recovered") })

	hubEvents := f.hubInt(`SELECT count(*) FROM events`)
	if got := f.cityInt(`SELECT count(*) FROM attendance.events`); got != hubEvents {
		t.Errorf("city has %d events, hub %d", got, hubEvents)
	}
	if got := f.cityInt(`SELECT count(*) FROM (SELECT event_id FROM attendance.events GROUP BY event_id HAVING count(*) > 1) d`); got != 0 {
		t.Errorf("%d duplicated events", got)
	}
	if got := f.cityInt(`SELECT count(*) FROM attendance.daily_status`); got != classes*perClass {
		t.Errorf("city has %d daily statuses, want %d", got, classes*perClass)
	}
	for _, st := range []string{"present", "late", "absent", "excused"} {
		if h, c := f.hubInt(`SELECT count(*) FROM daily_attendance WHERE status = ?`, st),
			f.cityInt(`SELECT count(*) FROM attendance.daily_status WHERE status = $1`, st); h != c {
			t.Errorf("status %s: hub %d city %d", st, h, c)
		}
	}
	waitFor("headcounts after cut-off", 10*time.Second, func() bool {
		return f.cityInt(`SELECT count(*) FROM nutrition.headcounts WHERE day = $1`, day) == classes
	})
	if h, c := f.hubInt(`SELECT count(*) FROM daily_attendance WHERE status IN ('present', 'late')`),
		f.cityInt(`SELECT sum(headcount) FROM nutrition.headcounts WHERE day = $1`, day); h != c {
		t.Errorf("headcounts sum %d, hub present %d", c, h)
	}
	if got := f.cityInt(`SELECT count(*) FROM transcript.absence_totals WHERE excused + unexcused > 0`); got != 2*(perClass/10) {
		t.Errorf("%d pupils with absences in the transcript, want %d", got, 2*(perClass/10))
	}
	if f.w.LagSeconds() != 0 {
		t.Errorf("lag seconds %v after catch-up", f.w.LagSeconds())
	}
	logs := f.logs.String()
	if c := strings.Count(logs, "outage started"); c != 1 {
		t.Errorf("%d outage lines, want 1:\n%s", c, logs)
	}
	if c := strings.Count(logs, "recovered"); c != 1 {
		t.Errorf("%d recovery lines, want 1:\n%s", c, logs)
	}
}
