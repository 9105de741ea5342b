package pipeline

import (
	"context"
	"math"
	"time"

	"github.com/diemdanh/diemdanh/models/match"
	"github.com/diemdanh/diemdanh/models/wire"
)

// Unrecognised faces (report_unrecognised): every track that was described
// (at least one usable descriptor) and ended without a decision is sent to
// the hub for review as one wire.Unrecognised, through the outbox like an
// event. Its crop is the track's quality-best crop (the one the teacher
// sees), sent with that crop's descriptor (a teacher's confirmation makes
// it a gate template); its candidates are the pupils nearest to that
// descriptor in the whole gallery (the session window's candidate
// restriction does not apply: a teacher may know a pupil the window left
// out). A track with an accepted vote that was not corroborated is a near
// miss (kind near_miss), and names the nearest accepted vote.

// review is an ended, undecided track's material for its Unrecognised
// message, taken under the pipeline's lock; the message is built and
// stored by the publish stage (commitReview), outside it.
type review struct {
	best   Vote  // quality-best vote with a crop
	vote   *Vote // near miss: the nearest accepted vote; nil otherwise
	frames int   // the track's usable descriptors
	at     time.Time
}

// maxWireDistance is the largest distance or margin the wire carries; a
// last candidate with no further pupil has this margin.
const maxWireDistance = 10

// reviewLocked returns the review emission of an ended, undecided track
// with votes, when report_unrecognised is on and a vote has a crop.
func (p *Pipeline) reviewLocked(tr *Track) []emission {
	if !p.cfg.ReportUnrecognised {
		return nil
	}
	r := &review{frames: len(tr.Votes), at: tr.LastSeen}
	found := false
	for _, v := range bestByQuality(tr.Votes, 0) {
		if len(v.JPEG) > 0 {
			r.best, found = v, true
			break
		}
	}
	if !found {
		p.Stats.UnrecognisedDropped.Add(1)
		return nil
	}
	vc := p.voteConfig()
	for i, v := range tr.Votes {
		if v.Accepted(vc) && (r.vote == nil || v.Match.Distance < r.vote.Match.Distance) {
			r.vote = &tr.Votes[i]
		}
	}
	if r.vote != nil {
		nv := *r.vote // the track's slice is not read after the lock is released
		r.vote = &nv
	}
	info := EventInfo{TrackID: tr.ID, FirstFrame: tr.FirstFrame, DecisionFrame: tr.LastFrame, DecisionAt: tr.LastSeen, Unknown: true}
	return []emission{{review: r, info: info}}
}

// commitReview builds the Unrecognised message of e.review against the
// gallery in force and stores it in the outbox. A failure is logged and
// counted; the pipeline keeps running.
func (p *Pipeline) commitReview(ctx context.Context, e emission) {
	u := p.unrecognised(e.review)
	if u == nil {
		p.Stats.UnrecognisedDropped.Add(1)
		return
	}
	if err := p.out.EnqueueUnrecognised(ctx, u); err != nil {
		p.Stats.UnrecognisedDropped.Add(1)
		p.log.Warn("unrecognised face not stored", "capture_id", u.CaptureID, "track", e.info.TrackID, "err", err)
	} else {
		e.info.Enqueued = true
		if u.Kind == wire.KindNearMiss {
			p.Stats.NearMisses.Add(1)
		} else {
			p.Stats.Unrecognised.Add(1)
		}
		p.notify()
	}
	if p.hooks.OnUnrecognised != nil {
		p.hooks.OnUnrecognised(u, e.info)
	}
}

// unrecognised is the message of r, or nil when the gallery in force has
// no pupil for its descriptor (none, or another embedder's).
func (p *Pipeline) unrecognised(r *review) *wire.Unrecognised {
	doc, gal := p.gal.Current()
	if gal == nil {
		return nil
	}
	cands := nearestPupils(gal, r.best.Descriptor)
	if len(cands) == 0 {
		return nil
	}
	u := &wire.Unrecognised{
		Schema: wire.SchemaVersion, CaptureID: wire.NewEventID(), SchoolID: p.cfg.SchoolID, GateID: p.cfg.GateID,
		Direction: p.cfg.Direction, Kind: wire.KindUnrecognised, CapturedAt: r.at.UnixMilli(),
		FaceJPEG: r.best.JPEG, Quality: r.best.Quality, Candidates: cands, FramesDescribed: min(r.frames, 1000),
		Model: gal.Model, GalleryVer: gal.Version, Descriptor: wireDescriptor(r.best.Descriptor),
	}
	if doc != nil && u.GalleryVer == 0 {
		u.GalleryVer = doc.Version
	}
	if r.vote != nil {
		u.Kind = wire.KindNearMiss
		u.Vote = &wire.Candidate{StudentID: r.vote.Match.PersonID, Distance: wireDistance(r.vote.Match.Distance),
			Margin: wireDistance(r.vote.Match.Margin())}
	}
	return u
}

// nearestPupils lists the wire.MaxCandidates pupils of gal nearest to d,
// nearest first, each with its margin to the next pupil (the next one
// listed, or the first one not listed; maxWireDistance when there is none).
func nearestPupils(gal *match.Gallery, d match.Descriptor) []wire.Candidate {
	top := gal.TopK(d, wire.MaxCandidates+1)
	dist := make([]float64, len(top))
	for i, r := range top {
		dist[i] = wireDistance(r.Distance)
	}
	out := make([]wire.Candidate, 0, wire.MaxCandidates)
	for i := 0; i < len(top) && i < wire.MaxCandidates; i++ {
		c := wire.Candidate{StudentID: top[i].PersonID, Distance: dist[i], Margin: maxWireDistance}
		if i+1 < len(top) {
			c.Margin = dist[i+1] - dist[i]
		}
		out = append(out, c)
	}
	return out
}

// wireDistance bounds a distance or margin to the wire's 0..10 (an
// infinite margin, with one pupil in the gallery, becomes 10).
func wireDistance(v float64) float64 {
	if math.IsNaN(v) || v < 0 {
		return 0
	}
	return math.Min(v, maxWireDistance)
}

// wireDescriptor is d as the wire carries it (little-endian float32), or
// nil when the wire would refuse it (a length out of bounds, a value not
// finite): the message then goes without it rather than not at all.
func wireDescriptor(d match.Descriptor) []byte {
	if len(d) == 0 {
		return nil
	}
	u := wire.Unrecognised{Descriptor: d.Bytes()}
	if _, err := u.DescriptorValues(); err != nil {
		return nil
	}
	return u.Descriptor
}
