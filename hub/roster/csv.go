package roster

import (
	"bufio"
	"bytes"
	"context"
	"database/sql"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"strings"
	"unicode/utf8"

	"github.com/diemdanh/diemdanh/hub/api"
)

// PupilCSVColumns are the columns of the pupils CSV (header row required,
// any order; only personal_id and full_name are mandatory). "class" is a
// class ID or a class name of the school.
var PupilCSVColumns = []string{"personal_id", "full_name", "class", "date_of_birth", "gender",
	"guardian_name", "guardian_phone", "guardian_email", "guardian_relation", "active", "manual_attendance"}

// Limits of an import.
const (
	MaxCSVBytes  = 10 << 20
	MaxCSVRows   = 50000
	maxRowErrors = 1000
)

// RowError is one problem in an imported file.
type RowError struct {
	Line   int    `json:"line"`
	Field  string `json:"field,omitempty"`
	Reason string `json:"reason"`
}

// ImportReport is the outcome of an import. Applied is false whenever
// Errors is not empty: the file is all-or-nothing.
type ImportReport struct {
	Rows    int        `json:"rows"`
	Created int        `json:"created"`
	Updated int        `json:"updated"`
	Applied bool       `json:"applied"`
	DryRun  bool       `json:"dry_run"`
	Errors  []RowError `json:"errors"`
}

type importRow struct {
	line     int
	pupil    Pupil
	guardian *Guardian
}

// ImportPupilsCSV validates every row of r and, only if the whole file is
// clean (and dryRun is false), upserts all pupils (and their guardian, when
// the guardian columns are filled) in one transaction. A file with any bad
// row changes nothing; the report lists every error. The returned error is
// an *api.Error (CodeInvalid, Details = report) when the file is refused.
func (s *Store) ImportPupilsCSV(ctx context.Context, school string, r io.Reader, dryRun bool) (ImportReport, error) {
	rep := ImportReport{DryRun: dryRun, Errors: []RowError{}}
	if err := s.checkSchoolRef(ctx, school); err != nil {
		return rep, err
	}
	data, err := io.ReadAll(io.LimitReader(r, MaxCSVBytes+1))
	if err != nil {
		return rep, fmt.Errorf("roster: read csv: %w", err)
	}
	if len(data) > MaxCSVBytes {
		return rep, api.Errorf(api.CodeTooLarge, "CSV larger than %d bytes", MaxCSVBytes)
	}
	data = bytes.TrimPrefix(data, []byte("\xEF\xBB\xBF"))
	classes, err := s.Classes(ctx, school)
	if err != nil {
		return rep, err
	}
	classByKey := map[string]string{}
	for _, c := range classes {
		classByKey[strings.ToLower(c.Name)] = c.ID
	}
	for _, c := range classes {
		classByKey[c.ID] = c.ID
	}

	addErr := func(line int, field, reason string) {
		if len(rep.Errors) < maxRowErrors {
			rep.Errors = append(rep.Errors, RowError{Line: line, Field: field, Reason: reason})
		}
	}
	cr := csv.NewReader(bufio.NewReader(bytes.NewReader(data)))
	cr.FieldsPerRecord = -1
	cr.ReuseRecord = false
	header, err := cr.Read()
	if err != nil {
		if errors.Is(err, io.EOF) {
			addErr(1, "", "the file is empty")
		} else {
			addErr(1, "", "cannot read the header row: "+err.Error())
		}
		return rep, refused(rep)
	}
	col := map[string]int{}
	for i, h := range header {
		h = strings.ToLower(strings.TrimSpace(h))
		if !utf8.ValidString(h) {
			addErr(1, "", "the header is not valid UTF-8 (save the file as UTF-8)")
			return rep, refused(rep)
		}
		known := false
		for _, k := range PupilCSVColumns {
			known = known || k == h
		}
		if !known {
			addErr(1, h, "unknown column (known: "+strings.Join(PupilCSVColumns, ", ")+")")
			continue
		}
		if _, dup := col[h]; dup {
			addErr(1, h, "duplicate column")
		}
		col[h] = i
	}
	for _, need := range []string{"personal_id", "full_name"} {
		if _, ok := col[need]; !ok {
			addErr(1, need, "required column missing")
		}
	}
	if len(rep.Errors) > 0 {
		return rep, refused(rep)
	}
	var rows []importRow
	seen := map[string]int{}
	for {
		rec, err := cr.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			var pe *csv.ParseError
			if errors.As(err, &pe) {
				addErr(pe.Line, "", "malformed CSV: "+pe.Err.Error())
				if len(rep.Errors) >= maxRowErrors {
					break
				}
				continue
			}
			return rep, fmt.Errorf("roster: csv: %w", err)
		}
		line, _ := cr.FieldPos(0)
		if len(rec) == 1 && strings.TrimSpace(rec[0]) == "" {
			continue // blank line
		}
		rep.Rows++
		if rep.Rows > MaxCSVRows {
			addErr(line, "", fmt.Sprintf("more than %d rows", MaxCSVRows))
			break
		}
		get := func(k string) string {
			if i, ok := col[k]; ok && i < len(rec) {
				return unsafeCell(strings.TrimSpace(rec[i]))
			}
			return ""
		}
		if len(rec) != len(header) {
			addErr(line, "", fmt.Sprintf("has %d cells, the header has %d", len(rec), len(header)))
			continue
		}
		p := Pupil{ID: get("personal_id"), SchoolID: school, FullName: get("full_name"), DateOfBirth: get("date_of_birth"),
			Gender: strings.ToLower(get("gender")), Active: true, Source: "local"}
		ok := true
		if c := get("class"); c != "" {
			id, found := classByKey[c]
			if !found {
				id, found = classByKey[strings.ToLower(c)]
			}
			if !found {
				addErr(line, "class", fmt.Sprintf("no class %q in school %s", clip(c), school))
				ok = false
			}
			p.ClassID = id
		}
		for _, b := range []struct {
			k   string
			dst *bool
		}{{"active", &p.Active}, {"manual_attendance", &p.ManualAttendance}} {
			switch strings.ToLower(get(b.k)) {
			case "":
			case "1", "true", "yes", "có", "co":
				*b.dst = true
			case "0", "false", "no", "không", "khong":
				*b.dst = false
			default:
				addErr(line, b.k, fmt.Sprintf("must be 1 or 0, got %q", clip(get(b.k))))
				ok = false
			}
		}
		if err := p.Validate(); err != nil {
			addFieldErr(addErr, line, err)
			ok = false
		}
		if prev, dup := seen[p.ID]; dup && p.ID != "" {
			addErr(line, "personal_id", fmt.Sprintf("duplicate of line %d", prev))
			ok = false
		} else if p.ID != "" {
			seen[p.ID] = line
		}
		var g *Guardian
		if gn := get("guardian_name"); gn != "" || get("guardian_phone") != "" || get("guardian_email") != "" {
			g = &Guardian{PupilID: p.ID, FullName: gn, Phone: get("guardian_phone"), Email: get("guardian_email"), Relation: get("guardian_relation")}
			if err := g.Validate(); err != nil {
				addFieldErr(func(l int, f, r string) { addErr(l, "guardian_"+strings.TrimPrefix(f, "full_"), r) }, line, err)
				ok = false
			}
		}
		if ok {
			rows = append(rows, importRow{line: line, pupil: p, guardian: g})
		}
		if len(rep.Errors) >= maxRowErrors {
			break
		}
	}
	if rep.Rows == 0 && len(rep.Errors) == 0 {
		addErr(2, "", "the file has a header but no rows")
	}
	// Cross-school conflicts are row errors too: check them before writing.
	for _, r := range rows {
		var other string
		err := s.db.R.QueryRowContext(ctx, `SELECT school_id FROM pupils WHERE id = ?`, r.pupil.ID).Scan(&other)
		if err == nil && other != school {
			addErr(r.line, "personal_id", "already belongs to a pupil of school "+other)
		}
	}
	if len(rep.Errors) > 0 {
		return rep, refused(rep)
	}
	if dryRun {
		return rep, nil
	}
	changed := false
	now := s.now().UnixMilli()
	err = s.db.Tx(ctx, func(tx *sql.Tx) error {
		for _, r := range rows {
			var one int
			exists := tx.QueryRowContext(ctx, `SELECT 1 FROM pupils WHERE id = ?`, r.pupil.ID).Scan(&one) == nil
			ch, err := putPupilTx(ctx, tx, r.pupil, now)
			if err != nil {
				return fmt.Errorf("line %d: %w", r.line, err)
			}
			changed = changed || ch
			if exists {
				rep.Updated++
			} else {
				rep.Created++
			}
			if g := r.guardian; g != nil {
				res, err := tx.ExecContext(ctx, `UPDATE guardians SET phone=?, email=?, relation=?, updated_at=? WHERE pupil_id=? AND full_name=?`,
					g.Phone, g.Email, g.Relation, now, g.PupilID, g.FullName)
				if err != nil {
					return fmt.Errorf("line %d: %w", r.line, err)
				}
				if n, _ := res.RowsAffected(); n == 0 {
					if _, err := tx.ExecContext(ctx, `INSERT INTO guardians(pupil_id, full_name, phone, email, relation, updated_at) VALUES (?,?,?,?,?,?)`,
						g.PupilID, g.FullName, g.Phone, g.Email, g.Relation, now); err != nil {
						return fmt.Errorf("line %d: %w", r.line, err)
					}
				}
			}
		}
		return nil
	})
	if err != nil {
		rep.Created, rep.Updated = 0, 0
		return rep, dbErr("import", err)
	}
	rep.Applied = true
	if changed {
		s.changed(ctx, school)
	}
	return rep, nil
}

func addFieldErr(add func(int, string, string), line int, err error) {
	var ae *api.Error
	if errors.As(err, &ae) {
		add(line, csvField(ae.Field), ae.Message)
		return
	}
	add(line, "", err.Error())
}

// csvField maps a model field to its CSV column.
func csvField(f string) string {
	switch f {
	case "id":
		return "personal_id"
	case "class_id":
		return "class"
	}
	return f
}

func refused(rep ImportReport) error {
	return &api.Error{Code: api.CodeInvalid, Field: "csv",
		Message: fmt.Sprintf("%d error(s); nothing was imported", len(rep.Errors)), Details: rep}
}

// SafeCell neutralises spreadsheet formula injection: a cell starting with
// = + - @ (or tab / carriage return) is prefixed with a single quote.
func SafeCell(v string) string {
	if v != "" && strings.ContainsRune("=+-@\t\r", rune(v[0])) {
		return "'" + v
	}
	return v
}

// unsafeCell undoes SafeCell so an exported file imports back unchanged
// (a neutralised formula is then refused by validation).
func unsafeCell(v string) string {
	if len(v) > 1 && v[0] == '\'' && strings.ContainsRune("=+-@\t\r", rune(v[1])) {
		return v[1:]
	}
	return v
}

// ExportPupilsCSV writes the school's pupils (one row per guardian, or one
// row without guardian) in the import format, formula-injection safe.
func (s *Store) ExportPupilsCSV(ctx context.Context, school string, w io.Writer) error {
	if err := s.checkSchoolRef(ctx, school); err != nil {
		return err
	}
	pupils, err := s.Pupils(ctx, school, PupilFilter{})
	if err != nil {
		return err
	}
	cw := csv.NewWriter(w)
	if err := cw.Write(PupilCSVColumns); err != nil {
		return fmt.Errorf("roster: export: %w", err)
	}
	for _, p := range pupils {
		gs, err := s.Guardians(ctx, p.ID)
		if err != nil {
			return err
		}
		if len(gs) == 0 {
			gs = []Guardian{{}}
		}
		for _, g := range gs {
			rec := []string{p.ID, p.FullName, p.ClassID, p.DateOfBirth, p.Gender, g.FullName, g.Phone, g.Email, g.Relation,
				fmt.Sprint(b2i(p.Active)), fmt.Sprint(b2i(p.ManualAttendance))}
			for i := range rec {
				rec[i] = SafeCell(rec[i])
			}
			if err := cw.Write(rec); err != nil {
				return fmt.Errorf("roster: export: %w", err)
			}
		}
	}
	cw.Flush()
	return cw.Error()
}
