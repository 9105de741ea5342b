package notify

import (
	"context"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/diemdanh/diemdanh/hub/store"
	"github.com/diemdanh/diemdanh/models/wire"
)

const (
	pupilAn   = "012345678901"
	pupilBinh = "012345678902"
)

var ict = time.FixedZone("ICT", 7*3600)

// monday0712 is a school day, 07:12 in Hà Nội.
var monday0712 = time.Date(2026, 11, 23, 7, 12, 0, 0, ict)

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time         { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Add(d time.Duration)    { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }
func (c *clock) Set(t time.Time)        { c.mu.Lock(); c.t = t; c.mu.Unlock() }
func newClock(t time.Time) *clock       { return &clock{t: t} }
func testLog(t testing.TB) *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }
func mustExec(t testing.TB, db *store.DB, q string, args ...any) {
	t.Helper()
	if _, err := db.W.Exec(q, args...); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
}

// openFixture opens a real SQLite database with one school, one class,
// two gates and two pupils: An has a guardian with e-mail and phone,
// Bình's guardian has no address at all.
func openFixture(t testing.TB, path string) *store.DB {
	t.Helper()
	if path == "" {
		path = filepath.Join(t.TempDir(), "hub.db")
	}
	db, err := store.Open(context.Background(), path, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	mustExec(t, db, `INSERT INTO schools(id, name) VALUES ('s1', 'Trường Tiểu học Kim Đồng')`)
	mustExec(t, db, `INSERT INTO classes(id, school_id, name, grade, absent_cutoff) VALUES ('c1', 's1', '1A', 1, '09:00')`)
	mustExec(t, db, `INSERT INTO gates(id, school_id, name, direction, username, password_hash) VALUES
		('g1', 's1', 'Cổng chính', 'in', 'g1', 'x'), ('g2', 's1', 'Cổng sau', 'out', 'g2', 'x')`)
	mustExec(t, db, `INSERT INTO pupils(id, school_id, class_id, full_name) VALUES (?, 's1', 'c1', 'Nguyễn Văn An'), (?, 's1', 'c1', 'Trần Thị Bình')`, pupilAn, pupilBinh)
	mustExec(t, db, `INSERT INTO guardians(id, pupil_id, full_name, phone, email, relation) VALUES
		(1, ?, 'Nguyễn Thị Hoa', '0901234567', 'hoa@example.com', 'mother'),
		(2, ?, 'Trần Văn Nam', '', '', 'father')`, pupilAn, pupilBinh)
	return db
}

// insertEvent stores an event the way hub/ingest does (one row in events).
func insertEvent(t testing.TB, db *store.DB, pupil, gate, dir string, captured time.Time) string {
	t.Helper()
	id := wire.NewEventID()
	mustExec(t, db, `INSERT INTO events(event_id, school_id, gate_id, direction, student_id, captured_at, received_at,
		distance, margin, frames_used, model) VALUES (?, 's1', ?, ?, ?, ?, ?, 0.3, 0.1, 3, 'dlib@1')`,
		id, gate, dir, pupil, captured.UnixMilli(), time.Now().UnixMilli())
	return id
}

// ---- loopback SMTP server (github.com/emersion/go-smtp) -----------------

type sentMail struct {
	From, To string
	Data     []byte
}

type smtpSink struct {
	mu        sync.Mutex
	mails     []sentMail
	mailDelay time.Duration // sleep in MAIL FROM (before any content is sent)
	refuse    bool
	mailCalls int // MAIL FROM commands seen
}

// MailCalls counts MAIL FROM commands (transfers started).
func (s *smtpSink) MailCalls() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.mailCalls
}

func (s *smtpSink) NewSession(*smtp.Conn) (smtp.Session, error) { return &smtpSession{sink: s}, nil }
func (s *smtpSink) Mails() []sentMail {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]sentMail(nil), s.mails...)
}

type smtpSession struct {
	sink     *smtpSink
	from, to string
}

func (s *smtpSession) Reset()        {}
func (s *smtpSession) Logout() error { return nil }
func (s *smtpSession) Mail(from string, _ *smtp.MailOptions) error {
	s.sink.mu.Lock()
	s.sink.mailCalls++
	s.sink.mu.Unlock()
	if s.sink.mailDelay > 0 {
		time.Sleep(s.sink.mailDelay)
	}
	s.sink.mu.Lock()
	refuse := s.sink.refuse
	s.sink.mu.Unlock()
	if refuse {
		return &smtp.SMTPError{Code: 421, Message: "try later"}
	}
	s.from = from
	return nil
}
func (s *smtpSession) Rcpt(to string, _ *smtp.RcptOptions) error { s.to = to; return nil }
func (s *smtpSession) Data(r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	s.sink.mu.Lock()
	s.sink.mails = append(s.sink.mails, sentMail{s.from, s.to, b})
	s.sink.mu.Unlock()
	return nil
}

func startSMTP(t testing.TB, sink *smtpSink) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := smtp.NewServer(sink)
	srv.Domain = "localhost"
	srv.AllowInsecureAuth = true
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return l.Addr().String()
}

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) != "" {
		os.Exit(runChild())
	}
	os.Exit(m.Run())
}
