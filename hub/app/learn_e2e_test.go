package app

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/cookiejar"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/diemdanh/diemdanh/edge/sim"
	"github.com/diemdanh/diemdanh/hub/audit"
	"github.com/diemdanh/diemdanh/hub/facereview"
	"github.com/diemdanh/diemdanh/hub/facetemplates"
	"github.com/diemdanh/diemdanh/hub/store"
	"github.com/diemdanh/diemdanh/models/conf"
	"github.com/diemdanh/diemdanh/models/faceengine"
	"github.com/diemdanh/diemdanh/models/match"
	"github.com/diemdanh/diemdanh/models/wire"
)

// TestGateLearnsFromTeacher (issue 17, "the loop works end to end with
// real processes") runs `hub demo` (bin/hub with its gate, bin/edge run,
// on the looped real-time synthetic video) and closes the learning loop
// through HTTP, MQTT and Chromium only:
//
//  1. the gate's gallery file fills; the demo's truth names the visitors
//     (people not in the gallery), whose photos are described in-process;
//  2. the first admin creates a teacher of the demo class (both one-time
//     passwords changed over the API);
//  3. the hub's review store (read-only, with the demo's template key)
//     holds an open unrecognised face within the gate's threshold of a
//     visitor's photo and of no other visitor's; the admin creates pupil Q
//     of the demo class for that visitor, with a consent allowing gate
//     templates and the pupil's own consent;
//  4. in Chromium on a phone screen the teacher chooses Q for that face on
//     the class board: Q is present, the capture kept as a template;
//  5. within 60 s the running gate's gallery file holds Q (a newer
//     version) with the confirmed face's descriptor;
//  6. within two loops of the video the hub stores the gate's event of Q;
//  7. SIGINT stops the hub and its gate cleanly.
func TestGateLearnsFromTeacher(t *testing.T) {
	start := time.Now()
	logStep := func(format string, args ...any) {
		t.Logf("[%6.1fs] "+format, append([]any{time.Since(start).Seconds()}, args...)...)
	}
	d := startDemo(t)
	edgeGallery := filepath.Join(d.data, "demo", "edge", "gallery.json")
	before := waitGateGallery(t, d, edgeGallery, 200*time.Second, "filled",
		func(g *wire.GalleryDoc) bool { return len(g.People) > 0 })
	logStep("gate gallery v%d with %d people, threshold %.3f", before.Version, len(before.People), before.Threshold)
	if before.Threshold <= 0 || before.Threshold > 2 {
		t.Fatalf("the gate's gallery carries no calibrated threshold (%v)", before.Threshold)
	}

	truth := loadDemoTruth(t, d)
	visitors := describeVisitors(t, truth, before.Model)
	loop := time.Duration(float64(truth.Frames) / truth.FPS * float64(time.Second))
	logStep("truth: %d passages, %d visitors described, loop %s", len(truth.Passages), len(visitors), loop)

	admin := adminClient(t, d, before.People[0].StudentID)
	teacher, teacherPw := createClassTeacher(t, d, admin)
	logStep("teacher %s of %s created, password changed over the API", teacher, DemoClass)

	rv := openReview(t, d)
	seen := waitVisitorFace(t, d, rv, visitors, before.Threshold, 150*time.Second)
	logStep("face #%d is visitor %s (%s): distance %.3f to the photo, %.3f to the next visitor, %d faces open",
		seen.faceID, seen.v.p.Name, seen.v.p.Photo, seen.dist, seen.next, seen.open)

	q := createLearnPupil(t, admin, before, seen.v.p)
	logStep("pupil %s (%s) created with a consent allowing gate templates", q.id, q.name)

	confirmed := confirmOnPhone(t, d, teacher, teacherPw, q, seen.faceID)
	logStep("teacher confirmed face #%d as %s in Chromium", seen.faceID, q.id)

	after := waitGateGallery(t, d, edgeGallery, 60*time.Second, "holding "+q.id+" after the confirmation", func(g *wire.GalleryDoc) bool {
		return g.Version > before.Version && slices.ContainsFunc(g.People, func(p wire.GalleryPerson) bool { return p.StudentID == q.id })
	})
	reached := time.Now()
	logStep("gate gallery v%d -> v%d holds %s, %s after the confirmation", before.Version, after.Version, q.id,
		reached.Sub(confirmed).Round(time.Millisecond))
	checkTemplateIsFace(t, rv, after, q.id, seen.faceID)

	ev := waitRecognised(t, d, q.id, 2*loop+30*time.Second)
	logStep("event %s: the gate recognised %s at distance %.3f, captured %s after the gallery reached it",
		ev.id, q.id, ev.distance, time.UnixMilli(ev.capturedAt).Sub(reached).Round(time.Millisecond))

	stopDemo(t, d)
	logStep("demo stopped cleanly")
}

// waitGateGallery waits until the running gate's gallery file is one
// that done accepts, and returns it; what is wanted names it on failure.
func waitGateGallery(t *testing.T, d *demoRun, path string, limit time.Duration, want string, done func(*wire.GalleryDoc) bool) *wire.GalleryDoc {
	t.Helper()
	deadline := time.Now().Add(limit)
	var newest *wire.GalleryDoc
	for {
		if doc, _, err := wire.LoadGalleryFile(path); err == nil {
			if newest = doc; done(doc) {
				return doc
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("the gate's gallery %s: not %s within %s (newest file: %s)", path, want, limit, versionOf(newest))
		}
		select {
		case err := <-d.exited:
			t.Fatalf("hub demo exited: %v", err)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func loadDemoTruth(t *testing.T, d *demoRun) sim.Truth {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(d.data, "demo", "truth.json"))
	if err != nil {
		t.Fatalf("the demo's truth: %v", err)
	}
	var tr sim.Truth
	if err := json.Unmarshal(b, &tr); err != nil {
		t.Fatalf("the demo's truth: %v", err)
	}
	if tr.Format != sim.TruthFormat || tr.FPS <= 0 || tr.Frames <= 0 {
		t.Fatalf("the demo's truth is not a gate truth file: format %q, %v fps, %d frames", tr.Format, tr.FPS, tr.Frames)
	}
	return tr
}

// visitorPhoto is a visitor passage with its photo's descriptor.
type visitorPhoto struct {
	p    sim.Passage
	desc match.Descriptor
}

// describeVisitors describes the photo of every visitor passage with the
// gallery's embedder, clear passages (no motion blur, no occlusion) first.
// The demo video must have visitors: without one the loop cannot start.
func describeVisitors(t *testing.T, tr sim.Truth, model match.ModelID) []visitorPhoto {
	t.Helper()
	testdata, err := conf.TestDataDir()
	if err != nil {
		t.Fatal(err)
	}
	cfg := faceengine.DefaultEngineConfig()
	cfg.ModelsDir, cfg.Embedder, cfg.Workers = conf.TestModelsDir(), model.Name, 1
	eng, err := faceengine.NewEngine(cfg, nil)
	if err != nil {
		t.Fatalf("face engine %s: %v", model.Name, err)
	}
	defer eng.Close()
	if eng.Model() != model {
		t.Fatalf("the engine describes with %s, the gate's gallery is %s", eng.Model(), model)
	}
	var out []visitorPhoto
	for _, p := range tr.Passages {
		if !p.Visitor() {
			continue
		}
		b := readTruthPhoto(t, testdata, p.Photo)
		faces, err := eng.Recognize(context.Background(), b)
		if err != nil || len(faces) == 0 {
			t.Fatalf("visitor photo %s: no face described: %v (the simulator found one)", p.Photo, err)
		}
		// The simulator walks the photo's one face its reference detector
		// finds; a detector that also sees a small second one keeps the largest.
		big := slices.MaxFunc(faces, func(a, b match.Face) int { return a.Box.Dx()*a.Box.Dy() - b.Box.Dx()*b.Box.Dy() })
		out = append(out, visitorPhoto{p: p, desc: big.Descriptor})
	}
	if len(out) == 0 {
		t.Fatal("the demo video has no visitor passage: nobody the gate was never taught walks past")
	}
	sharp := func(v visitorPhoto) bool { return !v.p.Blur && !v.p.Occluded }
	sort.SliceStable(out, func(i, j int) bool { return sharp(out[i]) && !sharp(out[j]) })
	return out
}

// readTruthPhoto reads a truth photo: its path is relative to the folder
// above the simulator's photo folder (faces/… under the test data,
// kpop/… under its asian/ folder).
func readTruthPhoto(t *testing.T, testdata, rel string) []byte {
	t.Helper()
	for _, dir := range []string{testdata, filepath.Join(testdata, "asian")} {
		if b, err := os.ReadFile(filepath.Join(dir, rel)); err == nil {
			return b
		}
	}
	t.Fatalf("truth photo %s not found under %s", rel, testdata)
	return nil
}

// apiLogin logs in over the API and returns the session client.
func apiLogin(t *testing.T, d *demoRun, user, password string) *sessionClient {
	t.Helper()
	jar, _ := cookiejar.New(nil)
	c := &sessionClient{base: "http://" + d.httpAddr, hc: &http.Client{Jar: jar, Timeout: 10 * time.Second}}
	status, body := c.post(t, "/api/v1/auth/login", map[string]string{"username": user, "password": password})
	if status != http.StatusOK {
		t.Fatalf("login as %s: HTTP %d %s", user, status, body)
	}
	var lr struct {
		CSRF string `json:"csrf_token"`
	}
	if err := json.Unmarshal([]byte(body), &lr); err != nil || lr.CSRF == "" {
		t.Fatalf("login answer without csrf_token: %v %s", err, body)
	}
	c.csrf = lr.CSRF
	return c
}

// mustPost posts v and fails unless the answer has status want.
func mustPost(t *testing.T, c *sessionClient, path string, v any, want int) string {
	t.Helper()
	status, body := c.post(t, path, v)
	if status != want {
		t.Fatalf("POST %s: HTTP %d %s, want %d", path, status, body, want)
	}
	return body
}

// createClassTeacher creates, as admin, a staff member, their teacher
// account (a one-time password) and their assignment to the demo class,
// then changes the one-time password over the API as the hub requires. It
// returns the username and the new password.
func createClassTeacher(t *testing.T, d *demoRun, admin *sessionClient) (string, string) {
	t.Helper()
	const staff, user = "gv-e2e-learn", "co.hoa"
	mustPost(t, admin, "/api/v1/schools/"+DemoSchool+"/staff", map[string]any{"id": staff, "full_name": "Cô Hoà (e2e)",
		"role": "teacher", "active": true}, http.StatusCreated)
	body := mustPost(t, admin, "/api/v1/accounts", map[string]any{"username": user, "role": "teacher", "school_id": DemoSchool,
		"staff_id": staff, "full_name": "Cô Hoà (e2e)"}, http.StatusCreated)
	var acc struct {
		OTP string `json:"one_time_password"`
	}
	if err := json.Unmarshal([]byte(body), &acc); err != nil || acc.OTP == "" {
		t.Fatalf("teacher account without a one-time password: %v %s", err, body)
	}
	mustPost(t, admin, "/api/v1/teacher-classes", map[string]string{"staff_id": staff, "class_id": DemoClass}, http.StatusOK)
	c := apiLogin(t, d, user, acc.OTP)
	pw := "e2e-Learn-" + acc.OTP
	mustPost(t, c, "/api/v1/auth/password", map[string]string{"old_password": acc.OTP, "new_password": pw}, http.StatusOK)
	return user, pw
}

// reviewReader is the hub's review store of unrecognised faces over the
// demo's database opened read-only, with the key of its data folder.
type reviewReader struct {
	db *store.DB
	st *facereview.Store
}

func openReview(t *testing.T, d *demoRun) *reviewReader {
	t.Helper()
	keyFile := filepath.Join(d.data, "template.key")
	if _, err := os.Stat(keyFile); err != nil && os.Getenv(facetemplates.KeyEnv) == "" {
		t.Fatalf("the demo's template key: %v", err)
	}
	key, err := facetemplates.LoadKey(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(d.data, "hub.db")
	ro, err := sql.Open("sqlite3", store.DSN(path, true))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ro.Close() })
	db := &store.DB{W: ro, R: ro, Path: path}
	st, err := facereview.New(db, key, audit.New(db, nil, nil), facereview.Default(), nil, nil)
	if err != nil {
		t.Fatalf("review store over the demo's database: %v", err)
	}
	return &reviewReader{db: db, st: st}
}

// today is the demo school's local day.
func (r *reviewReader) today(t *testing.T) string {
	t.Helper()
	var tz string
	if err := r.db.R.QueryRow(`SELECT timezone FROM schools WHERE id = ?`, DemoSchool).Scan(&tz); err != nil {
		t.Fatalf("the demo school's time zone: %v", err)
	}
	loc, err := time.LoadLocation(tz)
	if err != nil {
		t.Fatal(err)
	}
	return time.Now().In(loc).Format("2006-01-02")
}

// visitorFace is an open unrecognised face matched to a visitor photo.
type visitorFace struct {
	v      visitorPhoto
	faceID int64
	dist   float64 // face descriptor to the visitor's photo
	next   float64 // to the nearest other visitor's photo
	rank   int     // the visitor's place in the preference order
	open   int     // open faces with a descriptor at the time
}

// matchVisitorFaces returns the best open face of the demo gate today
// that is within threshold of one visitor's photo and of no other's: the
// first visitor in preference order, then the nearest face. ok is false
// while there is none.
func (r *reviewReader) matchVisitorFaces(t *testing.T, visitors []visitorPhoto, threshold float64) (visitorFace, bool) {
	t.Helper()
	ctx := context.Background()
	faces, err := r.st.List(ctx, DemoSchool, []string{DemoGate}, r.today(t))
	if err != nil {
		t.Fatalf("faces of the demo gate: %v", err)
	}
	var best visitorFace
	found, open := false, 0
	for _, f := range faces {
		if f.Status != facereview.StatusOpen || !f.HasDescriptor {
			continue
		}
		open++
		desc, err := r.st.Descriptor(ctx, f.ID)
		if err != nil {
			t.Fatalf("descriptor of face %d: %v", f.ID, err)
		}
		m := nearestVisitor(desc, visitors)
		m.faceID = f.ID
		if m.dist < threshold && m.next >= threshold && (!found || m.rank < best.rank || m.rank == best.rank && m.dist < best.dist) {
			best, found = m, true
		}
	}
	best.open = open
	return best, found
}

// nearestVisitor is the visitor photo nearest to desc.
func nearestVisitor(desc match.Descriptor, visitors []visitorPhoto) visitorFace {
	m := visitorFace{dist: 99, next: 99}
	for i, v := range visitors {
		dd := match.Distance(desc, v.desc)
		switch {
		case dd < m.dist:
			m.next = m.dist
			m.v, m.dist, m.rank = v, dd, i
		case dd < m.next:
			m.next = dd
		}
	}
	return m
}

// waitVisitorFace waits until the hub holds an open face of a visitor.
func waitVisitorFace(t *testing.T, d *demoRun, r *reviewReader, visitors []visitorPhoto, threshold float64, limit time.Duration) visitorFace {
	t.Helper()
	deadline := time.Now().Add(limit)
	for {
		if m, ok := r.matchVisitorFaces(t, visitors, threshold); ok {
			return m
		}
		if time.Now().After(deadline) {
			var n int
			_ = r.db.R.QueryRow(`SELECT count(*) FROM unrecognised_faces WHERE school_id = ?`, DemoSchool).Scan(&n)
			t.Fatalf("no unrecognised face within %.3f of exactly one of the %d visitors' photos within %s (%d faces stored)",
				threshold, len(visitors), limit, n)
		}
		select {
		case err := <-d.exited:
			t.Fatalf("hub demo exited early: %v", err)
		case <-time.After(2 * time.Second):
		}
	}
}

// learnPupil is the pupil created for the visitor.
type learnPupil struct{ id, name string }

// createLearnPupil creates, as admin over the API, a pupil of the demo
// class for visitor p, with a fresh personal ID and a consent that allows
// face attendance, keeping photos, gate snapshots and gate templates,
// with the pupil's own consent.
func createLearnPupil(t *testing.T, admin *sessionClient, g *wire.GalleryDoc, p sim.Passage) learnPupil {
	t.Helper()
	q := learnPupil{name: "Học sinh mới " + demoName(p.Name)}
	for n := time.Now().UnixNano(); q.id == "" || slices.ContainsFunc(g.People, func(x wire.GalleryPerson) bool { return x.StudentID == q.id }); n++ {
		q.id = fmt.Sprintf("079%09d", n%1_000_000_000)
	}
	mustPost(t, admin, "/api/v1/schools/"+DemoSchool+"/pupils", map[string]any{"id": q.id, "class_id": DemoClass,
		"full_name": q.name, "date_of_birth": "2014-03-01", "active": true}, http.StatusCreated)
	mustPost(t, admin, "/api/v1/pupils/"+q.id+"/consent", map[string]any{"guardian_name": "Phụ huynh (e2e)",
		"pupil_consented": true, "scope_face": true, "scope_photos": true, "scope_snapshots": true,
		"scope_gate_templates": true, "document_ref": "e2e consent form"}, http.StatusCreated)
	return q
}

// phoneBrowser starts headless Chromium (Debian's, or $CHROMIUM) with a
// phone-sized screen; it fails when Chromium is missing.
func phoneBrowser(t *testing.T) context.Context {
	t.Helper()
	path := os.Getenv("CHROMIUM")
	if path == "" {
		path = "/usr/bin/chromium"
	}
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("Chromium not found at %s (install Debian's chromium or set CHROMIUM): %v", path, err)
	}
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(path), chromedp.Flag("headless", true), chromedp.NoSandbox, chromedp.DisableGPU,
		chromedp.NoFirstRun, chromedp.NoDefaultBrowserCheck, chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true), chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true), chromedp.UserDataDir(t.TempDir()),
	}
	alloc, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(alloc)
	ctx, cancelT := context.WithTimeout(ctx, 120*time.Second)
	t.Cleanup(func() { cancelT(); cancel(); cancelAlloc() })
	if err := chromedp.Do(ctx, chromedp.EmulateViewport(390, 844, chromedp.EmulateScale(2), chromedp.EmulateMobile)); err != nil {
		t.Fatalf("cannot start Chromium at %s: %v", path, err)
	}
	return ctx
}

// learnScreenshot saves shot (a PNG) in $DIEMDANH_ARTIFACTS (or the
// test's temporary folder).
func learnScreenshot(t *testing.T, ctx context.Context, name string, shot chromedp.Action[[]byte]) {
	t.Helper()
	dir := os.Getenv("DIEMDANH_ARTIFACTS")
	if dir == "" {
		dir = t.TempDir()
	} else if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	b, err := chromedp.Run(ctx, shot)
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s", p)
}

func jsString(t *testing.T, ctx context.Context, expr string) string {
	t.Helper()
	s, err := chromedp.Run(ctx, chromedp.Evaluate[string](expr))
	if err != nil {
		t.Fatalf("evaluate %s: %v", expr, err)
	}
	return s
}

// confirmOnPhone logs the teacher in with Chromium on a phone screen,
// opens the demo class board, finds face faceID (its crop loaded),
// chooses q in the card's pupil list and confirms; the board then shows q
// present, the card confirmed as q and the capture kept as a template.
// It returns when the teacher pressed the button.
func confirmOnPhone(t *testing.T, d *demoRun, user, password string, q learnPupil, faceID int64) time.Time {
	t.Helper()
	ctx, base := phoneBrowser(t), "http://"+d.httpAddr
	card := fmt.Sprintf("#f-%d", faceID)
	err := chromedp.Do(ctx, chromedp.Navigate(base+"/login"), chromedp.WaitVisible(chromedp.CSS("#username")),
		chromedp.SendKeys(chromedp.CSS("#username"), user), chromedp.SendKeys(chromedp.CSS("#password"), password),
		chromedp.Click(chromedp.CSS("#login-submit")), chromedp.WaitVisible(chromedp.CSS("header.top form.logout")))
	if err != nil {
		t.Fatalf("teacher %s cannot log in with Chromium: %v", user, err)
	}
	err = chromedp.Do(ctx, chromedp.Navigate(base+"/teacher/class/"+DemoClass), chromedp.WaitVisible(chromedp.CSS("#faces")))
	if err != nil {
		t.Fatalf("the class board has no faces section: %v", err)
	}
	err = chromedp.Do(ctx, chromedp.WaitVisible(chromedp.CSS(card)), chromedp.Poll[chromedp.Void](`(function(){ var i = document.querySelector("`+
		card+` img"); return i.complete && i.naturalWidth > 0; })()`, chromedp.WithPollingTimeout(10*time.Second)))
	if err != nil {
		t.Fatalf("face #%d (or its crop) is not on the teacher's board: %v\nfaces: %s", faceID, err,
			jsString(t, ctx, `document.getElementById("faces").innerText`))
	}
	learnScreenshot(t, ctx, "learn-board-phone.png", chromedp.FullScreenshot(100))
	learnScreenshot(t, ctx, "learn-face-card-phone.png", chromedp.Screenshot(chromedp.CSS(card)))
	pick := fmt.Sprintf("#pick-%d", faceID)
	pressed := time.Now()
	err = chromedp.Do(ctx, chromedp.SetValue(chromedp.CSS(pick), q.id), chromedp.Click(chromedp.CSS(card+" form.face-pick button[type=submit]")),
		chromedp.WaitVisible(chromedp.CSS(card+" .face-done")), chromedp.WaitVisible(chromedp.CSS("p.flash")))
	if err != nil {
		t.Fatalf("choosing %s for face #%d: %v", q.id, faceID, err)
	}
	learnScreenshot(t, ctx, "learn-board-confirmed-phone.png", chromedp.FullScreenshot(100))
	learnScreenshot(t, ctx, "learn-face-confirmed-phone.png", chromedp.Screenshot(chromedp.CSS(card)))
	if s := jsString(t, ctx, `document.getElementById("p-`+q.id+`").dataset.status`); s != "present" {
		t.Errorf("the board shows %s as %q after the confirmation, want present", q.id, s)
	}
	flash := jsString(t, ctx, `document.querySelector("p.flash").textContent`)
	for _, want := range []string{"Đã điểm danh " + q.name + " có mặt.", "Đã lưu ảnh làm mẫu khuôn mặt"} {
		if !strings.Contains(flash, want) {
			t.Errorf("the board's message %q lacks %q", flash, want)
		}
	}
	if s := jsString(t, ctx, `document.querySelector("`+card+` .face-done").textContent`); s != "Đã xác nhận: "+q.name {
		t.Errorf("face #%d after the confirmation: %q", faceID, s)
	}
	return pressed
}

// checkTemplateIsFace checks that the gate's descriptor of pupil is the
// confirmed face's own.
func checkTemplateIsFace(t *testing.T, r *reviewReader, g *wire.GalleryDoc, pupil string, faceID int64) {
	t.Helper()
	face, err := r.st.Descriptor(context.Background(), faceID)
	if err != nil {
		t.Fatal(err)
	}
	i := slices.IndexFunc(g.People, func(p wire.GalleryPerson) bool { return p.StudentID == pupil })
	if len(g.People[i].Descriptors) != 1 {
		t.Fatalf("the gate has %d descriptors of %s, want the one confirmed capture", len(g.People[i].Descriptors), pupil)
	}
	got, err := match.ParseDescriptorBase64(g.People[i].Descriptors[0])
	if err != nil {
		t.Fatal(err)
	}
	if dd := match.Distance(got, face); dd > 1e-6 {
		t.Errorf("the gate's template of %s is %.4f from the confirmed face #%d", pupil, dd, faceID)
	}
}

// learnEvent is the demo gate's event naming the new pupil.
type learnEvent struct {
	id         string
	distance   float64
	capturedAt int64
}

// waitRecognised waits until the hub stores an event of the demo gate
// naming pupil.
func waitRecognised(t *testing.T, d *demoRun, pupil string, limit time.Duration) learnEvent {
	t.Helper()
	db, err := sql.Open("sqlite3", store.DSN(filepath.Join(d.data, "hub.db"), true))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	deadline := time.Now().Add(limit)
	for {
		var ev learnEvent
		err := db.QueryRow(`SELECT event_id, distance, captured_at FROM events WHERE gate_id = ? AND student_id = ?
			ORDER BY captured_at LIMIT 1`, DemoGate, pupil).Scan(&ev.id, &ev.distance, &ev.capturedAt)
		if err == nil {
			return ev
		}
		if err != sql.ErrNoRows {
			t.Fatalf("events of %s: %v", pupil, err)
		}
		if time.Now().After(deadline) {
			t.Fatalf("the gate did not recognise %s within %s (two loops of the video and a margin) of reaching its gallery", pupil, limit)
		}
		select {
		case err := <-d.exited:
			t.Fatalf("hub demo exited: %v", err)
		case <-time.After(time.Second):
		}
	}
}

// stopDemo sends SIGINT and expects the hub and its gate to stop cleanly.
func stopDemo(t *testing.T, d *demoRun) {
	t.Helper()
	if err := d.cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-d.exited:
		if err != nil {
			t.Fatalf("hub demo did not exit cleanly: %v", err)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("hub demo did not stop within 60 s of SIGINT")
	}
	for _, want := range []string{"gate stopped", "hub stopped"} {
		if !strings.Contains(d.stderr.String(), want) {
			t.Errorf("log lacks %q", want)
		}
	}
	if err := syscall.Kill(-d.cmd.Process.Pid, 0); err == nil {
		t.Error("processes of the demo are still running")
	}
}
