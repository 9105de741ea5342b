package web

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"html/template"
	"io"
	"maps"
	"mime/multipart"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/diemdanh/diemdanh/hub/auth"
	"github.com/diemdanh/diemdanh/hub/facetemplates"
	"github.com/diemdanh/diemdanh/hub/gallerysrv"
	"github.com/diemdanh/diemdanh/hub/notify"
	"github.com/diemdanh/diemdanh/hub/roster"
	"github.com/diemdanh/diemdanh/models/match"
)

// newSchoolFixture is the web fixture with a real gallery server and
// template store behind the school pages, a second school s2 with its own
// admin (admin2) and a hub-wide admin (root).
func newSchoolFixture(t *testing.T, authMW bool) (*fixture, *facetemplates.Store) {
	t.Helper()
	var tpl *facetemplates.Store
	f := newFixtureOpts(t, authMW, func(d *Deps) {
		key := make([]byte, facetemplates.KeySize)
		rand.Read(key)
		var err error
		tpl, err = facetemplates.Open(d.DB, key, nil, time.Now)
		must(t, err)
		d.Candidates = gallerysrv.New(d.DB, tpl, nil, gallerysrv.Default(), nil, time.Now)
		d.Templates = tpl
	})
	_, err := f.db.W.Exec(`INSERT INTO schools(id, name) VALUES ('s2', 'Trường Tiểu học Lê Lợi')`)
	must(t, err)
	for _, a := range []auth.NewAccount{
		{Username: "admin2", Password: password, Role: auth.RoleAdmin, SchoolID: "s2", FullName: "Quản trị trường 2"},
		{Username: "root", Password: password, Role: auth.RoleAdmin, FullName: "Quản trị hệ thống"},
	} {
		_, _, err := f.auth.CreateAccount(f.ctx, "test", a)
		must(t, err)
	}
	return f, tpl
}

// postFile posts a multipart form with a CSV file as field "file".
func (c *client) postFile(path string, fields map[string]string, name string, file []byte) (*http.Response, string) {
	c.t.Helper()
	var b bytes.Buffer
	w := multipart.NewWriter(&b)
	for k, v := range fields {
		must(c.t, w.WriteField(k, v))
	}
	fw, err := w.CreateFormFile("file", name)
	must(c.t, err)
	_, _ = fw.Write(file)
	must(c.t, w.Close())
	req, err := http.NewRequest("POST", c.f.ts.URL+path, &b)
	must(c.t, err)
	req.Header.Set("Content-Type", w.FormDataContentType())
	resp, err := c.hc.Do(req)
	must(c.t, err)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if m := csrfRe.FindStringSubmatch(string(body)); m != nil {
		c.csrf = m[1]
	}
	return resp, string(body)
}

func TestSchoolAdminRoutesByRole(t *testing.T) {
	for _, mw := range []bool{true, false} {
		t.Run(map[bool]string{true: "with-auth-middleware", false: "web-checks-alone"}[mw], func(t *testing.T) {
			f, _ := newSchoolFixture(t, mw)
			testSchoolRoutesByRole(t, f)
		})
	}
}

// testSchoolRoutesByRole: every new route, GET and POST, for anonymous,
// a parent, a teacher, another school's admin, the school's admin and a
// hub-wide admin. Anonymous: to the login page (GET) or 401; parents and
// teachers: 403; another school's admin: 403; admins: the page (200) or
// the redirect after a change (303).
func testSchoolRoutesByRole(t *testing.T, f *fixture) {
	roles := []string{"", "hoa", "lan", "admin2", "admin", "root"}
	clients := map[string]*client{"": f.client(t)}
	for _, u := range roles[1:] {
		clients[u] = f.client(t)
		clients[u].login(u)
	}
	// n numbers what each role creates, so that admins' creations differ.
	n := map[string]int{"": 1, "hoa": 2, "lan": 3, "admin2": 4, "admin": 5, "root": 6}
	csvPupils := func(u string) []byte {
		return []byte(fmt.Sprintf("personal_id,full_name,class\n09900000000%d,Đỗ Văn Nhập,1A\n", n[u]))
	}
	const page, changed, shown = 200, 303, 200
	type route struct {
		method, path string
		form         func(u string) url.Values
		file         func(u string) []byte
		admin        int // what an admin of s1 (and root) gets
	}
	routes := []route{
		{"GET", "/admin/school/s1", nil, nil, page},
		{"GET", "/admin/school/s1/classes", nil, nil, page},
		{"POST", "/admin/school/s1/classes", func(u string) url.Values {
			return url.Values{"id": {"new-" + u}, "name": {"Lớp mới " + u}, "grade": {"3"}, "start_time": {"07:00"}, "late_after_min": {"15"}, "absent_cutoff": {"09:00"}, "active": {"1"}}
		}, nil, changed},
		{"GET", "/admin/school/s1/classes/c1", nil, nil, page},
		{"POST", "/admin/school/s1/classes/c1", func(string) url.Values {
			return url.Values{"name": {"1A"}, "grade": {"1"}, "homeroom_teacher_id": {"t1"}, "start_time": {"00:00"}, "late_after_min": {"240"}, "absent_cutoff": {"23:59"}, "active": {"1"}}
		}, nil, changed},
		{"GET", "/admin/school/s1/pupils", nil, nil, page},
		{"POST", "/admin/school/s1/pupils", func(u string) url.Values {
			return url.Values{"id": {fmt.Sprintf("09800000000%d", n[u])}, "full_name": {"Vũ Thị Mới"}, "class_id": {"c2"}, "active": {"1"}}
		}, nil, changed},
		{"GET", "/admin/school/s1/pupils/" + pupilBinh, nil, nil, page},
		{"POST", "/admin/school/s1/pupils/" + pupilBinh, func(string) url.Values {
			return url.Values{"full_name": {"Trần Thị Bình"}, "class_id": {"c1"}, "active": {"1"}}
		}, nil, changed},
		{"POST", "/admin/school/s1/pupils/" + pupilBinh + "/guardians", func(u string) url.Values {
			return url.Values{"full_name": {"Phụ huynh " + u}, "relation": {"Mẹ"}}
		}, nil, changed},
		{"GET", "/admin/school/s1/staff", nil, nil, page},
		{"POST", "/admin/school/s1/staff", func(u string) url.Values {
			return url.Values{"id": {"gv-" + u}, "full_name": {"Thầy " + u}, "role": {"teacher"}}
		}, nil, changed},
		{"POST", "/admin/school/s1/staff/t2/account", func(u string) url.Values { return url.Values{"username": {"minh-" + u}} }, nil, shown},
		{"POST", "/admin/school/s1/staff/t2/active", func(string) url.Values { return url.Values{"active": {"1"}} }, nil, changed},
		{"POST", "/admin/school/s1/staff/t2/classes", func(string) url.Values { return url.Values{"class_id": {"c1"}, "assign": {"1"}} }, nil, changed},
		{"POST", "/admin/school/s1/staff/t2/reset-password", func(string) url.Values { return url.Values{"username": {"minh"}} }, nil, shown},
		{"GET", "/admin/school/s1/import", nil, nil, page},
		{"POST", "/admin/school/s1/import/pupils", nil, csvPupils, shown},
		{"POST", "/admin/school/s1/import/candidates", nil, func(string) []byte { return []byte("class,sessions\n1A,sáng\n") }, shown},
	}
	want := func(r route, u string) int {
		switch u {
		case "":
			if r.method == "GET" {
				return http.StatusSeeOther
			}
			return http.StatusUnauthorized
		case "hoa", "lan", "admin2":
			return http.StatusForbidden
		}
		return r.admin
	}
	for _, r := range routes {
		for _, u := range roles {
			c := clients[u]
			var resp *http.Response
			var body string
			switch {
			case r.file != nil:
				resp, body = c.postFile(r.path, map[string]string{"csrf_token": c.csrf}, "list.csv", r.file(u))
			case r.form != nil:
				form := r.form(u)
				form.Set("csrf_token", c.csrf)
				resp, body = c.do(r.method, r.path, form, nil)
			default:
				resp, body = c.do(r.method, r.path, nil, nil)
			}
			w := want(r, u)
			if resp.StatusCode != w {
				t.Errorf("%q %s %s: %d, want %d\n%.300s", u, r.method, r.path, resp.StatusCode, w, body)
				continue
			}
			if u == "" && w == http.StatusSeeOther && !strings.HasPrefix(resp.Header.Get("Location"), "/login") {
				t.Errorf("anonymous %s: redirected to %q", r.path, resp.Header.Get("Location"))
			}
		}
	}
	// The school picker: a school's admin goes to their school, a
	// hub-wide admin chooses among all.
	for u, w := range map[string]string{"admin": "/admin/school/s1", "admin2": "/admin/school/s2"} {
		if resp, _ := clients[u].do("GET", "/admin/school", nil, nil); resp.StatusCode != 303 || resp.Header.Get("Location") != w {
			t.Errorf("%s /admin/school: %d %s", u, resp.StatusCode, resp.Header.Get("Location"))
		}
	}
	if resp, body := clients["root"].do("GET", "/admin/school", nil, nil); resp.StatusCode != 200 || !strings.Contains(body, "Lê Lợi") || !strings.Contains(body, "Kim Đồng") {
		t.Errorf("root /admin/school: %d", resp.StatusCode)
	}
	for _, u := range []string{"", "hoa", "lan"} {
		if resp, _ := clients[u].do("GET", "/admin/school", nil, nil); resp.StatusCode != want(routes[0], u) {
			t.Errorf("%q /admin/school: %d", u, resp.StatusCode)
		}
	}
	// Only the two admins' changes are stored.
	var classes, pupils, staff, guardians int
	must(t, f.db.R.QueryRow(`SELECT (SELECT count(*) FROM classes WHERE id LIKE 'new-%'), (SELECT count(*) FROM pupils WHERE id LIKE '09_0000000%'),
		(SELECT count(*) FROM staff WHERE id LIKE 'gv-%'), (SELECT count(*) FROM guardians WHERE full_name LIKE 'Phụ huynh %')`).
		Scan(&classes, &pupils, &staff, &guardians))
	if classes != 2 || pupils != 4 || staff != 2 || guardians != 2 {
		t.Errorf("stored: %d classes, %d pupils, %d staff, %d guardians; want 2, 4, 2, 2 (the admins' only)", classes, pupils, staff, guardians)
	}
	var accounts int
	must(t, f.db.R.QueryRow(`SELECT count(*) FROM audit_log WHERE action = 'account_create' AND actor IN ('admin:admin', 'admin:root')`).Scan(&accounts))
	if accounts != 2 {
		t.Errorf("audited account creations by the admins: %d, want 2", accounts)
	}
	checkSchoolPagesAudited(t, f)
}

// checkSchoolPagesAudited: each admin's roster writes and password reset
// through the pages of testSchoolRoutesByRole are audited once each, as
// that admin, from the client's address, about s1; the refused callers'
// attempts not at all.
func checkSchoolPagesAudited(t *testing.T, f *fixture) {
	t.Helper()
	want := map[string]int{roster.ActionClassCreate: 1, roster.ActionClassUpdate: 1, roster.ActionPupilCreate: 1, roster.ActionPupilUpdate: 1,
		roster.ActionGuardianCreate: 1, roster.ActionStaffCreate: 1, roster.ActionStaffUpdate: 1, roster.ActionPupilImport: 1, auth.ActionPasswordReset: 1}
	actions := make([]any, 0, len(want))
	marks := ""
	for a := range want {
		actions, marks = append(actions, a), marks+",?"
	}
	for _, actor := range []string{"admin:admin", "admin:root", "admin:admin2", "teacher:lan", "parent:hoa"} {
		rows, err := f.db.R.Query(`SELECT action, subject, ip, COALESCE(school_id, '') FROM audit_log WHERE actor = ? AND action IN (`+marks[1:]+`)`,
			append([]any{actor}, actions...)...)
		must(t, err)
		got := map[string]int{}
		for rows.Next() {
			var action, subject, ip, school string
			must(t, rows.Scan(&action, &subject, &ip, &school))
			got[action]++
			if ip != "127.0.0.1" || school != "s1" {
				t.Errorf("%s %s %s: from %q about school %q, want 127.0.0.1 and s1", actor, action, subject, ip, school)
			}
		}
		must(t, rows.Close())
		w := want
		if actor != "admin:admin" && actor != "admin:root" {
			w = map[string]int{}
		}
		if !maps.Equal(got, w) {
			t.Errorf("audited for %s: %v, want %v", actor, got, w)
		}
	}
}

// TestSchoolAdminBadInput: a CSV file with one bad row imports nothing and
// the page lists the row; a wrong personal ID gets a clear message by the
// field and the typed values back; another school's class or pupil is 404.
func TestSchoolAdminBadInput(t *testing.T) {
	f, _ := newSchoolFixture(t, true)
	c := f.client(t)
	c.login("admin")
	count := func() int {
		var n int
		must(t, f.db.R.QueryRow(`SELECT count(*) FROM pupils`).Scan(&n))
		return n
	}
	before := count()
	bad := "personal_id,full_name,class\n" +
		"011111111101,Nguyễn Thị Thu,1A\n" +
		"01111111110,Lê Văn Sai,1A\n" + // 11 digits
		"011111111103,Phạm Minh Đức,9Z\n" // no such class
	resp, body := c.postFile("/admin/school/s1/import/pupils", map[string]string{"csrf_token": c.csrf}, "lop-1a.csv", []byte(bad))
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("bad file: %d", resp.StatusCode)
	}
	for _, s := range []string{`data-applied="false"`, `<tr data-line="3">`, `<code>personal_id</code>`, `<tr data-line="4">`, `<code>class</code>`, "không nhập dòng nào", "lop-1a.csv"} {
		if !strings.Contains(body, s) {
			t.Errorf("report lacks %q", s)
		}
	}
	if strings.Contains(body, `data-line="2"`) {
		t.Error("the good row is reported as an error")
	}
	if n := count(); n != before {
		t.Fatalf("a refused file imported %d pupils", n-before)
	}
	// A dry run of a clean file checks it and imports nothing either.
	good := "personal_id,full_name,class\n011111111101,Nguyễn Thị Thu,1A\n"
	resp, body = c.postFile("/admin/school/s1/import/pupils", map[string]string{"csrf_token": c.csrf, "dry_run": "1"}, "ok.csv", []byte(good))
	if resp.StatusCode != 200 || !strings.Contains(body, `data-applied="false"`) || count() != before {
		t.Errorf("dry run: %d, %d pupils", resp.StatusCode, count()-before)
	}
	// A bad candidates file: rows reported in Vietnamese, nothing saved.
	resp, body = c.postFile("/admin/school/s1/import/candidates", map[string]string{"csrf_token": c.csrf}, "ca.csv", []byte("lớp,ca\n1A,sáng\n2B,tối\n"))
	if resp.StatusCode != 400 || !strings.Contains(body, `<tr data-line="3">`) || !strings.Contains(body, "ca học không hợp lệ") {
		t.Errorf("bad candidates file: %d\n%s", resp.StatusCode, body)
	}
	var ss string
	must(t, f.db.R.QueryRow(`SELECT sessions FROM classes WHERE id = 'c1'`).Scan(&ss))
	if ss != "" {
		t.Errorf("refused candidates file saved c1's sessions: %q", ss)
	}

	// A wrong personal ID on the form.
	resp, body = c.do("POST", "/admin/school/s1/pupils", url.Values{"csrf_token": {c.csrf}, "id": {"12345"}, "full_name": {"Hồ Ngọc Hà"}, "class_id": {"c2"}}, nil)
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("bad personal ID: %d", resp.StatusCode)
	}
	msg := f.web.cat.T("vi", "sa.err.pupil.id")
	if !strings.Contains(body, `id="pupil-id-error">`+msg) || !strings.Contains(body, `aria-invalid="true"`) ||
		!strings.Contains(body, `value="Hồ Ngọc Hà"`) || !strings.Contains(body, `value="12345"`) {
		t.Errorf("form does not show the error by the field with the typed values:\n%s", body)
	}
	// Dates of birth are typed dd/mm/yyyy (whatever the browser's locale)
	// and stored ISO; an impossible one is refused by the field.
	resp, body = c.do("POST", "/admin/school/s1/pupils", url.Values{"csrf_token": {c.csrf}, "id": {"033333333333"}, "full_name": {"Hồ Ngọc Hà"}, "date_of_birth": {"31/02/2017"}}, nil)
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(body, f.web.cat.T("vi", "sa.err.pupil.date_of_birth")) || !strings.Contains(body, `value="31/02/2017"`) {
		t.Errorf("impossible date of birth: %d", resp.StatusCode)
	}
	if resp, _ = c.do("POST", "/admin/school/s1/pupils", url.Values{"csrf_token": {c.csrf}, "id": {"033333333333"}, "full_name": {"Hồ Ngọc Hà"}, "date_of_birth": {"5/9/2017"}}, nil); resp.StatusCode != 303 {
		t.Errorf("date of birth 5/9/2017: %d", resp.StatusCode)
	}
	var dob string
	must(t, f.db.R.QueryRow(`SELECT date_of_birth FROM pupils WHERE id = '033333333333'`).Scan(&dob))
	if _, body = c.do("GET", "/admin/school/s1/pupils/033333333333", nil, nil); dob != "2017-09-05" || !strings.Contains(body, `value="05/09/2017"`) {
		t.Errorf("stored %q; the form shows it dd/mm/yyyy: %v", dob, strings.Contains(body, "05/09/2017"))
	}
	// An existing personal ID is a conflict, said so.
	resp, body = c.do("POST", "/admin/school/s1/pupils", url.Values{"csrf_token": {c.csrf}, "id": {pupilAn}, "full_name": {"Người Khác"}}, nil)
	if resp.StatusCode != http.StatusConflict || !strings.Contains(body, f.web.cat.T("vi", "sa.err.pupil.conflict_id")) {
		t.Errorf("duplicate personal ID: %d", resp.StatusCode)
	}
	var name string
	must(t, f.db.R.QueryRow(`SELECT full_name FROM pupils WHERE id = ?`, pupilAn).Scan(&name))
	if name != "Nguyễn Văn An" {
		t.Errorf("a refused create renamed An to %q", name)
	}
	// Another school's class and pupil are not reachable through s1.
	_, err := f.db.W.Exec(`INSERT INTO classes(id, school_id, name, grade) VALUES ('x1', 's2', '5C', 5)`)
	must(t, err)
	_, err = f.db.W.Exec(`INSERT INTO pupils(id, school_id, class_id, full_name) VALUES ('022222222222', 's2', 'x1', 'Học Sinh Khác')`)
	must(t, err)
	root := f.client(t)
	root.login("root")
	for _, p := range []string{"/admin/school/s1/classes/x1", "/admin/school/s1/pupils/022222222222", "/admin/school/s9"} {
		if resp, _ := root.do("GET", p, nil, nil); resp.StatusCode != http.StatusNotFound {
			t.Errorf("root GET %s: %d, want 404", p, resp.StatusCode)
		}
	}
}

var dmyRe = regexp.MustCompile(`\b\d{2}/\d{2}/\d{4}\b`)

// TestSchoolAdminPupilPage: consent (hub/consent), templates (count and
// status, no photos) and today's and the last 30 days' attendance with
// dates dd/mm/yyyy in Vietnamese.
func TestSchoolAdminPupilPage(t *testing.T) {
	f, tpl := newSchoolFixture(t, true)
	now := time.Now()
	_, err := f.db.W.Exec(`INSERT INTO consents(pupil_id, guardian_name, pupil_consented, scope_face, scope_photos, document_ref, given_at, recorded_by)
		VALUES (?, 'Nguyễn Thị Hoa', 1, 1, 0, 'ĐK-2025/17', ?, 'test')`, pupilAn, time.Date(2025, 9, 5, 10, 0, 0, 0, time.UTC).UnixMilli())
	must(t, err)
	desc := make(match.Descriptor, 128)
	desc[0] = 1
	_, err = tpl.AddTemplate(f.ctx, facetemplates.New{PupilID: pupilAn, Descriptor: desc, Model: tpl.Model()})
	must(t, err)
	f.ingestDirect(t, event(pupilAn, "in", now))
	c := f.client(t)
	c.login("admin")
	resp, body := c.do("GET", "/admin/school/s1/pupils/"+pupilAn, nil, nil)
	if resp.StatusCode != 200 {
		t.Fatalf("pupil page: %d", resp.StatusCode)
	}
	today := now.In(notify.Zone("")).Format("02/01/2006")
	for _, s := range []string{"05/09/2025", "ĐK-2025/17", "Nguyễn Thị Hoa", `id="templates">1 mẫu: 1 đang dùng`,
		`id="attendance-today">Hôm nay (` + today + `)`, `badge st-present`} {
		if !strings.Contains(body, s) {
			t.Errorf("pupil page lacks %q", s)
		}
	}
	if strings.Contains(body, "/photo") || strings.Contains(body, "<img") {
		t.Error("the pupil page shows photos")
	}
	if n := len(dmyRe.FindAllString(body, -1)); n < 2 {
		t.Errorf("%d dates dd/mm/yyyy", n)
	}
	// Binh: no consent, no templates.
	_, body = c.do("GET", "/admin/school/s1/pupils/"+pupilBinh, nil, nil)
	for _, k := range []string{"sa.consent_none", "sa.templates_none"} {
		if !strings.Contains(body, f.web.cat.T("vi", k)) {
			t.Errorf("Bình's page lacks %s", k)
		}
	}
	// English page, dates still dd/mm/yyyy (as on the board).
	c.do("GET", "/lang/en", nil, nil)
	_, body = c.do("GET", "/admin/school/s1/pupils/"+pupilAn, nil, nil)
	if !strings.Contains(body, "05/09/2025") || !strings.Contains(body, "Consent to face data processing") {
		t.Errorf("English pupil page:\n%.2000s", body)
	}
}

// TestSchoolAdminStaffAccounts: disabling a teacher ends her sessions and
// is audited; enabling and linking a class lets her see it; a taken
// username or another school's class is refused and nothing is written.
func TestSchoolAdminStaffAccounts(t *testing.T) {
	f, _ := newSchoolFixture(t, true)
	adm, minh := f.client(t), f.client(t)
	adm.login("admin")
	minh.login("minh")
	post := func(path string, v url.Values) (*http.Response, string) {
		v.Set("csrf_token", adm.csrf)
		return adm.do("POST", path, v, nil)
	}
	if resp, _ := post("/admin/school/s1/staff/t2/active", url.Values{"active": {"0"}}); resp.StatusCode != 303 {
		t.Fatalf("disable: %d", resp.StatusCode)
	}
	if resp, _ := minh.do("GET", "/teacher", nil, nil); resp.StatusCode != 303 || !strings.HasPrefix(resp.Header.Get("Location"), "/login") {
		t.Errorf("disabled teacher's session still works: %d", resp.StatusCode)
	}
	if _, _, err := f.auth.Login(f.ctx, "minh", password, "127.0.0.1"); err == nil {
		t.Error("a disabled account can log in")
	}
	var n int
	must(t, f.db.R.QueryRow(`SELECT count(*) FROM audit_log WHERE action = 'account_update' AND subject = 'account:minh' AND actor = 'admin:admin'`).Scan(&n))
	if n != 1 {
		t.Errorf("audit entries for disabling minh: %d", n)
	}
	_, body := adm.do("GET", "/admin/school/s1/staff", nil, nil)
	if !strings.Contains(body, `id="acc-create-t2"`) || !strings.Contains(body, `id="active-t2"`) {
		t.Error("a disabled teacher's row offers neither a new account nor enabling")
	}
	post("/admin/school/s1/staff/t2/active", url.Values{"active": {"1"}})
	if resp, _ := post("/admin/school/s1/staff/t2/classes", url.Values{"class_id": {"c1"}, "assign": {"1"}}); resp.StatusCode != 303 {
		t.Fatalf("link class: %d", resp.StatusCode)
	}
	minh.login("minh")
	if resp, _ := minh.do("GET", "/teacher/class/c1", nil, nil); resp.StatusCode != 200 {
		t.Errorf("linked class: %d", resp.StatusCode)
	}
	_, err := f.db.W.Exec(`INSERT INTO classes(id, school_id, name, grade) VALUES ('x1', 's2', '5C', 5)`)
	must(t, err)
	if resp, _ := post("/admin/school/s1/staff/t2/classes", url.Values{"class_id": {"x1"}, "assign": {"1"}}); resp.StatusCode != 400 {
		t.Errorf("linking another school's class: %d", resp.StatusCode)
	}
	resp, body := post("/admin/school/s1/staff", url.Values{"id": {"gv-moi"}, "full_name": {"Thầy Mới"}, "role": {"teacher"}, "username": {"lan"}})
	if resp.StatusCode != http.StatusConflict || !strings.Contains(body, f.web.cat.T("vi", "sa.err.staff.conflict_username")) {
		t.Errorf("taken username: %d", resp.StatusCode)
	}
	must(t, f.db.R.QueryRow(`SELECT count(*) FROM staff WHERE id = 'gv-moi'`).Scan(&n))
	if n != 0 {
		t.Error("a refused staff form created the staff row")
	}
}

var oneTimeRe = regexp.MustCompile(`id="onetime-password"><code>([^<]+)</code>`)

// TestSchoolAdminResetPassword: the staff page's "Đặt lại mật khẩu" gives
// a teacher's account a one-time password shown once; her sessions end,
// the old password stops working, the new one must be changed at the
// next login; the reset is audited without the password. An account that
// is not the staff member's, or is the admin's own, is not offered or not
// found.
func TestSchoolAdminResetPassword(t *testing.T) {
	f, _ := newSchoolFixture(t, true)
	adm, minh := f.client(t), f.client(t)
	adm.login("admin")
	minh.login("minh")
	_, body := adm.do("GET", "/admin/school/s1/staff", nil, nil)
	if !strings.Contains(body, `id="reset-minh"`) || !strings.Contains(body, template.HTMLEscapeString(f.web.cat.T("vi", "sa.reset_hint"))) || strings.Contains(body, "tạo tài khoản mới cho người đó") {
		t.Fatalf("the staff page offers no reset for minh, or still says to make a new account")
	}
	post := func(staff, user string) (*http.Response, string) {
		return adm.do("POST", "/admin/school/s1/staff/"+staff+"/reset-password", url.Values{"csrf_token": {adm.csrf}, "username": {user}}, nil)
	}
	for _, tc := range []struct{ staff, user string }{{"t1", "minh"}, {"t2", "lan"}, {"t2", "admin2"}, {"t9", "minh"}} {
		if resp, _ := post(tc.staff, tc.user); resp.StatusCode != http.StatusNotFound {
			t.Errorf("reset %s through staff %s: %d, want 404", tc.user, tc.staff, resp.StatusCode)
		}
	}
	resp, body := post("t2", "minh")
	m := oneTimeRe.FindStringSubmatch(body)
	if resp.StatusCode != 200 || m == nil || !strings.Contains(body, "Mật khẩu mới của Thầy Minh") {
		t.Fatalf("reset minh: %d, one-time password shown: %v\n%.2000s", resp.StatusCode, m != nil, body)
	}
	otp := m[1]
	if resp, _ := minh.do("GET", "/teacher", nil, nil); resp.StatusCode != 303 || !strings.HasPrefix(resp.Header.Get("Location"), "/login") {
		t.Errorf("minh's session outlived the reset: %d %s", resp.StatusCode, resp.Header.Get("Location"))
	}
	if _, _, err := f.auth.Login(f.ctx, "minh", password, "127.0.0.1"); err == nil {
		t.Error("the old password still works")
	}
	minh.do("GET", "/login", nil, nil)
	resp, _ = minh.do("POST", "/login", url.Values{"username": {"minh"}, "password": {otp}, "csrf_token": {minh.csrf}}, nil)
	if resp.StatusCode != 303 || !strings.HasPrefix(resp.Header.Get("Location"), "/password") {
		t.Fatalf("login with the one-time password: %d to %q, want the password change", resp.StatusCode, resp.Header.Get("Location"))
	}
	if resp, _ := minh.do("GET", "/teacher", nil, nil); resp.StatusCode != 303 || resp.Header.Get("Location") != "/password" {
		t.Errorf("one-time password reached the board: %d %s", resp.StatusCode, resp.Header.Get("Location"))
	}
	var n int
	var detail string
	must(t, f.db.R.QueryRow(`SELECT count(*), COALESCE(max(detail), '') FROM audit_log WHERE action = 'password_reset' AND subject = 'account:minh'
		AND actor = 'admin:admin' AND ip = '127.0.0.1' AND school_id = 's1'`).Scan(&n, &detail))
	if n != 1 || strings.Contains(detail, otp) {
		t.Errorf("audited resets of minh: %d, detail %s", n, detail)
	}
	if _, _, err := f.auth.Login(f.ctx, "lan", password, "127.0.0.1"); err != nil {
		t.Errorf("a refused reset changed lan's password: %v", err)
	}
}
