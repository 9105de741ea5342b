package web_test

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/diemdanh/diemdanh/hub/audit"
	"github.com/diemdanh/diemdanh/hub/consent"
	"github.com/diemdanh/diemdanh/hub/enrol"
	"github.com/diemdanh/diemdanh/hub/facetemplates"
	"github.com/diemdanh/diemdanh/hub/web"
	"github.com/diemdanh/diemdanh/models/conf"
)

// reviewPhotos returns two real photos of one person (jimin7, jimin6:
// within the enrolment embedder's duplicate distance of each other) and
// fails when the test data or the face models are missing.
func reviewPhotos(t *testing.T) (first, second []byte) {
	t.Helper()
	data, err := conf.TestDataDir()
	if err != nil {
		t.Fatalf("test data: %v", err)
	}
	for _, m := range []string{"dlib_face_recognition_resnet_model_v1.dat", "shape_predictor_5_face_landmarks.dat"} {
		if _, err := os.Stat(filepath.Join(conf.TestModelsDir(), m)); err != nil {
			t.Fatalf("face model missing (set MODELS_DIR, e.g. /var/cache/diemdanh/models): %v", err)
		}
	}
	var out [2][]byte
	for i, n := range []string{"jimin7.jpg", "jimin6.jpg"} {
		if out[i], err = os.ReadFile(filepath.Join(data, "faces", "images", n)); err != nil {
			t.Fatalf("test photo missing: %v", err)
		}
	}
	return out[0], out[1]
}

// TestBrowserDuplicateReview: two photos of one person are enrolled as two
// pupils with hub/enrol's real service (real dlib models), so the
// duplicate guard holds the second template. In Chromium the admin opens
// /admin/review, sees both pupils' names, classes and IDs, the distance,
// links to both pupil pages and the pointer for one child recorded twice,
// shows both photos side by side (each view audited), decides "same
// person: refuse the template", and the queue is empty; the decision is
// audited and the template deleted.
func TestBrowserDuplicateReview(t *testing.T) {
	first, second := reviewPhotos(t)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	ecfg := enrol.EngineConfig()
	ecfg.ModelsDir = conf.TestModelsDir()
	eng := enrol.NewLazyEngine(ecfg, log)
	t.Cleanup(eng.Close)
	var svc *enrol.Service
	var binh string
	f := web.NewTestFixture(t, func(d *web.Deps) {
		ctx := context.Background()
		key := make([]byte, facetemplates.KeySize)
		for i := range key {
			key[i] = byte(i + 7)
		}
		tpl, err := facetemplates.Open(d.DB, key, log, time.Now)
		if err != nil {
			t.Fatal(err)
		}
		if err := d.DB.R.QueryRow(`SELECT id FROM pupils WHERE full_name = 'Trần Thị Bình'`).Scan(&binh); err != nil {
			t.Fatal(err)
		}
		al := audit.New(d.DB, log, time.Now)
		reg := consent.New(d.DB, tpl, al, log, time.Now)
		for _, p := range []string{web.PupilAn, binh} {
			if _, err := reg.Record(ctx, "test", consent.Grant{PupilID: p, GuardianName: "Phụ huynh", PupilConsented: true,
				ScopeFace: true, ScopePhotos: true, DocumentRef: "PL-2026-" + p}); err != nil {
				t.Fatal(err)
			}
		}
		if svc, err = enrol.New(d.DB, eng, tpl, reg, al, enrol.DefaultConfig(), log, time.Now); err != nil {
			t.Fatal(err)
		}
		d.Enroller, d.Reviewer = enrol.WebEnroller{S: svc}, enrol.WebReview{S: svc}
	})
	ctx := context.Background()
	if r, err := svc.EnrolPhotos(ctx, "admin:test", web.PupilAn, []enrol.Photo{{Name: "an.jpg", Data: first}}); err != nil || r.Accepted != 1 {
		t.Fatalf("enrol An: %+v, %v", r, err)
	}
	if _, err := svc.EnrolPhotos(ctx, "admin:test", binh, []enrol.Photo{{Name: "binh.jpg", Data: second}}); err != nil {
		t.Fatalf("enrol Bình: %v", err)
	}
	var held int64
	if err := f.DB().R.QueryRow(`SELECT id FROM face_templates WHERE pupil_id = ? AND status = 'review'`, binh).Scan(&held); err != nil {
		t.Fatalf("the duplicate guard held no template of Bình: %v", err)
	}

	b := web.Browser(t)
	web.BrowserLogin(t, b, f.URL(), "admin")
	row := `#review-queue tr[data-template="` + strconv.FormatInt(held, 10) + `"]`
	if err := chromedp.Do(b, chromedp.Navigate(f.URL()+"/admin/review"), chromedp.WaitVisible(chromedp.CSS(row))); err != nil {
		t.Fatal(err)
	}
	text := func(sel string) string {
		return web.JS(t, b, `(document.querySelector(`+"`"+sel+"`"+`) || {innerText: ""}).innerText`)
	}
	checks := []struct{ what, sel, want string }{
		{"held pupil", row + " .review-pupil", "Trần Thị Bình"},
		{"held pupil's class", row + " .review-pupil", "1A"},
		{"held pupil's ID", row + " .review-pupil", binh},
		{"other pupil", row + " .review-other", "Nguyễn Văn An"},
		{"other pupil's ID", row + " .review-other", web.PupilAn},
		{"refuse button", row + " .review-reject", "Cùng một người"},
		{"release button", row + " .review-approve", "Khác người"},
		{"one child twice", "#review-same-person", "không tự gộp"},
	}
	for _, c := range checks {
		if got := text(c.sel); !strings.Contains(got, c.want) {
			t.Errorf("%s: %q lacks %q", c.what, got, c.want)
		}
	}
	if d := text(row + " .review-distance"); len(d) != 5 || !strings.HasPrefix(d, "0.") {
		t.Errorf("distance %q, want 0.xxx", d)
	}
	for _, sel := range []string{row + " .review-pupil a", row + " .review-other a"} {
		if h := web.JS(t, b, `document.querySelector(`+"`"+sel+"`"+`).getAttribute("href")`); !strings.HasPrefix(h, "/admin/school/s1/pupils/") {
			t.Errorf("%s: link %q, want the pupil page", sel, h)
		}
	}

	// Both photos side by side, on request; each view is audited.
	if err := chromedp.Do(b, chromedp.Click(chromedp.CSS(row+` a[href*="show="]`)), chromedp.WaitVisible(chromedp.CSS(".review-photos img")),
		chromedp.Poll[chromedp.Void](`Array.from(document.querySelectorAll(".review-photos img")).filter(i => i.complete && i.naturalWidth > 0).length === 2`,
			chromedp.WithPollingTimeout(15*time.Second))); err != nil {
		t.Fatalf("both photos not shown: %v", err)
	}
	web.Screenshot(t, b, "review-duplicate.png")
	var views int
	if err := f.DB().R.QueryRow(`SELECT COUNT(*) FROM audit_log WHERE action = ? AND actor = 'admin:admin'`, audit.ActionPhotoView).Scan(&views); err != nil || views != 2 {
		t.Errorf("photo views audited: %d (%v), want 2", views, err)
	}

	// Same person: the template is refused, the queue is empty.
	if err := chromedp.Do(b, chromedp.Click(chromedp.CSS(row+" .review-reject")), chromedp.WaitVisible(chromedp.CSS("#review-empty"))); err != nil {
		t.Fatalf("after refusing: %v", err)
	}
	web.Screenshot(t, b, "review-empty.png")
	var left, audited int
	if err := f.DB().R.QueryRow(`SELECT COUNT(*) FROM face_templates WHERE status = 'review'`).Scan(&left); err != nil {
		t.Fatal(err)
	}
	if err := f.DB().R.QueryRow(`SELECT COUNT(*) FROM audit_log WHERE action = ? AND actor = 'admin:admin' AND subject = ? AND detail LIKE '%"review":"rejected"%'`,
		audit.ActionDelete, "pupil:"+binh).Scan(&audited); err != nil {
		t.Fatal(err)
	}
	if left != 0 || audited != 1 {
		t.Errorf("after refusing: %d templates in review (want 0), %d refusals audited (want 1)", left, audited)
	}
}
