// Package attendance computes each pupil's daily attendance state from the
// stored gate events, the class timetable (start time, late threshold,
// absence cut-off) and manual overrides: present, late, absent, not_yet or
// excused, with arrival and departure times, in daily_attendance.
//
// The state is recomputed incrementally: the Service is an ingest Listener
// (EventStored marks the pupil's day dirty and returns at once; the worker
// recomputes it), and a ticker turns not_yet into absent when a class's
// cut-off passes. Manual overrides are append-only rows in
// attendance_overrides recording who and why; the latest one wins.
//
// Days are school-local (schools.timezone, Asia/Ho_Chi_Minh by default);
// event times (captured_at) are on the hub's clock: the gate's reading
// corrected by the gate's measured clock offset (hub/ingest), so lateness
// is judged by the hub's clock even when a gate's clock is off.
package attendance

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/diemdanh/diemdanh/hub/api"
	"github.com/diemdanh/diemdanh/hub/ingest"
	"github.com/diemdanh/diemdanh/hub/store"
	"github.com/diemdanh/diemdanh/models/conf"
	"github.com/diemdanh/diemdanh/models/wire"
)

// Statuses of a pupil's day.
const (
	Present = "present"
	Late    = "late"
	Absent  = "absent"
	NotYet  = "not_yet"
	Excused = "excused"
)

// Config of the attendance worker.
type Config struct {
	// Tick is how often the cut-off check runs (not_yet → absent).
	Tick time.Duration `yaml:"tick"`
	// Default timetable for pupils without a class.
	DefaultStart        string `yaml:"default_start"`
	DefaultLateAfterMin int    `yaml:"default_late_after_min"`
	DefaultCutoff       string `yaml:"default_cutoff"`
	// SchoolDays are the weekdays with classes (0 = Sunday). On other days,
	// and on Holidays, nobody is marked absent: a row is written only when a
	// pupil actually came (an event) or staff recorded something.
	SchoolDays []int    `yaml:"school_days"`
	Holidays   []string `yaml:"holidays"` // YYYY-MM-DD, school-local
}

// Default returns the defaults.
func Default() Config {
	return Config{Tick: time.Minute, DefaultStart: "07:00", DefaultLateAfterMin: 15, DefaultCutoff: "09:00",
		SchoolDays: []int{1, 2, 3, 4, 5}}
}

// Validate checks the config.
func (c Config) Validate(prefix string) error {
	if c.Tick < time.Second || c.Tick > time.Hour {
		return conf.Fieldf(prefix+".tick", "must be 1s..1h, got %s", c.Tick)
	}
	if _, err := parseHHMM(c.DefaultStart); err != nil {
		return conf.Fieldf(prefix+".default_start", "%v", err)
	}
	if _, err := parseHHMM(c.DefaultCutoff); err != nil {
		return conf.Fieldf(prefix+".default_cutoff", "%v", err)
	}
	if c.DefaultLateAfterMin < 0 || c.DefaultLateAfterMin > 240 {
		return conf.Fieldf(prefix+".default_late_after_min", "must be 0..240")
	}
	for _, d := range c.SchoolDays {
		if d < 0 || d > 6 {
			return conf.Fieldf(prefix+".school_days", "weekday %d not in 0..6 (0 = Sunday)", d)
		}
	}
	for _, h := range c.Holidays {
		if _, err := time.Parse(time.DateOnly, h); err != nil {
			return conf.Fieldf(prefix+".holidays", "%q is not YYYY-MM-DD", h)
		}
	}
	return nil
}

// SchoolDay reports whether day (YYYY-MM-DD) has classes: a configured
// weekday that is not a holiday.
func (c Config) SchoolDay(day string) bool {
	t, err := time.Parse(time.DateOnly, day)
	if err != nil {
		return false
	}
	for _, h := range c.Holidays {
		if h == day {
			return false
		}
	}
	for _, d := range c.SchoolDays {
		if time.Weekday(d) == t.Weekday() {
			return true
		}
	}
	return false
}

// Timetable is a class's day.
type Timetable struct {
	Start        time.Duration // since local midnight
	LateAfter    time.Duration
	AbsentCutoff time.Duration
}

func parseHHMM(s string) (time.Duration, error) {
	h, m, ok := strings.Cut(s, ":")
	hh, err1 := strconv.Atoi(h)
	mm, err2 := strconv.Atoi(m)
	if !ok || err1 != nil || err2 != nil || hh < 0 || hh > 23 || mm < 0 || mm > 59 || len(m) != 2 {
		return 0, fmt.Errorf("must be HH:MM, got %q", s)
	}
	return time.Duration(hh)*time.Hour + time.Duration(mm)*time.Minute, nil
}

// Day is one pupil's computed state.
type Day struct {
	PupilID        string `json:"pupil_id"`
	FullName       string `json:"full_name,omitempty"`
	ClassID        string `json:"class_id,omitempty"`
	Day            string `json:"day"`
	Status         string `json:"status"`
	ArrivedAt      *int64 `json:"arrived_at,omitempty"`
	DepartedAt     *int64 `json:"departed_at,omitempty"`
	ArrivalEventID string `json:"arrival_event_id,omitempty"`
	ArrivalGateID  string `json:"arrival_gate_id,omitempty"`
	Source         string `json:"source"` // auto or manual
	Reason         string `json:"reason,omitempty"`
	ManualBy       string `json:"manual_by,omitempty"`
}

// Override is one manual change.
type Override struct {
	ID        int64  `json:"id"`
	PupilID   string `json:"pupil_id"`
	Day       string `json:"day"`
	Status    string `json:"status"`
	Reason    string `json:"reason"`
	Actor     string `json:"actor"`
	CreatedAt int64  `json:"created_at"`
}

type key struct{ pupil, day string }

// Service keeps daily_attendance up to date.
type Service struct {
	db  *store.DB
	cfg Config
	log *slog.Logger
	now func() time.Time

	mu    sync.Mutex
	dirty map[key]bool
	tz    map[string]*time.Location
	kick  chan struct{}

	hmu      sync.Mutex
	onChange []func(ctx context.Context, d Day)
}

// OnChange registers fn, called after a pupil's stored day changed through
// the service's own work: the worker's recompute after an event, the
// cut-off check (not_yet → absent), a missing day filled in, or a manual
// override (always). The live board subscribes to it. fn runs on the
// caller's goroutine and must not block for long. Recompute called
// directly by another package does not call it (that caller knows).
func (s *Service) OnChange(fn func(ctx context.Context, d Day)) {
	s.hmu.Lock()
	s.onChange = append(s.onChange, fn)
	s.hmu.Unlock()
}

func (s *Service) changed(ctx context.Context, d Day) {
	s.hmu.Lock()
	fns := append([]func(context.Context, Day){}, s.onChange...)
	s.hmu.Unlock()
	for _, fn := range fns {
		fn(ctx, d)
	}
}

// New returns the service.
func New(db *store.DB, cfg Config, log *slog.Logger, now func() time.Time) *Service {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if now == nil {
		now = time.Now
	}
	return &Service{db: db, cfg: cfg, log: log, now: now, dirty: map[key]bool{}, tz: map[string]*time.Location{}, kick: make(chan struct{}, 1)}
}

var _ ingest.Listener = (*Service)(nil)

// EventStored implements ingest.Listener: it marks the pupil's day dirty
// and returns without blocking.
func (s *Service) EventStored(ctx context.Context, ev ingest.StoredEvent) {
	if ev.Unknown || ev.StudentID == wire.UnknownStudent {
		return
	}
	loc := s.location(ctx, ev.SchoolID)
	day := time.UnixMilli(ev.CapturedAt).In(loc).Format(time.DateOnly)
	s.mu.Lock()
	s.dirty[key{ev.StudentID, day}] = true
	s.mu.Unlock()
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

func (s *Service) location(ctx context.Context, school string) *time.Location {
	s.mu.Lock()
	loc, ok := s.tz[school]
	s.mu.Unlock()
	if ok {
		return loc
	}
	var name string
	if err := s.db.R.QueryRowContext(ctx, `SELECT timezone FROM schools WHERE id = ?`, school).Scan(&name); err != nil {
		name = "Asia/Ho_Chi_Minh"
	}
	loc, err := time.LoadLocation(name)
	if err != nil {
		loc = time.FixedZone("ICT", 7*3600)
	}
	s.mu.Lock()
	s.tz[school] = loc
	s.mu.Unlock()
	return loc
}

// Run recomputes dirty days as they come and runs the cut-off check every
// Tick until ctx ends; it flushes the dirty set before returning.
func (s *Service) Run(ctx context.Context) error {
	t := time.NewTicker(s.cfg.Tick)
	defer t.Stop()
	failing := false
	for {
		var err error
		select {
		case <-ctx.Done():
			fctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_, err := s.Flush(fctx)
			return err
		case <-s.kick:
			_, err = s.Flush(ctx)
		case <-t.C:
			if _, err = s.Flush(ctx); err == nil {
				err = s.SyncOnce(ctx)
			}
		}
		switch {
		case err != nil && !failing && ctx.Err() == nil:
			s.log.Warn("attendance: recompute failing", "err", err)
			failing = true
		case err == nil && failing:
			s.log.Info("attendance: recompute recovered")
			failing = false
		}
	}
}

// Flush recomputes every dirty day now and returns how many.
func (s *Service) Flush(ctx context.Context) (int, error) {
	s.mu.Lock()
	keys := make([]key, 0, len(s.dirty))
	for k := range s.dirty {
		keys = append(keys, k)
	}
	s.dirty = map[key]bool{}
	s.mu.Unlock()
	for i, k := range keys {
		if _, err := s.recompute(ctx, k.pupil, k.day, true); err != nil && !errors.Is(err, api.ErrNotFound) {
			s.mu.Lock()
			for _, k := range keys[i:] {
				s.dirty[k] = true
			}
			s.mu.Unlock()
			return i, err
		}
	}
	return len(keys), nil
}

// SyncOnce makes today's row of every active pupil of every school exist
// and be current for pupils still not_yet (turning them absent once their
// class's cut-off has passed). Tests call it directly.
func (s *Service) SyncOnce(ctx context.Context) error {
	schools, err := store.Strings(ctx, s.db.R, `SELECT id FROM schools`)
	if err != nil {
		return fmt.Errorf("attendance: schools: %w", err)
	}
	for _, sc := range schools {
		day := s.now().In(s.location(ctx, sc)).Format(time.DateOnly)
		if err := s.EnsureDay(ctx, sc, "", day); err != nil {
			return err
		}
	}
	return nil
}

// EnsureDay recomputes day for the active pupils of a school (or one class)
// whose row is missing or not final (not_yet).
func (s *Service) EnsureDay(ctx context.Context, school, class, day string) error {
	q := `SELECT p.id FROM pupils p LEFT JOIN daily_attendance d ON d.pupil_id = p.id AND d.day = ?
		WHERE p.school_id = ? AND p.active = 1 AND (d.pupil_id IS NULL OR d.status = 'not_yet')`
	args := []any{day, school}
	if !s.cfg.SchoolDay(day) {
		// No classes: nobody becomes absent, but a pupil who did come in (or
		// whom staff marked) still gets the day computed. The window is a
		// day wide on each side of UTC midnight; recompute filters exactly.
		t, _ := time.Parse(time.DateOnly, day)
		q += ` AND (EXISTS (SELECT 1 FROM events e WHERE e.student_id = p.id AND e.captured_at >= ? AND e.captured_at < ?)
			OR EXISTS (SELECT 1 FROM attendance_overrides o WHERE o.pupil_id = p.id AND o.day = ?))`
		args = append(args, t.Add(-24*time.Hour).UnixMilli(), t.Add(48*time.Hour).UnixMilli(), day)
	}
	if class != "" {
		q += ` AND p.class_id = ?`
		args = append(args, class)
	}
	ids, err := store.Strings(ctx, s.db.R, q, args...)
	if err != nil {
		return fmt.Errorf("attendance: ensure: %w", err)
	}
	for _, id := range ids {
		if _, err := s.recompute(ctx, id, day, true); err != nil {
			return err
		}
	}
	return nil
}

type pupilInfo struct {
	school, class, name string
	tt                  Timetable
	loc                 *time.Location
}

func (s *Service) pupil(ctx context.Context, id string) (pupilInfo, error) {
	var p pupilInfo
	var start, cutoff string
	var late int
	err := s.db.R.QueryRowContext(ctx, `SELECT p.school_id, COALESCE(p.class_id, ''), p.full_name,
		COALESCE(c.start_time, ?), COALESCE(c.late_after_min, ?), COALESCE(c.absent_cutoff, ?)
		FROM pupils p LEFT JOIN classes c ON c.id = p.class_id WHERE p.id = ?`,
		s.cfg.DefaultStart, s.cfg.DefaultLateAfterMin, s.cfg.DefaultCutoff, id).
		Scan(&p.school, &p.class, &p.name, &start, &late, &cutoff)
	if errors.Is(err, sql.ErrNoRows) {
		return p, &api.Error{Code: api.CodeNotFound, Message: "pupil " + id + " not found"}
	}
	if err != nil {
		return p, fmt.Errorf("attendance: pupil: %w", err)
	}
	st, err1 := parseHHMM(start)
	co, err2 := parseHHMM(cutoff)
	if err1 != nil || err2 != nil {
		return p, fmt.Errorf("attendance: class %s has a bad timetable (%q, %q)", p.class, start, cutoff)
	}
	p.tt = Timetable{Start: st, LateAfter: time.Duration(late) * time.Minute, AbsentCutoff: co}
	p.loc = s.location(ctx, p.school)
	return p, nil
}

type ev struct {
	id, gate, dir string
	at            int64
}

// Decide is the pure state function: given the day's events (sorted by
// time), the latest override (nil if none), the timetable, the local
// midnight of the day and now, it returns the state.
func Decide(events []ev, ov *Override, tt Timetable, midnight, now time.Time) Day {
	d := Day{Source: "auto"}
	var arrival *ev
	for i := range events {
		if events[i].dir == wire.DirectionIn {
			arrival = &events[i]
			break
		}
	}
	if arrival != nil {
		at := arrival.at
		d.ArrivedAt, d.ArrivalEventID, d.ArrivalGateID = &at, arrival.id, arrival.gate
	}
	for i := len(events) - 1; i >= 0; i-- {
		e := events[i]
		if e.dir == wire.DirectionOut && (arrival == nil || e.at >= arrival.at) {
			at := e.at
			d.DepartedAt = &at
			break
		}
	}
	switch {
	case arrival != nil:
		if time.UnixMilli(arrival.at).After(midnight.Add(tt.Start + tt.LateAfter)) {
			d.Status = Late
		} else {
			d.Status = Present
		}
	case d.DepartedAt != nil:
		// Seen leaving but missed at the entrance: they were at school.
		d.Status = Present
	case now.Before(midnight.Add(tt.AbsentCutoff)):
		d.Status = NotYet
	default:
		d.Status = Absent
	}
	if ov != nil {
		d.Status, d.Source, d.Reason, d.ManualBy = ov.Status, "manual", ov.Reason, ov.Actor
	}
	return d
}

// Recompute computes and stores pupil's state for day (YYYY-MM-DD local).
// It does not call the OnChange hooks.
func (s *Service) Recompute(ctx context.Context, pupilID, day string) (Day, error) {
	return s.recompute(ctx, pupilID, day, false)
}

// rowState is the visible part of a stored day, to detect changes.
type rowState struct {
	status, event, source string
	arr, dep              sql.NullInt64
}

func (s *Service) recompute(ctx context.Context, pupilID, day string, hook bool) (Day, error) {
	p, err := s.pupil(ctx, pupilID)
	if err != nil {
		return Day{}, err
	}
	midnight, err := time.ParseInLocation(time.DateOnly, day, p.loc)
	if err != nil {
		return Day{}, api.Invalid("day", "must be YYYY-MM-DD, got %q", day)
	}
	next := midnight.AddDate(0, 0, 1)
	rows, err := s.db.R.QueryContext(ctx, `SELECT event_id, gate_id, direction, captured_at FROM events
		WHERE student_id = ? AND captured_at >= ? AND captured_at < ? AND rejected = 0 ORDER BY captured_at, event_id`,
		pupilID, midnight.UnixMilli(), next.UnixMilli())
	if err != nil {
		return Day{}, fmt.Errorf("attendance: events: %w", err)
	}
	var evs []ev
	for rows.Next() {
		var e ev
		if err := rows.Scan(&e.id, &e.gate, &e.dir, &e.at); err != nil {
			rows.Close()
			return Day{}, fmt.Errorf("attendance: events: %w", err)
		}
		evs = append(evs, e)
	}
	rows.Close()
	var ov *Override
	var o Override
	err = s.db.R.QueryRowContext(ctx, `SELECT id, pupil_id, day, status, reason, actor, created_at FROM attendance_overrides
		WHERE pupil_id = ? AND day = ? ORDER BY id DESC LIMIT 1`, pupilID, day).
		Scan(&o.ID, &o.PupilID, &o.Day, &o.Status, &o.Reason, &o.Actor, &o.CreatedAt)
	if err == nil {
		ov = &o
	} else if !errors.Is(err, sql.ErrNoRows) {
		return Day{}, fmt.Errorf("attendance: overrides: %w", err)
	}
	d := Decide(evs, ov, p.tt, midnight, s.now())
	d.PupilID, d.Day, d.ClassID, d.FullName = pupilID, day, p.class, p.name
	if len(evs) == 0 && ov == nil && !s.cfg.SchoolDay(day) {
		// No classes that day and nothing happened: no row, so nothing
		// counts as an absence (transcripts, headcounts, notifications).
		if _, err := s.db.W.ExecContext(ctx, `DELETE FROM daily_attendance WHERE pupil_id = ? AND day = ? AND source = 'auto'`,
			pupilID, day); err != nil {
			return d, fmt.Errorf("attendance: store: %w", err)
		}
		d.Status = NotYet
		return d, nil
	}
	var old rowState
	var hadRow bool
	if hook {
		err := s.db.R.QueryRowContext(ctx, `SELECT status, COALESCE(arrival_event_id, ''), source, arrived_at, departed_at
			FROM daily_attendance WHERE pupil_id = ? AND day = ?`, pupilID, day).Scan(&old.status, &old.event, &old.source, &old.arr, &old.dep)
		hadRow = err == nil
	}
	_, err = s.db.W.ExecContext(ctx, `INSERT INTO daily_attendance(pupil_id, day, status, arrived_at, departed_at, arrival_event_id, arrival_gate_id, source, updated_at)
		VALUES (?,?,?,?,?,?,?,?,?)
		ON CONFLICT(pupil_id, day) DO UPDATE SET status=excluded.status, arrived_at=excluded.arrived_at, departed_at=excluded.departed_at,
		arrival_event_id=excluded.arrival_event_id, arrival_gate_id=excluded.arrival_gate_id, source=excluded.source, updated_at=excluded.updated_at`,
		pupilID, day, d.Status, d.ArrivedAt, d.DepartedAt, nullStr(d.ArrivalEventID), nullStr(d.ArrivalGateID), d.Source, s.now().UnixMilli())
	if err != nil {
		return d, fmt.Errorf("attendance: store: %w", err)
	}
	if hook {
		now := rowState{status: d.Status, event: d.ArrivalEventID, source: d.Source}
		if d.ArrivedAt != nil {
			now.arr = sql.NullInt64{Int64: *d.ArrivedAt, Valid: true}
		}
		if d.DepartedAt != nil {
			now.dep = sql.NullInt64{Int64: *d.DepartedAt, Valid: true}
		}
		if !hadRow || now != old {
			s.changed(ctx, d)
		}
	}
	return d, nil
}

func nullStr(s string) any {
	if s == "" {
		return nil
	}
	return s
}

// AddOverride records a manual change (who and why) and recomputes the day.
func (s *Service) AddOverride(ctx context.Context, pupilID, day, status, reason, actor string) (Day, error) {
	switch status {
	case Present, Late, Absent, Excused:
	default:
		return Day{}, api.Invalid("status", "must be present, late, absent or excused")
	}
	if strings.TrimSpace(reason) == "" || len(reason) > 500 {
		return Day{}, api.Invalid("reason", "is required (at most 500 characters)")
	}
	if strings.TrimSpace(actor) == "" {
		return Day{}, api.Invalid("actor", "is required")
	}
	if _, err := time.Parse(time.DateOnly, day); err != nil {
		return Day{}, api.Invalid("day", "must be YYYY-MM-DD, got %q", day)
	}
	if _, err := s.pupil(ctx, pupilID); err != nil {
		return Day{}, err
	}
	if _, err := s.db.W.ExecContext(ctx, `INSERT INTO attendance_overrides(pupil_id, day, status, reason, actor, created_at) VALUES (?,?,?,?,?,?)`,
		pupilID, day, status, reason, actor, s.now().UnixMilli()); err != nil {
		return Day{}, fmt.Errorf("attendance: override: %w", err)
	}
	d, err := s.Recompute(ctx, pupilID, day)
	if err == nil {
		d.Reason, d.ManualBy = reason, actor
		s.changed(ctx, d)
	}
	return d, err
}

// Overrides lists a pupil's overrides for a day, oldest first.
func (s *Service) Overrides(ctx context.Context, pupilID, day string) ([]Override, error) {
	rows, err := s.db.R.QueryContext(ctx, `SELECT id, pupil_id, day, status, reason, actor, created_at FROM attendance_overrides
		WHERE pupil_id = ? AND day = ? ORDER BY id`, pupilID, day)
	if err != nil {
		return nil, fmt.Errorf("attendance: overrides: %w", err)
	}
	defer rows.Close()
	out := []Override{}
	for rows.Next() {
		var o Override
		if err := rows.Scan(&o.ID, &o.PupilID, &o.Day, &o.Status, &o.Reason, &o.Actor, &o.CreatedAt); err != nil {
			return nil, err
		}
		out = append(out, o)
	}
	return out, rows.Err()
}
