package web

import (
	"context"
	"errors"
	"net/http"
	"sort"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/diemdanh/diemdanh/hub/api"
	"github.com/diemdanh/diemdanh/hub/consent"
	"github.com/diemdanh/diemdanh/hub/notify"
	"github.com/diemdanh/diemdanh/hub/roster"
)

// attendanceDays is how far back the pupil's page shows attendance.
const attendanceDays = 30

// ConsentView is a pupil's consent as the page shows it.
type ConsentView struct {
	Has                 bool
	Guardian, Document  string
	Given               string // dd/mm/yyyy
	Own, Face, Photos   bool
	Snapshots           bool
	Withdrawn, Total    int // withdrawn consents and all, in the history
	WithdrawnLast       string
	WithdrawnLastReason string
}

// TemplateView counts a pupil's face templates (never the photos).
type TemplateView struct {
	Available bool
	Total     int
	ByStatus  map[string]int
	Rows      []TemplateRow
}

// TemplateRow is one template.
type TemplateRow struct {
	Model, Status, Created string
	HasPhoto               bool
}

// AttendanceRow is one day of the pupil's attendance.
type AttendanceRow struct {
	Day, Date, Status, Arrived string
	Weekday                    int
	Manual                     bool
}

// PupilData is a pupil's page.
type PupilData struct {
	SchoolNav
	Pupil      roster.Pupil
	Classes    []roster.Class
	Class      string
	Guardians  []roster.Guardian
	Consent    ConsentView
	Templates  TemplateView
	Today      *AttendanceRow
	Days       []AttendanceRow
	Counts     map[string]int // over Days
	Err        FormErr
	OneTime    *OneTime
	HasAccount bool // accounts can be created here
}

func (s *Server) pupilPage(c *gin.Context) {
	p, ok := s.pupilInSchool(c)
	if !ok {
		return
	}
	s.pupilPageWith(c, p, "", nil, nil)
}

// pupilPageWith renders the pupil's page with the form as given (x), a
// refusal of form to show (err) and a new account's one-time password.
func (s *Server) pupilPageWith(c *gin.Context, x roster.Pupil, form string, err error, ot *OneTime) {
	d, derr := s.pupilData(c, c.Param("pupil"))
	if derr != nil {
		s.failErr(c, derr)
		return
	}
	pg := s.newPage(c, "sa.pupil_title", d)
	pg.Title = pg.Tr("sa.pupil_title", "name", d.Pupil.FullName)
	status := http.StatusOK
	d.OneTime = ot
	if err != nil {
		fe, st, ok := formError(pg, err, form)
		if !ok {
			s.failErr(c, err)
			return
		}
		d.Err, pg.Error, status = fe, fe.Msg, st
		if ot == nil {
			d.Pupil = x // the edit form as typed
		}
	}
	switch {
	case c.Query("saved") != "":
		pg.Flash = pg.T("board.saved")
	case c.Query("guardian") != "":
		pg.Flash = pg.T("sa.guardian_added")
	}
	s.render(c, status, "school_pupil", pg)
}

func (s *Server) pupilData(c *gin.Context, id string) (*PupilData, error) {
	ctx := c.Request.Context()
	sc := schoolOf(c)
	lang := s.lang(c)
	d := &PupilData{SchoolNav: SchoolNav{School: sc, Tab: "pupils"}, HasAccount: s.d.Accounts != nil}
	var err error
	if d.Pupil, err = s.d.Roster.Pupil(ctx, id); err != nil {
		return nil, err
	}
	if d.Classes, err = s.d.Roster.Classes(ctx, sc.ID); err != nil {
		return nil, err
	}
	for _, x := range d.Classes {
		if x.ID == d.Pupil.ClassID {
			d.Class = x.Name
		}
	}
	if d.Guardians, err = s.d.Roster.Guardians(ctx, id); err != nil {
		return nil, err
	}
	if d.Consent, err = s.consentView(ctx, id, lang); err != nil {
		return nil, err
	}
	if d.Templates, err = s.templateView(ctx, id, lang); err != nil {
		return nil, err
	}
	if d.Pupil.ClassID != "" {
		if err = s.pupilAttendance(ctx, d, lang); err != nil {
			return nil, err
		}
	}
	return d, nil
}

// msDate shows a hub time (Unix ms) as its day, dd/mm/yyyy (FormatDate).
func msDate(lang string, ms int64) string {
	return FormatDate(lang, time.UnixMilli(ms).In(notify.Zone("")).Format("2006-01-02"))
}

// consentView reads the current consent and the history (hub/consent).
func (s *Server) consentView(ctx context.Context, pupil, lang string) (ConsentView, error) {
	var v ConsentView
	cur, err := s.d.Consent.Current(ctx, pupil)
	switch {
	case err == nil:
		v = ConsentView{Has: true, Guardian: cur.GuardianName, Document: cur.DocumentRef, Given: msDate(lang, cur.GivenAt),
			Own: cur.PupilConsented, Face: cur.ScopeFace, Photos: cur.ScopePhotos, Snapshots: cur.ScopeSnapshots}
	case !errors.Is(err, consent.ErrNoConsent) && api.CodeOf(err) != api.CodePrecondition:
		return v, err
	}
	hist, err := s.d.Consent.History(ctx, pupil)
	if err != nil {
		return v, err
	}
	v.Total = len(hist)
	for _, h := range hist { // newest first
		if h.WithdrawnAt != nil {
			if v.Withdrawn == 0 {
				v.WithdrawnLast, v.WithdrawnLastReason = msDate(lang, *h.WithdrawnAt), h.WithdrawalReason
			}
			v.Withdrawn++
		}
	}
	return v, nil
}

// templateView counts the pupil's templates by status (hub/facetemplates).
func (s *Server) templateView(ctx context.Context, pupil, lang string) (TemplateView, error) {
	v := TemplateView{Available: s.d.Templates != nil, ByStatus: map[string]int{}}
	if !v.Available {
		return v, nil
	}
	list, err := s.d.Templates.List(ctx, pupil)
	if err != nil {
		return v, err
	}
	v.Total = len(list)
	for _, t := range list {
		v.ByStatus[t.Status]++
		v.Rows = append(v.Rows, TemplateRow{Model: t.Model, Status: t.Status, Created: msDate(lang, t.CreatedAt), HasPhoto: t.HasPhoto})
	}
	return v, nil
}

// pupilAttendance fills today and the last 30 days (hub/attendance's
// computation, as GET /pupils/{id}/attendance/{day}); a past day it
// leaves "not yet" had no classes and is left out.
func (s *Server) pupilAttendance(ctx context.Context, d *PupilData, lang string) error {
	cls, err := s.loadClass(ctx, d.Pupil.ClassID)
	if err != nil {
		return err
	}
	today := s.now().In(cls.Loc)
	d.Counts = map[string]int{}
	for k := 0; k <= attendanceDays; k++ {
		t := today.AddDate(0, 0, -k)
		day, err := s.d.Days.Recompute(ctx, d.Pupil.ID, t.Format("2006-01-02"))
		if err != nil {
			return err
		}
		row := AttendanceRow{Day: day.Day, Date: FormatDate(lang, day.Day), Status: day.Status, Weekday: int(t.Weekday()),
			Manual: day.Source == "manual"}
		if day.ArrivedAt != nil {
			row.Arrived = hhmm(*day.ArrivedAt, cls.Loc)
		}
		if k == 0 {
			d.Today = &row
			continue
		}
		if day.Status == "not_yet" {
			continue
		}
		d.Days = append(d.Days, row)
		d.Counts[day.Status]++
	}
	sort.SliceStable(d.Days, func(i, j int) bool { return d.Days[i].Day > d.Days[j].Day })
	return nil
}
