package web

import (
	"context"
	"crypto/rand"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/diemdanh/diemdanh/hub/facetemplates"
	"github.com/diemdanh/diemdanh/hub/modeltrial"
	"github.com/diemdanh/diemdanh/models/conf"
	"github.com/diemdanh/diemdanh/models/faceengine"
	"github.com/diemdanh/diemdanh/models/match"
)

// engineModels is the hub's models over faceengine as hub/enrol's
// TrialModels gives them (hub/enrol imports hub/web, so its tests
// cannot be imported here): SFace current, dlib-resnet-v1 the candidate,
// real engines from $MODELS_DIR; the switch re-embeds through the
// template store.
type engineModels struct {
	tpl     *facetemplates.Store
	current string
}

func (m *engineModels) Candidates() []modeltrial.Candidate {
	var out []modeltrial.Candidate
	for _, n := range []string{match.DefaultEmbedder.Name, match.DlibResNetV1.Name} {
		id, _ := faceengine.EmbedderModel(n)
		out = append(out, modeltrial.Candidate{Name: n, Model: id.String(), Current: n == m.current})
	}
	return out
}

func (m *engineModels) open(name string) (*faceengine.Engine, error) {
	cfg := faceengine.DefaultEngineConfig()
	cfg.ModelsDir, cfg.Workers, cfg.Embedder = conf.TestModelsDir(), 1, name
	return faceengine.NewEngine(cfg, nil)
}

func (m *engineModels) Open(name string) (facetemplates.Embedder, func(), error) {
	e, err := m.open(name)
	if err != nil {
		return nil, nil, err
	}
	return e, e.Close, nil
}

func (m *engineModels) Switch(ctx context.Context, name string) (facetemplates.ReembedReport, error) {
	e, err := m.open(name)
	if err != nil {
		return facetemplates.ReembedReport{}, err
	}
	defer e.Close()
	m.current = name
	return m.tpl.Reembed(ctx, e)
}

// newTrialFixture: the web fixture with a running modeltrial.Runner over
// a real template store holding SFace templates of real photos, kept, for
// three pupils of s1 (two photos each).
func newTrialFixture(t *testing.T) *fixture {
	t.Helper()
	var r *modeltrial.Runner
	var tpl *facetemplates.Store
	f := newFixtureOpts(t, true, func(d *Deps) {
		key := make([]byte, facetemplates.KeySize)
		rand.Read(key)
		var err error
		tpl, err = facetemplates.Open(d.DB, key, nil, time.Now)
		must(t, err)
		r, err = modeltrial.New(&engineModels{tpl: tpl, current: match.DefaultEmbedder.Name}, tpl, d.Audit,
			modeltrial.Config{TargetFAR: 0.01}, nil, time.Now)
		must(t, err)
		d.ModelTrial = r
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { r.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	eng, err := (&engineModels{}).open(match.DefaultEmbedder.Name)
	if err != nil {
		t.Fatalf("face engine (set MODELS_DIR): %v", err)
	}
	defer eng.Close()
	dir, err := conf.TestDataDir()
	must(t, err)
	for p, files := range map[string][]string{pupilAn: {"bona.jpg", "bona2.jpg"}, pupilBinh: {"jimin.jpg", "jimin2.jpg"},
		pupilScript: {"tzuyu.jpg", "tzuyu2.jpg"}} {
		for _, file := range files {
			b, err := os.ReadFile(filepath.Join(dir, "faces", "images", file))
			must(t, err)
			faces, err := eng.Recognize(f.ctx, b)
			face, ok := facetemplates.PickFace(faces)
			if err != nil || !ok {
				t.Fatalf("%s: %d faces, %v", file, len(faces), err)
			}
			_, err = tpl.Add(f.ctx, p, face.Descriptor, eng.Model(), match.Quality{}, b)
			must(t, err)
		}
	}
	return f
}

// TestBrowserModelTrial: the admin goes from the operating-point page to
// the trial page, starts a trial of dlib-resnet-v1, and sees both
// columns and the switch button, in Vietnamese and in English.
func TestBrowserModelTrial(t *testing.T) {
	f := newTrialFixture(t)
	ctx := browser(t)
	ctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	browserLogin(t, ctx, f.ts.URL, "admin")
	must(t, chromedp.Do(ctx, chromedp.Navigate(f.ts.URL+"/admin/operating-point"), chromedp.WaitVisible(chromedp.CSS("#trymodel-link")),
		chromedp.Click(chromedp.CSS("#trymodel-link")), chromedp.WaitVisible(chromedp.CSS("#tm-candidate"))))
	checkVietnamese(t, ctx)
	if v := attr(t, ctx, `document.querySelector("#tm-candidate").value`); v != match.DlibResNetV1.Name {
		t.Fatalf("candidate offered %q", v)
	}
	must(t, chromedp.Do(ctx, chromedp.Click(chromedp.CSS("#tm-start")),
		chromedp.WaitVisible(chromedp.CSS(`section.tm-trial[data-state="done"] table.tm-compare`))))
	for _, lang := range []string{"vi", "en"} {
		if lang == "en" {
			switchLang(t, ctx)
			must(t, chromedp.Do(ctx, chromedp.WaitVisible(chromedp.CSS("table.tm-compare"))))
		}
		if h := attr(t, ctx, `document.querySelector("h1").textContent`); h != f.web.cat.T(lang, "tm.title") {
			t.Errorf("%s heading %q", lang, h)
		}
		cols := attr(t, ctx, `Array.prototype.map.call(document.querySelectorAll("table.tm-compare td.tm-model"), function(e){return e.textContent}).join("|")`)
		sface, _ := faceengine.EmbedderModel(match.DefaultEmbedder.Name)
		if want := sface.String() + "|" + match.DlibResNetV1.String(); cols != want {
			t.Errorf("%s columns %q, want %q", lang, cols, want)
		}
		if n := attr(t, ctx, `String(document.querySelectorAll("table.tm-compare td.tm-rank1").length)`); n != "2" {
			t.Errorf("%s: %s rank-1 cells", lang, n)
		}
		if b := attr(t, ctx, `document.querySelector("#tm-switch").textContent`); b != f.tr(lang, "tm.switch", "candidate", match.DlibResNetV1.Name) {
			t.Errorf("%s switch button %q", lang, b)
		}
		screenshot(t, ctx, "model-trial-"+lang+".png")
	}
}

// tr fills a catalogue string's placeholders.
func (f *fixture) tr(lang, key string, pairs ...string) string {
	return (&opFixture{fixture: f}).tr(lang, key, pairs...)
}

// TestModelTrialRefusals: the trial page and its actions are for admins;
// a school's admin tries only its own school and, with another school on
// the hub, may not switch the hub's model. Nothing starts.
func TestModelTrialRefusals(t *testing.T) {
	f := newTrialFixture(t)
	_, err := f.db.W.Exec(`INSERT INTO schools(id, name) VALUES ('s2', 'Trường khác')`)
	must(t, err)
	clients := map[string]*client{"": f.client(t)}
	for _, u := range []string{"admin", "lan", "hoa"} {
		clients[u] = f.client(t)
		clients[u].login(u)
	}
	cases := []struct {
		user, method, path string
		form               url.Values
		want               int
	}{
		{"", "GET", "/admin/model-trial", nil, http.StatusSeeOther},
		{"lan", "GET", "/admin/model-trial", nil, http.StatusForbidden},
		{"hoa", "GET", "/admin/model-trial", nil, http.StatusForbidden},
		{"lan", "POST", "/admin/model-trial/start", url.Values{"candidate": {"dlib-resnet-v1"}}, http.StatusForbidden},
		{"hoa", "POST", "/admin/model-trial/start", url.Values{"candidate": {"dlib-resnet-v1"}}, http.StatusForbidden},
		{"lan", "POST", "/admin/model-trial/cancel", url.Values{}, http.StatusForbidden},
		{"lan", "POST", "/admin/model-trial/switch", url.Values{"candidate": {"dlib-resnet-v1"}}, http.StatusForbidden},
		{"hoa", "POST", "/admin/model-trial/switch", url.Values{"candidate": {"dlib-resnet-v1"}}, http.StatusForbidden},
		// s1's admin: not another school's photos, and not the model
		// of a hub that serves another school too.
		{"admin", "GET", "/admin/model-trial?school=s2", nil, http.StatusForbidden},
		{"admin", "POST", "/admin/model-trial/start", url.Values{"school": {"s2"}, "candidate": {"dlib-resnet-v1"}}, http.StatusForbidden},
		{"admin", "POST", "/admin/model-trial/switch", url.Values{"candidate": {"dlib-resnet-v1"}}, http.StatusForbidden},
		{"admin", "GET", "/admin/model-trial", nil, http.StatusOK},
	}
	for _, k := range cases {
		c := clients[k.user]
		var form url.Values
		if k.form != nil {
			form = url.Values{"csrf_token": {c.csrf}}
			for key, v := range k.form {
				form[key] = v
			}
		}
		if resp, _ := c.do(k.method, k.path, form, nil); resp.StatusCode != k.want {
			t.Errorf("%q %s %s: %d, want %d", k.user, k.method, k.path, resp.StatusCode, k.want)
		}
	}
	var n int
	must(t, f.db.R.QueryRow(`SELECT count(*) FROM audit_log WHERE action IN (?, ?)`, modeltrial.ActionTrial, modeltrial.ActionSwitch).Scan(&n))
	if n != 0 {
		t.Errorf("a refused request was acted on: %d audit entries", n)
	}
}
