package web_test

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
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

// TestBrowserEnrolPage drives the admin enrolment page in Chromium with
// hub/enrol's real service (real dlib models, real photos): a good photo
// is accepted with its face crop shown, a group photo is rejected with the
// reason, and a photo taken with the (synthetic) browser camera is sent
// and judged too.
func TestBrowserEnrolPage(t *testing.T) {
	data, err := conf.TestDataDir()
	if err != nil {
		t.Fatalf("test data: %v", err)
	}
	good := filepath.Join(data, "faces", "images", "bona.jpg")
	group := filepath.Join(data, "faces", "images", "pristin.jpg")
	for _, p := range []string{good, group} {
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("test photo missing: %v", err)
		}
	}
	for _, m := range []string{"dlib_face_recognition_resnet_model_v1.dat", "shape_predictor_5_face_landmarks.dat"} {
		if _, err := os.Stat(filepath.Join(conf.TestModelsDir(), m)); err != nil {
			t.Fatalf("face model missing (set MODELS_DIR, e.g. /var/cache/diemdanh/models): %v", err)
		}
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	ecfg := enrol.EngineConfig()
	ecfg.ModelsDir = conf.TestModelsDir()
	eng := enrol.NewLazyEngine(ecfg, log)
	t.Cleanup(eng.Close)
	var svc *enrol.Service
	f := web.NewTestFixture(t, func(d *web.Deps) {
		key := make([]byte, facetemplates.KeySize)
		for i := range key {
			key[i] = byte(i + 1)
		}
		tpl, err := facetemplates.Open(d.DB, key, log, time.Now)
		if err != nil {
			t.Fatal(err)
		}
		al := audit.New(d.DB, log, time.Now)
		reg := consent.New(d.DB, tpl, al, log, time.Now)
		if _, err := reg.Record(context.Background(), "test", consent.Grant{PupilID: web.PupilAn, GuardianName: "Nguyễn Thị Hoa",
			PupilConsented: true, ScopeFace: true, DocumentRef: "PL-2026-001"}); err != nil {
			t.Fatal(err)
		}
		svc, err = enrol.New(d.DB, eng, tpl, reg, al, enrol.DefaultConfig(), log, time.Now)
		if err != nil {
			t.Fatal(err)
		}
		d.Enroller = enrol.WebEnroller{S: svc}
		d.Feedback = enrol.WebFeedback{S: svc}
	})
	ctx := web.Browser(t)
	web.BrowserLogin(t, ctx, f.URL(), "admin")
	if err := chromedp.Do(ctx,
		chromedp.Navigate(f.URL()+"/admin/enrol?pupil="+web.PupilAn),
		chromedp.WaitVisible(chromedp.CSS("#enrol-form")),
		chromedp.SetUploadFiles(chromedp.CSS("#photos"), []string{good, group}),
		chromedp.Click(chromedp.CSS("#enrol-submit")),
		chromedp.Poll[chromedp.Void](`document.querySelectorAll("#verdicts li").length === 2`, chromedp.WithPollingTimeout(90*time.Second)),
	); err != nil {
		t.Fatal(err)
	}
	web.Screenshot(t, ctx, "enrol.png")
	okClass := web.JS(t, ctx, `document.querySelectorAll("#verdicts li")[0].className`)
	okImg := web.JS(t, ctx, `String(document.querySelectorAll("#verdicts li")[0].querySelector("img") !== null)`)
	badClass := web.JS(t, ctx, `document.querySelectorAll("#verdicts li")[1].className`)
	badText := web.JS(t, ctx, `document.querySelectorAll("#verdicts li")[1].innerText`)
	if okClass != "enrolled" || okImg != "true" {
		t.Errorf("good photo: class %q, crop shown %s; text %q", okClass, okImg,
			web.JS(t, ctx, `document.querySelectorAll("#verdicts li")[0].innerText`))
	}
	if badClass != "rejected" || !strings.Contains(badText, "nhiều hơn một khuôn mặt") {
		t.Errorf("group photo: class %q, text %q", badClass, badText)
	}
	var n int
	if err := f.DB().R.QueryRow(`SELECT COUNT(*) FROM audit_log WHERE action = 'enrol' AND actor = 'admin:admin'`).Scan(&n); err != nil || n < 1 {
		t.Errorf("enrolment not audited (%d, %v)", n, err)
	}

	// The browser camera (Chromium's synthetic device): take a shot and send it.
	if err := chromedp.Do(ctx,
		chromedp.Navigate(f.URL()+"/admin/enrol?pupil="+web.PupilAn),
		chromedp.WaitVisible(chromedp.CSS("#camera-on")),
		chromedp.Click(chromedp.CSS("#camera-on")),
		chromedp.Poll[chromedp.Void](`document.getElementById("camera").readyState >= 2 && document.getElementById("camera").videoWidth > 0`, chromedp.WithPollingTimeout(15*time.Second)),
		chromedp.Click(chromedp.CSS("#camera-shot")),
		chromedp.Poll[chromedp.Void](`document.querySelectorAll("#shots img").length === 1`, chromedp.WithPollingTimeout(10*time.Second)),
		chromedp.Click(chromedp.CSS("#enrol-submit")),
		chromedp.Poll[chromedp.Void](`document.querySelectorAll("#verdicts li").length === 1 && document.querySelector("#verdicts li").innerText.indexOf("camera-1.jpg") >= 0`, chromedp.WithPollingTimeout(60*time.Second)),
	); err != nil {
		t.Fatal(err)
	}
	web.Screenshot(t, ctx, "enrol-camera.png")
	// The synthetic camera shows no face: it must be judged, not accepted.
	if c := web.JS(t, ctx, `document.querySelector("#verdicts li").className`); c != "rejected" {
		t.Errorf("camera shot verdict %q: %s", c, web.JS(t, ctx, `document.querySelector("#verdicts li").innerText`))
	}
}
