package pipeline

import (
	"context"
	"errors"
	"fmt"
	"image"
	"io"
	"log/slog"
	"math"
	"sync"
	"time"

	"github.com/diemdanh/diemdanh/edge/capture"
	"github.com/diemdanh/diemdanh/models/conf"
	"github.com/diemdanh/diemdanh/models/faceengine"
	"github.com/diemdanh/diemdanh/models/match"
	"github.com/diemdanh/diemdanh/models/wire"
	"gocv.io/x/gocv"
	"golang.org/x/sync/errgroup"
)

// Pipeline is the gate's recognition pipeline.
type Pipeline struct {
	cfg     Config
	log     *slog.Logger
	now     func() time.Time
	workers int
	desc    Describer
	gal     GallerySource
	out     Outbox
	notify  func()
	hooks   Hooks
	Stats   *Stats
	metrics *Metrics

	mu      sync.Mutex
	tracker *Tracker

	calMu  sync.Mutex
	calFor *match.Gallery     // gallery the cached calibration belongs to
	calThs map[string]float64 // per candidate window ("" = all); 0: none

	cand candState // candidate restriction (candidates.go)

	modelsDir string // YuNet's weights (Deps.ModelsDir)
	minFace   int    // the running detector's MinFace
}

// New builds a pipeline.
func New(cfg Config, d Deps, log *slog.Logger, now func() time.Time) (*Pipeline, error) {
	if err := cfg.Validate("pipeline"); err != nil {
		return nil, err
	}
	if !wire.ValidID(cfg.SchoolID) {
		return nil, conf.Fieldf("school_id", "invalid %q", cfg.SchoolID)
	}
	if !wire.ValidID(cfg.GateID) {
		return nil, conf.Fieldf("gate_id", "invalid %q", cfg.GateID)
	}
	if cfg.Direction != wire.DirectionIn && cfg.Direction != wire.DirectionOut {
		return nil, conf.Fieldf("direction", "must be in or out, got %q", cfg.Direction)
	}
	if d.Describer == nil || d.Gallery == nil || d.Outbox == nil {
		return nil, errors.New("pipeline: describer, gallery and outbox are required")
	}
	if cfg.Location == nil {
		cfg.Location = time.UTC
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if now == nil {
		now = time.Now
	}
	if d.Workers < 1 {
		d.Workers = 1
	}
	if d.Notify == nil {
		d.Notify = func() {}
	}
	if d.Stats == nil {
		d.Stats = &Stats{}
	}
	return &Pipeline{cfg: cfg, log: log, now: now, workers: d.Workers, desc: d.Describer, gal: d.Gallery,
		out: d.Outbox, notify: d.Notify, hooks: d.Hooks, Stats: d.Stats, metrics: d.Metrics,
		tracker: NewTracker(cfg.Tracker), modelsDir: d.ModelsDir}, nil
}

// job asks a worker to describe one track's crop.
type job struct {
	tr     *Track
	region gocv.Mat        // cloned crop of the full frame around the face
	box    image.Rectangle // face box in region coordinates
	frame  int64
	at     time.Time
	// slot, with WaitForWorkers: the worker leaves its vote there and the
	// detect loop applies it, in dispatch order, two frames later
	// (applyDue), so the outcome never depends on which worker finishes
	// first.
	slot *voteSlot
}

// voteSlot carries one job's outcome from a worker to the detect loop.
type voteSlot struct {
	j    job
	vote *Vote
	done sync.WaitGroup
}

// framedSlots are the jobs dispatched while processing one frame.
type framedSlots struct {
	call  int64 // detState.calls when they were dispatched
	slots []*voteSlot
}

// emission is an event, or an unrecognised face (review), ready for the
// outbox.
type emission struct {
	ev     *wire.Event
	review *review
	info   EventInfo
}

// DebounceKey is the persisted key of "one arrival per pupil per day per
// direction".
func DebounceKey(at time.Time, loc *time.Location, student, direction string) string {
	return at.In(loc).Format("2006-01-02") + "|" + student + "|" + direction
}

// Run processes frames from src until it ends (io.EOF → nil) or ctx is
// cancelled. Events decided before it returns are committed to the outbox
// even when ctx is cancelled.
func (p *Pipeline) Run(ctx context.Context, src FrameSource) error {
	det, err := p.newDetector()
	if err != nil {
		return fmt.Errorf("pipeline: %w", err)
	}
	p.minFace = det.MinFace()
	p.log.Info("face detector", "detector", p.detectorName())
	defer det.Close()
	op := p.voteConfig() // calibrates now rather than under the lock later
	p.log.Info("operating point", "threshold", op.Threshold, "min_margin", op.MinMargin, "m", op.M, "k", op.K)
	jobs := make(chan job, p.workers)
	emits := make(chan emission, 64)
	g, gctx := errgroup.WithContext(ctx)
	var wg sync.WaitGroup
	// detect → track
	g.Go(func() error {
		defer close(jobs)
		return p.detectLoop(gctx, src, det, jobs, emits)
	})
	// recognise
	for i := 0; i < p.workers; i++ {
		wg.Add(1)
		g.Go(func() error {
			defer wg.Done()
			for j := range jobs {
				p.work(gctx, j, emits)
			}
			return nil
		})
	}
	g.Go(func() error {
		wg.Wait()
		// Every track has ended by now (detectLoop flushes); finalise the
		// ones whose last descriptor arrived after they ended.
		p.mu.Lock()
		var late []emission
		for _, tr := range p.tracker.Flush() {
			late = append(late, p.finishLocked(tr)...)
		}
		p.mu.Unlock()
		for _, e := range late {
			emits <- e
		}
		close(emits)
		return nil
	})
	// publish: always drains, so a decided event is never dropped.
	g.Go(func() error {
		store := context.WithoutCancel(ctx)
		var firstErr error
		for e := range emits {
			if err := p.commit(store, e); err != nil && firstErr == nil {
				firstErr = err
			}
		}
		return firstErr
	})
	err = g.Wait()
	if errors.Is(err, io.EOF) {
		err = nil
	}
	return err
}

func (p *Pipeline) commit(ctx context.Context, e emission) error {
	if e.review != nil {
		p.commitReview(ctx, e)
		return nil
	}
	var err error
	if e.info.Unknown {
		err = p.out.Enqueue(ctx, e.ev)
		e.info.Enqueued = err == nil
	} else {
		key := DebounceKey(e.info.DecisionAt, p.cfg.Location, e.ev.StudentID, e.ev.Direction)
		e.info.Enqueued, err = p.out.EnqueueDebounced(ctx, e.ev, key, e.info.DecisionAt, p.cfg.Cooldown)
	}
	if err != nil {
		p.Stats.Errors.Add(1)
		p.log.Error("event not stored", "event_id", e.ev.EventID, "student_id", e.ev.StudentID, "err", err)
		return nil // an alarm, logged and counted; the pipeline keeps running
	}
	if e.info.Enqueued {
		p.Stats.Events.Add(1)
		p.notify()
	} else {
		p.Stats.Debounced.Add(1)
	}
	if p.hooks.OnEvent != nil {
		p.hooks.OnEvent(e.ev, e.info)
	}
	return nil
}

// detector state reused across frames.
type detState struct {
	// WaitForWorkers: the jobs in flight, oldest frame first, and the
	// number of processFrame calls so far.
	inflight                      []framedSlots
	calls                         int64
	small, gray, tiny, prev, diff gocv.Mat
	fine, moved                   gocv.Mat // fine pass: window grey, thresholded motion
	hasPrev, hasMoved             bool
	lastDetect                    int64
}

func (s *detState) close() {
	for _, m := range []*gocv.Mat{&s.small, &s.gray, &s.tiny, &s.prev, &s.diff, &s.fine, &s.moved} {
		m.Close()
	}
}

func (p *Pipeline) detectLoop(ctx context.Context, src FrameSource, det faceDetector, jobs chan<- job, emits chan<- emission) error {
	st := &detState{small: gocv.NewMat(), gray: gocv.NewMat(), tiny: gocv.NewMat(), prev: gocv.NewMat(), diff: gocv.NewMat(),
		fine: gocv.NewMat(), moved: gocv.NewMat()}
	defer st.close()
	// However the loop ends, the votes in flight land (Run finalises the
	// tracks after the workers stop).
	defer p.applyDue(st, math.MaxInt64, emits)
	for {
		f, err := src.Next(ctx)
		if err != nil {
			p.applyDue(st, math.MaxInt64, emits) // every vote in flight lands before the tracks end
			p.mu.Lock()
			var out []emission
			for _, tr := range p.tracker.Flush() {
				p.Stats.TracksEnded.Add(1)
				out = append(out, p.finishLocked(tr)...)
			}
			p.mu.Unlock()
			for _, e := range out {
				emits <- e
			}
			if errors.Is(err, io.EOF) {
				return nil // let the workers finish the last crops
			}
			return err
		}
		p.Stats.Frames.Add(1)
		err = p.processFrame(ctx, f, det, st, jobs, emits)
		f.Mat.Close()
		if err != nil {
			return err
		}
	}
}

// processFrame runs one frame through the gate's named steps (stages.go):
//
//	skip settled → motion gate → coarse detect → fine detect → track →
//	choose describes → dispatch
//
// Locking: p.mu guards the tracker and its tracks, which the workers also
// update (applyVote). Of the frame's steps only processFrame takes it, in
// the marked sections below: once before detection to read the tracks,
// once after it to track, choose and claim, and once more only when a
// claimed crop reached no worker. Steps named …Locked run inside a
// section; the others run outside: the image work, detection and the
// channel sends never hold up a worker's vote, and a send never waits
// with the lock held.
func (p *Pipeline) processFrame(ctx context.Context, f capture.Frame, det faceDetector, st *detState, jobs chan<- job, emits chan<- emission) error {
	st.calls++
	p.applyDue(st, st.calls-voteLag+1, emits) // votes of the jobs dispatched voteLag calls ago and before
	if !p.usableFrame(f) {
		return nil
	}
	p.mu.Lock() // ── lock: read the tracks
	view := p.viewLocked()
	p.mu.Unlock()
	if p.skipSettled(f, st, view) {
		return nil
	}
	t0 := time.Now()
	fw := p.prepare(f, st)
	if p.motionGate(fw, st, view) || !p.coarseDetect(fw, det, st) {
		return nil
	}
	p.addFineFaces(fw, det, st, view.live)
	p.metrics.observeDetect(time.Since(t0).Seconds())
	p.Stats.Faces.Add(int64(len(fw.boxes)))

	p.mu.Lock() // ── lock: track, choose and claim the describes
	assigned, out := p.trackLocked(fw)
	claims := p.chooseDescribesLocked(fw, assigned)
	overlays := p.overlaysLocked(fw, assigned)
	p.mu.Unlock()

	err := p.emitAll(ctx, out, emits)
	if err == nil {
		err = p.dispatch(ctx, fw, claims, st, jobs)
	}
	if !allSent(claims) {
		p.mu.Lock() // ── lock: hand back the claims no worker took
		p.releaseLocked(f.Index, claims)
		p.mu.Unlock()
	}
	if err != nil {
		return err
	}
	p.onFrame(f, overlays)
	return nil
}

// grownEnough reports whether a track's face of width px on frame idx may
// be described again: at once while an accepted vote waits for
// corroboration, otherwise once the face has grown enough since the last
// attempt (DescribeGrowth) or waited long enough (DescribeMaxGap).
func (p *Pipeline) grownEnough(tr *Track, px int, idx int64, vc VoteConfig) bool {
	if p.cfg.DescribeGrowth <= 0 || tr.LastDescribePx == 0 {
		return true
	}
	for _, v := range tr.Votes {
		if v.Accepted(vc) {
			return true
		}
	}
	if idx-tr.LastDescribe >= int64(p.cfg.DescribeMaxGap) {
		return true
	}
	return float64(px)+1e-9 >= float64(tr.LastDescribePx)*(1+p.cfg.DescribeGrowth)
}

func (p *Pipeline) onFrame(f capture.Frame, o []Overlay) {
	if p.hooks.OnFrame != nil {
		p.hooks.OnFrame(f, o)
	}
}

// work describes one crop, votes, and emits a decision when there is one.
func (p *Pipeline) work(ctx context.Context, j job, emits chan<- emission) {
	defer j.region.Close()
	t0 := time.Now()
	fc, err := p.desc.DescribeCrop(ctx, j.region, j.box)
	p.metrics.observeDescribe(time.Since(t0).Seconds())
	p.Stats.Describes.Add(1)
	var vote *Vote
	switch {
	case err != nil:
		if ctx.Err() == nil {
			p.Stats.Errors.Add(1)
			p.log.Warn("describe failed", "track", j.tr.ID, "err", err)
		}
	case fc == nil:
		p.Stats.DescribeMisses.Add(1)
	default:
		if rs := p.cfg.VoteQuality.CheckQuality(fc.Quality); len(rs) > 0 {
			p.Stats.QualityRejects.Add(1)
			break
		}
		_, gal := p.gal.Current()
		if gal == nil || gal.Len() == 0 {
			break
		}
		v := Vote{Match: gal.MatchFiltered(fc.Descriptor, p.candidateFilter(gal)), Descriptor: fc.Descriptor,
			Quality: fc.Quality, Score: fc.Quality.Score(), Frame: j.frame}
		if p.cfg.FaceCrop || p.cfg.ReportUnrecognised {
			v.JPEG = faceJPEG(j.region, fc.Box, p.cfg.FaceCropWidth) // fc.Box is in region coordinates
		}
		vote = &v
	}
	if j.slot != nil {
		j.slot.vote = vote
		j.slot.done.Done()
		return // the detect loop applies it (applyDue)
	}
	p.applyVote(j, vote, emits)
}

// applyDue waits for, and applies in dispatch order, the votes of the jobs
// dispatched at processFrame call `before` - 1 or earlier (every one when
// before is math.MaxInt64): with WaitForWorkers, a frame's descriptors
// overlap the next frame's detection and land at the start of the frame
// after it, whatever the workers' timing.
func (p *Pipeline) applyDue(st *detState, before int64, emits chan<- emission) {
	for len(st.inflight) > 0 && st.inflight[0].call < before {
		for _, sl := range st.inflight[0].slots {
			sl.done.Wait()
			p.applyVote(sl.j, sl.vote, emits)
		}
		st.inflight = st.inflight[1:]
	}
}

// applyVote adds a described crop's vote (nil: no usable face) to its
// track, decides, and emits the decision and a finished track's event.
func (p *Pipeline) applyVote(j job, vote *Vote, emits chan<- emission) {
	p.mu.Lock()
	j.tr.Pending--
	var out []emission
	if vote != nil && !j.tr.Decided {
		j.tr.Votes = append(j.tr.Votes, *vote)
		vc := p.voteConfig()
		d := p.decideLocked(j.tr.Votes, vc)
		j.tr.Decision = d // an undecided one keeps its Reason, for the log
		if d.OK {
			j.tr.Decided = true
			p.Stats.Decisions.Add(1)
			p.metrics.observeDecide(j.at.Sub(j.tr.FirstSeen).Seconds())
			e := p.emissionLocked(j.tr, d, j.frame, j.at, false)
			e.ev.Template = p.autoTemplateLocked(j.tr.Votes, d, vc)
			out = append(out, e)
		}
	}
	if j.tr.Ended {
		out = append(out, p.finishLocked(j.tr)...)
	}
	p.mu.Unlock()
	for _, e := range out {
		emits <- e // the publish stage always drains
	}
}

// voteConfig is the configured rule with the threshold in force
// (VoteConfig.InForce): the gallery's calibrated operating point when it
// has one and the config allows it, else the gate's own calibration,
// capped by vote.threshold or the embedder's profile.
func (p *Pipeline) voteConfig() VoteConfig {
	c := p.cfg.Vote
	doc, gal := p.gal.Current()
	var model match.ModelID
	if gal != nil {
		model = gal.Model
	}
	var hub float64
	if p.cfg.UseGalleryOperatingPoint && doc != nil {
		if doc.MinMargin > 0 {
			c.MinMargin = doc.MinMargin
		}
		hub = doc.Threshold
	}
	var cal float64
	if hub <= 0 {
		cal = p.calibrated(gal)
	}
	c.Threshold = c.InForce(model, hub, cal)
	return c
}

// OperatingPoint is the decision rule in force for the current gallery.
func (p *Pipeline) OperatingPoint() VoteConfig { return p.voteConfig() }

// calibrated returns the gate-side calibrated threshold of gal (cached per
// gallery), or 0 when calibration is off or impossible.
func (p *Pipeline) calibrated(gal *match.Gallery) float64 {
	if p.cfg.CalibrateFAR <= 0 || gal == nil {
		return 0
	}
	win, n := p.calibrationCandidates(gal)
	p.calMu.Lock()
	defer p.calMu.Unlock()
	if p.calFor != gal {
		p.calFor, p.calThs = gal, map[string]float64{}
	}
	if th, ok := p.calThs[win]; ok {
		return th
	}
	p.calThs[win] = 0
	cal, err := match.CalibrateThresholdFor(gal, p.cfg.CalibrateFAR, n)
	if err != nil {
		p.log.Warn("gallery calibration impossible; using vote.threshold or the embedder's vote cap", "err", err,
			"cap", p.cfg.Vote.Cap(gal.Model))
		return 0
	}
	p.calThs[win] = cal.Threshold
	p.log.Info("gallery calibrated", "threshold", cal.Threshold, "target_far", cal.TargetFAR, "expected_far", cal.ExpectedFAR,
		"expected_frr", cal.ExpectedFRR, "method", cal.Method, "people", cal.Identities, "session", win)
	return cal.Threshold
}

// finishLocked finalises an ended track once no descriptor is in flight:
// an undecided track with votes is an unknown, reported as an unknown
// event (report_unknown) and as an unrecognised face (report_unrecognised).
func (p *Pipeline) finishLocked(tr *Track) []emission {
	if !tr.Ended || tr.Pending > 0 || tr.Finalized {
		return nil
	}
	tr.Finalized = true
	if p.log.Enabled(context.Background(), slog.LevelDebug) {
		votes := make([]string, len(tr.Votes))
		for i, v := range tr.Votes {
			votes[i] = fmt.Sprintf("%s@%.3f/m%.3f/q%.2f/px%d/f%d", v.Match.PersonID, v.Match.Distance, v.Match.Margin(), v.Score, v.Quality.SizePx, v.Frame)
		}
		p.log.Debug("track ended", "track", tr.ID, "frames", fmt.Sprintf("%d-%d", tr.FirstFrame, tr.LastFrame), "hits", tr.Hits,
			"describes", tr.Describes, "decided", tr.Decision.StudentID, "why", tr.Decision.Reason, "votes", votes)
	}
	if tr.Decided || len(tr.Votes) == 0 {
		return nil
	}
	p.Stats.Unknowns.Add(1)
	out := p.reviewLocked(tr)
	if !p.cfg.ReportUnknown {
		return out
	}
	best := tr.Votes[0]
	for _, v := range tr.Votes {
		if v.Score > best.Score {
			best = v
		}
	}
	d := Decision{StudentID: wire.UnknownStudent, Distance: best.Match.Distance, Margin: best.Match.Margin(), FramesUsed: len(tr.Votes), Best: best}
	return append([]emission{p.emissionLocked(tr, d, tr.LastFrame, tr.LastSeen, true)}, out...)
}

func clamp(v float64) float64 {
	if math.IsNaN(v) || v < 0 {
		return 0
	}
	return math.Min(v, 9.999)
}

func (p *Pipeline) emissionLocked(tr *Track, d Decision, frame int64, at time.Time, unknown bool) emission {
	doc, gal := p.gal.Current()
	ev := &wire.Event{
		Schema: wire.SchemaVersion, EventID: wire.NewEventID(), SchoolID: p.cfg.SchoolID, GateID: p.cfg.GateID,
		Direction: p.cfg.Direction, StudentID: d.StudentID, CapturedAt: at.UnixMilli(),
		Distance: clamp(d.Distance), Margin: clamp(d.Margin), FramesUsed: d.FramesUsed, Quality: d.Best.Quality,
		Model: p.desc.Model(), FaceJPEG: d.Best.JPEG,
	}
	if gal != nil {
		ev.Model = gal.Model
		ev.GalleryVer = gal.Version
	}
	if doc != nil && ev.GalleryVer == 0 {
		ev.GalleryVer = doc.Version
	}
	if len(ev.FaceJPEG) > wire.MaxCropBytes || !p.cfg.FaceCrop {
		ev.FaceJPEG = nil
	}
	return emission{ev: ev, info: EventInfo{TrackID: tr.ID, FirstFrame: tr.FirstFrame, DecisionFrame: frame, DecisionAt: at, Unknown: unknown}}
}

// faceJPEG encodes a small crop of the face for the event (a few KB).
func faceJPEG(region gocv.Mat, box image.Rectangle, width int) []byte {
	m := box.Dx() / 5
	r := image.Rect(box.Min.X-m, box.Min.Y-m, box.Max.X+m, box.Max.Y+m).Intersect(image.Rect(0, 0, region.Cols(), region.Rows()))
	if r.Dx() < 8 || r.Dy() < 8 {
		return nil
	}
	sub := region.Region(r)
	defer sub.Close()
	small := gocv.NewMat()
	defer small.Close()
	h := r.Dy() * width / r.Dx()
	gocv.Resize(sub, &small, image.Pt(width, max(h, 1)), 0, 0, gocv.InterpolationArea)
	for _, q := range []int{80, 60, 40} {
		b, err := faceengine.EncodeJPEG(small, q)
		if err == nil && len(b) <= wire.MaxCropBytes && len(b) <= 20<<10 {
			return b
		}
	}
	return nil
}

// voteLag is how many frames after its dispatch a described crop's vote
// is applied with WaitForWorkers (applyDue): the detector runs one frame
// ahead of the descriptors instead of waiting for them. 2 is what a live
// gate sees: a crop takes ~38 ms to describe, one frame at 25 fps, so its
// vote is there when the frame after next is processed. (4 would let a
// file play faster, but the outcome then depends on a schedule no camera
// has: on the A video it changed tpir from 0.65 to 0.55, both reproducible.)
const voteLag = 2
