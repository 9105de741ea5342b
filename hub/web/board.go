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

func dayBounds(day string, loc *time.Location) (int64, int64, error) {
	t, err := time.ParseInLocation("2006-01-02", day, loc)
	if err != nil {
		return 0, 0, api.Invalid("day", "must be YYYY-MM-DD")
	}
	return t.UnixMilli(), t.AddDate(0, 0, 1).UnixMilli(), nil
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
// not ""). The status, arrival and departure are hub/attendance's
// (daily_attendance, computed by its one rule: the latest manual override
// wins; else the first "in" event not marked "not this pupil" decides
// present or late against start + late_after; else absent after the
// cut-off or not yet before it). Missing or not-final rows are computed
// first (attendance's ClassDay / Recompute). This code only adds what the
// board shows besides: gate name, face crop, the override's reason.
//
// Steps: the class's pupils (boardPupils), their days (boardDays), the
// day's events (boardEvents) and override reasons (boardReasons), then
// each row filled in (fillRow).
func (s *Server) dayRows(ctx context.Context, cls ClassInfo, day, pupilID string) ([]Row, error) {
	from, to, err := dayBounds(day, cls.Loc)
	if err != nil {
		return nil, err
	}
	out, err := s.boardPupils(ctx, cls, pupilID)
	if err != nil || len(out) == 0 {
		return out, err
	}
	days, err := s.boardDays(ctx, cls, day, pupilID)
	if err != nil {
		return nil, err
	}
	evs, err := s.boardEvents(ctx, cls, from, to, pupilID)
	if err != nil {
		return nil, err
	}
	reasons, err := s.boardReasons(ctx, cls, day, pupilID)
	if err != nil {
		return nil, err
	}
	for i := range out {
		fillRow(&out[i], days, evs, reasons, cls.Loc)
	}
	return out, nil
}

// boardPupils are the class's active pupils (or only pupilID), by given
// name.
func (s *Server) boardPupils(ctx context.Context, cls ClassInfo, pupilID string) ([]Row, error) {
	q := `SELECT id, full_name, manual_attendance FROM pupils WHERE class_id = ? AND active = 1`
	args := []any{cls.ID}
	if pupilID != "" {
		q += ` AND id = ?`
		args = append(args, pupilID)
	}
	rows, err := s.d.DB.R.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("web: pupils: %w", err)
	}
	var out []Row
	for rows.Next() {
		var r Row
		if err := rows.Scan(&r.PupilID, &r.Name, &r.ManualOnly); err != nil {
			rows.Close()
			return nil, fmt.Errorf("web: pupils: %w", err)
		}
		out = append(out, r)
	}
	rows.Close()
	sort.SliceStable(out, func(i, j int) bool { return givenNameKey(out[i].Name) < givenNameKey(out[j].Name) })
	return out, nil
}

// boardDays are the pupils' attendance days, by pupil.
func (s *Server) boardDays(ctx context.Context, cls ClassInfo, day, pupilID string) (map[string]attendance.Day, error) {
	days := map[string]attendance.Day{}
	if pupilID != "" {
		d, err := s.pupilDay(ctx, pupilID, day)
		if err != nil {
			return nil, err
		}
		days[pupilID] = d
		return days, nil
	}
	all, err := s.d.Days.ClassDay(ctx, cls.ID, day)
	if err != nil {
		return nil, fmt.Errorf("web: attendance: %w", err)
	}
	for _, d := range all {
		days[d.PupilID] = d
	}
	return days, nil
}

// boardEvent is what the board shows of an event: its gate's name,
// whether it has a face crop, and when the hub received it.
type boardEvent struct {
	gate string
	crop bool
	recv int64
}

// boardEvents are the day's events of the class (or of pupilID), by ID.
func (s *Server) boardEvents(ctx context.Context, cls ClassInfo, from, to int64, pupilID string) (map[string]boardEvent, error) {
	q := `SELECT e.event_id, e.received_at, COALESCE(NULLIF(g.name, ''), e.gate_id), e.face_jpeg IS NOT NULL
		FROM events e JOIN pupils p ON p.id = e.student_id LEFT JOIN gates g ON g.id = e.gate_id
		WHERE p.class_id = ? AND e.captured_at >= ? AND e.captured_at < ?`
	args := []any{cls.ID, from, to}
	if pupilID != "" {
		q = strings.Replace(q, "WHERE p.class_id = ?", "WHERE p.class_id = ? AND e.student_id = ?", 1)
		args = []any{cls.ID, pupilID, from, to}
	}
	erows, err := s.d.DB.R.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("web: events: %w", err)
	}
	defer erows.Close()
	evs := map[string]boardEvent{}
	for erows.Next() {
		var id string
		var e boardEvent
		if err := erows.Scan(&id, &e.recv, &e.gate, &e.crop); err != nil {
			return nil, fmt.Errorf("web: events: %w", err)
		}
		evs[id] = e
	}
	return evs, nil
}

// boardReasons are the reasons of the day's overrides, by pupil (the
// latest wins).
func (s *Server) boardReasons(ctx context.Context, cls ClassInfo, day, pupilID string) (map[string]string, error) {
	q := `SELECT o.pupil_id, o.reason FROM attendance_overrides o JOIN pupils p ON p.id = o.pupil_id
		WHERE p.class_id = ? AND o.day = ? ORDER BY o.id`
	args := []any{cls.ID, day}
	if pupilID != "" {
		q = strings.Replace(q, "WHERE p.class_id = ?", "WHERE p.class_id = ? AND o.pupil_id = ?", 1)
		args = []any{cls.ID, pupilID, day}
	}
	orows, err := s.d.DB.R.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("web: overrides: %w", err)
	}
	defer orows.Close()
	reasons := map[string]string{}
	for orows.Next() {
		var pid, reason string
		if err := orows.Scan(&pid, &reason); err == nil {
			reasons[pid] = reason
		}
	}
	return reasons, nil
}

// fillRow fills a pupil's row from their day, its arrival event and the
// override's reason.
func fillRow(r *Row, days map[string]attendance.Day, evs map[string]boardEvent, reasons map[string]string, loc *time.Location) {
	d, ok := days[r.PupilID]
	if !ok {
		// Not computable (e.g. a class without a timetable): say so
		// rather than guess.
		r.Status = attendance.NotYet
		return
	}
	r.Status = d.Status
	if d.Source == "manual" {
		r.Manual, r.Reason = true, reasons[r.PupilID]
	}
	if d.ArrivedAt != nil {
		r.Arrived = hhmm(*d.ArrivedAt, loc)
	}
	if d.DepartedAt != nil {
		r.Departed = hhmm(*d.DepartedAt, loc)
	}
	if d.ArrivalEventID != "" {
		e := evs[d.ArrivalEventID]
		r.EventID, r.Gate, r.HasCrop, r.ReceivedAt = d.ArrivalEventID, e.gate, e.crop, e.recv
		if r.Gate == "" {
			r.Gate = d.ArrivalGateID
		}
	}
}

// pupilDay reads a pupil's stored day from daily_attendance, computing it
// first (hub/attendance) when it is missing or not final (not_yet).
func (s *Server) pupilDay(ctx context.Context, pupilID, day string) (attendance.Day, error) {
	d := attendance.Day{PupilID: pupilID, Day: day}
	var arr, dep sql.NullInt64
	err := s.d.DB.R.QueryRowContext(ctx, `SELECT status, arrived_at, departed_at, COALESCE(arrival_event_id, ''),
		COALESCE(arrival_gate_id, ''), source FROM daily_attendance WHERE pupil_id = ? AND day = ?`, pupilID, day).
		Scan(&d.Status, &arr, &dep, &d.ArrivalEventID, &d.ArrivalGateID, &d.Source)
	switch {
	case errors.Is(err, sql.ErrNoRows) || (err == nil && d.Status == attendance.NotYet):
		d, err = s.d.Days.Recompute(ctx, pupilID, day)
		if err != nil {
			return d, fmt.Errorf("web: attendance: %w", err)
		}
		return d, nil
	case err != nil:
		return d, fmt.Errorf("web: attendance: %w", err)
	}
	if arr.Valid {
		d.ArrivedAt = &arr.Int64
	}
	if dep.Valid {
		d.DepartedAt = &dep.Int64
	}
	return d, nil
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
