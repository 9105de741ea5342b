package citysync

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"fmt"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	hubroster "github.com/diemdanh/diemdanh/hub/roster"
)

var personalIDRe = regexp.MustCompile(`^[0-9]{12}$`)

// auditActor is the actor of the roster writes of a city pull in the audit
// log (hub/roster records them: IDs and the names of the fields changed).
const auditActor = "citysync"

type citySchool struct{ name, district, level string }

type cityStaff struct {
	id, name, email, phone, role string
	active                       bool
}

type cityClass struct {
	id, name string
	grade    int
	teacher  *string
	active   bool
}

type cityGuardian struct {
	no                           int
	name, phone, email, relation string
}

type cityPupil struct {
	code                  string
	personalID, classID   *string
	name, dob, gender, st string
	guardians             []cityGuardian
}

type roster struct {
	school  *citySchool
	staff   []cityStaff
	classes []cityClass
	pupils  []cityPupil
	terms   []termSpan
}

// normalize stores the city's names the way the roster stores its own
// (trimmed, Unicode NFC), so a name typed decomposed in the city's system
// equals the same name entered at the school.
func (r *roster) normalize() {
	n := hubroster.NormalizeText
	if r.school != nil {
		r.school.name, r.school.district = n(r.school.name), n(r.school.district)
	}
	for i := range r.staff {
		r.staff[i].name = n(r.staff[i].name)
	}
	for i := range r.classes {
		r.classes[i].name = n(r.classes[i].name)
	}
	for i := range r.pupils {
		p := &r.pupils[i]
		p.name = n(p.name)
		for j := range p.guardians {
			g := &p.guardians[j]
			g.name, g.relation = n(g.name), n(g.relation)
		}
	}
}

const fingerprintSQL = `SELECT concat_ws('|',
  (SELECT count(*) || ':' || coalesce(max(updated_at)::text, '') FROM records.schools WHERE school_id = $1),
  (SELECT count(*) || ':' || coalesce(max(updated_at)::text, '') FROM records.staff WHERE school_id = $1),
  (SELECT count(*) || ':' || coalesce(max(updated_at)::text, '') FROM records.classes WHERE school_id = $1),
  (SELECT count(*) || ':' || coalesce(max(updated_at)::text, '') FROM records.pupils WHERE school_id = $1),
  (SELECT count(*) || ':' || coalesce(max(updated_at)::text, '') FROM records.guardians WHERE school_id = $1),
  (SELECT coalesce(md5(string_agg(school_year || term || starts_on || ends_on, ',' ORDER BY school_year, term)), '') FROM records.terms))`

// pullRoster downloads the roster when the city's fingerprint changed and
// applies the differences.
func (w *Worker) pullRoster(ctx context.Context, rep *Report) error {
	var fp string
	if err := w.pool.QueryRow(ctx, fingerprintSQL, w.school).Scan(&fp); err != nil {
		return fmt.Errorf("citysync: roster fingerprint: %w", err)
	}
	prev, err := w.state(ctx, "roster_fingerprint")
	if err != nil {
		return err
	}
	if fp == prev && w.terms.city != nil {
		return nil
	}
	r, err := w.fetchRoster(ctx)
	if err != nil {
		return err
	}
	w.terms.city = r.terms
	if fp == prev {
		return nil
	}
	rep.RosterPulled = true
	bump := false
	err = w.db.Tx(ctx, func(tx *sql.Tx) error {
		var err error
		bump, err = w.applyRoster(ctx, tx, r, rep)
		if err != nil {
			return err
		}
		if bump {
			if err := w.bumpGallery(ctx, tx); err != nil {
				return err
			}
		}
		return setStateTx(ctx, tx, "roster_fingerprint", fp)
	})
	if err != nil {
		return err
	}
	if bump && w.gallery != nil {
		w.gallery.Notify(ctx, w.school)
	}
	return nil
}

func (w *Worker) fetchRoster(ctx context.Context) (*roster, error) {
	r := &roster{}
	var s citySchool
	err := w.pool.QueryRow(ctx, `SELECT s.name, coalesce(d.name, s.district_code), s.level
		FROM records.schools s LEFT JOIN records.districts d ON d.code = s.district_code WHERE s.school_id = $1`, w.school).
		Scan(&s.name, &s.district, &s.level)
	switch {
	case err == pgx.ErrNoRows:
		// not (yet) in the records module: keep the hub's own school row
	case err != nil:
		return nil, fmt.Errorf("citysync: roster school: %w", err)
	default:
		r.school = &s
	}
	rows, err := w.pool.Query(ctx, `SELECT staff_id, full_name, email, phone, role, active FROM records.staff
		WHERE school_id = $1 ORDER BY staff_id`, w.school)
	if err != nil {
		return nil, fmt.Errorf("citysync: roster staff: %w", err)
	}
	r.staff, err = pgx.CollectRows(rows, func(row pgx.CollectableRow) (cityStaff, error) {
		var c cityStaff
		return c, row.Scan(&c.id, &c.name, &c.email, &c.phone, &c.role, &c.active)
	})
	if err != nil {
		return nil, fmt.Errorf("citysync: roster staff: %w", err)
	}
	rows, err = w.pool.Query(ctx, `SELECT class_id, name, grade, homeroom_teacher_id, active FROM records.classes
		WHERE school_id = $1 ORDER BY class_id`, w.school)
	if err != nil {
		return nil, fmt.Errorf("citysync: roster classes: %w", err)
	}
	r.classes, err = pgx.CollectRows(rows, func(row pgx.CollectableRow) (cityClass, error) {
		var c cityClass
		var g int16
		err := row.Scan(&c.id, &c.name, &g, &c.teacher, &c.active)
		c.grade = int(g)
		return c, err
	})
	if err != nil {
		return nil, fmt.Errorf("citysync: roster classes: %w", err)
	}
	rows, err = w.pool.Query(ctx, `SELECT pupil_code, personal_id, class_id, full_name,
		coalesce(to_char(date_of_birth, 'YYYY-MM-DD'), ''), gender, status
		FROM records.pupils WHERE school_id = $1 ORDER BY pupil_code`, w.school)
	if err != nil {
		return nil, fmt.Errorf("citysync: roster pupils: %w", err)
	}
	r.pupils, err = pgx.CollectRows(rows, func(row pgx.CollectableRow) (cityPupil, error) {
		var p cityPupil
		return p, row.Scan(&p.code, &p.personalID, &p.classID, &p.name, &p.dob, &p.gender, &p.st)
	})
	if err != nil {
		return nil, fmt.Errorf("citysync: roster pupils: %w", err)
	}
	byCode := make(map[string]int, len(r.pupils))
	for i, p := range r.pupils {
		byCode[p.code] = i
	}
	rows, err = w.pool.Query(ctx, `SELECT pupil_code, guardian_no, full_name, phone, email, relation FROM records.guardians
		WHERE school_id = $1 ORDER BY pupil_code, guardian_no`, w.school)
	if err != nil {
		return nil, fmt.Errorf("citysync: roster guardians: %w", err)
	}
	var code string
	var g cityGuardian
	var no int16
	_, err = pgx.ForEachRow(rows, []any{&code, &no, &g.name, &g.phone, &g.email, &g.relation}, func() error {
		g.no = int(no)
		if i, ok := byCode[code]; ok {
			r.pupils[i].guardians = append(r.pupils[i].guardians, g)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("citysync: roster guardians: %w", err)
	}
	rows, err = w.pool.Query(ctx, `SELECT school_year, term, to_char(starts_on, 'YYYY-MM-DD'), to_char(ends_on, 'YYYY-MM-DD')
		FROM records.terms ORDER BY starts_on`)
	if err != nil {
		return nil, fmt.Errorf("citysync: terms: %w", err)
	}
	r.terms, err = pgx.CollectRows(rows, func(row pgx.CollectableRow) (termSpan, error) {
		var t termSpan
		var n int16
		err := row.Scan(&t.Year, &n, &t.Start, &t.End)
		t.Term = int(n)
		return t, err
	})
	if err != nil {
		return nil, fmt.Errorf("citysync: terms: %w", err)
	}
	if r.terms == nil {
		r.terms = []termSpan{}
	}
	r.normalize()
	return r, nil
}

func hashOf(parts ...string) string {
	h := sha256.New()
	for _, p := range parts {
		h.Write([]byte(p))
		h.Write([]byte{0x1f})
	}
	return hex.EncodeToString(h.Sum(nil)[:16])
}

func deref(p *string) string {
	if p == nil {
		return ""
	}
	return *p
}

// applyRoster applies the city roster to the hub inside tx and reports
// whether the gallery membership changed (a pupil (de)activated).
//
// Conflict rule: the city owns identity and enrolment fields (name, date of
// birth, gender, class, active) of the rows it sends, and they are written
// only when the city row changed since the last pull, so a local edit stands
// until the city changes that row again. Local-only data (consent, manual
// attendance, templates, class times, accounts) is never touched. Pupils the
// hub created itself are never deactivated by the sync; a local pupil whose
// personal ID the city also has becomes a city pupil.
//
// The writes to staff, classes, pupils and guardians go through
// hub/roster's transaction helpers, audited as auditActor.
//
// The steps (roster_apply.go): load the city-key map, then apply the
// school, the staff, the classes and the pupils in that order (each retires
// what the city no longer sends), then save the issues found on the way.
func (w *Worker) applyRoster(ctx context.Context, tx *sql.Tx, r *roster, rep *Report) (bool, error) {
	ctx = hubroster.WithActor(ctx, auditActor, "")
	at := w.now()
	a := &rosterApply{w: w, tx: tx, at: at, now: at.UnixMilli(), rep: rep}
	if err := a.loadMaps(ctx); err != nil {
		return false, err
	}
	if err := a.applySchool(ctx, r.school); err != nil {
		return false, err
	}
	if err := a.applyStaff(ctx, r.staff); err != nil {
		return false, err
	}
	if err := a.applyClasses(ctx, r.classes); err != nil {
		return false, err
	}
	if err := a.applyPupils(ctx, r.pupils); err != nil {
		return false, err
	}
	if err := w.saveRosterIssues(ctx, tx, a.issues, rep); err != nil {
		return false, err
	}
	return a.bump, nil
}

// applyGuardians adds the city's guardians of a pupil that the hub does not
// have (matched by phone, else by name) and refreshes matched ones
// (hubroster.MergeCityGuardianTx); it never deletes a guardian (parents'
// accounts and notifications refer to them).
func (w *Worker) applyGuardians(ctx context.Context, tx *sql.Tx, pupil string, gs []cityGuardian, now time.Time) error {
	for _, g := range gs {
		if strings.TrimSpace(g.name) == "" {
			continue
		}
		x := hubroster.Guardian{PupilID: pupil, FullName: g.name, Phone: g.phone, Email: g.email, Relation: g.relation}
		if _, err := hubroster.MergeCityGuardianTx(ctx, tx, x, now); err != nil {
			return fmt.Errorf("citysync: guardian of %s: %w", pupil, err)
		}
	}
	return nil
}

// saveRosterIssues replaces the roster issues with the current ones,
// keeping first_seen, and logs only the new ones.
func (w *Worker) saveRosterIssues(ctx context.Context, tx *sql.Tx, issues []Issue, rep *Report) error {
	now := w.now().UnixMilli()
	if _, err := tx.ExecContext(ctx, `CREATE TEMP TABLE IF NOT EXISTS citysync_current_issues (id INTEGER PRIMARY KEY)`); err != nil {
		return fmt.Errorf("citysync: issues: %w", err)
	}
	if _, err := tx.ExecContext(ctx, `DELETE FROM temp.citysync_current_issues`); err != nil {
		return fmt.Errorf("citysync: issues: %w", err)
	}
	sort.Slice(issues, func(i, j int) bool { return issues[i].String() < issues[j].String() })
	for _, is := range issues {
		var id, first, last int64
		err := tx.QueryRowContext(ctx, `INSERT INTO citysync_issues (kind, city_key, reason, first_seen, last_seen) VALUES (?, ?, ?, ?, ?)
			ON CONFLICT(kind, city_key, reason) DO UPDATE SET last_seen = excluded.last_seen
			RETURNING id, first_seen, last_seen`, is.Kind, is.CityKey, is.Reason, now, now).Scan(&id, &first, &last)
		if err != nil {
			return fmt.Errorf("citysync: issues: %w", err)
		}
		if _, err := tx.ExecContext(ctx, `INSERT OR IGNORE INTO temp.citysync_current_issues (id) VALUES (?)`, id); err != nil {
			return fmt.Errorf("citysync: issues: %w", err)
		}
		if first == now {
			rep.NewIssues = append(rep.NewIssues, is)
			w.log.Warn("city roster row skipped", "kind", is.Kind, "key", is.CityKey, "reason", is.Reason)
		}
	}
	_, err := tx.ExecContext(ctx, `DELETE FROM citysync_issues WHERE kind IN ('staff', 'class', 'pupil')
		AND id NOT IN (SELECT id FROM temp.citysync_current_issues)`)
	if err != nil {
		return fmt.Errorf("citysync: issues: %w", err)
	}
	return nil
}

func slicesWithout(s []string, x string) []string {
	var out []string
	for _, v := range s {
		if v != x {
			out = append(out, v)
		}
	}
	return out
}

// bumpGallery makes the gates reload: through the gallery keeper if wired,
// else directly in gallery_versions (hub/facetemplates' table), else a meta flag.
func (w *Worker) bumpGallery(ctx context.Context, tx *sql.Tx) error {
	if w.gallery != nil {
		return w.gallery.BumpTx(ctx, tx, w.school)
	}
	_, err := tx.ExecContext(ctx, `INSERT INTO gallery_versions (school_id, version, updated_at) VALUES (?, 1, ?)
		ON CONFLICT(school_id) DO UPDATE SET version = version + 1, updated_at = excluded.updated_at`, w.school, w.now().UnixMilli())
	if err != nil && strings.Contains(err.Error(), "no such table") {
		_, err = tx.ExecContext(ctx, `INSERT INTO meta (key, value) VALUES ('gallery_dirty', '1')
			ON CONFLICT(key) DO UPDATE SET value = '1'`)
	}
	if err != nil {
		return fmt.Errorf("citysync: gallery bump: %w", err)
	}
	return nil
}
