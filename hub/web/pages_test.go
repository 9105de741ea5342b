package web

import (
	"context"
	"crypto/ecdh"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/diemdanh/diemdanh/hub/ingest"
)

func TestExportDayCSVAndPrint(t *testing.T) {
	f := newFixture(t)
	f.ingestDirect(t, event(pupilAn, "in", time.Now()))
	c := f.client(t)
	c.login("lan")
	day := fmtDay(time.Now())
	resp, body := c.do("GET", "/teacher/class/c1/day.csv?day="+day, nil, nil)
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/csv") {
		t.Fatalf("csv: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	if !strings.HasPrefix(body, "\xEF\xBB\xBF") {
		t.Error("CSV lacks the UTF-8 BOM")
	}
	lines := strings.Split(strings.TrimSpace(body), "\n")
	if len(lines) != 5 {
		t.Fatalf("CSV has %d lines:\n%s", len(lines), body)
	}
	var an, formula string
	for _, l := range lines {
		if strings.HasPrefix(l, pupilAn) {
			an = l
		}
		if strings.HasPrefix(l, pupilFormula) {
			formula = l
		}
	}
	if !strings.Contains(an, "Nguyễn Văn An,Có mặt,present,") || !strings.Contains(an, "Cổng chính") {
		t.Errorf("An's CSV row %q", an)
	}
	if !strings.Contains(formula, `"'=HYPERLINK(`) {
		t.Errorf("formula not neutralised: %q", formula)
	}
	var audits int
	f.db.R.QueryRow(`SELECT COUNT(*) FROM audit_log WHERE action = 'export' AND actor = 'teacher:lan'`).Scan(&audits)
	if audits != 1 {
		t.Errorf("export audited %d times", audits)
	}
	resp, body = c.do("GET", "/teacher/class/c1/day/print?day="+day, nil, nil)
	if resp.StatusCode != 200 || !strings.Contains(body, `<table class="print">`) || !strings.Contains(body, "Nguyễn Văn An") {
		t.Errorf("printable day: %d", resp.StatusCode)
	}
	// Bad day parameter: clear refusal, nothing else.
	resp, _ = c.do("GET", "/teacher/class/c1/day.csv?day=2026-13-45", nil, nil)
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("bad day: %d", resp.StatusCode)
	}
}

func TestTermSummaryAndHistory(t *testing.T) {
	f := newFixture(t)
	loc := time.FixedZone("ICT", 7*3600)
	now := time.Now().In(loc)
	// Find the last two weekdays before today.
	var days []time.Time
	for d := now.AddDate(0, 0, -1); len(days) < 2; d = d.AddDate(0, 0, -1) {
		if d.Weekday() != time.Saturday && d.Weekday() != time.Sunday {
			days = append(days, time.Date(d.Year(), d.Month(), d.Day(), 7, 5, 0, 0, loc))
		}
	}
	// An came on both days; Bình on one and was excused on the other.
	f.ingestDirect(t, event(pupilAn, "in", days[0]))
	f.ingestDirect(t, event(pupilAn, "in", days[1]))
	f.ingestDirect(t, event(pupilBinh, "in", days[0]))
	c := f.client(t)
	c.login("lan")
	resp, _ := c.do("POST", "/teacher/class/c1/override", url.Values{"csrf_token": {c.csrf}, "pupil_id": {pupilBinh},
		"day": {days[1].Format("2006-01-02")}, "status": {"excused"}, "reason": {"giấy phép của phụ huynh"}}, nil)
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("override a past day: %d", resp.StatusCode)
	}
	from, to := days[1].Format("2006-01-02"), days[0].Format("2006-01-02")
	resp, body := c.do("GET", "/teacher/class/c1/term.csv?from="+from+"&to="+to, nil, nil)
	if resp.StatusCode != 200 {
		t.Fatalf("term csv %d", resp.StatusCode)
	}
	rows := map[string]string{}
	for _, l := range strings.Split(strings.TrimPrefix(body, "\xEF\xBB\xBF"), "\n") {
		if len(l) > 12 {
			rows[l[:12]] = l
		}
	}
	// Columns: id, name, present, late, absent, not_yet, excused, days.
	if !strings.HasSuffix(rows[pupilAn], ",2,0,0,0,0,2") {
		t.Errorf("An term %q", rows[pupilAn])
	}
	if !strings.HasSuffix(rows[pupilBinh], ",1,0,0,0,1,2") {
		t.Errorf("Bình term %q", rows[pupilBinh])
	}
	if !strings.HasSuffix(rows[pupilScript], ",0,0,2,0,0,2") {
		t.Errorf("absent pupil term %q", rows[pupilScript])
	}
	resp, body = c.do("GET", "/teacher/class/c1/term?from="+from+"&to="+to, nil, nil)
	if resp.StatusCode != 200 || !strings.Contains(body, `id="term-days">2<`) {
		t.Errorf("term page %d", resp.StatusCode)
	}
	// History: the board of a past day shows that day.
	resp, body = c.do("GET", "/teacher/class/c1?day="+from, nil, nil)
	if resp.StatusCode != 200 || !strings.Contains(body, "giấy phép của phụ huynh") || !strings.Contains(body, `data-live=""`) {
		t.Errorf("history board %d", resp.StatusCode)
	}
	// The parent's 30-day history shows both days.
	p := f.client(t)
	p.login("hoa")
	_, body = p.do("GET", "/parent", nil, nil)
	for _, d := range days {
		if !strings.Contains(body, d.Format("02/01")) {
			t.Errorf("parent history lacks %s", d.Format("02/01"))
		}
	}
}

func TestAdminOverview(t *testing.T) {
	f := newFixture(t)
	f.ingestDirect(t, event(pupilAn, "in", time.Now()))
	unknown := event(pupilAn, "in", time.Now())
	unknown.StudentID = "unknown"
	f.ingestDirect(t, unknown)
	// A malformed payload lands in quarantine through real ingest.
	if _, err := f.ing.Handle(f.ctx, ingest.Message{Topic: "diemdanh/v1/s1/gate/g1/events", Payload: []byte(`{"schema":1,`), ClientID: "g1"}); err != nil {
		t.Fatal(err)
	}
	c := f.client(t)
	c.login("admin")
	resp, body := c.do("GET", "/admin", nil, nil)
	if resp.StatusCode != 200 {
		t.Fatalf("admin %d", resp.StatusCode)
	}
	for _, want := range []string{`data-class="c1"`, `data-class="c2"`, "Cổng chính", "12.5", `class="unknown">1<`,
		"diemdanh/v1/s1/gate/g1/events"} {
		if !strings.Contains(body, want) {
			t.Errorf("overview lacks %q", want)
		}
	}
	// The gate stays offline-marked when ingest says so.
	if !strings.Contains(body, "Trực tuyến") && !strings.Contains(body, "Mất kết nối") {
		t.Error("no gate status label")
	}
	resp, body = c.do("GET", "/admin/enrol", nil, nil)
	if resp.StatusCode != 200 || !strings.Contains(body, "Nguyễn Văn An") || !strings.Contains(body, `id="photos"`) {
		t.Errorf("enrol page %d", resp.StatusCode)
	}
}

func TestRejectRecognition(t *testing.T) {
	f := newFixture(t)
	f.ingestDirect(t, event(pupilAn, "in", time.Now()))
	var ev string
	must(t, f.db.R.QueryRow(`SELECT event_id FROM events WHERE student_id = ?`, pupilAn).Scan(&ev))
	c := f.client(t)
	c.login("lan")
	_, body := c.do("GET", "/teacher/class/c1", nil, nil)
	if !strings.Contains(body, `value="`+ev+`"`) {
		t.Fatal("board lacks the not-this-pupil form")
	}
	resp, _ := c.do("POST", "/teacher/class/c1/reject", url.Values{"csrf_token": {c.csrf}, "event_id": {ev}, "reason": {"em gái sinh đôi"}}, nil)
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("reject %d", resp.StatusCode)
	}
	var rejected int
	var actor string
	f.db.R.QueryRow(`SELECT rejected FROM events WHERE event_id = ?`, ev).Scan(&rejected)
	f.db.R.QueryRow(`SELECT actor FROM recognition_feedback WHERE event_id = ?`, ev).Scan(&actor)
	if rejected != 1 || actor != "teacher:lan" {
		t.Errorf("rejected %d, feedback by %q", rejected, actor)
	}
	_, body = c.do("GET", "/teacher/class/c1", nil, nil)
	if !strings.Contains(body, `id="p-`+pupilAn+`" data-pupil="`+pupilAn+`" data-status="not_yet"`) {
		t.Error("a rejected recognition still counts")
	}
}

func TestLiveDropsSlowClient(t *testing.T) {
	f := newFixture(t)
	l := NewLive(f.web, 2)
	fast, slow := l.Subscribe("c1"), l.Subscribe("c1")
	for i := 0; i < 3; i++ {
		l.Publish("c1", []byte("x"))
		<-fast.C
	}
	select {
	case <-slow.Done:
	default:
		t.Fatal("a client that fell behind was not cut off")
	}
	select {
	case <-fast.Done:
		t.Fatal("a keeping-up client was cut off")
	default:
	}
	if l.Stats().Kicked != 1 {
		t.Errorf("stats %+v", l.Stats())
	}
}

// TestParentPushSubscriptionDelivers: a parent's browser subscription
// (posted as the portal's script does) gets the arrival through the real
// chain ingest → notify → Web Push to a push endpoint on loopback, and the
// payload decrypts with the subscription's keys.
func TestParentPushSubscriptionDelivers(t *testing.T) {
	f := newFixture(t)
	priv, _ := ecdh.P256().GenerateKey(rand.Reader)
	authSecret := make([]byte, 16)
	rand.Read(authSecret)
	var mu sync.Mutex
	var bodies [][]byte
	push := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		bodies = append(bodies, b)
		mu.Unlock()
		w.WriteHeader(http.StatusCreated)
	}))
	defer push.Close()
	c := f.client(t)
	c.login("hoa")
	b64 := base64.RawURLEncoding.EncodeToString
	sub, _ := json.Marshal(map[string]any{"endpoint": push.URL + "/sub/1", "keys": map[string]string{"p256dh": b64(priv.PublicKey().Bytes()), "auth": b64(authSecret)}})
	req, _ := http.NewRequest("POST", f.ts.URL+"/parent/push", strings.NewReader(string(sub)))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-CSRF-Token", c.csrf)
	resp, err := c.hc.Do(req)
	must(t, err)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("subscribe: %d", resp.StatusCode)
	}
	// Without the CSRF header the same request is refused.
	req, _ = http.NewRequest("POST", f.ts.URL+"/parent/push", strings.NewReader(string(sub)))
	req.Header.Set("Content-Type", "application/json")
	resp, err = c.hc.Do(req)
	must(t, err)
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("subscribe without CSRF: %d", resp.StatusCode)
	}
	f.ingestDirect(t, event(pupilAn, "in", time.Now()))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for {
		must(t, f.notify.SyncOnce(ctx))
		mu.Lock()
		n := len(bodies)
		mu.Unlock()
		if n > 0 {
			break
		}
		if ctx.Err() != nil {
			t.Fatal("no push delivered")
		}
		time.Sleep(20 * time.Millisecond)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(bodies) != 1 {
		t.Fatalf("%d pushes", len(bodies))
	}
	pt, err := decryptPush(priv, authSecret, bodies[0])
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(pt), "Con bạn đã đến trường lúc") {
		t.Errorf("push payload %s", pt)
	}
}

func TestPupilChangedPushesRow(t *testing.T) {
	f := newFixture(t)
	cl := f.web.live.Subscribe("c1")
	defer f.web.live.Unsubscribe("c1", cl)
	// A change made elsewhere (e.g. an override through the JSON API).
	must(t, f.web.d.Attendance.Override(f.ctx, pupilBinh, fmtDay(time.Now()), "excused", "họp phụ huynh", "teacher:lan"))
	f.web.PupilChanged(f.ctx, pupilBinh)
	select {
	case m := <-cl.C:
		if !strings.Contains(string(m), `"pupil_id":"`+pupilBinh+`"`) || !strings.Contains(string(m), `"status":"excused"`) {
			t.Errorf("frame %s", m)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("no frame")
	}
}
