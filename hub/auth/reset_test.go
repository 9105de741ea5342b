package auth_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/diemdanh/diemdanh/hub/auth"
)

// resetAs posts POST /api/v1/accounts/{target}/reset-password with user's
// basic auth ("" anonymous, "gate" the gate) and returns the status and the
// one-time password of a 200.
func (h *hub) resetAs(t *testing.T, user, target string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest("POST", h.srv.URL+"/api/v1/accounts/"+target+"/reset-password", nil)
	switch user {
	case "":
	case "gate":
		req.SetBasicAuth(h.gateID, h.gatePW)
	default:
		req.SetBasicAuth(user, pw)
	}
	st, body := send(t, req)
	var out struct {
		Username string `json:"username"`
		OTP      string `json:"one_time_password"`
	}
	if st == http.StatusOK {
		if err := json.Unmarshal(body, &out); err != nil || out.Username != target || out.OTP == "" {
			t.Fatalf("reset %s as %s: %v %s", target, user, err, body)
		}
	}
	return st, out.OTP
}

// jsonLogin logs user in and returns the status, the session cookie and
// the principal's must_change.
func (h *hub) jsonLogin(t *testing.T, user, pass string) (int, *http.Cookie, bool) {
	t.Helper()
	resp, err := http.Post(h.srv.URL+"/api/v1/auth/login", "application/json", strings.NewReader(fmt.Sprintf(`{"username":%q,"password":%q}`, user, pass)))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out struct {
		Principal auth.Principal `json:"principal"`
	}
	_ = json.NewDecoder(resp.Body).Decode(&out)
	for _, c := range resp.Cookies() {
		if c.Name == auth.SessionCookie && c.Value != "" {
			return resp.StatusCode, c, out.Principal.MustChange
		}
	}
	return resp.StatusCode, nil, false
}

// withCookie calls path with the session cookie and returns the status.
func (h *hub) withCookie(t *testing.T, method, path string, c *http.Cookie) int {
	t.Helper()
	req, _ := http.NewRequest(method, h.srv.URL+path, nil)
	req.AddCookie(c)
	st, _ := send(t, req)
	return st
}

// TestResetPassword: a hub-wide admin resets a teacher's password through
// the API; her sessions end, the old password stops working, the one-time
// password logs in but must be changed before anything else; the reset
// is audited once without the password.
func TestResetPassword(t *testing.T) {
	h := newHub(t)
	old := h.session(t, "lan")
	if st := h.withCookie(t, "GET", "/api/v1/pupils/"+h.p1, old); st != 200 {
		t.Fatalf("teacher before the reset: %d", st)
	}
	st, otp := h.resetAs(t, "root", "lan")
	if st != 200 || len(otp) < 16 || otp == pw {
		t.Fatalf("reset: %d, one-time password %q", st, otp)
	}
	if st := h.withCookie(t, "GET", "/api/v1/auth/me", old); st != http.StatusUnauthorized {
		t.Errorf("session from before the reset: %d, want 401", st)
	}
	if st, _, _ := h.jsonLogin(t, "lan", pw); st != http.StatusUnauthorized {
		t.Errorf("old password: %d, want 401", st)
	}
	st, sess, must := h.jsonLogin(t, "lan", otp)
	if st != 200 || sess == nil || !must {
		t.Fatalf("one-time password login: %d, must_change %v", st, must)
	}
	if st := h.withCookie(t, "GET", "/api/v1/pupils/"+h.p1, sess); st != http.StatusForbidden {
		t.Errorf("one-time password reached the API: %d, want 403", st)
	}
	ctx := context.Background()
	p, err := h.svc.Session(ctx, sess.Value)
	if err != nil {
		t.Fatal(err)
	}
	if err := h.svc.ChangePassword(ctx, p, otp, "a-new-long-password", "127.0.0.1", sess.Value); err != nil {
		t.Fatal(err)
	}
	if st := h.withCookie(t, "GET", "/api/v1/pupils/"+h.p1, sess); st != 200 {
		t.Errorf("after the change: %d", st)
	}
	var n int
	var detail string
	if err := h.a.DB.R.QueryRow(`SELECT count(*), COALESCE(max(detail), '') FROM audit_log WHERE action = ? AND subject = 'account:lan'
		AND actor = 'admin:root' AND ip = '127.0.0.1' AND school_id = 's1'`, auth.ActionPasswordReset).Scan(&n, &detail); err != nil {
		t.Fatal(err)
	}
	if n != 1 || strings.Contains(detail, otp) || !strings.Contains(detail, `"sessions_ended":1`) {
		t.Errorf("audited resets: %d, detail %s", n, detail)
	}
}

// TestSecurityResetPasswordScope: only admins reset passwords, an admin of
// one school only its accounts (another school's and hub-wide accounts
// are not found, as for /active), nobody their own; every refusal leaves
// the password alone and records nothing.
func TestSecurityResetPasswordScope(t *testing.T) {
	h := newHub(t)
	h.addSecondSchool(t)
	rule, explicit := h.svc.MatchRule("POST", "/api/v1/accounts/:username/reset-password")
	if !explicit || !ruleAllows(rule, auth.RoleAdmin) || ruleAllows(rule, auth.RoleTeacher) || ruleAllows(rule, auth.RoleParent) || ruleAllows(rule, auth.RoleGate) {
		t.Fatalf("route policy of the reset: %+v (explicit %v), want admins only", rule, explicit)
	}
	for _, tc := range []struct {
		user, target string
		want         int
	}{
		{"", "lan", http.StatusUnauthorized},
		{"gate", "lan", http.StatusForbidden},
		{"lan", "me", http.StatusForbidden},  // teacher
		{"me", "lan", http.StatusForbidden},  // parent
		{"ba", "adm2", http.StatusForbidden}, // parent of s2
		{"adm2", "lan", http.StatusNotFound}, // another school's teacher
		{"adm2", "me", http.StatusNotFound},  // another school's parent
		{"adm2", "root", http.StatusNotFound},
		{"adm2", "nobody", http.StatusNotFound},
		{"adm2", "adm2", http.StatusBadRequest}, // own password: the password page
		{"root", "root", http.StatusBadRequest},
	} {
		if st, _ := h.resetAs(t, tc.user, tc.target); st != tc.want {
			t.Errorf("%q resets %q: %d, want %d", tc.user, tc.target, st, tc.want)
		}
	}
	count := func() int {
		var n int
		if err := h.a.DB.R.QueryRow(`SELECT count(*) FROM audit_log WHERE action = ?`, auth.ActionPasswordReset).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	if n := count(); n != 0 {
		t.Fatalf("refused resets audited: %d", n)
	}
	for _, u := range []string{"lan", "me", "root", "adm2", "ba"} {
		if st, _, must := h.jsonLogin(t, u, pw); st != 200 || must {
			t.Errorf("%s after refused resets: %d, must_change %v", u, st, must)
		}
	}
	// The admin of s2 resets a parent of s2; root any account.
	if st, otp := h.resetAs(t, "adm2", "ba"); st != 200 || otp == "" {
		t.Errorf("admin of s2 resets a parent of s2: %d", st)
	}
	if st, _ := h.resetAs(t, "root", "adm2"); st != 200 {
		t.Errorf("root resets the admin of s2: %d", st)
	}
	if n := count(); n != 2 {
		t.Errorf("resets audited: %d, want 2", n)
	}
}
