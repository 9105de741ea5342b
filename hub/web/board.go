package web

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/diemdanh/diemdanh/hub/api"
	"github.com/diemdanh/diemdanh/hub/attendance"
	"github.com/diemdanh/diemdanh/hub/notify"
)

// Statuses of a pupil on a day, in board order.
var Statuses = []string{"present", "late", "absent", "not_yet", "excused"}

// ClassInfo is a class with its timetable.
type ClassInfo struct {
	ID, Name, SchoolID string
	Grade              int
	Start, Cutoff      string // HH:MM local
	LateAfter          int    // minutes
	Loc                *time.Location
}

// Row is one pupil on one day.
type Row struct {
	PupilID    string `json:"pupil_id"`
	Name       string `json:"name"`
	Status     string `json:"status"`
	Arrived    string `json:"arrived"`  // HH:MM local, "" if none
	Departed   string `json:"departed"` // HH:MM local
	Gate       string `json:"gate"`
	EventID    string `json:"event_id"` // the arrival event (face crop, "not this pupil")
	HasCrop    bool   `json:"has_crop"`
	Manual     bool   `json:"manual"`
	Reason     string `json:"reason"`
	ManualOnly bool   `json:"manual_only"` // no face attendance (no consent)
	ReceivedAt int64  `json:"received_at,omitempty"`
}

// Board is a class on a day.
type Board struct {
	Class   ClassInfo
	Day     string
	Today   bool
	Rows    []Row
	Counts  map[string]int
	Missing bool // filter on
	Saved   bool
	// FacesOn: the board has the section of the faces the gates did not
	// decide (faces.go); Faces are the day's, as the viewer may see them.
	FacesOn bool
	Faces   []FaceCard
}

var errNoClass = &api.Error{Code: api.CodeNotFound, Message: "no such class"}

func (s *Server) loadClass(ctx context.Context, id string) (ClassInfo, error) {
	var c ClassInfo
	var tz string
	err := s.d.DB.R.QueryRowContext(ctx, `SELECT c.id, c.name, c.school_id, c.grade, c.start_time, c.absent_cutoff,
		c.late_after_min, s.timezone FROM classes c JOIN schools s ON s.id = c.school_id WHERE c.id = ?`, id).
		Scan(&c.ID, &c.Name, &c.SchoolID, &c.Grade, &c.Start, &c.Cutoff, &c.LateAfter, &tz)
	if errors.Is(err, sql.ErrNoRows) {
		return c, errNoClass
	}
	if err != nil {
		return c, fmt.Errorf("web: class: %w", err)
	}
	c.Loc = notify.Zone(tz)
	return c, nil
}

// today is the school-local date.
func (s *Server) today(loc *time.Location) string { return s.now().In(loc).Format("2006-01-02") }

// checkDay fails a day that is not YYYY-MM-DD.
func checkDay(day string) error {
	if _, err := time.Parse(isoDateLayout, day); err != nil {
		return api.Invalid("day", "must be YYYY-MM-DD")
	}
	return nil
}

// queryDays reads the date query parameters keys as typed by a person
// (dd/mm/yyyy, ParseDate) or as ISO, "" where absent. A malformed one
// fails the request (400, the "error.date" message); when any was not
// already ISO, a GET is redirected to the same address with ISO values, so
// addresses, bookmarks and the page's own links stay yyyy-mm-dd. ok is
// false when the response is written.
func (s *Server) queryDays(c *gin.Context, keys ...string) ([]string, bool) {
	out := make([]string, len(keys))
	q := c.Request.URL.Query()
	changed := false
	for i, k := range keys {
		raw := q.Get(k)
		if raw == "" {
			continue
		}
		day, err := ParseDate(raw)
		if err != nil {
			s.log.Debug("bad date", "param", k, "err", err)
			s.fail(c, http.StatusBadRequest, "error.date")
			return nil, false
		}
		out[i], changed = day, changed || day != raw
		q.Set(k, day)
	}
	if changed && c.Request.Method == http.MethodGet {
		c.Redirect(http.StatusSeeOther, c.Request.URL.Path+"?"+q.Encode())
		return nil, false
	}
	return out, true
}

// addDays returns the ISO day n days after day ("" when day is not ISO).
func addDays(day string, n int) string {
	t, err := time.Parse(isoDateLayout, day)
	if err != nil {
		return ""
	}
	return t.AddDate(0, 0, n).Format(isoDateLayout)
}

func hhmm(ms int64, loc *time.Location) string { return time.UnixMilli(ms).In(loc).Format("15:04") }

// clockOn returns HH:MM on day in loc.
func clockOn(day, hm string, loc *time.Location) (time.Time, bool) {
	t, err := time.ParseInLocation("2006-01-02 15:04", day+" "+hm, loc)
	return t, err == nil
}

// givenNameKey sorts like a Vietnamese class register: by given name
// (the last word), then the full name.
func givenNameKey(full string) string {
	f := strings.Fields(full)
	if len(f) == 0 {
		return ""
	}
	return strings.ToLower(f[len(f)-1]) + "\x00" + strings.ToLower(full)
}

// dayRows returns every pupil's row of a class on day (only pupilID when
// not ""), by given name. The rows are hub/attendance's class day
// (ClassPupilDays: daily_attendance, computed by its one rule, missing or
// not-final days computed first, with the override's reason and the
// arrival's gate, face crop and receipt time); this code only turns them
// into what the board shows.
func (s *Server) dayRows(ctx context.Context, cls ClassInfo, day, pupilID string) ([]Row, error) {
	if err := checkDay(day); err != nil {
		return nil, err
	}
	days, err := s.d.Days.ClassPupilDays(ctx, cls.ID, day, pupilID)
	if err != nil {
		return nil, fmt.Errorf("web: attendance: %w", err)
	}
	out := make([]Row, len(days))
	for i, d := range days {
		out[i] = boardRow(d, cls.Loc)
	}
	sort.SliceStable(out, func(i, j int) bool { return givenNameKey(out[i].Name) < givenNameKey(out[j].Name) })
	return out, nil
}

// boardRow is a pupil's row as the board shows it.
func boardRow(d attendance.PupilDay, loc *time.Location) Row {
	r := Row{PupilID: d.PupilID, Name: d.FullName, Status: d.Status, ManualOnly: d.ManualOnly}
	if d.Source == "manual" {
		r.Manual, r.Reason = true, d.OverrideReason
	}
	if d.ArrivedAt != nil {
		r.Arrived = hhmm(*d.ArrivedAt, loc)
	}
	if d.DepartedAt != nil {
		r.Departed = hhmm(*d.DepartedAt, loc)
	}
	if d.ArrivalEventID != "" {
		r.EventID, r.Gate, r.HasCrop, r.ReceivedAt = d.ArrivalEventID, d.ArrivalGate, d.ArrivalCrop, d.ArrivalReceivedAt
	}
	return r
}

func countRows(rows []Row) map[string]int {
	m := map[string]int{"total": len(rows)}
	for _, st := range Statuses {
		m[st] = 0
	}
	for _, r := range rows {
		m[r.Status]++
	}
	return m
}

// missing reports whether a row counts as "not in school".
func missing(r Row) bool { return r.Status == "absent" || r.Status == "not_yet" }

// TermRow is one pupil's summary over a date range.
type TermRow struct {
	PupilID, Name string
	Counts        map[string]int
}

// termSummary counts statuses per pupil over school days in [from, to]
// (Monday to Friday, plus any Saturday with events for the class; never
// after today).
func (s *Server) termSummary(ctx context.Context, cls ClassInfo, from, to string) ([]TermRow, int, error) {
	f, err := time.ParseInLocation("2006-01-02", from, cls.Loc)
	if err != nil {
		return nil, 0, api.Invalid("from", "must be YYYY-MM-DD")
	}
	t, err := time.ParseInLocation("2006-01-02", to, cls.Loc)
	if err != nil {
		return nil, 0, api.Invalid("to", "must be YYYY-MM-DD")
	}
	if t.Before(f) || t.Sub(f) > 400*24*time.Hour {
		return nil, 0, api.Invalid("to", "range must be 0..400 days")
	}
	today := s.today(cls.Loc)
	var rows []TermRow
	idx := map[string]int{}
	days := 0
	for d := f; !d.After(t); d = d.AddDate(0, 0, 1) {
		day := d.Format("2006-01-02")
		if day > today || d.Weekday() == time.Sunday {
			continue
		}
		dr, err := s.dayRows(ctx, cls, day, "")
		if err != nil {
			return nil, 0, err
		}
		if d.Weekday() == time.Saturday {
			any := false
			for _, r := range dr {
				any = any || r.EventID != "" || r.Manual
			}
			if !any {
				continue
			}
		}
		days++
		for _, r := range dr {
			i, ok := idx[r.PupilID]
			if !ok {
				i = len(rows)
				idx[r.PupilID] = i
				rows = append(rows, TermRow{PupilID: r.PupilID, Name: r.Name, Counts: map[string]int{}})
			}
			rows[i].Counts[r.Status]++
		}
	}
	return rows, days, nil
}

// termDefault is the current Vietnamese school term: 1 (Sep–mid Jan) or
// 2 (mid Jan–Jun).
func termDefault(now time.Time) (string, string) {
	y := now.Year()
	md := int(now.Month())*100 + now.Day()
	switch {
	case md >= 901:
		return fmt.Sprintf("%d-09-01", y), fmt.Sprintf("%d-01-14", y+1)
	case md < 115:
		return fmt.Sprintf("%d-09-01", y-1), fmt.Sprintf("%d-01-14", y)
	default:
		return fmt.Sprintf("%d-01-15", y), fmt.Sprintf("%d-06-30", y)
	}
}
