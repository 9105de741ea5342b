package gallerysrv

// Publication before calibration. A withdrawal of consent must leave the
// gallery the gates download within seconds, and calibrating a school of
// 5,000 pupils takes tens of seconds. So Refresh publishes a change that
// removes a pupil or a template (or any change to a gallery of more than
// Server.inlineMax descriptors) at once, with the previous point's
// threshold (ReasonPending), and hands the new descriptor set to a
// background calibration per school. Calibration never holds s.build, so
// a later removal is published while it runs. When it ends, the school is
// marked changed: the next Refresh finds the calibration of exactly the
// served descriptors and publishes a new version carrying it (gates fetch
// it as any new version). Calibrations are kept by descriptor digest
// (calibKey), so the republication computes nothing; a set that changed
// again meanwhile is calibrated next (the newest set only).

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"strconv"
	"time"

	"github.com/diemdanh/diemdanh/models/match"
	"github.com/diemdanh/diemdanh/models/wire"
)

// DefaultInlineCalibrationMax is the largest gallery (in descriptors) whose
// additions are calibrated before publication: about 0.3 s on 2 cores.
const DefaultInlineCalibrationMax = 1500

// maxResults bounds the background calibrations kept in memory.
const maxResults = 64

// pointPlan is what a point for one descriptor set is derived from.
type pointPlan struct {
	school, gate, key string
	model             match.ModelID
	capped            map[string][]match.Descriptor // as served: at most wire.MaxDescriptorsPerPerson each
	templates         int
	digest            string
	far               float64
	// known is a calibration of exactly these descriptors (cached,
	// persisted or computed in the background), nil if none; prev the
	// latest point of (school, gate), nil before the first.
	known, prev *OperatingPoint
}

// capSet returns byPupil as a document carries it: pupils with
// descriptors, at most wire.MaxDescriptorsPerPerson each.
func capSet(byPupil map[string][]match.Descriptor) (map[string][]match.Descriptor, int) {
	capped := make(map[string][]match.Descriptor, len(byPupil))
	n := 0
	for id, ds := range byPupil {
		if len(ds) > wire.MaxDescriptorsPerPerson {
			ds = ds[:wire.MaxDescriptorsPerPerson]
		}
		if len(ds) > 0 {
			capped[id] = ds
			n += len(ds)
		}
	}
	return capped, n
}

func calibKey(model match.ModelID, far float64, digest string) string {
	return model.String() + "|" + strconv.FormatFloat(far, 'g', -1, 64) + "|" + digest
}

// planPoint finds what is known for the descriptors about to be served to
// school (gate "" = the whole school) without computing anything.
func (s *Server) planPoint(ctx context.Context, school, gate string, model match.ModelID, byPupil map[string][]match.Descriptor) (*pointPlan, error) {
	capped, n := capSet(byPupil)
	p := &pointPlan{school: school, gate: gate, key: pointKey(school, gate), model: model, capped: capped, templates: n,
		digest: Digest(model, capped), far: s.cfg.targetFAR()}
	same := func(o *OperatingPoint) bool {
		return o != nil && o.Reason != ReasonPending && o.digest == p.digest && o.Embedder == model.String() && o.TargetFAR == p.far
	}
	s.mu.Lock()
	cached := s.points[p.key]
	s.mu.Unlock()
	if same(cached) {
		p.known, p.prev = cached, cached
		return p, nil
	}
	prev, err := s.latestPoint(ctx, school, gate)
	if err != nil {
		return nil, err
	}
	p.prev = prev
	if same(prev) {
		p.known = prev
		return p, nil
	}
	s.calib.mu.Lock()
	p.known = s.calib.results[calibKey(model, p.far, p.digest)]
	s.calib.mu.Unlock()
	return p, nil
}

// setCalibration copies the calibration fields of c into p.
func (p *OperatingPoint) setCalibration(c *OperatingPoint) {
	p.Calibrated, p.Reason, p.Threshold, p.Method = c.Calibrated, c.Reason, c.Threshold, c.Method
	p.PerIdentityFAR, p.ExpectedFAR, p.ExpectedFRR = c.PerIdentityFAR, c.ExpectedFAR, c.ExpectedFRR
	p.Identities, p.ImpostorScores = c.Identities, c.ImpostorScores
}

// removedFrom reports whether capped lacks a pupil or a descriptor that
// the served entry e holds (true when nothing is known of what was
// served, as after a restart).
func removedFrom(e *entry, capped map[string][]match.Descriptor) bool {
	if e == nil || e.served == nil {
		return true
	}
	for id, old := range e.served {
		now := capped[id]
		if len(now) < len(old) {
			return true
		}
		have := make(map[string]bool, len(now))
		for _, d := range now {
			have[string(d.Bytes())] = true
		}
		for _, d := range old {
			if !have[string(d.Bytes())] {
				return true
			}
		}
	}
	return false
}

// pendingMix marks a provisional document's digest: the calibrated one
// that follows differs from it, so its version bumps and is announced.
func pendingMix(digest string) string {
	h := sha256.Sum256([]byte(digest + "\ncalibration pending"))
	return hex.EncodeToString(h[:])
}

// calibJob is one school's descriptor sets to calibrate: the whole
// gallery and each candidate-restricted gate's subset.
type calibJob struct {
	model match.ModelID
	far   float64
	sets  []map[string][]match.Descriptor
}

// scheduleCalibration queues the calibration of the school's capped set
// and its restricted gates' subsets (replacing a queued older job) and
// starts the school's calibration goroutine if none runs.
func (s *Server) scheduleCalibration(school string, model match.ModelID, capped map[string][]match.Descriptor, cand *candidates) {
	job := &calibJob{model: model, far: s.cfg.targetFAR(), sets: []map[string][]match.Descriptor{capped}}
	if cand != nil {
		for _, classes := range cand.gates {
			sub := map[string][]match.Descriptor{}
			for id, ds := range capped {
				if classes[cand.classOf[id]] {
					sub[id] = ds
				}
			}
			job.sets = append(job.sets, sub)
		}
	}
	c := &s.calib
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.wanted == nil {
		c.wanted, c.running, c.results = map[string]*calibJob{}, map[string]bool{}, map[string]*OperatingPoint{}
	}
	c.wanted[school] = job
	if !c.running[school] {
		c.running[school] = true
		go s.calibrateLoop(school)
	}
}

// calibrateLoop runs the school's queued jobs, newest only, until none is
// left, and marks the school changed after each.
func (s *Server) calibrateLoop(school string) {
	c := &s.calib
	for {
		c.mu.Lock()
		job := c.wanted[school]
		delete(c.wanted, school)
		if job == nil {
			c.running[school] = false
			c.mu.Unlock()
			return
		}
		started := c.started
		c.mu.Unlock()
		if started != nil {
			started(school)
		}
		begin := time.Now()
		for _, set := range job.sets {
			s.calibrateSet(school, job, set)
		}
		s.log.Info("gallery calibrated after publication", "school", school, "sets", len(job.sets),
			"took", time.Since(begin).Round(time.Millisecond))
		s.Changed(context.Background(), school)
	}
}

// calibrateSet calibrates one set unless its calibration is kept already.
func (s *Server) calibrateSet(school string, job *calibJob, set map[string][]match.Descriptor) {
	digest := Digest(job.model, set)
	key := calibKey(job.model, job.far, digest)
	c := &s.calib
	c.mu.Lock()
	_, done := c.results[key]
	c.mu.Unlock()
	if done {
		return
	}
	p := &OperatingPoint{SchoolID: school, TargetFAR: job.far, ExpectedFRR: -1, Embedder: job.model.String(), digest: digest}
	s.calibrate(p, job.model, set)
	c.mu.Lock()
	defer c.mu.Unlock()
	c.results[key] = p
	c.order = append(c.order, key)
	if len(c.order) > maxResults {
		delete(c.results, c.order[0])
		c.order = c.order[1:]
	}
}

// CalibrationPending reports whether school's calibration after a
// publication is queued or running.
func (s *Server) CalibrationPending(school string) bool {
	s.calib.mu.Lock()
	defer s.calib.mu.Unlock()
	return s.calib.running[school] || s.calib.wanted[school] != nil
}

// Settle waits until school's background calibration is done and the
// calibrated gallery is built, and returns its version (benchmarks and
// tests; gates learn of it by the announcement).
func (s *Server) Settle(ctx context.Context, school string) (int64, error) {
	for {
		if !s.CalibrationPending(school) {
			v, _, err := s.Refresh(ctx, school) // waits for a Refresh in progress
			if err != nil {
				return 0, err
			}
			s.mu.Lock()
			e := s.cache[school]
			s.mu.Unlock()
			if e != nil && !e.provisional && e.version == v {
				return v, nil
			}
		}
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}
