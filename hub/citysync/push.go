package citysync

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"
)

type evRow struct {
	id, pupil, gate, dir string
	captured, received   int64
	distance             float64
	rejected             bool
}

type dayRow struct {
	pupil, day, class, status, source string
	arrived, departed                 sql.NullInt64
	updated                           int64
}

type headRow struct {
	class, day, meal string
	head, enrolled   int
	rev              int
}

type totRow struct {
	pupil, year string
	term        int
	excused     int
	unexcused   int
}

// pushSet is what one city transaction upserts.
type pushSet struct {
	events []evRow
	daily  []dayRow
	heads  []headRow
	totals []totRow
}

func (s pushSet) empty() bool {
	return len(s.events)+len(s.daily)+len(s.heads)+len(s.totals) == 0
}

var validStatus = map[string]bool{"present": true, "late": true, "absent": true, "not_yet": true, "excused": true}

const changesSQL = `SELECT c.seq, c.kind, c.k1, c.k2,
  e.student_id, e.gate_id, e.direction, e.captured_at, e.received_at, e.distance, e.rejected,
  d.status, d.arrived_at, d.departed_at, d.source, d.updated_at, p.class_id
FROM citysync_changes c
LEFT JOIN events e ON c.kind = 'event' AND e.event_id = c.k1
LEFT JOIN daily_attendance d ON c.kind = 'daily' AND d.pupil_id = c.k1 AND d.day = c.k2
LEFT JOIN pupils p ON c.kind = 'daily' AND p.id = c.k1
WHERE c.seq > ? ORDER BY c.seq LIMIT ?`

// pushChanges pushes the change log in batches, one city transaction per
// batch, advancing the cursor after each commit.
func (w *Worker) pushChanges(ctx context.Context, rep *Report) error {
	cutoffs, err := w.classCutoffs(ctx)
	if err != nil {
		return err
	}
	cur, err := w.state(ctx, "cursor")
	if err != nil {
		return err
	}
	cursor, _ := strconv.ParseInt(cur, 10, 64)
	b := w.readBatch(ctx, cursor)
	for {
		if b.err != nil {
			return b.err
		}
		if b.n == 0 {
			return nil
		}
		// Read the next batch from SQLite while this one goes to the city.
		var next chan batch
		if b.n == w.cfg.BatchSize {
			next = make(chan batch, 1)
			go func(after int64) { next <- w.readBatch(ctx, after) }(b.last)
		}
		err := w.pushBatch(ctx, b, cutoffs, rep)
		if next == nil {
			return err
		}
		nb := <-next
		if err != nil {
			return err
		}
		b = nb
	}
}

// pushBatch adds the derived rows to one batch of changes (headcounts of
// touched class-days past their cut-off, absence totals of touched
// pupil-terms), upserts everything in the city and then advances the cursor.
func (w *Worker) pushBatch(ctx context.Context, b batch, cutoffs map[string]string, rep *Report) error {
	set := b.set
	classDays := map[[2]string]bool{}
	pupilTerms := map[[2]string]termSpan{}
	for _, d := range set.daily {
		if d.class != "" && w.cutoffPassed(cutoffs, d.class, d.day) {
			classDays[[2]string{d.class, d.day}] = true
		}
		if t, ok := w.terms.of(d.day); ok {
			pupilTerms[[2]string{d.pupil, t.Year + "/" + strconv.Itoa(t.Term)}] = t
		}
	}
	var err error
	if set.heads, err = w.headcounts(ctx, classDays); err != nil {
		return err
	}
	if set.totals, err = w.totals(ctx, pupilTerms); err != nil {
		return err
	}
	pushed, more, err := w.write(ctx, set)
	if err != nil {
		return err
	}
	if err := w.commitCursor(ctx, b.last, pushed.heads, append(b.issues, more...)); err != nil {
		return err
	}
	w.count(rep, pushed)
	return nil
}

func (w *Worker) count(rep *Report, p pushSet) {
	rep.Events += len(p.events)
	rep.Daily += len(p.daily)
	rep.Headcounts += len(p.heads)
	rep.Totals += len(p.totals)
	w.m.pushed.WithLabelValues("event").Add(float64(len(p.events)))
	w.m.pushed.WithLabelValues("daily").Add(float64(len(p.daily)))
	w.m.pushed.WithLabelValues("headcount").Add(float64(len(p.heads)))
	w.m.pushed.WithLabelValues("absence_total").Add(float64(len(p.totals)))
}

// batch is one read of the change log: n changes up to seq last.
type batch struct {
	set    pushSet
	last   int64
	n      int
	issues []Issue
	err    error
}

// readBatch reads up to BatchSize changes after cursor with the current
// state of each row, deduplicated, and validates them.
func (w *Worker) readBatch(ctx context.Context, cursor int64) batch {
	set, last, n, issues, err := w.readChanges(ctx, cursor)
	return batch{set, last, n, issues, err}
}

func (w *Worker) readChanges(ctx context.Context, cursor int64) (pushSet, int64, int, []Issue, error) {
	var set pushSet
	var issues []Issue
	rows, err := w.db.R.QueryContext(ctx, changesSQL, cursor, w.cfg.BatchSize)
	if err != nil {
		return set, 0, 0, nil, fmt.Errorf("citysync: read changes: %w", err)
	}
	defer rows.Close()
	last, n := cursor, 0
	evIdx := map[string]int{}
	dayIdx := map[[2]string]int{}
	for rows.Next() {
		var seq int64
		var kind, k1, k2 string
		var student, gate, dir, status, source, class sql.NullString
		var captured, received, arrived, departed, updated sql.NullInt64
		var distance sql.NullFloat64
		var rejected sql.NullInt64
		if err := rows.Scan(&seq, &kind, &k1, &k2, &student, &gate, &dir, &captured, &received, &distance, &rejected,
			&status, &arrived, &departed, &source, &updated, &class); err != nil {
			return set, 0, 0, nil, fmt.Errorf("citysync: read changes: %w", err)
		}
		last, n = seq, n+1
		switch kind {
		case "event":
			if !student.Valid || !captured.Valid {
				continue // deleted or no longer a pupil's event
			}
			if !personalIDRe.MatchString(student.String) || (dir.String != "in" && dir.String != "out") {
				issues = append(issues, Issue{"push_event", k1, fmt.Sprintf("not sent: pupil %q direction %q", student.String, dir.String)})
				continue
			}
			r := evRow{k1, student.String, gate.String, dir.String, captured.Int64, received.Int64, distance.Float64, rejected.Int64 != 0}
			if i, ok := evIdx[k1]; ok {
				set.events[i] = r
			} else {
				evIdx[k1] = len(set.events)
				set.events = append(set.events, r)
			}
		case "daily":
			if !status.Valid {
				continue
			}
			if !personalIDRe.MatchString(k1) || !validStatus[status.String] {
				issues = append(issues, Issue{"push_daily", k1 + "/" + k2, fmt.Sprintf("not sent: status %q", status.String)})
				continue
			}
			if _, err := time.Parse(time.DateOnly, k2); err != nil {
				issues = append(issues, Issue{"push_daily", k1 + "/" + k2, "not sent: bad day"})
				continue
			}
			r := dayRow{k1, k2, class.String, status.String, source.String, arrived, departed, updated.Int64}
			key := [2]string{k1, k2}
			if i, ok := dayIdx[key]; ok {
				set.daily[i] = r
			} else {
				dayIdx[key] = len(set.daily)
				set.daily = append(set.daily, r)
			}
		}
	}
	if err := rows.Err(); err != nil {
		return set, 0, 0, nil, fmt.Errorf("citysync: read changes: %w", err)
	}
	return set, last, n, issues, nil
}

func (w *Worker) classCutoffs(ctx context.Context) (map[string]string, error) {
	rows, err := w.db.R.QueryContext(ctx, `SELECT id, absent_cutoff FROM classes WHERE school_id = ?`, w.school)
	if err != nil {
		return nil, fmt.Errorf("citysync: classes: %w", err)
	}
	defer rows.Close()
	out := map[string]string{}
	for rows.Next() {
		var id, c string
		if err := rows.Scan(&id, &c); err != nil {
			return nil, fmt.Errorf("citysync: classes: %w", err)
		}
		out[id] = c
	}
	return out, rows.Err()
}

// cutoffPassed: past days always; today once the class's absent cut-off
// (HH:MM school-local) has passed; never a future day.
func (w *Worker) cutoffPassed(cutoffs map[string]string, class, day string) bool {
	local := w.now().In(w.loc)
	today := local.Format(time.DateOnly)
	switch {
	case day < today:
		return true
	case day > today:
		return false
	}
	c, ok := cutoffs[class]
	if !ok {
		c = "09:00"
	}
	return local.Format("15:04") >= c
}

// headcounts computes present+late per class-day for every meal and
// returns those that differ from what was last pushed (revision + 1).
func (w *Worker) headcounts(ctx context.Context, classDays map[[2]string]bool) ([]headRow, error) {
	var out []headRow
	for cd := range classDays {
		var head, marked, enrolled int
		err := w.db.R.QueryRowContext(ctx, `SELECT
			  count(*) FILTER (WHERE d.status IN ('present', 'late')), count(*),
			  (SELECT count(*) FROM pupils WHERE class_id = ?1 AND active = 1)
			FROM daily_attendance d JOIN pupils p ON p.id = d.pupil_id
			WHERE p.class_id = ?1 AND d.day = ?2`, cd[0], cd[1]).Scan(&head, &marked, &enrolled)
		if err != nil {
			return nil, fmt.Errorf("citysync: headcount: %w", err)
		}
		if marked == 0 {
			continue // no attendance taken that day (weekend, holiday)
		}
		rows, err := w.changedHeads(ctx, cd[0], cd[1], head, enrolled)
		if err != nil {
			return nil, err
		}
		out = append(out, rows...)
	}
	return out, nil
}

func (w *Worker) changedHeads(ctx context.Context, class, day string, head, enrolled int) ([]headRow, error) {
	var out []headRow
	for _, meal := range w.cfg.Meals {
		var h, e, rev int
		err := w.db.R.QueryRowContext(ctx, `SELECT headcount, enrolled, revision FROM citysync_headcounts
			WHERE class_id = ? AND day = ? AND meal = ?`, class, day, meal).Scan(&h, &e, &rev)
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			return nil, fmt.Errorf("citysync: headcount: %w", err)
		}
		if err == nil && h == head && e == enrolled {
			continue
		}
		out = append(out, headRow{class, day, meal, head, enrolled, rev + 1})
	}
	return out, nil
}

// pushTodayHeadcounts pushes today's headcount of every class whose cut-off
// passed (the first one at the cut-off; later only corrections).
func (w *Worker) pushTodayHeadcounts(ctx context.Context, rep *Report) error {
	cutoffs, err := w.classCutoffs(ctx)
	if err != nil {
		return err
	}
	today := w.now().In(w.loc).Format(time.DateOnly)
	days := map[[2]string]bool{}
	for class := range cutoffs {
		if w.cutoffPassed(cutoffs, class, today) {
			days[[2]string{class, today}] = true
		}
	}
	heads, err := w.headcounts(ctx, days)
	if err != nil || len(heads) == 0 {
		return err
	}
	pushed, issues, err := w.write(ctx, pushSet{heads: heads})
	if err != nil {
		return err
	}
	cur, err := w.state(ctx, "cursor")
	if err != nil {
		return err
	}
	cursor, _ := strconv.ParseInt(cur, 10, 64)
	if err := w.commitCursor(ctx, cursor, pushed.heads, issues); err != nil {
		return err
	}
	w.count(rep, pushed)
	return nil
}

// totals recomputes absence totals (excused, unexcused) per pupil-term.
func (w *Worker) totals(ctx context.Context, pts map[[2]string]termSpan) ([]totRow, error) {
	out := make([]totRow, 0, len(pts))
	for k, t := range pts {
		var exc, unexc int
		err := w.db.R.QueryRowContext(ctx, `SELECT count(*) FILTER (WHERE status = 'excused'), count(*) FILTER (WHERE status = 'absent')
			FROM daily_attendance WHERE pupil_id = ? AND day BETWEEN ? AND ?`, k[0], t.Start, t.End).Scan(&exc, &unexc)
		if err != nil {
			return nil, fmt.Errorf("citysync: absence totals: %w", err)
		}
		out = append(out, totRow{k[0], t.Year, t.Term, exc, unexc})
	}
	return out, nil
}

// commitCursor records in the hub, in one transaction: the new cursor, the
// pruning of pushed changes, the pushed headcounts and any issues.
func (w *Worker) commitCursor(ctx context.Context, last int64, heads []headRow, issues []Issue) error {
	now := w.now().UnixMilli()
	return w.db.Tx(ctx, func(tx *sql.Tx) error {
		if err := setStateTx(ctx, tx, "cursor", strconv.FormatInt(last, 10)); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM citysync_changes WHERE seq <= ?`, last); err != nil {
			return fmt.Errorf("citysync: prune: %w", err)
		}
		for _, h := range heads {
			if _, err := tx.ExecContext(ctx, `INSERT INTO citysync_headcounts (class_id, day, meal, headcount, enrolled, revision, pushed_at)
				VALUES (?, ?, ?, ?, ?, ?, ?)
				ON CONFLICT(class_id, day, meal) DO UPDATE SET headcount = excluded.headcount, enrolled = excluded.enrolled,
				  revision = excluded.revision, pushed_at = excluded.pushed_at`,
				h.class, h.day, h.meal, h.head, h.enrolled, h.rev, now); err != nil {
				return fmt.Errorf("citysync: headcounts: %w", err)
			}
		}
		for _, is := range issues {
			if _, err := tx.ExecContext(ctx, `INSERT INTO citysync_issues (kind, city_key, reason, first_seen, last_seen) VALUES (?, ?, ?, ?, ?)
				ON CONFLICT(kind, city_key, reason) DO UPDATE SET last_seen = excluded.last_seen`,
				is.Kind, is.CityKey, is.Reason, now, now); err != nil {
				return fmt.Errorf("citysync: issues: %w", err)
			}
			w.log.Warn("row not sent to the city", "kind", is.Kind, "key", is.CityKey, "reason", is.Reason)
		}
		return nil
	})
}

// isDataError: the city refused a row's content (data exception or
// integrity violation), as opposed to a connection or permission problem.
func isDataError(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && (strings.HasPrefix(pe.Code, "22") || strings.HasPrefix(pe.Code, "23"))
}

// write upserts set in one city transaction. If the city refuses the
// content, it retries row by row (a savepoint each), skipping and reporting
// the refused rows, so one bad row never blocks the rest.
func (w *Worker) write(ctx context.Context, set pushSet) (pushSet, []Issue, error) {
	if set.empty() {
		return set, nil, nil
	}
	// One round trip: the statements run pipelined in one implicit transaction.
	b := &pgx.Batch{}
	for _, st := range w.statements(set) {
		b.Queue(st.sql, st.args...)
	}
	err := w.pool.SendBatch(ctx, b).Close()
	if err == nil {
		return set, nil, nil
	}
	if !isDataError(err) {
		return pushSet{}, nil, fmt.Errorf("citysync: push: %w", err)
	}
	var ok pushSet
	var issues []Issue
	err = pgx.BeginFunc(ctx, w.pool, func(tx pgx.Tx) error {
		try := func(one pushSet, kind, key string) (bool, error) {
			err := pgx.BeginFunc(ctx, tx, func(sp pgx.Tx) error { return w.writeSet(ctx, sp, one) })
			if err == nil {
				return true, nil
			}
			if isDataError(err) {
				issues = append(issues, Issue{kind, key, "refused by the city: " + err.Error()})
				return false, nil
			}
			return false, err
		}
		for _, r := range set.events {
			good, err := try(pushSet{events: []evRow{r}}, "push_event", r.id)
			if err != nil {
				return err
			}
			if good {
				ok.events = append(ok.events, r)
			}
		}
		for _, r := range set.daily {
			good, err := try(pushSet{daily: []dayRow{r}}, "push_daily", r.pupil+"/"+r.day)
			if err != nil {
				return err
			}
			if good {
				ok.daily = append(ok.daily, r)
			}
		}
		for _, r := range set.heads {
			good, err := try(pushSet{heads: []headRow{r}}, "push_headcount", r.class+"/"+r.day+"/"+r.meal)
			if err != nil {
				return err
			}
			if good {
				ok.heads = append(ok.heads, r)
			}
		}
		for _, r := range set.totals {
			good, err := try(pushSet{totals: []totRow{r}}, "push_absence_total", r.pupil+"/"+r.year+"/"+strconv.Itoa(r.term))
			if err != nil {
				return err
			}
			if good {
				ok.totals = append(ok.totals, r)
			}
		}
		return nil
	})
	if err != nil {
		return pushSet{}, nil, fmt.Errorf("citysync: push row by row: %w", err)
	}
	return ok, issues, nil
}

func ts(ms int64) time.Time { return time.UnixMilli(ms).UTC() }

func nts(v sql.NullInt64) pgtype.Timestamptz {
	if !v.Valid {
		return pgtype.Timestamptz{}
	}
	return pgtype.Timestamptz{Time: ts(v.Int64), Valid: true}
}

func nullIfEmpty(s string) pgtype.Text { return pgtype.Text{String: s, Valid: s != ""} }

type stmt struct {
	sql  string
	args []any
}

// writeSet runs the upserts of s in tx, one statement at a time.
func (w *Worker) writeSet(ctx context.Context, tx pgx.Tx, s pushSet) error {
	for _, st := range w.statements(s) {
		if _, err := tx.Exec(ctx, st.sql, st.args...); err != nil {
			return err
		}
	}
	return nil
}

// statements builds the multi-row upserts (unnest of arrays: one statement
// per kind, any batch size).
func (w *Worker) statements(s pushSet) []stmt {
	var out []stmt
	if n := len(s.events); n > 0 {
		ids, pupils, gates, dirs := make([]string, n), make([]string, n), make([]string, n), make([]string, n)
		capt, recv := make([]time.Time, n), make([]time.Time, n)
		dist := make([]float32, n)
		rej := make([]bool, n)
		for i, e := range s.events {
			ids[i], pupils[i], gates[i], dirs[i] = e.id, e.pupil, e.gate, e.dir
			capt[i], recv[i], dist[i], rej[i] = ts(e.captured), ts(e.received), float32(e.distance), e.rejected
		}
		out = append(out, stmt{`INSERT INTO attendance.events
			  (school_id, event_id, pupil_id, gate_id, direction, captured_at, received_at, distance, rejected)
			SELECT $1, u.* FROM unnest($2::text[], $3::text[], $4::text[], $5::text[], $6::timestamptz[], $7::timestamptz[],
			  $8::real[], $9::bool[]) AS u
			ON CONFLICT (school_id, event_id) DO UPDATE SET pupil_id = EXCLUDED.pupil_id, rejected = EXCLUDED.rejected
			WHERE (attendance.events.pupil_id, attendance.events.rejected) IS DISTINCT FROM (EXCLUDED.pupil_id, EXCLUDED.rejected)`, []any{
			w.school, ids, pupils, gates, dirs, capt, recv, dist, rej}})
	}
	if n := len(s.daily); n > 0 {
		pupils, days, statuses, sources := make([]string, n), make([]string, n), make([]string, n), make([]string, n)
		classes := make([]pgtype.Text, n)
		arr, dep := make([]pgtype.Timestamptz, n), make([]pgtype.Timestamptz, n)
		upd := make([]time.Time, n)
		for i, d := range s.daily {
			pupils[i], days[i], statuses[i], sources[i] = d.pupil, d.day, d.status, d.source
			classes[i], arr[i], dep[i], upd[i] = nullIfEmpty(d.class), nts(d.arrived), nts(d.departed), ts(d.updated)
		}
		out = append(out, stmt{`INSERT INTO attendance.daily_status
			  (school_id, pupil_id, day, class_id, status, arrived_at, departed_at, source, hub_updated_at)
			SELECT $1, u.pupil, u.day::date, u.class, u.status, u.arr, u.dep, u.source, u.upd
			FROM unnest($2::text[], $3::text[], $4::text[], $5::text[], $6::timestamptz[], $7::timestamptz[], $8::text[], $9::timestamptz[])
			  AS u(pupil, day, class, status, arr, dep, source, upd)
			ON CONFLICT (school_id, pupil_id, day) DO UPDATE SET class_id = EXCLUDED.class_id, status = EXCLUDED.status,
			  arrived_at = EXCLUDED.arrived_at, departed_at = EXCLUDED.departed_at, source = EXCLUDED.source,
			  hub_updated_at = EXCLUDED.hub_updated_at, stored_at = now()
			WHERE attendance.daily_status.hub_updated_at <= EXCLUDED.hub_updated_at`, []any{
			w.school, pupils, days, classes, statuses, arr, dep, sources, upd}})
	}
	now := w.now()
	if n := len(s.heads); n > 0 {
		classes, days, meals := make([]string, n), make([]string, n), make([]string, n)
		heads, enrolled, revs := make([]int32, n), make([]int32, n), make([]int32, n)
		for i, h := range s.heads {
			classes[i], days[i], meals[i] = h.class, h.day, h.meal
			heads[i], enrolled[i], revs[i] = int32(h.head), int32(h.enrolled), int32(h.rev)
		}
		out = append(out, stmt{`INSERT INTO nutrition.headcounts
			  (school_id, class_id, day, meal_code, headcount, enrolled, revision, computed_at)
			SELECT $1, u.class, u.day::date, u.meal, u.head, u.enrolled, u.rev, $8
			FROM unnest($2::text[], $3::text[], $4::text[], $5::int[], $6::int[], $7::int[]) AS u(class, day, meal, head, enrolled, rev)
			ON CONFLICT (school_id, class_id, day, meal_code) DO UPDATE SET headcount = EXCLUDED.headcount,
			  enrolled = EXCLUDED.enrolled, revision = EXCLUDED.revision, computed_at = EXCLUDED.computed_at, stored_at = now()
			WHERE nutrition.headcounts.revision <= EXCLUDED.revision`, []any{
			w.school, classes, days, meals, heads, enrolled, revs, now}})
	}
	if n := len(s.totals); n > 0 {
		pupils, years := make([]string, n), make([]string, n)
		terms, exc, unexc := make([]int16, n), make([]int32, n), make([]int32, n)
		for i, t := range s.totals {
			pupils[i], years[i], terms[i], exc[i], unexc[i] = t.pupil, t.year, int16(t.term), int32(t.excused), int32(t.unexcused)
		}
		out = append(out, stmt{`INSERT INTO transcript.absence_totals
			  (school_id, pupil_id, school_year, term, excused, unexcused, computed_at)
			SELECT $1, u.* , $7 FROM unnest($2::text[], $3::text[], $4::smallint[], $5::int[], $6::int[]) AS u
			ON CONFLICT (school_id, pupil_id, school_year, term) DO UPDATE SET excused = EXCLUDED.excused,
			  unexcused = EXCLUDED.unexcused, computed_at = EXCLUDED.computed_at, stored_at = now()`, []any{
			w.school, pupils, years, terms, exc, unexc, now}})
	}
	return out
}
