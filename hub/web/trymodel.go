package web

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/url"

	"github.com/gin-gonic/gin"

	"github.com/diemdanh/diemdanh/hub/modeltrial"
	"github.com/diemdanh/diemdanh/models/evalmetrics"
)

// ModelTrial is "try before you switch" (hub/modeltrial.Runner): a
// candidate model run on a school's kept photos beside the current one,
// and the hub-wide switch. Nil: the page says it is unavailable.
type ModelTrial interface {
	Candidates() []modeltrial.Candidate
	Start(ctx context.Context, school, candidate, actor, ip string) (modeltrial.Trial, error)
	Cancel(school string) bool
	Trial(school string) (modeltrial.Trial, bool)
	StartSwitch(ctx context.Context, candidate, actor, ip string) (modeltrial.Switch, error)
	LastSwitch() (modeltrial.Switch, bool)
	Busy() bool
}

// TMColumn is one model's figures as the page shows them.
type TMColumn struct {
	Candidate, Model                 string
	Photos, Pupils                   int
	FTE, Rank1, Visitor95            string
	ExpectedFAR, ExpectedFRR, MsFace string
	Threshold                        string
	Rank1Raw, Visitor95Raw           float64
}

// TMData is the try-before-you-switch page.
type TMData struct {
	Enabled    bool
	School     string // the school the trial runs on
	Schools    []OPSchool
	Candidates []modeltrial.Candidate
	Current    string // the current model's candidate name
	Trial      *modeltrial.Trial
	Percent    int
	Cols       []TMColumn // current, candidate
	CanSwitch  bool       // the admin's scope covers every school of the hub
	Busy       bool
	Switch     *modeltrial.Switch
}

func rateText(pg *page, r evalmetrics.Rate) string {
	if r.Total == 0 || math.IsNaN(float64(r.Rate)) {
		return pg.T("tm.none")
	}
	return fmt.Sprintf("%s (%d/%d)", pct(float64(r.Rate)), r.Count, r.Total)
}

func tmColumn(pg *page, c *modeltrial.Column) TMColumn {
	v := TMColumn{Candidate: c.Candidate, Model: c.Model, Photos: c.Photos, Pupils: c.Pupils, FTE: rateText(pg, c.FTE),
		Rank1: rateText(pg, c.Rank1), Visitor95: rateText(pg, c.VisitorAt95), Rank1Raw: float64(c.Rank1.Rate),
		Visitor95Raw: float64(c.VisitorAt95.Rate), MsFace: fmt.Sprintf("%.1f ms", c.MsPerPhoto),
		ExpectedFAR: pg.T("tm.none"), ExpectedFRR: pg.T("tm.none"), Threshold: pg.T("tm.none")}
	if math.IsNaN(float64(c.Genuine95)) {
		v.Visitor95 = pg.T("tm.unreachable")
	}
	if c.Calibrated {
		v.Threshold = fmt.Sprintf("%.3f", c.Calibration.Threshold)
		v.ExpectedFAR = pct(c.Calibration.ExpectedFAR)
		if c.Calibration.ExpectedFRR >= 0 {
			v.ExpectedFRR = pct(c.Calibration.ExpectedFRR)
		}
	}
	return v
}

// tmSchools lists the schools the admin may try models on.
func (s *Server) tmSchools(c *gin.Context) ([]OPSchool, error) {
	p := principal(c)
	rows, err := s.d.DB.R.QueryContext(c.Request.Context(), `SELECT id, name FROM schools WHERE (? = '' OR id = ?) ORDER BY name, id`, p.SchoolID, p.SchoolID)
	if err != nil {
		return nil, fmt.Errorf("web: schools: %w", err)
	}
	defer rows.Close()
	var out []OPSchool
	for rows.Next() {
		var sc OPSchool
		if err := rows.Scan(&sc.ID, &sc.Name); err != nil {
			return nil, fmt.Errorf("web: schools: %w", err)
		}
		out = append(out, sc)
	}
	return out, rows.Err()
}

// hubWide says whether the admin's scope covers every school of the hub
// (a hub-wide admin, or the admin of the hub's only school): the model
// is the hub's, so only such an admin may switch it.
func (s *Server) hubWide(c *gin.Context) (bool, error) {
	p := principal(c)
	if p.SchoolID == "" {
		return true, nil
	}
	var others int
	err := s.d.DB.R.QueryRowContext(c.Request.Context(), `SELECT count(*) FROM schools WHERE id != ?`, p.SchoolID).Scan(&others)
	if err != nil {
		return false, fmt.Errorf("web: schools: %w", err)
	}
	return others == 0, nil
}

// tmSchool is the school the request names (?school= or the form), which
// must be one of the admin's; "" with ok when the admin has none.
func tmSchool(c *gin.Context, schools []OPSchool) (string, bool) {
	want := c.Query("school")
	if want == "" {
		want = c.PostForm("school")
	}
	if want == "" {
		if len(schools) == 0 {
			return "", true
		}
		return schools[0].ID, true
	}
	for _, sc := range schools {
		if sc.ID == want {
			return want, true
		}
	}
	return "", false
}

// modelTrialPage shows the candidates, the school's last trial side by
// side with the current model, and the switch.
func (s *Server) modelTrialPage(c *gin.Context) {
	d := &TMData{Enabled: s.d.ModelTrial != nil}
	pg := s.newPage(c, "tm.title", d)
	if d.Enabled {
		if err := s.fillTrial(c, pg, d); err != nil {
			if errors.Is(err, errNotYours) {
				s.fail(c, http.StatusForbidden, "error.forbidden")
				return
			}
			s.failErr(c, err)
			return
		}
	}
	s.render(c, http.StatusOK, "trymodel", pg)
}

var errNotYours = errors.New("web: not the admin's school")

func (s *Server) fillTrial(c *gin.Context, pg *page, d *TMData) error {
	var err error
	if d.Schools, err = s.tmSchools(c); err != nil {
		return err
	}
	school, ok := tmSchool(c, d.Schools)
	if !ok {
		return errNotYours
	}
	d.School = school
	if d.CanSwitch, err = s.hubWide(c); err != nil {
		return err
	}
	mt := s.d.ModelTrial
	d.Candidates, d.Busy = mt.Candidates(), mt.Busy()
	for _, x := range d.Candidates {
		if x.Current {
			d.Current = x.Name
		}
	}
	if t, ok := mt.Trial(school); ok {
		d.Trial = &t
		if t.Total > 0 {
			d.Percent = 100 * t.Done / t.Total
		}
		if t.Current != nil && t.Tried != nil {
			d.Cols = []TMColumn{tmColumn(pg, t.Current), tmColumn(pg, t.Tried)}
		}
	}
	if sw, ok := mt.LastSwitch(); ok {
		d.Switch = &sw
	}
	switch c.Query("msg") {
	case "busy":
		pg.Error = pg.T("tm.busy")
	case "unknown":
		pg.Error = pg.T("tm.unknown")
	case "started":
		pg.Flash = pg.T("tm.started")
	case "switching":
		pg.Flash = pg.T("tm.switching")
	case "cancelled":
		pg.Flash = pg.T("tm.cancelled")
	}
	return nil
}

// modelTrialAction handles the page's three forms: start a trial, cancel
// it, switch the hub's model.
func (s *Server) modelTrialAction(action string) gin.HandlerFunc {
	return func(c *gin.Context) {
		mt := s.d.ModelTrial
		if mt == nil {
			s.fail(c, http.StatusServiceUnavailable, "tm.unavailable")
			return
		}
		schools, err := s.tmSchools(c)
		if err != nil {
			s.failErr(c, err)
			return
		}
		school, ok := tmSchool(c, schools)
		if !ok || school == "" {
			s.fail(c, http.StatusForbidden, "error.forbidden")
			return
		}
		p, ctx, cand := principal(c), c.Request.Context(), c.PostForm("candidate")
		msg := ""
		switch action {
		case "start":
			_, err = mt.Start(ctx, school, cand, p.ActorID(), c.ClientIP())
			msg = "started"
		case "cancel":
			mt.Cancel(school)
			msg = "cancelled"
		case "switch":
			wide, werr := s.hubWide(c)
			if werr != nil {
				s.failErr(c, werr)
				return
			}
			if !wide {
				s.fail(c, http.StatusForbidden, "error.forbidden")
				return
			}
			_, err = mt.StartSwitch(ctx, cand, p.ActorID(), c.ClientIP())
			msg = "switching"
		}
		switch {
		case errors.Is(err, modeltrial.ErrBusy):
			msg = "busy"
		case errors.Is(err, modeltrial.ErrUnknown):
			msg = "unknown"
		case err != nil:
			s.failErr(c, err)
			return
		}
		c.Redirect(http.StatusSeeOther, "/admin/model-trial?school="+url.QueryEscape(school)+"&msg="+msg)
	}
}
