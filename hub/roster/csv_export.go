package roster

import (
	"context"
	"encoding/csv"
	"fmt"
	"io"
	"strings"
)

// formulaStart reports whether a spreadsheet would run v as a formula
// (= + - @, or a tab or carriage return before one), or whether v starts
// with a "'" that SafeCell put before such a value.
func formulaStart(v string) bool {
	v = strings.TrimLeft(v, "'")
	return v != "" && strings.ContainsRune("=+-@\t\r", rune(v[0]))
}

// SafeCell neutralises spreadsheet formula injection: a cell starting with
// = + - @ (or tab / carriage return) is prefixed with a single quote. So
// that the escaping round-trips, a value that already starts with quotes
// followed by one of these gets one more quote; the import removes exactly
// one (unsafeCell). No returned cell starts with = + - @, tab or CR.
func SafeCell(v string) string {
	if formulaStart(v) {
		return "'" + v
	}
	return v
}

// unsafeCell undoes SafeCell so an exported file imports back unchanged:
// unsafeCell(SafeCell(v)) == v for every v. (A neutralised formula is then
// refused by validation where the field does not allow it.)
func unsafeCell(v string) string {
	if len(v) > 1 && v[0] == '\'' && formulaStart(v[1:]) {
		return v[1:]
	}
	return v
}

// PupilCSVHeader is the header the export writes with that many guardian
// column groups: PupilCSVColumns, then guardianN_name, guardianN_phone,
// guardianN_email, guardianN_relation for N = 1..guardians.
func PupilCSVHeader(guardians int) []string {
	h := append([]string(nil), PupilCSVColumns...)
	for n := 1; n <= guardians; n++ {
		for _, f := range GuardianCSVFields {
			h = append(h, guardianCol(n, f))
		}
	}
	return h
}

// ExportPupilsCSV writes the school's pupils in the import format, one row
// per pupil with their guardians in column groups (as many groups as the
// pupil with most guardians has, at least two), formula-injection safe
// (SafeCell). Importing the file back, into the same school or a fresh
// one, gives the same pupils and guardians.
func (s *Store) ExportPupilsCSV(ctx context.Context, school string, w io.Writer) error {
	if err := s.checkSchoolRef(ctx, school); err != nil {
		return err
	}
	pupils, err := s.Pupils(ctx, school, PupilFilter{})
	if err != nil {
		return err
	}
	guardians := make([][]Guardian, len(pupils))
	width := exportGuardians
	for i, p := range pupils {
		if guardians[i], err = s.Guardians(ctx, p.ID); err != nil {
			return err
		}
		width = max(width, len(guardians[i]))
	}
	if width > MaxCSVGuardians {
		return fmt.Errorf("roster: export: a pupil has more than %d guardians", MaxCSVGuardians)
	}
	cw := csv.NewWriter(w)
	if err := cw.Write(PupilCSVHeader(width)); err != nil {
		return fmt.Errorf("roster: export: %w", err)
	}
	for i, p := range pupils {
		rec := []string{p.ID, p.FullName, p.ClassID, p.DateOfBirth, p.Gender,
			fmt.Sprint(b2i(p.Active)), fmt.Sprint(b2i(p.ManualAttendance))}
		for n := 0; n < width; n++ {
			var g Guardian
			if n < len(guardians[i]) {
				g = guardians[i][n]
			}
			rec = append(rec, g.FullName, g.Phone, g.Email, g.Relation)
		}
		for i := range rec {
			rec[i] = SafeCell(rec[i])
		}
		if err := cw.Write(rec); err != nil {
			return fmt.Errorf("roster: export: %w", err)
		}
	}
	cw.Flush()
	return cw.Error()
}
