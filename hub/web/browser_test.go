package web

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/diemdanh/diemdanh/models/wire"
)

// One headless Chromium (Debian's /usr/bin/chromium) shared by every
// browser test; each test gets its own browser context (cookie jar).
var chrome struct {
	once    sync.Once
	ctx     context.Context
	cancel  func()
	dataDir string
	err     error
}

func TestMain(m *testing.M) {
	code := m.Run()
	if chrome.cancel != nil {
		chrome.cancel()
		os.RemoveAll(chrome.dataDir)
	}
	os.Exit(code)
}

func chromePath() string {
	if p := os.Getenv("CHROMIUM"); p != "" {
		return p
	}
	return "/usr/bin/chromium"
}

func browser(t *testing.T) context.Context {
	t.Helper()
	chrome.once.Do(func() {
		chrome.dataDir, chrome.err = os.MkdirTemp("", "diemdanh-chromium-")
		if chrome.err != nil {
			return
		}
		opts := []chromedp.ExecAllocatorOption{
			chromedp.ExecPath(chromePath()),
			chromedp.Flag("headless", true), chromedp.NoSandbox, chromedp.DisableGPU,
			chromedp.Flag("disable-quic", true), chromedp.NoFirstRun, chromedp.NoDefaultBrowserCheck,
			chromedp.Flag("disable-background-networking", true), chromedp.Flag("disable-component-update", true),
			chromedp.Flag("disable-sync", true), chromedp.Flag("disable-dev-shm-usage", true),
			// A synthetic camera for the enrolment page (getUserMedia), no permission prompt.
			chromedp.Flag("use-fake-device-for-media-stream", true), chromedp.Flag("use-fake-ui-for-media-stream", true),
			chromedp.UserDataDir(chrome.dataDir), chromedp.WindowSize(1100, 900),
		}
		alloc, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
		bctx, cancelB := chromedp.NewContext(alloc)
		chrome.ctx = bctx
		chrome.cancel = func() { cancelB(); cancelAlloc() }
		chrome.err = chromedp.Do(bctx)
	})
	if chrome.err != nil {
		t.Fatalf("cannot start Chromium at %s: %v", chromePath(), chrome.err)
	}
	ctx, cancel := chromedp.NewContext(chrome.ctx, chromedp.WithNewBrowserContext())
	ctx, cancel2 := context.WithTimeout(ctx, 60*time.Second)
	t.Cleanup(func() { cancel2(); cancel() })
	return ctx
}

func artifacts(t *testing.T) string {
	if d := os.Getenv("DIEMDANH_ARTIFACTS"); d != "" {
		must(t, os.MkdirAll(d, 0o755))
		return d
	}
	return t.TempDir()
}

func screenshot(t *testing.T, ctx context.Context, name string) string {
	t.Helper()
	b, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	must(t, err)
	p := filepath.Join(artifacts(t), name)
	must(t, os.WriteFile(p, b, 0o644))
	t.Logf("screenshot: %s", p)
	return p
}

func browserLogin(t *testing.T, ctx context.Context, base, user string) {
	t.Helper()
	must(t, chromedp.Do(ctx,
		chromedp.Navigate(base+"/login"),
		chromedp.WaitVisible(chromedp.CSS("#username")),
		chromedp.SendKeys(chromedp.CSS("#username"), user),
		chromedp.SendKeys(chromedp.CSS("#password"), password),
		chromedp.Click(chromedp.CSS("#login-submit")),
		chromedp.WaitVisible(chromedp.CSS("header.top form.logout")),
	))
}

// tofuJS returns the Vietnamese letters that render like a missing glyph
// (identical pixels to an unassigned code point) or without their marks.
const tofuJS = `(function(){
  var font = getComputedStyle(document.querySelector("h1")).fontFamily;
  var c = document.createElement("canvas"); c.width = 64; c.height = 64;
  var x = c.getContext("2d");
  function px(ch){ x.clearRect(0,0,64,64); x.font = "40px " + font; x.fillStyle = "#000"; x.fillText(ch, 6, 46);
    return Array.prototype.join.call(x.getImageData(0,0,64,64).data, ","); }
  var tofu = [px("\u0378"), px("\uFFFF"), px("\u05FF")];
  var bad = [];
  var pairs = [["Đ","D"],["đ","d"],["ạ","a"],["ế","e"],["ệ","e"],["ư","u"],["ờ","o"],["ữ","u"],["ă","a"],["ơ","o"],["ị","i"],["ỷ","y"]];
  pairs.forEach(function(p){ var v = px(p[0]); if (tofu.indexOf(v) >= 0 || v === px(p[1])) bad.push(p[0]); });
  return bad.join("");
})()`

// unlabelledJS lists visible form controls without an accessible name.
const unlabelledJS = `Array.prototype.filter.call(document.querySelectorAll("input:not([type=hidden]), select, textarea, button"),
  function(e){ return !((e.labels && e.labels.length) || e.getAttribute("aria-label") || (e.tagName === "BUTTON" && e.textContent.trim())); })
  .map(function(e){ return e.outerHTML.slice(0, 80); }).join("\n")`

func checkVietnamese(t *testing.T, ctx context.Context) {
	t.Helper()
	if s := attr(t, ctx, unlabelledJS); s != "" {
		t.Errorf("form controls without a label:\n%s", s)
	}
	charset, lang, bad := attr(t, ctx, `document.characterSet`), attr(t, ctx, `document.documentElement.lang`), attr(t, ctx, tofuJS)
	if charset != "UTF-8" {
		t.Errorf("document.characterSet = %q", charset)
	}
	if lang != "vi" {
		t.Errorf("html lang = %q", lang)
	}
	if bad != "" {
		t.Errorf("Vietnamese letters without a real glyph: %q (are fonts-noto-core installed?)", bad)
	}
}

func publishMQTT(t *testing.T, f *fixture, ev wire.Event) {
	t.Helper()
	o := paho.NewClientOptions().AddBroker("tcp://" + f.broker.Addr()).SetClientID("g1").SetUsername("g1").
		SetPassword(gatePass).SetCleanSession(false).SetAutoReconnect(false).SetConnectTimeout(5 * time.Second)
	c := paho.NewClient(o)
	if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("mqtt connect: %v", tok.Error())
	}
	defer c.Disconnect(100)
	b, err := ev.Encode()
	must(t, err)
	if tok := c.Publish(wire.EventTopic(ev.SchoolID, ev.GateID), 1, false, b); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("mqtt publish: %v", tok.Error())
	}
}

func attr(t *testing.T, ctx context.Context, js string) string {
	t.Helper()
	s, err := chromedp.Run(ctx, chromedp.Evaluate[string](js))
	must(t, err)
	return s
}

func TestBrowserTeacherLiveBoard(t *testing.T) {
	f := newFixture(t)
	ctx := browser(t)
	browserLogin(t, ctx, f.ts.URL, "lan")
	must(t, chromedp.Do(ctx,
		chromedp.WaitVisible(chromedp.CSS("#board")),
		chromedp.Poll[chromedp.Void](`document.body.dataset.live === "open"`, chromedp.WithPollingTimeout(10*time.Second)),
	))
	row := func(id string) string { return `document.getElementById("p-` + id + `")` }
	if s := attr(t, ctx, row(pupilAn)+`.dataset.status`); s != "not_yet" {
		t.Fatalf("An before the event: %q", s)
	}
	checkVietnamese(t, ctx)
	// The pupil named <script> is shown as text.
	if s := attr(t, ctx, row(pupilScript)+`.querySelector(".name").textContent`); !strings.Contains(s, scriptName) {
		t.Errorf("script-named pupil shows %q", s)
	}

	// An's consent allows gate snapshots, so the crop is kept and shown.
	_, err := f.db.W.Exec(`INSERT INTO consents(pupil_id, guardian_name, pupil_consented, scope_face, scope_snapshots, document_ref, given_at, recorded_by)
		VALUES (?, 'Nguyễn Thị Hoa', 1, 1, 1, 'DK-An', ?, 'test')`, pupilAn, time.Now().UnixMilli())
	must(t, err)
	// A gate publishes An's arrival over MQTT to the real embedded broker.
	start := time.Now()
	publishMQTT(t, f, event(pupilAn, "in", time.Now()))
	err = chromedp.Do(ctx, chromedp.Poll[chromedp.Void](row(pupilAn)+`.dataset.status === "present"`,
		chromedp.WithPollingTimeout(2*time.Second), chromedp.WithPollingInterval(20*time.Millisecond)))
	took := time.Since(start)
	if err != nil {
		t.Fatalf("row did not turn present within 2 s of the MQTT publish (%v): %v", took, err)
	}
	t.Logf("MQTT publish → row present in the browser: %v", took.Round(time.Millisecond))
	must(t, chromedp.Do(ctx, chromedp.Poll[chromedp.Void](row(pupilAn)+`.querySelector(".face img") !== null && `+
		row(pupilAn)+`.querySelector(".face img").complete`, chromedp.WithPollingTimeout(5*time.Second))))
	if s := attr(t, ctx, row(pupilAn)+`.querySelector(".badge").textContent`); s != "Có mặt" {
		t.Errorf("badge %q", s)
	}
	if s := attr(t, ctx, row(pupilAn)+`.querySelector(".gate").textContent`); s != "Cổng chính" {
		t.Errorf("gate %q", s)
	}
	if s := attr(t, ctx, `document.querySelector('[data-count="present"]').textContent`); s != "1" {
		t.Errorf("present counter %q", s)
	}
	if s := attr(t, ctx, `location.pathname`); s != "/teacher/class/c1" {
		t.Errorf("page changed to %q (should update without reload)", s)
	}
	screenshot(t, ctx, "board-live.png")

	// Manual override: Bình excused with a reason.
	must(t, chromedp.Do(ctx,
		chromedp.Click(chromedp.CSS(`#p-`+pupilBinh+` summary`)),
		chromedp.SendKeys(chromedp.CSS(`#reason-`+pupilBinh), "Ốm, mẹ đã gọi điện"),
		chromedp.Click(chromedp.CSS(`#p-`+pupilBinh+` button[value="excused"]`)),
		chromedp.WaitVisible(chromedp.CSS(`p.flash`)),
	))
	if s := attr(t, ctx, row(pupilBinh)+`.dataset.status`); s != "excused" {
		t.Errorf("Bình after override: %q", s)
	}
	if s := attr(t, ctx, row(pupilBinh)+`.querySelector(".badge").textContent`); s != "Vắng có phép" {
		t.Errorf("Bình badge %q", s)
	}
	var actor, reason string
	must(t, f.db.R.QueryRow(`SELECT actor, reason FROM attendance_overrides WHERE pupil_id = ? AND status = 'excused'`, pupilBinh).Scan(&actor, &reason))
	if actor != "teacher:lan" || reason != "Ốm, mẹ đã gọi điện" {
		t.Errorf("override recorded as %q %q", actor, reason)
	}

	// Filter: only pupils not in school remain visible.
	must(t, chromedp.Do(ctx, chromedp.Click(chromedp.CSS("#missing"))))
	vis := func(id string) string { return attr(t, ctx, `String(`+row(id)+`.offsetParent !== null)`) }
	if vis(pupilAn) != "false" || vis(pupilBinh) != "false" || vis(pupilScript) != "true" {
		t.Errorf("filter: An %s, Bình %s, script %s", vis(pupilAn), vis(pupilBinh), vis(pupilScript))
	}
	screenshot(t, ctx, "board-filtered.png")

	// On a phone-sized screen the table becomes cards: no horizontal scroll.
	must(t, chromedp.Do(ctx, chromedp.Click(chromedp.CSS("#missing")),
		chromedp.EmulateViewport(390, 844, chromedp.EmulateScale(2), chromedp.EmulateMobile)))
	if w := attr(t, ctx, `String(document.documentElement.scrollWidth <= window.innerWidth + 1)`); w != "true" {
		t.Errorf("board overflows a phone screen: scrollWidth %s, innerWidth %s",
			attr(t, ctx, `String(document.documentElement.scrollWidth)`), attr(t, ctx, `String(window.innerWidth)`))
	}
	screenshot(t, ctx, "board-phone.png")
	must(t, chromedp.Do(ctx, chromedp.EmulateReset()))
}

// switchLang follows the page's language link (keyboard-reachable <a>).
func switchLang(t *testing.T, ctx context.Context) {
	t.Helper()
	href := attr(t, ctx, `document.getElementById("lang-switch").href`)
	must(t, chromedp.Do(ctx, chromedp.Navigate(href), chromedp.WaitVisible(chromedp.CSS("h1"))))
}

func TestBrowserLanguageSwitch(t *testing.T) {
	f := newFixture(t)
	ctx := browser(t)
	browserLogin(t, ctx, f.ts.URL, "lan")
	must(t, chromedp.Do(ctx, chromedp.WaitVisible(chromedp.CSS("#board"))))
	if h := attr(t, ctx, `document.querySelector("h1").textContent`); h != "Điểm danh lớp 1A" {
		t.Errorf("vi heading %q", h)
	}
	switchLang(t, ctx)
	must(t, chromedp.Do(ctx, chromedp.WaitVisible(chromedp.CSS("#board"))))
	if l := attr(t, ctx, `document.documentElement.lang`); l != "en" {
		t.Fatalf("lang after switch %q", l)
	}
	if h := attr(t, ctx, `document.querySelector("h1").textContent`); h != "Attendance of class 1A" {
		t.Errorf("en heading %q", h)
	}
	if s := attr(t, ctx, `document.getElementById("p-`+pupilAn+`").querySelector(".badge").textContent`); s != "Not yet" {
		t.Errorf("en badge %q", s)
	}
	if s := attr(t, ctx, `location.pathname`); s != "/teacher/class/c1" {
		t.Errorf("switch left the page: %q", s)
	}
	screenshot(t, ctx, "board-en.png")
	// The choice sticks across pages, and switching back works.
	must(t, chromedp.Do(ctx, chromedp.Navigate(f.ts.URL+"/password"), chromedp.WaitVisible(chromedp.CSS("h1"))))
	if h := attr(t, ctx, `document.querySelector("h1").textContent`); h != "Change password" {
		t.Errorf("en password page %q", h)
	}
	switchLang(t, ctx)
	if l := attr(t, ctx, `document.documentElement.lang`); l != "vi" {
		t.Fatalf("lang after switching back %q", l)
	}
	if h := attr(t, ctx, `document.querySelector("h1").textContent`); h != "Đổi mật khẩu" {
		t.Errorf("vi password page %q", h)
	}
}

func TestBrowserParentSeesOnlyOwnChild(t *testing.T) {
	f := newFixture(t)
	f.ingestDirect(t, event(pupilAn, "in", time.Now()))
	f.ingestDirect(t, event(pupilChi, "in", time.Now()))
	ctx := browser(t)
	browserLogin(t, ctx, f.ts.URL, "hoa")
	must(t, chromedp.Do(ctx, chromedp.WaitVisible(chromedp.CSS("section.child"))))
	body := attr(t, ctx, `document.querySelector("main").innerText`)
	if !strings.Contains(body, "Nguyễn Văn An") || strings.Contains(body, "Lê Minh Chi") || strings.Contains(body, "Bình") {
		t.Errorf("parent page shows:\n%s", body)
	}
	if n := attr(t, ctx, `String(document.querySelectorAll("section.child").length)`); n != "1" {
		t.Errorf("%s children shown", n)
	}
	if s := attr(t, ctx, `document.querySelector("section.child .today .badge").textContent`); s != "Có mặt" {
		t.Errorf("today %q", s)
	}
	if s := attr(t, ctx, `document.querySelector("section.child .arrived").textContent`); !regexpTime(s) {
		t.Errorf("arrival time %q", s)
	}
	checkVietnamese(t, ctx)
	screenshot(t, ctx, "parent.png")
	// Preferences: turn e-mail off, English messages.
	must(t, chromedp.Do(ctx,
		chromedp.Click(chromedp.CSS("#ch_email")),
		chromedp.SetValue(chromedp.CSS("#msg_lang"), "en"),
		chromedp.Submit(chromedp.CSS("#prefs-form")),
		chromedp.WaitVisible(chromedp.CSS("p.flash"))))
	p, err := f.notify.GetPrefs(context.Background(), 1)
	must(t, err)
	if p.Enabled["email"] || p.Lang != "en" {
		t.Errorf("prefs after saving: %+v", p)
	}
	// The teacher pages are refused (by hub/auth's route policy, and by
	// this package's own role and class checks behind it).
	must(t, chromedp.Do(ctx, chromedp.Navigate(f.ts.URL+"/teacher/class/c2"), chromedp.WaitReady(chromedp.CSS("body"))))
	if s := attr(t, ctx, `document.body.innerText`); !strings.Contains(s, "không được phép") || strings.Contains(s, "Lê Minh Chi") {
		t.Errorf("refusal shows %q", s)
	}
	if n := attr(t, ctx, `String(document.querySelectorAll("#board").length)`); n != "0" {
		t.Error("parent got a class board")
	}
}

func regexpTime(s string) bool {
	var h, m int
	n, _ := fmt.Sscanf(s, "%d:%d", &h, &m)
	return n == 2 && len(s) == 5
}
