package web

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

func TestSessionCookieFlags(t *testing.T) {
	f := newFixture(t)
	c := f.client(t)
	resp := c.login("lan")
	var found bool
	for _, ck := range resp.Cookies() {
		if ck.Name != SessionCookie {
			continue
		}
		found = true
		if !ck.HttpOnly || !ck.Secure || ck.SameSite != http.SameSiteLaxMode || ck.Path != "/" {
			t.Errorf("session cookie flags: HttpOnly=%v Secure=%v SameSite=%v Path=%q", ck.HttpOnly, ck.Secure, ck.SameSite, ck.Path)
		}
	}
	if !found {
		t.Fatal("no session cookie set on login")
	}
	// Security headers on pages.
	resp, body := c.do("GET", "/teacher/class/c1", nil, nil)
	if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "script-src 'self'") || strings.Contains(csp, "unsafe-inline") {
		t.Errorf("CSP %q", csp)
	}
	if resp.Header.Get("X-Frame-Options") != "DENY" || !strings.Contains(resp.Header.Get("Content-Type"), "charset=utf-8") {
		t.Errorf("headers %v", resp.Header)
	}
	if !strings.Contains(body, `<meta charset="utf-8">`) || !strings.Contains(body, `<html lang="vi">`) {
		t.Error("page does not declare UTF-8 and lang=vi")
	}
}

func TestCSRFRequired(t *testing.T) {
	for _, mw := range []bool{true, false} {
		t.Run(map[bool]string{true: "with-auth-middleware", false: "web-checks-alone"}[mw], func(t *testing.T) {
			testCSRFRequired(t, newFixtureMW(t, mw))
		})
	}
}

func testCSRFRequired(t *testing.T, f *fixture) {
	c := f.client(t)
	// Login itself needs the form's token.
	resp, _ := c.do("POST", "/login", url.Values{"username": {"lan"}, "password": {password}}, nil)
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("login without CSRF token: %d", resp.StatusCode)
	}
	c.login("lan")
	day := fmtDay(time.Now())
	form := url.Values{"pupil_id": {pupilBinh}, "day": {day}, "status": {"excused"}, "reason": {"ốm"}}
	for name, tok := range map[string]string{"missing": "", "wrong": "x" + c.csrf} {
		fv := url.Values{}
		for k, v := range form {
			fv[k] = v
		}
		if tok != "" {
			fv.Set("csrf_token", tok)
		}
		resp, _ := c.do("POST", "/teacher/class/c1/override", fv, nil)
		if resp.StatusCode != http.StatusForbidden {
			t.Errorf("%s CSRF token: status %d, want 403", name, resp.StatusCode)
		}
	}
	var n int
	f.db.R.QueryRow(`SELECT COUNT(*) FROM attendance_overrides`).Scan(&n)
	if n != 0 {
		t.Fatalf("%d overrides written without a valid token", n)
	}
	form.Set("csrf_token", c.csrf)
	resp, _ = c.do("POST", "/teacher/class/c1/override", form, nil)
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("valid override: %d", resp.StatusCode)
	}
	var actor, status, reason string
	must(t, f.db.R.QueryRow(`SELECT actor, status, reason FROM attendance_overrides WHERE pupil_id = ?`, pupilBinh).Scan(&actor, &status, &reason))
	if actor != "teacher:lan" || status != "excused" || reason != "ốm" {
		t.Errorf("override row %q %q %q", actor, status, reason)
	}
	var audits int
	f.db.R.QueryRow(`SELECT COUNT(*) FROM audit_log WHERE action = ? AND subject = ?`, ActionOverride, "pupil:"+pupilBinh).Scan(&audits)
	if audits != 1 {
		t.Errorf("override audited %d times", audits)
	}
	// A reason is required.
	form.Set("reason", "  ")
	resp, _ = c.do("POST", "/teacher/class/c1/override", form, nil)
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("override without reason: %d", resp.StatusCode)
	}
}

func TestRoleRouteRefusals(t *testing.T) {
	for _, mw := range []bool{true, false} {
		t.Run(map[bool]string{true: "with-auth-middleware", false: "web-checks-alone"}[mw], func(t *testing.T) {
			testRoleRouteRefusals(t, newFixtureMW(t, mw))
		})
	}
}

func testRoleRouteRefusals(t *testing.T, f *fixture) {
	f.ingestDirect(t, event(pupilChi, "in", time.Now()))
	var chiEvent string
	must(t, f.db.R.QueryRow(`SELECT event_id FROM events WHERE student_id = ?`, pupilChi).Scan(&chiEvent))
	day := fmtDay(time.Now())
	clients := map[string]*client{"": f.client(t)}
	for _, u := range []string{"admin", "lan", "hoa"} {
		clients[u] = f.client(t)
		clients[u].login(u)
	}
	type tc struct {
		user, method, path string
		form               url.Values
		want               int
	}
	post := func(v url.Values, c *client) url.Values {
		out := url.Values{"csrf_token": {c.csrf}}
		for k, x := range v {
			out[k] = x
		}
		return out
	}
	cases := []tc{
		{"", "GET", "/teacher", nil, http.StatusSeeOther},
		{"", "GET", "/admin", nil, http.StatusSeeOther},
		{"", "GET", "/parent", nil, http.StatusSeeOther},
		{"", "GET", "/teacher/class/c1/live", nil, http.StatusUnauthorized},
		{"", "POST", "/teacher/class/c1/override", url.Values{}, http.StatusUnauthorized},
		{"", "GET", "/teacher/crop/" + chiEvent, nil, http.StatusSeeOther},
		{"hoa", "GET", "/teacher", nil, http.StatusForbidden},
		{"hoa", "GET", "/teacher/class/c1", nil, http.StatusForbidden},
		{"hoa", "GET", "/teacher/class/c1/live", nil, http.StatusForbidden},
		{"hoa", "GET", "/teacher/crop/" + chiEvent, nil, http.StatusForbidden},
		{"hoa", "GET", "/admin", nil, http.StatusForbidden},
		{"hoa", "GET", "/admin/enrol", nil, http.StatusForbidden},
		{"hoa", "POST", "/admin/enrol", url.Values{}, http.StatusForbidden},
		{"lan", "GET", "/admin", nil, http.StatusForbidden},
		{"lan", "GET", "/admin/enrol", nil, http.StatusForbidden},
		{"lan", "GET", "/parent", nil, http.StatusForbidden},
		{"lan", "POST", "/parent/prefs", url.Values{"msg_lang": {"vi"}}, http.StatusForbidden},
		{"lan", "GET", "/teacher/class/c2", nil, http.StatusForbidden},
		{"lan", "GET", "/teacher/class/c2/live", nil, http.StatusForbidden},
		{"lan", "GET", "/teacher/class/c2/day.csv", nil, http.StatusForbidden},
		{"lan", "GET", "/teacher/class/c2/term", nil, http.StatusForbidden},
		{"lan", "GET", "/teacher/crop/" + chiEvent, nil, http.StatusForbidden},
		{"lan", "POST", "/teacher/class/c2/override", url.Values{"pupil_id": {pupilChi}, "day": {day}, "status": {"present"}, "reason": {"x"}}, http.StatusForbidden},
		// Through her own class, a pupil of another class is still refused.
		{"lan", "POST", "/teacher/class/c1/override", url.Values{"pupil_id": {pupilChi}, "day": {day}, "status": {"present"}, "reason": {"x"}}, http.StatusForbidden},
		{"lan", "POST", "/teacher/class/c1/reject", url.Values{"event_id": {chiEvent}}, http.StatusNotFound},
		{"admin", "GET", "/parent", nil, http.StatusForbidden},
		{"admin", "GET", "/teacher/class/c2", nil, http.StatusOK},
		{"lan", "GET", "/teacher/class/c1", nil, http.StatusOK},
		{"hoa", "GET", "/parent", nil, http.StatusOK},
	}
	for _, k := range cases {
		c := clients[k.user]
		var form url.Values
		if k.form != nil {
			form = post(k.form, c)
		}
		resp, _ := c.do(k.method, k.path, form, nil)
		if resp.StatusCode != k.want {
			t.Errorf("%q %s %s: %d, want %d", k.user, k.method, k.path, resp.StatusCode, k.want)
		}
	}
	var n int
	f.db.R.QueryRow(`SELECT COUNT(*) FROM attendance_overrides`).Scan(&n)
	f.db.R.QueryRow(`SELECT COUNT(*) FROM events WHERE rejected = 1`).Scan(&n)
	if n != 0 {
		t.Errorf("a refused request changed data")
	}
}

func TestHTMLEscaping(t *testing.T) {
	f := newFixture(t)
	c := f.client(t)
	c.login("lan")
	_, body := c.do("GET", "/teacher/class/c1", nil, nil)
	if strings.Contains(body, scriptName) || strings.Contains(body, "<script>alert") {
		t.Fatal("pupil name rendered as markup")
	}
	if !strings.Contains(body, "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;") {
		t.Errorf("escaped name not found in board")
	}
	// Only the one external script tag.
	if strings.Count(body, "<script") != 1 {
		t.Errorf("%d <script> tags", strings.Count(body, "<script"))
	}
	// Open redirect through the language switch is refused.
	resp, _ := c.do("GET", "/lang/en?next=//evil.example/", nil, nil)
	if loc := resp.Header.Get("Location"); loc != "/" {
		t.Errorf("lang redirect to %q", loc)
	}
}
