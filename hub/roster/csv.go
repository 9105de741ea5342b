package roster

import (
	"bufio"
	"bytes"
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/diemdanh/diemdanh/hub/api"
)

// PupilCSVColumns are the pupil columns of the pupils CSV (header row
// required, any order; only personal_id and full_name are mandatory).
// "class" is a class ID or a class name of the school. Each guardian is a
// group of columns guardianN_name, guardianN_phone, guardianN_email and
// guardianN_relation (N = 1, 2, …, see GuardianCSVFields); guardian_name,
// guardian_phone, guardian_email and guardian_relation are accepted for
// guardian 1. The export writes exactly this format, one row per pupil.
var PupilCSVColumns = []string{"personal_id", "full_name", "class", "date_of_birth", "gender", "active", "manual_attendance"}

// GuardianCSVFields are the fields of a guardian's column group.
var GuardianCSVFields = []string{"name", "phone", "email", "relation"}

// Limits of an import.
const (
	MaxCSVBytes  = 10 << 20
	MaxCSVRows   = 50000
	maxRowErrors = 1000
	// MaxCSVGuardians bounds N in guardianN_* columns.
	MaxCSVGuardians = 99
	// exportGuardians is the least number of guardian groups the export
	// writes, so the file is a template with room for two parents.
	exportGuardians = 2
)

var guardianColRe = regexp.MustCompile(`^guardian([1-9][0-9]?)?_(name|phone|email|relation)$`)

// guardianCol is the column of field f of guardian n.
func guardianCol(n int, f string) string { return fmt.Sprintf("guardian%d_%s", n, f) }

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
	line      int
	pupil     Pupil
	guardians []csvGuardian
}

// csvGuardian is a guardian of a row and its column group N.
type csvGuardian struct {
	n int
	Guardian
}

// ImportPupilsCSV validates every row of r and, only if the whole file is
// clean (and dryRun is false), upserts all pupils and their guardians in
// one transaction. A file with any bad row changes nothing; the report
// lists every error. The returned error is an *api.Error (CodeInvalid,
// Details = report) when the file is refused.
//
// The file may be UTF-8 (with or without a byte-order mark) or UTF-16 with
// a byte-order mark, separated by commas, semicolons or tabs (see
// DecodeText, SniffComma); any other encoding is refused with one error
// (field "encoding") naming the first bad line. Cells a spreadsheet would
// run as a formula are refused; the "'" the export puts before them is
// removed first (see SafeCell), so an exported file imports unchanged.
//
// Semantics: a pupil is matched by personal ID, a guardian by name
// (NameKey) among the pupil's guardians. A column absent from the file
// leaves that field of an existing pupil or guardian unchanged (a present
// but empty cell clears it); guardians not in the file are kept. Importing
// the same file again is therefore an idempotent update.
func (s *Store) ImportPupilsCSV(ctx context.Context, school string, r io.Reader, dryRun bool) (ImportReport, error) {
	im := &csvImport{school: school, rep: ImportReport{DryRun: dryRun, Errors: []RowError{}}}
	if err := s.checkSchoolRef(ctx, school); err != nil {
		return im.rep, err
	}
	data, err := readCSV(r)
	if err != nil {
		return im.rep, err
	}
	if data, err = im.decode(data); err != nil {
		return im.rep, err
	}
	if err := s.loadClasses(ctx, im); err != nil {
		return im.rep, err
	}
	if err := im.parseHeader(data); err != nil {
		return im.rep, err
	}
	if err := im.parseRows(); err != nil {
		return im.rep, err
	}
	if err := s.validateAll(ctx, im); err != nil || dryRun {
		return im.rep, err
	}
	return s.applyReport(ctx, im)
}

// csvImport is one pupils CSV on its way through ImportPupilsCSV's steps:
// read → decode → load classes → parse header → parse rows → validate all
// → apply in one transaction → report. A step that refuses the file
// returns refused(im.rep) with every error found so far.
type csvImport struct {
	school      string
	rep         ImportReport
	classByID   map[string]string
	classByName map[string]string // NameKey -> ID, "" when ambiguous
	cr          *csv.Reader
	header      []string
	col         map[string]int    // canonical column -> index
	colName     map[string]string // canonical column -> its header in the file
	nGuardians  int               // the highest N of the guardianN_* columns
	rows        []importRow       // the rows without errors
	seen        map[string]int    // personal ID -> its line
}

// addErr records a problem of the file, up to maxRowErrors.
func (im *csvImport) addErr(line int, field, reason string) {
	if len(im.rep.Errors) < maxRowErrors {
		im.rep.Errors = append(im.rep.Errors, RowError{Line: line, Field: field, Reason: reason})
	}
}

// has reports whether the file has canonical column k.
func (im *csvImport) has(k string) bool { _, ok := im.col[k]; return ok }

// readCSV reads the file, at most MaxCSVBytes.
func readCSV(r io.Reader) ([]byte, error) {
	data, err := io.ReadAll(io.LimitReader(r, MaxCSVBytes+1))
	if err != nil {
		return nil, fmt.Errorf("roster: read csv: %w", err)
	}
	if len(data) > MaxCSVBytes {
		return nil, api.Errorf(api.CodeTooLarge, "CSV larger than %d bytes", MaxCSVBytes)
	}
	return data, nil
}

// decode turns the file into UTF-8 (DecodeText); a file in another
// encoding is refused with one error naming the first bad line.
func (im *csvImport) decode(data []byte) ([]byte, error) {
	text, err := DecodeText(data)
	if err != nil {
		var ee *EncodingError
		if !errors.As(err, &ee) {
			return nil, err
		}
		im.addErr(ee.Line, "encoding", ee.Reason)
		return nil, refused(im.rep)
	}
	return text, nil
}

// loadClasses indexes the school's classes by ID and by name.
func (s *Store) loadClasses(ctx context.Context, im *csvImport) error {
	classes, err := s.Classes(ctx, im.school)
	if err != nil {
		return err
	}
	im.classByID, im.classByName = map[string]string{}, map[string]string{}
	for _, c := range classes {
		im.classByID[c.ID] = c.ID
		k := NameKey(c.Name)
		if _, dup := im.classByName[k]; dup {
			im.classByName[k] = ""
		} else {
			im.classByName[k] = c.ID
		}
	}
	return nil
}

// parseHeader reads the header row and maps each column to its canonical
// name; an unknown or duplicate column, or a missing required one,
// refuses the file.
func (im *csvImport) parseHeader(data []byte) error {
	im.cr = csv.NewReader(bufio.NewReader(bytes.NewReader(data)))
	im.cr.Comma = SniffComma(data)
	im.cr.FieldsPerRecord = -1
	im.cr.ReuseRecord = false
	header, err := im.cr.Read()
	if err != nil {
		if errors.Is(err, io.EOF) {
			im.addErr(1, "", "the file is empty")
		} else {
			im.addErr(1, "", "cannot read the header row: "+err.Error())
		}
		return refused(im.rep)
	}
	im.header, im.col, im.colName = header, map[string]int{}, map[string]string{}
	for i, h := range header {
		h = strings.ToLower(strings.TrimSpace(h))
		key := im.columnKey(h)
		if key == "" {
			continue
		}
		if _, dup := im.col[key]; dup {
			im.addErr(1, h, "duplicate column (same as "+im.colName[key]+")")
			continue
		}
		im.col[key], im.colName[key] = i, h
	}
	for _, need := range []string{"personal_id", "full_name"} {
		if _, ok := im.col[need]; !ok {
			im.addErr(1, need, "required column missing")
		}
	}
	if len(im.rep.Errors) > 0 {
		return refused(im.rep)
	}
	return nil
}

// columnKey is the canonical name of header h ("" and an error when
// unknown), counting the guardian column groups.
func (im *csvImport) columnKey(h string) string {
	if slices.Contains(PupilCSVColumns, h) {
		return h
	}
	if m := guardianColRe.FindStringSubmatch(h); m != nil {
		n := 1
		if m[1] != "" {
			n, _ = strconv.Atoi(m[1])
		}
		im.nGuardians = max(im.nGuardians, n)
		return guardianCol(n, m[2])
	}
	im.addErr(1, clip(h), "unknown column (known: "+strings.Join(PupilCSVColumns, ", ")+
		", and per guardian N = 1, 2, …: guardianN_name, guardianN_phone, guardianN_email, guardianN_relation)")
	return ""
}

// parseRows reads every row, checks it on its own and keeps the clean
// ones (im.rows); it stops after MaxCSVRows rows or maxRowErrors errors.
func (im *csvImport) parseRows() error {
	im.seen = map[string]int{}
	for {
		rec, err := im.cr.Read()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			var pe *csv.ParseError
			if !errors.As(err, &pe) {
				return fmt.Errorf("roster: csv: %w", err)
			}
			im.addErr(pe.Line, "", "malformed CSV: "+pe.Err.Error())
			if len(im.rep.Errors) >= maxRowErrors {
				return nil
			}
			continue
		}
		line, _ := im.cr.FieldPos(0)
		if len(rec) == 1 && strings.TrimSpace(rec[0]) == "" {
			continue // blank line
		}
		im.rep.Rows++
		if im.rep.Rows > MaxCSVRows {
			im.addErr(line, "", fmt.Sprintf("more than %d rows", MaxCSVRows))
			return nil
		}
		if len(rec) != len(im.header) {
			im.addErr(line, "", fmt.Sprintf("has %d cells, the header has %d", len(rec), len(im.header)))
			continue
		}
		if row, ok := im.parseRow(rec, line); ok {
			im.rows = append(im.rows, row)
		}
		if len(im.rep.Errors) >= maxRowErrors {
			return nil
		}
	}
}

// parseRow checks one row: its pupil, then its guardians. ok: no error.
func (im *csvImport) parseRow(rec []string, line int) (row importRow, ok bool) {
	get := func(k string) string {
		if i, ok := im.col[k]; ok && i < len(rec) {
			return unsafeCell(strings.TrimSpace(rec[i]))
		}
		return ""
	}
	p, ok := im.parsePupil(get, line)
	gs, gok := im.parseGuardians(get, line, p.ID)
	return importRow{line: line, pupil: p, guardians: gs}, ok && gok
}

// parsePupil checks a row's pupil columns: class, flags, the pupil's own
// rules, and one row per pupil.
func (im *csvImport) parsePupil(get func(string) string, line int) (Pupil, bool) {
	p := Pupil{ID: get("personal_id"), SchoolID: im.school, FullName: get("full_name"), DateOfBirth: get("date_of_birth"),
		Gender: strings.ToLower(get("gender")), Active: true, Source: "local"}
	ok := true
	if c := get("class"); c != "" {
		p.ClassID, ok = im.resolveClass(c, line)
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
			im.addErr(line, b.k, fmt.Sprintf("must be 1 or 0, got %q", clip(get(b.k))))
			ok = false
		}
	}
	if err := p.Validate(); err != nil {
		addFieldErr(im.addErr, line, err)
		ok = false
	}
	if prev, dup := im.seen[p.ID]; dup && p.ID != "" {
		im.addErr(line, "personal_id", fmt.Sprintf("duplicate of line %d (one row per pupil: further guardians go in the guardian2_… columns)", prev))
		ok = false
	} else if p.ID != "" {
		im.seen[p.ID] = line
	}
	return p, ok
}

// resolveClass finds the class a row names by ID or, failing that, by a
// name only one class of the school has.
func (im *csvImport) resolveClass(c string, line int) (string, bool) {
	id, found := im.classByID[c]
	if !found {
		id, found = im.classByName[NameKey(c)]
		if found && id == "" {
			im.addErr(line, "class", fmt.Sprintf("several classes of school %s are named %q: give the class ID", im.school, clip(c)))
			return id, false
		}
	}
	if !found {
		im.addErr(line, "class", fmt.Sprintf("no class %q in school %s", clip(c), im.school))
		return id, false
	}
	return id, true
}

// parseGuardians checks a row's guardian column groups (an all-empty group
// is no guardian); a guardian named twice on a row is an error.
func (im *csvImport) parseGuardians(get func(string) string, line int, pupil string) ([]csvGuardian, bool) {
	var gs []csvGuardian
	ok := true
	names := map[string]string{} // NameKey -> column
	for n := 1; n <= im.nGuardians; n++ {
		f := func(field string) string { return get(guardianCol(n, field)) }
		if f("name") == "" && f("phone") == "" && f("email") == "" && f("relation") == "" {
			continue
		}
		nameCol := im.colName[guardianCol(n, "name")]
		if nameCol == "" {
			nameCol = guardianCol(n, "name")
		}
		g := Guardian{PupilID: pupil, FullName: f("name"), Phone: f("phone"), Email: f("email"), Relation: f("relation")}
		if err := g.Validate(); err != nil {
			addFieldErr(func(l int, field, r string) {
				c := guardianCol(n, strings.TrimPrefix(field, "full_"))
				if h := im.colName[c]; h != "" {
					c = h
				}
				im.addErr(l, c, r)
			}, line, err)
			ok = false
			continue
		}
		if prev, dup := names[NameKey(g.FullName)]; dup {
			im.addErr(line, nameCol, "the same guardian as "+prev)
			ok = false
			continue
		}
		names[NameKey(g.FullName)] = nameCol
		gs = append(gs, csvGuardian{n, g})
	}
	return gs, ok
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
