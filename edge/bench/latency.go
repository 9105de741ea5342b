package bench

import (
	"math"
	"time"
)

// announcement is the event of one enrolled passage: the frame of the vote
// that decided it and, once the broker acknowledged it, the time from
// reading that frame to the PUBACK.
type announcement struct {
	p      Passage
	frame  int64
	acked  bool
	procMS float64 // decision frame read → PUBACK, when acked
}

// announcements finds, per enrolled passage of t, the first event of its
// pupil decided within its frames (plus a second of slack). A repeat
// suppressed by the debounce is no announcement.
func announcements(t *Truth, decs []decision, acks map[string]time.Time) []announcement {
	var out []announcement
	for _, p := range t.Passages {
		if p.Visitor() {
			continue
		}
		for _, d := range decs {
			if !d.enqueued || d.student != p.StudentID || !inPassage(t, p, d.frame) {
				continue
			}
			a := announcement{p: p, frame: d.frame}
			if at, ok := acks[d.eventID]; ok {
				a.acked, a.procMS = true, float64(at.Sub(d.at).Microseconds())/1000
			}
			out = append(out, a)
			break
		}
	}
	return out
}

// latencyFigures gathers the latencies of announced passages over one or
// more videos.
type latencyFigures struct {
	fromFirst []float64 // first visible frame → PUBACK, ms (latency_ms_*)
	fromRecog []float64 // first recognisable frame → PUBACK, ms
	announced int       // passages with an event
	inView    int       // … announced before the pupil left the view
}

// add records a video's announcements. The PUBACK's moment in video time
// is the decision frame's plus the processing time; an announcement
// counts as in view when that moment is no later than the passage's last
// frame in view. In fast mode (realtime false) frames are read faster than
// they were filmed, so the decision frame itself is compared, and the
// processing time (which no camera's clock constrains there) is left out;
// in real time an event never acknowledged was never announced in view.
func (l *latencyFigures) add(fps float64, anns []announcement, realtime bool) {
	for _, a := range anns {
		l.announced++
		at := float64(a.frame)
		if realtime {
			at += a.procMS * fps / 1000
		}
		if (a.acked || !realtime) && at <= float64(lastInView(a.p)) {
			l.inView++
		}
		if !a.acked {
			continue
		}
		l.fromFirst = append(l.fromFirst, float64(a.frame-a.p.FirstFrame)*1000/fps+a.procMS)
		if rf, ok := recognisableFrame(a.p); ok {
			// Announced before the truth calls the face recognisable
			// (e.g. decided on a slightly blurred face) counts as no wait.
			l.fromRecog = append(l.fromRecog, math.Max(0, float64(a.frame-rf)*1000/fps+a.procMS))
		}
	}
}

// share is the fraction of announced passages announced in view (0 with
// none announced), to 0.0001.
func (l *latencyFigures) share() float64 {
	if l.announced == 0 {
		return 0
	}
	return math.Round(float64(l.inView)/float64(l.announced)*10000) / 10000
}
