package app

import (
	"bytes"
	"encoding/json"
	"image"
	"image/jpeg"
	"net/http"
	"strings"
	"testing"
	"time"

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
	const pupil = "079123456789"
	// late_after_min 0 from 00:00: any arrival of the day is late.
	a, ctx, pw := startWiredHub(t,
		`INSERT INTO classes(id, school_id, name, grade, start_time, late_after_min, absent_cutoff)
		VALUES ('c1', 's1', '1A', 1, '00:00', 0, '23:59')`,
		`INSERT INTO gates(id, school_id, name, direction, username, password_hash) VALUES ('g1', 's1', 'Cổng chính', 'in', 'g1', 'x')`,
		`INSERT INTO pupils(id, school_id, class_id, full_name) VALUES ('`+pupil+`', 's1', 'c1', 'Nguyễn Văn An')`)

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
