package enrol

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"image"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/diemdanh/diemdanh/hub/api"
	"github.com/diemdanh/diemdanh/hub/audit"
	"github.com/diemdanh/diemdanh/hub/consent"
	"github.com/diemdanh/diemdanh/hub/facetemplates"
	"github.com/diemdanh/diemdanh/hub/store"
	"github.com/diemdanh/diemdanh/models/conf"
	"github.com/diemdanh/diemdanh/models/faceengine"
	"github.com/diemdanh/diemdanh/models/imagecheck"
	"github.com/diemdanh/diemdanh/models/match"
	"gocv.io/x/gocv"
)

// TestMain doubles as the child process of the kill-and-resume test.
func TestMain(m *testing.M) {
	if os.Getenv("ENROL_TEST_CHILD") == "1" {
		var args []string
		_ = json.Unmarshal([]byte(os.Getenv("ENROL_TEST_ARGS")), &args)
		if err := EnrolMain(context.Background(), args, os.Stdout, os.Stderr); err != nil {
			fmt.Fprintln(os.Stderr, "child:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	code := m.Run()
	if sharedEng != nil {
		sharedEng.Close()
	}
	os.Exit(code)
}

var (
	engOnce   sync.Once
	sharedEng *faceengine.Engine
	engErr    error
)

func engine(t *testing.T) *faceengine.Engine {
	t.Helper()
	engOnce.Do(func() {
		cfg := faceengine.DefaultEngineConfig()
		cfg.ModelsDir = conf.TestModelsDir()
		cfg.Workers = 2
		sharedEng, engErr = faceengine.NewEngine(cfg, nil)
	})
	if engErr != nil {
		t.Fatalf("face engine (models needed; set MODELS_DIR): %v", engErr)
	}
	return sharedEng
}

func photoPath(t *testing.T, name string) string {
	t.Helper()
	dir, err := conf.TestDataDir()
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Join(dir, "faces", "images", name)
}

func readPhotoT(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(photoPath(t, name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

type fixture struct {
	db  *store.DB
	tpl *facetemplates.Store
	reg *consent.Registry
	al  *audit.Log
	svc *Service
	dir string
}

const (
	pupilA = "000000000001"
	pupilB = "000000000002"
	pupilC = "000000000003" // no consent
)

func newFixture(t *testing.T) *fixture {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	db, err := store.Open(ctx, filepath.Join(dir, "hub.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	for _, q := range []string{
		`INSERT INTO schools(id, name) VALUES ('s1', 'Trường 1')`,
		`INSERT INTO classes(id, school_id, name, grade) VALUES ('c1', 's1', '1A', 1)`,
		`INSERT INTO pupils(id, school_id, class_id, full_name, date_of_birth) VALUES
			('000000000001', 's1', 'c1', 'Nguyễn An', '2016-03-01'),
			('000000000002', 's1', 'c1', 'Trần Bình', '2020-05-01'),
			('000000000003', 's1', 'c1', 'Lê Chi', '2016-01-01')`,
	} {
		if _, err := db.W.Exec(q); err != nil {
			t.Fatal(err)
		}
	}
	key := bytes.Repeat([]byte{9}, facetemplates.KeySize)
	tpl, err := facetemplates.Open(db, key, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	al := audit.New(db, nil, nil)
	reg := consent.New(db, tpl, al, nil, nil)
	for _, g := range []consent.Grant{
		{PupilID: pupilA, GuardianName: "Nguyễn Mẹ", PupilConsented: true, ScopeFace: true, ScopePhotos: true, DocumentRef: "DK-001"},
		{PupilID: pupilB, GuardianName: "Trần Bố", ScopeFace: true, DocumentRef: "DK-002"}, // under 7: guardian alone
	} {
		if _, err := reg.Record(ctx, "admin:test", g); err != nil {
			t.Fatal(err)
		}
	}
	svc, err := New(db, engine(t), tpl, reg, al, DefaultConfig(), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	return &fixture{db: db, tpl: tpl, reg: reg, al: al, svc: svc, dir: dir}
}

func (f *fixture) count(t *testing.T, q string, args ...any) int {
	t.Helper()
	var n int
	if err := f.db.R.QueryRow(q, args...).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// transform decodes a test photo, applies fn and re-encodes it as JPEG.
func transform(t *testing.T, name string, fn func(in gocv.Mat, out *gocv.Mat)) []byte {
	t.Helper()
	m, _, err := faceengine.DecodeMat(readPhotoT(t, name), imagecheck.DefaultLimits())
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	out := gocv.NewMat()
	defer out.Close()
	fn(m, &out)
	b, err := faceengine.EncodeJPEG(out, 92)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func codes(v Verdict) []string {
	var out []string
	for _, r := range v.Reasons {
		out = append(out, r.Code)
	}
	return out
}

func TestQualityGatesOnRealPhotos(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	tiny := transform(t, "bona.jpg", func(in gocv.Mat, out *gocv.Mat) {
		gocv.Resize(in, out, image.Pt(0, 0), 0.25, 0.25, gocv.InterpolationArea)
	})
	blurred := transform(t, "bona.jpg", func(in gocv.Mat, out *gocv.Mat) {
		gocv.GaussianBlur(in, out, image.Pt(0, 0), 6, 6, gocv.BorderDefault)
	})
	res, err := f.svc.EnrolPhotos(ctx, "admin:test", pupilA, []Photo{
		{Name: "bona.jpg", Data: readPhotoT(t, "bona.jpg")},
		{Name: "pristin.jpg", Data: readPhotoT(t, "pristin.jpg")},
		{Name: "tiny.jpg", Data: tiny},
		{Name: "blurred.jpg", Data: blurred},
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []struct {
		status, code string
	}{
		{StatusAccepted, ""},
		{StatusRejected, match.ReasonManyFaces},
		{StatusRejected, match.ReasonTooSmall},
		{StatusRejected, match.ReasonBlurry},
	}
	for i, w := range want {
		v := res.Photos[i]
		if v.Status != w.status || (w.code != "" && !strings.Contains(strings.Join(codes(v), ","), w.code)) {
			t.Errorf("%s: got %s %v (faces %d, quality %+v), want %s %s", v.File, v.Status, codes(v), v.Faces, v.Quality, w.status, w.code)
		}
		for _, r := range v.Reasons {
			if r.VI == "" || r.EN == "" || r.VI == r.Code {
				t.Errorf("%s: reason %q lacks plain words", v.File, r.Code)
			}
		}
	}
	if res.Accepted != 1 || res.Rejected != 3 {
		t.Fatalf("counts %+v", res)
	}
	crop := res.Photos[0].CropJPEG
	if info, err := imagecheck.Sniff(crop, imagecheck.DefaultLimits()); err != nil || info.Format != "jpeg" || info.Width > 200 || info.Width < 50 {
		t.Fatalf("accepted crop: %+v %v", info, err)
	}
	if n := f.count(t, `SELECT count(*) FROM face_templates WHERE pupil_id = ?`, pupilA); n != 1 {
		t.Fatalf("%d templates stored, want 1", n)
	}
	// The consent allows photos: the photo is kept, encrypted, viewable.
	l, _ := f.tpl.List(ctx, pupilA)
	if !l[0].HasPhoto {
		t.Fatal("photo not kept although consent allows it")
	}
	if n := f.count(t, `SELECT count(*) FROM audit_log WHERE action IN ('enrol', 'enrol_rejected') AND subject = ?`, "pupil:"+pupilA); n != 2 {
		t.Fatalf("audit entries %d, want 2", n)
	}
	// The same file again does not make a second template.
	res, err = f.svc.EnrolPhotos(ctx, "admin:test", pupilA, []Photo{{Name: "again.jpg", Data: readPhotoT(t, "bona.jpg")}})
	if err != nil || res.Photos[0].TemplateID != l[0].ID {
		t.Fatalf("re-upload: %+v %v", res, err)
	}
	if n := f.count(t, `SELECT count(*) FROM face_templates WHERE pupil_id = ?`, pupilA); n != 1 {
		t.Fatalf("%d templates after re-upload, want 1", n)
	}
}

func TestDuplicateIdentityGuard(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	// jimin7/jimin6 are the same person (within the default embedder's
	// DuplicateMax; with dlib they measure ≈ 0.38).
	a, err := f.svc.EnrolPhotos(ctx, "admin:test", pupilA, []Photo{{Name: "a.jpg", Data: readPhotoT(t, "jimin7.jpg")}})
	if err != nil || a.Accepted != 1 {
		t.Fatalf("pupil A: %+v %v", a, err)
	}
	b, err := f.svc.EnrolPhotos(ctx, "admin:test", pupilB, []Photo{{Name: "b.jpg", Data: readPhotoT(t, "jimin6.jpg")}})
	if err != nil {
		t.Fatal(err)
	}
	v := b.Photos[0]
	if v.Status != StatusReview || v.Duplicate == nil || v.Duplicate.PupilID != pupilA || v.Duplicate.Distance >= f.svc.cfg.DuplicateMax {
		t.Fatalf("second photo of the same person under another pupil not flagged: %+v", v)
	}
	_, m, err := f.tpl.ActiveDescriptors(ctx, "s1")
	if err != nil {
		t.Fatal(err)
	}
	if len(m[pupilB]) != 0 || len(m[pupilA]) != 1 {
		t.Fatalf("a template under review reached the gallery: %v", m)
	}
	if rv, _ := f.tpl.ListReview(ctx, "s1"); len(rv) != 1 || !strings.Contains(rv[0].Note, "duplicate_of:"+pupilA) {
		t.Fatalf("review list %+v", rv)
	}
	// Consistency: the pupil's other template (even under review) counts;
	// bona is another person, farther than the profile's SameMax.
	cfg := f.svc.Config()
	c, err := f.svc.EnrolPhotos(ctx, "admin:test", pupilB, []Photo{{Name: "c.jpg", Data: readPhotoT(t, "bona.jpg")}})
	if err != nil {
		t.Fatal(err)
	}
	cv := c.Photos[0]
	if cv.OwnDistance <= cfg.ConsistencyMax || cv.Status != StatusRejected || codes(cv)[0] != ReasonInconsistent || cv.CropJPEG != nil {
		t.Fatalf("inconsistent photo: status %s %v own distance %.3f", cv.Status, codes(cv), cv.OwnDistance)
	}
}

func TestNoConsentNothingStored(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	_, err := f.svc.EnrolPhotos(ctx, "admin:test", pupilC, []Photo{{Name: "x.jpg", Data: readPhotoT(t, "bona.jpg")}})
	if !errors.Is(err, consent.ErrNoConsent) || api.CodeOf(err) != api.CodePrecondition {
		t.Fatalf("enrolment without consent: %v", err)
	}
	// Pupil C is 10: the guardian alone is not enough.
	_, err = f.reg.Record(ctx, "admin:test", consent.Grant{PupilID: pupilC, GuardianName: "Lê Mẹ", ScopeFace: true, DocumentRef: "DK-3"})
	if api.CodeOf(err) != api.CodeInvalid || !strings.Contains(err.Error(), "pupil_consented") {
		t.Fatalf("consent of a 10-year-old without their own: %v", err)
	}
	if n := f.count(t, `SELECT count(*) FROM face_templates`); n != 0 {
		t.Fatalf("%d templates stored without consent", n)
	}
	if n := f.count(t, `SELECT count(*) FROM audit_log WHERE action LIKE 'enrol%'`); n != 0 {
		t.Fatalf("enrolment audited although refused")
	}
}

func TestNegativeFeedbackChangesNextGallery(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	res, err := f.svc.EnrolPhotos(ctx, "admin:test", pupilA, []Photo{
		{Name: "1.jpg", Data: readPhotoT(t, "bona.jpg")}, {Name: "3.jpg", Data: readPhotoT(t, "bona3.jpg")}})
	if err != nil || res.Accepted != 2 {
		t.Fatalf("enrol: %+v %v", res, err)
	}
	before, err := f.tpl.Gallery(ctx, "s1")
	if err != nil {
		t.Fatal(err)
	}
	// A gate event that named pupil A, with bona3's face crop.
	cropB3 := res.Photos[1].CropJPEG
	if _, err := f.db.W.Exec(`INSERT INTO events(event_id, school_id, gate_id, direction, student_id, captured_at, received_at, distance, margin, frames_used, model, face_jpeg)
		VALUES ('ev-1', 's1', 'g1', 'in', ?, 1, 1, 0.3, 0.1, 3, 'dlib-resnet-v1@1', ?), ('ev-2', 's1', 'g1', 'in', ?, 2, 2, 0.3, 0.1, 3, 'dlib-resnet-v1@1', NULL)`,
		pupilA, cropB3, pupilA); err != nil {
		t.Fatal(err)
	}
	var told []string
	f.svc.OnFeedback(func(_ context.Context, ev, p string) { told = append(told, ev+"/"+p) })
	fb, err := f.svc.MarkNotThisPupil(ctx, "teacher:lan", "ev-1", "đây là em khác")
	if err != nil {
		t.Fatal(err)
	}
	if fb.Action != FeedbackExcluded || fb.TemplateID == nil || *fb.TemplateID != res.Photos[1].TemplateID {
		t.Fatalf("feedback %+v; want template %d excluded", fb, res.Photos[1].TemplateID)
	}
	after, err := f.tpl.Gallery(ctx, "s1")
	if err != nil {
		t.Fatal(err)
	}
	if after.Version <= before.Version || len(after.People) != 1 || len(after.People[0].Descriptors) != 1 || len(before.People[0].Descriptors) != 2 {
		t.Fatalf("gallery did not change: before v%d %+v, after v%d %+v", before.Version, before.People, after.Version, after.People)
	}
	if n := f.count(t, `SELECT rejected FROM events WHERE event_id = 'ev-1'`); n != 1 {
		t.Fatal("event not marked rejected")
	}
	if _, err := f.svc.MarkNotThisPupil(ctx, "teacher:lan", "ev-1", ""); api.CodeOf(err) != api.CodeConflict {
		t.Fatalf("second mark: %v", err)
	}
	// No crop (retention deleted it): recorded only, gallery unchanged.
	fb2, err := f.svc.MarkNotThisPupil(ctx, "teacher:lan", "ev-2", "")
	if err != nil || fb2.Action != FeedbackRecorded {
		t.Fatalf("no-crop feedback %+v %v", fb2, err)
	}
	if v, _ := f.tpl.Version(ctx, "s1"); v != after.Version {
		t.Fatalf("version moved without a change: %d -> %d", after.Version, v)
	}
	list, _ := f.svc.ListFeedback(ctx, 10)
	if len(list) != 2 || len(told) != 2 {
		t.Fatalf("admin list %d, listeners %v", len(list), told)
	}
	if n := f.count(t, `SELECT count(*) FROM audit_log WHERE action = 'not_this_pupil'`); n != 2 {
		t.Fatalf("audit %d", n)
	}
}

// The distance defaults come from the embedder's measured profile; an
// explicit value overrides; an unmeasured embedder needs explicit values.
func TestConfigDistancesFromProfile(t *testing.T) {
	def := DefaultConfig()
	if def.ConsistencyMax != 0 || def.DuplicateMax != 0 || def.FeedbackMatchMax != 0 || def.Embedder != match.DefaultEmbedder.Name {
		t.Fatalf("defaults %+v: distances must be 0 (from the profile), embedder the default", def)
	}
	if err := def.Validate("enrol"); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{match.DefaultEmbedder.Name, match.DlibResNetV1.Name, faceengine.FacepluginMFNV1.Model.Name} {
		m, _ := faceengine.EmbedderModel(name)
		p, ok := faceengine.ProfileOf(m)
		if !ok {
			t.Fatalf("%s: no profile", name)
		}
		got, err := def.ForModel("enrol", m)
		if err != nil || got.ConsistencyMax != p.SameMax || got.DuplicateMax != p.DuplicateMax || got.FeedbackMatchMax != p.FeedbackMatchMax {
			t.Errorf("%s: %+v %v, want profile %+v", name, got, err, p)
		}
		explicit := def
		explicit.DuplicateMax = p.DuplicateMax / 2
		if got, _ := explicit.ForModel("enrol", m); got.DuplicateMax != p.DuplicateMax/2 || got.ConsistencyMax != p.SameMax {
			t.Errorf("%s: explicit duplicate_max not kept: %+v", name, got)
		}
	}
	unmeasured := match.ModelID{Name: "unmeasured", Version: "1"}
	if _, err := def.ForModel("enrol", unmeasured); err == nil || !strings.Contains(err.Error(), "enrol.consistency_max") {
		t.Errorf("unmeasured embedder with profile defaults: %v", err)
	}
	bad := def
	bad.Embedder = "no-such-embedder"
	if err := bad.Validate("enrol"); err == nil || !strings.Contains(err.Error(), "enrol.embedder") {
		t.Errorf("unknown embedder: %v", err)
	}
	bad = def
	bad.DuplicateMax = -0.1
	if err := bad.Validate("enrol"); err == nil || !strings.Contains(err.Error(), "enrol.duplicate_max") {
		t.Errorf("negative duplicate_max: %v", err)
	}
	// The service resolves against its engine's model.
	f := newFixture(t)
	if c := f.svc.Config(); c.Embedder != engine(t).Model().Name || c.DuplicateMax == 0 || c.ConsistencyMax == 0 || c.FeedbackMatchMax == 0 {
		t.Errorf("service config %+v not resolved for %v", c, engine(t).Model())
	}
	if f.tpl.Model() != engine(t).Model() {
		t.Errorf("template store model %v, engine %v", f.tpl.Model(), engine(t).Model())
	}
}

// After a model version upgrade (same embedder name, another version) the
// hub re-embeds at start, once, and the audit log says so. Only the older
// version triggers it (templates of another embedder alone wait for an
// explicit re-embed); once triggered, Reembed rebuilds both.
func TestUpgradeTemplates(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	cur := f.tpl.Model()
	older := match.ModelID{Name: cur.Name, Version: "older"}
	other := match.ModelID{Name: "dlib-resnet-v1", Version: "1"}
	desc := make(match.Descriptor, match.DescriptorLen)
	desc[0] = 1
	if _, err := f.tpl.Add(ctx, pupilA, desc, older, match.Quality{}, readPhotoT(t, "bona.jpg")); err != nil {
		t.Fatal(err)
	}
	if _, err := f.tpl.Add(ctx, pupilB, desc, other, match.Quality{}, readPhotoT(t, "jimin.jpg")); err != nil {
		t.Fatal(err)
	}
	if n, err := f.tpl.OlderVersions(ctx); err != nil || n != 1 {
		t.Fatalf("older versions: %d, %v; want 1 (the other embedder's template does not count)", n, err)
	}
	f.tpl.SetModel(cur)
	rep, err := f.svc.UpgradeTemplates(ctx)
	if err != nil || rep == nil || rep.Reembedded != 2 {
		t.Fatalf("upgrade: %+v, %v", rep, err)
	}
	if n := f.count(t, `SELECT count(*) FROM face_templates WHERE pupil_id = ? AND model = ?`, pupilA, cur.String()); n != 1 {
		t.Fatalf("%d templates of %s for the upgraded pupil, want 1", n, cur)
	}
	if n := f.count(t, `SELECT count(*) FROM audit_log WHERE action = ? AND actor = 'system' AND detail LIKE '%model_upgrade%'`, audit.ActionTemplateStatus); n != 1 {
		t.Fatalf("%d audit entries for the upgrade, want 1", n)
	}
	if n, err := f.tpl.OlderVersions(ctx); err != nil || n != 0 {
		t.Fatalf("after the upgrade: %d older templates, %v", n, err)
	}
	if rep, err := f.svc.UpgradeTemplates(ctx); err != nil || rep != nil {
		t.Fatalf("second start: %+v, %v; want nothing to do", rep, err)
	}
}
