package capture

import "time"

// verdict is what freshness says about one frame.
type verdict int

const (
	frameFresh    verdict = iota
	frameRebased          // fresh, after the stream's clock jumped
	frameLate             // a backlog delivered late
	frameRepeated         // a timestamp not after the previous frame's
)

func (v verdict) String() string {
	switch v {
	case frameLate:
		return "late"
	case frameRepeated:
		return "repeated timestamp"
	case frameRebased:
		return "rebased"
	}
	return "fresh"
}

// freshness judges the frames of one connection to a live stream by their
// own timestamps (the stream's presentation time in ms, 0 when the source
// has none). A frame is late when, against the wall clock, it falls behind
// the freshest frame of the connection by more than maxLag: the backlog a
// stalled connection delivers in a burst. A frame whose timestamp is not
// after the previous one's is a repeat. The baseline follows a camera clock
// that drifts slowly against the wall clock, and a stream whose clock jumps
// (frames late for longer than twice maxLag of wall time without a fresh
// one) is taken on its new clock rather than rejected for ever.
type freshness struct {
	maxLag    time.Duration
	start     time.Time
	base      time.Duration // wall minus source time of the freshest frame
	have      bool
	lastPos   float64
	lateSince time.Time
}

func newFreshness(maxLag time.Duration, start time.Time) *freshness {
	return &freshness{maxLag: maxLag, start: start}
}

// check judges a frame read at now with source timestamp posMs.
func (f *freshness) check(now time.Time, posMs float64) verdict {
	if f.maxLag <= 0 || !(posMs > 0) {
		return frameFresh
	}
	if f.lastPos > 0 && posMs <= f.lastPos {
		return frameRepeated
	}
	f.lastPos = posMs
	offset := now.Sub(f.start) - time.Duration(posMs*float64(time.Millisecond))
	if !f.have || offset < f.base {
		f.base, f.have = offset, true
	}
	lag := offset - f.base
	if lag <= f.maxLag {
		f.lateSince = time.Time{}
		f.base += lag / 256 // follow a slow drift of the camera's clock
		return frameFresh
	}
	if f.lateSince.IsZero() {
		f.lateSince = now
	}
	if now.Sub(f.lateSince) > 2*f.maxLag {
		f.base, f.lateSince = offset, time.Time{}
		return frameRebased
	}
	return frameLate
}
