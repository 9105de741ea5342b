package gallerysrv

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"testing"
	"time"

	"github.com/diemdanh/diemdanh/hub/api"
	"github.com/diemdanh/diemdanh/hub/roster"
	"github.com/diemdanh/diemdanh/models/conf"
	"github.com/diemdanh/diemdanh/models/match"
	"github.com/diemdanh/diemdanh/models/wire"
)

// idolFaces returns the real dlib descriptors of go-face's idols.json
// grouped by person, in file order.
func idolFaces(t *testing.T) [][]match.Descriptor {
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
	var out [][]match.Descriptor
	at := map[string]int{}
	for i, id := range ids {
		k, ok := at[id]
		if !ok {
			k = len(out)
			at[id] = k
			out = append(out, nil)
		}
		out[k] = append(out[k], descs[i])
	}
	if len(out) < 60 {
		t.Fatalf("idols.json: only %d people", len(out))
	}
	return out
}

// pupilID is the 12-digit personal ID of the n-th test pupil of school b.
func pupilID(n int) string { return fmt.Sprintf("0799%08d", n) }

// enrolIdols enrols people[from:to] into school thcs-b as pupils, k real
// templates each, through the real roster and encrypted template store.
func (f *fixture) enrolIdols(t *testing.T, people [][]match.Descriptor, from, to, k int) {
	t.Helper()
	ctx := context.Background()
	for i := from; i < to; i++ {
		if len(people[i]) < k {
			t.Fatalf("idol %d has %d faces", i, len(people[i]))
		}
		if _, err := f.roster.PutPupil(ctx, roster.Pupil{ID: pupilID(i), SchoolID: "thcs-b", FullName: "Học sinh B", Active: true}); err != nil {
			t.Fatal(err)
		}
		for _, d := range people[i][:k] {
			if _, err := f.tpl.Add(ctx, pupilID(i), d, match.DlibResNetV1, match.Quality{}, nil); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// restart replaces the server by a new one on the same database (as a hub
// restart does) with cfg, serving on a new loopback server.
func (f *fixture) restart(t *testing.T, cfg Config) {
	t.Helper()
	f.srv = New(f.db, f.tpl, nil, cfg, nil, time.Now)
	a := api.NewServer(nil, nil, nil)
	f.srv.Routes(a.V1)
	ts := httptest.NewServer(a.Engine)
	t.Cleanup(ts.Close)
	f.url = ts.URL
}

func (f *fixture) gateB(t *testing.T) (*wire.GalleryDoc, *match.Gallery) {
	t.Helper()
	req, _ := http.NewRequest("GET", f.url+"/api/v1/gates/gate-b/gallery", nil)
	req.SetBasicAuth("gate-b", f.pwB)
	r, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Body.Close()
	b, _ := io.ReadAll(r.Body)
	if r.StatusCode != 200 {
		t.Fatalf("gate-b gallery: %d %s", r.StatusCode, b)
	}
	doc, g, err := wire.DecodeGallery(b)
	if err != nil {
		t.Fatalf("served gallery does not decode: %v", err)
	}
	return doc, g
}

func (f *fixture) report(t *testing.T) *OperatingPointReport {
	t.Helper()
	r, err := f.srv.OperatingPointReport(context.Background(), "thcs-b", MaxHistory)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func (f *fixture) auditCount(t *testing.T) int {
	t.Helper()
	var n int
	if err := f.db.R.QueryRow(`SELECT count(*) FROM audit_log WHERE action = ? AND subject = 'school:thcs-b'`, ActionOperatingPoint).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// checkInvariants checks a calibrated point against match.Calibration's
// definitions (no numbers of any embedder are assumed).
func checkInvariants(t *testing.T, p *OperatingPoint) {
	t.Helper()
	if !p.Calibrated || p.Reason != "" || !(p.Threshold > 0) {
		t.Fatalf("not calibrated: %+v", p)
	}
	if p.Identities != p.Pupils || p.ImpostorScores != p.Templates*(p.Pupils-1) {
		t.Errorf("identities %d / scores %d for %d pupils, %d templates", p.Identities, p.ImpostorScores, p.Pupils, p.Templates)
	}
	if want := 1 - math.Pow(1-p.TargetFAR, 1/float64(p.Identities)); math.Abs(p.PerIdentityFAR-want) > 1e-12 {
		t.Errorf("per-identity FAR %g, want %g", p.PerIdentityFAR, want)
	}
	if p.ExpectedFAR < 0 || p.ExpectedFAR > p.TargetFAR+1e-12 {
		t.Errorf("expected FAR %g outside [0, target %g]", p.ExpectedFAR, p.TargetFAR)
	}
	if p.ExpectedFRR < 0 || p.ExpectedFRR > 1 {
		t.Errorf("expected FRR %g (every pupil has ≥2 templates, so it is measurable)", p.ExpectedFRR)
	}
	if p.Method != "empirical" && p.Method != "gaussian-tail" {
		t.Errorf("method %q", p.Method)
	}
}

func TestOperatingPointServedCachedAndRenewed(t *testing.T) {
	f := newFixture(t, nil, time.Hour)
	people := idolFaces(t)
	f.enrolIdols(t, people, 0, 12, 3)

	doc, g := f.gateB(t)
	if g.People() != 12 || g.Len() != 36 {
		t.Fatalf("served %d people, %d descriptors", g.People(), g.Len())
	}
	r := f.report(t)
	p := r.Current
	if p == nil {
		t.Fatal("no current operating point")
	}
	checkInvariants(t, p)
	if p.GalleryVersion != doc.Version || p.Embedder != match.DlibResNetV1.String() || p.Pupils != 12 || p.Templates != 36 || p.TargetFAR != DefaultTargetFAR {
		t.Fatalf("point %+v for doc v%d", p, doc.Version)
	}
	// Served to the gate, and computed over exactly what the gate holds.
	if doc.Threshold != p.Threshold || p.ServedThreshold != p.Threshold || p.Override || r.Served.Threshold != doc.Threshold {
		t.Fatalf("doc threshold %g, point %+v, served %+v", doc.Threshold, p, r.Served)
	}
	if doc.MinMargin != Default().MinMargin {
		t.Fatalf("min margin %g, config %g", doc.MinMargin, Default().MinMargin)
	}
	gateSide, err := match.CalibrateThreshold(g, DefaultTargetFAR)
	if err != nil || gateSide.Threshold != doc.Threshold || gateSide.ExpectedFRR != p.ExpectedFRR {
		t.Fatalf("calibrating the served gallery gives %+v (%v), doc has %g", gateSide, err, doc.Threshold)
	}
	if n := f.srv.Calibrations(); n != 1 {
		t.Fatalf("%d calibrations for one version", n)
	}
	if n := f.auditCount(t); n != 1 {
		t.Fatalf("%d audit entries after the first point", n)
	}

	// Same version: never recomputed (fetches, change notifications,
	// periodic refreshes, the report).
	for i := 0; i < 3; i++ {
		f.gateB(t)
		f.srv.Changed(context.Background(), "thcs-b")
		if _, _, err := f.srv.Refresh(context.Background(), "thcs-b"); err != nil {
			t.Fatal(err)
		}
		f.report(t)
	}
	if n := f.srv.Calibrations(); n != 1 {
		t.Fatalf("%d calibrations for an unchanged version", n)
	}
	// A restarted hub reuses the persisted point.
	f.restart(t, Default())
	if d2, _ := f.gateB(t); d2.Version != doc.Version || d2.Threshold != doc.Threshold {
		t.Fatalf("after restart: v%d threshold %g", d2.Version, d2.Threshold)
	}
	if n := f.srv.Calibrations(); n != 0 {
		t.Fatalf("restart recomputed (%d)", n)
	}
	f.tpl.Subscribe(func(school string, _ int64) { f.srv.Changed(context.Background(), school) })

	// A new enrolment: new version, new point, history and audit grow.
	f.enrolIdols(t, people, 12, 13, 3)
	doc2, g2 := f.gateB(t)
	if doc2.Version <= doc.Version || g2.People() != 13 {
		t.Fatalf("after enrolment: v%d, %d people", doc2.Version, g2.People())
	}
	r2 := f.report(t)
	checkInvariants(t, r2.Current)
	if r2.Current.GalleryVersion != doc2.Version || r2.Current.Pupils != 13 || doc2.Threshold != r2.Current.Threshold {
		t.Fatalf("point after enrolment %+v, doc v%d threshold %g", r2.Current, doc2.Version, doc2.Threshold)
	}
	if n := f.srv.Calibrations(); n != 1 {
		t.Fatalf("%d calibrations for one new version", n)
	}
	if len(r2.History) != 2 || r2.History[0].ID != r2.Current.ID || r2.History[1].GalleryVersion != doc.Version {
		t.Fatalf("history %+v", r2.History)
	}
	if n := f.auditCount(t); n != 2 {
		t.Fatalf("%d audit entries after the point changed", n)
	}
	var detail map[string]any
	var raw string
	if err := f.db.R.QueryRow(`SELECT detail FROM audit_log WHERE action = ? ORDER BY id DESC LIMIT 1`, ActionOperatingPoint).Scan(&raw); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal([]byte(raw), &detail); err != nil || detail["threshold"] != doc2.Threshold || detail["previous_threshold"] != doc.Threshold {
		t.Fatalf("audit detail %s (%v)", raw, err)
	}
}

func TestOperatingPointTooFewPupils(t *testing.T) {
	f := newFixture(t, nil, time.Hour)
	people := idolFaces(t)
	for _, c := range []struct {
		name   string
		pupils int
	}{{"no pupil", 0}, {"one pupil", 1}} {
		if c.pupils > 0 {
			f.enrolIdols(t, people, 0, c.pupils, 3)
		}
		doc, g := f.gateB(t)
		p := f.report(t).Current
		if g.People() != c.pupils || doc.Threshold != 0 || p == nil || p.Calibrated || p.Reason != ReasonTooFewIdentities ||
			p.Threshold != 0 || p.ServedThreshold != 0 || p.Pupils != c.pupils {
			t.Fatalf("%s: doc threshold %g, point %+v", c.name, doc.Threshold, p)
		}
	}
	if n := f.srv.Calibrations(); n != 0 {
		t.Fatalf("%d calibrations of galleries too small to calibrate", n)
	}
	// The second pupil makes it calibratable.
	f.enrolIdols(t, people, 1, 2, 3)
	doc, _ := f.gateB(t)
	p := f.report(t).Current
	if !p.Calibrated || doc.Threshold != p.Threshold || doc.Threshold <= 0 {
		t.Fatalf("two pupils: doc %g, point %+v", doc.Threshold, p)
	}
}

func TestOperatingPointOverrideWins(t *testing.T) {
	f := newFixture(t, nil, time.Hour)
	f.enrolIdols(t, idolFaces(t), 0, 8, 3)
	doc, _ := f.gateB(t)
	calibrated := f.report(t).Current.Threshold
	before := f.auditCount(t)

	cfg := Default()
	cfg.Threshold = calibrated * 1.25 // an admin's choice, whatever the embedder
	cfg.MinMargin = calibrated / 10
	if err := cfg.Validate("gallery"); err != nil {
		t.Fatal(err)
	}
	f.restart(t, cfg)
	d2, _ := f.gateB(t)
	r := f.report(t)
	if d2.Version != doc.Version || d2.Threshold != cfg.Threshold || d2.MinMargin != cfg.MinMargin {
		t.Fatalf("override not served: %+v", d2)
	}
	if !r.Served.Override || r.Served.Threshold != cfg.Threshold || r.OverrideThreshold != cfg.Threshold ||
		!r.Current.Override || r.Current.Threshold != calibrated || r.Current.ServedThreshold != cfg.Threshold {
		t.Fatalf("report with override: %+v current %+v", r, r.Current)
	}
	if n := f.srv.Calibrations(); n != 0 {
		t.Fatalf("an override recomputed the calibration (%d)", n)
	}
	if n := f.auditCount(t); n != before+1 {
		t.Fatalf("override change: %d audit entries, had %d", n, before)
	}
	// Back to calibration.
	f.restart(t, Default())
	if d3, _ := f.gateB(t); d3.Threshold != calibrated || f.report(t).Served.Override {
		t.Fatalf("override removed: threshold %g", d3.Threshold)
	}
}

// TestThresholdFallsAsGalleryGrows: at the same visitor FAR a bigger school
// needs a stricter threshold (each visitor is compared with more pupils).
// With real dlib descriptors (idols.json) the direction is checked between
// a small and a ten times bigger school (the normal fit of a few hundred
// impostor scores wobbles between nearby sizes); with synthetic
// identities (same distribution at every size) at every step.
func TestThresholdFallsAsGalleryGrows(t *testing.T) {
	real := idolFaces(t)
	rng := rand.New(rand.NewPCG(8, 4))
	synthetic := make([][]match.Descriptor, 160)
	for i := range synthetic {
		centre := randUnit(rng, 128, nil, 0)
		for k := 0; k < 3; k++ {
			synthetic[i] = append(synthetic[i], randUnit(rng, 128, centre, 0.35))
		}
	}
	for _, c := range []struct {
		name      string
		people    [][]match.Descriptor
		sizes     []int
		everyStep bool
	}{
		{"idols", real, []int{6, 60}, false},
		{"synthetic", synthetic, []int{10, 40, 160}, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			f := newFixture(t, nil, time.Hour)
			var pts []*OperatingPoint
			from := 0
			for _, n := range c.sizes {
				f.enrolIdols(t, c.people, from, n, 3)
				from = n
				doc, g := f.gateB(t)
				p := f.report(t).Current
				checkInvariants(t, p)
				if g.People() != n || p.Pupils != n || doc.Threshold != p.Threshold {
					t.Fatalf("%d pupils: doc %d people threshold %g, point %+v", n, g.People(), doc.Threshold, p)
				}
				if k := len(pts); k > 0 {
					if !(p.PerIdentityFAR < pts[k-1].PerIdentityFAR) {
						t.Errorf("per-identity FAR did not fall: %g → %g", pts[k-1].PerIdentityFAR, p.PerIdentityFAR)
					}
					if c.everyStep && !(p.Threshold < pts[k-1].Threshold) {
						t.Errorf("threshold did not fall from %d to %d pupils: %g → %g", pts[k-1].Pupils, n, pts[k-1].Threshold, p.Threshold)
					}
				}
				pts = append(pts, p)
				t.Logf("%3d pupils: threshold %.4f (%s), expected FAR %.4g, FRR %.3f", n, p.Threshold, p.Method, p.ExpectedFAR, p.ExpectedFRR)
			}
			if first, last := pts[0], pts[len(pts)-1]; !(last.Threshold < first.Threshold) {
				t.Errorf("threshold did not fall from %d to %d pupils: %g → %g", first.Pupils, last.Pupils, first.Threshold, last.Threshold)
			}
		})
	}
}

// randUnit is a random unit vector: around centre (spread sd per
// component) or uniform when centre is nil.
func randUnit(rng *rand.Rand, dim int, centre match.Descriptor, sd float64) match.Descriptor {
	d := make(match.Descriptor, dim)
	var n float64
	for i := range d {
		v := rng.NormFloat64()
		if centre != nil {
			v = float64(centre[i]) + sd*v/math.Sqrt(float64(dim))
		}
		d[i] = float32(v)
		n += v * v
	}
	for i := range d {
		d[i] = float32(float64(d[i]) / math.Sqrt(n))
	}
	return d
}

func TestOperatingPointConfigValidate(t *testing.T) {
	for _, c := range []struct {
		far  float64
		want bool
	}{{0.01, true}, {0, true}, {0.5, true}, {-0.1, false}, {1, false}, {1.5, false}, {math.NaN(), false}} {
		cfg := Default()
		cfg.TargetFAR = c.far
		if err := cfg.Validate("gallery"); (err == nil) != c.want {
			t.Errorf("target_far %g: %v", c.far, err)
		}
	}
}

// TestOperatingPointAPIAuthz: the API behind hub/auth's real middleware
// and policy: admins of the school only.
func TestOperatingPointAPIAuthz(t *testing.T) {
	f := newFixture(t, nil, time.Hour)
	f.enrolIdols(t, idolFaces(t), 0, 5, 3)
	for _, q := range []string{
		`INSERT INTO staff(id, school_id, full_name, role) VALUES ('t1', 'thcs-b', 'Cô Lan', 'teacher')`,
		`INSERT INTO classes(id, school_id, name, grade, homeroom_teacher_id) VALUES ('c1', 'thcs-b', '6A', 6, 't1')`,
		`UPDATE pupils SET class_id = 'c1' WHERE school_id = 'thcs-b'`,
		`INSERT INTO guardians(id, pupil_id, full_name) VALUES (1, '` + pupilID(0) + `', 'Mẹ')`,
	} {
		if _, err := f.db.W.Exec(q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	const pw = testPassword
	ts := authAPIServer(t, f, "thcs-b")
	get := func(user, pass, school string, query ...string) (int, []byte) {
		q := "?history=5"
		if len(query) > 0 {
			q = query[0]
		}
		return apiCall(t, ts, "GET", "/schools/"+school+"/operating-point"+q, user, pass, nil)
	}
	for _, c := range []struct {
		name, user, pass, school string
		want                     int
	}{
		{"anonymous", "", "", "thcs-b", 401},
		{"teacher", "lan", pw, "thcs-b", 403},
		{"parent", "me", pw, "thcs-b", 403},
		{"gate", "gate-b", f.pwB, "thcs-b", 403},
		{"other school's admin", "admin-a", pw, "thcs-b", 403},
		{"wrong password", "admin-b", pw + "x", "thcs-b", 401},
		{"school admin", "admin-b", pw, "thcs-b", 200},
		{"hub admin", "root", pw, "thcs-b", 200},
		{"unknown school", "root", pw, "thcs-z", 404},
	} {
		if st, b := get(c.user, c.pass, c.school); st != c.want {
			t.Errorf("%s: %d %s, want %d", c.name, st, b, c.want)
		}
	}
	if st, _ := get("root", pw, "thcs-b", "?history=1000"); st != 400 {
		t.Errorf("history=1000: %d, want 400", st)
	}
	st, b := get("admin-b", pw, "thcs-b")
	var r OperatingPointReport
	if err := json.Unmarshal(b, &r); err != nil || st != 200 {
		t.Fatalf("%d %s %v", st, b, err)
	}
	doc, _ := f.gateB(t)
	if r.Current == nil || r.Served.Threshold != doc.Threshold || r.Current.Threshold != doc.Threshold || r.Current.GalleryVersion != doc.Version ||
		r.TargetFAR != DefaultTargetFAR || len(r.History) != 1 || r.Served.Override {
		t.Fatalf("report %s does not match the served doc (v%d, threshold %g)", b, doc.Version, doc.Threshold)
	}
}

// TestOperatingPointPerGate: a gate served only its assigned classes'
// pupils (candidate restriction) gets a threshold calibrated over exactly
// its own document; a gate served the whole gallery gets the school's.
func TestOperatingPointPerGate(t *testing.T) {
	f := newFixture(t, nil, time.Hour)
	ctx := context.Background()
	f.enrolIdols(t, idolFaces(t), 0, 12, 3)
	for _, q := range []string{
		`INSERT INTO classes(id, school_id, name, grade) VALUES ('cX', 'thcs-b', '7X', 7), ('cY', 'thcs-b', '7Y', 7)`,
		`UPDATE pupils SET class_id = CASE WHEN id < '` + pupilID(6) + `' THEN 'cX' ELSE 'cY' END WHERE school_id = 'thcs-b'`,
	} {
		if _, err := f.db.W.Exec(q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	g2, err := f.roster.CreateGate(ctx, roster.Gate{ID: "gate-b2", SchoolID: "thcs-b"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.db.W.Exec(`INSERT INTO gate_classes(gate_id, class_id) VALUES ('gate-b2', 'cX')`); err != nil {
		t.Fatal(err)
	}
	f.srv.Changed(ctx, "thcs-b")
	whole, _ := f.gateB(t)
	st := f.get(t, "gate-b2", "gate-b2", g2.Password, "")
	if st.status != 200 || len(st.doc.People) != 6 || st.doc.Version != whole.Version {
		t.Fatalf("gate-b2: %d, %d people, v%d (school v%d)", st.status, len(st.doc.People), st.doc.Version, whole.Version)
	}
	b, _ := st.doc.Encode()
	_, own, err := wire.DecodeGallery(b)
	if err != nil {
		t.Fatal(err)
	}
	want, err := match.CalibrateThreshold(own, DefaultTargetFAR)
	if err != nil {
		t.Fatal(err)
	}
	r := f.report(t)
	if st.doc.Threshold != want.Threshold || whole.Threshold != r.Current.Threshold || r.Current.Pupils != 12 {
		t.Fatalf("gate-b2 threshold %g, its own calibration %g; gate-b %g, school %+v", st.doc.Threshold, want.Threshold, whole.Threshold, r.Current)
	}
	if len(r.Gates) != 1 || r.Gates[0].GateID != "gate-b2" || r.Gates[0].Pupils != 6 || r.Gates[0].Threshold != want.Threshold {
		t.Fatalf("per-gate points %+v", r.Gates)
	}
	checkInvariants(t, &r.Gates[0])
	n := f.srv.Calibrations()
	if n != 2 {
		t.Fatalf("%d calibrations (school + one restricted gate)", n)
	}
	f.gateB(t)
	f.get(t, "gate-b2", "gate-b2", g2.Password, "")
	if f.srv.Calibrations() != n {
		t.Fatal("refetching recomputed")
	}
}
