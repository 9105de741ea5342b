package web

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

// TestReviewPageFeedbackAndRefusals: a teacher's "not this pupil" mark on
// the board is listed on the admin's review page (time, gate, pupil, who,
// what was done), escaped; without a Reviewer the queue says so and its
// actions answer 503; the new routes refuse teachers, parents and
// anonymous callers and need the CSRF token — with hub/auth's middleware
// and with this package's own checks alone. The approve/reject path on
// real templates is hub/enrol's TestAdminReviewPage.
func TestReviewPageFeedbackAndRefusals(t *testing.T) {
	for _, mw := range []bool{true, false} {
		t.Run(map[bool]string{true: "with-auth-middleware", false: "web-checks-alone"}[mw], func(t *testing.T) {
			f := newFixtureMW(t, mw)
			ev := event(pupilScript, "in", time.Now().Add(-2*time.Minute))
			f.ingestDirect(t, ev)
			lan := f.client(t)
			lan.login("lan")
			resp, _ := lan.do("POST", "/teacher/class/c1/reject", url.Values{"csrf_token": {lan.csrf}, "event_id": {ev.EventID}, "reason": {"<b>nhầm</b>"}}, nil)
			if resp.StatusCode != http.StatusSeeOther {
				t.Fatalf("teacher's mark: %d", resp.StatusCode)
			}
			admin := f.client(t)
			admin.login("admin")
			resp, body := admin.do("GET", "/admin/review", nil, nil)
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("review page: %d", resp.StatusCode)
			}
			i := strings.Index(body, `data-event="`+ev.EventID+`"`)
			if i < 0 {
				t.Fatalf("mark not listed:\n%s", body)
			}
			row := body[i:]
			row = row[:strings.Index(row, "</tr>")]
			for _, want := range []string{"Cổng chính", "&lt;script&gt;alert", "Cô Lan", "teacher:lan", "&lt;b&gt;nhầm&lt;/b&gt;", "Chỉ ghi nhận",
				time.UnixMilli(ev.CapturedAt).In(time.FixedZone("ICT", 7*3600)).Format("15:04")} {
				if !strings.Contains(row, want) {
					t.Errorf("feedback row lacks %q: %s", want, row)
				}
			}
			if strings.Contains(body, scriptName) {
				t.Error("pupil name rendered as markup")
			}
			if !strings.Contains(body, `class="error" role="alert"`) {
				t.Error("no notice that the review queue is unavailable")
			}
			if _, ov := admin.do("GET", "/admin", nil, nil); !strings.Contains(ov, `href="/admin/review"`) || !strings.Contains(ov, "1 lần") {
				t.Error("overview does not link the review page with the mark count")
			}
			if resp, _ := admin.do("POST", "/admin/review/1/approve", url.Values{"csrf_token": {admin.csrf}}, nil); resp.StatusCode != http.StatusServiceUnavailable {
				t.Errorf("approve without a Reviewer: %d", resp.StatusCode)
			}
			if resp, _ := admin.do("POST", "/admin/review/1/approve", url.Values{}, nil); resp.StatusCode != http.StatusForbidden {
				t.Errorf("approve without CSRF token: %d", resp.StatusCode)
			}
			hoa := f.client(t)
			hoa.login("hoa")
			anon := f.client(t)
			for name, c := range map[string]*client{"teacher": lan, "parent": hoa, "anonymous": anon} {
				for _, r := range []struct{ method, path string }{
					{"GET", "/admin/review"}, {"GET", "/admin/review/1/photo"}, {"POST", "/admin/review/1/approve"}, {"POST", "/admin/review/1/reject"},
				} {
					var form url.Values
					if r.method == "POST" {
						form = url.Values{"csrf_token": {c.csrf}}
					}
					resp, _ := c.do(r.method, r.path, form, nil)
					ok := resp.StatusCode == http.StatusForbidden || resp.StatusCode == http.StatusUnauthorized ||
						(name == "anonymous" && resp.StatusCode == http.StatusSeeOther && strings.HasPrefix(resp.Header.Get("Location"), "/login"))
					if !ok {
						t.Errorf("%s %s %s: %d, want a refusal", name, r.method, r.path, resp.StatusCode)
					}
				}
			}
		})
	}
}
