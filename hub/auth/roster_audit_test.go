package auth_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/diemdanh/diemdanh/hub/roster"
)

// TestRosterWritesAuditedAsPrincipal: through the whole hub, a roster
// write of the JSON API is audited as the logged-in account from the
// client's address, about the school written to; a refused one is not.
func TestRosterWritesAuditedAsPrincipal(t *testing.T) {
	h := newHub(t)
	h.addSecondSchool(t)
	call := func(user, method, path, body string) int {
		t.Helper()
		req, _ := http.NewRequest(method, h.srv.URL+path, strings.NewReader(body))
		req.SetBasicAuth(user, pw)
		req.Header.Set("Content-Type", "application/json")
		st, _ := send(t, req)
		return st
	}
	count := func(actor, action, subject, school string) int {
		t.Helper()
		var n int
		if err := h.a.DB.R.QueryRow(`SELECT count(*) FROM audit_log WHERE actor = ? AND action = ? AND subject = ? AND ip = '127.0.0.1' AND school_id = ?`,
			actor, action, subject, school).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	if st := call("adm2", "POST", "/api/v1/schools/s2/classes", `{"id":"c9","name":"9A","grade":9}`); st != http.StatusCreated {
		t.Fatalf("admin of s2 creates a class: %d", st)
	}
	if st := call("lan", "PATCH", "/api/v1/classes/c1", `{"grade":7}`); st != http.StatusForbidden {
		t.Fatalf("teacher patches a class: %d", st)
	}
	if st := call("root", "PATCH", "/api/v1/classes/c1", `{"grade":7}`); st != http.StatusOK {
		t.Fatalf("root patches a class: %d", st)
	}
	for _, tc := range []struct {
		actor, action, subject, school string
		want                           int
	}{
		{"admin:adm2", roster.ActionClassCreate, "class:c9", "s2", 1},
		{"teacher:lan", roster.ActionClassUpdate, "class:c1", "s1", 0},
		{"admin:root", roster.ActionClassUpdate, "class:c1", "s1", 1},
	} {
		if n := count(tc.actor, tc.action, tc.subject, tc.school); n != tc.want {
			t.Errorf("%s %s %s: %d audit entries, want %d", tc.actor, tc.action, tc.subject, n, tc.want)
		}
	}
}
