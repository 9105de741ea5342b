package web

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"golang.org/x/crypto/bcrypt"

	"github.com/diemdanh/diemdanh/hub/attendance"
	"github.com/diemdanh/diemdanh/hub/auth"
	"github.com/diemdanh/diemdanh/hub/consent"
	"github.com/diemdanh/diemdanh/hub/facereview"
	"github.com/diemdanh/diemdanh/hub/facetemplates"
	"github.com/diemdanh/diemdanh/hub/learn"
	"github.com/diemdanh/diemdanh/models/match"
	"github.com/diemdanh/diemdanh/models/wire"
)

// faceKit is the real review stack behind the board's faces section:
// hub/facereview's store, hub/facetemplates, hub/consent and hub/learn's
// Confirmer over the fixture's database.
type faceKit struct {
	review  *facereview.Store
	tpl     *facetemplates.Store
	consent *consent.Registry
}

// newFacesFixture is newFixtureOpts with the faces section wired, gate g2
// serving class c2 only (g1 serves every class), and a second school s2
// with class c3 and its admin "admin2".
func newFacesFixture(t *testing.T, authMW bool) (*fixture, *faceKit) {
	t.Helper()
	k := &faceKit{}
	f := newFixtureOpts(t, authMW, func(d *Deps) {
		key := bytes.Repeat([]byte{7}, facereview.KeySize)
		var err error
		k.review, err = facereview.New(d.DB, key, d.Audit, facereview.Default(), nil, nil)
		must(t, err)
		k.tpl, err = facetemplates.Open(d.DB, key, nil, nil)
		must(t, err)
		k.consent = consent.New(d.DB, k.tpl, d.Audit, nil, nil)
		c, err := learn.NewConfirmer(learn.ConfirmDeps{Review: k.review, Templates: k.tpl, Audit: d.Audit,
			Attendance: attendance.New(d.DB, attendance.Default(), nil, nil)})
		must(t, err)
		d.Faces, d.Learn = k.review, testLearner{c}
	})
	gh, _ := bcrypt.GenerateFromPassword([]byte(gatePass), bcrypt.MinCost)
	for _, q := range []string{
		`INSERT INTO gates(id, school_id, name, direction, username, password_hash) VALUES ('g2', 's1', 'Cổng phụ', 'in', 'g2', '` + string(gh) + `')`,
		`INSERT INTO gate_classes(gate_id, class_id) VALUES ('g2', 'c2')`,
		`INSERT INTO schools(id, name) VALUES ('s2', 'Trường THCS Lê Lợi')`,
		`INSERT INTO classes(id, school_id, name, grade) VALUES ('c3', 's2', '6A', 6)`,
	} {
		_, err := f.db.W.Exec(q)
		must(t, err)
	}
	_, _, err := f.auth.CreateAccount(f.ctx, "test", auth.NewAccount{Username: "admin2", Password: password, Role: auth.RoleAdmin,
		SchoolID: "s2", FullName: "Quản trị Lê Lợi"})
	must(t, err)
	return f, k
}

// testLearner adapts hub/learn's Confirmer to FaceLearner, as hub/app
// does.
type testLearner struct{ c *learn.Confirmer }

func (l testLearner) Confirm(ctx context.Context, face int64, pupil, actor, ip string) (FaceConfirmation, error) {
	r, err := l.c.Confirm(ctx, face, pupil, actor, ip)
	return FaceConfirmation{Day: r.Day, Present: r.Present, Status: r.Status, TemplateID: r.TemplateID, NoTemplate: r.NoTemplate}, err
}

func (l testLearner) NotMine(ctx context.Context, face int64, class, actor string) (bool, error) {
	return l.c.NotMine(ctx, face, class, actor)
}

// TestFaceConfirmationMirrorsLearn: the board's names for what a
// confirmation did are hub/learn's.
func TestFaceConfirmationMirrorsLearn(t *testing.T) {
	if FacePresentMarked != learn.PresentMarked || FacePresentAlready != learn.PresentAlready {
		t.Errorf("present: %q %q, learn's %q %q", FacePresentMarked, FacePresentAlready, learn.PresentMarked, learn.PresentAlready)
	}
	want := []string{learn.NoTemplateDescriptor, learn.NoTemplateModel, learn.NoTemplateConsent, learn.NoTemplateOwnConsent,
		learn.NoTemplateUnlike, learn.NoTemplateNearOther}
	if strings.Join(FaceNoTemplateReasons, ",") != strings.Join(want, ",") {
		t.Errorf("reasons %v, learn's %v", FaceNoTemplateReasons, want)
	}
	cat, err := LoadCatalogue()
	must(t, err)
	for _, r := range append(want, "added") {
		if _, ok := cat.Keys("vi")["faces.template_"+r]; !ok {
			t.Errorf("no message for %q", r)
		}
	}
}

// grant records pupil's consent with the gate-template scope.
func (k *faceKit) grant(t *testing.T, pupil string) {
	t.Helper()
	yes := true
	_, err := k.consent.Record(context.Background(), "admin:test", consent.Grant{PupilID: pupil, GuardianName: "Mẹ", PupilConsented: true,
		ScopeFace: true, ScopePhotos: true, ScopeGateTemplates: &yes, DocumentRef: "DK-" + pupil})
	must(t, err)
}

// face stores a face gate saw now, whose nearest pupils are candidates
// (nearest first), with a descriptor, and returns its ID.
func (k *faceKit) face(t *testing.T, f *fixture, gate string, jpeg []byte, candidates ...string) int64 {
	t.Helper()
	u := &wire.Unrecognised{Schema: wire.SchemaVersion, CaptureID: wire.NewEventID(), SchoolID: "s1", GateID: gate,
		Direction: wire.DirectionIn, Kind: wire.KindUnrecognised, CapturedAt: time.Now().UnixMilli(), FaceJPEG: jpeg,
		Quality: match.Quality{SizePx: 110, Sharpness: 150, Brightness: 120}, FramesDescribed: 3,
		Model: match.DefaultEmbedder, GalleryVer: 1, Descriptor: testDescriptor().Bytes()}
	for i, c := range candidates {
		u.Candidates = append(u.Candidates, wire.Candidate{StudentID: c, Distance: 0.9 + 0.1*float64(i), Margin: 0.1})
	}
	u.Candidates[len(u.Candidates)-1].Margin = 10
	ok, err := k.review.Ingest(context.Background(), u)
	if err != nil || !ok {
		t.Fatalf("ingest face: %v, %v", ok, err)
	}
	var id int64
	must(t, f.db.R.QueryRow(`SELECT id FROM unrecognised_faces WHERE capture_id = ?`, u.CaptureID).Scan(&id))
	return id
}

func testDescriptor() match.Descriptor {
	d := make(match.Descriptor, match.DescriptorLen)
	for i := range d {
		d[i] = float32(math.Sin(float64(i))) / 8
	}
	return d
}

func faceURL(class string, id int64, action string) string {
	return fmt.Sprintf("/teacher/class/%s/faces/%d/%s", class, id, action)
}

// TestFacesRoleRouteRefusals: the faces' crop, "this is" and "not my
// pupil" routes, for each role and scope, with hub/auth's middleware and
// with this package's checks alone. A refused request changes nothing
// and a refused crop is not audited as viewed.
func TestFacesRoleRouteRefusals(t *testing.T) {
	for _, mw := range []bool{true, false} {
		t.Run(map[bool]string{true: "with-auth-middleware", false: "web-checks-alone"}[mw], func(t *testing.T) {
			testFacesRoleRouteRefusals(t, mw)
		})
	}
}

func testFacesRoleRouteRefusals(t *testing.T, mw bool) {
	f, k := newFacesFixture(t, mw)
	at1 := k.face(t, f, "g1", crop(), pupilAn, pupilChi)   // g1 serves every class
	at2 := k.face(t, f, "g2", crop(), pupilChi, pupilBinh) // g2 serves c2 only
	clients := map[string]*client{"": f.client(t), "gate": f.client(t)}
	for _, u := range []string{"admin", "admin2", "lan", "minh", "hoa"} {
		clients[u] = f.client(t)
		clients[u].login(u)
	}
	gateAuth := map[string]string{"Authorization": "Basic " + base64.StdEncoding.EncodeToString([]byte("g1:"+gatePass))}
	// A gate's credentials open nothing here: hub/auth refuses its role; without
	// hub/auth the UI does not read them and sees nobody.
	gateGet, gatePost := http.StatusForbidden, http.StatusForbidden
	if !mw {
		gateGet, gatePost = http.StatusSeeOther, http.StatusUnauthorized
	}
	confirm := func(p string) url.Values { return url.Values{"pupil_id": {p}} }
	cases := []struct {
		user, method, path string
		form               url.Values
		want               int
	}{
		{"", "GET", faceURL("c1", at1, "crop"), nil, http.StatusSeeOther},
		{"", "POST", faceURL("c1", at1, "confirm"), confirm(pupilAn), http.StatusUnauthorized},
		{"", "POST", faceURL("c1", at1, "dismiss"), url.Values{}, http.StatusUnauthorized},
		{"gate", "GET", faceURL("c1", at1, "crop"), nil, gateGet},
		{"gate", "POST", faceURL("c1", at1, "confirm"), confirm(pupilAn), gatePost},
		{"hoa", "GET", faceURL("c1", at1, "crop"), nil, http.StatusForbidden},
		{"hoa", "POST", faceURL("c1", at1, "confirm"), confirm(pupilAn), http.StatusForbidden},
		{"hoa", "POST", faceURL("c1", at1, "dismiss"), url.Values{}, http.StatusForbidden},
		// A teacher of another class, through that class.
		{"lan", "GET", faceURL("c2", at2, "crop"), nil, http.StatusForbidden},
		{"lan", "POST", faceURL("c2", at1, "confirm"), confirm(pupilChi), http.StatusForbidden},
		{"lan", "POST", faceURL("c2", at1, "dismiss"), url.Values{}, http.StatusForbidden},
		// Her own class, a face of a gate that does not serve it.
		{"lan", "GET", faceURL("c1", at2, "crop"), nil, http.StatusNotFound},
		{"lan", "POST", faceURL("c1", at2, "confirm"), confirm(pupilAn), http.StatusNotFound},
		{"lan", "POST", faceURL("c1", at2, "dismiss"), url.Values{}, http.StatusNotFound},
		// Her own class and gate, a pupil of another class.
		{"lan", "POST", faceURL("c1", at1, "confirm"), confirm(pupilChi), http.StatusForbidden},
		{"lan", "POST", faceURL("c1", at1, "confirm"), confirm("not-a-pupil"), http.StatusForbidden},
		{"lan", "GET", faceURL("c1", at1+99, "crop"), nil, http.StatusNotFound},
		// An admin of another school, through a class of this one or of theirs.
		{"admin2", "GET", faceURL("c1", at1, "crop"), nil, http.StatusForbidden},
		{"admin2", "POST", faceURL("c1", at1, "confirm"), confirm(pupilAn), http.StatusForbidden},
		{"admin2", "GET", faceURL("c3", at1, "crop"), nil, http.StatusNotFound},
		{"admin2", "POST", faceURL("c3", at1, "dismiss"), url.Values{}, http.StatusNotFound},
		// Allowed views: a teacher through a class the gate serves, the school's admin any gate.
		{"lan", "GET", faceURL("c1", at1, "crop"), nil, http.StatusOK},
		{"minh", "GET", faceURL("c2", at2, "crop"), nil, http.StatusOK},
		{"admin", "GET", faceURL("c1", at2, "crop"), nil, http.StatusOK},
	}
	for _, tc := range cases {
		c := clients[tc.user]
		var form url.Values
		if tc.form != nil {
			form = url.Values{"csrf_token": {c.csrf}}
			for key, v := range tc.form {
				form[key] = v
			}
		}
		var hdr map[string]string
		if tc.user == "gate" {
			hdr = gateAuth
		}
		if resp, _ := c.do(tc.method, tc.path, form, hdr); resp.StatusCode != tc.want {
			t.Errorf("%q %s %s: %d, want %d", tc.user, tc.method, tc.path, resp.StatusCode, tc.want)
		}
	}
	checkNothingDecided(t, f, 3)
}

// checkNothingDecided: no face was named or dismissed, nothing marked or
// kept, and views crops were audited as viewed.
func checkNothingDecided(t *testing.T, f *fixture, views int) {
	t.Helper()
	for q, want := range map[string]int{
		`SELECT count(*) FROM attendance_overrides`:                           0,
		`SELECT count(*) FROM unrecognised_dismissals`:                        0,
		`SELECT count(*) FROM unrecognised_faces WHERE status != 'open'`:      0,
		`SELECT count(*) FROM face_templates`:                                 0,
		`SELECT count(*) FROM audit_log WHERE action = 'photo_view'`:          views,
		`SELECT count(*) FROM audit_log WHERE action LIKE 'unrecognised_%'`:   0,
		`SELECT count(*) FROM audit_log WHERE action = 'attendance_override'`: 0,
	} {
		var n int
		must(t, f.db.R.QueryRow(q).Scan(&n))
		if n != want {
			t.Errorf("%s: %d, want %d", q, n, want)
		}
	}
}

// boardFaces is the faces section of a board page ("" when absent).
func boardFaces(body string) string {
	i := strings.Index(body, `<section id="faces"`)
	if i < 0 {
		return ""
	}
	j := strings.Index(body[i:], `</section>`)
	return body[i : i+j]
}

// faceCardHTML is face id's card in a faces section.
func faceCardHTML(sec string, id int64) string {
	i := strings.Index(sec, fmt.Sprintf(`id="f-%d"`, id))
	if i < 0 {
		return ""
	}
	return sec[i : i+strings.Index(sec[i:], "</li>")]
}

func card(id int64) string { return fmt.Sprintf(`id="f-%d"`, id) }

// TestFacesOnTheBoard: each viewer's board lists the faces of the gates
// serving the class (every gate for the school's admin) and names only the
// pupils the viewer may name, the class's first.
func TestFacesOnTheBoard(t *testing.T) {
	f, k := newFacesFixture(t, true)
	at1 := k.face(t, f, "g1", crop(), pupilChi, pupilAn)
	at2 := k.face(t, f, "g2", crop(), pupilChi)
	lan, minh, admin := f.client(t), f.client(t), f.client(t)
	lan.login("lan")
	minh.login("minh")
	admin.login("admin")
	for _, tc := range []struct {
		name      string
		c         *client
		class     string
		has, hasn []string
	}{
		{"lan's 1A: g1 only, her pupils only", lan, "c1", []string{card(at1), "Đây là Nguyễn Văn An"}, []string{card(at2), "Lê Minh Chi"}},
		{"minh's 2B: both gates", minh, "c2", []string{card(at1), card(at2), "Đây là Lê Minh Chi"}, []string{"Nguyễn Văn An"}},
		{"admin on 1A: every gate, 1A's pupils first", admin, "c1", []string{card(at1), card(at2), "Đây là Nguyễn Văn An", "Đây là Lê Minh Chi (2B)"}, nil},
	} {
		_, body := tc.c.do("GET", "/teacher/class/"+tc.class, nil, nil)
		sec := boardFaces(body)
		for _, s := range tc.has {
			if !strings.Contains(sec, s) {
				t.Errorf("%s: %q missing from the faces section", tc.name, s)
			}
		}
		for _, s := range tc.hasn {
			if strings.Contains(sec, s) {
				t.Errorf("%s: %q shown", tc.name, s)
			}
		}
		if c := faceCardHTML(sec, at1); tc.c == admin && strings.Index(c, "Đây là Nguyễn Văn An") > strings.Index(c, "Đây là Lê Minh Chi") {
			t.Errorf("%s: the class's pupil is not first on the card: %s", tc.name, c)
		}
	}
}

// TestFacesDecisions: "not my pupil" hides a face from that class only;
// "this is <pupil>" needs the session's CSRF token, then marks the pupil
// present, keeps the capture as a template and shows the face confirmed;
// a confirmed face can be neither dismissed nor named again.
func TestFacesDecisions(t *testing.T) {
	f, k := newFacesFixture(t, true)
	k.grant(t, pupilAn)
	at1 := k.face(t, f, "g1", crop(), pupilChi, pupilAn)
	lan, minh := f.client(t), f.client(t)
	lan.login("lan")
	minh.login("minh")

	resp, _ := minh.do("POST", faceURL("c2", at1, "dismiss"), url.Values{"csrf_token": {minh.csrf}}, nil)
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("dismiss: %d", resp.StatusCode)
	}
	if _, body := minh.do("GET", resp.Header.Get("Location"), nil, nil); strings.Contains(boardFaces(body), card(at1)) ||
		!strings.Contains(body, "Đã ẩn khuôn mặt này") {
		t.Error("the dismissed face is still on 2B's board, or no message")
	}
	if _, body := lan.do("GET", "/teacher/class/c1", nil, nil); !strings.Contains(boardFaces(body), card(at1)) {
		t.Error("2B's dismissal hid the face from 1A")
	}

	// Without the session's CSRF token nothing is decided.
	for _, tok := range []string{"", "x" + lan.csrf} {
		resp, _ := lan.do("POST", faceURL("c1", at1, "confirm"), url.Values{"csrf_token": {tok}, "pupil_id": {pupilAn}}, nil)
		if resp.StatusCode != http.StatusForbidden {
			t.Errorf("confirm with CSRF token %q: %d, want 403", tok, resp.StatusCode)
		}
	}
	if got, err := k.review.Get(context.Background(), at1); err != nil || got.Status != facereview.StatusOpen {
		t.Fatalf("face after refused confirmations: %s, %v", got.Status, err)
	}

	// "This is An" from 1A: present, template kept, the card confirmed.
	resp, _ = lan.do("POST", faceURL("c1", at1, "confirm"), url.Values{"csrf_token": {lan.csrf}, "pupil_id": {pupilAn}}, nil)
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("confirm: %d", resp.StatusCode)
	}
	_, body := lan.do("GET", resp.Header.Get("Location"), nil, nil)
	for _, s := range []string{"Đã điểm danh Nguyễn Văn An có mặt.", "Đã lưu ảnh làm mẫu khuôn mặt", "Đã xác nhận: Nguyễn Văn An",
		`id="p-` + pupilAn + `" data-pupil="` + pupilAn + `" data-status="present"`} {
		if !strings.Contains(body, s) {
			t.Errorf("after the confirmation, %q missing", s)
		}
	}
	var n int
	must(t, f.db.R.QueryRow(`SELECT count(*) FROM face_templates WHERE pupil_id = ? AND source = 'teacher'`, pupilAn).Scan(&n))
	if n != 1 {
		t.Errorf("%d teacher templates of An, want 1", n)
	}
	// A face named as An can no longer be dismissed nor named as another.
	for _, form := range []struct{ action, pupil string }{{"dismiss", ""}, {"confirm", pupilBinh}} {
		resp, _ := lan.do("POST", faceURL("c1", at1, form.action), url.Values{"csrf_token": {lan.csrf}, "pupil_id": {form.pupil}}, nil)
		if resp.StatusCode != http.StatusConflict {
			t.Errorf("%s after the confirmation: %d, want 409", form.action, resp.StatusCode)
		}
	}
}

// TestBrowserTeacherConfirmsFaceOnPhone: in Chromium on a phone-sized
// screen, a teacher sees the face the gate did not recognise (its crop
// loaded), presses "Đây là Nguyễn Văn An" and sees An present, the card
// confirmed and the capture kept as a template; the page fits the screen,
// in Vietnamese and, after the switch, in English.
func TestBrowserTeacherConfirmsFaceOnPhone(t *testing.T) {
	f, k := newFacesFixture(t, true)
	k.grant(t, pupilAn)
	id := k.face(t, f, "g1", realFaceCrop(t), pupilAn, pupilChi)
	ctx := browser(t)
	must(t, chromedp.Do(ctx, chromedp.EmulateViewport(390, 844, chromedp.EmulateScale(2), chromedp.EmulateMobile)))
	browserLogin(t, ctx, f.ts.URL, "lan")
	card := fmt.Sprintf("#f-%d", id)
	must(t, chromedp.Do(ctx, chromedp.WaitVisible(chromedp.CSS(card)),
		chromedp.Poll[chromedp.Void](`(function(){ var i = document.querySelector("`+card+` img"); return i.complete && i.naturalWidth > 0; })()`,
			chromedp.WithPollingTimeout(5*time.Second))))
	checkVietnamese(t, ctx)
	checkFits(t, ctx)
	if s := attr(t, ctx, `document.querySelector("`+card+` button.this-is").textContent`); s != "Đây là Nguyễn Văn An" {
		t.Errorf("first candidate button %q", s)
	}
	if s := attr(t, ctx, `document.querySelector("#faces").textContent`); strings.Contains(s, "Lê Minh Chi") {
		t.Error("a pupil of another class is named to the teacher")
	}
	screenshot(t, ctx, "board-faces-phone.png")

	must(t, chromedp.Do(ctx, chromedp.Click(chromedp.CSS(card+` button.this-is[value="`+pupilAn+`"]`)),
		chromedp.WaitVisible(chromedp.CSS(`p.flash`))))
	if s := attr(t, ctx, `document.getElementById("p-`+pupilAn+`").dataset.status`); s != "present" {
		t.Errorf("An after the confirmation: %q", s)
	}
	flash := attr(t, ctx, `document.querySelector("p.flash").textContent`)
	if !strings.Contains(flash, "Đã điểm danh Nguyễn Văn An có mặt.") || !strings.Contains(flash, "Đã lưu ảnh làm mẫu") {
		t.Errorf("message %q", flash)
	}
	if s := attr(t, ctx, `document.querySelector("`+card+` .face-done").textContent`); s != "Đã xác nhận: Nguyễn Văn An" {
		t.Errorf("card after the confirmation %q", s)
	}
	checkFits(t, ctx)
	screenshot(t, ctx, "board-faces-confirmed-phone.png")
	var reason string
	must(t, f.db.R.QueryRow(`SELECT reason FROM attendance_overrides WHERE pupil_id = ? AND actor = 'teacher:lan'`, pupilAn).Scan(&reason))
	if !strings.Contains(reason, fmt.Sprintf("#%d", id)) {
		t.Errorf("override reason %q does not name face %d", reason, id)
	}

	switchLang(t, ctx)
	must(t, chromedp.Do(ctx, chromedp.WaitVisible(chromedp.CSS(card))))
	if s := attr(t, ctx, `document.getElementById("faces-title").textContent`); !strings.HasPrefix(s, "Faces the gate did not recognise") {
		t.Errorf("en title %q", s)
	}
	if s := attr(t, ctx, `document.querySelector("`+card+` .face-done").textContent`); s != "Confirmed: Nguyễn Văn An" {
		t.Errorf("en card %q", s)
	}
	checkFits(t, ctx)
}

// checkFits fails when the page is wider than the screen.
func checkFits(t *testing.T, ctx context.Context) {
	t.Helper()
	if w := attr(t, ctx, `String(document.documentElement.scrollWidth <= window.innerWidth + 1)`); w != "true" {
		t.Errorf("page overflows the screen: scrollWidth %s, innerWidth %s",
			attr(t, ctx, `String(document.documentElement.scrollWidth)`), attr(t, ctx, `String(window.innerWidth)`))
	}
}
