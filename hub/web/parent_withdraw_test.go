package web

import (
	"bytes"
	"context"
	"math"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/diemdanh/diemdanh/hub/audit"
	"github.com/diemdanh/diemdanh/hub/consent"
	"github.com/diemdanh/diemdanh/hub/facetemplates"
	"github.com/diemdanh/diemdanh/hub/gallerysrv"
	"github.com/diemdanh/diemdanh/models/match"
)

// withdrawFixture is the web fixture with a real consent registry over a
// real encrypted template store (as hub/app wires them), consents for An
// (parent hoa's child) and Chi (parent tam's), two templates each for An,
// Bình and Chi, and the gallery server gates download from.
type withdrawFixture struct {
	*fixture
	reg *consent.Registry
	gs  *gallerysrv.Server
}

func newWithdrawFixture(t *testing.T) *withdrawFixture {
	t.Helper()
	w := &withdrawFixture{}
	var tpl *facetemplates.Store
	w.fixture = newFixtureOpts(t, true, func(d *Deps) {
		var err error
		tpl, err = facetemplates.Open(d.DB, bytes.Repeat([]byte{7}, facetemplates.KeySize), d.Log, nil)
		must(t, err)
		tpl.SetModel(match.DlibResNetV1)
		w.reg = consent.New(d.DB, tpl, d.Audit, d.Log, nil)
		d.Consent = w.reg
	})
	ctx := context.Background()
	w.gs = gallerysrv.New(w.db, tpl, nil, gallerysrv.Default(), nil, time.Now)
	tpl.Subscribe(func(school string, _ int64) { w.gs.Changed(ctx, school) })
	for _, g := range []consent.Grant{
		{PupilID: pupilAn, GuardianID: 1, PupilConsented: true, ScopeFace: true, DocumentRef: "DK-An"},
		{PupilID: pupilChi, GuardianID: 2, PupilConsented: true, ScopeFace: true, DocumentRef: "DK-Chi"},
	} {
		_, err := w.reg.Record(ctx, "admin:admin", g)
		must(t, err)
	}
	rng := rand.New(rand.NewPCG(19, 5))
	for _, p := range []string{pupilAn, pupilAn, pupilBinh, pupilBinh, pupilChi, pupilChi} {
		d := make(match.Descriptor, 128)
		var n float64
		for i := range d {
			d[i] = float32(rng.NormFloat64())
			n += float64(d[i] * d[i])
		}
		for i := range d {
			d[i] /= float32(math.Sqrt(n))
		}
		_, err := tpl.Add(ctx, p, d, match.DlibResNetV1, match.Quality{}, nil)
		must(t, err)
	}
	return w
}

// inForce reports whether pupil has a consent in force.
func (w *withdrawFixture) inForce(t *testing.T, pupil string) bool {
	t.Helper()
	_, err := w.reg.Current(context.Background(), pupil)
	if err != nil && err != consent.ErrNoConsent {
		t.Fatal(err)
	}
	return err == nil
}

// served reports whether the gallery gates of s1 download holds pupil.
func (w *withdrawFixture) served(t *testing.T, pupil string) bool {
	t.Helper()
	_, _, body, err := w.gs.CurrentForGate(context.Background(), "s1", "g1")
	must(t, err)
	return strings.Contains(string(body), `"`+pupil+`"`)
}

// TestParentWithdrawScope: role × route. Only a parent, and only for
// their own child, reaches the confirmation page or withdraws; a
// withdrawal needs the CSRF token and the confirmation box; a refused
// request leaves the consent in force and the child in the gallery.
func TestParentWithdrawScope(t *testing.T) {
	w := newWithdrawFixture(t)
	if !w.served(t, pupilAn) || !w.served(t, pupilChi) {
		t.Fatal("children not in the gallery before any withdrawal")
	}
	cases := []struct {
		name, user, method, pupil string
		form                      url.Values
		noCSRF                    bool
		status                    int
	}{
		{"anonymous page", "", "GET", pupilAn, nil, false, http.StatusSeeOther},
		{"anonymous withdraw", "", "POST", pupilAn, url.Values{"confirm": {"1"}}, true, http.StatusUnauthorized},
		{"admin page", "admin", "GET", pupilAn, nil, false, http.StatusForbidden},
		{"admin withdraw", "admin", "POST", pupilAn, url.Values{"confirm": {"1"}}, false, http.StatusForbidden},
		{"homeroom teacher page", "lan", "GET", pupilAn, nil, false, http.StatusForbidden},
		{"homeroom teacher withdraw", "lan", "POST", pupilAn, url.Values{"confirm": {"1"}}, false, http.StatusForbidden},
		{"other parent page", "tam", "GET", pupilAn, nil, false, http.StatusForbidden},
		{"other parent withdraw", "tam", "POST", pupilAn, url.Values{"confirm": {"1"}}, false, http.StatusForbidden},
		{"parent, a pupil of no one", "hoa", "POST", pupilBinh, url.Values{"confirm": {"1"}}, false, http.StatusForbidden},
		{"parent without CSRF", "hoa", "POST", pupilAn, url.Values{"confirm": {"1"}}, true, http.StatusForbidden},
		{"parent without confirming", "hoa", "POST", pupilAn, url.Values{"reason": {"x"}}, false, http.StatusBadRequest},
		{"parent, reason too long", "hoa", "POST", pupilAn, url.Values{"confirm": {"1"}, "reason": {strings.Repeat("ư", 501)}}, false, http.StatusBadRequest},
		{"parent's own page", "hoa", "GET", pupilAn, nil, false, http.StatusOK},
	}
	for _, c := range cases {
		cl := w.client(t)
		if c.user != "" {
			cl.login(c.user)
		}
		form := c.form
		if form != nil && !c.noCSRF {
			form = url.Values{"csrf_token": {cl.csrf}}
			for k, v := range c.form {
				form[k] = v
			}
		}
		resp, body := cl.do(c.method, "/parent/withdraw/"+c.pupil, form, nil)
		if resp.StatusCode != c.status {
			t.Errorf("%s: status %d, want %d", c.name, resp.StatusCode, c.status)
		}
		if c.status == http.StatusForbidden && (strings.Contains(body, "withdraw-form") || strings.Contains(body, "Nguyễn Văn An")) {
			t.Errorf("%s: refusal shows the page", c.name)
		}
		if !w.inForce(t, pupilAn) || !w.inForce(t, pupilChi) || !w.served(t, pupilAn) {
			t.Fatalf("%s: consent or gallery changed by a refused request", c.name)
		}
	}
	// The parent's own, confirmed: withdrawn through hub/consent, audited
	// with the parent as actor; the other family's child is untouched.
	cl := w.client(t)
	cl.login("hoa")
	cl.do("GET", "/parent/withdraw/"+pupilAn, nil, nil)
	resp, _ := cl.do("POST", "/parent/withdraw/"+pupilAn, url.Values{"csrf_token": {cl.csrf}, "confirm": {"1"}, "reason": {"Gia đình không muốn"}}, nil)
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/parent?withdrawn=1" {
		t.Fatalf("withdraw: %d %s", resp.StatusCode, resp.Header.Get("Location"))
	}
	if w.inForce(t, pupilAn) || !w.inForce(t, pupilChi) || w.served(t, pupilAn) || !w.served(t, pupilChi) {
		t.Fatal("after the parent's withdrawal: wrong consents or gallery")
	}
	var n int
	must(t, w.db.R.QueryRow(`SELECT count(*) FROM audit_log WHERE action = ? AND actor = 'parent:hoa' AND subject = ?`,
		audit.ActionConsentWithdraw, "pupil:"+pupilAn).Scan(&n))
	var by, reason string
	must(t, w.db.R.QueryRow(`SELECT withdrawn_by, withdrawal_reason FROM consents WHERE pupil_id = ?`, pupilAn).Scan(&by, &reason))
	if n != 1 || by != "parent:hoa" || reason != "Gia đình không muốn" {
		t.Fatalf("audit entries %d, withdrawn_by %q, reason %q", n, by, reason)
	}
	// Nothing left to withdraw: the page says so, a second POST is refused.
	if _, body := cl.do("GET", "/parent/withdraw/"+pupilAn, nil, nil); strings.Contains(body, "withdraw-form") || !strings.Contains(body, "withdraw-none") {
		t.Error("the page still offers a withdrawal")
	}
	if resp, _ := cl.do("POST", "/parent/withdraw/"+pupilAn, url.Values{"csrf_token": {cl.csrf}, "confirm": {"1"}}, nil); resp.StatusCode != http.StatusConflict {
		t.Errorf("second withdrawal: %d", resp.StatusCode)
	}
}

// TestBrowserParentWithdrawsConsent: in Chromium, a parent opens the
// withdrawal page from the portal (Vietnamese, then English), is held by
// the confirmation box, confirms, and the child leaves the gallery the
// gates download; the portal no longer offers a withdrawal.
func TestBrowserParentWithdrawsConsent(t *testing.T) {
	w := newWithdrawFixture(t)
	if !w.served(t, pupilAn) {
		t.Fatal("child not in the gallery")
	}
	ctx := browser(t)
	browserLogin(t, ctx, w.ts.URL, "hoa")
	must(t, chromedp.Do(ctx, chromedp.WaitVisible(chromedp.CSS("#withdraw-"+pupilAn)),
		chromedp.Click(chromedp.CSS("#withdraw-"+pupilAn)), chromedp.WaitVisible(chromedp.CSS("#withdraw-form"))))
	if s := attr(t, ctx, `document.querySelector("#withdraw").innerText`); !strings.Contains(s, "Rút lại sự đồng ý") ||
		!strings.Contains(s, "điểm danh con bằng tay") || !strings.Contains(s, "Nguyễn Văn An") {
		t.Errorf("confirmation page (vi): %q", s)
	}
	checkVietnamese(t, ctx)
	screenshot(t, ctx, "parent-withdraw.png")
	switchLang(t, ctx)
	must(t, chromedp.Do(ctx, chromedp.WaitVisible(chromedp.CSS("#withdraw-form"))))
	if s := attr(t, ctx, `document.querySelector("#withdraw").innerText`); !strings.Contains(s, "Withdraw consent") || !strings.Contains(s, "by hand") {
		t.Errorf("confirmation page (en): %q", s)
	}
	// Unticked, the browser holds the form (required box): nothing changes.
	must(t, chromedp.Do(ctx, chromedp.Click(chromedp.CSS("#withdraw-submit"))))
	time.Sleep(300 * time.Millisecond)
	if !w.inForce(t, pupilAn) || !w.served(t, pupilAn) {
		t.Fatal("withdrawn without the confirmation box")
	}
	must(t, chromedp.Do(ctx,
		chromedp.SendKeys(chromedp.CSS("#withdraw-reason"), "Gia đình chuyển trường"),
		chromedp.Click(chromedp.CSS("#withdraw-confirm")),
		chromedp.Click(chromedp.CSS("#withdraw-submit")),
		chromedp.WaitVisible(chromedp.CSS("p.flash"))))
	if s := attr(t, ctx, `document.querySelector("p.flash").textContent`); !strings.Contains(s, "Consent withdrawn") {
		t.Errorf("flash %q", s)
	}
	if n := attr(t, ctx, `String(document.querySelectorAll("#withdraw-`+pupilAn+`").length)`); n != "0" {
		t.Error("the portal still offers a withdrawal")
	}
	if w.inForce(t, pupilAn) || w.served(t, pupilAn) || !w.served(t, pupilBinh) {
		t.Fatal("after the withdrawal: consent in force or the child still in the gallery")
	}
	var by string
	must(t, w.db.R.QueryRow(`SELECT withdrawn_by FROM consents WHERE pupil_id = ?`, pupilAn).Scan(&by))
	if by != "parent:hoa" {
		t.Errorf("withdrawn by %q", by)
	}
}
