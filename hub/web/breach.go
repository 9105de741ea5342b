package web

import (
	"context"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/diemdanh/diemdanh/hub/api"
	"github.com/diemdanh/diemdanh/hub/breach"
	"github.com/diemdanh/diemdanh/hub/notify"
)

// breachTimeLayout is how the register shows and reads times: dd/mm/yyyy HH:MM.
const breachTimeLayout = "02/01/2006 15:04"

// BreachRow is one breach as the register and the overview show it.
type BreachRow struct {
	breach.Breach
	Found, Occurred, Due, AuthorityAt, SubjectsAt, Closed string
	ActionLines                                           []string
	Pending, Overdue                                      bool
	LeftH, LeftM                                          int // time left (or overdue by), hours and minutes
}

// BreachData is /admin/breaches.
type BreachData struct {
	Rows     []BreachRow
	Now      string // the form's default times
	HubWide  bool   // the admin names the school of a new breach
	Scopes   []string
	Layout   string
	LastDone string
}

func fmtTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.In(notify.Zone("")).Format(breachTimeLayout)
}

func (s *Server) breachRow(b breach.Breach) BreachRow {
	r := BreachRow{Breach: b, Found: fmtTime(b.FoundAt), Occurred: fmtTime(b.OccurredAt), Due: fmtTime(b.DueAt()),
		AuthorityAt: fmtTime(b.AuthorityNotifiedAt), SubjectsAt: fmtTime(b.SubjectsNotifiedAt), Closed: fmtTime(b.ClosedAt),
		Pending: b.Pending()}
	if b.Actions != "" {
		r.ActionLines = strings.Split(b.Actions, "\n")
	}
	if r.Pending {
		left := b.Left(s.now())
		r.Overdue = left < 0
		if left < 0 {
			left = -left
		}
		r.LeftH, r.LeftM = int(left/time.Hour), int(left%time.Hour/time.Minute)
	}
	return r
}

// pendingBreaches is the overview's 72-hour clocks.
func (s *Server) pendingBreaches(ctx context.Context, school string) ([]BreachRow, error) {
	bs, err := s.d.Breaches.Pending(ctx, school)
	if err != nil {
		return nil, err
	}
	out := make([]BreachRow, 0, len(bs))
	for _, b := range bs {
		out = append(out, s.breachRow(b))
	}
	return out, nil
}

func (s *Server) breachRoutes(a gin.IRouter) {
	a.GET("/breaches", s.breachPage)
	a.POST("/breaches", s.csrf, s.breachCreate)
	a.POST("/breaches/:bid/action", s.csrf, s.breachChange("action"))
	a.POST("/breaches/:bid/notify-authority", s.csrf, s.breachChange("authority"))
	a.POST("/breaches/:bid/notify-subjects", s.csrf, s.breachChange("subjects"))
	a.POST("/breaches/:bid/close", s.csrf, s.breachChange("close"))
}

func (s *Server) breachPage(c *gin.Context) {
	p := principal(c)
	bs, err := s.d.Breaches.List(c.Request.Context(), p.SchoolID)
	if err != nil {
		s.failErr(c, err)
		return
	}
	d := &BreachData{Now: fmtTime(s.now()), HubWide: p.SchoolID == "", Scopes: breach.Scopes, Layout: "dd/mm/yyyy HH:MM"}
	for _, b := range bs {
		d.Rows = append(d.Rows, s.breachRow(b))
	}
	pg := s.newPage(c, "breach.title", d)
	if done := c.Query("done"); done != "" && strings.Trim(done, "abcdefghijklmnopqrstuvwxyz") == "" {
		pg.Flash = pg.T("breach.done_" + done)
	}
	s.render(c, http.StatusOK, "breach", pg)
}

// formTime reads a dd/mm/yyyy HH:MM field in the schools' zone; "" is zero.
func formTime(c *gin.Context, field string) (time.Time, error) {
	v := strings.TrimSpace(c.PostForm(field))
	if v == "" {
		return time.Time{}, nil
	}
	t, err := time.ParseInLocation(breachTimeLayout, v, notify.Zone(""))
	if err != nil {
		return time.Time{}, api.Invalid(field, "write the time as dd/mm/yyyy HH:MM")
	}
	return t, nil
}

func (s *Server) breachCreate(c *gin.Context) {
	p := principal(c)
	n := breach.New{SchoolID: c.PostForm("school_id"), What: c.PostForm("what"), Scope: c.PostForm("scope"),
		Subjects: c.PostForm("subjects"), Actions: c.PostForm("actions")}
	var err error
	if n.FoundAt, err = formTime(c, "found_at"); err == nil {
		n.OccurredAt, err = formTime(c, "occurred_at")
	}
	if err == nil && strings.TrimSpace(c.PostForm("affected_count")) != "" {
		if n.Count, err = strconv.Atoi(strings.TrimSpace(c.PostForm("affected_count"))); err != nil {
			err = api.Invalid("affected_count", "must be a number")
		}
	}
	if err != nil {
		s.failErr(c, err)
		return
	}
	b, err := s.d.Breaches.Create(c.Request.Context(), p.SchoolID, n, p.ActorID(), c.ClientIP())
	if err != nil {
		s.failErr(c, err)
		return
	}
	c.Redirect(http.StatusSeeOther, "/admin/breaches?done=created#breach-"+strconv.FormatInt(b.ID, 10))
}

// breachChange handles one change of a breach (what: action, authority,
// subjects, close) and returns to the register.
func (s *Server) breachChange(what string) gin.HandlerFunc {
	return func(c *gin.Context) {
		id, err := strconv.ParseInt(c.Param("bid"), 10, 64)
		if err != nil || id <= 0 {
			s.failErr(c, api.Invalid("bid", "must be a breach number"))
			return
		}
		p := principal(c)
		ctx, actor, ip := c.Request.Context(), p.ActorID(), c.ClientIP()
		switch what {
		case "action":
			_, err = s.d.Breaches.AddAction(ctx, p.SchoolID, id, c.PostForm("action"), actor, ip)
		case "authority", "subjects":
			var at time.Time
			if at, err = formTime(c, "at"); err != nil {
				break
			}
			if what == "authority" {
				_, err = s.d.Breaches.NotifyAuthority(ctx, p.SchoolID, id, at, c.PostForm("authority"), actor, ip)
			} else {
				_, err = s.d.Breaches.NotifySubjects(ctx, p.SchoolID, id, at, actor, ip)
			}
		case "close":
			_, err = s.d.Breaches.Close(ctx, p.SchoolID, id, actor, ip)
		}
		if err != nil {
			s.failErr(c, err)
			return
		}
		c.Redirect(http.StatusSeeOther, "/admin/breaches?done="+what+"#breach-"+strconv.FormatInt(id, 10))
	}
}
