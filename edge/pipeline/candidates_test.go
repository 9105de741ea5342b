package pipeline

import (
	"context"
	"errors"
	"image"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/diemdanh/diemdanh/models/conf"
	"github.com/diemdanh/diemdanh/models/match"
	"github.com/prometheus/client_golang/prometheus"
	"gocv.io/x/gocv"
)

// scriptedDescriber returns a fixed descriptor for every crop: the tests
// below are about which gallery identities a probe is compared with, not
// about faces (the engine on real photos is tested in models/faceengine).
type scriptedDescriber struct{ d match.Descriptor }

func (scriptedDescriber) Model() match.ModelID { return match.DefaultEmbedder }

func (s scriptedDescriber) DescribeCrop(context.Context, gocv.Mat, image.Rectangle) (*match.Face, error) {
	return &match.Face{Box: image.Rect(0, 0, 100, 100), Descriptor: s.d,
		Quality: match.Quality{SizePx: 100, Brightness: 128}}, nil
}

// vec builds a 5-d descriptor from coordinates given in units of t (the
// configured threshold), offset from a fixed base so none is zero.
func vec(t float64, xs ...float64) match.Descriptor {
	d := match.Descriptor{0, 0, 0, 0, 1}
	for i, x := range xs {
		d[i] += float32(x * t)
	}
	return d
}

const pupilC = "079123456783"

// TestCandidateRestriction: in session mode a pupil not expected in the
// current session is never announced, even when he is the nearest
// identity — the track becomes unknown, or the expected pupil when she is
// the right match; outside every window everybody is a candidate; the
// window follows the injected clock.
func TestCandidateRestriction(t *testing.T) {
	vn, err := time.LoadLocation("Asia/Ho_Chi_Minh")
	if err != nil {
		t.Fatal(err)
	}
	day := func(h, m int) time.Time { return time.Date(2026, 11, 23, h, m, 0, 0, vn) }
	// Geometry in units of the threshold in force: the default embedder's
	// vote cap (no gate calibration: these 5-d points are not faces).
	th := DefaultConfig().Vote.Cap(match.DefaultEmbedder)
	if th <= 0 {
		t.Fatalf("no vote cap for %v", match.DefaultEmbedder)
	}
	// pupilA (he) attends the morning only; pupilB (she) both; pupilC the
	// afternoon. In "lookalike", A and B are near each other.
	type person struct {
		id       string
		at       match.Descriptor
		sessions []string
	}
	far := []person{{pupilA, vec(th, 1.5), []string{match.SessionMorning}}, {pupilB, vec(th), nil},
		{pupilC, vec(th, 0, 2), []string{match.SessionAfternoon}}}
	lookalike := []person{{pupilA, vec(th, 0.3), []string{match.SessionMorning}}, {pupilB, vec(th), nil},
		{pupilC, vec(th, 0, 2), []string{match.SessionAfternoon}}}
	cases := []struct {
		name   string
		people []person
		probe  match.Descriptor
		mode   string
		at     time.Time
		want   string // "" = no decision (unknown)
	}{
		{"mode all: nearest wins", far, vec(th, 1.5, 0.1), CandidatesAll, day(14, 0), pupilA},
		{"afternoon: morning-only pupil is unknown", far, vec(th, 1.5, 0.1), CandidatesSession, day(14, 0), ""},
		{"morning: he is expected", far, vec(th, 1.5, 0.1), CandidatesSession, day(7, 0), pupilA},
		{"evening, outside every window: all match", far, vec(th, 1.5, 0.1), CandidatesSession, day(19, 0), pupilA},
		{"between windows: all match", far, vec(th, 1.5, 0.1), CandidatesSession, day(11, 45), pupilA},
		{"mode all, lookalike nearest", lookalike, vec(th, 0.2), CandidatesAll, day(14, 0), pupilA},
		{"afternoon: the expected lookalike is the match", lookalike, vec(th, 0.2), CandidatesSession, day(14, 0), pupilB},
		// 07:00 UTC is 14:00 in Vietnam: windows are in the gate's time zone.
		{"window in local time", far, vec(th, 1.5, 0.1), CandidatesSession, time.Date(2026, 11, 23, 7, 0, 0, 0, time.UTC), ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			g := match.NewGallery(1, match.DefaultEmbedder)
			for _, p := range tc.people {
				if err := g.Add(p.id, p.at); err != nil {
					t.Fatal(err)
				}
				g.SetSessions(p.id, p.sessions)
			}
			if m := g.Match(tc.probe); m.PersonID != pupilA {
				t.Fatalf("setup: nearest identity %s, want %s", m.PersonID, pupilA)
			}
			cfg := DefaultConfig()
			cfg.SchoolID, cfg.GateID, cfg.Location = "s", "g", vn
			cfg.FaceCrop, cfg.VoteQuality = false, match.QualityPolicy{}
			cfg.Vote.MinMargin = 0.05 * th
			cfg.CalibrateFAR = 0
			cfg.Candidates.Mode = tc.mode
			now := tc.at
			p, err := New(cfg, Deps{Describer: scriptedDescriber{tc.probe}, Gallery: fixedGallery{g}, Outbox: nopOutbox{}},
				nil, func() time.Time { return now })
			if err != nil {
				t.Fatal(err)
			}
			if got := runTrack(p, cfg.Vote.M+1, tc.at); got != tc.want {
				t.Fatalf("decided %q, want %q", got, tc.want)
			}
		})
	}
}

// runTrack feeds n descriptor jobs of one track through the workers' code
// path and returns the identity decided ("" for none).
func runTrack(p *Pipeline, n int, at time.Time) string {
	tr := &Track{ID: 1, FirstSeen: at, LastSeen: at}
	emits := make(chan emission, n+1)
	for i := 0; i < n; i++ {
		tr.Pending++
		p.work(context.Background(), job{tr: tr, region: gocv.NewMat(), box: image.Rect(0, 0, 100, 100), frame: int64(i), at: at}, emits)
	}
	close(emits)
	for e := range emits {
		if !e.info.Unknown {
			return e.ev.StudentID
		}
	}
	return ""
}

// TestCandidateWindowSwitches: with one pipeline, the window and the
// candidate count follow the clock, and /metrics shows them.
func TestCandidateWindowSwitches(t *testing.T) {
	vn, _ := time.LoadLocation("Asia/Ho_Chi_Minh")
	g := match.NewGallery(1, match.DlibResNetV1)
	for i, id := range []string{pupilA, pupilB, pupilC} {
		_ = g.Add(id, vec(1, float64(i)))
	}
	g.SetSessions(pupilA, []string{match.SessionMorning})
	g.SetSessions(pupilC, []string{match.SessionAfternoon})
	cfg := DefaultConfig()
	cfg.SchoolID, cfg.GateID, cfg.Location = "s", "g", vn
	cfg.Candidates.Mode = CandidatesSession
	now := time.Date(2026, 11, 23, 6, 0, 0, 0, vn)
	p, err := New(cfg, Deps{Describer: nopDescriber{}, Gallery: fixedGallery{g}, Outbox: nopOutbox{}}, nil, func() time.Time { return now })
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	if err := p.RegisterCandidateMetrics(reg); err != nil {
		t.Fatal(err)
	}
	steps := []struct {
		at     time.Time
		window string
		n      int
	}{
		{time.Date(2026, 11, 23, 6, 0, 0, 0, vn), match.SessionMorning, 2},
		{time.Date(2026, 11, 23, 11, 29, 0, 0, vn), match.SessionMorning, 2},
		{time.Date(2026, 11, 23, 11, 30, 0, 0, vn), "", 3},
		{time.Date(2026, 11, 23, 12, 0, 0, 0, vn), match.SessionAfternoon, 2},
		{time.Date(2026, 11, 23, 17, 30, 0, 0, vn), "", 3},
	}
	for _, s := range steps {
		now = s.at
		w, n := p.CandidateWindow()
		if w != s.window || n != s.n {
			t.Fatalf("%s: window %q with %d candidates, want %q with %d", s.at.Format("15:04"), w, n, s.window, s.n)
		}
		if v := gauge(t, reg, "edge_candidates", ""); int(v) != s.n {
			t.Fatalf("%s: edge_candidates %g", s.at.Format("15:04"), v)
		}
		if v := gauge(t, reg, "edge_candidate_window", s.window); v != 1 {
			t.Fatalf("%s: edge_candidate_window{session=%q} = %g", s.at.Format("15:04"), s.window, v)
		}
	}
}

// gauge reads a gauge from reg: the family name, and the value of its
// "session" label when it has one.
func gauge(t *testing.T, reg *prometheus.Registry, name, session string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			ok := true
			for _, l := range m.GetLabel() {
				if l.GetName() == "session" && l.GetValue() != session {
					ok = false
				}
			}
			if ok {
				return m.GetGauge().GetValue()
			}
		}
	}
	t.Fatalf("metric %s{session=%q} not registered", name, session)
	return 0
}

// TestCandidateCalibrationDirection: the gate-side calibrated threshold for
// a session's fewer candidates is not stricter than the one for the whole
// gallery (same visitor FAR, fewer identities to resemble).
func TestCandidateCalibrationDirection(t *testing.T) {
	vn, _ := time.LoadLocation("Asia/Ho_Chi_Minh")
	rng := rand.New(rand.NewPCG(8, 4))
	g := match.NewGallery(1, match.DlibResNetV1)
	for i := 0; i < 40; i++ {
		id := "0791234" + string(rune('0'+i/10)) + "000" + string(rune('0'+i%10))
		c := make(match.Descriptor, 8)
		for k := range c {
			c[k] = float32(rng.NormFloat64())
		}
		for j := 0; j < 2; j++ {
			d := append(match.Descriptor(nil), c...)
			for k := range d {
				d[k] += float32(0.05 * rng.NormFloat64())
			}
			if err := g.Add(id, d); err != nil {
				t.Fatal(err)
			}
		}
		if i%2 == 0 {
			g.SetSessions(id, []string{match.SessionMorning})
		} else {
			g.SetSessions(id, []string{match.SessionAfternoon})
		}
	}
	threshold := func(mode string) (float64, int) {
		cfg := DefaultConfig()
		cfg.SchoolID, cfg.GateID, cfg.Location = "s", "g", vn
		cfg.CalibrateFAR = 0.1
		cfg.Candidates.Mode = mode
		at := time.Date(2026, 11, 23, 8, 0, 0, 0, vn)
		p, err := New(cfg, Deps{Describer: nopDescriber{}, Gallery: fixedGallery{g}, Outbox: nopOutbox{}}, nil, func() time.Time { return at })
		if err != nil {
			t.Fatal(err)
		}
		_, n := p.CandidateWindow()
		return p.calibrated(g), n
	}
	all, nAll := threshold(CandidatesAll)
	sess, nSess := threshold(CandidatesSession)
	if nSess >= nAll {
		t.Fatalf("session candidates %d not fewer than %d", nSess, nAll)
	}
	if !(all > 0) || !(sess >= all) {
		t.Fatalf("session threshold %g (%d candidates) stricter than whole-gallery %g (%d)", sess, nSess, all, nAll)
	}
	t.Logf("threshold: %d candidates %.4f, %d candidates %.4f", nAll, all, nSess, sess)
}

// TestCandidatesConfigValidate: each bad setting names its field.
func TestCandidatesConfigValidate(t *testing.T) {
	w := func(name, from, to string) SessionWindow { return SessionWindow{name, from, to} }
	cases := []struct {
		name  string
		c     CandidatesConfig
		field string // "" = valid
	}{
		{"default", DefaultCandidatesConfig(), ""},
		{"session default windows", CandidatesConfig{Mode: "session", Sessions: DefaultCandidatesConfig().Sessions}, ""},
		{"unknown mode", CandidatesConfig{Mode: "class"}, "pipeline.candidates.mode"},
		{"session without windows", CandidatesConfig{Mode: "session"}, "pipeline.candidates.sessions"},
		{"unknown session", CandidatesConfig{Mode: "session", Sessions: []SessionWindow{w("evening", "18:00", "20:00")}}, "pipeline.candidates.sessions[0].name"},
		{"duplicate session", CandidatesConfig{Mode: "session", Sessions: []SessionWindow{w("morning", "06:00", "08:00"), w("morning", "09:00", "10:00")}}, "pipeline.candidates.sessions[1].name"},
		{"bad from", CandidatesConfig{Mode: "session", Sessions: []SessionWindow{w("morning", "6:00", "11:00")}}, "pipeline.candidates.sessions[0].from"},
		{"bad to", CandidatesConfig{Mode: "session", Sessions: []SessionWindow{w("morning", "06:00", "25:00")}}, "pipeline.candidates.sessions[0].to"},
		{"to before from", CandidatesConfig{Mode: "session", Sessions: []SessionWindow{w("morning", "11:00", "06:00")}}, "pipeline.candidates.sessions[0].to"},
		{"overlap", CandidatesConfig{Mode: "session", Sessions: []SessionWindow{w("morning", "06:00", "12:30"), w("afternoon", "12:00", "17:00")}}, "pipeline.candidates.sessions[1]"},
	}
	for _, tc := range cases {
		err := tc.c.Validate("pipeline.candidates")
		if tc.field == "" {
			if err != nil {
				t.Errorf("%s: %v", tc.name, err)
			}
			continue
		}
		var fe *conf.FieldError
		if !errors.As(err, &fe) || fe.Field != tc.field {
			t.Errorf("%s: got %v, want error on %s", tc.name, err, tc.field)
		}
	}
	// The whole pipeline config refuses it too.
	cfg := DefaultConfig()
	cfg.Candidates.Mode = "class"
	if err := cfg.Validate("pipeline"); err == nil || !strings.Contains(err.Error(), "pipeline.candidates.mode") {
		t.Fatalf("pipeline config accepted a bad mode: %v", err)
	}
}

// BenchmarkMatchSession: cost of the session filter on a 5,000-pupil,
// 15,000-descriptor gallery (half the pupils in each session) against the
// unfiltered scan.
func BenchmarkMatchSession(b *testing.B) {
	rng := rand.New(rand.NewPCG(1, 2))
	g := match.NewGallery(1, match.DlibResNetV1)
	rnd := func() match.Descriptor {
		d := make(match.Descriptor, match.DescriptorLen)
		for k := range d {
			d[k] = float32(rng.NormFloat64())
		}
		return d
	}
	for i := 0; i < 5000; i++ {
		id := "07912" + string(rune('0'+i/1000)) + string(rune('0'+i/100%10)) + string(rune('0'+i/10%10)) + string(rune('0'+i%10)) + "000"
		for j := 0; j < 3; j++ {
			_ = g.Add(id, rnd())
		}
		g.SetSessions(id, []string{match.Sessions[i%2]})
	}
	probe := rnd()
	b.Run("all", func(b *testing.B) {
		for b.Loop() {
			g.MatchFiltered(probe, nil)
		}
	})
	b.Run("session", func(b *testing.B) {
		f := match.SessionFilter{G: g, Session: match.SessionMorning}
		for b.Loop() {
			g.MatchFiltered(probe, f)
		}
	})
}
