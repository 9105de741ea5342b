package web

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/gin-gonic/gin"

	"github.com/diemdanh/diemdanh/hub/api"
	"github.com/diemdanh/diemdanh/hub/audit"
	"github.com/diemdanh/diemdanh/hub/auth"
)

const keyClass = "diemdanh.web.class"

var dayRe = regexp.MustCompile(`^\d{4}-\d{2}-\d{2}$`)

// ClassLink is a class in a list.
type ClassLink struct {
	ID, Name string
	Grade    int
	Counts   map[string]int
}

// visibleClasses lists the classes p may see: an admin all classes of
// their school (every school when unscoped), a teacher their homeroom
// and assigned classes.
func (s *Server) visibleClasses(ctx context.Context, p *auth.Principal) ([]ClassLink, error) {
	var rows *sql.Rows
	var err error
	switch p.Role {
	case auth.RoleAdmin:
		rows, err = s.d.DB.R.QueryContext(ctx, `SELECT id, name, grade FROM classes WHERE active = 1
			AND (? = '' OR school_id = ?) ORDER BY grade, name`, p.SchoolID, p.SchoolID)
	case auth.RoleTeacher:
		rows, err = s.d.DB.R.QueryContext(ctx, `SELECT id, name, grade FROM classes WHERE active = 1 AND school_id = ?
			AND (homeroom_teacher_id = ? OR id IN (SELECT class_id FROM teacher_classes WHERE staff_id = ?))
			ORDER BY grade, name`, p.SchoolID, p.StaffID, p.StaffID)
	default:
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("web: classes: %w", err)
	}
	defer rows.Close()
	var out []ClassLink
	for rows.Next() {
		var l ClassLink
		if err := rows.Scan(&l.ID, &l.Name, &l.Grade); err != nil {
			return nil, fmt.Errorf("web: classes: %w", err)
		}
		out = append(out, l)
	}
	return out, rows.Err()
}

func (s *Server) canSeeClass(ctx context.Context, p *auth.Principal, cls ClassInfo) bool {
	switch p.Role {
	case auth.RoleAdmin:
		return p.SchoolID == "" || p.SchoolID == cls.SchoolID
	case auth.RoleTeacher:
		if p.SchoolID != cls.SchoolID || p.StaffID == "" {
			return false
		}
		var one int
		err := s.d.DB.R.QueryRowContext(ctx, `SELECT 1 FROM classes WHERE id = ? AND (homeroom_teacher_id = ?
			OR id IN (SELECT class_id FROM teacher_classes WHERE staff_id = ?))`, cls.ID, p.StaffID, p.StaffID).Scan(&one)
		return err == nil
	}
	return false
}

// classScope loads :class and refuses a class the caller may not see.
func (s *Server) classScope(c *gin.Context) {
	cls, err := s.loadClass(c.Request.Context(), c.Param("class"))
	if err != nil {
		s.failErr(c, err)
		return
	}
	if !s.canSeeClass(c.Request.Context(), principal(c), cls) {
		s.fail(c, http.StatusForbidden, "error.forbidden")
		return
	}
	c.Set(keyClass, cls)
	c.Next()
}

func classOf(c *gin.Context) ClassInfo { v, _ := c.Get(keyClass); return v.(ClassInfo) }

func (s *Server) teacherHome(c *gin.Context) {
	p := principal(c)
	cls, err := s.visibleClasses(c.Request.Context(), p)
	if err != nil {
		s.failErr(c, err)
		return
	}
	if len(cls) == 1 && p.Role == auth.RoleTeacher {
		c.Redirect(http.StatusSeeOther, "/teacher/class/"+url.PathEscape(cls[0].ID))
		return
	}
	s.render(c, http.StatusOK, "classes", s.newPage(c, "teacher.classes", cls))
}

// dayParam returns ?day (dd/mm/yyyy or ISO, queryDays; default today).
func (s *Server) dayParam(c *gin.Context, cls ClassInfo) (string, bool) {
	days, ok := s.queryDays(c, "day")
	if !ok {
		return "", false
	}
	if days[0] == "" {
		return s.today(cls.Loc), true
	}
	return days[0], true
}

func (s *Server) board(c *gin.Context) {
	cls := classOf(c)
	day, ok := s.dayParam(c, cls)
	if !ok {
		return
	}
	rows, err := s.dayRows(c.Request.Context(), cls, day, "")
	if err != nil {
		s.failErr(c, err)
		return
	}
	b := &Board{Class: cls, Day: day, Today: day == s.today(cls.Loc), Rows: rows, Counts: countRows(rows),
		Missing: c.Query("missing") == "1", Saved: c.Query("saved") == "1", FacesOn: s.facesOn()}
	if b.FacesOn {
		if b.Faces, err = s.classFaces(c.Request.Context(), principal(c), cls, day); err != nil {
			s.failErr(c, err)
			return
		}
	}
	p := s.newPage(c, "board.title", b)
	p.Title = p.Tr("board.title", "class", cls.Name)
	if b.Saved {
		p.Flash = p.T("board.saved")
	}
	if note := faceFlash(p, b, c.Request.URL.Query()); note != "" {
		p.Flash = note
	}
	s.render(c, http.StatusOK, "board", p)
}

// liveFeed is the board's Server-Sent-Events stream.
func (s *Server) liveFeed(c *gin.Context) {
	cls := classOf(c)
	cl := s.live.Subscribe(cls.ID)
	defer s.live.Unsubscribe(cls.ID, cl)
	_ = http.NewResponseController(c.Writer).SetWriteDeadline(time.Time{}) // a stream outlives the server's write timeout
	h := c.Writer.Header()
	h.Set("Content-Type", "text/event-stream; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no")
	c.Status(http.StatusOK)
	if _, err := c.Writer.WriteString("retry: 2000\n: ok\n\n"); err != nil {
		return
	}
	c.Writer.Flush()
	ping := time.NewTicker(20 * time.Second)
	defer ping.Stop()
	ctx := c.Request.Context()
	for {
		select {
		case <-ctx.Done():
			return
		case <-cl.Done:
			return
		case m := <-cl.C:
			if _, err := c.Writer.Write(m); err != nil {
				return
			}
			// Drain what is already queued before flushing once.
			for more := true; more; {
				select {
				case m := <-cl.C:
					if _, err := c.Writer.Write(m); err != nil {
						return
					}
				default:
					more = false
				}
			}
			c.Writer.Flush()
		case <-ping.C:
			if _, err := c.Writer.WriteString(": ping\n\n"); err != nil {
				return
			}
			c.Writer.Flush()
		}
	}
}

// override records a manual mark (present or excused, or late/absent)
// with a required reason.
func (s *Server) override(c *gin.Context) {
	cls := classOf(c)
	pupil, day, status := c.PostForm("pupil_id"), c.PostForm("day"), c.PostForm("status")
	reason := strings.TrimSpace(c.PostForm("reason"))
	switch {
	case !dayRe.MatchString(day):
		s.fail(c, http.StatusBadRequest, "error.invalid")
		return
	case status != "present" && status != "excused" && status != "late" && status != "absent":
		s.fail(c, http.StatusBadRequest, "error.invalid")
		return
	case reason == "" || utf8.RuneCountInString(reason) > 500:
		s.fail(c, http.StatusBadRequest, "board.reason_required")
		return
	}
	if !s.pupilInClass(c.Request.Context(), pupil, cls.ID) {
		s.fail(c, http.StatusForbidden, "error.forbidden")
		return
	}
	if err := s.d.Attendance.Override(c.Request.Context(), pupil, day, status, reason, principal(c).ActorID()); err != nil {
		s.failErr(c, err)
		return
	}
	if s.auditOverrides {
		if err := s.d.Audit.RecordC(c, ActionOverride, "pupil:"+pupil, map[string]any{"day": day, "status": status, "reason": reason}); err != nil {
			s.log.Warn("audit override", "err", err)
		}
	}
	s.dayChanged(c.Request.Context(), cls, pupil, day)
	if wantsJSON(c) {
		c.JSON(http.StatusOK, gin.H{"ok": true})
		return
	}
	c.Redirect(http.StatusSeeOther, "/teacher/class/"+url.PathEscape(cls.ID)+"?day="+day+"&saved=1")
}

// dayChanged recomputes a pupil's day through hub/attendance after a
// manual change and, for today, pushes the row to open boards.
func (s *Server) dayChanged(ctx context.Context, cls ClassInfo, pupil, day string) {
	if day == s.today(cls.Loc) {
		s.live.pushPupil(ctx, cls.ID, pupil, s.now().UnixMilli())
		return
	}
	if _, err := s.d.Days.Recompute(ctx, pupil, day); err != nil {
		s.log.Warn("attendance recompute", "pupil", pupil, "day", day, "err", err)
	}
}

func (s *Server) pupilInClass(ctx context.Context, pupil, class string) bool {
	var one int
	return s.d.DB.R.QueryRowContext(ctx, `SELECT 1 FROM pupils WHERE id = ? AND class_id = ?`, pupil, class).Scan(&one) == nil
}

// reject is "not this pupil" on an arrival event of this class.
func (s *Server) reject(c *gin.Context) {
	cls := classOf(c)
	ev := c.PostForm("event_id")
	var pupil string
	var at int64
	err := s.d.DB.R.QueryRowContext(c.Request.Context(), `SELECT e.student_id, e.captured_at FROM events e
		JOIN pupils p ON p.id = e.student_id WHERE e.event_id = ? AND p.class_id = ?`, ev, cls.ID).Scan(&pupil, &at)
	if errors.Is(err, sql.ErrNoRows) {
		s.fail(c, http.StatusNotFound, "error.not_found")
		return
	}
	if err != nil {
		s.failErr(c, err)
		return
	}
	reason := strings.TrimSpace(c.PostForm("reason"))
	if utf8.RuneCountInString(reason) > 500 {
		s.fail(c, http.StatusBadRequest, "error.invalid")
		return
	}
	if err := s.d.Feedback.NotThisPupil(c.Request.Context(), ev, reason, principal(c).ActorID()); err != nil {
		s.failErr(c, err)
		return
	}
	day := time.UnixMilli(at).In(cls.Loc).Format("2006-01-02")
	s.dayChanged(c.Request.Context(), cls, pupil, day)
	if wantsJSON(c) {
		c.JSON(http.StatusOK, gin.H{"ok": true})
		return
	}
	c.Redirect(http.StatusSeeOther, "/teacher/class/"+url.PathEscape(cls.ID)+"?day="+day+"&saved=1")
}

// crop serves an event's face crop to staff who may see its class, and
// only while the pupil's consent allows snapshots (audit.SnapshotsAllowed,
// checked at every request: a crop left from an earlier consent is never
// shown). Access is checked before whether a crop exists. Browsers must
// not keep it (no-store), so a withdrawal also takes effect on a teacher's
// open board.
func (s *Server) crop(c *gin.Context) {
	var jpeg []byte
	var classID sql.NullString
	var allowed bool
	err := s.d.DB.R.QueryRowContext(c.Request.Context(), `SELECT e.face_jpeg, p.class_id, `+audit.SnapshotsAllowed("p.id")+`
		FROM events e JOIN pupils p ON p.id = e.student_id WHERE e.event_id = ?`, c.Param("event")).Scan(&jpeg, &classID, &allowed)
	if err != nil || !classID.Valid {
		s.fail(c, http.StatusNotFound, "error.not_found")
		return
	}
	cls, err := s.loadClass(c.Request.Context(), classID.String)
	if err != nil || !s.canSeeClass(c.Request.Context(), principal(c), cls) {
		s.fail(c, http.StatusForbidden, "error.forbidden")
		return
	}
	if len(jpeg) == 0 || !allowed {
		s.fail(c, http.StatusNotFound, "error.not_found")
		return
	}
	c.Header("Cache-Control", "private, no-store")
	c.Data(http.StatusOK, "image/jpeg", jpeg)
}

// TermData is the term summary page.
type TermData struct {
	Class    ClassInfo
	From, To string
	Days     int
	Rows     []TermRow
}

func (s *Server) termData(c *gin.Context) (*TermData, bool) {
	cls := classOf(c)
	from, to := termDefault(s.now().In(cls.Loc))
	ds, ok := s.queryDays(c, "from", "to")
	if !ok {
		return nil, false
	}
	if ds[0] != "" {
		from = ds[0]
	}
	if ds[1] != "" {
		to = ds[1]
	}
	rows, days, err := s.termSummary(c.Request.Context(), cls, from, to)
	if err != nil {
		s.failErr(c, err)
		return nil, false
	}
	return &TermData{Class: cls, From: from, To: to, Days: days, Rows: rows}, true
}

func (s *Server) term(c *gin.Context) {
	d, ok := s.termData(c)
	if !ok {
		return
	}
	p := s.newPage(c, "term.title", d)
	p.Title = p.Tr("term.title", "class", d.Class.Name)
	s.render(c, http.StatusOK, "term", p)
}

var _ = api.Prefix
