package pipeline

import (
	"context"
	"image"
	"sort"

	"github.com/diemdanh/diemdanh/edge/capture"
	"gocv.io/x/gocv"
)

// The named steps of processFrame, in the order it runs them. A step whose
// name ends in Locked needs p.mu held; every other step must run without
// it (processFrame documents the locking).

// frameWork is one frame on its way through the steps.
type frameWork struct {
	f     capture.Frame
	full  image.Rectangle   // the whole frame, 0,0–W,H
	scale float64           // frame pixels per detection-image pixel
	work  gocv.Mat          // the detection image: the frame or st.small
	boxes []image.Rectangle // faces found, frame coordinates, best first
}

// trackView is what the steps before detection need to know of the
// tracks, read once under the lock (viewLocked).
type trackView struct {
	settled bool              // there are tracks and all are decided or out of attempts
	idle    bool              // no track in view
	live    []image.Rectangle // the tracks' last boxes (FineDetect only)
}

// claim is a track chosen to be described on this frame, marked in flight
// (Pending) by chooseDescribesLocked before its crop is offered to a
// worker.
type claim struct {
	tr       *Track
	box      image.Rectangle
	prevLast int64 // the track's LastDescribe and LastDescribePx before the claim
	prevPx   int
	outcome  claimOutcome // set by dispatch
}

// claimOutcome is what became of a claim's job.
type claimOutcome int

const (
	claimUnsent    claimOutcome = iota // never offered to a worker
	claimSent                          // a worker has it
	claimBusy                          // every worker was busy (without WaitForWorkers)
	claimCancelled                     // ctx ended while waiting for a worker
)

// usableFrame counts and drops a frame the detector cannot take.
func (p *Pipeline) usableFrame(f capture.Frame) bool {
	if f.Mat.Empty() || f.Mat.Cols() < 16 || f.Mat.Rows() < 16 || f.Mat.Channels() != 3 {
		p.Stats.Errors.Add(1)
		return false
	}
	return true
}

// viewLocked reads the tracks for skipSettled, motionGate and addFineFaces
// (p.mu held). Only the detect loop changes which tracks are active and
// their boxes, so reading them here rather than in each step is the same.
func (p *Pipeline) viewLocked() trackView {
	act := p.tracker.Active()
	v := trackView{settled: len(act) > 0, idle: len(act) == 0}
	for _, tr := range act {
		v.settled = v.settled && (tr.Decided || tr.Describes >= p.cfg.MaxDescribes)
		if p.cfg.FineDetect {
			v.live = append(v.live, tr.Box)
		}
	}
	return v
}

// skipSettled (step 1) reports whether the frame is skipped because every
// face in view is settled (decided, or out of descriptor attempts): they
// are followed on every DecidedDetectEvery-th frame only.
func (p *Pipeline) skipSettled(f capture.Frame, st *detState, v trackView) bool {
	if p.cfg.DecidedDetectEvery <= 1 || !v.settled || f.Index-st.lastDetect >= int64(p.cfg.DecidedDetectEvery) {
		return false
	}
	p.Stats.DecidedSkipped.Add(1)
	p.onFrame(f, nil)
	return true
}

// prepare scales the frame down to DetectWidth (st.small) and makes its
// grey image (st.gray).
func (p *Pipeline) prepare(f capture.Frame, st *detState) *frameWork {
	W, H := f.Mat.Cols(), f.Mat.Rows()
	fw := &frameWork{f: f, full: image.Rect(0, 0, W, H), scale: 1, work: f.Mat}
	if W > p.cfg.DetectWidth {
		fw.scale = float64(W) / float64(p.cfg.DetectWidth)
		gocv.Resize(f.Mat, &st.small, image.Pt(p.cfg.DetectWidth, int(float64(H)/fw.scale+0.5)), 0, 0, gocv.InterpolationLinear)
		fw.work = st.small
	}
	gocv.CvtColor(fw.work, &st.gray, gocv.ColorBGRToGray)
	return fw
}

// motionGate (step 2) reports whether the frame is skipped because nothing
// moves and no track is in view. It keeps the tiny grey image of the last
// frame (st.prev) and, for the fine pass, where it moved (st.moved).
func (p *Pipeline) motionGate(fw *frameWork, st *detState, v trackView) bool {
	if p.cfg.MotionThreshold <= 0 {
		return false
	}
	gw, gh := st.gray.Cols(), st.gray.Rows()
	tw := 160
	gocv.Resize(st.gray, &st.tiny, image.Pt(tw, max(1, gh*tw/gw)), 0, 0, gocv.InterpolationArea)
	moving := true
	// A camera may come back from an outage at another resolution.
	if st.hasPrev && (st.prev.Cols() != st.tiny.Cols() || st.prev.Rows() != st.tiny.Rows()) {
		st.hasPrev = false
	}
	st.hasMoved = false
	if st.hasPrev {
		gocv.AbsDiff(st.tiny, st.prev, &st.diff)
		moving = st.diff.Mean().Val1 >= p.cfg.MotionThreshold
		if p.cfg.FineDetect {
			gocv.Threshold(st.diff, &st.moved, fineMotionLevel, 255, gocv.ThresholdBinary)
			st.hasMoved = true
		}
	}
	st.tiny.CopyTo(&st.prev)
	st.hasPrev = true
	if moving || !v.idle {
		return false
	}
	p.Stats.MotionSkipped.Add(1)
	p.onFrame(fw.f, nil)
	return true
}

// coarseDetect (step 3) runs the detector on the detection image within
// the ROI and keeps up to MaxFaces faces, best first, in frame
// coordinates. False: the detector failed and the frame is dropped.
func (p *Pipeline) coarseDetect(fw *frameWork, det faceDetector, st *detState) bool {
	gw, gh := st.gray.Cols(), st.gray.Rows()
	roi := image.Rect(0, 0, gw, gh)
	if len(p.cfg.ROI) == 4 {
		roi = image.Rect(int(p.cfg.ROI[0]*float64(gw)), int(p.cfg.ROI[1]*float64(gh)),
			int(p.cfg.ROI[2]*float64(gw)), int(p.cfg.ROI[3]*float64(gh))).Intersect(roi)
	}
	dets, err := detectIn(det, fw.work, roi, true)
	if err != nil {
		p.Stats.Errors.Add(1)
		p.log.Warn("detect failed", "err", err)
		return false
	}
	p.Stats.DetectFrames.Add(1)
	st.lastDetect = fw.f.Index
	sort.SliceStable(dets, func(i, j int) bool { return dets[i].Score > dets[j].Score })
	fw.boxes = make([]image.Rectangle, 0, len(dets))
	for _, d := range dets {
		b := d.Box
		fb := image.Rect(int(float64(b.Min.X)*fw.scale), int(float64(b.Min.Y)*fw.scale),
			int(float64(b.Max.X)*fw.scale), int(float64(b.Max.Y)*fw.scale)).Intersect(fw.full)
		if fb.Dx() < max(p.cfg.MinFacePx, 8) || fb.Dy() < 8 {
			continue
		}
		fw.boxes = append(fw.boxes, fb)
		if len(fw.boxes) == p.cfg.MaxFaces {
			break
		}
	}
	return true
}

// addFineFaces (step 4, fine detect) looks at full resolution, while there
// is room for more faces, where the coarse pass may miss a small face:
// around the tracks' boxes and where the frame moved (fine.go).
func (p *Pipeline) addFineFaces(fw *frameWork, det faceDetector, st *detState, live []image.Rectangle) {
	if !p.cfg.FineDetect || len(fw.boxes) >= p.cfg.MaxFaces {
		return
	}
	W, H := fw.full.Dx(), fw.full.Dy()
	var moved *gocv.Mat
	tinyScale := 0.0
	if st.hasMoved {
		moved, tinyScale = &st.moved, float64(W)/float64(st.moved.Cols())
	}
	fullROI := image.Rectangle{}
	if len(p.cfg.ROI) == 4 {
		fullROI = image.Rect(int(p.cfg.ROI[0]*float64(W)), int(p.cfg.ROI[1]*float64(H)), int(p.cfg.ROI[2]*float64(W)), int(p.cfg.ROI[3]*float64(H)))
	}
	ws := p.fineWindows(W, H, fw.boxes, live, moved, tinyScale, fullROI)
	for _, d := range p.fineDetect(fw.f.Mat, ws, fw.boxes, det, st) {
		if d.Box.Dx() < max(p.cfg.MinFacePx, 8) || len(fw.boxes) == p.cfg.MaxFaces {
			continue
		}
		fw.boxes = append(fw.boxes, d.Box)
		p.Stats.FineFaces.Add(1)
	}
}

// trackLocked (step 5) continues, starts and ends the tracks with the
// frame's faces (p.mu held). It returns each face's track and the events
// (and unrecognised faces) of the tracks that ended finished.
func (p *Pipeline) trackLocked(fw *frameWork) (assigned []*Track, out []emission) {
	before := p.tracker.next
	assigned, ended := p.tracker.Update(fw.boxes, fw.f.Index, fw.f.At)
	p.Stats.TracksStarted.Add(p.tracker.next - before)
	p.Stats.TracksEnded.Add(int64(len(ended)))
	for _, tr := range ended {
		out = append(out, p.finishLocked(tr)...)
	}
	return assigned, out
}

// chooseDescribesLocked (step 6) picks the tracks to describe on this
// frame, biggest face first (they give the best descriptors), and claims
// them: an attempt in flight from now on (p.mu held).
func (p *Pipeline) chooseDescribesLocked(fw *frameWork, assigned []*Track) []claim {
	var claims []claim
	vc := p.voteConfig()
	idx := fw.f.Index
	for i, tr := range assigned {
		b := fw.boxes[i]
		if tr.Decided || tr.Pending > 0 || tr.Describes >= p.cfg.MaxDescribes ||
			idx-tr.LastDescribe < int64(p.cfg.DescribeEvery) || b.Dx() < p.cfg.MinDescribePx ||
			!p.grownEnough(tr, b.Dx(), idx, vc) {
			continue
		}
		claims = append(claims, claim{tr: tr, box: b})
	}
	sort.SliceStable(claims, func(i, j int) bool { return claims[i].box.Dx() > claims[j].box.Dx() })
	for i := range claims {
		c := &claims[i]
		c.prevLast, c.prevPx = c.tr.LastDescribe, c.tr.LastDescribePx
		c.tr.Pending++
		c.tr.Describes++
		c.tr.LastDescribe = idx
		c.tr.LastDescribePx = c.box.Dx()
	}
	return claims
}

// overlaysLocked labels each face of the frame with its track's decision
// for Hooks.OnFrame (p.mu held).
func (p *Pipeline) overlaysLocked(fw *frameWork, assigned []*Track) []Overlay {
	if p.hooks.OnFrame == nil {
		return nil
	}
	var overlays []Overlay
	for i, tr := range assigned {
		label := ""
		if tr.Decided {
			label = tr.Decision.StudentID
		}
		overlays = append(overlays, Overlay{Box: fw.boxes[i], Label: label})
	}
	return overlays
}

// emitAll hands finished tracks' events to the publisher.
func (p *Pipeline) emitAll(ctx context.Context, out []emission, emits chan<- emission) error {
	for _, e := range out {
		select {
		case emits <- e:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// dispatch (step 7) offers each claim's crop to a worker and records the
// outcome in the claim. With WaitForWorkers it waits for a worker and
// files the job's vote slot for applyDue; otherwise a claim finding every
// worker busy is skipped (the track tries again on a later frame). It
// sends on jobs, so p.mu must not be held.
func (p *Pipeline) dispatch(ctx context.Context, fw *frameWork, claims []claim, st *detState, jobs chan<- job) error {
	for i := range claims {
		c := &claims[i]
		j := p.cropJob(fw, c)
		if !p.cfg.WaitForWorkers {
			select {
			case jobs <- j:
				c.outcome = claimSent
			default:
				j.region.Close()
				c.outcome = claimBusy
				p.Stats.DescribeSkips.Add(1)
			}
			continue
		}
		sl := &voteSlot{j: j}
		sl.done.Add(1)
		j.slot = sl
		select {
		case jobs <- j:
			c.outcome = claimSent
			if n := len(st.inflight); n == 0 || st.inflight[n-1].call != st.calls {
				st.inflight = append(st.inflight, framedSlots{call: st.calls})
			}
			st.inflight[len(st.inflight)-1].slots = append(st.inflight[len(st.inflight)-1].slots, sl)
		case <-ctx.Done():
			j.region.Close()
			c.outcome = claimCancelled
			return ctx.Err()
		}
	}
	return nil
}

// cropJob cuts a claim's face out of the frame with a margin for the
// describer.
func (p *Pipeline) cropJob(fw *frameWork, c *claim) job {
	m := c.box.Dx() * 7 / 10
	rr := image.Rect(c.box.Min.X-m, c.box.Min.Y-m, c.box.Max.X+m, c.box.Max.Y+m).Intersect(fw.full)
	region := fw.f.Mat.Region(rr)
	defer region.Close()
	return job{tr: c.tr, region: region.Clone(), box: c.box.Sub(rr.Min), frame: fw.f.Index, at: fw.f.At}
}

// allSent reports whether every claim's job reached a worker.
func allSent(claims []claim) bool {
	for _, c := range claims {
		if c.outcome != claimSent {
			return false
		}
	}
	return true
}

// releaseLocked hands back the claims whose job reached no worker (p.mu
// held): a busy one so that the track tries again on the next frame, a
// cancelled one as an attempt that ended, an unsent one as if never made.
func (p *Pipeline) releaseLocked(frame int64, claims []claim) {
	for _, c := range claims {
		switch c.outcome {
		case claimSent:
			continue
		case claimBusy:
			c.tr.LastDescribe = frame - int64(p.cfg.DescribeEvery)
			c.tr.LastDescribePx = c.prevPx
			c.tr.Describes--
		case claimUnsent:
			c.tr.LastDescribe, c.tr.LastDescribePx = c.prevLast, c.prevPx
			c.tr.Describes--
		}
		c.tr.Pending--
	}
}
