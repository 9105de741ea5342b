package gatelearn

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/diemdanh/diemdanh/hub/audit"
	"github.com/diemdanh/diemdanh/hub/facereview"
	"github.com/diemdanh/diemdanh/hub/facetemplates"
	"github.com/diemdanh/diemdanh/hub/ingest"
	"github.com/diemdanh/diemdanh/models/wire"
)

// DayInput is what a school day gave: the truth and what the gate did.
type DayInput struct {
	Day int
	FPS float64 // of the day's video: a second of frames is the slack of the truth's frames
	// Messages are the gate's events and unrecognised faces as the broker
	// received them, in order (redeliveries included).
	Messages      []ingest.Message
	Passages      []Passage
	Tracks        []Track        // the unrecognised faces' tracks
	Announcements []Announcement // the events the gate sent for pupils
}

// IngestCounts is what ingest did with the day's messages.
type IngestCounts struct {
	Stored      int `json:"stored"`
	Duplicates  int `json:"duplicates"`
	Quarantined int `json:"quarantined"`
}

// ReviewCounts is what the teacher did on the day's review board.
type ReviewCounts struct {
	Faces     int `json:"faces"`     // unrecognised faces of the day on the board
	Confirmed int `json:"confirmed"` // "this is <pupil>"
	Dismissed int `json:"dismissed"` // visitors: "not my pupil", in every class
	Unsure    int `json:"unsure"`    // left open: the teacher could not tell whose face it is
	Undone    int `json:"undone"`    // wrong announcements marked "not this pupil"
}

// Added is one gate template added during a day, as its audit entry
// records it.
type Added struct {
	PupilID string `json:"pupil_id"`
	Source  string `json:"source"`   // teacher or automatic
	EventID string `json:"event_id"` // the capture (teacher) or event (automatic) it came from
}

// DayReport is what the hub did with a day.
type DayReport struct {
	Day    int          `json:"day"`
	Ingest IngestCounts `json:"ingest"`
	// Offers counts what came of the templates the gate offered with its
	// events, by hub/learn's result (added, already_today, drift, …).
	Offers map[string]int `json:"offers"`
	Review ReviewCounts   `json:"review"`
	Added  []Added        `json:"added"`
}

// Count returns how many templates of source were added.
func (r DayReport) Count(source string) int {
	n := 0
	for _, a := range r.Added {
		if a.Source == source {
			n++
		}
	}
	return n
}

// BeginDay sets the clock to the morning of day d (1-based): the gate runs
// the day on Now.
func (h *Hub) BeginDay(d int) {
	h.day = d
	h.clock.setDay(d)
}

// EndDay gives the hub what the gate published on the day begun by
// BeginDay, plays the teacher on the day's review board, and lets the gate
// download the gallery for the next day.
func (h *Hub) EndDay(ctx context.Context, in DayInput) (DayReport, error) {
	rep := DayReport{Day: in.Day, Offers: map[string]int{}}
	if in.Day != h.day {
		return rep, fmt.Errorf("gatelearn: day %d ended, day %d begun", in.Day, h.day)
	}
	start := h.clock.dayStartMilli()
	if err := h.ingestAll(ctx, in.Messages, &rep.Ingest, rep.Offers); err != nil {
		return rep, err
	}
	if err := h.teach(ctx, in, &rep.Review); err != nil {
		return rep, err
	}
	var err error
	if rep.Added, err = h.addedSince(ctx, start); err != nil {
		return rep, err
	}
	if _, err := h.download(ctx); err != nil {
		return rep, err
	}
	return rep, nil
}

// ingestAll hands each message to the hub's ingest, as its broker does,
// then waits until every stored event reached ingest's listeners and the
// templates the events offered were considered (so the teacher and the
// next gallery see them), and counts what the offers came to.
func (h *Hub) ingestAll(ctx context.Context, msgs []ingest.Message, c *IngestCounts, offers map[string]int) error {
	before := h.auto.Counts()
	for _, m := range msgs {
		r, err := h.ing.Handle(ctx, m)
		if err != nil {
			return fmt.Errorf("gatelearn: ingest %s: %w", m.Topic, err)
		}
		switch r {
		case ingest.Stored:
			c.Stored++
			if _, _, kind, _ := wire.ParseGateTopic(m.Topic); kind == wire.TopicKindEvents {
				h.events++
			}
		case ingest.Duplicate:
			c.Duplicates++
		case ingest.Quarantined:
			c.Quarantined++
			h.log.Warn("gatelearn: message quarantined", "topic", m.Topic)
		}
	}
	wctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if err := h.fanned.wait(wctx, h.events); err != nil {
		return err
	}
	if err := h.auto.Drain(wctx); err != nil {
		return fmt.Errorf("gatelearn: automatic templates: %w", err)
	}
	for r, n := range h.auto.Counts() {
		if d := n - before[r]; d > 0 {
			offers[r] = int(d)
		}
	}
	return nil
}

// teach plays the teacher: on each face of the day's board, then on each
// wrong announcement.
func (h *Hub) teach(ctx context.Context, in DayInput, c *ReviewCounts) error {
	faces, err := h.review.List(ctx, h.cfg.SchoolID, []string{h.cfg.GateID}, h.clock.Now().Format("2006-01-02"))
	if err != nil {
		return fmt.Errorf("gatelearn: review board: %w", err)
	}
	tracks := map[string]Track{}
	for _, t := range in.Tracks {
		tracks[t.CaptureID] = t
	}
	slack := int64(in.FPS)
	for _, f := range faces {
		c.Faces++
		t, ok := tracks[f.CaptureID]
		if !ok {
			c.Unsure++ // nothing says who was in view
			continue
		}
		desc, err := h.review.Descriptor(ctx, f.ID)
		if err != nil {
			return fmt.Errorf("gatelearn: capture %s: %w", f.CaptureID, err)
		}
		v, err := h.eyes.identify(ctx, desc, inView(in.Passages, t.First, t.Last, slack))
		if err != nil {
			return err
		}
		if err := h.decide(ctx, f, v, c); err != nil {
			return err
		}
	}
	for _, a := range in.Announcements {
		if !wrongAnnouncement(in.Passages, a, slack) {
			continue
		}
		if err := h.undo(ctx, a, inView(in.Passages, a.Frame, a.Frame, slack)); err != nil {
			return err
		}
		c.Undone++
	}
	return nil
}

// undo marks announcement a "not this pupil", logging who was in view, the
// pupil's active templates by source before the mark and what the mark
// did.
func (h *Hub) undo(ctx context.Context, a Announcement, seen []*Passage) error {
	list, err := h.tpl.List(ctx, a.StudentID)
	if err != nil {
		return err
	}
	bySource := map[string]int{}
	for _, t := range list {
		if t.Status == facetemplates.StatusActive {
			bySource[t.Source]++
		}
	}
	fb, err := h.enrol.MarkNotThisPupil(ctx, TeacherActor, a.EventID, "not at the gate at that time")
	if err != nil {
		return fmt.Errorf("gatelearn: not this pupil on %s: %w", a.EventID, err)
	}
	ids := make([]string, len(seen))
	for i, p := range seen {
		ids[i] = p.ID
	}
	h.log.Info("gatelearn: not this pupil", "day", h.day, "event", a.EventID, "pupil", a.StudentID, "frame", a.Frame,
		"in_view", ids, "templates", bySource, "action", fb.Action)
	return nil
}

// decide acts on the teacher's verdict about face f.
func (h *Hub) decide(ctx context.Context, f facereview.Face, v verdict, c *ReviewCounts) error {
	if v.passage == nil {
		c.Unsure++
		h.log.Debug("gatelearn: face left open", "capture", f.CaptureID, "nearest", v.nearest, "gap", v.gap)
		return nil
	}
	h.log.Debug("gatelearn: face named", "capture", f.CaptureID, "passage", v.passage.ID, "visitor", v.passage.Visitor(),
		"distance", v.nearest, "gap", v.gap)
	if v.passage.Visitor() {
		for _, class := range h.classes {
			if _, err := h.learn.NotMine(ctx, f.ID, class, TeacherActor); err != nil {
				return err
			}
		}
		c.Dismissed++
		return nil
	}
	if _, err := h.learn.Confirm(ctx, f.ID, v.passage.StudentID, TeacherActor, ""); err != nil {
		return err
	}
	c.Confirmed++
	return nil
}

// addedSince returns the gate templates added since the hub time since
// (Unix ms), oldest first, from the audit log.
func (h *Hub) addedSince(ctx context.Context, since int64) ([]Added, error) {
	var out []Added
	f := audit.Filter{Scope: audit.Scope{All: true}, Action: facetemplates.ActionGateTemplate, Since: since, Limit: 1000}
	for {
		es, err := h.audit.List(ctx, f)
		if err != nil {
			return nil, err
		}
		for _, e := range es {
			var d struct {
				Source  string `json:"source"`
				EventID string `json:"event_id"`
			}
			if err := json.Unmarshal(e.Detail, &d); err != nil {
				return nil, fmt.Errorf("gatelearn: audit entry %d: %w", e.ID, err)
			}
			out = append(out, Added{PupilID: strings.TrimPrefix(e.Subject, "pupil:"), Source: d.Source, EventID: d.EventID})
		}
		if len(es) < f.Limit {
			break
		}
		f.BeforeID = es[len(es)-1].ID
	}
	for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 {
		out[i], out[j] = out[j], out[i]
	}
	return out, nil
}
