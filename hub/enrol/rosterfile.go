package enrol

import (
	"bytes"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/diemdanh/diemdanh/hub/roster"
	"github.com/diemdanh/diemdanh/models/wire"
)

// RosterRow is one pupil of a bulk-enrolment roster.
type RosterRow struct {
	Line    int
	PupilID string
	Photos  []string // file names inside the photos folder; empty = find by personal ID
	// Optional consent columns: recorded when the pupil has no valid consent.
	ConsentRef      string
	ConsentGuardian string
	ConsentPupil    bool
	ConsentPhotos   bool
}

// RowError is a roster problem: line, field and reason.
type RowError struct {
	Line   int    `json:"line"`
	Field  string `json:"field"`
	Reason string `json:"reason"`
}

func (e RowError) Error() string { return fmt.Sprintf("line %d: %s: %s", e.Line, e.Field, e.Reason) }

// RosterErrors is every problem of a refused roster.
type RosterErrors []RowError

func (e RosterErrors) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "roster refused (%d problems; nothing was enrolled):", len(e))
	for i, x := range e {
		if i == 20 {
			fmt.Fprintf(&b, "\n  … %d more", len(e)-20)
			break
		}
		b.WriteString("\n  " + x.Error())
	}
	return b.String()
}

// MaxRosterBytes bounds a roster file.
const MaxRosterBytes = 16 << 20

func formula(s string) bool {
	return s != "" && strings.ContainsRune("=+-@\t\r", rune(s[0]))
}

func yes(s string) (bool, bool) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "", "0", "no", "n", "false", "không", "khong":
		return false, true
	case "1", "yes", "y", "true", "có", "co", "x":
		return true, true
	}
	return false, false
}

// ParseRoster reads a roster CSV (UTF-8 with an optional BOM or UTF-16
// with a BOM; comma, semicolon or tab): a header with personal_id (or id /
// pupil_id / ma_dinh_danh) and optional photos (file names separated by ';'
// or '|'), consent_ref, consent_guardian, consent_pupil, consent_photos.
// The whole file is refused, with every problem listed, when any row is
// bad: another encoding (save as "CSV UTF-8"), a cell that looks like a
// spreadsheet formula, a malformed personal ID, a duplicate pupil, an
// unsafe photo name.
func ParseRoster(r io.Reader) ([]RosterRow, error) {
	b, err := readRosterText(r)
	if err != nil {
		return nil, err
	}
	p, err := newRosterParse(b)
	if err != nil {
		return nil, err
	}
	rows, errs := p.parseRows()
	if len(errs) > 0 {
		return nil, errs
	}
	if len(rows) == 0 {
		return nil, RosterErrors{{2, "row", "the roster has no pupils"}}
	}
	return rows, nil
}

// readRosterText reads a roster file, at most MaxRosterBytes, as UTF-8.
func readRosterText(r io.Reader) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r, MaxRosterBytes+1))
	if err != nil {
		return nil, fmt.Errorf("roster: %w", err)
	}
	if len(b) > MaxRosterBytes {
		return nil, RosterErrors{{0, "file", fmt.Sprintf("larger than %d MB", MaxRosterBytes>>20)}}
	}
	// UTF-8 (optional BOM) or UTF-16 with a BOM; anything else is refused
	// naming the first bad line (the roster importer's decoder).
	if b, err = roster.DecodeText(b); err != nil {
		var ee *roster.EncodingError
		if errors.As(err, &ee) {
			return nil, RosterErrors{{ee.Line, "file", ee.Reason}}
		}
		return nil, err
	}
	return b, nil
}

// rosterParse is a roster file past its header.
type rosterParse struct {
	cr   *csv.Reader
	head []string
	col  map[string]int // lower-case column name -> index
	idc  int            // the personal ID's column
	seen map[string]int // personal ID -> its line
}

// newRosterParse reads the header row; it needs a personal ID column.
func newRosterParse(b []byte) (*rosterParse, error) {
	cr := csv.NewReader(bytes.NewReader(b))
	cr.Comma = roster.SniffComma(b) // comma, semicolon or tab
	cr.FieldsPerRecord = -1
	cr.ReuseRecord = false
	head, err := cr.Read()
	if err != nil {
		return nil, RosterErrors{{1, "header", "unreadable: " + err.Error()}}
	}
	p := &rosterParse{cr: cr, head: head, col: map[string]int{}, seen: map[string]int{}}
	for i, h := range head {
		h = strings.ToLower(strings.TrimSpace(h))
		switch h {
		case "id", "pupil_id", "personal_id", "ma_dinh_danh", "mã định danh":
			h = "personal_id"
		}
		p.col[h] = i
	}
	idc, ok := p.col["personal_id"]
	if !ok {
		return nil, RosterErrors{{1, "header", "needs a personal_id column"}}
	}
	p.idc = idc
	return p, nil
}

// get is rec's cell of column name, trimmed ("" without one).
func (p *rosterParse) get(rec []string, name string) string {
	if i, ok := p.col[name]; ok && i < len(rec) {
		return strings.TrimSpace(rec[i])
	}
	return ""
}

// parseRows reads the rows and lists every problem (it gives up after
// 200 unreadable rows).
func (p *rosterParse) parseRows() ([]RosterRow, RosterErrors) {
	var rows []RosterRow
	var errs RosterErrors
	for {
		rec, err := p.cr.Read()
		if errors.Is(err, io.EOF) {
			return rows, errs
		}
		if err != nil {
			line := 0
			var pe *csv.ParseError
			if errors.As(err, &pe) {
				line = pe.StartLine
			}
			errs = append(errs, RowError{line, "row", err.Error()})
			if len(errs) > 200 {
				return rows, errs
			}
			continue
		}
		line, _ := p.cr.FieldPos(0)
		if p.idc >= len(rec) {
			errs = append(errs, RowError{line, "personal_id", "missing"})
			continue
		}
		row, rowErrs := p.parseRow(rec, line)
		errs = append(errs, rowErrs...)
		rows = append(rows, row)
	}
}

// parseRow checks one row: no formula cells, a new well-formed personal
// ID, safe photo names, yes/no consents.
func (p *rosterParse) parseRow(rec []string, line int) (RosterRow, []RowError) {
	var errs []RowError
	for i, cell := range rec {
		if formula(strings.TrimSpace(cell)) || formula(cell) {
			name := fmt.Sprintf("column %d", i+1)
			if i < len(p.head) {
				name = p.head[i]
			}
			errs = append(errs, RowError{line, name, "looks like a spreadsheet formula (starts with = + - @); refused / ô bắt đầu bằng = + - @ bị từ chối"})
		}
	}
	row := RosterRow{Line: line, PupilID: strings.TrimSpace(rec[p.idc])}
	if !wire.ValidPersonalID(row.PupilID) {
		errs = append(errs, RowError{line, "personal_id", "must be 12 digits / mã định danh phải có 12 chữ số"})
	} else if prev, dup := p.seen[row.PupilID]; dup {
		errs = append(errs, RowError{line, "personal_id", fmt.Sprintf("duplicate of line %d", prev)})
	}
	p.seen[row.PupilID] = line
	if ph := p.get(rec, "photos"); ph != "" {
		for _, n := range strings.FieldsFunc(ph, func(r rune) bool { return r == ';' || r == '|' }) {
			n = strings.TrimSpace(n)
			if _, ok := CleanName(n); !ok || n == "" {
				errs = append(errs, RowError{line, "photos", fmt.Sprintf("unsafe file name %q (no folders or '..')", truncate(n, 60))})
				continue
			}
			row.Photos = append(row.Photos, n)
		}
	}
	row.ConsentRef = p.get(rec, "consent_ref")
	row.ConsentGuardian = p.get(rec, "consent_guardian")
	var ok1, ok2 bool
	row.ConsentPupil, ok1 = yes(p.get(rec, "consent_pupil"))
	row.ConsentPhotos, ok2 = yes(p.get(rec, "consent_photos"))
	if !ok1 || !ok2 {
		errs = append(errs, RowError{line, "consent_pupil", "use yes/no"})
	}
	return row, errs
}

var photoExt = map[string]bool{".jpg": true, ".jpeg": true, ".png": true, ".webp": true, ".bmp": true}

// FindPhotos maps each pupil to its photo files in dir: the files listed in
// the roster, else files named <personal_id>.<ext>, <personal_id>_N.<ext>
// or <personal_id>-N.<ext>. Only regular files inside dir are used.
func FindPhotos(dir string, rows []RosterRow, maxPer int) (map[string][]string, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("photos: %w", err)
	}
	byID := map[string][]string{}
	for _, e := range ents {
		n := e.Name()
		ext := strings.ToLower(filepath.Ext(n))
		if !photoExt[ext] {
			continue
		}
		base := strings.TrimSuffix(n, filepath.Ext(n))
		id := base
		if len(base) > 12 && (base[12] == '_' || base[12] == '-') {
			id = base[:12]
		}
		if wire.ValidPersonalID(id) {
			byID[id] = append(byID[id], n)
		}
	}
	out := map[string][]string{}
	for _, r := range rows {
		files := r.Photos
		if len(files) == 0 {
			files = byID[r.PupilID]
		}
		sort.Strings(files)
		if len(files) > maxPer {
			files = files[:maxPer]
		}
		out[r.PupilID] = files
	}
	return out, nil
}

// readPhoto reads name from dir: a plain name, a regular file (symlinks
// are followed but must stay regular files), at most limit bytes (a larger
// file is reported by size without being read).
func readPhoto(dir, name string, limit int) (Photo, error) {
	if _, ok := CleanName(name); !ok {
		return Photo{Name: name}, nil // analyze refuses the name
	}
	p := filepath.Join(dir, name)
	st, err := os.Stat(p)
	if err != nil {
		return Photo{}, err
	}
	if !st.Mode().IsRegular() {
		return Photo{}, fmt.Errorf("%s is not a regular file", name)
	}
	if limit > 0 && st.Size() > int64(limit) {
		return Photo{Name: name, Size: st.Size()}, nil
	}
	f, err := os.Open(p)
	if err != nil {
		return Photo{}, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, int64(limit)+1))
	return Photo{Name: name, Data: b}, err
}
