package gallerysrv

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"reflect"
	"slices"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/diemdanh/diemdanh/edge/gallery"
	"github.com/diemdanh/diemdanh/hub/api"
	"github.com/diemdanh/diemdanh/hub/audit"
	"github.com/diemdanh/diemdanh/hub/auth"
	"github.com/diemdanh/diemdanh/hub/roster"
	"github.com/diemdanh/diemdanh/models/match"
	"github.com/diemdanh/diemdanh/models/wire"
)

// TestCandidateGalleries: a gate assigned to class A is served only class
// A's pupils, each with the sessions of that class; an unassigned gate of
// the same school gets every pupil (with the same sessions); the
// assignment and sessions are set through the admin API (teachers,
// parents, gates and other schools' admins refused; bad input a 400 naming
// the field; every change audited) and each change bumps the version.
func TestCandidateGalleries(t *testing.T) {
	f := newFixture(t, nil, time.Hour)
	ctx := context.Background()
	for _, q := range []string{
		`INSERT INTO staff(id, school_id, full_name, role) VALUES ('t1', 'thcs-a', 'Cô Lan', 'teacher')`,
		`INSERT INTO classes(id, school_id, name, grade, homeroom_teacher_id) VALUES ('cA', 'thcs-a', '6A', 6, 't1')`,
		`INSERT INTO classes(id, school_id, name, grade) VALUES ('cB', 'thcs-a', '6B', 6)`,
		`INSERT INTO classes(id, school_id, name, grade) VALUES ('cX', 'thcs-b', '7X', 7)`,
		`UPDATE pupils SET class_id = 'cA' WHERE id IN ('` + pupils[0] + `', '` + pupils[1] + `')`,
		`UPDATE pupils SET class_id = 'cB' WHERE id = '` + pupils[2] + `'`,
		`INSERT INTO guardians(id, pupil_id, full_name) VALUES (1, '` + pupils[0] + `', 'Mẹ')`,
	} {
		if _, err := f.db.W.Exec(q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	g2, err := f.roster.CreateGate(ctx, roster.Gate{ID: "gate-a2", SchoolID: "thcs-a"})
	if err != nil {
		t.Fatal(err)
	}
	const pw = testPassword
	ts := authAPIServer(t, f, "thcs-a")
	call := func(method, path, user, pass string, body any) (int, []byte) {
		t.Helper()
		return apiCall(t, ts, method, path, user, pass, body)
	}
	fetch := func(gate, pass string) (*wire.GalleryDoc, *match.Gallery) {
		t.Helper()
		st, b := call("GET", "/gates/"+gate+"/gallery", gate, pass, nil)
		if st != 200 {
			t.Fatalf("%s gallery: %d %s", gate, st, b)
		}
		doc, g, err := wire.DecodeGallery(b)
		if err != nil {
			t.Fatalf("%s: served gallery does not decode: %v", gate, err)
		}
		return doc, g
	}
	people := func(doc *wire.GalleryDoc) map[string][]string {
		out := map[string][]string{}
		for _, p := range doc.People {
			out[p.StudentID] = p.Sessions
		}
		return out
	}

	// Nothing configured: both gates get the whole school, no sessions.
	doc0, _ := fetch("gate-a", f.pwA)
	if got := people(doc0); len(got) != 3 || got[pupils[0]] != nil {
		t.Fatalf("unrestricted gallery: %v", got)
	}

	// Authorisation of the admin API.
	morning := ClassSessions{Sessions: []string{match.SessionMorning}}
	onlyA := GateClasses{ClassIDs: []string{"cA"}}
	for _, c := range []struct {
		name, method, path, user, pass string
		body                           any
		want                           int
	}{
		{"anonymous", "PUT", "/classes/cA/sessions", "", "", morning, 401},
		{"teacher of the class", "PUT", "/classes/cA/sessions", "lan", pw, morning, 403},
		{"teacher reads", "GET", "/classes/cA/sessions", "lan", pw, nil, 403},
		{"parent", "PUT", "/classes/cA/sessions", "me", pw, morning, 403},
		{"gate", "PUT", "/classes/cA/sessions", "gate-a", f.pwA, morning, 403},
		{"gate assigns itself", "PUT", "/gates/gate-a/classes", "gate-a", f.pwA, onlyA, 403},
		{"gate reads", "GET", "/gates/gate-a/classes", "gate-a", f.pwA, nil, 403},
		{"teacher assigns", "PUT", "/gates/gate-a/classes", "lan", pw, onlyA, 403},
		{"parent assigns", "PUT", "/gates/gate-a/classes", "me", pw, onlyA, 403},
		{"other school's admin", "PUT", "/gates/gate-a/classes", "admin-b", pw, onlyA, 403},
		{"other school's admin, sessions", "PUT", "/classes/cA/sessions", "admin-b", pw, morning, 403},
		{"unknown class", "PUT", "/classes/nope/sessions", "root", pw, morning, 404},
		{"unknown gate", "GET", "/gates/nope/classes", "root", pw, nil, 404},
	} {
		if st, b := call(c.method, c.path, c.user, c.pass, c.body); st != c.want {
			t.Errorf("%s: %d %s, want %d", c.name, st, b, c.want)
		}
	}
	// Bad input: 400 naming the field; nothing changes.
	for _, c := range []struct {
		name, path string
		body       any
		field      string
	}{
		{"unknown session", "/classes/cA/sessions", map[string]any{"sessions": []string{"evening"}}, "sessions"},
		{"no session", "/classes/cA/sessions", map[string]any{"sessions": []string{}}, "sessions"},
		{"duplicate session", "/classes/cA/sessions", map[string]any{"sessions": []string{"morning", "morning"}}, "sessions"},
		{"class of another school", "/gates/gate-a/classes", map[string]any{"class_ids": []string{"cX"}}, "class_ids[0]"},
		{"unknown class", "/gates/gate-a/classes", map[string]any{"class_ids": []string{"cA", "zz"}}, "class_ids[1]"},
		{"duplicate class", "/gates/gate-a/classes", map[string]any{"class_ids": []string{"cA", "cA"}}, "class_ids[1]"},
	} {
		st, b := call("PUT", c.path, "admin-a", pw, c.body)
		var e api.Body
		_ = json.Unmarshal(b, &e)
		if st != 400 || e.Field != c.field {
			t.Errorf("%s: %d %s, want 400 on %s", c.name, st, b, c.field)
		}
	}
	if docNow, _ := fetch("gate-a", f.pwA); docNow.Version != doc0.Version {
		t.Fatalf("refused requests changed the gallery: v%d → v%d", doc0.Version, docNow.Version)
	}

	// The school's admin: class A attends the morning only; gate-a serves
	// class A only.
	if st, b := call("PUT", "/classes/cA/sessions", "admin-a", pw, morning); st != 200 {
		t.Fatalf("put sessions: %d %s", st, b)
	}
	if st, b := call("PUT", "/gates/gate-a/classes", "root", pw, onlyA); st != 200 {
		t.Fatalf("put gate classes: %d %s", st, b)
	}
	docA, galA := fetch("gate-a", f.pwA)
	want := map[string][]string{pupils[0]: {match.SessionMorning}, pupils[1]: {match.SessionMorning}}
	if got := people(docA); !reflect.DeepEqual(got, want) || docA.Version <= doc0.Version {
		t.Fatalf("gate-a (class A) served v%d %v, want v>%d %v", docA.Version, got, doc0.Version, want)
	}
	if galA.InSession(pupils[0], match.SessionAfternoon) || !galA.InSession(pupils[0], match.SessionMorning) {
		t.Fatal("the gate's Gallery lost the sessions")
	}
	// The real edge gallery sync keeps the sessions, in memory and on disk.
	st, err := gallery.NewStore(filepath.Join(t.TempDir(), "gallery.json"), nil)
	if err != nil {
		t.Fatal(err)
	}
	scfg := gallery.DefaultSyncConfig()
	scfg.HubURL, scfg.GateID, scfg.Username, scfg.Password = ts.URL, "gate-a", "gate-a", f.pwA
	sy, err := gallery.NewSync(scfg, st, nil, nil, time.Now)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sy.SyncOnce(ctx); err != nil {
		t.Fatal(err)
	}
	_, eg := st.Current()
	_, fg, err := wire.LoadGalleryFile(st.Path())
	if err != nil {
		t.Fatal(err)
	}
	for _, g := range []*match.Gallery{eg, fg} {
		if g.People() != 2 || g.SessionCandidates(match.SessionAfternoon) != 0 || g.SessionCandidates(match.SessionMorning) != 2 {
			t.Fatalf("edge gallery: %d people, sessions %v", g.People(), g.Sessions(pupils[0]))
		}
	}
	docA2, _ := fetch("gate-a2", g2.Password)
	want[pupils[2]] = nil
	if got := people(docA2); !reflect.DeepEqual(got, want) || docA2.Version != docA.Version {
		t.Fatalf("unassigned gate-a2 served v%d %v, want v%d %v", docA2.Version, got, docA.Version, want)
	}
	// An old ETag no longer matches.
	req, _ := http.NewRequest("GET", ts.URL+"/api/v1/gates/gate-a/gallery", nil)
	req.SetBasicAuth("gate-a", f.pwA)
	req.Header.Set("If-None-Match", ETag(doc0.Version))
	if r, err := http.DefaultClient.Do(req); err != nil || r.StatusCode != 200 {
		t.Fatalf("old ETag: %v %v", r, err)
	} else {
		r.Body.Close()
	}

	// Reading back.
	var gc GateClasses
	if st, b := call("GET", "/gates/gate-a/classes", "admin-a", pw, nil); st != 200 || json.Unmarshal(b, &gc) != nil ||
		!slices.Equal(gc.ClassIDs, []string{"cA"}) || gc.AllClasses {
		t.Fatalf("get gate classes: %d %s", st, b)
	}
	var cs ClassSessions
	if st, b := call("GET", "/classes/cB/sessions", "admin-a", pw, nil); st != 200 || json.Unmarshal(b, &cs) != nil ||
		!slices.Equal(cs.Sessions, match.Sessions) {
		t.Fatalf("default class sessions: %d %s", st, b)
	}

	// Audited, with the actor.
	for _, q := range []struct{ action, subject string }{{ActionClassSessions, "class:cA"}, {ActionGateClasses, "gate:gate-a"}} {
		var n int
		var actor string
		if err := f.db.R.QueryRow(`SELECT count(*), max(actor) FROM audit_log WHERE action = ? AND subject = ?`, q.action, q.subject).Scan(&n, &actor); err != nil {
			t.Fatal(err)
		}
		if n != 1 || actor == "" || actor == "local" {
			t.Errorf("audit %s %s: %d entries by %q, want 1 by an account", q.action, q.subject, n, actor)
		}
	}

	// Back to every class and both sessions: gate-a gets everybody again.
	if st, b := call("PUT", "/gates/gate-a/classes", "admin-a", pw, GateClasses{ClassIDs: []string{}}); st != 200 {
		t.Fatalf("clear gate classes: %d %s", st, b)
	}
	if st, b := call("PUT", "/classes/cA/sessions", "admin-a", pw, ClassSessions{Sessions: []string{"afternoon", "morning"}}); st != 200 {
		t.Fatalf("both sessions: %d %s", st, b)
	}
	docBack, _ := fetch("gate-a", f.pwA)
	if got := people(docBack); len(got) != 3 || got[pupils[0]] != nil || docBack.Version <= docA.Version {
		t.Fatalf("after clearing: v%d %v", docBack.Version, got)
	}
}

// testPassword is the password of every account authAPIServer creates.
const testPassword = "mat-khau-dai-12345"

// authAPIServer serves f's routes behind the real auth middleware on
// loopback, with accounts root (hub-wide admin), admin-a and admin-b
// (admins of thcs-a and thcs-b), and teacher "lan" (staff t1) and parent
// "me" (guardian 1) of school; it checks the routes are all in the OpenAPI
// document.
// apiCall sends one request to /api/v1 on ts (body as JSON when not nil,
// basic auth when user is set) and returns the status and the body.
func apiCall(t *testing.T, ts *httptest.Server, method, path, user, pass string, body any) (int, []byte) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, ts.URL+"/api/v1"+path, rd)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if user != "" {
		req.SetBasicAuth(user, pass)
	}
	r, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Body.Close()
	b, _ := io.ReadAll(r.Body)
	return r.StatusCode, b
}

func authAPIServer(t *testing.T, f *fixture, school string) *httptest.Server {
	t.Helper()
	acfg := auth.DefaultConfig()
	acfg.BcryptCost = bcrypt.MinCost
	svc, err := auth.New(f.db, audit.New(f.db, nil, time.Now), acfg, nil, time.Now)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []auth.NewAccount{
		{Username: "root", Password: testPassword, Role: auth.RoleAdmin},
		{Username: "admin-a", Password: testPassword, Role: auth.RoleAdmin, SchoolID: "thcs-a"},
		{Username: "admin-b", Password: testPassword, Role: auth.RoleAdmin, SchoolID: "thcs-b"},
		{Username: "lan", Password: testPassword, Role: auth.RoleTeacher, SchoolID: school, StaffID: "t1"},
		{Username: "me", Password: testPassword, Role: auth.RoleParent, SchoolID: school, GuardianIDs: []int64{1}},
	} {
		if _, _, err := svc.CreateAccount(context.Background(), "test", n); err != nil {
			t.Fatal(err)
		}
	}
	a := api.NewServer(nil, nil, svc)
	a.Engine.Use(svc.Middleware())
	a.V1.Use(svc.Middleware())
	f.srv.Routes(a.V1)
	if err := a.AddPaths(OpenAPIPaths()); err != nil {
		t.Fatal(err)
	}
	if missing, err := a.MissingFromSpec(); err != nil || len(missing) > 0 {
		t.Fatalf("routes missing from the OpenAPI document: %v %v", missing, err)
	}
	ts := httptest.NewServer(a.Engine)
	t.Cleanup(ts.Close)
	return ts
}
