package roster

import (
	"context"
	"database/sql"
	"fmt"
)

// validateAll finishes the checks that need the whole file or the
// database: a file without rows, and pupils of another school (row errors
// too, checked before anything is written). Any error refuses the file.
func (s *Store) validateAll(ctx context.Context, im *csvImport) error {
	if im.rep.Rows == 0 && len(im.rep.Errors) == 0 {
		im.addErr(2, "", "the file has a header but no rows")
	}
	for _, r := range im.rows {
		var other string
		err := s.db.R.QueryRowContext(ctx, `SELECT school_id FROM pupils WHERE id = ?`, r.pupil.ID).Scan(&other)
		if err == nil && other != im.school {
			im.addErr(r.line, "personal_id", "already belongs to a pupil of school "+other)
		}
	}
	if len(im.rep.Errors) > 0 {
		return refused(im.rep)
	}
	return nil
}

// applyReport applies a clean file in one transaction (applyImport) and
// reports what changed.
func (s *Store) applyReport(ctx context.Context, im *csvImport) (ImportReport, error) {
	changed, err := s.applyImport(ctx, im.school, im.rows, im.has, &im.rep)
	if err != nil {
		im.rep.Created, im.rep.Updated = 0, 0
		return im.rep, dbErr("import", err)
	}
	im.rep.Applied = true
	if changed {
		s.changed(ctx, im.school)
	}
	return im.rep, nil
}

// applyImport writes the checked rows of a file in one transaction, with
// the file's one audit entry (pupil_import about the school: counts only),
// and counts the pupils created and updated in rep. changed reports a
// gallery-relevant change.
func (s *Store) applyImport(ctx context.Context, school string, rows []importRow, has func(string) bool, rep *ImportReport) (changed bool, err error) {
	now := s.now().UnixMilli()
	var gs guardianCounts
	err = s.db.Tx(ctx, func(tx *sql.Tx) error {
		for _, r := range rows {
			existed, ch, err := importPupilTx(ctx, tx, r.pupil, has, now)
			if err != nil {
				return fmt.Errorf("line %d: %w", r.line, err)
			}
			changed = changed || ch
			if existed {
				rep.Updated++
			} else {
				rep.Created++
			}
			if err := importGuardiansTx(ctx, tx, r.pupil.ID, r.guardians, has, now, &gs); err != nil {
				return fmt.Errorf("line %d: %w", r.line, err)
			}
		}
		return s.record(ctx, tx, ActionPupilImport, "school:"+school, map[string]int{"rows": rep.Rows,
			"pupils_created": rep.Created, "pupils_updated": rep.Updated, "guardians_created": gs.created, "guardians_updated": gs.updated})
	})
	return changed, err
}

// importPupilTx upserts one pupil of a file: columns the file does not
// have keep an existing pupil's value, and the pupil keeps its origin (a
// city-synced pupil stays "city").
func importPupilTx(ctx context.Context, tx *sql.Tx, p Pupil, has func(string) bool, now int64) (existed, changed bool, err error) {
	old, err := scanPupil(tx.QueryRowContext(ctx, `SELECT `+pupilCols+` FROM pupils WHERE id = ?`, p.ID))
	if existed, err = found(err); err != nil {
		return false, false, err
	}
	if existed {
		p.Source = old.Source
		if !has("class") {
			p.ClassID = old.ClassID
		}
		if !has("date_of_birth") {
			p.DateOfBirth = old.DateOfBirth
		}
		if !has("gender") {
			p.Gender = old.Gender
		}
		if !has("active") {
			p.Active = old.Active
		}
		if !has("manual_attendance") {
			p.ManualAttendance = old.ManualAttendance
		}
	}
	changed, err = putPupilTx(ctx, tx, p, now)
	return existed, changed, err
}

// guardianCounts counts the guardians an import added and updated.
type guardianCounts struct{ created, updated int }

// importGuardiansTx upserts a pupil's guardians from one row: one whose
// NameKey matches a stored guardian of the pupil updates it, keeping the
// fields whose column the file lacks; the others are added.
func importGuardiansTx(ctx context.Context, tx *sql.Tx, pupil string, gs []csvGuardian, has func(string) bool, now int64, cnt *guardianCounts) error {
	if len(gs) == 0 {
		return nil
	}
	rows, err := tx.QueryContext(ctx, `SELECT id, full_name, phone, email, relation FROM guardians WHERE pupil_id = ? ORDER BY id`, pupil)
	if err != nil {
		return err
	}
	stored := map[string]Guardian{}
	for rows.Next() {
		var g Guardian
		if err := rows.Scan(&g.ID, &g.FullName, &g.Phone, &g.Email, &g.Relation); err != nil {
			rows.Close()
			return err
		}
		if _, dup := stored[NameKey(g.FullName)]; !dup {
			stored[NameKey(g.FullName)] = g
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	for _, cg := range gs {
		n, g := cg.n, cg.Guardian
		old, found := stored[NameKey(g.FullName)]
		if !found {
			if _, err := tx.ExecContext(ctx, `INSERT INTO guardians(pupil_id, full_name, phone, email, relation, updated_at) VALUES (?,?,?,?,?,?)`,
				pupil, g.FullName, g.Phone, g.Email, g.Relation, now); err != nil {
				return err
			}
			cnt.created++
			continue
		}
		for _, f := range []struct {
			field    string
			dst, was *string
		}{{"phone", &g.Phone, &old.Phone}, {"email", &g.Email, &old.Email}, {"relation", &g.Relation, &old.Relation}} {
			if !has(guardianCol(n, f.field)) {
				*f.dst = *f.was
			}
		}
		if g.FullName == old.FullName && g.Phone == old.Phone && g.Email == old.Email && g.Relation == old.Relation {
			continue
		}
		if _, err := tx.ExecContext(ctx, `UPDATE guardians SET full_name=?, phone=?, email=?, relation=?, updated_at=? WHERE id=?`,
			g.FullName, g.Phone, g.Email, g.Relation, now, old.ID); err != nil {
			return err
		}
		cnt.updated++
	}
	return nil
}
