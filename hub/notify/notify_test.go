package notify

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"mime"
	"mime/quotedprintable"
	"net/http"
	"net/http/httptest"
	"net/mail"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

func newNotifier(t *testing.T, cfg Config, clk *clock) (*Notifier, func()) {
	t.Helper()
	db := openFixture(t, "")
	n, err := New(context.Background(), cfg, db, testLog(t), clk.Now)
	if err != nil {
		t.Fatal(err)
	}
	return n, func() {}
}

func countRows(t *testing.T, n *Notifier, where string) int {
	t.Helper()
	var k int
	if err := n.db.R.QueryRow(`SELECT COUNT(*) FROM notify_outbox WHERE ` + where).Scan(&k); err != nil {
		t.Fatal(err)
	}
	return k
}

func decodeMail(t *testing.T, raw []byte) (subject, body string, hdr mail.Header) {
	t.Helper()
	msg, err := mail.ReadMessage(strings.NewReader(string(raw)))
	if err != nil {
		t.Fatalf("mail: %v\n%s", err, raw)
	}
	dec := new(mime.WordDecoder)
	subject, err = dec.DecodeHeader(msg.Header.Get("Subject"))
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(quotedprintable.NewReader(msg.Body))
	if err != nil {
		t.Fatal(err)
	}
	return subject, string(b), msg.Header
}

func TestEmailArrivalOncePerDay(t *testing.T) {
	sink := &smtpSink{}
	cfg := Default()
	cfg.Push.Enabled = false
	cfg.SMTP.Addr = startSMTP(t, sink)
	clk := newClock(monday0712)
	n, _ := newNotifier(t, cfg, clk)
	ctx := context.Background()

	insertEvent(t, n.db, pupilAn, "g1", "in", monday0712)
	if err := n.SyncOnce(ctx); err != nil {
		t.Fatal(err)
	}
	// A second arrival the same day (walked out and back in) and a redundant
	// sync must not send a second arrival e-mail.
	clk.Add(3 * time.Minute)
	insertEvent(t, n.db, pupilAn, "g1", "in", clk.Now())
	for i := 0; i < 2; i++ {
		if err := n.SyncOnce(ctx); err != nil {
			t.Fatal(err)
		}
	}
	mails := sink.Mails()
	if len(mails) != 1 {
		t.Fatalf("got %d e-mails, want exactly 1", len(mails))
	}
	subject, body, hdr := decodeMail(t, mails[0].Data)
	if mails[0].To != "hoa@example.com" {
		t.Errorf("to = %q", mails[0].To)
	}
	if !strings.Contains(body, "Con bạn đã đến trường lúc 07:12") || !strings.Contains(body, "Nguyễn Văn An") {
		t.Errorf("body = %q", body)
	}
	if subject != "Nguyễn Văn An đã đến trường" {
		t.Errorf("subject = %q", subject)
	}
	if !strings.Contains(hdr.Get("Content-Type"), "UTF-8") || hdr.Get("Message-ID") == "" {
		t.Errorf("headers: %v", hdr)
	}
	// Departure is a separate rule; English when the guardian chose it.
	if err := n.SetPrefs(ctx, 1, "en", map[string]bool{ChannelEmail: true}); err != nil {
		t.Fatal(err)
	}
	clk.Set(time.Date(2026, 11, 23, 16, 30, 0, 0, ict))
	insertEvent(t, n.db, pupilAn, "g2", "out", clk.Now())
	if err := n.SyncOnce(ctx); err != nil {
		t.Fatal(err)
	}
	mails = sink.Mails()
	if len(mails) != 2 {
		t.Fatalf("got %d e-mails after departure, want 2", len(mails))
	}
	_, body, _ = decodeMail(t, mails[1].Data)
	if !strings.Contains(body, "Your child left school at 16:30") {
		t.Errorf("departure body = %q", body)
	}
	if s := n.Stats(); s.Sent != 2 || s.NoChannel != 0 {
		t.Errorf("stats = %+v", s)
	}
}

func TestNoChannelGuardianIsQuiet(t *testing.T) {
	sink := &smtpSink{}
	cfg := Default()
	cfg.SMTP.Addr = startSMTP(t, sink)
	clk := newClock(monday0712)
	n, _ := newNotifier(t, cfg, clk)
	insertEvent(t, n.db, pupilBinh, "g1", "in", monday0712) // guardian with no e-mail, phone or push
	if err := n.SyncOnce(context.Background()); err != nil {
		t.Fatal(err)
	}
	if k := countRows(t, n, "1"); k != 0 {
		t.Errorf("%d outbox rows for a guardian with no channel", k)
	}
	if n.Stats().NoChannel != 1 || len(sink.Mails()) != 0 {
		t.Errorf("stats %+v, mails %d", n.Stats(), len(sink.Mails()))
	}
	// Turning the e-mail channel off for An's guardian also means no message.
	if err := n.SetPrefs(context.Background(), 1, "vi", map[string]bool{ChannelEmail: false, ChannelPush: false}); err != nil {
		t.Fatal(err)
	}
	insertEvent(t, n.db, pupilAn, "g1", "in", monday0712)
	if err := n.SyncOnce(context.Background()); err != nil {
		t.Fatal(err)
	}
	if len(sink.Mails()) != 0 || n.Stats().NoChannel != 2 {
		t.Errorf("opted-out guardian got mail (%d) / stats %+v", len(sink.Mails()), n.Stats())
	}
}

func TestEmailRetriesWithBackoff(t *testing.T) {
	sink := &smtpSink{refuse: true}
	cfg := Default()
	cfg.Push.Enabled = false
	cfg.SMTP.Addr = startSMTP(t, sink)
	clk := newClock(monday0712)
	n, _ := newNotifier(t, cfg, clk)
	ctx := context.Background()
	insertEvent(t, n.db, pupilAn, "g1", "in", monday0712)
	if err := n.SyncOnce(ctx); err != nil {
		t.Fatal(err)
	}
	var attempts int
	var next int64
	n.db.R.QueryRow(`SELECT attempts, next_at FROM notify_outbox`).Scan(&attempts, &next)
	if attempts != 1 || next != clk.Now().Add(cfg.BackoffBase).UnixMilli() {
		t.Fatalf("after a refusal: attempts %d next_at %d", attempts, next)
	}
	// Not due yet: nothing happens.
	if err := n.SyncOnce(ctx); err != nil {
		t.Fatal(err)
	}
	n.db.R.QueryRow(`SELECT attempts FROM notify_outbox`).Scan(&attempts)
	if attempts != 1 {
		t.Fatalf("retried before the backoff: %d", attempts)
	}
	if got := n.backoff(30); got != cfg.BackoffMax {
		t.Errorf("backoff not capped: %v", got)
	}
	sink.mu.Lock()
	sink.refuse = false
	sink.mu.Unlock()
	clk.Add(cfg.BackoffBase)
	if err := n.SyncOnce(ctx); err != nil {
		t.Fatal(err)
	}
	if len(sink.Mails()) != 1 || countRows(t, n, "status = 'sent' AND attempts = 2") != 1 {
		t.Fatalf("mails %d; rows sent after retry %d", len(sink.Mails()), countRows(t, n, "status = 'sent'"))
	}
}

func TestWebhookSignedAndRetried(t *testing.T) {
	const secret = "a-very-secret-key-1234"
	var mu sync.Mutex
	var got []map[string]any
	var deliveries []string
	calls := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		ts := r.Header.Get(HeaderTimestamp)
		// Verify independently of the package's Sign.
		mac := hmac.New(sha256.New, []byte(secret))
		mac.Write([]byte(ts + "."))
		mac.Write(body)
		want := "sha256=" + hex.EncodeToString(mac.Sum(nil))
		if r.Header.Get(HeaderSignature) != want {
			http.Error(w, "bad signature", http.StatusUnauthorized)
			t.Errorf("bad signature %q", r.Header.Get(HeaderSignature))
			return
		}
		if _, err := strconv.ParseInt(ts, 10, 64); err != nil {
			t.Errorf("timestamp %q", ts)
		}
		mu.Lock()
		defer mu.Unlock()
		calls++
		if calls <= 2 {
			http.Error(w, "gateway busy", http.StatusServiceUnavailable)
			return
		}
		var m map[string]any
		if err := json.Unmarshal(body, &m); err != nil {
			t.Errorf("body: %v", err)
		}
		got = append(got, m)
		deliveries = append(deliveries, r.Header.Get(HeaderDelivery))
	}))
	defer srv.Close()
	cfg := Default()
	cfg.Push.Enabled = false
	cfg.Webhook = WebhookConfig{URL: srv.URL, Secret: secret}
	clk := newClock(monday0712)
	n, _ := newNotifier(t, cfg, clk)
	ctx := context.Background()
	insertEvent(t, n.db, pupilAn, "g1", "in", monday0712)
	for i := 0; i < 4; i++ {
		if err := n.SyncOnce(ctx); err != nil {
			t.Fatal(err)
		}
		clk.Add(time.Minute)
	}
	mu.Lock()
	defer mu.Unlock()
	if calls != 3 || len(got) != 1 {
		t.Fatalf("calls %d, accepted %d; want 3 calls (2 refused) and 1 delivery", calls, len(got))
	}
	m := got[0]
	if m["rule"] != "arrival" || m["pupil_id"] != pupilAn || m["time"] != "07:12" ||
		m["guardian"].(map[string]any)["phone"] != "0901234567" || !strings.Contains(m["text"].(string), "07:12") {
		t.Errorf("payload %v", m)
	}
	if !strings.HasPrefix(deliveries[0], "arrival:"+pupilAn+":2026-11-23:") {
		t.Errorf("delivery id %q", deliveries[0])
	}
	// A wrong secret must not verify.
	if err := Verify("other-secret-000000", "1", Sign(secret, 1, []byte("x")), []byte("x"), time.Unix(1, 0), time.Minute); err == nil {
		t.Error("Verify accepted a wrong secret")
	}
}

func TestWebhookPermanentFailure(t *testing.T) {
	calls := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls++
		http.Error(w, "no such number", http.StatusBadRequest)
	}))
	defer srv.Close()
	cfg := Default()
	cfg.Push.Enabled = false
	cfg.Webhook = WebhookConfig{URL: srv.URL, Secret: "0123456789abcdef"}
	clk := newClock(monday0712)
	n, _ := newNotifier(t, cfg, clk)
	insertEvent(t, n.db, pupilAn, "g1", "in", monday0712)
	for i := 0; i < 3; i++ {
		n.SyncOnce(context.Background())
		clk.Add(time.Hour)
	}
	if calls != 1 || countRows(t, n, "status = 'failed'") != 1 {
		t.Errorf("calls %d, failed rows %d", calls, countRows(t, n, "status = 'failed'"))
	}
}

func TestNotArrivedByCutoff(t *testing.T) {
	sink := &smtpSink{}
	cfg := Default()
	cfg.Push.Enabled = false
	cfg.SMTP.Addr = startSMTP(t, sink)
	clk := newClock(time.Date(2026, 11, 23, 8, 59, 0, 0, ict))
	n, _ := newNotifier(t, cfg, clk)
	mustExec(t, n.db, `INSERT INTO guardians(id, pupil_id, full_name, email) VALUES (3, ?, 'Trần Văn Nam', 'nam@example.com')`, pupilBinh)
	ctx := context.Background()
	insertEvent(t, n.db, pupilAn, "g1", "in", time.Date(2026, 11, 23, 7, 5, 0, 0, ict))
	if err := n.SyncOnce(ctx); err != nil { // An's arrival mail
		t.Fatal(err)
	}
	if err := n.CheckCutoffs(ctx); err != nil { // before the cut-off: nothing
		t.Fatal(err)
	}
	if countRows(t, n, "rule = 'not_arrived'") != 0 {
		t.Fatal("not-arrived before the cut-off")
	}
	clk.Set(time.Date(2026, 11, 23, 9, 1, 0, 0, ict))
	for i := 0; i < 2; i++ {
		if err := n.CheckCutoffs(ctx); err != nil {
			t.Fatal(err)
		}
		if err := n.SyncOnce(ctx); err != nil {
			t.Fatal(err)
		}
	}
	var notArrived []string
	for _, m := range sink.Mails() {
		s, b, _ := decodeMail(t, m.Data)
		if strings.Contains(s, "chưa đến trường") {
			notArrived = append(notArrived, m.To+" "+b)
		}
	}
	if len(notArrived) != 1 || !strings.HasPrefix(notArrived[0], "nam@example.com") || !strings.Contains(notArrived[0], "Đến 09:00") {
		t.Fatalf("not-arrived mails: %q", notArrived)
	}
	// Per class: switched off, nothing for the next day.
	if err := n.SetClassRule(ctx, "c1", false, ""); err != nil {
		t.Fatal(err)
	}
	clk.Set(time.Date(2026, 11, 24, 9, 1, 0, 0, ict))
	n.CheckCutoffs(ctx)
	if k := countRows(t, n, "rule = 'not_arrived' AND dedupe_key LIKE '%2026-11-24%'"); k != 0 {
		t.Errorf("class rule off but %d messages", k)
	}
	// Per class cut-off time: 10:30 on Wednesday.
	n.SetClassRule(ctx, "c1", true, "10:30")
	clk.Set(time.Date(2026, 11, 25, 10, 0, 0, 0, ict))
	n.CheckCutoffs(ctx)
	if k := countRows(t, n, "rule = 'not_arrived' AND dedupe_key LIKE '%2026-11-25%'"); k != 0 {
		t.Errorf("before the class's own cut-off: %d", k)
	}
	clk.Set(time.Date(2026, 11, 25, 10, 31, 0, 0, ict))
	n.CheckCutoffs(ctx)
	if k := countRows(t, n, "rule = 'not_arrived' AND dedupe_key LIKE '%2026-11-25%'"); k != 2 {
		t.Errorf("after the class's own cut-off: %d rows, want 2 (both pupils)", k)
	}
	// A pupil excused by the teacher is not reported.
	mustExec(t, n.db, `INSERT INTO attendance_overrides(pupil_id, day, status, reason, actor, created_at)
		VALUES (?, '2026-11-26', 'excused', 'ốm', 'teacher:lan', 0)`, pupilBinh)
	clk.Set(time.Date(2026, 11, 26, 10, 31, 0, 0, ict))
	n.CheckCutoffs(ctx)
	if k := countRows(t, n, "rule = 'not_arrived' AND dedupe_key LIKE '%2026-11-26%' AND pupil_id = '"+pupilBinh+"'"); k != 0 {
		t.Errorf("excused pupil reported as not arrived")
	}
	if k := countRows(t, n, "rule = 'not_arrived' AND dedupe_key LIKE '%2026-11-26%' AND pupil_id = '"+pupilAn+"'"); k != 1 {
		t.Errorf("absent An: %d rows", k)
	}
}

func TestConfigValidate(t *testing.T) {
	for name, mut := range map[string]func(*Config){
		"notify.workers":        func(c *Config) { c.Workers = 0 },
		"notify.webhook.secret": func(c *Config) { c.Webhook.URL = "http://x"; c.Webhook.Secret = "short" },
		"notify.smtp.from":      func(c *Config) { c.SMTP.Addr = "x:25"; c.SMTP.From = "" },
		"notify.school_days":    func(c *Config) { c.SchoolDays = []int{7} },
	} {
		c := Default()
		mut(&c)
		err := c.Validate("notify.")
		if err == nil || !strings.HasPrefix(err.Error(), name) {
			t.Errorf("%s: got %v", name, err)
		}
	}
	c := Default()
	if err := c.Validate("notify."); err != nil {
		t.Error(err)
	}
}
