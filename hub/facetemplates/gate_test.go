package facetemplates

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/diemdanh/diemdanh/hub/api"
	"github.com/diemdanh/diemdanh/hub/store"
	"github.com/diemdanh/diemdanh/models/conf"
	"github.com/diemdanh/diemdanh/models/faceengine"
	"github.com/diemdanh/diemdanh/models/match"
)

const (
	pupilA = "000000000001"
	pupilB = "000000000002"
	pupilC = "000000000003"
)

// clock is a settable test clock.
type clock struct{ t time.Time }

func (c *clock) now() time.Time          { return c.t }
func (c *clock) advance(d time.Duration) { c.t = c.t.Add(d) }

// gateFixture is a real SQLite database with school s1 and pupils A, B, C
// (seed) and the template store on a settable clock.
type gateFixture struct {
	db    *store.DB
	s     *Store
	clk   *clock
	r     *rand.Rand
	notes []int64 // versions subscribers were told
}

func newGateFixture(t *testing.T) *gateFixture {
	t.Helper()
	db := openDB(t, filepath.Join(t.TempDir(), "hub.db"))
	t.Cleanup(func() { db.Close() })
	seed(t, db)
	f := &gateFixture{db: db, clk: &clock{t: time.Date(2026, 3, 2, 7, 0, 0, 0, time.UTC)}, r: rand.New(rand.NewPCG(11, 12))}
	s, err := Open(db, testKey(4), nil, f.clk.now)
	if err != nil {
		t.Fatal(err)
	}
	s.Subscribe(func(_ string, v int64) { f.notes = append(f.notes, v) })
	f.s = s
	return f
}

// consent records a consent for pupil as hub/consent stores it.
type consentRow struct {
	pupil                   string
	gate, photos, own, face bool
	withdrawn               bool
	dob                     string // pupils.date_of_birth
}

func (f *gateFixture) consent(t *testing.T, c consentRow) {
	t.Helper()
	var withdrawn any
	if c.withdrawn {
		withdrawn = f.clk.t.UnixMilli()
	}
	f.exec(t, `INSERT INTO consents(pupil_id, guardian_name, pupil_consented, scope_face, scope_photos, scope_gate_templates,
		document_ref, given_at, recorded_by, withdrawn_at) VALUES (?, 'Mẹ', ?, ?, ?, ?, 'DK-1', ?, 'admin:test', ?)`,
		c.pupil, c.own, c.face, c.photos, c.gate, f.clk.t.UnixMilli(), withdrawn)
	f.exec(t, `UPDATE pupils SET date_of_birth = ? WHERE id = ?`, c.dob, c.pupil)
}

func (f *gateFixture) exec(t *testing.T, q string, args ...any) {
	t.Helper()
	if _, err := f.db.W.Exec(q, args...); err != nil {
		t.Fatal(err)
	}
}

func (f *gateFixture) count(t *testing.T, q string, args ...any) int {
	t.Helper()
	var n int
	if err := f.db.R.QueryRow(q, args...).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func (f *gateFixture) add(pupil, source, event string, jpeg []byte) (int64, error) {
	return f.s.AddGateTemplate(context.Background(), pupil, randDesc(f.r), match.Quality{SizePx: 90}, jpeg, source, event, "teacher:lan")
}

func (f *gateFixture) version(t *testing.T) int64 {
	t.Helper()
	v, err := f.s.Version(context.Background(), "s1")
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// TestAddGateTemplateNeedsTheScope: a gate template is stored only while
// the consent in force allows gate templates (and, from age 7 or with an
// unknown date of birth, has the pupil's own consent); every refusal is a
// typed error the API answers 412, and stores nothing.
func TestAddGateTemplateNeedsTheScope(t *testing.T) {
	cases := []struct {
		name    string
		consent *consentRow
		source  string
		event   string
		pause   bool
		want    func(error) bool
	}{
		{"no consent", nil, SourceTeacher, "ev-1", false, isScope(false)},
		{"consent without the scope", &consentRow{face: true, own: true, photos: true}, SourceTeacher, "ev-1", false, isScope(false)},
		{"scope withdrawn", &consentRow{face: true, own: true, gate: true, withdrawn: true}, SourceTeacher, "ev-1", false, isScope(false)},
		{"scope without face attendance", &consentRow{own: true, gate: true}, SourceTeacher, "ev-1", false, isScope(false)},
		{"7 or older without own consent", &consentRow{face: true, gate: true, dob: "2018-01-15"}, SourceTeacher, "ev-1", false, isScope(true)},
		{"unknown birth date without own consent", &consentRow{face: true, gate: true}, SourceTeacher, "ev-1", false, isScope(true)},
		{"automatic while paused", &consentRow{face: true, gate: true, own: true}, SourceAutomatic, "ev-1", true, isPaused},
		{"enrolment is not a gate source", &consentRow{face: true, gate: true, own: true}, SourceEnrolment, "ev-1", false, isInvalid},
		{"no event", &consentRow{face: true, gate: true, own: true}, SourceTeacher, "", false, isInvalid},
		{"under 7, guardian only", &consentRow{face: true, gate: true, dob: "2021-06-01"}, SourceTeacher, "ev-1", false, nil},
		{"scope and own consent", &consentRow{face: true, gate: true, own: true}, SourceTeacher, "ev-1", false, nil},
		{"automatic, not paused", &consentRow{face: true, gate: true, own: true}, SourceAutomatic, "ev-1", false, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := newGateFixture(t)
			if tc.consent != nil {
				c := *tc.consent
				c.pupil = pupilA
				f.consent(t, c)
			}
			if tc.pause {
				f.exec(t, `INSERT INTO events(event_id, school_id, gate_id, direction, student_id, captured_at, received_at, distance, margin, frames_used, model)
					VALUES ('ev-0', 's1', 'g1', 'in', ?, 0, 0, 0.3, 0.1, 3, 'm@1')`, pupilA)
				if _, err := f.s.RemoveFromEvent(context.Background(), "ev-0", "teacher:lan"); err != nil {
					t.Fatal(err)
				}
			}
			v := f.version(t)
			id, err := f.add(pupilA, tc.source, tc.event, nil)
			if tc.want == nil {
				if err != nil || id == 0 {
					t.Fatalf("refused: %v", err)
				}
				if f.version(t) <= v || len(f.notes) == 0 {
					t.Fatalf("gallery version %d -> %d, notified %v", v, f.version(t), f.notes)
				}
				if n := f.count(t, `SELECT count(*) FROM audit_log WHERE action = ? AND subject = ? AND actor = 'teacher:lan'`, ActionGateTemplate, "pupil:"+pupilA); n != 1 {
					t.Fatalf("%d audit entries", n)
				}
				return
			}
			if !tc.want(err) {
				t.Fatalf("got %v (%T)", err, err)
			}
			if n := f.count(t, `SELECT count(*) FROM face_templates`); n != 0 || f.version(t) != v {
				t.Fatalf("refused, yet %d templates stored, version %d -> %d", n, v, f.version(t))
			}
		})
	}
}

func isScope(own bool) func(error) bool {
	return func(err error) bool {
		var se *ScopeError
		return errors.As(err, &se) && se.OwnConsent == own && se.PupilID == pupilA && api.CodeOf(err) == api.CodePrecondition
	}
}

func isPaused(err error) bool {
	var pe *PausedError
	return errors.As(err, &pe) && api.CodeOf(err) == api.CodePrecondition && pe.Until.After(time.Date(2026, 3, 2, 7, 0, 0, 0, time.UTC))
}

func isInvalid(err error) bool { return api.CodeOf(err) == api.CodeInvalid }

// TestGateTemplateCapPerSource: a pupil keeps the newest MaxPerSource
// templates of each source; adding the ninth teacher template deletes the
// oldest teacher one and nothing else (automatic and enrolment templates,
// other pupils). The same event twice is one template.
func TestGateTemplateCapPerSource(t *testing.T) {
	f := newGateFixture(t)
	ctx := context.Background()
	for _, p := range []string{pupilA, pupilB} {
		f.consent(t, consentRow{pupil: p, face: true, gate: true, own: true})
	}
	if _, err := f.s.Add(ctx, pupilA, randDesc(f.r), match.DefaultEmbedder, match.Quality{}, nil); err != nil {
		t.Fatal(err)
	}
	add := func(p, src, ev string) int64 {
		t.Helper()
		f.clk.advance(time.Minute)
		id, err := f.add(p, src, ev, nil)
		if err != nil {
			t.Fatal(err)
		}
		return id
	}
	for i := 1; i <= 3; i++ {
		add(pupilA, SourceAutomatic, fmt.Sprintf("auto-%d", i))
	}
	add(pupilB, SourceTeacher, "b-1")
	for i := 1; i <= 11; i++ {
		add(pupilA, SourceTeacher, fmt.Sprintf("t-%02d", i))
	}
	again := add(pupilA, SourceTeacher, "t-11")
	events := func(p, src string) []string {
		t.Helper()
		l, err := f.s.List(ctx, p)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, in := range l {
			if in.Source == src {
				out = append(out, in.EventID)
			}
		}
		return out
	}
	want := []string{"t-04", "t-05", "t-06", "t-07", "t-08", "t-09", "t-10", "t-11"}
	if got := events(pupilA, SourceTeacher); !slices.Equal(got, want) {
		t.Fatalf("teacher templates kept %v, want the 8 newest %v", got, want)
	}
	if got := events(pupilA, SourceAutomatic); len(got) != 3 {
		t.Fatalf("automatic templates %v", got)
	}
	if got := events(pupilA, SourceEnrolment); len(got) != 1 {
		t.Fatalf("enrolment templates %v", got)
	}
	if got := events(pupilB, SourceTeacher); !slices.Equal(got, []string{"b-1"}) {
		t.Fatalf("other pupil's templates %v", got)
	}
	if l, _ := f.s.List(ctx, pupilA); l[len(l)-1].ID != again {
		t.Fatalf("the same event again gave template %d, not the existing one", again)
	}
	var capped int
	if err := f.db.R.QueryRow(`SELECT count(*) FROM audit_log WHERE action = ? AND json_extract(detail, '$.older_deleted') = 1`,
		ActionGateTemplate).Scan(&capped); err != nil || capped != 3 {
		t.Fatalf("%d audit entries record a deleted older template (%v), want 3", capped, err)
	}
}

// TestGateTemplateExpiry: an expired gate template leaves the served
// gallery at once, and PurgeExpired deletes it (bumping the version,
// audited per school); enrolment templates and unexpired gate templates
// stay.
func TestGateTemplateExpiry(t *testing.T) {
	f := newGateFixture(t)
	ctx := context.Background()
	if err := f.s.SetGateConfig(GateConfig{Expiry: 30 * 24 * time.Hour}); err != nil {
		t.Fatal(err)
	}
	f.consent(t, consentRow{pupil: pupilA, face: true, gate: true, own: true})
	if _, err := f.s.Add(ctx, pupilA, randDesc(f.r), match.DefaultEmbedder, match.Quality{}, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := f.add(pupilA, SourceTeacher, "old", nil); err != nil {
		t.Fatal(err)
	}
	f.clk.advance(20 * 24 * time.Hour)
	if _, err := f.add(pupilA, SourceAutomatic, "recent", nil); err != nil {
		t.Fatal(err)
	}
	served := func() int {
		_, m, err := f.s.ActiveDescriptors(ctx, "s1")
		if err != nil {
			t.Fatal(err)
		}
		return len(m[pupilA])
	}
	if n := served(); n != 3 {
		t.Fatalf("%d served before expiry", n)
	}
	f.clk.advance(11 * 24 * time.Hour) // "old" is 31 days old
	if n := served(); n != 2 {
		t.Fatalf("%d served after the first expiry, want 2", n)
	}
	v := f.version(t)
	n, err := f.s.PurgeExpired(ctx)
	if err != nil || n != 1 {
		t.Fatalf("purged %d (%v), want 1", n, err)
	}
	if f.version(t) <= v || f.notes[len(f.notes)-1] != f.version(t) {
		t.Fatalf("purge: version %d -> %d, notified %v", v, f.version(t), f.notes)
	}
	if n, err := f.s.PurgeExpired(ctx); err != nil || n != 0 {
		t.Fatalf("second purge %d (%v)", n, err)
	}
	if n := f.count(t, `SELECT count(*) FROM face_templates WHERE event_id = 'old'`); n != 0 {
		t.Fatal("expired template still stored")
	}
	if n := f.count(t, `SELECT count(*) FROM audit_log WHERE action = ? AND subject = 'school:s1' AND actor = 'system'`, ActionGateTemplatePurge); n != 1 {
		t.Fatalf("%d purge audit entries", n)
	}
	f.clk.advance(365 * 24 * time.Hour)
	if n, err := f.s.PurgeExpired(ctx); err != nil || n != 1 || served() != 1 {
		t.Fatalf("a year on: purged %d (%v), %d served (the enrolment template)", n, err, served())
	}
}

// TestGalleryServesGateTemplates: a teacher's template joins the pupil's
// served descriptors (the version bumps, subscribers hear it), listed
// with its source and event; its capture is kept only where the consent
// keeps photos; when a pupil has more than the document carries, the
// enrolment templates and the newest gate templates are served.
func TestGalleryServesGateTemplates(t *testing.T) {
	f := newGateFixture(t)
	ctx := context.Background()
	f.consent(t, consentRow{pupil: pupilA, face: true, gate: true, own: true, photos: true})
	f.consent(t, consentRow{pupil: pupilB, face: true, gate: true, own: true})
	enrolA := randDesc(f.r)
	if _, err := f.s.Add(ctx, pupilA, enrolA, match.DefaultEmbedder, match.Quality{}, nil); err != nil {
		t.Fatal(err)
	}
	v := f.version(t)
	gateA := randDesc(f.r)
	if _, err := f.s.AddGateTemplate(ctx, pupilA, gateA, match.Quality{SizePx: 80}, []byte("\xff\xd8crop"), SourceTeacher, "ev-a", "teacher:lan"); err != nil {
		t.Fatal(err)
	}
	if _, err := f.add(pupilB, SourceTeacher, "ev-b", []byte("\xff\xd8crop")); err != nil {
		t.Fatal(err)
	}
	doc, err := f.s.Gallery(ctx, "s1")
	if err != nil {
		t.Fatal(err)
	}
	if doc.Version <= v || doc.Version != f.notes[len(f.notes)-1] {
		t.Fatalf("gallery v%d after v%d, notified %v", doc.Version, v, f.notes)
	}
	_, m, _ := f.s.ActiveDescriptors(ctx, "s1")
	if len(m[pupilA]) != 2 || match.Distance(m[pupilA][0], enrolA) != 0 || match.Distance(m[pupilA][1], gateA) != 0 || len(m[pupilB]) != 1 {
		t.Fatalf("served %d + %d descriptors", len(m[pupilA]), len(m[pupilB]))
	}
	for _, c := range []struct {
		pupil string
		photo bool
	}{{pupilA, true}, {pupilB, false}} {
		l, _ := f.s.List(ctx, c.pupil)
		g := l[len(l)-1]
		if g.Source != SourceTeacher || g.EventID == "" || g.ExpiresAt != f.clk.t.Add(120*24*time.Hour).UnixMilli() || g.HasPhoto != c.photo ||
			g.Model != match.DefaultEmbedder.String() {
			t.Fatalf("pupil %s: %+v", c.pupil, g)
		}
	}
	// More than a document carries (32): 30 enrolment, 3 teacher.
	for i := 0; i < 29; i++ {
		if _, err := f.s.Add(ctx, pupilA, randDesc(f.r), match.DefaultEmbedder, match.Quality{}, nil); err != nil {
			t.Fatal(err)
		}
	}
	var newest match.Descriptor
	for i := 0; i < 2; i++ {
		f.clk.advance(time.Minute)
		newest = randDesc(f.r)
		if _, err := f.s.AddGateTemplate(ctx, pupilA, newest, match.Quality{}, nil, SourceTeacher, fmt.Sprintf("late-%d", i), "teacher:lan"); err != nil {
			t.Fatal(err)
		}
	}
	_, m, _ = f.s.ActiveDescriptors(ctx, "s1")
	if ds := m[pupilA]; len(ds) != 32 || match.Distance(ds[0], enrolA) != 0 || match.Distance(ds[30], newest) != 0 {
		t.Fatalf("%d served for pupil A; the first must be enrolment, the 31st the newest gate template", len(ds))
	}
}

// TestRemoveFromEventRemovesAndPauses: "not this pupil" on an event
// deletes the gate templates added from it (not others, not enrolment),
// bumps the gallery, pauses automatic templates of the pupil the event
// named for the configured period (teacher templates stay allowed), and
// is audited; a later pause never shortens a running one.
func TestRemoveFromEventRemovesAndPauses(t *testing.T) {
	f := newGateFixture(t)
	ctx := context.Background()
	if err := f.s.SetGateConfig(GateConfig{AutomaticPause: 7 * 24 * time.Hour}); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{pupilA, pupilB} {
		f.consent(t, consentRow{pupil: p, face: true, gate: true, own: true})
	}
	f.exec(t, `INSERT INTO events(event_id, school_id, gate_id, direction, student_id, captured_at, received_at, distance, margin, frames_used, model)
		VALUES ('ev-1', 's1', 'g1', 'in', ?, 0, 0, 0.3, 0.1, 3, 'm@1'), ('ev-2', 's1', 'g1', 'in', ?, 0, 0, 0.3, 0.1, 3, 'm@1')`, pupilA, pupilA)
	if _, err := f.s.Add(ctx, pupilA, randDesc(f.r), match.DefaultEmbedder, match.Quality{}, nil); err != nil {
		t.Fatal(err)
	}
	for _, ev := range []struct{ pupil, src, id string }{{pupilA, SourceAutomatic, "ev-1"}, {pupilA, SourceTeacher, "ev-2"}, {pupilB, SourceTeacher, "cap-9"}} {
		if _, err := f.add(ev.pupil, ev.src, ev.id, nil); err != nil {
			t.Fatal(err)
		}
	}
	if ok, err := f.s.AutomaticAllowed(ctx, pupilA, f.clk.t); err != nil || !ok {
		t.Fatalf("automatic before the mark: %v %v", ok, err)
	}
	v := f.version(t)
	res, err := f.s.RemoveFromEvent(ctx, "ev-1", "teacher:lan")
	if err != nil || res.Removed != 1 || !slices.Equal(res.Paused, []string{pupilA}) {
		t.Fatalf("remove: %+v %v", res, err)
	}
	if f.version(t) <= v || f.notes[len(f.notes)-1] != f.version(t) {
		t.Fatalf("version %d -> %d, notified %v", v, f.version(t), f.notes)
	}
	if n := f.count(t, `SELECT count(*) FROM face_templates WHERE pupil_id = ?`, pupilA); n != 2 {
		t.Fatalf("pupil A has %d templates, want enrolment and ev-2", n)
	}
	cases := []struct {
		name  string
		after time.Duration
		want  bool
	}{{"at once", 0, false}, {"a day on", 24 * time.Hour, false}, {"after the pause", 7*24*time.Hour + time.Second, true}}
	for _, c := range cases {
		ok, err := f.s.AutomaticAllowed(ctx, pupilA, f.clk.t.Add(c.after))
		if err != nil || ok != c.want {
			t.Errorf("%s: automatic allowed %v (%v), want %v", c.name, ok, err, c.want)
		}
	}
	if _, err := f.add(pupilA, SourceAutomatic, "ev-3", nil); !isPaused(err) {
		t.Fatalf("automatic template during the pause: %v", err)
	}
	if _, err := f.add(pupilA, SourceTeacher, "ev-4", nil); err != nil {
		t.Fatalf("a teacher's template during the pause: %v", err)
	}
	if ok, _ := f.s.AutomaticAllowed(ctx, pupilB, f.clk.t); !ok {
		t.Fatal("another pupil paused")
	}
	// A template-less event pauses without a version bump; a shorter
	// pause leaves the longer one.
	v = f.version(t)
	if err := f.s.SetGateConfig(GateConfig{AutomaticPause: time.Hour}); err != nil {
		t.Fatal(err)
	}
	if res, err := f.s.RemoveFromEvent(ctx, "ev-1", "teacher:lan"); err != nil || res.Removed != 0 || f.version(t) != v {
		t.Fatalf("second mark: %+v %v, version %d -> %d", res, err, v, f.version(t))
	}
	if ok, _ := f.s.AutomaticAllowed(ctx, pupilA, f.clk.t.Add(2*time.Hour)); ok {
		t.Fatal("a shorter pause shortened the running one")
	}
	if n := f.count(t, `SELECT count(*) FROM audit_log WHERE action = ? AND subject = ?`, ActionGateTemplateRemove, "pupil:"+pupilA); n != 2 {
		t.Fatalf("%d audit entries", n)
	}
	if _, err := f.s.RemoveFromEvent(ctx, "no-such-event", "teacher:lan"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("unknown event: %v", err)
	}
}

// TestGateConfigValidate names the bad field.
func TestGateConfigValidate(t *testing.T) {
	cases := []struct {
		name  string
		c     GateConfig
		field string
	}{
		{"zero takes defaults", GateConfig{}, ""},
		{"defaults", DefaultGateConfig(), ""},
		{"cap too big", GateConfig{MaxPerSource: 17}, "templates.gate.max_per_source"},
		{"negative cap", GateConfig{MaxPerSource: -1}, "templates.gate.max_per_source"},
		{"expiry too short", GateConfig{Expiry: time.Hour}, "templates.gate.expiry"},
		{"negative pause", GateConfig{AutomaticPause: -time.Hour}, "templates.gate.automatic_pause"},
		{"purge too often", GateConfig{PurgeInterval: time.Second}, "templates.gate.purge_interval"},
	}
	for _, c := range cases {
		err := Config{KeyFile: "k", Gate: c.c}.Validate("templates")
		if c.field == "" {
			if err != nil {
				t.Errorf("%s: %v", c.name, err)
			}
			continue
		}
		var fe *conf.FieldError
		if !errors.As(err, &fe) || fe.Field != c.field {
			t.Errorf("%s: %v, want the field %s", c.name, err, c.field)
		}
	}
	s := newGateFixture(t).s
	if err := s.SetGateConfig(GateConfig{MaxPerSource: 99}); err == nil {
		t.Fatal("SetGateConfig took a bad config")
	}
	if got := s.GateConfig(); got != DefaultGateConfig() {
		t.Fatalf("config after a refused set %+v", got)
	}
}

// TestReembedGateTemplates: on a model change a gate template whose
// capture was kept is re-embedded (same source, event, time and expiry;
// the old one goes), one without a capture is deleted, and neither flags
// the pupil for re-enrolment; enrolment templates are re-embedded as
// before.
func TestReembedGateTemplates(t *testing.T) {
	ctx := context.Background()
	dir, err := conf.TestDataDir()
	if err != nil {
		t.Fatal(err)
	}
	jpg, err := os.ReadFile(filepath.Join(dir, "faces", "images", "jimin4.jpg"))
	if err != nil {
		t.Fatal(err)
	}
	cfg := faceengine.DefaultEngineConfig()
	cfg.ModelsDir = conf.TestModelsDir()
	cfg.Workers = 1
	eng, err := faceengine.NewEngine(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer eng.Close()
	f := newGateFixture(t)
	old := match.ModelID{Name: "old-embedder", Version: "0"}
	f.s.SetModel(old)
	f.consent(t, consentRow{pupil: pupilA, face: true, gate: true, own: true, photos: true})
	f.consent(t, consentRow{pupil: pupilB, face: true, gate: true, own: true})
	if _, err := f.s.Add(ctx, pupilA, randDesc(f.r), old, match.Quality{}, jpg); err != nil {
		t.Fatal(err)
	}
	kept, err := f.add(pupilA, SourceTeacher, "ev-kept", jpg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.add(pupilB, SourceAutomatic, "ev-no-capture", jpg); err != nil { // B's consent keeps no photos
		t.Fatal(err)
	}
	before, _ := f.s.Get(ctx, kept)
	f.clk.advance(time.Hour)
	rep, err := f.s.Reembed(ctx, eng)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Reembedded != 2 || rep.GateDeleted != 1 || len(rep.Flagged) != 0 {
		t.Fatalf("report %+v", rep)
	}
	if n := f.count(t, `SELECT count(*) FROM pupils WHERE needs_reenrol = 1`); n != 0 {
		t.Fatalf("%d pupils flagged for re-enrolment by gate templates", n)
	}
	cases := []struct {
		pupil, source string
		want          int // templates of the new model
		old           int // templates of the old model left
	}{
		{pupilA, SourceEnrolment, 1, 1},
		{pupilA, SourceTeacher, 1, 0},
		{pupilB, SourceAutomatic, 0, 0},
	}
	for _, c := range cases {
		l, _ := f.s.List(ctx, c.pupil)
		var now, prev []Info
		for _, in := range l {
			switch {
			case in.Source != c.source:
			case in.Model == eng.Model().String():
				now = append(now, in)
			default:
				prev = append(prev, in)
			}
		}
		if len(now) != c.want || len(prev) != c.old {
			t.Fatalf("%s %s: %d new-model, %d old-model templates", c.pupil, c.source, len(now), len(prev))
		}
		if c.source == SourceTeacher {
			g := now[0]
			if g.EventID != before.EventID || g.ExpiresAt != before.ExpiresAt || g.CreatedAt != before.CreatedAt || !g.HasPhoto || g.Status != StatusActive {
				t.Fatalf("re-embedded gate template %+v, was %+v", g, before)
			}
		}
	}
	_, m, err := f.s.ActiveDescriptors(ctx, "s1")
	if err != nil || len(m[pupilA]) != 2 || len(m[pupilB]) != 0 {
		t.Fatalf("served after re-embedding: %d, %d (%v)", len(m[pupilA]), len(m[pupilB]), err)
	}
	if rep, err := f.s.Reembed(ctx, eng); err != nil || rep.Reembedded != 0 || rep.GateDeleted != 0 {
		t.Fatalf("second run %+v %v", rep, err)
	}
}
