package enrol

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/gin-gonic/gin"
	"golang.org/x/crypto/bcrypt"

	"github.com/diemdanh/diemdanh/hub/auth"
	"github.com/diemdanh/diemdanh/hub/consent"
	"github.com/diemdanh/diemdanh/hub/web"
)

// webClient is a cookie-keeping browser stand-in that does not follow
// redirects and remembers the page's CSRF token.
type webClient struct {
	t    *testing.T
	base string
	hc   *http.Client
	csrf string
}

var metaCSRF = regexp.MustCompile(`name="csrf-token" content="([^"]*)"`)

func newWebClient(t *testing.T, base string) *webClient {
	jar, _ := cookiejar.New(nil)
	return &webClient{t: t, base: base, hc: &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error {
		return http.ErrUseLastResponse
	}}}
}

func (w *webClient) do(method, path string, form url.Values, basic ...string) (*http.Response, string) {
	w.t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequest(method, w.base+path, body)
	if err != nil {
		w.t.Fatal(err)
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	if len(basic) == 2 {
		req.SetBasicAuth(basic[0], basic[1])
	}
	resp, err := w.hc.Do(req)
	if err != nil {
		w.t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if m := metaCSRF.FindStringSubmatch(string(b)); m != nil {
		w.csrf = m[1]
	}
	return resp, string(b)
}

func (w *webClient) login(user, pass string) {
	w.t.Helper()
	w.do("GET", "/login", nil)
	resp, _ := w.do("POST", "/login", url.Values{"username": {user}, "password": {pass}, "csrf_token": {w.csrf}})
	if resp.StatusCode != http.StatusSeeOther {
		w.t.Fatalf("login %s: %d", user, resp.StatusCode)
	}
	w.do("GET", "/password", nil)
}

// TestAdminReviewPage runs the admin's review page on a real hub slice
// (SQLite file, hub/auth sessions and route policy, the web UI on a real
// HTTP server, this package's service on the real face engine): two
// templates flagged by the duplicate guard are listed; one is approved
// (it joins the gallery and leaves the queue), the other, whose photo is
// viewed (audited), is rejected (deleted); CSRF is required; teachers,
// parents, gates and anonymous callers are refused; a teacher's "not this
// pupil" mark on the board appears in the admin's list with what was done.
func TestAdminReviewPage(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	const pupilD = "000000000004"
	gh, _ := bcrypt.GenerateFromPassword([]byte("gate-secret-1"), bcrypt.MinCost)
	for _, q := range []string{
		`INSERT INTO staff(id, school_id, full_name, role) VALUES ('t1', 's1', 'Cô Lan', 'teacher')`,
		`UPDATE classes SET homeroom_teacher_id = 't1' WHERE id = 'c1'`,
		`INSERT INTO pupils(id, school_id, class_id, full_name, date_of_birth) VALUES ('000000000004', 's1', 'c1', 'Phạm <b>Dũng</b>', '2020-02-02')`,
		`INSERT INTO guardians(id, pupil_id, full_name) VALUES (1, '000000000001', 'Nguyễn Mẹ')`,
		`INSERT INTO gates(id, school_id, name, direction, username, password_hash) VALUES ('g1', 's1', 'Cổng chính', 'in', 'g1', '` + string(gh) + `')`,
	} {
		if _, err := f.db.W.Exec(q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	if _, err := f.reg.Record(ctx, "admin:test", consent.Grant{PupilID: pupilD, GuardianName: "Phạm Mẹ", ScopeFace: true, ScopePhotos: true, DocumentRef: "DK-004"}); err != nil {
		t.Fatal(err)
	}
	acfg := auth.DefaultConfig()
	acfg.BcryptCost = bcrypt.MinCost
	as, err := auth.New(f.db, f.al, acfg, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	const pw = "mat-khau-12345"
	for _, a := range []auth.NewAccount{
		{Username: "admin", Password: pw, Role: auth.RoleAdmin, SchoolID: "s1", FullName: "Quản trị"},
		{Username: "lan", Password: pw, Role: auth.RoleTeacher, SchoolID: "s1", StaffID: "t1", FullName: "Cô Lan"},
		{Username: "me", Password: pw, Role: auth.RoleParent, SchoolID: "s1", GuardianIDs: []int64{1}},
	} {
		if _, _, err := as.CreateAccount(ctx, "test", a); err != nil {
			t.Fatal(err)
		}
	}
	w, err := web.New(web.Default(), web.Deps{DB: f.db, Sessions: as, Audit: f.al,
		Feedback: WebFeedback{S: f.svc}, Enroller: WebEnroller{S: f.svc}, Reviewer: WebReview{S: f.svc}})
	if err != nil {
		t.Fatal(err)
	}
	gin.SetMode(gin.ReleaseMode)
	eng := gin.New()
	eng.Use(as.Middleware()) // as hub/app installs it: route policy, CSRF, sessions
	w.Routes(eng)
	ts := httptest.NewServer(eng)
	t.Cleanup(ts.Close)

	// A is enrolled; B and D are the same face (jimin6 is within the
	// embedder's DuplicateMax of A's jimin7): both held for review. B's consent keeps no photo, D's does.
	if r, err := f.svc.EnrolPhotos(ctx, "admin:test", pupilA, []Photo{{Name: "a.jpg", Data: readPhotoT(t, "jimin7.jpg")}}); err != nil || r.Accepted != 1 {
		t.Fatalf("enrol A: %+v %v", r, err)
	}
	var dist float64 // B's distance to A's template, shown on the page
	tidOf := func(pupil string) int64 {
		r, err := f.svc.EnrolPhotos(ctx, "admin:test", pupil, []Photo{{Name: "x.jpg", Data: readPhotoT(t, "jimin6.jpg")}})
		if err != nil || r.Review != 1 || r.Photos[0].Duplicate == nil {
			t.Fatalf("enrol %s: %+v %v", pupil, r, err)
		}
		if dist == 0 {
			dist = r.Photos[0].Duplicate.Distance
		}
		return r.Photos[0].TemplateID
	}
	tidB, tidD := tidOf(pupilB), tidOf(pupilD)
	row := func(tid int64) string { return fmt.Sprintf(`data-template="%d"`, tid) }

	admin := newWebClient(t, ts.URL)
	admin.login("admin", pw)
	resp, body := admin.do("GET", "/admin/review", nil)
	if resp.StatusCode != 200 || !strings.Contains(body, row(tidB)) || !strings.Contains(body, row(tidD)) {
		t.Fatalf("review page: %d, rows %d/%d missing\n%s", resp.StatusCode, tidB, tidD, body)
	}
	for _, want := range []string{"Trần Bình", "Nguyễn An", "Phạm &lt;b&gt;Dũng&lt;/b&gt;", fmt.Sprintf("%.3f", dist), `lang="vi"`} {
		if !strings.Contains(body, want) {
			t.Errorf("review page lacks %q", want)
		}
	}
	if strings.Contains(body, "<b>Dũng") {
		t.Error("pupil name rendered as markup")
	}
	// No photo is fetched until asked for (each view is audited).
	if strings.Contains(body, "/photo\"") {
		t.Error("photos embedded without being asked for")
	}
	if _, ov := admin.do("GET", "/admin", nil); !strings.Contains(ov, `href="/admin/review"`) || !strings.Contains(ov, "2 mẫu") {
		t.Errorf("overview does not link the review queue with its count")
	}

	status := func(tid int64) string {
		var s string
		if err := f.db.R.QueryRow(`SELECT status FROM face_templates WHERE id = ?`, tid).Scan(&s); err != nil {
			return "gone"
		}
		return s
	}
	// CSRF: missing or wrong token is refused and changes nothing.
	for _, tok := range []string{"", "x" + admin.csrf} {
		form := url.Values{}
		if tok != "" {
			form.Set("csrf_token", tok)
		}
		if resp, _ := admin.do("POST", fmt.Sprintf("/admin/review/%d/approve", tidB), form); resp.StatusCode != http.StatusForbidden {
			t.Errorf("approve with token %q: %d", tok, resp.StatusCode)
		}
		if resp, _ := admin.do("POST", fmt.Sprintf("/admin/review/%d/reject", tidD), form); resp.StatusCode != http.StatusForbidden {
			t.Errorf("reject with token %q: %d", tok, resp.StatusCode)
		}
	}
	// Other roles and anonymous callers are refused.
	teacher := newWebClient(t, ts.URL)
	teacher.login("lan", pw)
	parent := newWebClient(t, ts.URL)
	parent.login("me", pw)
	anon := newWebClient(t, ts.URL)
	gate := newWebClient(t, ts.URL)
	for _, c := range []struct {
		name string
		cl   *webClient
	}{{"teacher", teacher}, {"parent", parent}, {"anonymous", anon}, {"gate", gate}} {
		var basic []string
		if c.name == "gate" {
			basic = []string{"g1", "gate-secret-1"}
		}
		for _, r := range []struct{ method, path string }{
			{"GET", "/admin/review"}, {"GET", fmt.Sprintf("/admin/review/%d/photo", tidD)},
			{"POST", fmt.Sprintf("/admin/review/%d/approve", tidB)}, {"POST", fmt.Sprintf("/admin/review/%d/reject", tidD)},
		} {
			var form url.Values
			if r.method == "POST" {
				form = url.Values{"csrf_token": {c.cl.csrf}}
			}
			resp, _ := c.cl.do(r.method, r.path, form, basic...)
			ok := resp.StatusCode == http.StatusForbidden || resp.StatusCode == http.StatusUnauthorized ||
				(c.name == "anonymous" && resp.StatusCode == http.StatusSeeOther && strings.HasPrefix(resp.Header.Get("Location"), "/login"))
			if !ok {
				t.Errorf("%s %s %s: %d, want a refusal", c.name, r.method, r.path, resp.StatusCode)
			}
		}
	}
	if status(tidB) != "review" || status(tidD) != "review" {
		t.Fatalf("a refused request changed a template: B %s, D %s", status(tidB), status(tidD))
	}
	if n := f.count(t, `SELECT count(*) FROM audit_log WHERE action = 'photo_view'`); n != 0 {
		t.Fatalf("refused photo requests were served: %d views audited", n)
	}

	// Approve B: it joins the gallery and leaves the queue.
	resp, _ = admin.do("POST", fmt.Sprintf("/admin/review/%d/approve", tidB), url.Values{"csrf_token": {admin.csrf}})
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/admin/review?done=approved" {
		t.Fatalf("approve: %d %s", resp.StatusCode, resp.Header.Get("Location"))
	}
	_, m, err := f.tpl.ActiveDescriptors(ctx, "s1")
	if err != nil || len(m[pupilB]) != 1 {
		t.Fatalf("approved template not in the gallery source: %v %v", m, err)
	}
	if resp, _ := admin.do("POST", fmt.Sprintf("/admin/review/%d/approve", tidB), url.Values{"csrf_token": {admin.csrf}}); resp.StatusCode != http.StatusConflict {
		t.Errorf("approving twice: %d, want 409", resp.StatusCode)
	}
	// D's photos: asked for, shown, each view audited.
	_, body = admin.do("GET", fmt.Sprintf("/admin/review?show=%d", tidD), nil)
	if strings.Contains(body, row(tidB)) || !strings.Contains(body, row(tidD)) {
		t.Fatal("approved template still queued, or D missing")
	}
	src := fmt.Sprintf(`src="/admin/review/%d/photo"`, tidD)
	if !strings.Contains(body, src) {
		t.Fatalf("photo of D not shown on request")
	}
	resp, img := admin.do("GET", fmt.Sprintf("/admin/review/%d/photo", tidD), nil)
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "image/jpeg" || resp.Header.Get("Cache-Control") != "no-store" || len(img) < 1000 {
		t.Fatalf("photo: %d %v %d bytes", resp.StatusCode, resp.Header, len(img))
	}
	if n := f.count(t, `SELECT count(*) FROM audit_log WHERE action = 'photo_view' AND actor = 'admin:admin' AND subject = ?`, "pupil:"+pupilD); n != 1 {
		t.Fatalf("photo views audited: %d, want 1", n)
	}
	// B's consent kept no photo: nothing to show.
	if resp, _ := admin.do("GET", fmt.Sprintf("/admin/review/%d/photo", tidB), nil); resp.StatusCode != http.StatusNotFound {
		t.Errorf("photo kept without consent: %d", resp.StatusCode)
	}
	// Reject D: deleted.
	resp, _ = admin.do("POST", fmt.Sprintf("/admin/review/%d/reject", tidD), url.Values{"csrf_token": {admin.csrf}})
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("reject: %d", resp.StatusCode)
	}
	if status(tidD) != "gone" {
		t.Fatalf("rejected template still stored (%s)", status(tidD))
	}
	if n := f.count(t, `SELECT count(*) FROM audit_log WHERE action = 'delete' AND subject = ?`, "pupil:"+pupilD); n != 1 {
		t.Errorf("rejection audited %d times", n)
	}
	if n := f.count(t, `SELECT count(*) FROM audit_log WHERE action = 'template_status' AND subject = ?`, "pupil:"+pupilB); n != 1 {
		t.Errorf("approval audited %d times", n)
	}
	_, body = admin.do("GET", "/admin/review?done=rejected", nil)
	if strings.Contains(body, row(tidD)) || !strings.Contains(body, `id="review-empty"`) || !strings.Contains(body, "Đã từ chối") {
		t.Fatal("queue not empty after approve and reject")
	}

	// A teacher marks a recognition "not this pupil" on the class board.
	at := time.Now().Add(-time.Minute).UnixMilli()
	if _, err := f.db.W.Exec(`INSERT INTO events(event_id, school_id, gate_id, direction, student_id, captured_at, received_at, distance, margin, frames_used, model)
		VALUES ('ev-7', 's1', 'g1', 'in', ?, ?, ?, 0.3, 0.1, 3, 'dlib-resnet-v1@1')`, pupilA, at, at); err != nil {
		t.Fatal(err)
	}
	resp, _ = teacher.do("POST", "/teacher/class/c1/reject", url.Values{"csrf_token": {teacher.csrf}, "event_id": {"ev-7"}, "reason": {"em khác <i>lớp</i>"}})
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("teacher's mark: %d", resp.StatusCode)
	}
	_, body = admin.do("GET", "/admin/review", nil)
	i := strings.Index(body, `data-event="ev-7"`)
	if i < 0 {
		t.Fatalf("mark not listed:\n%s", body)
	}
	fb := body[i:]
	fb = fb[:strings.Index(fb, "</tr>")]
	for _, want := range []string{"Cổng chính", "Nguyễn An", "Cô Lan", "teacher:lan", "em khác &lt;i&gt;lớp&lt;/i&gt;", "Chỉ ghi nhận"} {
		if !strings.Contains(fb, want) {
			t.Errorf("feedback row lacks %q: %s", want, fb)
		}
	}
	// English through the catalogue.
	admin.do("GET", "/lang/en?next=/admin/review", nil)
	if _, body = admin.do("GET", "/admin/review", nil); !strings.Contains(body, "Recorded only") || !strings.Contains(body, "No templates await review") {
		t.Error("review page not in English after the switch")
	}
}
