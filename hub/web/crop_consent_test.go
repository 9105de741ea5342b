package web

import (
	"bytes"
	"context"
	"image"
	"image/jpeg"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/diemdanh/diemdanh/hub/audit"
	"github.com/diemdanh/diemdanh/hub/consent"
	"github.com/diemdanh/diemdanh/hub/facetemplates"
	"github.com/diemdanh/diemdanh/models/conf"
)

// realFaceCrop is a gate-sized crop of a real test photo
// ($ATTENDANCE_TESTDATA/faces; the test fails when it is missing).
func realFaceCrop(t *testing.T) []byte {
	t.Helper()
	dir, err := conf.TestDataDir()
	must(t, err)
	b, err := os.ReadFile(filepath.Join(dir, "faces", "images", "tzuyu.jpg"))
	must(t, err)
	img, err := jpeg.Decode(bytes.NewReader(b))
	must(t, err)
	r := img.Bounds()
	sub := img.(interface {
		SubImage(image.Rectangle) image.Image
	}).SubImage(image.Rect(r.Dx()/2-80, r.Dy()/3-80, r.Dx()/2+80, r.Dy()/3+80))
	var out bytes.Buffer
	must(t, jpeg.Encode(&out, sub, &jpeg.Options{Quality: 80}))
	return out.Bytes()
}

// TestSecurityCropServedOnlyWhileConsentAllowsSnapshots: the teacher's
// crop page serves a gate face crop only while the pupil's consent in
// force allows snapshots, checked at each request (not an hour later by
// the retention job, which never runs here), and tells the browser not to
// keep it. A scope change through the consent registry deletes the crop;
// a consent changed outside it (a restored backup, a manual fix) leaves
// the crop in the database, and the page still refuses it.
func TestSecurityCropServedOnlyWhileConsentAllowsSnapshots(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	tpl, err := facetemplates.Open(f.db, bytes.Repeat([]byte{3}, facetemplates.KeySize), nil, nil)
	must(t, err)
	reg := consent.New(f.db, tpl, audit.New(f.db, nil, nil), nil, nil)
	grant := func(pupil string, snapshots bool) {
		t.Helper()
		_, err := reg.Record(ctx, "admin:test", consent.Grant{PupilID: pupil, GuardianName: "Mẹ", PupilConsented: true,
			ScopeFace: true, ScopeSnapshots: snapshots, DocumentRef: "DK-" + pupil})
		must(t, err)
	}
	crop := realFaceCrop(t)
	lan := f.client(t)
	lan.login("lan") // homeroom teacher of c1
	get := func(event string) (int, string, []byte) {
		t.Helper()
		req, _ := http.NewRequest("GET", f.ts.URL+"/teacher/crop/"+event, nil)
		resp, err := lan.hc.Do(req)
		must(t, err)
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, resp.Header.Get("Cache-Control"), b
	}
	stored := func(event string) bool {
		t.Helper()
		var n int
		must(t, f.db.R.QueryRow(`SELECT count(*) FROM events WHERE event_id = ? AND face_jpeg IS NOT NULL`, event).Scan(&n))
		return n == 1
	}

	cases := []struct {
		name, pupil string
		change      func(pupil string)
		deleted     bool // the change itself deletes the stored crop
	}{
		{"unchanged consent (control)", pupilBinh, func(string) {}, false},
		{"new consent without snapshots", pupilAn, func(p string) { grant(p, false) }, true},
		{"withdrawal through the registry", pupilScript, func(p string) {
			_, err := reg.Withdraw(ctx, "admin:test", p, "gia đình rút lại")
			must(t, err)
		}, true},
		{"snapshot scope cleared outside the registry", pupilFormula, func(p string) {
			_, err := f.db.W.Exec(`UPDATE consents SET scope_snapshots = 0 WHERE pupil_id = ?`, p)
			must(t, err)
		}, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			grant(c.pupil, true)
			ev := event(c.pupil, "in", time.Now().Add(-time.Minute))
			ev.FaceJPEG = crop
			f.ingestDirect(t, ev)
			st, cc, body := get(ev.EventID)
			if st != http.StatusOK || !bytes.Equal(body, crop) {
				t.Fatalf("crop under a consent with snapshots: %d, %d bytes", st, len(body))
			}
			if cc != "private, no-store" {
				t.Errorf("Cache-Control %q: a browser would keep showing the crop after a withdrawal", cc)
			}

			c.change(c.pupil)

			if got := stored(ev.EventID); got == c.deleted {
				t.Errorf("crop still stored: %v, want %v", got, !c.deleted)
			}
			st, _, body = get(ev.EventID)
			if c.name == cases[0].name {
				if st != http.StatusOK || !bytes.Equal(body, crop) {
					t.Fatalf("control: %d", st)
				}
				return
			}
			if st != http.StatusNotFound || bytes.Equal(body, crop) {
				t.Fatalf("crop served after the consent stopped allowing it: %d, %d bytes", st, len(body))
			}
		})
	}
	var n int
	must(t, f.db.R.QueryRow(`SELECT count(*) FROM audit_log WHERE action = ?`, audit.ActionRetention).Scan(&n))
	if n != 0 {
		t.Fatalf("the retention job ran %d times", n)
	}
}
