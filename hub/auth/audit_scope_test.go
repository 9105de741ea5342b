package auth_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"testing"

	"github.com/diemdanh/diemdanh/hub/auth"
)

// auditEntry is an entry of GET /api/v1/audit as a client reads it.
type auditEntry struct {
	Actor   string `json:"actor"`
	Action  string `json:"action"`
	Subject string `json:"subject"`
	Detail  struct {
		Mark string `json:"mark"`
	} `json:"detail"`
}

// seedAuditScope records marked entries about s1, s2 and no school, and
// one older entry without a school (written as before the school column
// existed). It returns the marks each school's admin must see exactly.
func (h *hub) seedAuditScope(t *testing.T) (s1, s2, all []string) {
	t.Helper()
	ctx := context.Background()
	if _, _, err := h.svc.CreateAccount(ctx, "test", auth.NewAccount{Username: "adm1", Password: pw, Role: auth.RoleAdmin, SchoolID: "s1"}); err != nil {
		t.Fatal(err)
	}
	entries := []struct{ mark, actor, action, subject, school string }{
		{"pupil-s1", "admin:root", "photo_view", "pupil:" + h.p1, "s1"},
		{"pupil-s2", "admin:root", "photo_view", "pupil:000000000033", "s2"},
		{"actor-s2", "admin:adm2", "template_status", "templates", "s2"},
		{"class-s1", "teacher:lan", "override", "class:c1", "s1"},
		{"account-s2", "anonymous", "login_failed", "account:adm2", "s2"},
		{"school-s1", "system", "operating_point", "school:s1", "s1"},
		{"gate-s2", "system", "gate_classes", "gate:g3", "s2"},
		{"no-school", "system", "retention", "events.face_jpeg", ""},
		{"unknown-user", "anonymous", "login_failed", "account:nobody", ""},
	}
	for _, e := range entries {
		if err := h.a.Mods.Audit.Record(ctx, e.actor, e.action, e.subject, map[string]string{"mark": e.mark}, ""); err != nil {
			t.Fatal(err)
		}
		all = append(all, e.mark)
		switch e.school {
		case "s1":
			s1 = append(s1, e.mark)
		case "s2":
			s2 = append(s2, e.mark)
		}
	}
	// An entry from before audit_log had a school: hub-wide admins only.
	if _, err := h.a.DB.W.Exec(`INSERT INTO audit_log(at, actor, action, subject, detail) VALUES (1, 'admin:root', 'delete', ?, '{"mark":"old-row"}')`, "pupil:"+h.p1); err != nil {
		t.Fatal(err)
	}
	all = append(all, "old-row")
	return s1, s2, all
}

// auditGet calls path as user (HTTP basic) and decodes the body into out
// on 200.
func (h *hub) auditGet(t *testing.T, user, path string, out any) int {
	t.Helper()
	req, _ := http.NewRequest("GET", h.srv.URL+path, nil)
	req.SetBasicAuth(user, pw)
	st, body := send(t, req)
	if st == http.StatusOK && out != nil {
		if err := json.Unmarshal(body, out); err != nil {
			t.Fatalf("%s %s: %v: %s", user, path, err, body)
		}
	}
	return st
}

func marksOf(es []auditEntry) []string {
	var m []string
	for _, e := range es {
		if e.Detail.Mark != "" {
			m = append(m, e.Detail.Mark)
		}
	}
	sort.Strings(m)
	return m
}

// TestSecurityAuditScope: the audit log and the processing record are for
// admins, scoped by least privilege. A hub-wide admin reads every entry
// (also those about no school, and entries older than the school column);
// an admin of one school only the entries about that school — whether the
// school comes from the entry's subject or its actor — and cannot widen
// that with a filter; teachers and parents are refused.
func TestSecurityAuditScope(t *testing.T) {
	h := newHub(t)
	h.addSecondSchool(t)
	s1, s2, all := h.seedAuditScope(t)
	for _, m := range [][]string{s1, s2, all} {
		sort.Strings(m)
	}
	cases := []struct {
		name, user string
		status     int
		marks      []string // exactly these marked entries
		schools    []string // of the processing record
		pupils     int64    // roster count of the processing record
		foreign    []string // subjects and actors that must not appear
	}{
		{"hub admin", "root", 200, all, []string{"s1", "s2", "s3"}, 3, nil},
		{"school admin A", "adm1", 200, s1, []string{"s1"}, 2, []string{"account:adm2", "account:ba", "admin:adm2", "pupil:000000000033", "account:root"}},
		{"school admin B", "adm2", 200, s2, []string{"s2"}, 1, []string{"account:adm1", "account:lan", "account:me", "teacher:lan", "pupil:" + h.p1, "account:root"}},
		{"teacher", "lan", http.StatusForbidden, nil, nil, 0, nil},
		{"parent", "me", http.StatusForbidden, nil, nil, 0, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var got struct{ Entries []auditEntry }
			st := h.auditGet(t, tc.user, "/api/v1/audit?limit=1000", &got)
			if st != tc.status {
				t.Fatalf("GET /api/v1/audit: status %d, want %d", st, tc.status)
			}
			var rec struct {
				Schools []string `json:"schools"`
				Items   []struct {
					Count int64 `json:"count"`
				} `json:"items"`
			}
			if st := h.auditGet(t, tc.user, "/api/v1/audit/processing-record", &rec); st != tc.status {
				t.Fatalf("GET processing-record: status %d, want %d", st, tc.status)
			}
			if tc.status != 200 {
				return
			}
			if m := marksOf(got.Entries); !slices.Equal(m, tc.marks) {
				t.Errorf("sees marked entries %v, want %v", m, tc.marks)
			}
			for _, e := range got.Entries {
				if slices.Contains(tc.foreign, e.Subject) || slices.Contains(tc.foreign, e.Actor) {
					t.Errorf("sees another school's entry %+v", e)
				}
			}
			if !slices.Equal(rec.Schools, tc.schools) || len(rec.Items) == 0 || rec.Items[0].Count != tc.pupils {
				t.Errorf("processing record: schools %v, items %+v; want schools %v with %d pupils", rec.Schools, rec.Items, tc.schools, tc.pupils)
			}
		})
	}
	// A filter on another school's pupil finds nothing for a school admin.
	var got struct{ Entries []auditEntry }
	if st := h.auditGet(t, "adm2", "/api/v1/audit?subject="+url.QueryEscape("pupil:"+h.p1), &got); st != 200 || len(got.Entries) != 0 {
		t.Errorf("admin of s2 filtering on a pupil of s1: status %d, %d entries %+v", st, len(got.Entries), got.Entries)
	}
	// The admins' own views of the log stay in their school.
	var views struct{ Entries []auditEntry }
	if st := h.auditGet(t, "adm1", "/api/v1/audit?action=audit_view&limit=1000", &views); st != 200 {
		t.Fatalf("admin of s1: status %d", st)
	}
	for _, e := range views.Entries {
		if e.Actor != "admin:adm1" {
			t.Errorf("admin of s1 sees another reader's view of the log: %+v", e)
		}
	}
	if len(views.Entries) == 0 {
		t.Error("admin of s1 does not see their own views of the log")
	}
}
