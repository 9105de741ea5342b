package auth_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/diemdanh/diemdanh/hub/app"
	"github.com/diemdanh/diemdanh/hub/auth"
	"github.com/diemdanh/diemdanh/hub/roster"
)

// Regression tests of the security probe (issue 13).

type testClock struct {
	mu sync.Mutex
	t  time.Time
}

func newTestClock() *testClock { return &testClock{t: time.Date(2026, 11, 20, 7, 0, 0, 0, time.UTC)} }

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *testClock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// send does req against the real server (a loopback connection) without
// following redirects and returns the status and body.
func send(t *testing.T, req *http.Request) (int, []byte) {
	t.Helper()
	cl := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := cl.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// apiLogin posts a failing JSON login for user with the forwarded headers.
func (h *hub) apiLogin(t *testing.T, user, pass, forwarded string) int {
	t.Helper()
	req, _ := http.NewRequest("POST", h.srv.URL+"/api/v1/auth/login", strings.NewReader(fmt.Sprintf(`{"username":%q,"password":%q}`, user, pass)))
	req.Header.Set("Content-Type", "application/json")
	if forwarded != "" {
		req.Header.Set("X-Forwarded-For", forwarded)
		req.Header.Set("X-Real-IP", forwarded)
	}
	st, _ := send(t, req)
	return st
}

// formLogin posts the web login form (hub/web) with its double-submit token.
func (h *hub) formLogin(t *testing.T, user, pass, forwarded string) int {
	t.Helper()
	const tok = "0123456789abcdef0123456789abcdef0123456789"
	form := url.Values{"username": {user}, "password": {pass}, "csrf_token": {tok}}
	req, _ := http.NewRequest("POST", h.srv.URL+"/login", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.AddCookie(&http.Cookie{Name: auth.LoginCSRFCookie, Value: tok})
	if forwarded != "" {
		req.Header.Set("X-Forwarded-For", forwarded)
		req.Header.Set("X-Real-IP", forwarded)
	}
	st, _ := send(t, req)
	return st
}

func (h *hub) failedLoginIPs(t *testing.T) []string {
	t.Helper()
	rows, err := h.a.DB.R.Query(`SELECT DISTINCT ip FROM audit_log WHERE action = 'login_failed' ORDER BY ip`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var ip string
		if err := rows.Scan(&ip); err != nil {
			t.Fatal(err)
		}
		out = append(out, ip)
	}
	return out
}

// TestSecurityForgedForwardedForIgnored: a client that sends its own
// X-Forwarded-For / X-Real-IP (no proxy configured) cannot escape the
// per-IP login limit nor put a forged address in the audit log — neither
// through the JSON login nor through the web login form.
func TestSecurityForgedForwardedForIgnored(t *testing.T) {
	h := newHub(t)
	limit := h.svc.Config().MaxFailuresIP
	for i := 0; i < limit+5; i++ {
		user, fwd := fmt.Sprintf("spray%02d", i), fmt.Sprintf("203.0.113.%d", i+1)
		var st int
		if i%2 == 0 {
			st = h.apiLogin(t, user, "wrong-password", fwd)
		} else {
			st = h.formLogin(t, user, "wrong-password", fwd)
		}
		want := http.StatusUnauthorized
		if i >= limit {
			want = http.StatusTooManyRequests
		}
		if st != want {
			t.Fatalf("attempt %d (X-Forwarded-For %s): status %d, want %d", i+1, fwd, st, want)
		}
	}
	if ips := h.failedLoginIPs(t); !slices.Equal(ips, []string{"127.0.0.1"}) {
		t.Fatalf("failed logins audited from %v, want only the connection's 127.0.0.1", ips)
	}
}

// TestSecurityTrustedProxyForwardedFor: behind a configured proxy the
// forwarded address is the client's: the limit applies to it (not to the
// proxy, which serves everybody), X-Forwarded-For is read right to left
// (a value the client put first is ignored), and the audit log has it.
func TestSecurityTrustedProxyForwardedFor(t *testing.T) {
	h := newHubWith(t, func(c *app.Config) { c.HTTP.TrustedProxies = []string{"127.0.0.1/32"} })
	limit := h.svc.Config().MaxFailuresIP
	for i := 0; i < limit; i++ {
		if st := h.apiLogin(t, fmt.Sprintf("spray%02d", i), "wrong-password", "198.51.100.7"); st != http.StatusUnauthorized {
			t.Fatalf("attempt %d: %d", i+1, st)
		}
	}
	if st := h.formLogin(t, "someone", "wrong-password", "198.51.100.7"); st != http.StatusTooManyRequests {
		t.Fatalf("forwarded client over the limit: %d, want 429", st)
	}
	if st := h.apiLogin(t, "someone", "wrong-password", "6.6.6.6, 198.51.100.7"); st != http.StatusTooManyRequests {
		t.Fatalf("client-forged first X-Forwarded-For entry escaped the limit: %d, want 429", st)
	}
	if st := h.apiLogin(t, "someone", "wrong-password", "198.51.100.8"); st != http.StatusUnauthorized {
		t.Fatalf("another client behind the same proxy: %d, want 401", st)
	}
	if st := h.apiLogin(t, "lan", pw, "198.51.100.8"); st != http.StatusOK {
		t.Fatalf("good login of another client: %d", st)
	}
	ips := h.failedLoginIPs(t)
	if !slices.Equal(ips, []string{"198.51.100.7", "198.51.100.8"}) {
		t.Fatalf("failed logins audited from %v, want the forwarded clients", ips)
	}
}

// gateGet fetches gate's gallery with basic auth from remote (host:port)
// through the hub's engine and returns the status.
func (h *hub) gateGet(gateID, user, pass, remote string) int {
	req := httptest.NewRequest("GET", "/api/v1/gates/"+gateID+"/gallery", nil)
	req.RemoteAddr = remote
	req.SetBasicAuth(user, pass)
	rec := httptest.NewRecorder()
	h.a.API.Engine.ServeHTTP(rec, req)
	return rec.Code
}

// TestSecurityGateUsernameLockout: wrong passwords for one gate username
// from many addresses lock that username (exponential backoff), even for
// the right password and even though the gate's good password is cached;
// another gate is unaffected; a good login after the lock resets it.
func TestSecurityGateUsernameLockout(t *testing.T) {
	clk := newTestClock()
	h := newHubWith(t, nil, app.WithClock(clk.Now))
	rs := roster.New(h.a.DB, nil, nil)
	rs.BcryptCost = 4
	g2, err := rs.CreateGate(context.Background(), roster.Gate{ID: "g2", SchoolID: "s1", Name: "Cổng sau", Direction: "out"})
	if err != nil {
		t.Fatal(err)
	}
	remote := func(i int) string { return fmt.Sprintf("10.0.%d.1:40000", i) }
	expect := func(step string, got, want int) {
		t.Helper()
		if got != want {
			t.Fatalf("%s: status %d, want %d", step, got, want)
		}
	}
	expect("gate fetches its gallery", h.gateGet("g1", h.gateID, h.gatePW, remote(0)), http.StatusOK)
	free := h.svc.Config().GateLockout.FreeFailures
	for i := 1; i <= free; i++ {
		expect(fmt.Sprintf("wrong password %d", i), h.gateGet("g1", h.gateID, "guess", remote(i)), http.StatusUnauthorized)
	}
	expect("right password while locked", h.gateGet("g1", h.gateID, h.gatePW, remote(50)), http.StatusTooManyRequests)
	expect("wrong password while locked", h.gateGet("g1", h.gateID, "guess", remote(51)), http.StatusTooManyRequests)
	expect("another gate", h.gateGet("g2", g2.Username, g2.Password, remote(52)), http.StatusOK)

	base := h.svc.Config().GateLockout.Base
	clk.Add(base + time.Second)
	expect("wrong password after the first lock", h.gateGet("g1", h.gateID, "guess", remote(60)), http.StatusUnauthorized)
	clk.Add(base + time.Second) // the second lock is twice as long
	expect("right password in the doubled lock", h.gateGet("g1", h.gateID, h.gatePW, remote(61)), http.StatusTooManyRequests)
	clk.Add(base)
	expect("right password after the doubled lock", h.gateGet("g1", h.gateID, h.gatePW, remote(62)), http.StatusOK)
	for i := 1; i < free; i++ {
		expect("wrong password after a good login", h.gateGet("g1", h.gateID, "guess", remote(70+i)), http.StatusUnauthorized)
	}
	expect("good login reset the count", h.gateGet("g1", h.gateID, h.gatePW, remote(80)), http.StatusOK)
}

// TestSecuritySchoolListScope: GET /api/v1/schools lists only the schools
// each caller may see, for real accounts logging in.
func TestSecuritySchoolListScope(t *testing.T) {
	h := newHub(t)
	h.addSecondSchool(t)
	cases := []struct {
		user string
		want []string // nil: refused with status
		code int
	}{
		{"root", []string{"s1", "s2", "s3"}, 200}, // hub-wide admin
		{"adm2", []string{"s2"}, 200},             // admin of s2
		{"lan", []string{"s1"}, 200},              // teacher in s1
		{"me", []string{"s1"}, 200},               // parent of a pupil in s1
		{"ba", []string{"s2"}, 200},               // parent of a pupil in s2
		{"", nil, http.StatusUnauthorized},        // not logged in
		{"gate", nil, http.StatusForbidden},       // gate device
	}
	for _, tc := range cases {
		req, _ := http.NewRequest("GET", h.srv.URL+"/api/v1/schools", nil)
		switch tc.user {
		case "":
		case "gate":
			req.SetBasicAuth(h.gateID, h.gatePW)
		default:
			req.AddCookie(h.session(t, tc.user))
		}
		st, body := send(t, req)
		if st != tc.code {
			t.Errorf("%q: status %d, want %d: %s", tc.user, st, tc.code, body)
			continue
		}
		if tc.want == nil {
			continue
		}
		var got []struct {
			ID string `json:"id"`
		}
		if err := json.Unmarshal(body, &got); err != nil {
			t.Fatalf("%q: %v: %s", tc.user, err, body)
		}
		var ids []string
		for _, x := range got {
			ids = append(ids, x.ID)
		}
		if !slices.Equal(ids, tc.want) {
			t.Errorf("%q sees schools %v, want %v", tc.user, ids, tc.want)
		}
	}
}

// addSecondSchool adds schools s2 (pupil p3, its parent "ba", admin
// "adm2", gate g3) and s3 (empty).
func (h *hub) addSecondSchool(t *testing.T) {
	t.Helper()
	for _, q := range []string{
		`INSERT INTO schools(id, name) VALUES ('s2', 'THCS B'), ('s3', 'THCS C')`,
		`INSERT INTO staff(id, school_id, full_name, role) VALUES ('t3', 's2', 'Cô Hạnh', 'teacher')`,
		`INSERT INTO classes(id, school_id, name, grade, homeroom_teacher_id) VALUES ('c3', 's2', '7A', 7, 't3')`,
		`INSERT INTO pupils(id, school_id, class_id, full_name, date_of_birth) VALUES ('000000000033', 's2', 'c3', 'Chi', '2013-01-01')`,
		`INSERT INTO guardians(id, pupil_id, full_name) VALUES (3, '000000000033', 'Bố Chi')`,
	} {
		if _, err := h.a.DB.W.Exec(q); err != nil {
			t.Fatal(err)
		}
	}
	ctx := context.Background()
	for _, n := range []auth.NewAccount{
		{Username: "adm2", Password: pw, Role: auth.RoleAdmin, SchoolID: "s2"},
		{Username: "ba", Password: pw, Role: auth.RoleParent, SchoolID: "s2", GuardianIDs: []int64{3}},
	} {
		if _, _, err := h.svc.CreateAccount(ctx, "test", n); err != nil {
			t.Fatal(err)
		}
	}
	rs := roster.New(h.a.DB, nil, nil)
	rs.BcryptCost = 4
	if _, err := rs.CreateGate(ctx, roster.Gate{ID: "g3", SchoolID: "s2", Name: "Cổng B", Direction: "in"}); err != nil {
		t.Fatal(err)
	}
}

// session logs user in with the JSON login and returns the session cookie.
func (h *hub) session(t *testing.T, user string) *http.Cookie {
	t.Helper()
	resp, err := http.Post(h.srv.URL+"/api/v1/auth/login", "application/json", strings.NewReader(fmt.Sprintf(`{"username":%q,"password":%q}`, user, pw)))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	for _, c := range resp.Cookies() {
		if c.Name == auth.SessionCookie && c.Value != "" {
			return c
		}
	}
	t.Fatalf("login %q: %d, no session cookie", user, resp.StatusCode)
	return nil
}

// TestSecuritySchoolAdminStaysInSchool: an admin of one school can neither
// list other schools' gates, accounts or review data, nor create a
// hub-wide admin or accounts in (or linked to) another school, nor disable
// another school's account.
func TestSecuritySchoolAdminStaysInSchool(t *testing.T) {
	h := newHub(t)
	h.addSecondSchool(t)
	adm2 := caller{"admin of s2", auth.RoleAdmin, "adm2", pw}
	call := func(method, path, body string) (int, []byte) {
		t.Helper()
		var r io.Reader
		if body != "" {
			r = strings.NewReader(body)
		}
		req, _ := http.NewRequest(method, h.srv.URL+path, r)
		req.SetBasicAuth(adm2.user, adm2.pass)
		req.Header.Set("Content-Type", "application/json")
		return send(t, req)
	}
	for _, tc := range []struct {
		method, path, body string
		want               int
	}{
		{"GET", "/api/v1/gates", "", http.StatusForbidden},
		{"GET", "/api/v1/feedback", "", http.StatusForbidden},
		{"GET", "/api/v1/enrolment/review", "", http.StatusForbidden},
		{"POST", "/api/v1/accounts", `{"username":"evil1","password":"` + pw + `","role":"admin"}`, http.StatusForbidden},
		{"POST", "/api/v1/accounts", `{"username":"evil2","password":"` + pw + `","role":"teacher","school_id":"s1","staff_id":"t1"}`, http.StatusForbidden},
		{"POST", "/api/v1/accounts", `{"username":"evil3","password":"` + pw + `","role":"parent","school_id":"s2","guardian_ids":[1]}`, http.StatusBadRequest},
		{"POST", "/api/v1/accounts", `{"username":"evil4","password":"` + pw + `","role":"teacher","school_id":"s2","staff_id":"t1"}`, http.StatusBadRequest},
		{"POST", "/api/v1/accounts/lan/active", `{"active":false}`, http.StatusNotFound},
		{"POST", "/api/v1/teacher-classes", `{"staff_id":"t3","class_id":"c1"}`, http.StatusForbidden},
		{"GET", "/api/v1/schools/s2/gates", "", http.StatusOK},
		{"POST", "/api/v1/accounts", `{"username":"hanh","password":"` + pw + `","role":"teacher","school_id":"s2","staff_id":"t3"}`, http.StatusCreated},
		{"POST", "/api/v1/accounts/ba/active", `{"active":true}`, http.StatusOK},
	} {
		if st, body := call(tc.method, tc.path, tc.body); st != tc.want {
			t.Errorf("%s %s %s: %d, want %d: %s", tc.method, tc.path, tc.body, st, tc.want, body)
		}
	}
	st, body := call("GET", "/api/v1/accounts", "")
	var got struct {
		Accounts []auth.Account `json:"accounts"`
	}
	if err := json.Unmarshal(body, &got); st != 200 || err != nil {
		t.Fatalf("accounts: %d %v %s", st, err, body)
	}
	var names []string
	for _, a := range got.Accounts {
		names = append(names, a.Username)
	}
	if !slices.Equal(names, []string{"adm2", "ba", "hanh"}) {
		t.Fatalf("admin of s2 lists accounts %v, want only s2's", names)
	}
}
