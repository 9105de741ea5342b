package pipeline

import (
	"context"
	"errors"
	"math"
	"path/filepath"
	"slices"
	"testing"

	"github.com/diemdanh/diemdanh/edge/store"
	"github.com/diemdanh/diemdanh/models/conf"
	"github.com/diemdanh/diemdanh/models/match"
	"github.com/diemdanh/diemdanh/models/wire"
)

// autoGallery holds pupils 1..3 on the first three axes of a 4-d space.
func autoGallery(t *testing.T) (*match.Gallery, []string) {
	t.Helper()
	ids := []string{"000000000001", "000000000002", "000000000003"}
	g := match.NewGallery(5, match.DefaultEmbedder)
	for i, d := range []match.Descriptor{unitVec(1, 0, 0, 0), unitVec(0, 1, 0, 0), unitVec(0, 0, 1, 0)} {
		if err := g.Add(ids[i], d); err != nil {
			t.Fatal(err)
		}
	}
	return g, ids
}

// autoVote is a vote for the gallery's nearest pupil of d (or, with
// only, the nearest among those pupils: a candidate restriction).
func autoVote(g *match.Gallery, d match.Descriptor, q match.Quality, only ...string) Vote {
	m := g.Match(d)
	if len(only) > 0 {
		m = g.MatchFiltered(d, onlyPupils(only))
	}
	return Vote{Match: m, Descriptor: d, Quality: q, Score: q.Score()}
}

// onlyPupils is a candidate filter allowing the listed pupils.
type onlyPupils []string

func (o onlyPupils) Allow(id string) bool { return slices.Contains(o, id) }

// TestAutoTemplateRules: a decision well inside the operating point
// passes every rule; each rule failing alone keeps the template off and
// is the one rule reported.
func TestAutoTemplateRules(t *testing.T) {
	g, ids := autoGallery(t)
	good := match.Quality{SizePx: 120, Sharpness: 80, YawDeg: 5, RollDeg: 2, Brightness: 120}
	close1 := unitVec(0.9, 0.1, 0, 0) // 0.11 from pupil 1, 1.2 from pupil 2
	edge1 := unitVec(1, 0.92, 0, 0)   // pupil 1 by 0.06 over pupil 2
	other2 := unitVec(0.1, 0.9, 0, 0) // pupil 2's
	between := unitVec(0.6, 1, 0, 0)  // nearer pupil 2: pupil 1 only by a candidate restriction
	cases := []struct {
		name   string
		best   Vote
		others []Vote
		th     float64
		mod    func(*AutoTemplateConfig)
		want   []string
	}{
		{"well inside", autoVote(g, close1, good), []Vote{autoVote(g, close1, good), autoVote(g, edge1, good)}, 0.95, nil, nil},
		{"distance margin", autoVote(g, close1, good), []Vote{autoVote(g, close1, good), autoVote(g, close1, good)}, 0.2, nil, []string{RuleDistance}},
		{"margin over the second", autoVote(g, edge1, good), []Vote{autoVote(g, close1, good), autoVote(g, close1, good)}, 1.2, nil, []string{RuleMargin}},
		{"second-best outside the candidates", autoVote(g, between, good, ids[0]), []Vote{autoVote(g, close1, good), autoVote(g, close1, good)}, 1.2,
			nil, []string{RuleMargin}},
		{"small face", autoVote(g, close1, match.Quality{SizePx: 70, Sharpness: 80, Brightness: 120}), []Vote{autoVote(g, close1, good),
			autoVote(g, close1, good)}, 0.95, nil, []string{RuleQuality}},
		{"turned", autoVote(g, close1, match.Quality{SizePx: 120, Sharpness: 80, YawDeg: 38, Brightness: 120}), []Vote{autoVote(g, close1, good),
			autoVote(g, close1, good)}, 0.95, nil, []string{RuleQuality}},
		{"blurred", autoVote(g, close1, match.Quality{SizePx: 120, Sharpness: 9, Brightness: 120}), []Vote{autoVote(g, close1, good),
			autoVote(g, close1, good)}, 0.95, nil, []string{RuleQuality}},
		{"two votes", autoVote(g, close1, good), []Vote{autoVote(g, close1, good)}, 0.95, nil, []string{RuleAgreement}},
		{"one vote for another pupil", autoVote(g, close1, good), []Vote{autoVote(g, close1, good), autoVote(g, close1, good),
			autoVote(g, other2, good)}, 0.95, nil, []string{RuleAgreement}},
		{"one disagreeing vote allowed", autoVote(g, close1, good), []Vote{autoVote(g, close1, good), autoVote(g, close1, good),
			autoVote(g, other2, good)}, 0.95, func(c *AutoTemplateConfig) { c.MaxDisagreeing = 1 }, nil},
		{"no descriptor", Vote{Match: g.Match(close1), Quality: good}, []Vote{autoVote(g, close1, good), autoVote(g, close1, good)}, 0.95,
			nil, []string{RuleDescriptor}},
		{"another embedder's length", Vote{Match: g.Match(close1), Descriptor: unitVec(1, 0, 0), Quality: good},
			[]Vote{autoVote(g, close1, good), autoVote(g, close1, good)}, 0.95, nil, []string{RuleDescriptor}},
		{"several rules", autoVote(g, edge1, match.Quality{SizePx: 50, Brightness: 120}), []Vote{autoVote(g, other2, good)}, 1.2, nil,
			[]string{RuleMargin, RuleQuality, RuleAgreement}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := DefaultAutoTemplateConfig()
			if tc.mod != nil {
				tc.mod(&c)
			}
			votes := append([]Vote{tc.best}, tc.others...)
			d := Decision{OK: true, StudentID: ids[0], Best: tc.best}
			ev := Evidence(votes, d, g, VoteConfig{Threshold: tc.th})
			if got := c.Failed(ev); !slices.Equal(got, tc.want) {
				t.Fatalf("failed %v, want %v (evidence %+v)", got, tc.want, ev)
			}
			if tc.want != nil {
				return
			}
			tm := ev.Template()
			if tm == nil || !slices.Equal(tm.Descriptor, tc.best.Descriptor.Bytes()) || tm.Votes != len(votes) || tm.Agreeing > tm.Votes {
				t.Fatalf("template %+v", tm)
			}
			if want := tc.th - match.Distance(tc.best.Descriptor, unitVec(1, 0, 0, 0)); math.Abs(tm.DistanceMargin-want) > 1e-6 {
				t.Fatalf("distance margin %g, want %g", tm.DistanceMargin, want)
			}
		})
	}
}

// TestAutoTemplateConfigValidate: the defaults pass; each bad field is
// named.
func TestAutoTemplateConfigValidate(t *testing.T) {
	cases := []struct {
		field string
		mod   func(*AutoTemplateConfig)
	}{
		{"", func(*AutoTemplateConfig) {}},
		{"", func(c *AutoTemplateConfig) { c.Enabled, c.MinDistanceMargin, c.MinMargin = false, 0, 0 }},
		{"pipeline.auto_template.min_distance_margin", func(c *AutoTemplateConfig) { c.MinDistanceMargin = -0.1 }},
		{"pipeline.auto_template.min_distance_margin", func(c *AutoTemplateConfig) { c.MinDistanceMargin = math.NaN() }},
		{"pipeline.auto_template.min_margin", func(c *AutoTemplateConfig) { c.MinMargin = 2 }},
		{"pipeline.auto_template.min_agreeing", func(c *AutoTemplateConfig) { c.MinAgreeing = 0 }},
		{"pipeline.auto_template.max_disagreeing", func(c *AutoTemplateConfig) { c.MaxDisagreeing = -1 }},
		{"pipeline.auto_template.quality.max_yaw_deg", func(c *AutoTemplateConfig) { c.Quality.MaxYawDeg = 100 }},
	}
	for _, tc := range cases {
		cfg := DefaultConfig()
		tc.mod(&cfg.AutoTemplate)
		err := cfg.Validate("pipeline")
		var fe *conf.FieldError
		switch {
		case tc.field == "" && err != nil:
			t.Errorf("valid config refused: %v", err)
		case tc.field != "" && (!errors.As(err, &fe) || fe.Field != tc.field):
			t.Errorf("got %v, want an error on %s", err, tc.field)
		}
	}
	if d := DefaultConfig().AutoTemplate; !d.Enabled || d.MinAgreeing != 3 || d.MaxDisagreeing != 0 {
		t.Fatalf("defaults %+v: want on, every vote agreeing, at least 3", d)
	}
}

// TestAutoTemplateOnEvents: through the pipeline's own decision and
// outbox, a track decided after three votes that all name the pupil
// sends its best crop's descriptor with the event; a track decided after
// two votes, or with a vote for another pupil, sends none and counts the
// agreement rule; with auto_template off nothing is counted.
func TestAutoTemplateOnEvents(t *testing.T) {
	ids := []string{"000000000001", "000000000002", "000000000003", "000000000004"}
	pupils := []match.Descriptor{unitVec(1, 0, 0, 0), unitVec(0, 1, 0, 0), unitVec(0, 0, 1, 0), unitVec(0, 0, 0, 1)}
	near := unitVec(0.98, 0.2, 0, 0)  // 0.20 from pupil 1: accepted at 0.4
	named := unitVec(0.9, 0.45, 0, 0) // 0.46 from pupil 1: names it, not accepted
	other := unitVec(0.4, 0.9, 0, 0)  // names pupil 2, not accepted
	cases := []struct {
		name     string
		ds       []match.Descriptor
		off      bool
		template bool
		refused  map[string]int64
	}{
		{"three agreeing votes", []match.Descriptor{named, near, near}, false, true, map[string]int64{}},
		{"decided on two votes", []match.Descriptor{near, near}, false, false, map[string]int64{RuleAgreement: 1}},
		{"a vote for another pupil", []match.Descriptor{other, near, near}, false, false, map[string]int64{RuleAgreement: 1}},
		{"off", []match.Descriptor{named, near, near}, true, false, map[string]int64{}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			gal := match.NewGallery(3, match.DefaultEmbedder)
			for i := range ids {
				if err := gal.Add(ids[i], pupils[i]); err != nil {
					t.Fatal(err)
				}
			}
			cfg := DefaultConfig()
			cfg.SchoolID, cfg.GateID = "s", "g"
			cfg.Vote.Threshold, cfg.CalibrateFAR = 0.4, 0
			cfg.AutoTemplate.Enabled = !tc.off
			db, err := store.Open(filepath.Join(t.TempDir(), "edge.db"), store.Options{}, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			evs, _, st := runScriptedTrack(t, cfg, gal, db, tc.ds)
			if len(evs) != 1 || evs[0].StudentID != ids[0] {
				t.Fatalf("events %v, want one for pupil 1", evs)
			}
			stored := storedEvent(t, db, evs[0].EventID)
			if got := stored.Template != nil; got != tc.template {
				t.Fatalf("stored event has a template: %v, want %v", got, tc.template)
			}
			if tc.template {
				tm := stored.Template
				if !slices.Equal(tm.Descriptor, near.Bytes()) || tm.Agreeing != 3 || tm.Votes != 3 ||
					math.Abs(tm.DistanceMargin-(0.4-match.Distance(near, pupils[0]))) > 1e-6 {
					t.Fatalf("template %+v", tm)
				}
			}
			if n := st.AutoTemplates.Load(); n != map[bool]int64{true: 1}[tc.template] {
				t.Fatalf("%d templates counted", n)
			}
			for _, r := range AutoTemplateRules {
				if got := st.AutoTemplateRefusals()[r]; got != tc.refused[r] {
					t.Fatalf("rule %s counted %d, want %d", r, got, tc.refused[r])
				}
			}
		})
	}
}

// storedEvent decodes the outbox's event id.
func storedEvent(t *testing.T, db *store.DB, id string) *wire.Event {
	t.Helper()
	recs, err := db.Pending(context.Background(), 10)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range recs {
		if r.Kind != wire.TopicKindEvents {
			continue
		}
		ev, err := wire.DecodeEvent(r.Payload)
		if err != nil {
			t.Fatal(err)
		}
		if ev.EventID == id {
			return ev
		}
	}
	t.Fatalf("event %s is not in the outbox", id)
	return nil
}
