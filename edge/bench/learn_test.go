package bench

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/diemdanh/diemdanh/edge/pipeline"
	"github.com/diemdanh/diemdanh/edge/sim"
	"github.com/diemdanh/diemdanh/hub/facetemplates"
	"github.com/diemdanh/diemdanh/models/conf"
	"github.com/diemdanh/diemdanh/models/faceengine"
)

// TestSuiteLearning runs a small real suite's days twice, without
// learning (the control) and with it (the teacher played through a real
// hub after each day), and checks that:
//   - the control reports "learning": false with the learning keys, the
//     suite's gallery every day and nothing added, and its per-day
//     tallies are those of `edge bench --video` on each day's video with
//     the suite's gallery;
//   - with learning, day 1 is the control's day 1 (the hub's first
//     gallery is the suite's, with the same threshold), templates are
//     added, the gallery's version advances and it grows by what was
//     added, the hub ingests every message and the teacher's counts add up;
//   - no template is added for a pupil the truth did not have in view
//     during the capture it came from (teacher templates: the track;
//     automatic ones: the deciding frame of a right announcement).
func TestSuiteLearning(t *testing.T) {
	path := smallSuite(t, 3)
	s, err := sim.LoadSuite(path)
	if err != nil {
		t.Fatal(err)
	}
	ec := faceengine.DefaultEngineConfig()
	ec.ModelsDir, ec.Workers = conf.TestModelsDir(), 2
	pc := pipeline.DefaultConfig()
	o := SuiteOptions{Suite: path, Engine: ec, Pipeline: pc, Rules: []string{pipeline.DecisionVotes}}
	control, err := RunSuite(context.Background(), o, nil)
	if err != nil {
		t.Fatal(err)
	}
	checkControl(t, s, control)
	o.Learn = true
	var days []learnDay
	o.afterLearn = func(d learnDay) { days = append(days, d) }
	learnt, err := RunSuite(context.Background(), o, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(learnt)
	t.Logf("learning: %s", b)
	checkSuiteLearning(t, control, learnt, days)
	for _, d := range days {
		checkAddedAgainstTruth(t, d)
	}
}

// checkControl checks the control's learning keys and that each day's
// tally is that of the single-video bench on the day.
func checkControl(t *testing.T, s *sim.Suite, control *SuiteResult) {
	t.Helper()
	m := map[string]any{}
	b, _ := json.Marshal(control)
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	if l, ok := m["learning"]; !ok || l != false {
		t.Errorf("control: learning = %v (present %v)", l, ok)
	}
	for _, d := range m["days"].([]any) {
		checkKeys(t, d.(map[string]any), "control days[]", "gallery_version", "gallery_templates", "threshold",
			"templates_added", "automatic_offers", "review", "hub_ingest", "teacher_actions")
	}
	ec := faceengine.DefaultEngineConfig()
	ec.ModelsDir, ec.Workers = conf.TestModelsDir(), 2
	for i, d := range control.Days {
		if d.TemplatesAdded != (TemplatesAdded{}) || len(d.AutomaticOffers) != 0 || d.Review != control.Days[0].Review || d.GalleryVersion != control.Days[0].GalleryVersion ||
			d.GalleryTemplates != control.Days[0].GalleryTemplates || d.GalleryTemplates < s.GallerySize {
			t.Errorf("control day %d: %+v", d.Day, d.DayLearning)
		}
		sd := s.Days[i]
		one, err := Run(context.Background(), Options{Video: s.Path(sd.Video), Truth: s.Path(sd.Truth), Gallery: s.Path(s.Gallery),
			Engine: ec, Pipeline: pipeline.DefaultConfig()}, nil)
		if err != nil {
			t.Fatal(err)
		}
		if got := tallyOf(one.Accuracy); got != d.Tally {
			t.Errorf("day %d: the suite's control %+v, edge bench --video %+v", d.Day, d.Tally, got)
		}
	}
}

// checkSuiteLearning compares the learning run with the control.
func checkSuiteLearning(t *testing.T, control, learnt *SuiteResult, days []learnDay) {
	t.Helper()
	if !learnt.Learning || len(learnt.Days) != len(control.Days) || len(days) != len(learnt.Days) {
		t.Fatalf("learning %v, %d days (control %d, hook %d)", learnt.Learning, len(learnt.Days), len(control.Days), len(days))
	}
	if learnt.Days[0].Tally != control.Days[0].Tally || learnt.Days[0].Threshold != control.Days[0].Threshold ||
		learnt.Days[0].GalleryTemplates != control.Days[0].GalleryTemplates {
		t.Errorf("day 1 with learning %+v (threshold %g, %d templates), control %+v (threshold %g, %d templates)",
			learnt.Days[0].Tally, learnt.Days[0].Threshold, learnt.Days[0].GalleryTemplates,
			control.Days[0].Tally, control.Days[0].Threshold, control.Days[0].GalleryTemplates)
	}
	added := 0
	for i, d := range learnt.Days {
		checkTally(t, "learning day", d.Tally)
		r, in, sent := d.Review, d.HubIngest, 0
		for _, dec := range days[i].decs {
			if dec.enqueued {
				sent++
			}
		}
		if r.Faces != r.Confirmed+r.Dismissed+r.Unsure || r.Faces != len(days[i].tracks) || in.Quarantined != 0 ||
			in.Stored < sent+r.Faces || r.Undone != d.WrongStudent+d.VisitorAsStudent {
			t.Errorf("day %d: review %+v, ingest %+v, %d events sent, %d unrecognised, tally %+v", d.Day, r, in, sent,
				len(days[i].tracks), d.GateTally)
		}
		n := d.TemplatesAdded.Teacher + d.TemplatesAdded.Automatic
		if n != len(days[i].report.Added) || d.TemplatesAdded.Teacher > r.Confirmed || d.TemplatesAdded.Automatic != d.AutomaticOffers["added"] {
			t.Errorf("day %d: %+v added, the hub's report lists %d, %d confirmed, offers %v", d.Day, d.TemplatesAdded,
				len(days[i].report.Added), r.Confirmed, d.AutomaticOffers)
		}
		added += n
		if i == 0 {
			continue
		}
		prev := learnt.Days[i-1]
		grew := prev.TemplatesAdded.Teacher + prev.TemplatesAdded.Automatic
		if (grew > 0 && d.GalleryVersion <= prev.GalleryVersion) || d.GalleryTemplates != prev.GalleryTemplates+grew {
			t.Errorf("day %d: gallery v%d with %d templates after v%d with %d and %d added", d.Day, d.GalleryVersion,
				d.GalleryTemplates, prev.GalleryVersion, prev.GalleryTemplates, grew)
		}
	}
	if added == 0 {
		t.Errorf("no template added over %d days", len(learnt.Days))
	}
}

// checkAddedAgainstTruth checks every template a learning day added
// against the day's truth: a teacher template's pupil walked while the
// track it came from lasted; an automatic one's event named its pupil
// while the pupil walked.
func checkAddedAgainstTruth(t *testing.T, d learnDay) {
	t.Helper()
	slack := int64(d.day.truth.FPS)
	walked := func(pupil string, first, last int64) bool {
		for _, p := range d.day.truth.Passages {
			if p.StudentID == pupil && !p.Visitor() && p.FirstFrame-slack <= last && first <= p.LastFrame+slack {
				return true
			}
		}
		return false
	}
	for _, a := range d.report.Added {
		ok := false
		switch a.Source {
		case facetemplates.SourceTeacher:
			for _, tr := range d.tracks {
				if tr.CaptureID == a.EventID {
					ok = walked(a.PupilID, tr.First, tr.Last)
				}
			}
		case facetemplates.SourceAutomatic:
			for _, dec := range d.decs {
				if dec.eventID == a.EventID {
					ok = dec.student == a.PupilID && walked(a.PupilID, dec.frame, dec.frame)
				}
			}
		}
		if !ok {
			t.Errorf("day %d: %s template for %s from %s, not in view then by the truth", d.day.day, a.Source, a.PupilID, a.EventID)
		}
	}
}
