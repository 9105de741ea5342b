package web

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"html"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/diemdanh/diemdanh/hub/api"
	"github.com/diemdanh/diemdanh/hub/auth"
	"github.com/diemdanh/diemdanh/hub/facetemplates"
	"github.com/diemdanh/diemdanh/hub/gallerysrv"
	"github.com/diemdanh/diemdanh/models/conf"
	"github.com/diemdanh/diemdanh/models/match"
	"github.com/diemdanh/diemdanh/models/wire"
)

// swappableOP lets a test replace the gallery server behind the page (to
// restart it with another config), as the hub would on a restart.
type swappableOP struct {
	mu sync.Mutex
	s  *gallerysrv.Server
}

func (o *swappableOP) OperatingPointReport(ctx context.Context, school string, n int) (*gallerysrv.OperatingPointReport, error) {
	o.mu.Lock()
	s := o.s
	o.mu.Unlock()
	return s.OperatingPointReport(ctx, school, n)
}

type opFixture struct {
	*fixture
	op     *swappableOP
	tpl    *facetemplates.Store
	apiURL string
}

// newOPFixture is the web fixture plus a real gallery server (hub/gallerysrv
// over a real encrypted template store holding real dlib descriptors of
// five different people from idols.json, three each) and the JSON API
// behind hub/auth's middleware on its own loopback server.
func newOPFixture(t *testing.T) *opFixture {
	t.Helper()
	op := &swappableOP{}
	f := &opFixture{op: op, fixture: newFixtureOpts(t, true, func(d *Deps) { d.OperatingPoints = op })}
	key := make([]byte, facetemplates.KeySize)
	rand.Read(key)
	var err error
	f.tpl, err = facetemplates.Open(f.db, key, nil, time.Now)
	must(t, err)
	f.tpl.SetModel(match.DlibResNetV1) // the templates below are idols.json's dlib descriptors
	dir, err := conf.TestDataDir()
	must(t, err)
	idols, err := match.LoadIdols(filepath.Join(dir, "faces", "idols.json"))
	must(t, err)
	ids, descs, err := idols.Labelled()
	must(t, err)
	byIdol := map[string][]match.Descriptor{}
	var order []string
	for i, id := range ids {
		if byIdol[id] == nil {
			order = append(order, id)
		}
		byIdol[id] = append(byIdol[id], descs[i])
	}
	for i, p := range []string{pupilAn, pupilBinh, pupilScript, pupilFormula, pupilChi} {
		for _, d := range byIdol[order[i]][:3] {
			_, err := f.tpl.Add(f.ctx, p, d, match.DlibResNetV1, match.Quality{}, nil)
			must(t, err)
		}
	}
	f.restartGallery(t, gallerysrv.Default())
	return f
}

func (f *opFixture) restartGallery(t *testing.T, cfg gallerysrv.Config) {
	t.Helper()
	must(t, cfg.Validate("gallery"))
	gs := gallerysrv.New(f.db, f.tpl, nil, cfg, nil, time.Now)
	f.op.mu.Lock()
	f.op.s = gs
	f.op.mu.Unlock()
	a := api.NewServer(nil, nil, f.auth)
	a.Engine.Use(f.auth.Middleware())
	a.V1.Use(f.auth.Middleware())
	gs.Routes(a.V1)
	ts := httptest.NewServer(a.Engine)
	t.Cleanup(ts.Close)
	f.apiURL = ts.URL
}

// apiReport is what GET /api/v1/schools/s1/operating-point returns to user.
func (f *opFixture) apiReport(t *testing.T, user string) (int, *gallerysrv.OperatingPointReport) {
	t.Helper()
	req, _ := http.NewRequest("GET", f.apiURL+"/api/v1/schools/s1/operating-point", nil)
	req.SetBasicAuth(user, password)
	resp, err := http.DefaultClient.Do(req)
	must(t, err)
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		return resp.StatusCode, nil
	}
	var r gallerysrv.OperatingPointReport
	must(t, json.Unmarshal(b, &r))
	return 200, &r
}

func (f *opFixture) tr(lang, key string, pairs ...string) string {
	s := f.web.cat.T(lang, key)
	for i := 0; i+1 < len(pairs); i += 2 {
		s = strings.ReplaceAll(s, "{"+pairs[i]+"}", pairs[i+1])
	}
	return s
}

// TestBrowserOperatingPoint: the admin reaches the page from the overview
// and sees, in Vietnamese and in English, the threshold and expected
// FAR/FRR the API returns, with the FRR warning when it is above 10%.
func TestBrowserOperatingPoint(t *testing.T) {
	f := newOPFixture(t)
	for _, u := range []string{"lan", "hoa"} {
		if st, _ := f.apiReport(t, u); st != http.StatusForbidden {
			t.Errorf("API as %s: %d, want 403", u, st)
		}
	}
	st, r := f.apiReport(t, "admin")
	if st != 200 || r.Current == nil || !r.Current.Calibrated || r.Current.Pupils != 5 {
		t.Fatalf("API: %d %+v", st, r)
	}
	cur := r.Current

	ctx := browser(t)
	browserLogin(t, ctx, f.ts.URL, "admin")
	must(t, chromedp.Do(ctx, chromedp.Navigate(f.ts.URL+"/admin"), chromedp.WaitVisible(chromedp.CSS("#oppoint-link")),
		chromedp.Click(chromedp.CSS("#oppoint-link")), chromedp.WaitVisible(chromedp.CSS(`section[data-school="s1"] .op-threshold`))))
	checkVietnamese(t, ctx)
	for _, lang := range []string{"vi", "en"} {
		if lang == "en" {
			switchLang(t, ctx)
			must(t, chromedp.Do(ctx, chromedp.WaitVisible(chromedp.CSS(`section[data-school="s1"] .op-threshold`))))
		}
		if l := attr(t, ctx, `document.documentElement.lang`); l != lang {
			t.Fatalf("lang %q, want %q", l, lang)
		}
		if h := attr(t, ctx, `document.querySelector("h1").textContent`); h != f.tr(lang, "op.title") {
			t.Errorf("%s heading %q", lang, h)
		}
		text := func(cls string) string {
			return attr(t, ctx, `document.querySelector('section[data-school="s1"] .`+cls+`').textContent`)
		}
		value := func(cls string) float64 {
			v, err := strconv.ParseFloat(attr(t, ctx, `document.querySelector('section[data-school="s1"] .`+cls+`').dataset.value`), 64)
			must(t, err)
			return v
		}
		for _, c := range []struct {
			cls  string
			api  float64
			text string
		}{
			{"op-threshold", cur.Threshold, strconv.FormatFloat(cur.Threshold, 'f', 3, 64)},
			{"op-served", r.Served.Threshold, strconv.FormatFloat(r.Served.Threshold, 'f', 3, 64)},
			{"op-target-far", r.TargetFAR, pct(r.TargetFAR)},
			{"op-expected-far", cur.ExpectedFAR, pct(cur.ExpectedFAR)},
			{"op-expected-frr", cur.ExpectedFRR, pct(cur.ExpectedFRR)},
		} {
			if got := value(c.cls); got != c.api {
				t.Errorf("%s %s value %v, API %v", lang, c.cls, got, c.api)
			}
			if got := text(c.cls); got != c.text {
				t.Errorf("%s %s shows %q, want %q", lang, c.cls, got, c.text)
			}
		}
		if got := text("op-embedder"); got != cur.Embedder {
			t.Errorf("embedder %q, API %q", got, cur.Embedder)
		}
		if got, want := text("op-method"), f.tr(lang, "op.method."+cur.Method); got != want {
			t.Errorf("%s method %q, want %q", lang, got, want)
		}
		if got, want := text("op-gallery"), f.tr(lang, "op.gallery_size", "pupils", "5", "templates", "15", "version", strconv.FormatInt(cur.GalleryVersion, 10)); got != want {
			t.Errorf("%s gallery %q, want %q", lang, got, want)
		}
		warnings := attr(t, ctx, `Array.prototype.map.call(document.querySelectorAll('section[data-school="s1"] li.warning'), function(e){return e.textContent}).join("\n")`)
		frrWarn := f.tr(lang, "op.warn.frr", "frr", pct(cur.ExpectedFRR))
		if has := strings.Contains(warnings, frrWarn); has != (cur.ExpectedFRR > FRRWarnAbove) {
			t.Errorf("%s: FRR %g, warnings %q", lang, cur.ExpectedFRR, warnings)
		}
		if n, want := attr(t, ctx, `String(document.querySelectorAll('section[data-school="s1"] li.warning').length)`), map[bool]string{true: "1", false: "0"}[cur.ExpectedFRR > FRRWarnAbove]; n != want {
			t.Errorf("%s: %s warnings, want %s (no override, gallery calibrated): %q", lang, n, want, warnings)
		}
		screenshot(t, ctx, "oppoint-"+lang+".png")
	}
}

// TestOperatingPointPageWarnings: a hub-wide admin sees every school; a
// school without a calibratable gallery and an admin override are
// explained in plain words.
func TestOperatingPointPageWarnings(t *testing.T) {
	f := newOPFixture(t)
	_, err := f.db.W.Exec(`INSERT INTO schools(id, name) VALUES ('s2', 'Trường Mầm non Hoa Sen')`)
	must(t, err)
	_, _, err = f.auth.CreateAccount(f.ctx, "test", auth.NewAccount{Username: "root", Password: password, Role: auth.RoleAdmin, FullName: "Sở"})
	must(t, err)
	_, base := f.apiReport(t, "admin")
	cfg := gallerysrv.Default()
	cfg.Threshold = base.Current.Threshold * 1.2
	f.restartGallery(t, cfg)

	// Gate g1 recognises only class c1 (4 of the 5 pupils): its own point.
	_, err = f.db.W.Exec(`INSERT INTO gate_classes(gate_id, class_id) VALUES ('g1', 'c1')`)
	must(t, err)
	f.op.s.Changed(f.ctx, "s1")
	_, _, body, err := f.op.s.CurrentForGate(f.ctx, "s1", "g1")
	must(t, err)
	var gdoc wire.GalleryDoc
	must(t, json.Unmarshal(body, &gdoc))
	if len(gdoc.People) != 4 {
		t.Fatalf("g1 served %d pupils", len(gdoc.People))
	}
	// Two templates left by another embedder: kept, not served, counted.
	old := match.ModelID{Name: "old-embedder", Version: "0"}
	for i := 0; i < 2; i++ {
		_, err := f.tpl.Add(f.ctx, pupilAn, make(match.Descriptor, match.DescriptorLen), old, match.Quality{}, nil)
		must(t, err)
	}

	c := f.client(t)
	c.login("root")
	resp, page := c.do("GET", "/admin/operating-point", nil, nil)
	if resp.StatusCode != 200 {
		t.Fatalf("page: %d", resp.StatusCode)
	}
	page = html.UnescapeString(page)
	for _, want := range []string{
		`data-school="s1"`, `data-school="s2"`, `data-gate="g1"`, f.tr("vi", "op.gates"),
		f.tr("vi", "op.warn.too_small", "pupils", "0"),
		f.tr("vi", "op.warn.override", "value", strconv.FormatFloat(cfg.Threshold, 'f', 3, 64)),
		f.tr("vi", "op.override"),
		f.tr("vi", "op.warn.other_model", "count", "2", "model", old.String()),
	} {
		if !strings.Contains(page, want) {
			t.Errorf("page lacks %q", want)
		}
	}
	// The school admin of s1 sees only s1; a teacher is refused.
	a := f.client(t)
	a.login("admin")
	if _, b := a.do("GET", "/admin/operating-point", nil, nil); strings.Contains(b, `data-school="s2"`) || !strings.Contains(b, `data-school="s1"`) {
		t.Error("a school admin sees other schools")
	}
	tc := f.client(t)
	tc.login("lan")
	if resp, _ := tc.do("GET", "/admin/operating-point", nil, nil); resp.StatusCode == 200 {
		t.Errorf("teacher got the page")
	}
}
