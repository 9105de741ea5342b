package web

import (
	"crypto/rand"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/diemdanh/diemdanh/hub/api"
	"github.com/diemdanh/diemdanh/hub/facetemplates"
	"github.com/diemdanh/diemdanh/hub/gallerysrv"
)

type candFixture struct {
	*fixture
	gs     *gallerysrv.Server
	apiURL string
}

// newCandFixture is the web fixture with a real gallery server (over a
// real, empty, encrypted template store) behind /admin/candidates, and
// its JSON API behind hub/auth's middleware on its own loopback server.
// A second school s2 has class x1, which s1's gates must not get.
func newCandFixture(t *testing.T) *candFixture {
	t.Helper()
	f := &candFixture{}
	f.fixture = newFixtureOpts(t, true, func(d *Deps) {
		key := make([]byte, facetemplates.KeySize)
		rand.Read(key)
		tpl, err := facetemplates.Open(d.DB, key, nil, time.Now)
		must(t, err)
		f.gs = gallerysrv.New(d.DB, tpl, nil, gallerysrv.Default(), nil, time.Now)
		d.Candidates = f.gs
	})
	for _, q := range []string{`INSERT INTO schools(id, name) VALUES ('s2', 'Trường khác')`,
		`INSERT INTO classes(id, school_id, name, grade) VALUES ('x1', 's2', '5C', 5)`} {
		if _, err := f.db.W.Exec(q); err != nil {
			t.Fatal(err)
		}
	}
	a := api.NewServer(nil, nil, f.auth)
	a.Engine.Use(f.auth.Middleware())
	a.V1.Use(f.auth.Middleware())
	f.gs.Routes(a.V1)
	ts := httptest.NewServer(a.Engine)
	t.Cleanup(ts.Close)
	f.apiURL = ts.URL
	return f
}

// apiGet GETs path of the JSON API as the admin into out.
func (f *candFixture) apiGet(t *testing.T, path string, out any) {
	t.Helper()
	req, _ := http.NewRequest("GET", f.apiURL+path, nil)
	req.SetBasicAuth("admin", password)
	resp, err := http.DefaultClient.Do(req)
	must(t, err)
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("GET %s: %d %s", path, resp.StatusCode, b)
	}
	must(t, json.Unmarshal(b, out))
}

// state is what the API says about c1, c2 and g1.
func (f *candFixture) state(t *testing.T) (c1, c2, g1 []string) {
	t.Helper()
	var s1, s2 gallerysrv.ClassSessions
	var g gallerysrv.GateClasses
	f.apiGet(t, "/api/v1/classes/c1/sessions", &s1)
	f.apiGet(t, "/api/v1/classes/c2/sessions", &s2)
	f.apiGet(t, "/api/v1/gates/g1/classes", &g)
	return s1.Sessions, s2.Sessions, g.ClassIDs
}

func (f *candFixture) auditRows(t *testing.T) int {
	t.Helper()
	var n int
	must(t, f.db.R.QueryRow(`SELECT count(*) FROM audit_log WHERE action IN (?, ?)`,
		gallerysrv.ActionClassSessions, gallerysrv.ActionGateClasses).Scan(&n))
	return n
}

// TestCandidatesForm: an admin saves class sessions and a gate's classes
// through the HTML form; the JSON API then returns them, each change is
// audited and the gallery version goes up. Bad input (an unknown class,
// another school's class, a bad session) is refused with a clear message
// and changes nothing; teachers and parents get 403; no CSRF token, 403.
func TestCandidatesForm(t *testing.T) {
	f := newCandFixture(t)
	v0, _, _, err := f.gs.Current(f.ctx, "s1")
	must(t, err)

	adm := f.client(t)
	adm.login("admin")
	if _, body := adm.do("GET", "/admin", nil, nil); !strings.Contains(body, `href="/admin/candidates"`) {
		t.Fatal("overview has no link to /admin/candidates")
	}
	resp, body := adm.do("GET", "/admin/candidates", nil, nil)
	if resp.StatusCode != 200 || !strings.Contains(body, "Ca sáng") || !strings.Contains(body, "Ca chiều") ||
		!strings.Contains(body, `id="gate-g1-c2"`) || strings.Contains(body, `"x1"`) {
		t.Fatalf("page: %d\n%s", resp.StatusCode, body)
	}

	form := func(extra url.Values) url.Values {
		v := url.Values{"csrf_token": {adm.csrf}, "school_id": {"s1"}, "class": {"c1", "c2"}, "gate": {"g1"}}
		for k, xs := range extra {
			v[k] = xs
		}
		return v
	}
	resp, _ = adm.do("POST", "/admin/candidates", form(url.Values{"sess.c1": {"morning"}, "gate.g1": {"c1"}}), nil)
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/admin/candidates?saved=2" {
		t.Fatalf("save: %d %s", resp.StatusCode, resp.Header.Get("Location"))
	}
	if _, body := adm.do("GET", resp.Header.Get("Location"), nil, nil); !strings.Contains(body, `class="flash"`) {
		t.Error("no success message after saving")
	}
	c1, c2, g1 := f.state(t)
	if !slices.Equal(c1, []string{"morning"}) || !slices.Equal(c2, []string{"morning", "afternoon"}) || !slices.Equal(g1, []string{"c1"}) {
		t.Fatalf("API after save: c1=%v c2=%v g1=%v", c1, c2, g1)
	}
	if n := f.auditRows(t); n != 2 {
		t.Errorf("audit rows = %d, want 2", n)
	}
	v1, _, _, err := f.gs.Current(f.ctx, "s1")
	must(t, err)
	if v1 <= v0 {
		t.Errorf("gallery version %d → %d, want a bump", v0, v1)
	}
	// Saving the same again changes (and audits) nothing.
	resp, _ = adm.do("POST", "/admin/candidates", form(url.Values{"sess.c1": {"morning"}, "gate.g1": {"c1"}}), nil)
	if resp.Header.Get("Location") != "/admin/candidates?saved=0" || f.auditRows(t) != 2 {
		t.Errorf("unchanged save: %s, %d audit rows", resp.Header.Get("Location"), f.auditRows(t))
	}

	for _, tc := range []struct {
		name  string
		extra url.Values
		want  string
	}{
		{"unknown class", url.Values{"sess.c2": {"afternoon"}, "gate.g1": {"c1", "zz"}}, `không có lớp &#34;zz&#34;`},
		{"other school's class", url.Values{"sess.c2": {"afternoon"}, "gate.g1": {"x1"}}, `không có lớp &#34;x1&#34;`},
		{"unknown class row", url.Values{"class": {"c2", "zz"}, "sess.c2": {"afternoon"}}, `không có lớp &#34;zz&#34;`},
		{"bad session", url.Values{"sess.c2": {"evening"}}, `ca học &#34;evening&#34;`},
		{"unknown gate", url.Values{"gate": {"g9"}, "gate.g9": {"c1"}}, `không có cổng &#34;g9&#34;`},
	} {
		resp, body := adm.do("POST", "/admin/candidates", form(tc.extra), nil)
		if resp.StatusCode != http.StatusBadRequest || !strings.Contains(body, tc.want) || !strings.Contains(body, "Không có gì bị thay đổi") {
			t.Errorf("%s: %d, want 400 with %q\n%s", tc.name, resp.StatusCode, tc.want, body)
		}
		c1b, c2b, g1b := f.state(t)
		if !slices.Equal(c1b, c1) || !slices.Equal(c2b, c2) || !slices.Equal(g1b, g1) || f.auditRows(t) != 2 {
			t.Errorf("%s changed something: c1=%v c2=%v g1=%v", tc.name, c1b, c2b, g1b)
		}
	}
	if resp, _ := adm.do("POST", "/admin/candidates", form(url.Values{"school_id": {"s2"}}), nil); resp.StatusCode != http.StatusForbidden {
		t.Errorf("another school's form: %d, want 403", resp.StatusCode)
	}
	bad := form(url.Values{"gate.g1": {}})
	bad.Del("csrf_token")
	if resp, _ := adm.do("POST", "/admin/candidates", bad, nil); resp.StatusCode != http.StatusForbidden {
		t.Errorf("no CSRF token: %d, want 403", resp.StatusCode)
	}

	for _, u := range []string{"lan", "hoa"} {
		cl := f.client(t)
		cl.login(u)
		if resp, _ := cl.do("GET", "/admin/candidates", nil, nil); resp.StatusCode != http.StatusForbidden {
			t.Errorf("%s GET: %d, want 403", u, resp.StatusCode)
		}
		v := form(url.Values{"csrf_token": {cl.csrf}})
		if resp, _ := cl.do("POST", "/admin/candidates", v, nil); resp.StatusCode != http.StatusForbidden {
			t.Errorf("%s POST: %d, want 403", u, resp.StatusCode)
		}
	}
	if c1b, c2b, g1b := f.state(t); !slices.Equal(c1b, c1) || !slices.Equal(c2b, c2) || !slices.Equal(g1b, g1) {
		t.Errorf("refused requests changed something: c1=%v c2=%v g1=%v", c1b, c2b, g1b)
	}
}

// TestBrowserCandidates: the admin reaches the page from the overview,
// sees it in Vietnamese and English, ticks "afternoon" for class 2B and
// a class for the gate, saves, and the change is shown and stored.
func TestBrowserCandidates(t *testing.T) {
	f := newCandFixture(t)
	ctx := browser(t)
	browserLogin(t, ctx, f.ts.URL, "admin")
	sec := `section[data-school="s1"] `
	must(t, chromedp.Do(ctx, chromedp.Navigate(f.ts.URL+"/admin"), chromedp.WaitVisible(chromedp.CSS("#cand-link")),
		chromedp.Click(chromedp.CSS("#cand-link")), chromedp.WaitVisible(chromedp.CSS(sec+".cand-classes"))))
	checkVietnamese(t, ctx)
	text := func() string { return attr(t, ctx, `document.querySelector("main").innerText`) }
	if s := text(); !strings.Contains(s, "Ca sáng") || !strings.Contains(s, "Ca chiều") || !strings.Contains(s, f.tr("vi", "cand.all_classes")) {
		t.Errorf("Vietnamese page:\n%s", s)
	}
	switchLang(t, ctx)
	must(t, chromedp.Do(ctx, chromedp.WaitVisible(chromedp.CSS(sec+".cand-gates"))))
	if s := text(); !strings.Contains(s, "Morning") || !strings.Contains(s, "Afternoon") || !strings.Contains(s, f.tr("en", "cand.no_class")) {
		t.Errorf("English page:\n%s", s)
	}
	must(t, chromedp.Do(ctx, chromedp.Click(chromedp.CSS("#sess-c2-afternoon")), chromedp.Click(chromedp.CSS("#gate-g1-c2")),
		chromedp.Click(chromedp.CSS("#cand-save-s1")), chromedp.WaitVisible(chromedp.CSS("p.flash"))))
	if s := attr(t, ctx, `String(document.getElementById("sess-c2-afternoon").checked && document.getElementById("gate-g1-c2").checked && !document.getElementById("sess-c1-morning").checked)`); s != "true" {
		t.Errorf("after save the boxes are not as ticked")
	}
	screenshot(t, ctx, "admin-candidates-en.png")
	cs, err := f.gs.CandidateSettings(f.ctx, "s1")
	must(t, err)
	var got []string
	for _, c := range cs.Classes {
		got = append(got, c.ID+"="+strings.Join(c.Sessions, ","))
	}
	if !slices.Equal(got, []string{"c1=morning,afternoon", "c2=afternoon"}) || len(cs.Gates) != 1 || !slices.Equal(cs.Gates[0].ClassIDs, []string{"c2"}) {
		t.Errorf("stored: %v gates %+v", got, cs.Gates)
	}
}

func (f *candFixture) tr(lang, key string) string { return f.web.cat.T(lang, key) }
