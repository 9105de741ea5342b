package breach_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/diemdanh/diemdanh/hub/api"
	"github.com/diemdanh/diemdanh/hub/audit"
	"github.com/diemdanh/diemdanh/hub/auth"
	"github.com/diemdanh/diemdanh/hub/breach"
	"github.com/diemdanh/diemdanh/hub/store"
)

const pw = "mat-khau-dai-12345"

type fixture struct {
	db  *store.DB
	reg *breach.Register
	ts  *httptest.Server
	now time.Time
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	ctx := context.Background()
	db, err := store.Open(ctx, filepath.Join(t.TempDir(), "hub.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	f := &fixture{db: db, now: time.Date(2026, 12, 6, 9, 0, 0, 0, time.UTC)}
	gh, _ := bcrypt.GenerateFromPassword([]byte(pw), bcrypt.MinCost)
	for _, q := range []string{
		`INSERT INTO schools(id, name) VALUES ('s1', 'Trường 1'), ('s2', 'Trường 2')`,
		`INSERT INTO staff(id, school_id, full_name, role) VALUES ('t1', 's1', 'Cô Lan', 'teacher')`,
		`INSERT INTO classes(id, school_id, name, grade, homeroom_teacher_id) VALUES ('c1', 's1', '1A', 1, 't1')`,
		`INSERT INTO pupils(id, school_id, class_id, full_name) VALUES ('079123456789', 's1', 'c1', 'Nguyễn Văn An')`,
		`INSERT INTO guardians(id, pupil_id, full_name) VALUES (1, '079123456789', 'Nguyễn Thị Hoa')`,
	} {
		if _, err := db.W.Exec(q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	if _, err := db.W.Exec(`INSERT INTO gates(id, school_id, username, password_hash) VALUES ('g1', 's1', 'g1', ?)`, string(gh)); err != nil {
		t.Fatal(err)
	}
	clock := func() time.Time { return f.now }
	al := audit.New(db, nil, clock)
	acfg := auth.DefaultConfig()
	acfg.BcryptCost = bcrypt.MinCost
	svc, err := auth.New(db, al, acfg, nil, clock)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []auth.NewAccount{
		{Username: "root", Password: pw, Role: auth.RoleAdmin},
		{Username: "admin-1", Password: pw, Role: auth.RoleAdmin, SchoolID: "s1"},
		{Username: "admin-2", Password: pw, Role: auth.RoleAdmin, SchoolID: "s2"},
		{Username: "lan", Password: pw, Role: auth.RoleTeacher, SchoolID: "s1", StaffID: "t1"},
		{Username: "hoa", Password: pw, Role: auth.RoleParent, SchoolID: "s1", GuardianIDs: []int64{1}},
	} {
		if _, _, err := svc.CreateAccount(ctx, "test", n); err != nil {
			t.Fatal(err)
		}
	}
	f.reg = breach.NewRegister(db, al, clock)
	a := api.NewServer(nil, nil, svc)
	a.Engine.Use(svc.Middleware())
	a.V1.Use(svc.Middleware())
	f.reg.Routes(a.V1)
	if err := a.AddPaths(breach.OpenAPIPaths()); err != nil {
		t.Fatal(err)
	}
	if missing, err := a.MissingFromSpec(); err != nil || len(missing) > 0 {
		t.Fatalf("routes missing from the OpenAPI document: %v %v", missing, err)
	}
	f.ts = httptest.NewServer(a.Engine)
	t.Cleanup(f.ts.Close)
	return f
}

func (f *fixture) call(t *testing.T, method, path, user string, body any) (int, map[string]any) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, f.ts.URL+"/api/v1"+path, rd)
	req.Header.Set("Content-Type", "application/json")
	if user != "" {
		req.SetBasicAuth(user, pw)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&out)
	return resp.StatusCode, out
}

func (f *fixture) count(t *testing.T, q string, args ...any) int {
	t.Helper()
	var n int
	if err := f.db.R.QueryRow(q, args...).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// TestRegisterAPI: a school's admin records a breach, the clock runs from
// found_at, actions and notifications are recorded and audited, another
// school's admin neither sees nor changes it, and bad input names the field.
func TestRegisterAPI(t *testing.T) {
	f := newFixture(t)
	found := f.now.Add(-70 * time.Hour)
	code, out := f.call(t, "POST", "/breaches", "admin-1", map[string]any{"school_id": "s2", "what": "Lộ danh sách lớp 1A",
		"found_at": found, "scope": "classes", "subjects": "1A", "affected_count": 32})
	if code != http.StatusCreated {
		t.Fatalf("create: %d %v", code, out)
	}
	b := out["breach"].(map[string]any)
	id := int64(b["id"].(float64))
	if b["school_id"] != "s1" {
		t.Errorf("a school's admin recorded a breach of %v, want its own school s1", b["school_id"])
	}
	if out["seconds_left"].(float64) != 2*3600 || out["pending"] != true {
		t.Errorf("clock: %v left, pending %v; want 7200 s, true", out["seconds_left"], out["pending"])
	}
	path := "/breaches/" + jsonID(id)
	f.now = f.now.Add(3 * time.Hour)
	if _, out = f.call(t, "GET", path, "admin-1", nil); out["seconds_left"].(float64) != -3600 {
		t.Errorf("overdue by an hour: seconds_left %v, want -3600", out["seconds_left"])
	}
	refused := []struct {
		method, path, user string
		body               any
		want               int
	}{
		{"GET", path, "admin-2", nil, http.StatusNotFound},
		{"POST", path + "/close", "admin-2", nil, http.StatusNotFound},
		{"POST", path + "/notify-authority", "admin-1", map[string]any{"at": f.now, "authority": ""}, http.StatusBadRequest},
		{"POST", path + "/notify-authority", "admin-1", map[string]any{"at": f.now.Add(time.Hour), "authority": "A05"}, http.StatusBadRequest},
		{"POST", "/breaches", "admin-1", map[string]any{"what": "x", "found_at": found, "scope": "everyone"}, http.StatusBadRequest},
		{"POST", "/breaches", "admin-1", map[string]any{"what": "", "found_at": found, "scope": "all"}, http.StatusBadRequest},
	}
	for _, r := range refused {
		if code, out := f.call(t, r.method, r.path, r.user, r.body); code != r.want {
			t.Errorf("%s %s as %s: %d %v, want %d", r.method, r.path, r.user, code, out, r.want)
		}
	}
	changes := []struct {
		path string
		body any
	}{
		{path + "/actions", map[string]any{"action": "Thu hồi thư"}},
		{path + "/notify-authority", map[string]any{"at": f.now, "authority": "A05 – Bộ Công an"}},
		{path + "/notify-subjects", map[string]any{"at": f.now}},
		{path + "/close", nil},
	}
	for _, c := range changes {
		if code, out := f.call(t, "POST", c.path, "admin-1", c.body); code != http.StatusOK {
			t.Fatalf("%s: %d %v", c.path, code, out)
		}
	}
	got, err := f.reg.Get(context.Background(), "s1", id)
	if err != nil {
		t.Fatal(err)
	}
	if got.Pending() || got.Open() || got.AuthorityName != "A05 – Bộ Công an" || !got.SubjectsNotifiedAt.Equal(f.now) {
		t.Errorf("after the changes: %+v", got)
	}
	if want := "06/12/2026 19:00 admin:admin-1: Thu hồi thư"; got.Actions != want {
		t.Errorf("actions %q, want %q (dd/mm/yyyy HH:MM, Vietnam time)", got.Actions, want)
	}
	for _, a := range []string{breach.ActionCreate, breach.ActionAction, breach.ActionNotifyAuthority, breach.ActionNotifySubjects, breach.ActionClose} {
		if n := f.count(t, `SELECT COUNT(*) FROM audit_log WHERE action = ? AND subject = ? AND school_id = 's1'`, a, "breach:"+jsonID(id)); n != 1 {
			t.Errorf("%d %s audit entries in school s1, want 1", n, a)
		}
	}
	if p, _ := f.reg.Pending(context.Background(), ""); len(p) != 0 {
		t.Errorf("a closed, notified breach is still pending: %v", p)
	}
	if _, out := f.call(t, "GET", "/breaches", "admin-2", nil); len(out["breaches"].([]any)) != 0 {
		t.Errorf("another school's admin lists %v", out["breaches"])
	}
	if _, out := f.call(t, "GET", "/breaches", "root", nil); len(out["breaches"].([]any)) != 1 {
		t.Errorf("the hub-wide admin lists %v, want the one breach", out["breaches"])
	}
}

func jsonID(id int64) string { b, _ := json.Marshal(id); return string(b) }

// TestRegisterRoleRouteRefusals: teachers, parents, gates and anonymous
// callers reach none of the routes, and nothing is written.
func TestRegisterRoleRouteRefusals(t *testing.T) {
	f := newFixture(t)
	code, out := f.call(t, "POST", "/breaches", "admin-1", map[string]any{"what": "x", "found_at": f.now, "scope": "all"})
	if code != http.StatusCreated {
		t.Fatalf("create: %d %v", code, out)
	}
	routes := []struct {
		method, path string
		body         any
	}{
		{"GET", "/breaches", nil},
		{"POST", "/breaches", map[string]any{"what": "x", "found_at": f.now, "scope": "all"}},
		{"GET", "/breaches/1", nil},
		{"POST", "/breaches/1/actions", map[string]any{"action": "x"}},
		{"POST", "/breaches/1/notify-authority", map[string]any{"at": f.now, "authority": "A05"}},
		{"POST", "/breaches/1/notify-subjects", map[string]any{"at": f.now}},
		{"POST", "/breaches/1/close", nil},
	}
	for _, who := range []struct {
		user string
		want int
	}{{"lan", http.StatusForbidden}, {"hoa", http.StatusForbidden}, {"g1", http.StatusForbidden}, {"", http.StatusUnauthorized}} {
		for _, r := range routes {
			if code, _ := f.call(t, r.method, r.path, who.user, r.body); code != who.want {
				t.Errorf("%q %s %s: %d, want %d", who.user, r.method, r.path, code, who.want)
			}
		}
	}
	if n := f.count(t, `SELECT COUNT(*) FROM breaches WHERE actions = '' AND closed_at IS NULL AND authority_notified_at IS NULL
		AND subjects_notified_at IS NULL`); n != 1 || f.count(t, `SELECT COUNT(*) FROM breaches`) != 1 {
		t.Errorf("refused calls changed the register")
	}
}
