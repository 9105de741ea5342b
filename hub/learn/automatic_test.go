package learn_test

import (
	"context"
	"crypto/rand"
	"errors"
	"math"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/diemdanh/diemdanh/hub/audit"
	"github.com/diemdanh/diemdanh/hub/consent"
	"github.com/diemdanh/diemdanh/hub/facetemplates"
	"github.com/diemdanh/diemdanh/hub/ingest"
	"github.com/diemdanh/diemdanh/hub/ingest/ingesttest"
	"github.com/diemdanh/diemdanh/hub/learn"
	"github.com/diemdanh/diemdanh/hub/store"
	"github.com/diemdanh/diemdanh/models/conf"
	"github.com/diemdanh/diemdanh/models/faceengine"
	"github.com/diemdanh/diemdanh/models/match"
	"github.com/diemdanh/diemdanh/models/wire"
)

// autoFaces are real dlib descriptors (go-face's idols.json in the shared
// test data): two views of one person within the dlib drift guard (0.40)
// of each other, and two views of another person, near each other and
// beyond the guard from the first person's.
type autoFaces struct {
	enrol, genuine, genuine2 match.Descriptor // person A
	other, other2            match.Descriptor // person B
}

func loadAutoFaces(t *testing.T) autoFaces {
	t.Helper()
	dir, err := conf.TestDataDir()
	if err != nil {
		t.Fatal(err)
	}
	idols, err := match.LoadIdols(filepath.Join(dir, "faces", "idols.json"))
	if err != nil {
		t.Fatal(err)
	}
	ids, descs, err := idols.Labelled()
	if err != nil {
		t.Fatal(err)
	}
	by := map[string][]match.Descriptor{}
	var order []string
	for i, id := range ids {
		if by[id] == nil {
			order = append(order, id)
		}
		by[id] = append(by[id], descs[i])
	}
	var f autoFaces
	for _, id := range order {
		if d := by[id]; f.enrol == nil && len(d) >= 3 && match.Distance(d[0], d[1]) < 0.33 && match.Distance(d[0], d[2]) < 0.33 {
			f.enrol, f.genuine, f.genuine2 = d[0], d[1], d[2]
		}
	}
	for _, id := range order {
		d := by[id]
		if f.enrol != nil && f.other == nil && len(d) >= 2 && match.Distance(d[0], d[1]) < 0.33 &&
			match.Distance(d[0], f.enrol) > 0.5 && match.Distance(d[1], f.enrol) > 0.5 {
			f.other, f.other2 = d[0], d[1]
		}
	}
	if f.enrol == nil || f.other == nil {
		t.Fatal("idols.json: no person with three close views and another far from them")
	}
	return f
}

// autoFixture is a hub database (real SQLite) with school thcs-a, one gate
// and four pupils, dlib templates, the real consent registry and ingest
// with an Updater listening, on a settable clock: 07:30 in Ho Chi Minh
// City on Friday 20/11/2026.
type autoFixture struct {
	db      *store.DB
	tpl     *facetemplates.Store
	consent *consent.Registry
	in      *ingest.Ingester
	u       *learn.Updater
	reg     *prometheus.Registry
	gate    ingesttest.Gate
	pupils  []string
	faces   autoFaces

	mu  sync.Mutex
	now time.Time
}

func (f *autoFixture) clock() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.now
}

func (f *autoFixture) setClock(at time.Time) {
	f.mu.Lock()
	f.now = at
	f.mu.Unlock()
}

func newAutoFixture(t *testing.T, cfg learn.AutomaticConfig) *autoFixture {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	db, err := store.Open(ctx, filepath.Join(t.TempDir(), "hub.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	f := &autoFixture{db: db, now: time.Date(2026, 11, 20, 0, 30, 0, 0, time.UTC), faces: loadAutoFaces(t), reg: prometheus.NewRegistry()}
	gates, pupils, err := ingesttest.Seed(ctx, db, []string{"thcs-a"}, 1, 4)
	if err != nil {
		t.Fatal(err)
	}
	f.gate, f.pupils = gates[0], pupils["thcs-a"]
	key := make([]byte, facetemplates.KeySize)
	if _, err := rand.Read(key); err != nil {
		t.Fatal(err)
	}
	if f.tpl, err = facetemplates.Open(db, key, nil, f.clock); err != nil {
		t.Fatal(err)
	}
	f.tpl.SetModel(match.DlibResNetV1)
	f.consent = consent.New(db, f.tpl, audit.New(db, nil, f.clock), nil, f.clock)
	if f.u, err = learn.NewUpdater(cfg, learn.AutomaticDeps{DB: db, Templates: f.tpl, VoteCap: profileVoteCap, Registerer: f.reg,
		Now: f.clock}); err != nil {
		t.Fatal(err)
	}
	if f.in, err = ingest.New(db, ingest.Default(), nil, f.clock); err != nil {
		t.Fatal(err)
	}
	f.in.AddListener(f.u)
	f.in.Start(ctx)
	done := make(chan struct{})
	go func() { _ = f.u.Run(ctx); close(done) }()
	t.Cleanup(func() { f.in.Close(); cancel(); <-done })
	return f
}

// profileVoteCap is the measured vote cap of the model's embedder, as
// the app passes it (dlib: 0.40).
func profileVoteCap(m match.ModelID) (float64, bool) {
	p, ok := faceengine.ProfileOf(m)
	return p.VoteCap, ok
}

// grant records pupil's consent: face attendance, photos, and the
// gate-template scope as given; own is the pupil's own consent.
func (f *autoFixture) grant(t *testing.T, pupil string, gateTemplates, own bool) {
	t.Helper()
	_, err := f.consent.Record(context.Background(), "admin:root", consent.Grant{PupilID: pupil, GuardianName: "Trần Thị Hoa",
		PupilConsented: own, ScopeFace: true, ScopePhotos: true, ScopeGateTemplates: &gateTemplates, DocumentRef: "DK-2026-31"})
	if err != nil {
		t.Fatal(err)
	}
}

// enrol stores d as an enrolment template of pupil.
func (f *autoFixture) enrol(t *testing.T, pupil string, d match.Descriptor) {
	t.Helper()
	if _, err := f.tpl.Add(context.Background(), pupil, d, match.DlibResNetV1, match.Quality{SizePx: 200, Sharpness: 90, Brightness: 120}, nil); err != nil {
		t.Fatal(err)
	}
}

// event is an event of pupil captured a minute before the clock, offering
// d as its template (nil: no offer).
func (f *autoFixture) event(pupil string, d match.Descriptor) wire.Event {
	ev := ingesttest.Event(f.gate, pupil, f.clock().Add(-time.Minute))
	ev.Model = match.DlibResNetV1
	ev.Quality = match.Quality{SizePx: 120, Sharpness: 80, YawDeg: 4, RollDeg: 1, Brightness: 130}
	if d != nil {
		ev.Template = &wire.EventTemplate{Descriptor: d.Bytes(), DistanceMargin: 0.12, SecondMargin: 0.15, Agreeing: 3, Votes: 3}
	}
	return ev
}

// ingest stores ev through the real ingest and checks that it is stored.
func (f *autoFixture) ingest(t *testing.T, ev wire.Event) {
	t.Helper()
	res, err := f.in.Handle(context.Background(), ingest.Message{Topic: wire.EventTopic(ev.SchoolID, ev.GateID), Payload: ingesttest.Payload(ev),
		ClientID: f.gate.Username})
	if err != nil || res != ingest.Stored {
		t.Fatalf("event %s: %v, %v; want stored", ev.EventID, res, err)
	}
	if n := f.count(t, `SELECT count(*) FROM events WHERE event_id = ?`, ev.EventID); n != 1 {
		t.Fatalf("event %s: %d rows", ev.EventID, n)
	}
}

func (f *autoFixture) count(t *testing.T, q string, args ...any) int {
	t.Helper()
	var n int
	if err := f.db.R.QueryRow(q, args...).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// waitConsidered waits until the Updater has counted n offers in all.
func (f *autoFixture) waitConsidered(t *testing.T, n int64) map[string]int64 {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		c := f.u.Counts()
		var sum int64
		for _, v := range c {
			sum += v
		}
		if sum == n {
			if err := f.u.Drain(context.Background()); err != nil {
				t.Fatal(err)
			}
			return c
		}
		if sum > n || time.Now().After(deadline) {
			t.Fatalf("%d offers considered, want %d: %v", sum, n, c)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// automatic lists pupil's automatic templates' events.
func (f *autoFixture) automatic(t *testing.T, pupil string) []string {
	t.Helper()
	list, err := f.tpl.List(context.Background(), pupil)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, in := range list {
		if in.Source == facetemplates.SourceAutomatic {
			out = append(out, in.EventID)
		}
	}
	return out
}

func (f *autoFixture) version(t *testing.T) int64 {
	t.Helper()
	v, err := f.tpl.Version(context.Background(), f.gate.School)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func hcmc(t *testing.T, s string) time.Time {
	t.Helper()
	loc, err := time.LoadLocation("Asia/Ho_Chi_Minh")
	if err != nil {
		t.Fatal(err)
	}
	at, err := time.ParseInLocation("2006-01-02 15:04", s, loc)
	if err != nil {
		t.Fatal(err)
	}
	return at
}

// TestAutomaticOncePerSchoolDay: a pupil's first offer of a school day
// becomes an automatic template (the descriptor the gate sent, from that
// event, the gallery version bumped); a second offer the same school day
// is refused, even at 23:00 local; the first offer of the next school day
// (00:30 local, still the same UTC day) is added. Each result is counted
// in the metric.
func TestAutomaticOncePerSchoolDay(t *testing.T) {
	f := newAutoFixture(t, learn.DefaultAutomaticConfig())
	p := f.pupils[0]
	f.grant(t, p, true, true)
	f.enrol(t, p, f.faces.enrol)
	v0 := f.version(t)

	f.setClock(hcmc(t, "2026-11-20 07:30"))
	first := f.event(p, f.faces.genuine)
	f.ingest(t, first)
	if c := f.waitConsidered(t, 1); c[learn.AutoAdded] != 1 {
		t.Fatalf("first offer: %v", c)
	}
	if got := f.automatic(t, p); len(got) != 1 || got[0] != first.EventID {
		t.Fatalf("automatic templates from events %v, want [%s]", got, first.EventID)
	}
	if v := f.version(t); v <= v0 {
		t.Fatalf("gallery version %d after the template, was %d", v, v0)
	}
	f.checkStoredDescriptor(t, p, f.faces.genuine)

	f.setClock(hcmc(t, "2026-11-20 23:01"))
	f.ingest(t, f.event(p, f.faces.genuine2))
	if c := f.waitConsidered(t, 2); c[learn.AutoToday] != 1 || c[learn.AutoAdded] != 1 {
		t.Fatalf("second offer of the day: %v", c)
	}
	f.setClock(hcmc(t, "2026-11-21 00:31"))
	next := f.event(p, f.faces.genuine2)
	f.ingest(t, next)
	if c := f.waitConsidered(t, 3); c[learn.AutoAdded] != 2 || c[learn.AutoToday] != 1 {
		t.Fatalf("first offer of the next day: %v", c)
	}
	if got := f.automatic(t, p); len(got) != 2 {
		t.Fatalf("automatic templates from %v, want two", got)
	}
	added, today, drift := metricValue(t, f.reg, learn.AutoAdded), metricValue(t, f.reg, learn.AutoToday), metricValue(t, f.reg, learn.AutoDrift)
	if added != 2 || today != 1 || drift != 0 {
		t.Fatalf("metric: added %g, already_today %g, drift %g", added, today, drift)
	}
}

// checkStoredDescriptor: pupil's automatic template holds d.
func (f *autoFixture) checkStoredDescriptor(t *testing.T, pupil string, d match.Descriptor) {
	t.Helper()
	list, err := f.tpl.List(context.Background(), pupil)
	if err != nil {
		t.Fatal(err)
	}
	for _, in := range list {
		if in.Source != facetemplates.SourceAutomatic {
			continue
		}
		got, err := f.tpl.Descriptor(context.Background(), in.ID)
		if err != nil {
			t.Fatal(err)
		}
		if match.Distance(got, d) > 1e-6 || in.Model != match.DlibResNetV1.String() {
			t.Fatalf("automatic template %d: %s at %.4f from the offered descriptor", in.ID, in.Model, match.Distance(got, d))
		}
		return
	}
	t.Fatal("no automatic template")
}

// metricValue is diemdanh_automatic_templates_total{result} in reg.
func metricValue(t *testing.T, reg *prometheus.Registry, result string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "diemdanh_automatic_templates_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "result" && l.GetValue() == result {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	t.Fatalf("no metric for result %q", result)
	return 0
}

// TestAutomaticRefusals: each rule refuses the offer alone, counted under
// its reason; the event itself is stored every time, and no template is
// added nor the gallery version bumped.
func TestAutomaticRefusals(t *testing.T) {
	type setup func(t *testing.T, f *autoFixture, p string) wire.Event
	withConsent := func(t *testing.T, f *autoFixture, p string) {
		f.grant(t, p, true, true)
		f.enrol(t, p, f.faces.enrol)
	}
	cases := []struct {
		name   string
		setup  setup
		result string
	}{
		{"well inside", func(t *testing.T, f *autoFixture, p string) wire.Event {
			withConsent(t, f, p)
			return f.event(p, f.faces.genuine)
		}, learn.AutoAdded},
		{"no consent", func(t *testing.T, f *autoFixture, p string) wire.Event {
			f.enrol(t, p, f.faces.enrol)
			return f.event(p, f.faces.genuine)
		}, learn.AutoNoConsent},
		{"consent without the gate-template scope", func(t *testing.T, f *autoFixture, p string) wire.Event {
			f.grant(t, p, false, true)
			f.enrol(t, p, f.faces.enrol)
			return f.event(p, f.faces.genuine)
		}, learn.AutoNoConsent},
		{"turned 7 without own consent", func(t *testing.T, f *autoFixture, p string) wire.Event {
			if _, err := f.db.W.Exec(`UPDATE pupils SET date_of_birth = '2021-06-01' WHERE id = ?`, p); err != nil {
				t.Fatal(err)
			}
			f.grant(t, p, true, false)
			if _, err := f.db.W.Exec(`UPDATE pupils SET date_of_birth = '2019-11-01' WHERE id = ?`, p); err != nil {
				t.Fatal(err)
			}
			f.enrol(t, p, f.faces.enrol)
			return f.event(p, f.faces.genuine)
		}, learn.AutoOwnConsent},
		{"paused after not this pupil", func(t *testing.T, f *autoFixture, p string) wire.Event {
			withConsent(t, f, p)
			earlier := f.event(p, nil)
			f.ingest(t, earlier)
			if _, err := f.tpl.RemoveFromEvent(context.Background(), earlier.EventID, "teacher:lan"); err != nil {
				t.Fatal(err)
			}
			return f.event(p, f.faces.genuine)
		}, learn.AutoPaused},
		{"drift: another person", func(t *testing.T, f *autoFixture, p string) wire.Event {
			withConsent(t, f, p)
			return f.event(p, f.faces.other)
		}, learn.AutoDrift},
		{"drift: a gate template does not count", func(t *testing.T, f *autoFixture, p string) wire.Event {
			withConsent(t, f, p)
			if _, err := f.tpl.AddGateTemplate(context.Background(), p, f.faces.other, match.Quality{SizePx: 100}, nil,
				facetemplates.SourceTeacher, "capture-1", "teacher:lan"); err != nil {
				t.Fatal(err)
			}
			return f.event(p, f.faces.other2)
		}, learn.AutoDrift},
		{"no enrolment template", func(t *testing.T, f *autoFixture, p string) wire.Event {
			f.grant(t, p, true, true)
			return f.event(p, f.faces.genuine)
		}, learn.AutoNoEnrolment},
		{"another model", func(t *testing.T, f *autoFixture, p string) wire.Event {
			withConsent(t, f, p)
			ev := f.event(p, f.faces.genuine)
			ev.Model = match.DefaultEmbedder
			return ev
		}, learn.AutoOtherModel},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := newAutoFixture(t, learn.DefaultAutomaticConfig())
			p := f.pupils[1]
			ev := tc.setup(t, f, p)
			v0 := f.version(t)
			f.ingest(t, ev)
			c := f.waitConsidered(t, 1)
			if c[tc.result] != 1 {
				t.Fatalf("counts %v, want one %s", c, tc.result)
			}
			got := f.automatic(t, p)
			if added := tc.result == learn.AutoAdded; added != (len(got) == 1) || (!added && f.version(t) != v0) {
				t.Fatalf("automatic templates %v, gallery %d (was %d), for result %s", got, f.version(t), v0, tc.result)
			}
			if n := f.count(t, `SELECT count(*) FROM events WHERE event_id = ? AND student_id = ?`, ev.EventID, p); n != 1 {
				t.Fatalf("the event is not stored as %s's arrival", p)
			}
		})
	}
}

// TestAutomaticDirect: Automatic decides without ingest's queue (the
// benchmark's path) and reports the distance the drift guard measured;
// an event without a template, or automatic templates switched off, is
// not considered or counted; without a vote cap the guard needs
// drift_max, which then decides alone; a bad config names its field.
func TestAutomaticDirect(t *testing.T) {
	f := newAutoFixture(t, learn.DefaultAutomaticConfig())
	p := f.pupils[2]
	f.grant(t, p, true, true)
	f.enrol(t, p, f.faces.enrol)
	ctx := context.Background()
	ev := f.event(p, f.faces.other)
	out, err := f.u.Automatic(ctx, ingest.StoredEvent{Event: ev})
	if err != nil || out.Result != learn.AutoDrift || math.Abs(out.Distance-match.Distance(f.faces.other, f.faces.enrol)) > 1e-6 {
		t.Fatalf("drift: %+v, %v", out, err)
	}
	if out, err := f.u.Automatic(ctx, ingest.StoredEvent{Event: f.event(p, nil)}); err != nil || out.Result != "" {
		t.Fatalf("no offer: %+v, %v", out, err)
	}
	off := learn.DefaultAutomaticConfig()
	off.Enabled = false
	u, err := learn.NewUpdater(off, learn.AutomaticDeps{DB: f.db, Templates: f.tpl})
	if err != nil {
		t.Fatal(err)
	}
	if out, err := u.Automatic(ctx, ingest.StoredEvent{Event: f.event(p, f.faces.genuine)}); err != nil || out.Result != "" {
		t.Fatalf("switched off: %+v, %v", out, err)
	}
	if c := f.u.Counts(); c[learn.AutoDrift] != 1 || len(f.automatic(t, p)) != 0 {
		t.Fatalf("counts %v", c)
	}
	noCap, err := learn.NewUpdater(learn.DefaultAutomaticConfig(), learn.AutomaticDeps{DB: f.db, Templates: f.tpl})
	if err != nil {
		t.Fatal(err)
	}
	if out, err := noCap.Automatic(ctx, ingest.StoredEvent{Event: ev}); err != nil || out.Result != learn.AutoNoDriftLimit {
		t.Fatalf("no vote cap and no drift_max: %+v, %v", out, err)
	}
	loose := learn.DefaultAutomaticConfig()
	loose.DriftMax = 1.5
	explicit, err := learn.NewUpdater(loose, learn.AutomaticDeps{DB: f.db, Templates: f.tpl})
	if err != nil {
		t.Fatal(err)
	}
	if out, err := explicit.Automatic(ctx, ingest.StoredEvent{Event: ev}); err != nil || out.Result != learn.AutoAdded {
		t.Fatalf("drift_max 1.5 lets another person through (what the default guards against): %+v, %v", out, err)
	}
	for field, mod := range map[string]func(*learn.AutomaticConfig){
		"automatic_templates.drift_max": func(c *learn.AutomaticConfig) { c.DriftMax = -1 },
		"automatic_templates.queue":     func(c *learn.AutomaticConfig) { c.Queue = 0 },
	} {
		c := learn.DefaultAutomaticConfig()
		mod(&c)
		var fe *conf.FieldError
		if err := c.Validate("automatic_templates"); !errors.As(err, &fe) || fe.Field != field {
			t.Errorf("got %v, want an error on %s", err, field)
		}
	}
}
