package web

import (
	"context"
	"database/sql"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/diemdanh/diemdanh/hub/api"
	"github.com/diemdanh/diemdanh/hub/notify"
)

// ReviewItem is a template the duplicate-identity guard held for review.
type ReviewItem struct {
	TemplateID      int64
	PupilID         string
	PupilName       string
	ClassName       string
	HasPhoto        bool
	OtherPupilID    string
	OtherPupilName  string
	OtherClassName  string
	OtherTemplateID int64
	OtherHasPhoto   bool
	Distance        float64
	CreatedAt       int64 // unix ms
}

// Reviewer is the admin's side of the duplicate guard (hub/enrol's
// WebReview implements it). schoolID "" means every school. Nil hides the
// review queue (the feedback list still shows).
type Reviewer interface {
	ReviewQueue(ctx context.Context, schoolID string) ([]ReviewItem, error)
	// ApproveTemplate lets a template in review into the gallery.
	ApproveTemplate(ctx context.Context, schoolID string, id int64, actor, ip string) error
	// RejectTemplate deletes a template in review.
	RejectTemplate(ctx context.Context, schoolID string, id int64, actor, ip string) error
	// TemplatePhoto returns a stored enrolment photo and audits the view.
	TemplatePhoto(ctx context.Context, schoolID string, id int64, actor, ip string) ([]byte, error)
}

// ReviewRow is one queue entry as the page shows it.
type ReviewRow struct {
	ReviewItem
	Created  string
	Distance string
	Show     bool // photos requested for this row (each view audited)
	// PupilURL, OtherURL: the two pupils' pages, where an admin
	// deactivates a record made twice for one child.
	PupilURL, OtherURL string
}

// FeedbackRow is one "not this pupil" mark.
type FeedbackRow struct {
	MarkedAt   string
	EventAt    string
	EventID    string
	Gate       string
	PupilID    string
	PupilName  string
	ClassName  string
	Actor      string
	ActorName  string
	Reason     string
	Action     string // excluded_template, needs_reenrol, recorded
	TemplateID int64
	Distance   string
}

// ReviewData is the review page.
type ReviewData struct {
	Enabled  bool
	Queue    []ReviewRow
	Feedback []FeedbackRow
}

const feedbackListLimit = 50

func fmtMs(ms int64) string {
	if ms <= 0 {
		return ""
	}
	return time.UnixMilli(ms).In(notify.Zone("")).Format("02/01/2006 15:04")
}

func (s *Server) reviewPage(c *gin.Context) {
	ctx := c.Request.Context()
	p := principal(c)
	d := &ReviewData{Enabled: s.d.Reviewer != nil}
	show, _ := strconv.ParseInt(c.Query("show"), 10, 64)
	if s.d.Reviewer != nil {
		q, err := s.d.Reviewer.ReviewQueue(ctx, p.SchoolID)
		if err != nil {
			s.failErr(c, err)
			return
		}
		for _, it := range q {
			d.Queue = append(d.Queue, ReviewRow{ReviewItem: it, Created: fmtMs(it.CreatedAt),
				Distance: fmt.Sprintf("%.3f", it.Distance), Show: show != 0 && show == it.TemplateID,
				PupilURL: s.pupilURL(ctx, it.PupilID), OtherURL: s.pupilURL(ctx, it.OtherPupilID)})
		}
	}
	var err error
	if d.Feedback, err = s.feedbackRows(ctx, p.SchoolID, feedbackListLimit); err != nil {
		s.failErr(c, err)
		return
	}
	pg := s.newPage(c, "review.title", d)
	switch c.Query("done") {
	case "approved", "rejected":
		pg.Flash = pg.T("review.done_" + c.Query("done"))
	}
	s.render(c, http.StatusOK, "review", pg)
}

// pupilURL is the pupil's page in the school setup pages ("" when the
// pupil is not found).
func (s *Server) pupilURL(ctx context.Context, pupilID string) string {
	var school string
	if pupilID == "" || s.d.DB.R.QueryRowContext(ctx, `SELECT school_id FROM pupils WHERE id = ?`, pupilID).Scan(&school) != nil {
		return ""
	}
	return "/admin/school/" + url.PathEscape(school) + "/pupils/" + url.PathEscape(pupilID)
}

// feedbackRows reads the latest "not this pupil" marks of school ("" =
// all) with the event's time and gate and what the system did.
func (s *Server) feedbackRows(ctx context.Context, school string, limit int) ([]FeedbackRow, error) {
	rows, err := s.d.DB.R.QueryContext(ctx, `SELECT f.created_at, f.event_id, f.pupil_id, COALESCE(p.full_name, ''), COALESCE(c.name, ''),
		f.actor, COALESCE(a.full_name, ''), f.reason, f.action, f.template_id, f.distance, COALESCE(e.captured_at, 0),
		COALESCE(e.gate_id, ''), COALESCE(g.name, '')
		FROM recognition_feedback f
		LEFT JOIN pupils p ON p.id = f.pupil_id
		LEFT JOIN classes c ON c.id = p.class_id
		LEFT JOIN events e ON e.event_id = f.event_id
		LEFT JOIN gates g ON g.id = e.gate_id
		LEFT JOIN accounts a ON a.role || ':' || a.username = f.actor
		WHERE (? = '' OR p.school_id = ?) ORDER BY f.id DESC LIMIT ?`, school, school, limit)
	if err != nil {
		return nil, fmt.Errorf("web: feedback list: %w", err)
	}
	defer rows.Close()
	var out []FeedbackRow
	for rows.Next() {
		var r FeedbackRow
		var marked, at int64
		var tid sql.NullInt64
		var dist sql.NullFloat64
		var gateName string
		if err := rows.Scan(&marked, &r.EventID, &r.PupilID, &r.PupilName, &r.ClassName, &r.Actor, &r.ActorName, &r.Reason,
			&r.Action, &tid, &dist, &at, &r.Gate, &gateName); err != nil {
			return nil, fmt.Errorf("web: feedback list: %w", err)
		}
		r.MarkedAt, r.EventAt = fmtMs(marked), fmtMs(at)
		if gateName != "" {
			r.Gate = gateName
		}
		if tid.Valid {
			r.TemplateID = tid.Int64
		}
		if dist.Valid {
			r.Distance = fmt.Sprintf("%.3f", dist.Float64)
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

func templateParam(c *gin.Context) (int64, bool) {
	id, err := strconv.ParseInt(c.Param("tid"), 10, 64)
	return id, err == nil && id > 0
}

// reviewDecide approves or rejects a template in review (form post with
// the session's CSRF token), then returns to the queue.
func (s *Server) reviewDecide(approve bool) gin.HandlerFunc {
	return func(c *gin.Context) {
		if s.d.Reviewer == nil {
			s.fail(c, http.StatusServiceUnavailable, "review.unavailable")
			return
		}
		id, ok := templateParam(c)
		if !ok {
			s.failErr(c, api.Invalid("tid", "must be a template number"))
			return
		}
		p := principal(c)
		fn, done := s.d.Reviewer.RejectTemplate, "rejected"
		if approve {
			fn, done = s.d.Reviewer.ApproveTemplate, "approved"
		}
		if err := fn(c.Request.Context(), p.SchoolID, id, p.ActorID(), c.ClientIP()); err != nil {
			s.failErr(c, err)
			return
		}
		if wantsJSON(c) {
			c.JSON(http.StatusOK, gin.H{"ok": true, "template_id": id, "done": done})
			return
		}
		c.Redirect(http.StatusSeeOther, "/admin/review?done="+done)
	}
}

// reviewPhoto serves a stored enrolment photo; every view is audited by
// the Reviewer. Photos exist only where the consent's scope kept them.
func (s *Server) reviewPhoto(c *gin.Context) {
	if s.d.Reviewer == nil {
		s.fail(c, http.StatusServiceUnavailable, "review.unavailable")
		return
	}
	id, ok := templateParam(c)
	if !ok {
		s.failErr(c, api.Invalid("tid", "must be a template number"))
		return
	}
	p := principal(c)
	b, err := s.d.Reviewer.TemplatePhoto(c.Request.Context(), p.SchoolID, id, p.ActorID(), c.ClientIP())
	if err != nil {
		s.failErr(c, err)
		return
	}
	c.Header("Cache-Control", "no-store")
	c.Data(http.StatusOK, "image/jpeg", b)
}

// reviewCounts is the overview's summary: templates waiting and marks in
// the last 7 days.
func (s *Server) reviewCounts(ctx context.Context, school string) (waiting, marks int) {
	_ = s.d.DB.R.QueryRowContext(ctx, `SELECT COUNT(*) FROM face_templates t JOIN pupils p ON p.id = t.pupil_id
		WHERE t.status = 'review' AND (? = '' OR p.school_id = ?)`, school, school).Scan(&waiting)
	since := s.now().Add(-7 * 24 * time.Hour).UnixMilli()
	_ = s.d.DB.R.QueryRowContext(ctx, `SELECT COUNT(*) FROM recognition_feedback f LEFT JOIN pupils p ON p.id = f.pupil_id
		WHERE f.created_at >= ? AND (? = '' OR p.school_id = ?)`, since, school, school).Scan(&marks)
	return
}
