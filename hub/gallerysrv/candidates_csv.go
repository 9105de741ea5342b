package gallerysrv

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"

	"github.com/gin-gonic/gin"
	"golang.org/x/text/unicode/norm"

	"github.com/diemdanh/diemdanh/hub/api"
	"github.com/diemdanh/diemdanh/hub/roster"
	"github.com/diemdanh/diemdanh/models/match"
)

// Kinds of candidate CSV file (ImportCandidatesCSV), told by the header.
const (
	// CandidateCSVSessions: header "class,sessions"; one row per class,
	// its sessions (e.g. "morning|afternoon", "ca sáng"); empty = every
	// session.
	CandidateCSVSessions = "sessions"
	// CandidateCSVGates: header "gate,classes"; one row per gate, the
	// classes it serves (IDs or names, e.g. "1A|1B"); empty = every class.
	CandidateCSVGates = "gate_classes"
	// MaxCandidateCSVBytes bounds one file.
	MaxCandidateCSVBytes = 1 << 20
	maxCandidateRows     = 10000
)

// CandidateImport is the outcome of ImportCandidatesCSV. Applied is false
// whenever Errors is not empty: the file is all-or-nothing.
type CandidateImport struct {
	Kind    string            `json:"kind"`
	Rows    int               `json:"rows"`
	Changed int               `json:"changed"` // classes or gates whose setting changed
	Applied bool              `json:"applied"`
	Errors  []roster.RowError `json:"errors"`
}

// candidateHeaders maps accepted header cells to their column.
var candidateHeaders = map[string]string{
	"class": "class", "lớp": "class", "lop": "class", "class_id": "class",
	"gate": "gate", "cổng": "gate", "cong": "gate", "gate_id": "gate",
	"sessions": "list", "ca": "list", "ca học": "list", "classes": "list", "class_ids": "list", "các lớp": "list",
}

// sessionWords maps the words a school may write for a session.
var sessionWords = map[string]string{
	"morning": match.SessionMorning, "sáng": match.SessionMorning, "sang": match.SessionMorning,
	"afternoon": match.SessionAfternoon, "chiều": match.SessionAfternoon, "chieu": match.SessionAfternoon,
}

// nameKey is how a class or gate named in the file is matched: NFC, lower
// case, runs of white space as one (diacritics kept).
func nameKey(s string) string {
	return strings.Join(strings.Fields(strings.ToLower(norm.NFC.String(s))), " ")
}

// splitList splits a cell listing sessions or classes ("a|b", "a + b", "a, b").
func splitList(cell string) []string {
	var out []string
	for _, v := range strings.FieldsFunc(cell, func(r rune) bool { return strings.ContainsRune("|+,;", r) }) {
		if v = strings.TrimSpace(v); v != "" {
			out = append(out, v)
		}
	}
	return out
}

// ImportCandidatesCSV sets class sessions or gate classes of school from
// a CSV file (UTF-8, or UTF-16 with a BOM; comma, semicolon or tab
// separated; header required: "class,sessions" or "gate,classes";
// Vietnamese headers lớp, ca, cổng, các lớp are accepted). Classes and gates are named by ID or by name.
// ALL-OR-NOTHING PER FILE: every row is checked first (unknown class or
// gate, unknown session, a class or gate listed twice); any error and
// nothing is written, and the report lists every error with its line and
// column (the returned error is an *api.Error, CodeInvalid, Details =
// report). A clean file is saved by SaveCandidates: one transaction, each
// change audited as the JSON API does, the gallery version bumped.
func (s *Server) ImportCandidatesCSV(ctx context.Context, actor, ip, school string, r io.Reader) (CandidateImport, error) {
	rep := CandidateImport{Errors: []roster.RowError{}}
	var one int
	if err := s.db.R.QueryRowContext(ctx, `SELECT 1 FROM schools WHERE id = ?`, school).Scan(&one); err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			return rep, &api.Error{Code: api.CodeNotFound, Message: "school " + school + " not found"}
		}
		return rep, fmt.Errorf("gallery: import: %w", err)
	}
	data, err := io.ReadAll(io.LimitReader(r, MaxCandidateCSVBytes+1))
	if err != nil {
		return rep, fmt.Errorf("gallery: import: read: %w", err)
	}
	if len(data) > MaxCandidateCSVBytes {
		return rep, api.Errorf(api.CodeTooLarge, "CSV larger than %d bytes", MaxCandidateCSVBytes)
	}
	// UTF-8 (optional BOM) or UTF-16 with a BOM; any other encoding is
	// refused naming the first bad line (the roster importer's decoder).
	if data, err = roster.DecodeText(data); err != nil {
		var ee *roster.EncodingError
		if !errors.As(err, &ee) {
			return rep, err
		}
		rep.addErr(ee.Line, "encoding", ee.Reason)
		return rep, rep.refused()
	}
	cur, err := s.CandidateSettings(ctx, school)
	if err != nil {
		return rep, err
	}
	in, ok := rep.parse(data, cur)
	if !ok {
		return rep, rep.refused()
	}
	if rep.Changed, err = s.SaveCandidates(ctx, actor, ip, school, in); err != nil {
		return rep, err
	}
	rep.Applied = true
	return rep, nil
}

func (rep *CandidateImport) addErr(line int, field, reason string) {
	if len(rep.Errors) < 1000 {
		rep.Errors = append(rep.Errors, roster.RowError{Line: line, Field: field, Reason: reason})
	}
}

func (rep *CandidateImport) refused() error {
	return &api.Error{Code: api.CodeInvalid, Field: "csv",
		Message: fmt.Sprintf("%d error(s); nothing was imported / %d lỗi; chưa nhập gì", len(rep.Errors), len(rep.Errors)), Details: *rep}
}

// sniffComma picks the separator of the header line: ; or tab when they
// outnumber commas (Excel in a Vietnamese locale writes ;).
func sniffComma(data []byte) rune {
	line, _, _ := bytes.Cut(data, []byte("\n"))
	best, n := ',', bytes.Count(line, []byte(","))
	for _, r := range []rune{';', '\t'} {
		if c := bytes.Count(line, []byte(string(r))); c > n {
			best, n = r, c
		}
	}
	return best
}

// parse reads the header and every row into the settings to save; false
// when any row (or the header) is wrong, with the errors in rep.
func (rep *CandidateImport) parse(data []byte, cur *CandidateSettings) (CandidateSettings, bool) {
	var in CandidateSettings
	cr := csv.NewReader(bytes.NewReader(data))
	cr.Comma, cr.FieldsPerRecord = sniffComma(data), -1
	header, err := cr.Read()
	if err != nil {
		rep.addErr(1, "", "cannot read the header row / không đọc được dòng tiêu đề: "+err.Error())
		return in, false
	}
	var cols []string
	for _, h := range header {
		cols = append(cols, candidateHeaders[nameKey(h)])
	}
	switch {
	case len(cols) == 2 && cols[0] == "class" && cols[1] == "list":
		rep.Kind = CandidateCSVSessions
	case len(cols) == 2 && cols[0] == "gate" && cols[1] == "list":
		rep.Kind = CandidateCSVGates
	default:
		rep.addErr(1, "", `the header must be "class,sessions" or "gate,classes" / dòng tiêu đề phải là "class,sessions" hoặc "gate,classes"`)
		return in, false
	}
	classes := newNames()
	for _, c := range cur.Classes {
		classes.add(c.ID, c.Name)
	}
	gates := newNames()
	for _, g := range cur.Gates {
		gates.add(g.ID, g.Name)
	}
	seen := map[string]int{}
	for {
		rec, err := cr.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		line, _ := cr.FieldPos(0)
		var pe *csv.ParseError
		if errors.As(err, &pe) {
			rep.addErr(pe.Line, "", "malformed CSV / CSV sai định dạng: "+pe.Err.Error())
			continue
		}
		if len(rec) == 1 && strings.TrimSpace(rec[0]) == "" {
			continue // blank line
		}
		if rep.Rows++; rep.Rows > maxCandidateRows {
			rep.addErr(line, "", fmt.Sprintf("more than %d rows / quá %d dòng", maxCandidateRows, maxCandidateRows))
			break
		}
		if len(rec) != 2 {
			rep.addErr(line, "", fmt.Sprintf("has %d cells, the header has 2 / dòng có %d ô, tiêu đề có 2", len(rec), len(rec)))
			continue
		}
		if rep.Kind == CandidateCSVSessions {
			rep.sessionRow(&in, line, rec, classes, seen)
		} else {
			rep.gateRow(&in, line, rec, gates, classes, seen)
		}
	}
	if rep.Rows == 0 && len(rep.Errors) == 0 {
		rep.addErr(2, "", "the file has a header but no rows / tệp chỉ có dòng tiêu đề")
	}
	return in, len(rep.Errors) == 0
}

func (rep *CandidateImport) sessionRow(in *CandidateSettings, line int, rec []string, classes *names, seen map[string]int) {
	id, msg := classes.find(rec[0])
	if msg != "" {
		rep.addErr(line, "class", "class "+msg)
		return
	}
	if prev, dup := seen[id]; dup {
		rep.addErr(line, "class", fmt.Sprintf("class %s is already on line %d / lớp đã có ở dòng %d", id, prev, prev))
		return
	}
	seen[id] = line
	var ss []string
	for _, w := range splitList(rec[1]) {
		k := strings.TrimPrefix(nameKey(w), "ca ")
		name, ok := sessionWords[k]
		if !ok {
			rep.addErr(line, "sessions", fmt.Sprintf("unknown session %q (morning, afternoon) / ca học không hợp lệ (sáng, chiều)", w))
			return
		}
		if !slices.Contains(ss, name) {
			ss = append(ss, name)
		}
	}
	in.Classes = append(in.Classes, CandidateClass{ID: id, Sessions: ss})
}

func (rep *CandidateImport) gateRow(in *CandidateSettings, line int, rec []string, gates, classes *names, seen map[string]int) {
	id, msg := gates.find(rec[0])
	if msg != "" {
		rep.addErr(line, "gate", "gate "+msg)
		return
	}
	if prev, dup := seen[id]; dup {
		rep.addErr(line, "gate", fmt.Sprintf("gate %s is already on line %d / cổng đã có ở dòng %d", id, prev, prev))
		return
	}
	seen[id] = line
	g := CandidateGate{ID: id}
	for _, w := range splitList(rec[1]) {
		cid, msg := classes.find(w)
		if msg != "" {
			rep.addErr(line, "classes", "class "+msg)
			return
		}
		g.ClassIDs = append(g.ClassIDs, cid)
	}
	in.Gates = append(in.Gates, g)
}

// names finds a school's class or gate by ID, else by name (nameKey).
type names struct {
	ids    map[string]bool
	byName map[string]string // "" when two share the name
}

func newNames() *names { return &names{ids: map[string]bool{}, byName: map[string]string{}} }

func (n *names) add(id, name string) {
	n.ids[id] = true
	k := nameKey(name)
	if _, dup := n.byName[k]; dup {
		n.byName[k] = ""
		return
	}
	n.byName[k] = id
}

// find returns the ID, or "" and why not (in English / Vietnamese).
func (n *names) find(v string) (string, string) {
	v = strings.TrimSpace(v)
	if n.ids[v] {
		return v, ""
	}
	id, ok := n.byName[nameKey(v)]
	switch {
	case v == "":
		return "", "is missing / thiếu tên"
	case !ok:
		return "", fmt.Sprintf("%q is not in this school / không có trong trường", v)
	case id == "":
		return "", fmt.Sprintf("%q names several: give the ID / trùng tên, hãy ghi mã", v)
	}
	return id, ""
}

// importCSV is POST /schools/{school_id}/candidates/import: the body is
// the CSV file (ImportCandidatesCSV); 200 with the report when applied,
// 400 with it (details) when refused.
func (h *candidateAPI) importCSV(c *gin.Context) {
	school := c.Param("school_id")
	if err := api.Authorize(c, api.Access{Action: api.ActionWrite, Resource: "classes", SchoolID: school}); err != nil {
		api.Fail(c, err)
		return
	}
	body := http.MaxBytesReader(c.Writer, c.Request.Body, MaxCandidateCSVBytes+1)
	rep, err := h.s.ImportCandidatesCSV(c.Request.Context(), api.Actor(c), c.ClientIP(), school, body)
	if err != nil {
		api.Fail(c, err)
		return
	}
	c.JSON(http.StatusOK, rep)
}
