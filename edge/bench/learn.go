package bench

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/diemdanh/diemdanh/edge/sim"
	"github.com/diemdanh/diemdanh/hub/bench/gatelearn"
	"github.com/diemdanh/diemdanh/hub/facetemplates"
	"github.com/diemdanh/diemdanh/hub/ingest"
	"github.com/diemdanh/diemdanh/models/faceengine"
	"github.com/diemdanh/diemdanh/models/wire"
)

// The per-day hook of `edge bench --suite --learn`: before each day the
// gate takes the gallery it downloaded from the hub of hub/bench/gatelearn
// and runs on that hub's clock; after the day the hub gets what the gate
// published, with the truth the teacher knows, and learns from it.

// The school and gate of the gate's messages in a run.
const (
	benchSchool = "bench"
	benchGate   = "gate-1"
)

// DayLearning is a day's gallery and what learning did after the day. A
// run without learning has the same keys: the suite's gallery every day,
// nothing added.
type DayLearning struct {
	GalleryVersion   int64   `json:"gallery_version"`   // of the gallery the day ran with
	GalleryTemplates int     `json:"gallery_templates"` // its descriptors
	Threshold        float64 `json:"threshold"`         // the threshold in force that day
	// TemplatesAdded are the gate templates the hub added from the day's
	// captures (used from the next day on), by source.
	TemplatesAdded TemplatesAdded `json:"templates_added"`
	// AutomaticOffers counts what came of the templates the gate offered
	// with its events, by hub/learn's result (added, already_today, drift,
	// paused, …).
	AutomaticOffers map[string]int `json:"automatic_offers"`
	// Review is what the teacher did on the day's review board; HubIngest
	// what the hub's ingest did with the gate's messages.
	Review    gatelearn.ReviewCounts `json:"review"`
	HubIngest gatelearn.IngestCounts `json:"hub_ingest"`
}

// TemplatesAdded counts gate templates by source.
type TemplatesAdded struct {
	Teacher   int `json:"teacher"`
	Automatic int `json:"automatic"`
}

// learnDay is one learning day, for tests: the hub's report with the
// tracks and decisions it came from.
type learnDay struct {
	day    suiteDay
	report gatelearn.DayReport
	tracks []gatelearn.Track
	decs   []decision
}

// learner is the hub a rule's run learns through.
type learner struct {
	hub   *gatelearn.Hub
	dir   string
	suite *sim.Suite
}

// newLearner builds the hub of a learning run over suite s with its
// gallery doc, in a scratch folder.
func newLearner(ctx context.Context, o SuiteOptions, s *sim.Suite, doc *wire.GalleryDoc, eng *faceengine.Engine, log *slog.Logger) (*learner, error) {
	dir, err := os.MkdirTemp("", "edge-bench-learn-")
	if err != nil {
		return nil, err
	}
	pupils := make([]gatelearn.Pupil, len(s.Pupils))
	for i, p := range s.Pupils {
		pupils[i] = gatelearn.Pupil{ID: p.StudentID, Name: p.Name, Set: p.Set}
	}
	t0 := time.Now()
	hub, err := gatelearn.Open(ctx, gatelearn.Config{Dir: dir, SchoolID: benchSchool, GateID: benchGate, Engine: eng,
		Suite: doc, Pupils: pupils, CalibrateFAR: o.Pipeline.CalibrateFAR, Log: log})
	if err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("learning hub: %w", err)
	}
	log.Info("learning hub ready", "pupils", len(pupils), "seconds", time.Since(t0).Seconds())
	return &learner{hub: hub, dir: dir, suite: s}, nil
}

func (l *learner) close() {
	l.hub.Close()
	os.RemoveAll(l.dir)
}

// begin starts day d: the gallery and the clock the gate runs it with.
func (l *learner) begin(d suiteDay, in benchInputs, o Options) (benchInputs, Options) {
	l.hub.BeginDay(d.day)
	in.doc, in.gal = l.hub.Gallery()
	o.Now = l.hub.Now
	return in, o
}

// end gives the hub the day's messages and truth and returns what it
// learnt.
func (l *learner) end(ctx context.Context, d suiteDay, vr *videoRun) (gatelearn.DayReport, error) {
	in := gatelearn.DayInput{Day: d.day, FPS: d.truth.FPS, Tracks: vr.reviews}
	for _, m := range vr.published {
		in.Messages = append(in.Messages, ingest.Message{Topic: m.Topic, Payload: m.Payload, ClientID: benchGate})
	}
	for _, p := range d.truth.Passages {
		q := gatelearn.Passage{ID: p.ID, First: p.FirstFrame, Last: p.LastFrame, Photo: l.photoPath(p.Photo)}
		if !p.Visitor() {
			q.StudentID = p.StudentID
		}
		in.Passages = append(in.Passages, q)
	}
	for _, dec := range vr.decs {
		if dec.enqueued {
			in.Announcements = append(in.Announcements, gatelearn.Announcement{EventID: dec.eventID, StudentID: dec.student, Frame: dec.frame})
		}
	}
	return l.hub.EndDay(ctx, in)
}

// photoPath resolves a truth file's photo (relative to its source
// folder's parent) against the suite's sources.
func (l *learner) photoPath(rel string) string {
	first, _, _ := strings.Cut(rel, "/")
	for _, src := range l.suite.Sources {
		if filepath.Base(src.Dir) == first {
			return filepath.Join(filepath.Dir(src.Dir), filepath.FromSlash(rel))
		}
	}
	return rel
}

// learning is a day's DayLearning: the gallery it ran with and, when a
// hub learnt from it, what the hub did.
func learning(in benchInputs, vr *videoRun, rep *gatelearn.DayReport) DayLearning {
	dl := DayLearning{GalleryVersion: in.gal.Version, GalleryTemplates: in.gal.Len(), Threshold: vr.res.Threshold,
		AutomaticOffers: map[string]int{}}
	if in.doc != nil && dl.GalleryVersion == 0 {
		dl.GalleryVersion = in.doc.Version
	}
	if rep != nil {
		dl.TemplatesAdded = TemplatesAdded{Teacher: rep.Count(facetemplates.SourceTeacher), Automatic: rep.Count(facetemplates.SourceAutomatic)}
		dl.Review, dl.HubIngest, dl.AutomaticOffers = rep.Review, rep.Ingest, rep.Offers
	}
	return dl
}
