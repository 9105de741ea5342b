package app

import (
	"bytes"
	"context"
	"encoding/json"
	"image"
	"image/jpeg"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/diemdanh/diemdanh/hub/auth"
	"github.com/diemdanh/diemdanh/hub/ingest"
	"github.com/diemdanh/diemdanh/models/match"
	"github.com/diemdanh/diemdanh/models/wire"
)

// TestBoardStatusIsDailyAttendance runs the wired hub (hub/attendance,
// hub/ingest, hub/web, hub/auth and the JSON API together) and checks that
// the live board shows exactly what hub/attendance stores in
// daily_attendance — for a late arrival (the one rule for "late" is
// attendance's) and for an override made through the JSON API (which
// reaches an open board through attendance's OnChange hook, no reload).
func TestBoardStatusIsDailyAttendance(t *testing.T) {
	cfg := testConfig(t)
	cfg.Web.CookieSecure = false
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	a, err := New(ctx, cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	const pupil = "079123456789"
	exec := func(q string, args ...any) {
		t.Helper()
		if _, err := a.DB.W.Exec(q, args...); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	// late_after_min 0 from 00:00: any arrival of the day is late.
	exec(`INSERT INTO schools(id, name) VALUES ('s1', 'Trường Tiểu học Kim Đồng')`)
	exec(`INSERT INTO classes(id, school_id, name, grade, start_time, late_after_min, absent_cutoff)
		VALUES ('c1', 's1', '1A', 1, '00:00', 0, '23:59')`)
	exec(`INSERT INTO gates(id, school_id, name, direction, username, password_hash) VALUES ('g1', 's1', 'Cổng chính', 'in', 'g1', 'x')`)
	exec(`INSERT INTO pupils(id, school_id, class_id, full_name) VALUES (?, 's1', 'c1', 'Nguyễn Văn An')`, pupil)
	const pw = "mat-khau-12345"
	if _, _, err := a.Mods.Auth.CreateAccount(ctx, "test", auth.NewAccount{Username: "quantri", Password: pw,
		Role: auth.RoleAdmin, SchoolID: "s1", FullName: "Quản trị"}); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	defer func() {
		cancel()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			t.Error("shutdown hung")
		}
	}()
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := http.Get(a.BaseURL() + "/healthz")
		if err == nil {
			resp.Body.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("hub not serving: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}

	board := a.Mods.Web.Live().Subscribe("c1")
	defer a.Mods.Web.Live().Unsubscribe("c1", board)
	type row struct {
		PupilID string `json:"pupil_id"`
		Status  string `json:"status"`
		Arrived string `json:"arrived"`
		Manual  bool   `json:"manual"`
		Reason  string `json:"reason"`
	}
	// waitRow reads board frames until one shows status (within 2 s).
	waitRow := func(status string) row {
		t.Helper()
		timeout := time.After(2 * time.Second)
		for {
			select {
			case fr := <-board.C:
				s := string(fr)
				i := strings.Index(s, "data: ")
				var r row
				if i < 0 || json.Unmarshal([]byte(strings.TrimSpace(s[i+6:])), &r) != nil {
					t.Fatalf("bad frame %q", s)
				}
				if r.PupilID == pupil && r.Status == status {
					return r
				}
			case <-timeout:
				t.Fatalf("board never showed %s within 2 s", status)
			}
		}
	}
	stored := func(day string) (string, string) {
		t.Helper()
		var st, src string
		if err := a.DB.R.QueryRow(`SELECT status, source FROM daily_attendance WHERE pupil_id = ? AND day = ?`, pupil, day).Scan(&st, &src); err != nil {
			t.Fatalf("daily_attendance: %v", err)
		}
		return st, src
	}

	// 1. A late arrival.
	now := time.Now()
	day := now.In(time.FixedZone("ICT", 7*3600)).Format(time.DateOnly)
	var jb bytes.Buffer
	_ = jpeg.Encode(&jb, image.NewGray(image.Rect(0, 0, 32, 32)), nil)
	ev := wire.Event{Schema: wire.SchemaVersion, EventID: wire.NewEventID(), SchoolID: "s1", GateID: "g1",
		Direction: wire.DirectionIn, StudentID: pupil, CapturedAt: now.UnixMilli(), Distance: 0.33, Margin: 0.11, FramesUsed: 4,
		Quality: match.Quality{Sharpness: 100, Brightness: 120}, Model: match.ModelID{Name: "dlib_resnet", Version: "1"},
		GalleryVer: 1, FaceJPEG: jb.Bytes()}
	payload, err := ev.Encode()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.Mods.MQTT.Ingest.Handle(ctx, ingest.Message{Topic: wire.EventTopic("s1", "g1"), Payload: payload, ClientID: "g1"}); err != nil {
		t.Fatal(err)
	}
	r := waitRow("late")
	if st, src := stored(day); st != r.Status || src != "auto" || r.Manual || r.Arrived == "" {
		t.Fatalf("board %+v, daily_attendance %s/%s", r, st, src)
	}

	// 2. An override through the JSON API reaches the open board.
	body := `{"status":"excused","reason":"Ốm, mẹ xin phép"}`
	req, _ := http.NewRequest("POST", a.BaseURL()+"/api/v1/pupils/"+pupil+"/attendance/"+day+"/overrides", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.SetBasicAuth("quantri", pw)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("override: HTTP %d", resp.StatusCode)
	}
	r = waitRow("excused")
	if st, src := stored(day); st != r.Status || src != "manual" || !r.Manual || r.Reason != "Ốm, mẹ xin phép" {
		t.Fatalf("board %+v, daily_attendance %s/%s", r, st, src)
	}
}
