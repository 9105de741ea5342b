package bench

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"time"

	"github.com/diemdanh/diemdanh/edge/pipeline"
	"github.com/diemdanh/diemdanh/edge/sim"
	"github.com/diemdanh/diemdanh/hub/bench/gatelearn"
	"github.com/diemdanh/diemdanh/models/benchutil"
	"github.com/diemdanh/diemdanh/models/faceengine"
	"github.com/diemdanh/diemdanh/models/match"
	"github.com/diemdanh/diemdanh/models/wire"
)

// SuiteOptions configure a run over a suite of school days
// (`edge simulate --suite`).
type SuiteOptions struct {
	Suite    string // suite.json
	Engine   faceengine.EngineConfig
	Pipeline pipeline.Config
	// Rules are the decision rules (pipeline.Config.Decision) to run, each
	// over the same days in the same run; the report's top-level figures
	// are the first's. Empty: Pipeline.Decision alone.
	Rules []string
	// Days is how many school days to run, from day 1: 0 means every day,
	// or day 1 alone with Realtime (which plays each video at its own
	// pace).
	Days     int
	Realtime bool
	// Baseline and Peer run the naive baseline and the peer
	// (face_recognition's rule) over the first SlowDays days (at least 1,
	// at most the days run): both describe every face of every frame.
	Baseline, Peer bool
	SlowDays       int
	// Learn plays the teacher after each day through a hub
	// (hub/bench/gatelearn) and runs the next day with the gallery the
	// gate downloads from it (learn.go); each decision rule learns on a
	// hub of its own.
	Learn bool
	// afterLearn, when set (tests), sees each learning day.
	afterLearn func(learnDay)
}

// suiteDay is one school day to run: its video, truth and frame count.
type suiteDay struct {
	day    int
	video  string
	frames int64 // as the manifest says; 0 when it does not
	truth  *Truth
}

// checkFrames fails a run that read another number of frames than the
// day's video has (a video rewritten or cut short while the bench read
// it). Only a run that reads every frame (fast mode) can be checked.
func (d suiteDay) checkFrames(read int64) error {
	if d.frames > 0 && read != d.frames {
		return fmt.Errorf("day %d: read %d frames of %s, the suite says %d (was the suite rewritten during the run?)", d.day, read, d.video, d.frames)
	}
	return nil
}

// RunSuite runs the gate (once per decision rule) over the suite's days in
// fast mode, or in real time with o.Realtime, with the suite's gallery
// fixed across days, then the baseline and the peer over the first
// o.SlowDays days, and reports them as one SuiteResult.
func RunSuite(ctx context.Context, o SuiteOptions, log *slog.Logger) (*SuiteResult, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	start := time.Now()
	s, days, err := loadSuiteDays(o)
	if err != nil {
		return nil, err
	}
	doc, gal, err := wire.LoadGalleryFile(s.Path(s.Gallery))
	if err != nil {
		return nil, fmt.Errorf("suite gallery: %w", err)
	}
	eng, err := faceengine.NewEngine(o.Engine, log)
	if err != nil {
		return nil, fmt.Errorf("face engine: %w", err)
	}
	defer eng.Close()
	rules := o.Rules
	if len(rules) == 0 {
		rules = []string{o.Pipeline.Decision}
	}
	res := &SuiteResult{Suite: o.Suite, GallerySize: gal.People(), Realtime: o.Realtime, Learning: o.Learn}
	for i, rule := range rules {
		rr, err := runRule(ctx, o, rule, eng, s, days, benchInputs{doc: doc, gal: gal}, log)
		if err != nil {
			return nil, fmt.Errorf("decision %s: %w", rule, err)
		}
		if i == 0 {
			res.fill(rr)
		}
		if len(rules) > 1 {
			if res.Rules == nil {
				res.Rules = map[string]RuleReport{}
			}
			res.Rules[rule] = rr.report()
		}
	}
	res.RSSMB = maxRSSMB() // the gate's peak, before the baseline and the peer load theirs
	if err := res.runSlow(ctx, o, s, eng, gal, days, log); err != nil {
		return nil, err
	}
	res.ElapsedS = math.Round(time.Since(start).Seconds()*10) / 10
	return res, nil
}

// loadSuiteDays reads the manifest and the truth of each day to run.
func loadSuiteDays(o SuiteOptions) (*sim.Suite, []suiteDay, error) {
	s, err := sim.LoadSuite(o.Suite)
	if err != nil {
		return nil, nil, err
	}
	n := o.Days
	if n == 0 {
		n = len(s.Days)
		if o.Realtime {
			n = 1
		}
	}
	if n < 0 || n > len(s.Days) {
		return nil, nil, fmt.Errorf("suite %s: %d days asked, it has %d", o.Suite, n, len(s.Days))
	}
	days := make([]suiteDay, n)
	for i, d := range s.Days[:n] {
		t, err := LoadTruth(s.Path(d.Truth))
		if err != nil {
			return nil, nil, err
		}
		days[i] = suiteDay{day: d.Day, video: s.Path(d.Video), frames: int64(d.Frames), truth: t}
	}
	return s, days, nil
}

// ruleRun is one decision rule's gate over the days.
type ruleRun struct {
	days                   []DayTally
	total                  GateTally
	bySet                  map[string]SetTally
	lat                    latencyFigures
	frames, dropped        int64
	wall, cpu              time.Duration
	threshold, minMargin   float64
	detector, decisionRule string
}

// runRule runs the gate with decision rule rule ("" keeps the
// configured one) over every day, a fresh outbox, broker and pipeline
// each day. Without o.Learn the gallery stays the suite's; with it each
// day runs with the gallery the gate downloaded from the learning hub
// after the day before.
func runRule(ctx context.Context, o SuiteOptions, rule string, eng *faceengine.Engine, s *sim.Suite, days []suiteDay, in benchInputs, log *slog.Logger) (*ruleRun, error) {
	cfg := o.Pipeline
	if rule != "" {
		cfg.Decision = rule
	}
	if err := cfg.Validate("pipeline"); err != nil {
		return nil, err
	}
	var lr *learner
	if o.Learn {
		var err error
		if lr, err = newLearner(ctx, o, s, in.doc, eng, log); err != nil {
			return nil, err
		}
		defer lr.close()
	}
	rr := &ruleRun{bySet: map[string]SetTally{}, decisionRule: cfg.Decision}
	for _, d := range days {
		in.truth = d.truth
		vo := Options{Video: d.video, Engine: o.Engine, Pipeline: cfg, Realtime: o.Realtime}
		if lr != nil {
			in, vo = lr.begin(d, in, vo)
		}
		vr, err := runVideo(ctx, vo, eng, in, log)
		if err != nil {
			return nil, fmt.Errorf("day %d: %w", d.day, err)
		}
		if !o.Realtime {
			if err := d.checkFrames(vr.res.Frames); err != nil {
				return nil, err
			}
		}
		rr.addDay(d, vr, o.Realtime)
		var rep *gatelearn.DayReport
		if lr != nil {
			r, err := lr.end(ctx, d, vr)
			if err != nil {
				return nil, fmt.Errorf("day %d: learning: %w", d.day, err)
			}
			if rep = &r; o.afterLearn != nil {
				o.afterLearn(learnDay{day: d, report: r, tracks: vr.reviews, decs: vr.decs})
			}
		}
		rr.days[len(rr.days)-1].DayLearning = learning(in, vr, rep)
		// The day's pipeline is closed: give its freed C-heap pages back so
		// that rss_mb is what the process still holds.
		benchutil.TrimCHeap()
		inUse, free := benchutil.CHeapMB()
		log.Info("bench day", "decision", cfg.Decision, "day", d.day, "tpir", vr.res.TPIR, "fps", vr.res.FPS,
			"max_rss_mb", maxRSSMB(), "rss_mb", benchutil.RSSMB(), "go_heap_mb", benchutil.GoHeapMB(),
			"c_heap_in_use_mb", inUse, "c_heap_free_mb", free,
			"gallery_templates", rr.days[len(rr.days)-1].GalleryTemplates)
	}
	return rr, nil
}

// addDay scores one day's run and adds it to the totals.
func (rr *ruleRun) addDay(d suiteDay, vr *videoRun, realtime bool) {
	acc, found := scorePassages(d.truth, vr.decs)
	acc.Duplicates = vr.res.Duplicates // the pipeline's and the broker's
	day := DayTally{Day: d.day, Frames: vr.res.Frames,
		GateTally: GateTally{Tally: tallyOf(acc), UnknownTracks: vr.res.UnknownTracks}}
	rr.days = append(rr.days, day)
	rr.total.Tally.add(day.Tally)
	rr.total.UnknownTracks += day.UnknownTracks
	bySet(d.truth.Passages, found, rr.bySet)
	rr.lat.add(d.truth.FPS, announcements(d.truth, vr.decs, vr.acks), realtime)
	rr.frames += vr.res.Frames
	rr.dropped += vr.res.Dropped
	rr.wall += vr.wall
	rr.cpu += vr.cpu
	rr.threshold, rr.minMargin, rr.detector = vr.res.Threshold, vr.res.MinMargin, vr.res.Detector
}

// report is the rule's accuracy for SuiteResult.Rules.
func (rr *ruleRun) report() RuleReport {
	return RuleReport{Total: rr.total, BySet: rr.bySet, FPS: rr.fps(), CPUPerFrameMS: perFrame(rr.cpu, rr.frames)}
}

// fps is the gate's throughput over every day.
func (rr *ruleRun) fps() float64 {
	if rr.wall <= 0 {
		return 0
	}
	return math.Round(float64(rr.frames)/rr.wall.Seconds()*10) / 10
}

// runSlow measures the baseline and the peer over the first o.SlowDays
// days, when asked.
func (res *SuiteResult) runSlow(ctx context.Context, o SuiteOptions, s *sim.Suite, eng *faceengine.Engine, gal *match.Gallery, days []suiteDay, log *slog.Logger) error {
	slow := days[:min(max(o.SlowDays, 1), len(days))]
	if o.Baseline {
		b, err := slowReport(ctx, slow, false, func(ctx context.Context, video string) (*frameRun, error) {
			return baselineMatches(ctx, video, eng, gal, res.Threshold, res.MinMargin, log)
		})
		if err != nil {
			return fmt.Errorf("baseline: %w", err)
		}
		b.Threshold, b.Rule = res.Threshold, "one frame within the gate's threshold and margin"
		res.Baseline = b
		if b.FPS > 0 {
			res.ThroughputRatio = math.Round(res.FPS/b.FPS*100) / 100
		}
	}
	if o.Peer {
		p, err := runPeer(ctx, s, eng, slow, log)
		if err != nil {
			return fmt.Errorf("peer: %w", err)
		}
		res.Peer = p
	}
	return nil
}

// runPeer runs face_recognition's rule (peer.go) with the reference model
// and the suite's reference gallery.
func runPeer(ctx context.Context, s *sim.Suite, eng *faceengine.Engine, days []suiteDay, log *slog.Logger) (*SlowReport, error) {
	doc, gal, err := wire.LoadGalleryFile(s.Path(s.ReferenceGallery))
	if err != nil {
		return nil, fmt.Errorf("reference gallery: %w", err)
	}
	if doc.Model.Name != faceengine.ReferenceModel.Name {
		return nil, fmt.Errorf("reference gallery %s: model %s, want %s", s.ReferenceGallery, doc.Model, faceengine.ReferenceModel)
	}
	ref, closeRef, err := eng.ReferenceEngine()
	if err != nil {
		return nil, fmt.Errorf("reference engine: %w", err)
	}
	defer closeRef()
	p, err := slowReport(ctx, days, true, func(ctx context.Context, video string) (*frameRun, error) {
		return peerMatches(ctx, video, ref, gal, log)
	})
	if err != nil {
		return nil, err
	}
	p.Threshold, p.Rule = peerTolerance, fmt.Sprintf("nearest %s descriptor within %g, every frame, HOG upsampled %d×", faceengine.ReferenceModel.Name, peerTolerance, peerUpsample)
	return p, nil
}

// slowReport plays each day's video through a per-frame rule (matches),
// announces each pupil's first matched frame and scores the days.
func slowReport(ctx context.Context, days []suiteDay, peer bool, matches func(context.Context, string) (*frameRun, error)) (*SlowReport, error) {
	rep := &SlowReport{BySet: map[string]SetTally{}, DaysCovered: []int{}}
	var frames int64
	var wall, cpu time.Duration
	wrongFrames := 0
	for _, d := range days {
		run, err := matches(ctx, d.video)
		if err != nil {
			return nil, fmt.Errorf("day %d: %w", d.day, err)
		}
		if err := d.checkFrames(run.frames); err != nil {
			return nil, err
		}
		acc, found := scorePassages(d.truth, announceFirst(run.matches))
		rep.Tally.add(tallyOf(acc))
		bySet(d.truth.Passages, found, rep.BySet)
		wrongFrames += framesWithWrongName(d.truth, run.matches)
		frames, wall, cpu = frames+run.frames, wall+run.wall, cpu+run.cpu
		rep.DaysCovered = append(rep.DaysCovered, d.day)
	}
	rep.Frames, rep.CPUPerFrameMS = frames, perFrame(cpu, frames)
	if wall > 0 {
		rep.FPS = math.Round(float64(frames)/wall.Seconds()*10) / 10
	}
	if peer {
		rep.FramesWithWrongName = &wrongFrames
	}
	return rep, nil
}
