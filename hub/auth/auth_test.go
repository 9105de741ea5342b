package auth_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"

	"github.com/diemdanh/diemdanh/hub/api"
	"github.com/diemdanh/diemdanh/hub/app"
	"github.com/diemdanh/diemdanh/hub/auth"
	"github.com/diemdanh/diemdanh/hub/roster"
)

const pw = "correct-horse-battery"

type hub struct {
	a      *app.App
	srv    *httptest.Server
	gateID string
	gatePW string
	otp    string
	logs   *bytes.Buffer
	svc    *auth.Service
	p1, p2 string
	ev2    string
}

// newHub builds the whole hub (every module's routes, the real auth
// middleware) on a throwaway data folder, with a small roster:
// class c1 (teacher lan, pupil p1, parent me), class c2 (pupil p2).
func newHub(t *testing.T) *hub { return newHubWith(t, nil) }

// newHubWith is newHub with the config edited by edit (may be nil) and
// app options (a clock).
func newHubWith(t *testing.T, edit func(*app.Config), opts ...app.Option) *hub {
	t.Helper()
	ctx := context.Background()
	cfg := app.Default()
	cfg.DataDir = t.TempDir()
	cfg.HTTP.Addr = "127.0.0.1:0"
	cfg.Broker.Listen = "127.0.0.1:0"
	cfg.Auth.BcryptCost = 4
	cfg.Auth.CookieSecure = true
	if edit != nil {
		edit(&cfg)
	}
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	a, err := app.New(ctx, cfg, log, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	h := &hub{a: a, logs: &logs, svc: a.Mods.Auth, p1: "000000000011", p2: "000000000022", ev2: "0190e2f1-0000-7000-8000-000000000002"}
	if m := regexp.MustCompile(`one_time_password=(\S+)`).FindStringSubmatch(logs.String()); m != nil {
		h.otp = m[1]
	}
	for _, q := range []string{
		`INSERT INTO schools(id, name) VALUES ('s1', 'THCS A')`,
		`INSERT INTO staff(id, school_id, full_name, role) VALUES ('t1', 's1', 'Cô Lan', 'teacher'), ('t2', 's1', 'Thầy Minh', 'teacher')`,
		`INSERT INTO classes(id, school_id, name, grade, homeroom_teacher_id) VALUES ('c1', 's1', '6A', 6, 't1'), ('c2', 's1', '6B', 6, 't2')`,
		`INSERT INTO pupils(id, school_id, class_id, full_name, date_of_birth) VALUES ('000000000011', 's1', 'c1', 'An', '2014-01-01'), ('000000000022', 's1', 'c2', 'Bình', '2014-01-01')`,
		`INSERT INTO guardians(id, pupil_id, full_name) VALUES (1, '000000000011', 'Mẹ An'), (2, '000000000022', 'Mẹ Bình')`,
		`INSERT INTO events(event_id, school_id, gate_id, direction, student_id, captured_at, received_at, distance, margin, frames_used, model)
			VALUES ('0190e2f1-0000-7000-8000-000000000002', 's1', 'g1', 'in', '000000000022', 1, 1, 0.3, 0.1, 3, 'dlib-resnet-v1@1')`,
	} {
		if _, err := a.DB.W.Exec(q); err != nil {
			t.Fatal(err)
		}
	}
	for _, n := range []auth.NewAccount{
		{Username: "root", Password: pw, Role: auth.RoleAdmin},
		{Username: "lan", Password: pw, Role: auth.RoleTeacher, SchoolID: "s1", StaffID: "t1"},
		{Username: "me", Password: pw, Role: auth.RoleParent, SchoolID: "s1", GuardianIDs: []int64{1}},
	} {
		if _, _, err := h.svc.CreateAccount(ctx, "test", n); err != nil {
			t.Fatal(err)
		}
	}
	rs := roster.New(a.DB, nil, nil)
	rs.BcryptCost = 4
	creds, err := rs.CreateGate(ctx, roster.Gate{ID: "g1", SchoolID: "s1", Name: "Cổng chính", Direction: "in"})
	if err != nil {
		t.Fatal(err)
	}
	h.gateID, h.gatePW = creds.Username, creds.Password
	h.srv = httptest.NewServer(a.API.Engine)
	t.Cleanup(h.srv.Close)
	return h
}

type caller struct {
	name       string
	role       auth.Role
	user, pass string
}

func (h *hub) callers() []caller {
	return []caller{
		{"anonymous", "", "", ""},
		{"admin", auth.RoleAdmin, "root", pw},
		{"teacher", auth.RoleTeacher, "lan", pw},
		{"parent", auth.RoleParent, "me", pw},
		{"gate", auth.RoleGate, h.gateID, h.gatePW},
	}
}

var paramRe = regexp.MustCompile(`[:*][A-Za-z_]+`)

func (h *hub) do(t *testing.T, c caller, method, path string, body io.Reader) *http.Response {
	t.Helper()
	req, _ := http.NewRequest(method, h.srv.URL+path, body)
	if c.user != "" {
		req.SetBasicAuth(c.user, c.pass)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	cl := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := cl.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp
}

// TestRoleRouteRefusals walks the hub's real route table (so a route added
// later is covered automatically) and checks that every role the route
// policy does not open it to is refused — before the handler runs — and
// that anonymous callers are refused everything but public routes.
func TestRoleRouteRefusals(t *testing.T) {
	h := newHub(t)
	routes := h.a.API.Engine.Routes()
	if len(routes) < 40 {
		t.Fatalf("only %d routes: is the app fully wired?", len(routes))
	}
	checked := 0
	for _, r := range routes {
		rule, _ := h.svc.MatchRule(r.Method, r.Path)
		if rule.Public {
			continue
		}
		path := paramRe.ReplaceAllString(r.Path, "000000000099")
		for _, c := range h.callers() {
			allowed := c.role != "" && ruleAllows(rule, c.role)
			if allowed {
				continue
			}
			resp := h.do(t, c, r.Method, path, nil)
			ok := resp.StatusCode == http.StatusForbidden || resp.StatusCode == http.StatusUnauthorized
			if c.role == "" && r.Method == "GET" && !strings.HasPrefix(r.Path, "/api/") {
				ok = ok || (resp.StatusCode == http.StatusSeeOther && strings.HasPrefix(resp.Header.Get("Location"), "/login"))
			}
			if !ok {
				t.Errorf("%s %s as %s: status %d, want a refusal", r.Method, r.Path, c.name, resp.StatusCode)
			}
			checked++
		}
	}
	if checked < 100 {
		t.Fatalf("only %d role×route refusals checked", checked)
	}
	t.Logf("%d routes, %d role×route refusals checked", len(routes), checked)
}

func ruleAllows(r auth.Rule, role auth.Role) bool {
	for _, x := range r.Roles {
		if x == role {
			return true
		}
	}
	return false
}

// TestScopeRefusals: roles a route is open to are still refused outside
// their scope (another class, another family's child, another gate).
func TestScopeRefusals(t *testing.T) {
	h := newHub(t)
	cs := h.callers()
	admin, teacher, parent, gate := cs[1], cs[2], cs[3], cs[4]
	cases := []struct {
		c            caller
		method, path string
		body         string
		want         int
	}{
		{teacher, "GET", "/api/v1/pupils/" + h.p1, "", 200},
		{teacher, "GET", "/api/v1/pupils/" + h.p2, "", 403},
		{teacher, "GET", "/api/v1/classes/c1/attendance", "", 200},
		{teacher, "GET", "/api/v1/classes/c2/attendance", "", 403},
		{teacher, "GET", "/api/v1/schools/s1/events?class_id=c2", "", 403},
		{teacher, "POST", "/api/v1/events/" + h.ev2 + "/not-this-pupil", `{"reason":"x"}`, 403},
		{parent, "GET", "/api/v1/pupils/" + h.p1, "", 200},
		{parent, "GET", "/api/v1/pupils/" + h.p2, "", 403},
		{parent, "GET", "/api/v1/pupils/" + h.p2 + "/attendance/2026-11-20", "", 403},
		{parent, "GET", "/api/v1/schools/s1/events", "", 403},
		{gate, "GET", "/api/v1/gates/" + h.gateID + "/gallery", "", 200},
		{gate, "GET", "/api/v1/gates/other-gate/gallery", "", 403},
		{admin, "GET", "/api/v1/pupils/" + h.p2, "", 200},
		{admin, "GET", "/api/v1/audit", "", 200},
	}
	for _, tc := range cases {
		var body io.Reader
		if tc.body != "" {
			body = strings.NewReader(tc.body)
		}
		resp := h.do(t, tc.c, tc.method, tc.path, body)
		if resp.StatusCode != tc.want {
			t.Errorf("%s %s as %s: %d, want %d", tc.method, tc.path, tc.c.name, resp.StatusCode, tc.want)
		}
	}
}

func TestSessionCSRFRateLimitAndFirstAdmin(t *testing.T) {
	h := newHub(t)
	if h.otp == "" || !strings.Contains(h.logs.String(), "first admin account created") {
		t.Fatalf("no one-time password in the log:\n%s", h.logs.String())
	}
	jar := &cookieJar{}
	post := func(path, body, csrf string) (*http.Response, map[string]any) {
		req, _ := http.NewRequest("POST", h.srv.URL+path, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		if csrf != "" {
			req.Header.Set(auth.CSRFHeader, csrf)
		}
		jar.apply(req)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		jar.take(resp)
		var m map[string]any
		json.NewDecoder(resp.Body).Decode(&m)
		return resp, m
	}
	// Login CSRF: a cross-site text/plain "JSON" post is not a login.
	lreq, _ := http.NewRequest("POST", h.srv.URL+"/api/v1/auth/login", strings.NewReader(`{"username":"root","password":"`+pw+`"}`))
	lreq.Header.Set("Content-Type", "text/plain")
	if lresp, err := http.DefaultClient.Do(lreq); err != nil || lresp.StatusCode != http.StatusUnsupportedMediaType {
		t.Fatalf("text/plain login: %v %v", lresp.StatusCode, err)
	} else {
		lresp.Body.Close()
	}
	// First admin: one-time password works once, then must be changed.
	resp, m := post("/api/v1/auth/login", `{"username":"admin","password":"`+h.otp+`"}`, "")
	if resp.StatusCode != 200 {
		t.Fatalf("login with the one-time password: %d %v", resp.StatusCode, m)
	}
	var sess *http.Cookie
	for _, c := range resp.Cookies() {
		if c.Name == auth.SessionCookie {
			sess = c
		}
	}
	if sess == nil || !sess.HttpOnly || !sess.Secure || sess.SameSite != http.SameSiteLaxMode {
		t.Fatalf("session cookie flags: %+v", sess)
	}
	csrf, _ := m["csrf_token"].(string)
	get := func(path string) int {
		req, _ := http.NewRequest("GET", h.srv.URL+path, nil)
		jar.apply(req)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if st := get("/api/v1/audit"); st != http.StatusForbidden {
		t.Fatalf("one-time password account reached the API: %d", st)
	}
	// CSRF: a session request that changes state needs the token.
	if resp, _ := post("/api/v1/auth/password", `{"old_password":"`+h.otp+`","new_password":"a-new-long-password"}`, ""); resp.StatusCode != http.StatusForbidden {
		t.Fatalf("password change without CSRF token: %d", resp.StatusCode)
	}
	if resp, _ := post("/api/v1/auth/password", `{"old_password":"`+h.otp+`","new_password":"a-new-long-password"}`, "wrong"+csrf); resp.StatusCode != http.StatusForbidden {
		t.Fatalf("password change with a wrong CSRF token: %d", resp.StatusCode)
	}
	if resp, m := post("/api/v1/auth/password", `{"old_password":"`+h.otp+`","new_password":"a-new-long-password"}`, csrf); resp.StatusCode != 200 {
		t.Fatalf("password change: %d %v", resp.StatusCode, m)
	}
	if st := get("/api/v1/audit"); st != 200 {
		t.Fatalf("after the change: %d", st)
	}
	// Rate limit: after 5 wrong passwords even the right one is refused.
	jar.cookies = nil
	for i := 0; i < 5; i++ {
		if resp, _ := post("/api/v1/auth/login", `{"username":"lan","password":"wrong"}`, ""); resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("wrong password %d: %d", i, resp.StatusCode)
		}
	}
	if resp, _ := post("/api/v1/auth/login", `{"username":"lan","password":"`+pw+`"}`, ""); resp.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("login after 5 failures: %d", resp.StatusCode)
	}
	// Basic auth shares the limiter.
	if resp := h.do(t, caller{user: "lan", pass: pw}, "GET", "/api/v1/pupils/"+h.p1, nil); resp.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("basic auth after 5 failures: %d", resp.StatusCode)
	}
	var n int
	h.a.DB.R.QueryRow(`SELECT count(*) FROM audit_log WHERE action = 'login_failed'`).Scan(&n)
	if n < 6 {
		t.Fatalf("failed logins audited: %d", n)
	}
	var stored int
	h.a.DB.R.QueryRow(`SELECT count(*) FROM sessions WHERE token_hash = ?`, sess.Value).Scan(&stored)
	if stored != 0 {
		t.Fatal("session token stored in clear")
	}
}

// TestAuthorizerMatrix checks Allowed directly for every role on the
// resources handlers ask about.
func TestAuthorizerMatrix(t *testing.T) {
	h := newHub(t)
	ctx := context.Background()
	teacher := &auth.Principal{Username: "lan", Role: auth.RoleTeacher, SchoolID: "s1", StaffID: "t1"}
	gate := &auth.Principal{Role: auth.RoleGate, GateID: "g1", SchoolID: "s1"}
	for _, tc := range []struct {
		p     *auth.Principal
		a     api.Access
		allow bool
	}{
		{teacher, api.Access{Action: "read", Resource: "pupils", PupilID: h.p1}, true},
		{teacher, api.Access{Action: "write", Resource: "pupils", PupilID: h.p1}, false},
		{teacher, api.Access{Action: "read", Resource: "pupils"}, false}, // no unscoped lists
		{teacher, api.Access{Action: "write", Resource: "attendance", PupilID: h.p1}, true},
		{teacher, api.Access{Action: "write", Resource: "attendance", PupilID: h.p2}, false},
		{teacher, api.Access{Action: "read", Resource: "staff"}, false},
		{teacher, api.Access{Action: "write", Resource: "enrolment", PupilID: h.p1}, false},
		{teacher, api.Access{Action: "read", Resource: "pupils", SchoolID: "other"}, false},
		{gate, api.Access{Action: "read", Resource: "gallery", GateID: "g1"}, true},
		{gate, api.Access{Action: "read", Resource: "gallery", GateID: "g2"}, false},
		{gate, api.Access{Action: "read", Resource: "pupils", PupilID: h.p1}, false},
	} {
		err := h.svc.Allowed(ctx, tc.p, tc.a)
		if (err == nil) != tc.allow {
			t.Errorf("%s %+v: err=%v, want allow=%v", tc.p.Role, tc.a, err, tc.allow)
		}
	}
}

type cookieJar struct{ cookies []*http.Cookie }

func (j *cookieJar) apply(r *http.Request) {
	for _, c := range j.cookies {
		r.AddCookie(c)
	}
}

func (j *cookieJar) take(resp *http.Response) {
	for _, c := range resp.Cookies() {
		if c.Name == auth.SessionCookie && c.MaxAge >= 0 {
			j.cookies = []*http.Cookie{c}
		}
	}
}
