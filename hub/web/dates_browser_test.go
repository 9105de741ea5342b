package web

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// browserEnUS starts a headless Chromium of its own whose locale is US
// English (--lang, Accept-Language, LANG): the setting under which an
// <input type="date"> shows 12 May 2026 as 05/12/2026.
func browserEnUS(t *testing.T) context.Context {
	t.Helper()
	dir, err := os.MkdirTemp("", "diemdanh-chromium-enus-")
	must(t, err)
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(chromePath()),
		chromedp.Flag("headless", true), chromedp.NoSandbox, chromedp.DisableGPU, chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck, chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true), chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true), chromedp.Flag("lang", "en-US"), chromedp.Flag("accept-lang", "en-US"),
		chromedp.Env("LANG=en_US.UTF-8", "LANGUAGE=en_US"), chromedp.UserDataDir(dir), chromedp.WindowSize(1100, 900),
	}
	alloc, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(alloc)
	ctx, cancelT := context.WithTimeout(ctx, 90*time.Second)
	t.Cleanup(func() { cancelT(); cancel(); cancelAlloc(); os.RemoveAll(dir) })
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("cannot start Chromium at %s: %v", chromePath(), err)
	}
	return ctx
}

// submitDay types day into the field sel and submits its form, then waits
// for the address to carry the ISO query wantSearch.
func submitDay(t *testing.T, ctx context.Context, sel, day, wantSearch string) {
	t.Helper()
	must(t, chromedp.Do(ctx,
		chromedp.Clear(chromedp.CSS(sel)),
		chromedp.SendKeys(chromedp.CSS(sel), day),
		chromedp.Submit(chromedp.CSS(sel)),
	))
	waitJS(t, ctx, `location.search === `+jsString(wantSearch)+` && document.readyState === "complete" && document.querySelector("h1") !== null`)
}

// waitJS polls js until it is true (10 s), across page loads (an
// in-page poll fails when the page navigates away under it).
func waitJS(t *testing.T, ctx context.Context, js string) {
	t.Helper()
	for end := time.Now().Add(10 * time.Second); time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
		if ok, err := chromedp.Run(ctx, chromedp.Evaluate[bool](js)); err == nil && ok {
			return
		}
	}
	t.Fatalf("timed out waiting for %s (at %s)", js, attr(t, ctx, `location.href`))
}

func jsString(s string) string {
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s) + `"`
}

// TestBrowserDatesDayFirstInUSLocale: in a Chromium set to US English the
// board's and term page's date fields read dd/mm/yyyy (their value, which
// is what a text field displays), in the Vietnamese and the English UI;
// typing dd/mm/yyyy and the previous-day link work, and the address keeps
// ISO dates.
func TestBrowserDatesDayFirstInUSLocale(t *testing.T) {
	f := newFixture(t)
	ctx := browserEnUS(t)
	must(t, chromedp.Do(ctx, chromedp.Navigate(f.ts.URL+"/login"), chromedp.WaitVisible(chromedp.CSS("#username"))))
	// The browser really is US English: its own dates are month first.
	if l := attr(t, ctx, `navigator.language`); l != "en-US" {
		t.Fatalf("navigator.language %q, want en-US", l)
	}
	if s := attr(t, ctx, `new Date(2026, 4, 12).toLocaleDateString()`); s != "5/12/2026" {
		t.Fatalf("browser's own date format gives %q, want the US 5/12/2026", s)
	}
	browserLogin(t, ctx, f.ts.URL, "lan")
	must(t, chromedp.Do(ctx, chromedp.Navigate(f.ts.URL+"/teacher/class/c1?day=2026-05-12"), chromedp.WaitVisible(chromedp.CSS("#board"))))
	field := func(sel string) string {
		return attr(t, ctx, `(function(e){ return e.type + " " + e.value; })(document.querySelector(`+jsString(sel)+`))`)
	}
	if s := field("#day"); s != "text 12/05/2026" {
		t.Errorf("board day field %q, want text 12/05/2026 (12 May)", s)
	}
	if n := attr(t, ctx, `String(document.querySelectorAll('input[type="date"]').length)`); n != "0" {
		t.Errorf("%s locale-dependent date inputs on the board", n)
	}
	checkVietnamese(t, ctx)
	screenshot(t, ctx, "board-date-en-US.png")

	submitDay(t, ctx, "#day", "03/11/2026", "?day=2026-11-03")
	if s := field("#day"); s != "text 03/11/2026" {
		t.Errorf("after typing 03/11/2026 the field reads %q", s)
	}
	must(t, chromedp.Do(ctx, chromedp.Click(chromedp.CSS("#day-prev"))))
	waitJS(t, ctx, `location.search === "?day=2026-11-02" && document.readyState === "complete" && document.querySelector("#board") !== null`)
	if s := field("#day"); s != "text 02/11/2026" {
		t.Errorf("previous day reads %q, want 02/11/2026", s)
	}

	// English UI: still day first.
	switchLang(t, ctx)
	must(t, chromedp.Do(ctx, chromedp.WaitVisible(chromedp.CSS("#board"))))
	if l := attr(t, ctx, `document.documentElement.lang`); l != "en" {
		t.Fatalf("lang after switch %q", l)
	}
	if s := field("#day"); s != "text 02/11/2026" {
		t.Errorf("English board day field %q, want 02/11/2026", s)
	}
	must(t, chromedp.Do(ctx, chromedp.Navigate(f.ts.URL+"/teacher/class/c1/term?from=2026-09-01&to=2026-11-02"),
		chromedp.WaitVisible(chromedp.CSS("#term"))))
	if a, b := field("#from"), field("#to"); a != "text 01/09/2026" || b != "text 02/11/2026" {
		t.Errorf("term fields %q, %q; want 01/09/2026 and 02/11/2026", a, b)
	}
	submitDay(t, ctx, "#from", "1/10/2026", "?from=2026-10-01&to=2026-11-02")
	if s := field("#from"); s != "text 01/10/2026" {
		t.Errorf("term start after typing 1/10/2026: %q", s)
	}
	screenshot(t, ctx, "term-date-en-US.png")

	// A day the month does not have: refused with how to type a date.
	must(t, chromedp.Do(ctx, chromedp.Navigate(f.ts.URL+"/teacher/class/c1"), chromedp.WaitVisible(chromedp.CSS("#day")),
		chromedp.Clear(chromedp.CSS("#day")), chromedp.SendKeys(chromedp.CSS("#day"), "31/02/2026"),
		chromedp.Submit(chromedp.CSS("#day"))))
	waitJS(t, ctx, `document.readyState === "complete" && document.querySelector("#board") === null && document.querySelector("p.error, main") !== null`)
	if s := attr(t, ctx, `document.body.innerText`); !strings.Contains(s, "day/month/year (dd/mm/yyyy)") {
		t.Errorf("bad date page says:\n%s", s)
	}
}
