package attendance

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/diemdanh/diemdanh/hub/api"
	"github.com/diemdanh/diemdanh/hub/ingest"
	"github.com/diemdanh/diemdanh/hub/store"
	"github.com/diemdanh/diemdanh/models/wire"
)

var ict = time.FixedZone("ICT", 7*3600)

func at(hhmm string) time.Time {
	t, err := time.ParseInLocation("2006-01-02 15:04", "2026-09-07 "+hhmm, ict)
	if err != nil {
		panic(err)
	}
	return t
}

type fixture struct {
	db  *store.DB
	svc *Service
	now atomic.Int64
	n   int
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	db, err := store.Open(context.Background(), filepath.Join(t.TempDir(), "hub.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	f := &fixture{db: db}
	f.now.Store(at("06:00").UnixMilli())
	f.svc = New(db, Default(), nil, func() time.Time { return time.UnixMilli(f.now.Load()) })
	for _, q := range []string{
		`INSERT INTO schools(id, name) VALUES ('thcs-a', 'THCS A')`,
		`INSERT INTO classes(id, school_id, name, grade, start_time, late_after_min, absent_cutoff) VALUES ('6a', 'thcs-a', '6A', 6, '07:00', 15, '09:00')`,
		`INSERT INTO pupils(id, school_id, class_id, full_name) VALUES ('001234567890', 'thcs-a', '6a', 'An')`,
		`INSERT INTO pupils(id, school_id, class_id, full_name) VALUES ('001234567891', 'thcs-a', '6a', 'Bình')`,
	} {
		if _, err := db.W.Exec(q); err != nil {
			t.Fatal(err)
		}
	}
	return f
}

func (f *fixture) event(t *testing.T, pupil, dir string, when time.Time, rejected bool) string {
	t.Helper()
	f.n++
	id := wire.NewEventID()
	var student any = pupil
	if pupil == wire.UnknownStudent {
		student = nil
	}
	_, err := f.db.W.Exec(`INSERT INTO events(event_id, school_id, gate_id, direction, student_id, captured_at, received_at, distance, margin, frames_used, model, rejected)
		VALUES (?, 'thcs-a', ?, ?, ?, ?, ?, 0.3, 0.1, 3, 'dlib-resnet-v1@1', ?)`,
		id, "gate-"+dir, dir, student, when.UnixMilli(), when.UnixMilli()+200, rejected)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func TestDailyStateTable(t *testing.T) {
	type ev struct {
		dir      string
		at       time.Time
		rejected bool
		pupil    string
	}
	cases := []struct {
		name      string
		events    []ev
		override  string
		now       string
		want      string
		arrived   string // HH:MM or ""
		departed  string
		source    string
		wantGate  string
		otherDays bool
	}{
		{name: "on time", events: []ev{{dir: "in", at: at("06:50")}}, now: "07:30", want: Present, arrived: "06:50", wantGate: "gate-in"},
		{name: "exactly at the late threshold", events: []ev{{dir: "in", at: at("07:15")}}, now: "07:30", want: Present, arrived: "07:15"},
		{name: "late", events: []ev{{dir: "in", at: at("07:16")}}, now: "07:30", want: Late, arrived: "07:16"},
		{name: "first in counts, later ins ignored", events: []ev{{dir: "in", at: at("07:40")}, {dir: "in", at: at("06:58")}}, now: "08:00", want: Present, arrived: "06:58"},
		{name: "not yet before cutoff", now: "08:59", want: NotYet},
		{name: "absent after cutoff", now: "09:00", want: Absent},
		{name: "excused override", now: "10:00", override: Excused, want: Excused, source: "manual"},
		{name: "override beats an event", events: []ev{{dir: "in", at: at("07:30")}}, override: Present, now: "10:00", want: Present, source: "manual", arrived: "07:30"},
		{name: "departure", events: []ev{{dir: "in", at: at("06:55")}, {dir: "out", at: at("11:30")}, {dir: "out", at: at("16:30")}}, now: "17:00", want: Present, arrived: "06:55", departed: "16:30"},
		{name: "only seen leaving", events: []ev{{dir: "out", at: at("16:30")}}, now: "17:00", want: Present, departed: "16:30"},
		{name: "rejected recognition ignored", events: []ev{{dir: "in", at: at("06:50"), rejected: true}}, now: "09:30", want: Absent},
		{name: "another pupil's event ignored", events: []ev{{dir: "in", at: at("06:50"), pupil: "001234567891"}}, now: "09:30", want: Absent},
		{name: "unknown face ignored", events: []ev{{dir: "in", at: at("06:50"), pupil: wire.UnknownStudent}}, now: "09:30", want: Absent},
		{name: "yesterday's event ignored", events: []ev{{dir: "in", at: at("06:50").Add(-24 * time.Hour)}}, now: "09:30", want: Absent},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			ctx := context.Background()
			for _, e := range tc.events {
				p := e.pupil
				if p == "" {
					p = "001234567890"
				}
				f.event(t, p, e.dir, e.at, e.rejected)
			}
			f.now.Store(at(tc.now).UnixMilli())
			var d Day
			var err error
			if tc.override != "" {
				d, err = f.svc.AddOverride(ctx, "001234567890", "2026-09-07", tc.override, "giấy phép của phụ huynh", "gv-lan")
			} else {
				d, err = f.svc.Recompute(ctx, "001234567890", "2026-09-07")
			}
			if err != nil {
				t.Fatal(err)
			}
			check := func(d Day) {
				t.Helper()
				if d.Status != tc.want {
					t.Errorf("status %s, want %s", d.Status, tc.want)
				}
				if got := hhmm(d.ArrivedAt); got != tc.arrived {
					t.Errorf("arrived %q, want %q", got, tc.arrived)
				}
				if got := hhmm(d.DepartedAt); got != tc.departed {
					t.Errorf("departed %q, want %q", got, tc.departed)
				}
				src := tc.source
				if src == "" {
					src = "auto"
				}
				if d.Source != src {
					t.Errorf("source %s, want %s", d.Source, src)
				}
				if tc.wantGate != "" && d.ArrivalGateID != tc.wantGate {
					t.Errorf("gate %q, want %q", d.ArrivalGateID, tc.wantGate)
				}
			}
			check(d)
			// What was stored is what was returned.
			days, err := f.svc.ClassDay(ctx, "6a", "2026-09-07")
			if err != nil {
				t.Fatal(err)
			}
			for _, s := range days {
				if s.PupilID == "001234567890" {
					check(s)
				}
			}
			if tc.override != "" {
				ovs, err := f.svc.Overrides(ctx, "001234567890", "2026-09-07")
				if err != nil || len(ovs) != 1 || ovs[0].Actor != "gv-lan" || ovs[0].Reason == "" {
					t.Fatalf("override record: %v %+v", err, ovs)
				}
			}
		})
	}
}

func hhmm(ms *int64) string {
	if ms == nil {
		return ""
	}
	return time.UnixMilli(*ms).In(ict).Format("15:04")
}

func status(t *testing.T, db *store.DB, pupil string) string {
	t.Helper()
	var s string
	err := db.R.QueryRow(`SELECT status FROM daily_attendance WHERE pupil_id = ? AND day = '2026-09-07'`, pupil).Scan(&s)
	if err == sql.ErrNoRows {
		return "(none)"
	}
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestListenerAndCutoffTicker(t *testing.T) {
	f := newFixture(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	f.svc.cfg.Tick = 20 * time.Millisecond
	done := make(chan error, 1)
	go func() { done <- f.svc.Run(ctx) }()
	f.now.Store(at("06:30").UnixMilli())
	waitFor(t, "not_yet rows for the day", func() bool {
		return status(t, f.db, "001234567890") == NotYet && status(t, f.db, "001234567891") == NotYet
	})
	// An event reported by ingest updates the pupil's row.
	id := f.event(t, "001234567890", "in", at("07:20"), false)
	f.now.Store(at("07:20").UnixMilli())
	var l ingest.Listener = f.svc
	l.EventStored(ctx, ingest.StoredEvent{Event: wire.Event{EventID: id, SchoolID: "thcs-a", StudentID: "001234567890", Direction: "in", CapturedAt: at("07:20").UnixMilli()}, ClassID: "6a"})
	l.EventStored(ctx, ingest.StoredEvent{Event: wire.Event{SchoolID: "thcs-a", StudentID: wire.UnknownStudent}, Unknown: true})
	waitFor(t, "late after the event", func() bool { return status(t, f.db, "001234567890") == Late })
	// The cut-off passes: the other pupil turns absent, the late one stays.
	f.now.Store(at("09:01").UnixMilli())
	waitFor(t, "absent after the cutoff", func() bool { return status(t, f.db, "001234567891") == Absent })
	if s := status(t, f.db, "001234567890"); s != Late {
		t.Fatalf("late pupil became %s", s)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if cond() {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("timed out waiting for %s", what)
}

func TestAttendanceHTTP(t *testing.T) {
	f := newFixture(t)
	srv := api.NewServer(nil, nil, nil)
	f.svc.Routes(srv.V1)
	ts := httptest.NewServer(srv.Engine)
	defer ts.Close()
	f.event(t, "001234567890", "in", at("06:45"), false)
	f.event(t, wire.UnknownStudent, "in", at("06:46"), false)
	f.now.Store(at("09:30").UnixMilli())

	get := func(path string, want int, out any) {
		t.Helper()
		resp, err := http.Get(ts.URL + "/api/v1" + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != want {
			t.Fatalf("GET %s: %d, want %d", path, resp.StatusCode, want)
		}
		if out != nil {
			if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
				t.Fatal(err)
			}
		}
	}
	var board struct {
		Day    string         `json:"day"`
		Counts map[string]int `json:"counts"`
		Pupils []Day          `json:"pupils"`
	}
	get("/classes/6a/attendance?day=2026-09-07", 200, &board)
	if board.Counts[Present] != 1 || board.Counts[Absent] != 1 || len(board.Pupils) != 2 {
		t.Fatalf("board: %+v", board)
	}
	get("/classes/6a/attendance", 200, &board) // today, school-local
	if board.Day != "2026-09-07" {
		t.Fatalf("default day %s", board.Day)
	}
	get("/classes/6a/attendance?day=07-09-2026", 400, nil)
	get("/classes/nope/attendance", 404, nil)

	resp, err := http.Post(ts.URL+"/api/v1/pupils/001234567891/attendance/2026-09-07/overrides", "application/json",
		strings.NewReader(`{"status":"excused","reason":"ốm, mẹ gọi điện"}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 201 {
		t.Fatalf("override: %d", resp.StatusCode)
	}
	resp, _ = http.Post(ts.URL+"/api/v1/pupils/001234567891/attendance/2026-09-07/overrides", "application/json", strings.NewReader(`{"status":"excused"}`))
	resp.Body.Close()
	if resp.StatusCode != 400 {
		t.Fatalf("override without a reason: %d", resp.StatusCode)
	}
	var pd struct {
		Attendance Day        `json:"attendance"`
		Overrides  []Override `json:"overrides"`
	}
	get("/pupils/001234567891/attendance/2026-09-07", 200, &pd)
	if pd.Attendance.Status != Excused || len(pd.Overrides) != 1 || pd.Overrides[0].Actor != "local" {
		t.Fatalf("pupil day: %+v", pd)
	}

	var evs []EventRow
	get("/schools/thcs-a/events", 200, &evs)
	if len(evs) != 2 || evs[0].StudentID != wire.UnknownStudent || evs[0].ClockSkewMS != 200 {
		t.Fatalf("events: %+v", evs)
	}
	get(fmt.Sprintf("/schools/thcs-a/events?pupil_id=001234567890&from=%d", at("06:00").UnixMilli()), 200, &evs)
	if len(evs) != 1 || evs[0].StudentID != "001234567890" {
		t.Fatalf("filtered events: %+v", evs)
	}
	get("/schools/thcs-a/events?class_id=6a&to="+url.QueryEscape(at("06:00").Format(time.RFC3339)), 200, &evs)
	if len(evs) != 0 {
		t.Fatalf("events before 06:00: %+v", evs)
	}
	get("/schools/thcs-a/events?unknown=1", 200, &evs)
	if len(evs) != 1 {
		t.Fatalf("unknown events: %+v", evs)
	}
	get("/schools/thcs-a/events?from=yesterday", 400, nil)
}
