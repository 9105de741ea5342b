package enrol

import (
	"context"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/diemdanh/diemdanh/models/faceengine"
	"github.com/diemdanh/diemdanh/models/imagecheck"
	"gocv.io/x/gocv"
)

// pngPhoto decodes a real test photo and re-encodes it as PNG.
func pngPhoto(t *testing.T, name string) []byte {
	t.Helper()
	m, _, err := faceengine.DecodeMat(readPhotoT(t, name), imagecheck.Limits{MaxSide: 1200})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	buf, err := gocv.IMEncode(gocv.PNGFileExt, m)
	if err != nil {
		t.Fatal(err)
	}
	defer buf.Close()
	return append([]byte(nil), buf.GetBytes()...)
}

func checkTruncated(t *testing.T, v Verdict) {
	t.Helper()
	if v.Status != StatusRejected || len(v.Reasons) != 1 || v.Reasons[0].Code != ReasonTruncated ||
		!strings.Contains(v.Reasons[0].EN, "truncated") || v.Reasons[0].VI == "" || v.TemplateID != 0 {
		t.Errorf("%s: %s %v (template %d); want rejected %q with plain words", v.File, v.Status, v.Reasons, v.TemplateID, ReasonTruncated)
	}
}

// TestSecurityTruncatedPhotoNeverEnrolled: a real photo cut short — its
// first third, or without its last 2 bytes (the JPEG's end-of-image
// marker; the PNG's IEND CRC), or a PNG without IEND — becomes no
// template through any way in: the service (the admin web page calls
// it), the REST upload and the bulk command. Each is refused with the
// reason "truncated" in English and Vietnamese. The whole files enrol.
func TestSecurityTruncatedPhotoNeverEnrolled(t *testing.T) {
	h := newHTTP(t)
	ctx := context.Background()
	jpg := readPhotoT(t, "bona.jpg")
	png := pngPhoto(t, "bona3.jpg")
	cut := func(b []byte, n int) []byte { return append([]byte(nil), b[:n]...) }
	bad := []Photo{
		{Name: "bona-third.jpg", Data: cut(jpg, len(jpg)/3)},
		{Name: "bona-no-eoi.jpg", Data: cut(jpg, len(jpg)-2)},
		{Name: "bona3-third.png", Data: cut(png, len(png)/3)},
		{Name: "bona3-no-iend.png", Data: cut(png, len(png)-12)},
		{Name: "bona3-short-crc.png", Data: cut(png, len(png)-2)},
	}
	templates := func() int { return h.count(t, `SELECT count(*) FROM face_templates`) }

	for _, p := range bad {
		t.Run("service/"+p.Name, func(t *testing.T) {
			res, err := h.svc.EnrolPhotos(ctx, "admin:test", pupilA, []Photo{p})
			if err != nil {
				t.Fatal(err)
			}
			if res.Rejected != 1 || len(res.Photos) != 1 {
				t.Fatalf("accepted %d, review %d, rejected %d: %s %v", res.Accepted, res.Review, res.Rejected, res.Photos[0].Status, codes(res.Photos[0]))
			}
			checkTruncated(t, res.Photos[0])
		})
	}
	if n := templates(); n != 0 {
		t.Fatalf("%d templates from truncated photos", n)
	}

	t.Run("REST upload", func(t *testing.T) {
		var parts []part
		for _, p := range bad {
			parts = append(parts, part{p.Name, p.Data})
		}
		st, body := h.upload(t, "admin1", "admin-password-1", pupilA, parts)
		if st != http.StatusOK {
			t.Fatalf("status %d: %s", st, body)
		}
		var res Result
		if err := json.Unmarshal(body, &res); err != nil || len(res.Photos) != len(bad) {
			t.Fatalf("%v: %s", err, body)
		}
		for _, v := range res.Photos {
			checkTruncated(t, v)
		}
	})

	t.Run("bulk", func(t *testing.T) {
		dir := t.TempDir()
		for i, p := range bad {
			ext := filepath.Ext(p.Name)
			if err := os.WriteFile(filepath.Join(dir, pupilB+"_"+string(rune('1'+i))+ext), p.Data, 0o600); err != nil {
				t.Fatal(err)
			}
		}
		rows, err := ParseRoster(strings.NewReader("personal_id\n" + pupilB + "\n"))
		if err != nil {
			t.Fatal(err)
		}
		b := &Bulk{Svc: h.svc, Dir: dir, RunKey: "truncated", Actor: "admin:test", Workers: 1}
		reps, err := b.Run(ctx, rows)
		if err != nil {
			t.Fatal(err)
		}
		r := reps[0]
		if r.Status != "rejected" || r.Rejected != len(bad) || len(r.Reasons) != len(bad) || len(r.LyDo) != len(bad) {
			t.Fatalf("bulk report %+v", r)
		}
		for _, why := range r.Reasons {
			if !strings.Contains(why, "truncated") {
				t.Errorf("bulk reason %q", why)
			}
		}
	})
	if n := templates(); n != 0 {
		t.Fatalf("%d templates from truncated photos", n)
	}

	// The same photos whole are enrolled.
	res, err := h.svc.EnrolPhotos(ctx, "admin:test", pupilA, []Photo{{Name: "bona.jpg", Data: jpg}, {Name: "bona3.png", Data: png}})
	if err != nil {
		t.Fatal(err)
	}
	if res.Accepted != 2 {
		for _, v := range res.Photos {
			t.Errorf("whole %s: %s %v", v.File, v.Status, codes(v))
		}
	}
}
