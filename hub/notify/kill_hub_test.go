package notify_test

import (
	"bytes"
	"context"
	"fmt"
	"image"
	"image/jpeg"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/mail"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/emersion/go-smtp"
	"golang.org/x/crypto/bcrypt"

	"github.com/diemdanh/diemdanh/hub/notify"
	"github.com/diemdanh/diemdanh/hub/store"
	"github.com/diemdanh/diemdanh/models/conf"
	"github.com/diemdanh/diemdanh/models/match"
	"github.com/diemdanh/diemdanh/models/wire"
)

// ---- loopback receivers that record every raw delivery -------------------

// holdSMTP is a go-smtp server that holds each transfer in MAIL FROM for
// hold (so a kill lands mid-transfer) and records every accepted message.
type holdSMTP struct {
	hold   time.Duration
	mu     sync.Mutex
	calls  int // MAIL FROM seen
	active int // transfers inside the hold
	mails  [][]byte
}

func (s *holdSMTP) NewSession(*smtp.Conn) (smtp.Session, error) { return &holdSession{s: s}, nil }

type holdSession struct{ s *holdSMTP }

func (h *holdSession) Reset()        {}
func (h *holdSession) Logout() error { return nil }
func (h *holdSession) Mail(string, *smtp.MailOptions) error {
	h.s.mu.Lock()
	h.s.calls++
	h.s.active++
	h.s.mu.Unlock()
	time.Sleep(h.s.hold)
	h.s.mu.Lock()
	h.s.active--
	h.s.mu.Unlock()
	return nil
}
func (h *holdSession) Rcpt(string, *smtp.RcptOptions) error { return nil }
func (h *holdSession) Data(r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	h.s.mu.Lock()
	h.s.mails = append(h.s.mails, b)
	h.s.mu.Unlock()
	return nil
}

// hookRecv is a signed-webhook receiver: it verifies the signature, holds
// the request for hold, then accepts (records) it and answers 200.
type hookRecv struct {
	secret string
	hold   time.Duration
	mu     sync.Mutex
	calls  int
	active int
	bad    int
	got    []string // X-DiemDanh-Delivery of each accepted request
}

func (h *hookRecv) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	h.mu.Lock()
	h.calls++
	h.active++
	h.mu.Unlock()
	time.Sleep(h.hold)
	h.mu.Lock()
	defer h.mu.Unlock()
	h.active--
	if err := notify.Verify(h.secret, r.Header.Get(notify.HeaderTimestamp), r.Header.Get(notify.HeaderSignature), body, time.Now(), 5*time.Minute); err != nil {
		h.bad++
		http.Error(w, "bad signature", http.StatusUnauthorized)
		return
	}
	h.got = append(h.got, r.Header.Get(notify.HeaderDelivery))
	w.WriteHeader(http.StatusOK)
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// TestKillRealHubWithPendingNotifications runs the real binary: it builds
// bin/hub, starts `hub run --config` (free ports, data in a temp folder,
// e-mail to a go-smtp server on loopback, signed webhook to a loopback
// receiver), a gate publishes 12 arrivals over MQTT (QoS 1, the gate's
// real credentials), and the hub is killed with SIGKILL while a delivery
// is in flight (each receiver holds a transfer 400 ms). After a restart
// every guardian has exactly one e-mail and one webhook once deduplicated
// on the stable id (e-mail Message-ID, X-DiemDanh-Delivery).
//
// Exactly once, precisely: the outbox marks a row sent right after the
// channel accepted it, so a kill between the receiver's acceptance and
// that commit makes the restarted hub send the same message again, with
// the same id. With one delivery worker at most one message is in flight
// at the kill, so at most one raw duplicate may exist; the test counts raw
// duplicates, allows at most that one, and requires every id exactly once
// after deduplication.
func TestKillRealHubWithPendingNotifications(t *testing.T) {
	const pupils = 12
	const gatePw = "gate-secret-123"
	const secret = "webhook-secret-0123456789"
	bin := filepath.Join(t.TempDir(), "hub")
	if err := conf.BuildBinary("./hub", bin); err != nil {
		t.Fatal(err)
	}

	// The hub's database, created and seeded before the first start.
	data := t.TempDir()
	ctx := context.Background()
	db, err := store.Open(ctx, filepath.Join(data, "hub.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	exec1 := func(q string, args ...any) {
		t.Helper()
		if _, err := db.W.Exec(q, args...); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	gh, _ := bcrypt.GenerateFromPassword([]byte(gatePw), bcrypt.MinCost)
	exec1(`INSERT INTO schools(id, name) VALUES ('s1', 'Trường Tiểu học Kim Đồng')`)
	exec1(`INSERT INTO classes(id, school_id, name, grade) VALUES ('c1', 's1', '1A', 1)`)
	exec1(`INSERT INTO notify_class_rules(class_id, not_arrived_enabled) VALUES ('c1', 0)`) // arrivals only
	exec1(`INSERT INTO gates(id, school_id, name, direction, username, password_hash) VALUES ('g1', 's1', 'Cổng chính', 'in', 'g1', ?)`, string(gh))
	for i := 0; i < pupils; i++ {
		id := fmt.Sprintf("0990000000%02d", i)
		exec1(`INSERT INTO pupils(id, school_id, class_id, full_name) VALUES (?, 's1', 'c1', ?)`, id, fmt.Sprintf("Học sinh %d", i))
		exec1(`INSERT INTO guardians(pupil_id, full_name, email, phone) VALUES (?, 'PH', ?, ?)`, id,
			fmt.Sprintf("ph%d@example.com", i), fmt.Sprintf("09000000%02d", i))
	}

	sink := &holdSMTP{hold: 400 * time.Millisecond}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := smtp.NewServer(sink)
	srv.Domain = "localhost"
	go srv.Serve(l)
	defer srv.Close()
	hook := &hookRecv{secret: secret, hold: 400 * time.Millisecond}
	hs := httptest.NewServer(hook)
	defer hs.Close()

	httpAddr, mqttAddr := freeAddr(t), freeAddr(t)
	cfgPath := filepath.Join(t.TempDir(), "hub.yaml")
	cfg := fmt.Sprintf(`log: {level: info}
data_dir: %s
http: {addr: "%s"}
broker: {listen: "%s"}
backup: {enabled: false}
notify:
  workers: 1
  poll: 200ms
  backoff_base: 200ms
  backoff_max: 1s
  smtp: {addr: "%s", from: "diemdanh@localhost"}
  webhook: {url: "%s/hook"}
  push: {enabled: false}
`, data, httpAddr, mqttAddr, l.Addr().String(), hs.URL)
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	var logMu sync.Mutex
	start := func() *exec.Cmd {
		t.Helper()
		cmd := exec.Command(bin, "run", "--config", cfgPath)
		cmd.Env = append(os.Environ(), "DIEMDANH_WEBHOOK_SECRET="+secret)
		w := writerFunc(func(p []byte) (int, error) { logMu.Lock(); defer logMu.Unlock(); return logs.Write(p) })
		cmd.Stdout, cmd.Stderr = w, w
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(60 * time.Second)
		for {
			resp, err := http.Get("http://" + httpAddr + "/healthz")
			if err == nil {
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					return cmd
				}
			}
			if time.Now().After(deadline) {
				cmd.Process.Kill()
				cmd.Wait()
				logMu.Lock()
				defer logMu.Unlock()
				t.Fatalf("hub not healthy: %v\n%s", err, logs.String())
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	dump := func() {
		logMu.Lock()
		defer logMu.Unlock()
		t.Logf("hub output:\n%s", logs.String())
	}
	hub := start()
	killed := false
	defer func() {
		if !killed {
			hub.Process.Kill()
			hub.Wait()
		}
	}()

	// A gate publishes the arrivals over MQTT (QoS 1).
	var jb bytes.Buffer
	_ = jpeg.Encode(&jb, image.NewGray(image.Rect(0, 0, 32, 32)), nil)
	gate := paho.NewClient(paho.NewClientOptions().AddBroker("tcp://" + mqttAddr).SetClientID("g1").SetUsername("g1").
		SetPassword(gatePw).SetCleanSession(false).SetAutoReconnect(false).SetConnectTimeout(10 * time.Second).SetProtocolVersion(4))
	if tok := gate.Connect(); !tok.WaitTimeout(20*time.Second) || tok.Error() != nil {
		dump()
		t.Fatalf("gate connect: %v", tok.Error())
	}
	now := time.Now()
	for i := 0; i < pupils; i++ {
		ev := wire.Event{Schema: wire.SchemaVersion, EventID: wire.NewEventID(), SchoolID: "s1", GateID: "g1",
			Direction: wire.DirectionIn, StudentID: fmt.Sprintf("0990000000%02d", i), CapturedAt: now.Add(time.Duration(i) * time.Second).UnixMilli(),
			Distance: 0.33, Margin: 0.11, FramesUsed: 4, Quality: match.Quality{Sharpness: 100, Brightness: 120},
			Model: match.ModelID{Name: "dlib_resnet", Version: "1"}, GalleryVer: 1, FaceJPEG: jb.Bytes()}
		b, err := ev.Encode()
		if err != nil {
			t.Fatal(err)
		}
		if tok := gate.Publish(wire.EventTopic("s1", "g1"), 1, false, b); !tok.WaitTimeout(20*time.Second) || tok.Error() != nil {
			t.Fatalf("publish: %v", tok.Error())
		}
	}
	gate.Disconnect(100)
	count := func(q string) int {
		t.Helper()
		var n int
		if err := db.R.QueryRow(q).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	for deadline := time.Now().Add(30 * time.Second); count(`SELECT COUNT(*) FROM events WHERE student_id IS NOT NULL`) != pupils; {
		if time.Now().After(deadline) {
			dump()
			t.Fatalf("%d events stored, want %d", count(`SELECT COUNT(*) FROM events WHERE student_id IS NOT NULL`), pupils)
		}
		time.Sleep(20 * time.Millisecond)
	}

	// The notifier turns stored events into outbox rows by a cursor scan,
	// shortly after the commit; wait for all of them so the kill tests
	// delivery, not enqueueing (which the cursor makes restart-safe anyway).
	for deadline := time.Now().Add(30 * time.Second); count(`SELECT COUNT(*) FROM notify_outbox`) != 2*pupils; {
		if time.Now().After(deadline) {
			dump()
			t.Fatalf("%d outbox rows, want %d", count(`SELECT COUNT(*) FROM notify_outbox`), 2*pupils)
		}
		time.Sleep(5 * time.Millisecond)
	}

	// Kill -9 while a delivery is in flight, after a few went through.
	deadline := time.Now().Add(60 * time.Second)
	for {
		sink.mu.Lock()
		started, active := sink.calls, sink.active
		sink.mu.Unlock()
		hook.mu.Lock()
		started += hook.calls
		active += hook.active
		hook.mu.Unlock()
		if started >= 7 && active > 0 {
			break
		}
		if time.Now().After(deadline) {
			dump()
			t.Fatalf("the hub started only %d deliveries", started)
		}
		time.Sleep(5 * time.Millisecond)
	}
	if err := hub.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	hub.Wait()
	killed = true
	rows := count(`SELECT COUNT(*) FROM notify_outbox`)
	pending := count(`SELECT COUNT(*) FROM notify_outbox WHERE status <> 'sent'`)
	t.Logf("killed -9 with %d of %d outbox rows not yet sent", pending, rows)
	if rows != 2*pupils {
		dump()
		t.Fatalf("%d outbox rows, want %d (an e-mail and a webhook per guardian)", rows, 2*pupils)
	}
	if pending < 2 {
		t.Fatalf("the kill came too late to test anything (%d pending)", pending)
	}

	hub = start()
	killed = false
	deadline = time.Now().Add(90 * time.Second)
	for count(`SELECT COUNT(*) FROM notify_outbox WHERE status = 'sent'`) != 2*pupils {
		if time.Now().After(deadline) {
			dump()
			t.Fatalf("only %d of %d sent after restart", count(`SELECT COUNT(*) FROM notify_outbox WHERE status = 'sent'`), 2*pupils)
		}
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(time.Second) // would catch a late extra delivery
	if err := hub.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	hub.Wait()
	killed = true

	sink.mu.Lock()
	mails := append([][]byte(nil), sink.mails...)
	sink.mu.Unlock()
	hook.mu.Lock()
	deliveries := append([]string(nil), hook.got...)
	bad := hook.bad
	hook.mu.Unlock()
	if bad != 0 {
		t.Errorf("%d webhook requests with a bad signature", bad)
	}
	mailIDs := map[string]int{}
	perRcpt := map[string]map[string]bool{}
	for _, raw := range mails {
		m, err := mail.ReadMessage(bytes.NewReader(raw))
		if err != nil {
			t.Fatalf("bad mail: %v", err)
		}
		id, to := m.Header.Get("Message-ID"), m.Header.Get("To")
		if id == "" {
			t.Fatal("mail without Message-ID")
		}
		mailIDs[id]++
		if perRcpt[to] == nil {
			perRcpt[to] = map[string]bool{}
		}
		perRcpt[to][id] = true
	}
	hookIDs := map[string]int{}
	for _, id := range deliveries {
		if id == "" {
			t.Fatal("webhook without " + notify.HeaderDelivery)
		}
		hookIDs[id]++
	}
	dups := (len(mails) - len(mailIDs)) + (len(deliveries) - len(hookIDs))
	t.Logf("raw: %d e-mails (%d distinct), %d webhooks (%d distinct); %d raw duplicate(s) from the crash window",
		len(mails), len(mailIDs), len(deliveries), len(hookIDs), dups)
	if len(mailIDs) != pupils || len(hookIDs) != pupils {
		t.Errorf("distinct deliveries: %d e-mails, %d webhooks; want %d each", len(mailIDs), len(hookIDs), pupils)
	}
	for i := 0; i < pupils; i++ {
		to := fmt.Sprintf("ph%d@example.com", i)
		found := 0
		for rcpt, ids := range perRcpt {
			if a, err := mail.ParseAddress(rcpt); err == nil && a.Address == to {
				found += len(ids)
			}
		}
		if found != 1 {
			t.Errorf("%s got %d distinct messages, want exactly 1", to, found)
		}
	}
	if dups > 1 {
		t.Errorf("%d raw duplicates; with one worker at most the one in-flight message may be sent twice", dups)
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }
