package app

import (
	"bytes"
	"encoding/json"
	"image"
	"image/jpeg"
	"io"
	"math"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/diemdanh/diemdanh/hub/consent"
	"github.com/diemdanh/diemdanh/models/match"
	"github.com/diemdanh/diemdanh/models/wire"
)

var metaCSRF = regexp.MustCompile(`name="csrf-token" content="([^"]*)"`)

// TestConfirmedFaceReachesTheGatesGallery runs the wired hub: a face the
// gate did not decide is on the class board; the school's admin presses
// "this is An" there; An's day is present and the gate's gallery,
// downloaded with the gate's credentials, now holds the capture's
// descriptor for An under a new version.
func TestConfirmedFaceReachesTheGatesGallery(t *testing.T) {
	const gatePass, pupil = "cong-chinh-mat-khau", "079123456789"
	hash, err := bcrypt.GenerateFromPassword([]byte(gatePass), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	a, ctx, pw := startWiredHub(t,
		`INSERT INTO classes(id, school_id, name, grade) VALUES ('c1', 's1', '1A', 1)`,
		`INSERT INTO gates(id, school_id, name, direction, username, password_hash) VALUES ('g1', 's1', 'Cổng chính', 'in', 'g1', '`+string(hash)+`')`,
		`INSERT INTO pupils(id, school_id, class_id, full_name) VALUES ('`+pupil+`', 's1', 'c1', 'Nguyễn Văn An')`)
	yes := true
	if _, err := a.Mods.Consent.Record(ctx, "admin:quantri", consent.Grant{PupilID: pupil, GuardianName: "Nguyễn Thị Hoa",
		PupilConsented: true, ScopeFace: true, ScopePhotos: true, ScopeGateTemplates: &yes, DocumentRef: "DK-1"}); err != nil {
		t.Fatal(err)
	}
	desc := make(match.Descriptor, match.DescriptorLen)
	for i := range desc {
		desc[i] = float32(math.Cos(float64(i))) / 8
	}
	var jb bytes.Buffer
	if err := jpeg.Encode(&jb, image.NewGray(image.Rect(0, 0, 48, 48)), nil); err != nil {
		t.Fatal(err)
	}
	u := &wire.Unrecognised{Schema: wire.SchemaVersion, CaptureID: wire.NewEventID(), SchoolID: "s1", GateID: "g1",
		Direction: wire.DirectionIn, Kind: wire.KindUnrecognised, CapturedAt: time.Now().UnixMilli(), FaceJPEG: jb.Bytes(),
		Quality: match.Quality{SizePx: 80, Sharpness: 90, Brightness: 110}, FramesDescribed: 3,
		Candidates: []wire.Candidate{{StudentID: pupil, Distance: 1.1, Margin: 10}}, Model: a.Mods.Templates.Model(),
		GalleryVer: 1, Descriptor: desc.Bytes()}
	if ok, err := a.Mods.FaceReview.Ingest(ctx, u); err != nil || !ok {
		t.Fatalf("ingest: %v, %v", ok, err)
	}
	before := gateGallery(t, a.BaseURL(), gatePass)

	jar, _ := cookiejar.New(nil)
	hc := &http.Client{Jar: jar, Timeout: 10 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	b, _ := json.Marshal(map[string]string{"username": "quantri", "password": pw})
	resp, err := hc.Post(a.BaseURL()+"/api/v1/auth/login", "application/json", bytes.NewReader(b))
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("login: %v %v", resp, err)
	}
	resp.Body.Close()
	page := getPage(t, hc, a.BaseURL()+"/teacher/class/c1")
	m := metaCSRF.FindStringSubmatch(page)
	var id int64
	if err := a.DB.R.QueryRow(`SELECT id FROM unrecognised_faces WHERE capture_id = ?`, u.CaptureID).Scan(&id); err != nil {
		t.Fatal(err)
	}
	if m == nil || !strings.Contains(page, `id="f-`+strconv.FormatInt(id, 10)+`"`) || !strings.Contains(page, "Đây là Nguyễn Văn An") {
		t.Fatal("the board does not show the face with its candidate")
	}
	resp, err = hc.PostForm(a.BaseURL()+"/teacher/class/c1/faces/"+strconv.FormatInt(id, 10)+"/confirm",
		url.Values{"csrf_token": {m[1]}, "pupil_id": {pupil}})
	if err != nil || resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("confirm: %v %v", resp, err)
	}
	resp.Body.Close()
	page = getPage(t, hc, a.BaseURL()+resp.Header.Get("Location"))
	for _, want := range []string{`data-status="present"`, "Đã điểm danh Nguyễn Văn An có mặt.", "Đã lưu ảnh làm mẫu khuôn mặt"} {
		if !strings.Contains(page, want) {
			t.Errorf("the board after the confirmation lacks %q", want)
		}
	}

	deadline := time.Now().Add(10 * time.Second)
	for {
		doc := gateGallery(t, a.BaseURL(), gatePass)
		if doc.Version > before.Version && galleryHolds(t, doc, pupil, desc) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the gate's gallery (version %d, before %d) does not hold the confirmed capture", doc.Version, before.Version)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func getPage(t *testing.T, hc *http.Client, u string) string {
	t.Helper()
	resp, err := hc.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: HTTP %d", u, resp.StatusCode)
	}
	return string(b)
}

// gateGallery downloads g1's gallery as the gate does.
func gateGallery(t *testing.T, base, pass string) *wire.GalleryDoc {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, base+"/api/v1/gates/g1/gallery", nil)
	req.SetBasicAuth("g1", pass)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("gallery: HTTP %d %s", resp.StatusCode, b)
	}
	var doc wire.GalleryDoc
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	return &doc
}

// galleryHolds reports whether doc serves d for pupil.
func galleryHolds(t *testing.T, doc *wire.GalleryDoc, pupil string, d match.Descriptor) bool {
	t.Helper()
	for _, p := range doc.People {
		if p.StudentID != pupil {
			continue
		}
		for _, s := range p.Descriptors {
			got, err := match.ParseDescriptorBase64(s)
			if err != nil {
				t.Fatal(err)
			}
			if slices.Equal(got, d) {
				return true
			}
		}
	}
	return false
}
