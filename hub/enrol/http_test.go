package enrol

import (
	"bytes"
	"compress/zlib"
	"context"
	"encoding/binary"
	"encoding/json"
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
