package web

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/diemdanh/diemdanh/hub/api"
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

// dayRows computes every pupil's row of a class on day (only pupilID
// when not ""). Status: the latest manual override wins; else the first
// "in" event not marked "not this pupil" decides present or late against
// start + late_after; else absent after the cut-off (or on a past day),
// not yet before it.
func (s *Server) dayRows(ctx context.Context, cls ClassInfo, day, pupilID string) ([]Row, error) {
	from, to, err := dayBounds(day, cls.Loc)
	if err != nil {
		return nil, err
	}
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
	idx := map[string]int{}
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
	for i, r := range out {
		idx[r.PupilID] = i
	}
	if len(out) == 0 {
		return out, nil
	}
	q = `SELECT e.event_id, e.student_id, e.direction, e.captured_at, e.received_at, COALESCE(NULLIF(g.name, ''), e.gate_id),
		e.face_jpeg IS NOT NULL FROM events e JOIN pupils p ON p.id = e.student_id LEFT JOIN gates g ON g.id = e.gate_id
		WHERE p.class_id = ? AND e.rejected = 0 AND e.captured_at >= ? AND e.captured_at < ?`
	args = []any{cls.ID, from, to}
	if pupilID != "" {
		q = strings.Replace(q, "WHERE p.class_id = ?", "WHERE p.class_id = ? AND e.student_id = ?", 1)
		args = []any{cls.ID, pupilID, from, to}
	}
	erows, err := s.d.DB.R.QueryContext(ctx, q+` ORDER BY e.captured_at`, args...)
	if err != nil {
		return nil, fmt.Errorf("web: events: %w", err)
	}
	arrived := map[string]int64{}
	for erows.Next() {
		var id, pid, dir, gate string
		var at, recv int64
		var crop bool
		if err := erows.Scan(&id, &pid, &dir, &at, &recv, &gate, &crop); err != nil {
			erows.Close()
			return nil, fmt.Errorf("web: events: %w", err)
		}
		i, ok := idx[pid]
		if !ok {
			continue
		}
		r := &out[i]
		if dir == "out" {
			r.Departed = hhmm(at, cls.Loc)
			continue
		}
		if r.EventID == "" {
			r.EventID, r.Arrived, r.Gate, r.HasCrop, r.ReceivedAt = id, hhmm(at, cls.Loc), gate, crop, recv
			arrived[pid] = at
		}
	}
	erows.Close()
	orows, err := s.d.DB.R.QueryContext(ctx, `SELECT o.pupil_id, o.status, o.reason FROM attendance_overrides o
		JOIN pupils p ON p.id = o.pupil_id WHERE p.class_id = ? AND o.day = ? ORDER BY o.id`, cls.ID, day)
	if err != nil {
		return nil, fmt.Errorf("web: overrides: %w", err)
	}
	manual := map[string][2]string{}
	for orows.Next() {
		var pid, st, reason string
		if err := orows.Scan(&pid, &st, &reason); err == nil {
			manual[pid] = [2]string{st, reason}
		}
	}
	orows.Close()
	now := s.now().In(cls.Loc)
	today := now.Format("2006-01-02")
	start, _ := clockOn(day, cls.Start, cls.Loc)
	cutoff, _ := clockOn(day, cls.Cutoff, cls.Loc)
	lateAt := start.Add(time.Duration(cls.LateAfter) * time.Minute)
	for i := range out {
		r := &out[i]
		if m, ok := manual[r.PupilID]; ok {
			r.Status, r.Reason, r.Manual = m[0], m[1], true
			continue
		}
		if at, ok := arrived[r.PupilID]; ok {
			r.Status = "present"
			if time.UnixMilli(at).After(lateAt) {
				r.Status = "late"
			}
			continue
		}
		switch {
		case day < today || (day == today && !now.Before(cutoff)):
			r.Status = "absent"
		default:
			r.Status = "not_yet"
		}
	}
	return out, nil
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
