package enrol

import (
	"bytes"
	"compress/zlib"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"hash/crc32"
	"io"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/diemdanh/diemdanh/hub/api"
	"github.com/diemdanh/diemdanh/hub/auth"
)

type httpFx struct {
	*fixture
	url  string
	auth *auth.Service
}

func newHTTP(t *testing.T) *httpFx {
	t.Helper()
	f := newFixture(t)
	cfg := auth.DefaultConfig()
	cfg.BcryptCost = 4
	as, err := auth.New(f.db, f.al, cfg, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	srv := api.NewServer(nil, nil, as)
	srv.Engine.Use(as.Middleware())
	srv.V1.Use(as.Middleware())
	as.Routes(srv.V1)
	f.reg.Routes(srv.V1)
	f.svc.Routes(srv.V1)
	ts := httptest.NewServer(srv.Engine)
	t.Cleanup(ts.Close)
	ctx := context.Background()
	if _, err := f.db.W.Exec(`INSERT INTO staff(id, school_id, full_name, role) VALUES ('t1', 's1', 'Cô Lan', 'teacher')`); err != nil {
		t.Fatal(err)
	}
	if _, _, err := as.CreateAccount(ctx, "test", auth.NewAccount{Username: "admin1", Password: "admin-password-1", Role: auth.RoleAdmin}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := as.CreateAccount(ctx, "test", auth.NewAccount{Username: "lan", Password: "teacher-password-1", Role: auth.RoleTeacher, SchoolID: "s1", StaffID: "t1"}); err != nil {
		t.Fatal(err)
	}
	return &httpFx{fixture: f, url: ts.URL, auth: as}
}

type part struct {
	name string
	data []byte
}

func (h *httpFx) upload(t *testing.T, user, pass, pupil string, parts []part) (int, []byte) {
	t.Helper()
	var body bytes.Buffer
	w := multipart.NewWriter(&body)
	for _, p := range parts {
		hdr := make(map[string][]string)
		// Raw file name, not escaped: a hostile client sends what it likes.
		hdr["Content-Disposition"] = []string{`form-data; name="photos"; filename="` + p.name + `"`}
		hdr["Content-Type"] = []string{"image/jpeg"}
		pw, err := w.CreatePart(hdr)
		if err != nil {
			t.Fatal(err)
		}
		pw.Write(p.data)
	}
	w.Close()
	req, _ := http.NewRequest("POST", h.url+"/api/v1/pupils/"+pupil+"/enrolment", &body)
	req.Header.Set("Content-Type", w.FormDataContentType())
	if user != "" {
		req.SetBasicAuth(user, pass)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// bombPNG is a 64-byte PNG whose header claims 60000×60000 pixels.
func bombPNG() []byte {
	var b bytes.Buffer
	b.Write([]byte("\x89PNG\r\n\x1a\n"))
	chunk := func(typ string, data []byte) {
		binary.Write(&b, binary.BigEndian, uint32(len(data)))
		b.WriteString(typ)
		b.Write(data)
		c := crc32.NewIEEE()
		c.Write([]byte(typ))
		c.Write(data)
		binary.Write(&b, binary.BigEndian, c.Sum32())
	}
	ihdr := make([]byte, 13)
	binary.BigEndian.PutUint32(ihdr[0:], 60000)
	binary.BigEndian.PutUint32(ihdr[4:], 60000)
	ihdr[8], ihdr[9] = 8, 2 // 8-bit RGB
	chunk("IHDR", ihdr)
	var z bytes.Buffer
	zw := zlib.NewWriter(&z)
	zw.Write(make([]byte, 1024))
	zw.Close()
	chunk("IDAT", z.Bytes())
	chunk("IEND", nil)
	return b.Bytes()
}

func TestBadUploadsClearErrorNothingStored(t *testing.T) {
	h := newHTTP(t)
	good := readPhotoT(t, "bona.jpg")
	huge := make([]byte, 50<<20)
	copy(huge, good) // a real JPEG start, 50 MB long
	status, body := h.upload(t, "admin1", "admin-password-1", pupilA, []part{
		{"notes.jpg", []byte("this is not an image, just text")},
		{"huge.jpg", huge},
		{"bomb.png", bombPNG()},
		{"../../../etc/cron.d/evil.jpg", good},
		{"empty.jpg", nil},
	})
	if status != http.StatusOK {
		t.Fatalf("status %d: %s", status, body)
	}
	var res Result
	if err := json.Unmarshal(body, &res); err != nil {
		t.Fatal(err)
	}
	want := []string{"unreadable", ReasonTooLarge, ReasonTooManyPx, ReasonBadName, "unreadable"}
	if len(res.Photos) != len(want) {
		t.Fatalf("verdicts %d: %s", len(res.Photos), body)
	}
	for i, w := range want {
		v := res.Photos[i]
		if v.Status != StatusRejected || len(v.Reasons) == 0 || v.Reasons[0].Code != w || v.Reasons[0].VI == "" || v.Reasons[0].EN == "" {
			t.Errorf("photo %d (%s): %s %v, want rejected %s with plain words", i, v.File, v.Status, codes(v), w)
		}
		if strings.Contains(v.File, "/") {
			t.Errorf("file name echoed with a path: %q", v.File)
		}
	}
	if n := h.count(t, `SELECT count(*) FROM face_templates`); n != 0 {
		t.Fatalf("%d templates stored from bad uploads", n)
	}
	// Structural errors: too many photos, not multipart, no consent.
	many := make([]part, 11)
	for i := range many {
		many[i] = part{"p.jpg", []byte("x")}
	}
	if st, b := h.upload(t, "admin1", "admin-password-1", pupilA, many); st != http.StatusBadRequest || !strings.Contains(string(b), "photos") {
		t.Fatalf("11 photos: %d %s", st, b)
	}
	if st, b := h.upload(t, "admin1", "admin-password-1", pupilC, []part{{"a.jpg", good}}); st != http.StatusPreconditionFailed || !strings.Contains(string(b), "consent") {
		t.Fatalf("no consent: %d %s", st, b)
	}
	req, _ := http.NewRequest("POST", h.url+"/api/v1/pupils/"+pupilA+"/enrolment", strings.NewReader(`{"photos":[]}`))
	req.SetBasicAuth("admin1", "admin-password-1")
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("JSON body: %d", resp.StatusCode)
	}
	// Roles: a teacher and an anonymous caller are refused before any work.
	if st, _ := h.upload(t, "lan", "teacher-password-1", pupilA, []part{{"a.jpg", good}}); st != http.StatusForbidden {
		t.Fatalf("teacher enrolment: %d", st)
	}
	if st, _ := h.upload(t, "", "", pupilA, []part{{"a.jpg", good}}); st != http.StatusUnauthorized {
		t.Fatalf("anonymous enrolment: %d", st)
	}
	if n := h.count(t, `SELECT count(*) FROM face_templates`); n != 0 {
		t.Fatalf("%d templates stored", n)
	}
	// And a good photo through the same route works, with the crop.
	st, b := h.upload(t, "admin1", "admin-password-1", pupilA, []part{{"ảnh đẹp.jpg", good}})
	if st != http.StatusOK {
		t.Fatalf("good upload: %d %s", st, b)
	}
	if err := json.Unmarshal(b, &res); err != nil || res.Accepted != 1 || len(res.Photos[0].CropJPEG) == 0 || res.Photos[0].File != "ảnh đẹp.jpg" {
		t.Fatalf("good upload result %+v %v", res.Photos, err)
	}
}

func (h *httpFx) call(t *testing.T, user, pass, method, path, body string) (int, []byte, http.Header) {
	t.Helper()
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	req, _ := http.NewRequest(method, h.url+path, r)
	req.SetBasicAuth(user, pass)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b, resp.Header
}

// TestReviewPhotoViewFeedbackOverHTTP: the admin approves a template held by
// the duplicate guard, views a stored photo (audited), a teacher marks a
// recognition in their class "not this pupil", and the web page's adapter
// goes through the same path.
func TestReviewPhotoViewFeedbackOverHTTP(t *testing.T) {
	h := newHTTP(t)
	ctx := context.Background()
	if _, err := h.db.W.Exec(`UPDATE classes SET homeroom_teacher_id = 't1' WHERE id = 'c1'`); err != nil {
		t.Fatal(err)
	}
	const admin, apw = "admin1", "admin-password-1"
	st, b := h.upload(t, admin, apw, pupilA, []part{{"a.jpg", readPhotoT(t, "jimin7.jpg")}})
	var ra Result
	if st != 200 || json.Unmarshal(b, &ra) != nil || ra.Accepted != 1 {
		t.Fatalf("enrol A: %d %s", st, b)
	}
	// The web page's adapter: same path, same verdicts.
	vs, err := WebEnroller{S: h.svc}.EnrolPhotos(ctx, pupilB, []string{"b.jpg"}, [][]byte{readPhotoT(t, "jimin6.jpg")}, "admin:admin1", "127.0.0.1")
	if err != nil || len(vs) != 1 || vs[0].Status != StatusReview || len(vs[0].Reasons) == 0 || !strings.Contains(vs[0].Reasons[0], " / ") {
		t.Fatalf("web adapter: %+v %v", vs, err)
	}
	st, b, _ = h.call(t, admin, apw, "GET", "/api/v1/enrolment/review", "")
	var rv struct {
		Templates []struct {
			ID      int64  `json:"id"`
			PupilID string `json:"pupil_id"`
		} `json:"templates"`
	}
	if st != 200 || json.Unmarshal(b, &rv) != nil || len(rv.Templates) != 1 || rv.Templates[0].PupilID != pupilB {
		t.Fatalf("review list: %d %s", st, b)
	}
	tid := rv.Templates[0].ID
	// A teacher may not approve.
	if st, _, _ := h.call(t, "lan", "teacher-password-1", "POST", fmt.Sprintf("/api/v1/templates/%d/status", tid), `{"status":"active"}`); st != http.StatusForbidden {
		t.Fatalf("teacher approval: %d", st)
	}
	if st, b, _ := h.call(t, admin, apw, "POST", fmt.Sprintf("/api/v1/templates/%d/status", tid), `{"status":"active","note":"anh em sinh đôi, đã kiểm tra"}`); st != 200 {
		t.Fatalf("approve: %d %s", st, b)
	}
	_, m, _ := h.tpl.ActiveDescriptors(ctx, "s1")
	if len(m[pupilB]) != 1 {
		t.Fatal("approved template not in the gallery")
	}
	// Photos: A's consent keeps photos (viewable, audited); B's does not.
	st, b, hdr := h.call(t, admin, apw, "GET", fmt.Sprintf("/api/v1/templates/%d/photo", ra.Photos[0].TemplateID), "")
	if st != 200 || hdr.Get("Content-Type") != "image/jpeg" || hdr.Get("Cache-Control") != "no-store" || len(b) < 1000 {
		t.Fatalf("photo view: %d %v", st, hdr)
	}
	if st, _, _ := h.call(t, admin, apw, "GET", fmt.Sprintf("/api/v1/templates/%d/photo", tid), ""); st != http.StatusNotFound {
		t.Fatalf("photo kept without consent: %d", st)
	}
	if st, _, _ := h.call(t, "lan", "teacher-password-1", "GET", fmt.Sprintf("/api/v1/templates/%d/photo", ra.Photos[0].TemplateID), ""); st != http.StatusForbidden {
		t.Fatalf("teacher photo view: %d", st)
	}
	if n := h.count(t, `SELECT count(*) FROM audit_log WHERE action = 'photo_view' AND actor = 'admin:admin1'`); n != 1 {
		t.Fatalf("photo views audited: %d", n)
	}
	// Feedback from the teacher of the class.
	if _, err := h.db.W.Exec(`INSERT INTO events(event_id, school_id, gate_id, direction, student_id, captured_at, received_at, distance, margin, frames_used, model)
		VALUES ('ev-9', 's1', 'g1', 'in', ?, 1, 1, 0.3, 0.1, 3, 'dlib-resnet-v1@1')`, pupilA); err != nil {
		t.Fatal(err)
	}
	if st, b, _ := h.call(t, "lan", "teacher-password-1", "POST", "/api/v1/events/ev-9/not-this-pupil", `{"reason":"không phải em An"}`); st != 200 || !strings.Contains(string(b), FeedbackRecorded) {
		t.Fatalf("teacher feedback: %d %s", st, b)
	}
	st, b, _ = h.call(t, admin, apw, "GET", "/api/v1/feedback", "")
	if st != 200 || !strings.Contains(string(b), "ev-9") || !strings.Contains(string(b), "teacher:lan") {
		t.Fatalf("admin feedback list: %d %s", st, b)
	}
}
