package citysync

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"time"

	hubroster "github.com/diemdanh/diemdanh/hub/roster"
)

// The steps of applyRoster, all inside its transaction. The writes to
// staff, classes, pupils and guardians go through hub/roster's transaction
// helpers, which audit them as the actor of the context (auditActor).

type mapping struct{ localID, hash string }

// rosterApply is one city roster being applied to the hub (applyRoster).
type rosterApply struct {
	w      *Worker
	tx     *sql.Tx
	at     time.Time // the pull's time
	now    int64     // at in Unix ms
	rep    *Report
	maps   map[string]map[string]mapping // kind -> city key -> hub row
	issues []Issue                       // rows skipped, for saveRosterIssues
	bump   bool                          // the gallery membership changed
}

// issue records a city row the hub skipped.
func (a *rosterApply) issue(kind, key, format string, args ...any) {
	a.issues = append(a.issues, Issue{kind, key, fmt.Sprintf(format, args...)})
}

// loadMaps reads which hub row each city key was applied to, and the hash
// of the city row then.
func (a *rosterApply) loadMaps(ctx context.Context) error {
	a.maps = map[string]map[string]mapping{"staff": {}, "class": {}, "pupil": {}}
	rows, err := a.tx.QueryContext(ctx, `SELECT kind, city_key, local_id, hash FROM citysync_roster`)
	if err != nil {
		return fmt.Errorf("citysync: roster map: %w", err)
	}
	for rows.Next() {
		var k, key string
		var m mapping
		if err := rows.Scan(&k, &key, &m.localID, &m.hash); err != nil {
			rows.Close()
			return fmt.Errorf("citysync: roster map: %w", err)
		}
		a.maps[k][key] = m
	}
	rows.Close()
	return nil
}

// setMap records that city row key of kind is hub row local, with hash.
func (a *rosterApply) setMap(ctx context.Context, kind, key, local, hash string) error {
	_, err := a.tx.ExecContext(ctx, `INSERT INTO citysync_roster (kind, city_key, local_id, hash, seen_at) VALUES (?, ?, ?, ?, ?)
			ON CONFLICT(kind, city_key) DO UPDATE SET local_id = excluded.local_id, hash = excluded.hash, seen_at = excluded.seen_at`,
		kind, key, local, hash, a.now)
	if err != nil {
		return fmt.Errorf("citysync: roster map: %w", err)
	}
	return nil
}

// dropMap forgets city row key of kind.
func (a *rosterApply) dropMap(ctx context.Context, kind, key string) error {
	_, err := a.tx.ExecContext(ctx, `DELETE FROM citysync_roster WHERE kind = ? AND city_key = ?`, kind, key)
	return err
}

// exists reports whether table has row id.
func (a *rosterApply) exists(ctx context.Context, table, id string) bool {
	var one int
	return a.tx.QueryRowContext(ctx, `SELECT 1 FROM `+table+` WHERE id = ?`, id).Scan(&one) == nil
}

// unchanged reports whether city row key of kind is as last applied and
// its hub row is still there.
func (a *rosterApply) unchanged(ctx context.Context, kind, key, hash, table, id string) bool {
	m, ok := a.maps[kind][key]
	return ok && m.hash == hash && a.exists(ctx, table, id)
}

// applySchool writes the city's school record; without one the school
// must already be on the hub.
func (a *rosterApply) applySchool(ctx context.Context, s *citySchool) error {
	if s == nil {
		if !a.exists(ctx, "schools", a.w.school) {
			return fmt.Errorf("citysync: school %q is neither in the city records nor on the hub", a.w.school)
		}
		return nil
	}
	if _, err := a.tx.ExecContext(ctx, `INSERT INTO schools (id, name, district, level, updated_at) VALUES (?, ?, ?, ?, ?)
			ON CONFLICT(id) DO UPDATE SET name = excluded.name, district = excluded.district, level = excluded.level, updated_at = excluded.updated_at
			WHERE schools.name IS NOT excluded.name OR schools.district IS NOT excluded.district OR schools.level IS NOT excluded.level`,
		a.w.school, s.name, s.district, s.level, a.now); err != nil {
		return fmt.Errorf("citysync: apply school: %w", err)
	}
	return nil
}

// applyStaff upserts the changed staff rows, skipping (as issues) those
// without a known role or a name, and retires the staff the city dropped.
func (a *rosterApply) applyStaff(ctx context.Context, staff []cityStaff) error {
	seen := map[string]bool{}
	for _, s := range staff {
		seen[s.id] = true
		if s.role != "teacher" && s.role != "admin" {
			a.issue("staff", s.id, "unknown staff role %q", s.role)
			continue
		}
		if strings.TrimSpace(s.name) == "" {
			a.issue("staff", s.id, "staff member without a name")
			continue
		}
		h := hashOf(s.name, s.email, s.phone, s.role, fmt.Sprint(s.active))
		if a.unchanged(ctx, "staff", s.id, h, "staff", s.id) {
			continue
		}
		x := hubroster.Staff{ID: s.id, SchoolID: a.w.school, FullName: s.name, Email: s.email, Phone: s.phone, Role: s.role, Active: s.active}
		if err := hubroster.UpsertCityStaffTx(ctx, a.tx, x, a.at); err != nil {
			return fmt.Errorf("citysync: apply staff %s: %w", s.id, err)
		}
		if err := a.setMap(ctx, "staff", s.id, s.id, h); err != nil {
			return err
		}
		a.rep.RosterChanged++
	}
	return a.retire(ctx, "staff", seen, hubroster.DeactivateStaffTx)
}

// applyClasses upserts the changed classes, skipping (as issues) those
// whose homeroom teacher is missing or not on the hub, and retires the
// classes the city dropped.
func (a *rosterApply) applyClasses(ctx context.Context, classes []cityClass) error {
	seen := map[string]bool{}
	for _, c := range classes {
		seen[c.id] = true
		switch {
		case c.teacher == nil || *c.teacher == "":
			a.issue("class", c.id, "class %q has no homeroom teacher", c.name)
			continue
		case !a.exists(ctx, "staff", *c.teacher):
			a.issue("class", c.id, "homeroom teacher %q of class %q is not on the hub", *c.teacher, c.name)
			continue
		}
		h := hashOf(c.name, fmt.Sprint(c.grade), *c.teacher, fmt.Sprint(c.active))
		if a.unchanged(ctx, "class", c.id, h, "classes", c.id) {
			continue
		}
		x := hubroster.Class{ID: c.id, SchoolID: a.w.school, Name: c.name, Grade: c.grade, HomeroomTeacherID: *c.teacher, Active: c.active}
		if err := hubroster.UpsertCityClassTx(ctx, a.tx, x, a.at); err != nil {
			return fmt.Errorf("citysync: apply class %s: %w", c.id, err)
		}
		if err := a.setMap(ctx, "class", c.id, c.id, h); err != nil {
			return err
		}
		a.rep.RosterChanged++
	}
	return a.retire(ctx, "class", seen, hubroster.DeactivateClassTx)
}

// retire deactivates (with deactivate) the staff or classes (kind) mapped
// to a city key the city no longer sends, and forgets the key.
func (a *rosterApply) retire(ctx context.Context, kind string, seen map[string]bool,
	deactivate func(context.Context, *sql.Tx, string, time.Time) (hubroster.Change, error)) error {
	for key, m := range a.maps[kind] {
		if seen[key] {
			continue
		}
		if _, err := deactivate(ctx, a.tx, m.localID, a.at); err != nil {
			return fmt.Errorf("citysync: retire %s: %w", kind, err)
		}
		if err := a.dropMap(ctx, kind, key); err != nil {
			return err
		}
	}
	return nil
}

// applyPupils validates the pupils and finds duplicate personal IDs
// (issues), applies the changed rows, and deactivates the pupils the city
// dropped (they left).
func (a *rosterApply) applyPupils(ctx context.Context, pupils []cityPupil) error {
	codesByID := map[string][]string{}
	for _, p := range pupils {
		if id := deref(p.personalID); personalIDRe.MatchString(id) {
			codesByID[id] = append(codesByID[id], p.code)
		}
	}
	seen := map[string]bool{}
	for _, p := range pupils {
		seen[p.code] = true
		if !a.validPupil(p, codesByID) {
			continue
		}
		if err := a.applyPupil(ctx, p); err != nil {
			return err
		}
	}
	for key, m := range a.maps["pupil"] {
		if !seen[key] { // gone from the city roster: left
			if err := a.setActive(ctx, m.localID, false); err != nil {
				return err
			}
			if err := a.dropMap(ctx, "pupil", key); err != nil {
				return err
			}
		}
	}
	return nil
}

// validPupil reports whether a city pupil can be applied, recording an
// issue when not: a well-formed personal ID of one pupil only, and a name.
func (a *rosterApply) validPupil(p cityPupil, codesByID map[string][]string) bool {
	id := deref(p.personalID)
	switch {
	case strings.TrimSpace(id) == "":
		a.issue("pupil", p.code, "pupil %q has no personal ID", p.name)
	case !personalIDRe.MatchString(id):
		a.issue("pupil", p.code, "pupil %q has a malformed personal ID %q (want 12 digits)", p.name, id)
	case len(codesByID[id]) > 1:
		others := slicesWithout(codesByID[id], p.code)
		a.issue("pupil", p.code, "duplicate pupil: personal ID %s also on pupil code(s) %s", id, strings.Join(others, ", "))
	case strings.TrimSpace(p.name) == "":
		a.issue("pupil", p.code, "pupil %s has no name", id)
	default:
		return true
	}
	return false
}

// applyPupil upserts a valid city pupil that changed since the last pull,
// with its guardians; a pupil whose active flag flips changes the gallery.
func (a *rosterApply) applyPupil(ctx context.Context, p cityPupil) error {
	id := deref(p.personalID)
	gs := make([]string, 0, 4*len(p.guardians))
	for _, g := range p.guardians {
		gs = append(gs, g.name, g.phone, g.email, g.relation)
	}
	h := hashOf(append([]string{id, deref(p.classID), p.name, p.dob, p.gender, p.st}, gs...)...)
	m, mapped := a.maps["pupil"][p.code]
	if mapped && m.hash == h && a.exists(ctx, "pupils", id) {
		return nil
	}
	if mapped && m.localID != id { // the city corrected the personal ID
		if err := a.setActive(ctx, m.localID, false); err != nil {
			return err
		}
	}
	active := p.st == "enrolled"
	x := hubroster.Pupil{ID: id, SchoolID: a.w.school, ClassID: a.pupilClass(ctx, p, id), FullName: p.name,
		DateOfBirth: p.dob, Gender: p.gender, Active: active}
	c, err := hubroster.UpsertCityPupilTx(ctx, a.tx, x, a.at)
	if err != nil {
		return fmt.Errorf("citysync: apply pupil %s: %w", p.code, err)
	}
	// A new pupil has no templates yet: the gallery changes only when a
	// stored pupil's active flag flips.
	if c.Gallery {
		a.bump = true
		if !active {
			a.rep.Deactivated++
		}
	}
	if err := a.w.applyGuardians(ctx, a.tx, id, p.guardians, a.at); err != nil {
		return err
	}
	if err := a.setMap(ctx, "pupil", p.code, id, h); err != nil {
		return err
	}
	a.rep.RosterChanged++
	return nil
}

// pupilClass is the class to store for pupil id ("" none): the city's, if
// the hub has it; else the pupil's current one, with an issue.
func (a *rosterApply) pupilClass(ctx context.Context, p cityPupil, id string) string {
	cid := deref(p.classID)
	if cid == "" {
		return ""
	}
	if a.exists(ctx, "classes", cid) {
		return cid
	}
	a.issue("pupil", p.code, "class %q of pupil %s is not on the hub (kept the pupil's current class)", cid, id)
	var localClass sql.NullString
	_ = a.tx.QueryRowContext(ctx, `SELECT class_id FROM pupils WHERE id = ?`, id).Scan(&localClass)
	return localClass.String
}

// setActive (de)activates a stored pupil; a change moves the gallery.
func (a *rosterApply) setActive(ctx context.Context, id string, active bool) error {
	c, err := hubroster.SetPupilActiveTx(ctx, a.tx, id, active, a.at)
	if err != nil {
		return fmt.Errorf("citysync: pupil %s: %w", id, err)
	}
	if c.Changed {
		a.bump = true
		if !active {
			a.rep.Deactivated++
		}
	}
	return nil
}
