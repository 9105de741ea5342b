package roster

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/diemdanh/diemdanh/hub/api"
	"github.com/diemdanh/diemdanh/hub/store"
	"golang.org/x/crypto/bcrypt"
)

func openDB(t testing.TB) *store.DB {
	t.Helper()
	db, err := store.Open(context.Background(), filepath.Join(t.TempDir(), "hub.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func newStore(t testing.TB) *Store {
	s := New(openDB(t), nil, func() time.Time { return time.Date(2026, 9, 7, 7, 0, 0, 0, time.UTC) })
	s.BcryptCost = bcrypt.MinCost
	ctx := context.Background()
	if _, err := s.PutSchool(ctx, School{ID: "thcs-a", Name: "THCS A"}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.PutClass(ctx, Class{ID: "6a", SchoolID: "thcs-a", Name: "6A", Grade: 6, Active: true}); err != nil {
		t.Fatal(err)
	}
	return s
}

func countPupils(t *testing.T, s *Store) int {
	var n int
	if err := s.db.R.QueryRow(`SELECT count(*) FROM pupils`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func TestImportPupilsCSVMixedRowsImportsNothing(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	csv := "personal_id,full_name,class,date_of_birth,gender,guardian_name,guardian_phone\n" +
		"001234567890,Nguyễn Văn An,6A,2014-03-02,male,Nguyễn Thị Bình,+84901234567\n" + // line 2 ok
		"00123456789,Trần Bảo,6A,2014-01-01,male,,\n" + // 3: 11 digits
		"001234567891,Lê Chi,7B,2014-01-01,female,,\n" + // 4: unknown class
		"001234567892,Phạm Dũng,6a,2014-02-30,male,,\n" + // 5: impossible date (class by id ok)
		"001234567893,=SUM(A1:A9),6A,,,,\n" + // 6: formula
		"001234567890,Trùng Mã,6A,,,,\n" + // 7: duplicate of line 2
		"001234567894,Thiếu Ô,6A\n" + // 8: wrong number of cells
		"001234567895,Bad \x01 control,6A,,,,\n" + // 9: control character (invalid UTF-8 refuses the whole file: TestSecurityCSVEncodings)
		"001234567896,Vũ Em,6A,,,Bố Em,not-a-phone\n" + // 10: guardian phone
		"001234567897,Đỗ Giang,6A,2015-05-05,female,,\n" // 11 ok
	rep, err := s.ImportPupilsCSV(ctx, "thcs-a", strings.NewReader(csv), false)
	if api.CodeOf(err) != api.CodeInvalid {
		t.Fatalf("want invalid, got %v", err)
	}
	var ae *api.Error
	if !errors.As(err, &ae) || ae.Details == nil {
		t.Fatalf("error carries no report: %v", err)
	}
	want := map[int]string{3: "personal_id", 4: "class", 5: "date_of_birth", 6: "full_name", 7: "personal_id", 8: "", 9: "full_name", 10: "guardian_phone"}
	got := map[int]string{}
	for _, e := range rep.Errors {
		got[e.Line] = e.Field
		if e.Reason == "" {
			t.Errorf("line %d: empty reason", e.Line)
		}
	}
	for line, field := range want {
		f, ok := got[line]
		if !ok || f != field {
			t.Errorf("line %d: want error on %q, got %q (present %v); report %+v", line, field, f, ok, rep.Errors)
		}
	}
	if _, bad := got[2]; bad {
		t.Errorf("good line 2 reported: %+v", rep.Errors)
	}
	if _, bad := got[11]; bad {
		t.Errorf("good line 11 reported: %+v", rep.Errors)
	}
	if rep.Applied || countPupils(t, s) != 0 {
		t.Fatalf("a bad file must import nothing: applied=%v pupils=%d", rep.Applied, countPupils(t, s))
	}

	// The same file without its bad rows imports entirely.
	var clean []string
	for i, l := range strings.Split(strings.TrimSuffix(csv, "\n"), "\n") {
		if _, bad := want[i+1]; !bad {
			clean = append(clean, l)
		}
	}
	body := strings.Join(clean, "\n") + "\n"
	rep, err = s.ImportPupilsCSV(ctx, "thcs-a", strings.NewReader(body), true)
	if err != nil || rep.Applied || countPupils(t, s) != 0 {
		t.Fatalf("dry run: %v %+v, pupils %d", err, rep, countPupils(t, s))
	}
	rep, err = s.ImportPupilsCSV(ctx, "thcs-a", strings.NewReader(body), false)
	if err != nil || !rep.Applied || rep.Created != 2 || rep.Updated != 0 {
		t.Fatalf("clean import: %v %+v", err, rep)
	}
	gs, err := s.Guardians(ctx, "001234567890")
	if err != nil || len(gs) != 1 || gs[0].Phone != "+84901234567" || gs[0].FullName != "Nguyễn Thị Bình" {
		t.Fatalf("guardian: %v %+v", err, gs)
	}
	rep, err = s.ImportPupilsCSV(ctx, "thcs-a", strings.NewReader(body), false)
	if err != nil || rep.Created != 0 || rep.Updated != 2 {
		t.Fatalf("re-import: %v %+v", err, rep)
	}
	if gs, _ := s.Guardians(ctx, "001234567890"); len(gs) != 1 {
		t.Fatalf("re-import duplicated the guardian: %+v", gs)
	}
}

func TestImportRefusesBrokenFiles(t *testing.T) {
	s := newStore(t)
	for name, body := range map[string]string{
		"empty":          "",
		"no rows":        "personal_id,full_name\n",
		"missing column": "personal_id,class\n001234567890,6A\n",
		"unknown column": "personal_id,full_name,shoe_size\n001234567890,An,42\n",
		"bare quote":     "personal_id,full_name\n001234567890,An \"x\" y\n",
	} {
		rep, err := s.ImportPupilsCSV(context.Background(), "thcs-a", strings.NewReader(body), false)
		if api.CodeOf(err) != api.CodeInvalid || len(rep.Errors) == 0 {
			t.Errorf("%s: want row errors, got %v %+v", name, err, rep)
		}
	}
	if countPupils(t, s) != 0 {
		t.Fatal("something was imported")
	}
}

func TestExportIsFormulaSafeAndRoundTrips(t *testing.T) {
	for in, want := range map[string]string{"=1+1": "'=1+1", "+8490": "'+8490", "-2": "'-2", "@SUM": "'@SUM", "An": "An", "": ""} {
		if got := SafeCell(in); got != want {
			t.Errorf("SafeCell(%q) = %q, want %q", in, got, want)
		}
	}
	s := newStore(t)
	ctx := context.Background()
	in := "personal_id,full_name,class,guardian_name,guardian_phone\n001234567890,Nguyễn Văn An,6A,Mẹ An,+84901234567\n"
	if _, err := s.ImportPupilsCSV(ctx, "thcs-a", strings.NewReader(in), false); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := s.ExportPupilsCSV(ctx, "thcs-a", &out); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), ",'+84901234567,") {
		t.Fatalf("phone not neutralised: %s", out.String())
	}
	rep, err := s.ImportPupilsCSV(ctx, "thcs-a", &out, false)
	if err != nil || rep.Updated != 1 {
		t.Fatalf("round trip: %v %+v", err, rep)
	}
	if gs, _ := s.Guardians(ctx, "001234567890"); len(gs) != 1 || gs[0].Phone != "+84901234567" {
		t.Fatalf("guardian after round trip: %+v", gs)
	}
}

type client struct {
	t    *testing.T
	base string
}

func (c client) do(method, path string, body any, wantStatus int, out any) {
	c.t.Helper()
	var r io.Reader
	if s, ok := body.(string); ok {
		r = strings.NewReader(s)
	} else if body != nil {
		b, _ := json.Marshal(body)
		r = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, c.base+"/api/v1"+path, r)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != wantStatus {
		c.t.Fatalf("%s %s: status %d, want %d: %s", method, path, resp.StatusCode, wantStatus, b)
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			c.t.Fatalf("%s %s: %v: %s", method, path, err, b)
		}
	}
}

func TestRosterCRUDOverHTTP(t *testing.T) {
	s := New(openDB(t), nil, time.Now)
	s.BcryptCost = bcrypt.MinCost
	var changes atomic.Int32
	s.Subscribe(func(_ context.Context, school string) {
		if school == "thcs-a" {
			changes.Add(1)
		}
	})
	srv := api.NewServer(nil, nil, nil)
	s.Routes(srv.V1)
	ts := httptest.NewServer(srv.Engine)
	defer ts.Close()
	c := client{t, ts.URL}

	c.do("POST", "/schools", School{ID: "thcs-a", Name: "THCS A"}, 201, nil)
	c.do("POST", "/schools", School{ID: "thcs-a", Name: "again"}, 409, nil)
	var eb api.Body
	c.do("POST", "/schools", School{ID: "Bad ID", Name: "x"}, 400, &eb)
	if eb.Error != api.CodeInvalid || eb.Field != "id" {
		t.Fatalf("error body: %+v", eb)
	}
	c.do("POST", "/schools", `{"id":"x","name":"y","extra":1}`, 400, nil)
	c.do("POST", "/schools/thcs-a/staff", map[string]any{"id": "gv-lan", "full_name": "Cô Lan", "role": "teacher"}, 201, nil)
	c.do("POST", "/schools/thcs-a/classes", map[string]any{"id": "6a", "name": "6A", "grade": 6, "homeroom_teacher_id": "gv-lan", "start_time": "07:15"}, 201, nil)
	c.do("POST", "/schools/thcs-a/classes", Class{ID: "6b", Name: "6B", Grade: 6, StartTime: "25:00"}, 400, nil)
	var cl Class
	c.do("GET", "/classes/6a", nil, 200, &cl)
	if cl.StartTime != "07:15" || cl.AbsentCutoff != "09:00" || cl.LateAfterMin != 15 || !cl.Active {
		t.Fatalf("class: %+v", cl)
	}
	c.do("PATCH", "/classes/6a", map[string]any{"late_after_min": 10}, 200, &cl)
	if cl.LateAfterMin != 10 || cl.StartTime != "07:15" {
		t.Fatalf("patched class: %+v", cl)
	}

	c.do("POST", "/schools/thcs-a/pupils", map[string]any{"id": "001234567890", "full_name": "Nguyễn Văn An", "class_id": "6a"}, 201, nil)
	c.do("POST", "/schools/thcs-a/pupils", Pupil{ID: "12345", FullName: "Short"}, 400, &eb)
	if eb.Field != "id" || !strings.Contains(eb.Message, "12-digit") {
		t.Fatalf("personal ID error: %+v", eb)
	}
	c.do("POST", "/schools/thcs-a/pupils", Pupil{ID: "001234567891", FullName: "X", ClassID: "nope"}, 400, nil)
	c.do("POST", "/schools/nope/pupils", Pupil{ID: "001234567891", FullName: "X"}, 404, nil)
	var ps []Pupil
	c.do("GET", "/schools/thcs-a/pupils?class_id=6a", nil, 200, &ps)
	if len(ps) != 1 || ps[0].FullName != "Nguyễn Văn An" || !ps[0].Active {
		t.Fatalf("pupils: %+v", ps)
	}
	var g Guardian
	c.do("POST", "/pupils/001234567890/guardians", Guardian{FullName: "Mẹ An", Phone: "0901234567", Relation: "mother"}, 201, &g)
	c.do("PATCH", "/guardians/"+itoa(g.ID), map[string]any{"email": "me.an@example.vn"}, 200, &g)
	if g.Email != "me.an@example.vn" || g.Phone != "0901234567" {
		t.Fatalf("guardian: %+v", g)
	}
	var gs []Guardian
	c.do("GET", "/pupils/001234567890/guardians", nil, 200, &gs)
	if len(gs) != 1 {
		t.Fatalf("guardians: %+v", gs)
	}

	// Deactivating a pupil changes the gallery: subscribers are told.
	var p Pupil
	c.do("PATCH", "/pupils/001234567890", map[string]any{"active": false}, 200, &p)
	if p.Active || p.FullName != "Nguyễn Văn An" || p.ClassID != "6a" {
		t.Fatalf("patched pupil: %+v", p)
	}
	if changes.Load() != 1 {
		t.Fatalf("gallery change notifications: %d", changes.Load())
	}

	// Gate credentials: returned once, stored only as a bcrypt hash.
	var cred GateCredentials
	c.do("POST", "/schools/thcs-a/gates", map[string]any{"id": "cong-chinh", "name": "Cổng chính"}, 201, &cred)
	if cred.Username != "cong-chinh" || len(cred.Password) < 20 || cred.Gate.Direction != "in" {
		t.Fatalf("credentials: %+v", cred)
	}
	var hash string
	if err := s.db.R.QueryRow(`SELECT password_hash FROM gates WHERE id = 'cong-chinh'`).Scan(&hash); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(hash, cred.Password) || bcrypt.CompareHashAndPassword([]byte(hash), []byte(cred.Password)) != nil {
		t.Fatal("stored hash does not verify the returned password")
	}
	var gate Gate
	c.do("GET", "/gates/cong-chinh", nil, 200, &gate)
	if gate.Online {
		t.Fatal("a gate never seen is online")
	}
	b, _ := json.Marshal(gate)
	if strings.Contains(string(b), "password") {
		t.Fatalf("gate JSON leaks the password: %s", b)
	}
	var rot GateCredentials
	c.do("POST", "/gates/cong-chinh/credentials", nil, 200, &rot)
	if rot.Password == cred.Password {
		t.Fatal("rotation kept the password")
	}
	var gates []Gate
	c.do("GET", "/schools/thcs-a/gates", nil, 200, &gates)
	if len(gates) != 1 {
		t.Fatalf("gates: %+v", gates)
	}

	// CSV over HTTP: a bad file is a 400 whose details list the rows.
	var bad api.Body
	c.do("POST", "/schools/thcs-a/pupils/import", "personal_id,full_name\n1,x\n", 400, &bad)
	if !strings.Contains(mustJSON(bad.Details), `"line":2`) {
		t.Fatalf("import error details: %+v", bad)
	}
	var rep ImportReport
	c.do("POST", "/schools/thcs-a/pupils/import", "personal_id,full_name,class\n001234567899,Lê Bình,6A\n", 200, &rep)
	if rep.Created != 1 || !rep.Applied {
		t.Fatalf("import: %+v", rep)
	}

	// Delete: class with pupils refuses (409), pupil then class works.
	c.do("DELETE", "/classes/6a", nil, 409, nil)
	c.do("DELETE", "/pupils/001234567890", nil, 204, nil)
	c.do("DELETE", "/pupils/001234567899", nil, 204, nil)
	c.do("GET", "/pupils/001234567890", nil, 404, nil)
	c.do("DELETE", "/guardians/"+itoa(g.ID), nil, 404, nil) // cascaded
	c.do("DELETE", "/classes/6a", nil, 204, nil)
	c.do("DELETE", "/staff/gv-lan", nil, 204, nil)
	c.do("DELETE", "/gates/cong-chinh", nil, 204, nil)
	c.do("DELETE", "/schools/thcs-a", nil, 204, nil)
	var schools []School
	c.do("GET", "/schools", nil, 200, &schools)
	if len(schools) != 0 {
		t.Fatalf("schools: %+v", schools)
	}
}

func TestLocalOnlyRefusesRemoteCallers(t *testing.T) {
	s := newStore(t)
	srv := api.NewServer(nil, nil, nil)
	s.Routes(srv.V1)
	for addr, want := range map[string]int{"127.0.0.1:5000": 200, "[::1]:5000": 200, "192.168.1.20:5000": 403} {
		req := httptest.NewRequest("GET", "/api/v1/schools", nil)
		req.RemoteAddr = addr
		rec := httptest.NewRecorder()
		srv.Engine.ServeHTTP(rec, req)
		if rec.Code != want {
			t.Errorf("%s: status %d, want %d", addr, rec.Code, want)
		}
	}
}

func itoa(n int64) string { b, _ := json.Marshal(n); return string(b) }

func mustJSON(v any) string { b, _ := json.Marshal(v); return string(b) }

func TestGateLiveStatus(t *testing.T) {
	now := time.Date(2026, 9, 7, 7, 0, 0, 0, time.UTC)
	s := newStore(t)
	s.now = func() time.Time { return now }
	ctx := context.Background()
	if _, err := s.CreateGate(ctx, Gate{ID: "cong-chinh", SchoolID: "thcs-a"}); err != nil {
		t.Fatal(err)
	}
	hb := `{"schema":1,"gate_id":"cong-chinh","at":1,"fps":12.5,"dropped_frames":3,"outbox_depth":7,"gallery_version":4,"unknown_tracks":2,"uptime_s":60,"camera_online":true}`
	for _, c := range []struct {
		name     string
		online   int
		seenAgo  time.Duration
		want     bool
		wantSkew int64
	}{
		{"heartbeat just now", 1, 5 * time.Second, true, -1500},
		{"silent for 3 minutes", 1, 3 * time.Minute, false, -1500},
		{"last will: offline", 0, time.Second, false, -1500},
	} {
		if _, err := s.db.W.Exec(`UPDATE gates SET online = ?, last_seen_at = ?, last_heartbeat = ?, clock_skew_ms = -1500 WHERE id = 'cong-chinh'`,
			c.online, now.Add(-c.seenAgo).UnixMilli(), hb); err != nil {
			t.Fatal(err)
		}
		g, err := s.Gate(ctx, "cong-chinh")
		if err != nil {
			t.Fatal(err)
		}
		if g.Online != c.want || g.OutboxDepth != 7 || g.ClockSkewMS != c.wantSkew || g.LastHeartbeat == nil || g.LastHeartbeat.FPS != 12.5 {
			t.Errorf("%s: %+v", c.name, g)
		}
	}
}
