package attendance

import (
	"database/sql"
	_ "embed"
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/diemdanh/diemdanh/hub/api"
	"github.com/gin-gonic/gin"
)

//go:embed openapi.json
var openapiPaths []byte

// OpenAPIPaths is the OpenAPI "paths" fragment of these routes.
func OpenAPIPaths() []byte { return openapiPaths }

// Routes registers daily attendance, overrides and the events query.
func (s *Service) Routes(r gin.IRouter) {
	r.GET("/classes/:class_id/attendance", s.getClassDay)
	r.GET("/pupils/:pupil_id/attendance/:day", s.getPupilDay)
	r.POST("/pupils/:pupil_id/attendance/:day/overrides", s.postOverride)
	r.GET("/schools/:school_id/events", s.listEvents)
}

func (s *Service) getClassDay(c *gin.Context) {
	class := c.Param("class_id")
	var school string
	if err := s.db.R.QueryRowContext(c.Request.Context(), `SELECT school_id FROM classes WHERE id = ?`, class).Scan(&school); err != nil {
		api.Fail(c, notFound("class", err))
		return
	}
	if err := api.Authorize(c, api.Access{Action: api.ActionRead, Resource: "attendance", SchoolID: school, ClassID: class}); err != nil {
		api.Fail(c, err)
		return
	}
	day := c.Query("day")
	if day == "" {
		day = s.now().In(s.location(c.Request.Context(), school)).Format(time.DateOnly)
	}
	days, err := s.ClassDay(c.Request.Context(), class, day)
	if err != nil {
		api.Fail(c, err)
		return
	}
	counts := map[string]int{Present: 0, Late: 0, Absent: 0, NotYet: 0, Excused: 0}
	for _, d := range days {
		counts[d.Status]++
	}
	c.JSON(http.StatusOK, gin.H{"class_id": class, "day": day, "counts": counts, "pupils": days})
}

func notFound(what string, err error) error {
	if errors.Is(err, sql.ErrNoRows) {
		return &api.Error{Code: api.CodeNotFound, Message: what + " not found"}
	}
	return err
}

func (s *Service) pupilAccess(c *gin.Context, action string) (pupilInfo, bool) {
	id := c.Param("pupil_id")
	p, err := s.pupil(c.Request.Context(), id)
	if err != nil {
		api.Fail(c, err)
		return p, false
	}
	if err := api.Authorize(c, api.Access{Action: action, Resource: "attendance", SchoolID: p.school, ClassID: p.class, PupilID: id}); err != nil {
		api.Fail(c, err)
		return p, false
	}
	return p, true
}

func (s *Service) getPupilDay(c *gin.Context) {
	if _, ok := s.pupilAccess(c, api.ActionRead); !ok {
		return
	}
	d, err := s.Recompute(c.Request.Context(), c.Param("pupil_id"), c.Param("day"))
	if err != nil {
		api.Fail(c, err)
		return
	}
	ovs, err := s.Overrides(c.Request.Context(), d.PupilID, d.Day)
	if err != nil {
		api.Fail(c, err)
		return
	}
	c.JSON(http.StatusOK, gin.H{"attendance": d, "overrides": ovs})
}

type overrideIn struct {
	Status string `json:"status"`
	Reason string `json:"reason"`
}

func (s *Service) postOverride(c *gin.Context) {
	if _, ok := s.pupilAccess(c, api.ActionWrite); !ok {
		return
	}
	var in overrideIn
	if err := api.BindJSON(c, &in, 64<<10); err != nil {
		api.Fail(c, err)
		return
	}
	d, err := s.AddOverride(c.Request.Context(), c.Param("pupil_id"), c.Param("day"), in.Status, in.Reason, api.Actor(c))
	if err != nil {
		api.Fail(c, err)
		return
	}
	c.JSON(http.StatusCreated, d)
}

// EventRow is one stored event as the API returns it (no face crop).
type EventRow struct {
	EventID        string  `json:"event_id"`
	SchoolID       string  `json:"school_id"`
	GateID         string  `json:"gate_id"`
	Direction      string  `json:"direction"`
	StudentID      string  `json:"student_id"` // "unknown" for an unknown face
	CapturedAt     int64   `json:"captured_at"`
	ReceivedAt     int64   `json:"received_at"`
	ClockSkewMS    int64   `json:"clock_skew_ms"` // received_at - captured_at
	Distance       float64 `json:"distance"`
	Margin         float64 `json:"margin"`
	FramesUsed     int     `json:"frames_used"`
	Model          string  `json:"model"`
	GalleryVersion int64   `json:"gallery_version"`
	HasFace        bool    `json:"has_face"`
	Rejected       bool    `json:"rejected"`
}

func parseTime(field, v string) (int64, error) {
	if v == "" {
		return 0, nil
	}
	if n, err := strconv.ParseInt(v, 10, 64); err == nil {
		return n, nil
	}
	t, err := time.Parse(time.RFC3339, v)
	if err != nil {
		return 0, api.Invalid(field, "must be Unix milliseconds or RFC 3339, got %q", v)
	}
	return t.UnixMilli(), nil
}

func (s *Service) listEvents(c *gin.Context) {
	school := c.Param("school_id")
	class := c.Query("class_id")
	if err := api.Authorize(c, api.Access{Action: api.ActionRead, Resource: "events", SchoolID: school, ClassID: class, PupilID: c.Query("pupil_id")}); err != nil {
		api.Fail(c, err)
		return
	}
	from, err := parseTime("from", c.Query("from"))
	if err != nil {
		api.Fail(c, err)
		return
	}
	to, err := parseTime("to", c.Query("to"))
	if err != nil {
		api.Fail(c, err)
		return
	}
	limit := 100
	if v := c.Query("limit"); v != "" {
		if limit, err = strconv.Atoi(v); err != nil || limit < 1 || limit > 1000 {
			api.Fail(c, api.Invalid("limit", "must be 1..1000"))
			return
		}
	}
	q := `SELECT e.event_id, e.school_id, e.gate_id, e.direction, COALESCE(e.student_id, 'unknown'), e.captured_at, e.received_at,
		e.distance, e.margin, e.frames_used, e.model, e.gallery_version, e.face_jpeg IS NOT NULL, e.rejected FROM events e`
	args := []any{}
	where := ` WHERE e.school_id = ?`
	args = append(args, school)
	if class != "" {
		q += ` JOIN pupils p ON p.id = e.student_id`
		where += ` AND p.class_id = ?`
		args = append(args, class)
	}
	if v := c.Query("pupil_id"); v != "" {
		where += ` AND e.student_id = ?`
		args = append(args, v)
	}
	if v := c.Query("gate_id"); v != "" {
		where += ` AND e.gate_id = ?`
		args = append(args, v)
	}
	if c.Query("unknown") == "1" {
		where += ` AND e.student_id IS NULL`
	}
	if from > 0 {
		where += ` AND e.captured_at >= ?`
		args = append(args, from)
	}
	if to > 0 {
		where += ` AND e.captured_at < ?`
		args = append(args, to)
	}
	rows, err := s.db.R.QueryContext(c.Request.Context(), q+where+` ORDER BY e.captured_at DESC, e.event_id DESC LIMIT ?`, append(args, limit)...)
	if err != nil {
		api.Fail(c, err)
		return
	}
	defer rows.Close()
	out := []EventRow{}
	for rows.Next() {
		var e EventRow
		var hasFace, rejected int
		if err := rows.Scan(&e.EventID, &e.SchoolID, &e.GateID, &e.Direction, &e.StudentID, &e.CapturedAt, &e.ReceivedAt,
			&e.Distance, &e.Margin, &e.FramesUsed, &e.Model, &e.GalleryVersion, &hasFace, &rejected); err != nil {
			api.Fail(c, err)
			return
		}
		e.HasFace, e.Rejected = hasFace == 1, rejected == 1
		e.ClockSkewMS = e.ReceivedAt - e.CapturedAt
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		api.Fail(c, err)
		return
	}
	c.JSON(http.StatusOK, out)
}
