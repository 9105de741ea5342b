package web

import (
	"bytes"
	"context"
	"fmt"
	"image"
	"image/color"
	"image/jpeg"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/gin-gonic/gin"
	"golang.org/x/crypto/bcrypt"

	"github.com/diemdanh/diemdanh/hub/audit"
	"github.com/diemdanh/diemdanh/hub/auth"
	"github.com/diemdanh/diemdanh/hub/broker"
	"github.com/diemdanh/diemdanh/hub/ingest"
	"github.com/diemdanh/diemdanh/hub/notify"
	"github.com/diemdanh/diemdanh/hub/store"
	"github.com/diemdanh/diemdanh/models/match"
	"github.com/diemdanh/diemdanh/models/wire"
)

const (
	pupilAn      = "012345678901" // class c1, parent1's child
	pupilBinh    = "012345678902" // class c1
	pupilScript  = "012345678903" // class c1, named <script>
	pupilFormula = "012345678904" // class c1, named like a spreadsheet formula
	pupilChi     = "012345678905" // class c2, parent2's child
	password     = "mat-khau-12345"
	gatePass     = "gate-secret-123"
	scriptName   = `<script>alert("x")</script>`
	formulaName  = `=HYPERLINK("http://evil","Bấm")`
)

type fixture struct {
	db     *store.DB
	auth   *auth.Service
	web    *Server
	ing    *ingest.Ingester
	broker *broker.Embedded
	notify *notify.Notifier
	ts     *httptest.Server
	ctx    context.Context
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// newFixture runs a real hub slice on loopback: SQLite file, hub/auth
// accounts and sessions, hub/ingest fed by the real embedded MQTT broker
// (hub/broker), the web UI on an httptest server, and notifications.
// School day settings make every arrival "present" whatever the hour the
// test runs at.
func newFixture(t testing.TB) *fixture { t.Helper(); return newFixtureOpts(t, true, nil) }

func newFixtureMW(t testing.TB, authMW bool) *fixture {
	t.Helper()
	return newFixtureOpts(t, authMW, nil)
}

// newFixtureMW can leave hub/auth's middleware out, to prove this
// package's own role and scope checks hold by themselves.
func newFixtureOpts(t testing.TB, authMW bool, mut func(*Deps)) *fixture {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	f := &fixture{ctx: ctx}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	db, err := store.Open(ctx, filepath.Join(t.TempDir(), "hub.db"), log)
	must(t, err)
	f.db = db
	exec := func(q string, args ...any) {
		t.Helper()
		if _, err := db.W.Exec(q, args...); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	gh, _ := bcrypt.GenerateFromPassword([]byte(gatePass), bcrypt.MinCost)
	exec(`INSERT INTO schools(id, name) VALUES ('s1', 'Trường Tiểu học Kim Đồng')`)
	exec(`INSERT INTO staff(id, school_id, full_name, role) VALUES ('t1', 's1', 'Cô Lan', 'teacher'), ('t2', 's1', 'Thầy Minh', 'teacher')`)
	exec(`INSERT INTO classes(id, school_id, name, grade, homeroom_teacher_id, start_time, late_after_min, absent_cutoff)
		VALUES ('c1', 's1', '1A', 1, 't1', '00:00', 1439, '23:59'), ('c2', 's1', '2B', 2, 't2', '00:00', 1439, '23:59')`)
	exec(`INSERT INTO gates(id, school_id, name, direction, username, password_hash, online, last_seen_at, last_heartbeat, clock_skew_ms)
		VALUES ('g1', 's1', 'Cổng chính', 'in', 'g1', ?, 1, ?, '{"schema":1,"gate_id":"g1","fps":12.5,"outbox_depth":3,"camera_online":true}', 42)`,
		string(gh), time.Now().UnixMilli())
	exec(`INSERT INTO pupils(id, school_id, class_id, full_name) VALUES (?, 's1', 'c1', 'Nguyễn Văn An'),
		(?, 's1', 'c1', 'Trần Thị Bình'), (?, 's1', 'c1', ?), (?, 's1', 'c1', ?), (?, 's1', 'c2', 'Lê Minh Chi')`,
		pupilAn, pupilBinh, pupilScript, scriptName, pupilFormula, formulaName, pupilChi)
	exec(`INSERT INTO guardians(id, pupil_id, full_name, email, phone) VALUES (1, ?, 'Nguyễn Thị Hoa', 'hoa@example.com', '0901234567'),
		(2, ?, 'Lê Văn Tám', 'tam@example.com', '')`, pupilAn, pupilChi)

	al := audit.New(db, log, time.Now)
	acfg := auth.DefaultConfig()
	acfg.BcryptCost = bcrypt.MinCost
	f.auth, err = auth.New(db, al, acfg, log, time.Now)
	must(t, err)
	for _, a := range []auth.NewAccount{
		{Username: "admin", Password: password, Role: auth.RoleAdmin, SchoolID: "s1", FullName: "Quản trị"},
		{Username: "lan", Password: password, Role: auth.RoleTeacher, SchoolID: "s1", StaffID: "t1", FullName: "Cô Lan"},
		{Username: "minh", Password: password, Role: auth.RoleTeacher, SchoolID: "s1", StaffID: "t2", FullName: "Thầy Minh"},
		{Username: "hoa", Password: password, Role: auth.RoleParent, SchoolID: "s1", GuardianIDs: []int64{1}, FullName: "Nguyễn Thị Hoa"},
		{Username: "tam", Password: password, Role: auth.RoleParent, SchoolID: "s1", GuardianIDs: []int64{2}, FullName: "Lê Văn Tám"},
	} {
		_, _, err := f.auth.CreateAccount(ctx, "test", a)
		must(t, err)
	}
	ncfg := notify.Default()
	ncfg.SMTP.Addr = "127.0.0.1:9" // e-mail channel on (never run here)
	f.notify, err = notify.New(ctx, ncfg, db, log, time.Now)
	must(t, err)

	deps := Deps{DB: db, Log: log, Sessions: f.auth, Audit: al, Notify: f.notify}
	if mut != nil {
		mut(&deps)
	}
	f.web, err = New(Default(), deps)
	must(t, err)
	f.web.Start(ctx)

	f.ing, err = ingest.New(db, ingest.Default(), log, time.Now)
	must(t, err)
	f.ing.AddListener(f.web)
	f.ing.AddListener(f.notify)
	f.ing.Start(ctx)
	bcfg := broker.Default()
	bcfg.Listen = "127.0.0.1:0"
	f.broker, err = broker.NewEmbedded(bcfg, db, f.ing, log, time.Now)
	must(t, err)
	must(t, f.broker.Start())

	gin.SetMode(gin.ReleaseMode)
	eng := gin.New()
	if authMW {
		eng.Use(f.auth.Middleware()) // as hub/app installs it: policy, CSRF, sessions
	}
	f.web.Routes(eng)
	f.ts = httptest.NewServer(eng)
	t.Cleanup(func() {
		f.ts.CloseClientConnections()
		f.ts.Close()
		f.broker.Close()
		f.ing.Close()
		cancel()
		db.Close()
	})
	return f
}

// crop is a small JPEG standing in for a gate's face crop.
func crop() []byte {
	img := image.NewRGBA(image.Rect(0, 0, 48, 48))
	for y := 0; y < 48; y++ {
		for x := 0; x < 48; x++ {
			img.Set(x, y, color.RGBA{uint8(120 + x*2), uint8(90 + y*2), 80, 255})
		}
	}
	var b bytes.Buffer
	_ = jpeg.Encode(&b, img, &jpeg.Options{Quality: 80})
	return b.Bytes()
}

func event(pupil, dir string, at time.Time) wire.Event {
	return wire.Event{Schema: wire.SchemaVersion, EventID: wire.NewEventID(), SchoolID: "s1", GateID: "g1",
		Direction: dir, StudentID: pupil, CapturedAt: at.UnixMilli(), Distance: 0.33, Margin: 0.11, FramesUsed: 4,
		Quality: match.Quality{Sharpness: 100, Brightness: 120}, Model: match.ModelID{Name: "dlib_resnet", Version: "1"},
		GalleryVer: 1, FaceJPEG: crop()}
}

// ingestDirect stores an event through hub/ingest (as the broker does).
func (f *fixture) ingestDirect(t testing.TB, ev wire.Event) {
	t.Helper()
	b, err := ev.Encode()
	must(t, err)
	r, err := f.ing.Handle(f.ctx, ingest.Message{Topic: wire.EventTopic("s1", "g1"), Payload: b, ClientID: "g1"})
	must(t, err)
	_ = r
}

// client is a cookie-keeping HTTP client that does not follow redirects.
type client struct {
	t    testing.TB
	f    *fixture
	hc   *http.Client
	csrf string
}

var csrfRe = regexp.MustCompile(`name="csrf-token" content="([^"]*)"`)

func (f *fixture) client(t testing.TB) *client {
	jar, _ := cookiejar.New(nil)
	return &client{t: t, f: f, hc: &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error {
		return http.ErrUseLastResponse
	}}}
}

func (c *client) do(method, path string, form url.Values, hdr map[string]string) (*http.Response, string) {
	c.t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequest(method, c.f.ts.URL+path, body)
	must(c.t, err)
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := c.hc.Do(req)
	must(c.t, err)
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if m := csrfRe.FindStringSubmatch(string(b)); m != nil {
		c.csrf = m[1]
	}
	return resp, string(b)
}

// login signs in through the form (with its login CSRF token).
func (c *client) login(user string) *http.Response {
	c.t.Helper()
	c.do("GET", "/login", nil, nil)
	resp, _ := c.do("POST", "/login", url.Values{"username": {user}, "password": {password}, "csrf_token": {c.csrf}}, nil)
	if resp.StatusCode != http.StatusSeeOther {
		c.t.Fatalf("login %s: %d", user, resp.StatusCode)
	}
	// Any signed-in page carries the session's CSRF token.
	c.do("GET", "/password", nil, nil)
	if c.csrf == "" {
		c.t.Fatal("no CSRF token after login")
	}
	return resp
}

func fmtDay(t time.Time) string { return t.In(notify.Zone("")).Format("2006-01-02") }

var _ = fmt.Sprintf
