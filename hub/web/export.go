package web

import (
	"encoding/csv"
	"fmt"
	"net/http"
	"strconv"
	"strings"

	"github.com/gin-gonic/gin"

	"github.com/diemdanh/diemdanh/hub/audit"
)

// csvCell neutralises spreadsheet formulas (CSV injection).
func csvCell(s string) string {
	if s != "" && strings.ContainsRune("=+-@\t\r", rune(s[0])) {
		return "'" + s
	}
	return s
}

func (s *Server) csvWriter(c *gin.Context, filename string) *csv.Writer {
	c.Header("Content-Type", "text/csv; charset=utf-8")
	c.Header("Content-Disposition", `attachment; filename="`+filename+`"`)
	c.Header("Cache-Control", "no-store")
	c.Status(http.StatusOK)
	_, _ = c.Writer.Write([]byte("\xEF\xBB\xBF")) // BOM: spreadsheet apps then read UTF-8
	return csv.NewWriter(c.Writer)
}

func (s *Server) auditExport(c *gin.Context, what string, detail map[string]any) {
	detail["what"] = what
	if err := s.d.Audit.RecordC(c, audit.ActionExport, "class:"+classOf(c).ID, detail); err != nil {
		s.log.Warn("audit export", "err", err)
	}
}

func (s *Server) exportDayCSV(c *gin.Context) {
	cls := classOf(c)
	day, ok := s.dayParam(c, cls)
	if !ok {
		return
	}
	rows, err := s.dayRows(c.Request.Context(), cls, day, "")
	if err != nil {
		s.failErr(c, err)
		return
	}
	s.auditExport(c, "day_csv", map[string]any{"day": day})
	p := s.newPage(c, "board.title", nil)
	w := s.csvWriter(c, fmt.Sprintf("diemdanh-%s-%s.csv", cls.ID, day))
	_ = w.Write([]string{"pupil_id", p.T("board.pupil"), p.T("board.status"), "status_code", p.T("board.arrival"),
		p.T("board.departure"), p.T("board.gate"), p.T("board.reason")})
	for _, r := range rows {
		_ = w.Write([]string{r.PupilID, csvCell(r.Name), p.Status(r.Status), r.Status, r.Arrived, r.Departed,
			csvCell(r.Gate), csvCell(r.Reason)})
	}
	w.Flush()
}

func (s *Server) printDay(c *gin.Context) {
	cls := classOf(c)
	day, ok := s.dayParam(c, cls)
	if !ok {
		return
	}
	rows, err := s.dayRows(c.Request.Context(), cls, day, "")
	if err != nil {
		s.failErr(c, err)
		return
	}
	s.auditExport(c, "day_print", map[string]any{"day": day})
	b := &Board{Class: cls, Day: day, Rows: rows, Counts: countRows(rows)}
	p := s.newPage(c, "board.title", b)
	p.Title = p.Tr("board.title", "class", cls.Name) + " — " + FormatDate(p.Lang, day)
	s.render(c, http.StatusOK, "print_day", p)
}

func (s *Server) exportTermCSV(c *gin.Context) {
	d, ok := s.termData(c)
	if !ok {
		return
	}
	s.auditExport(c, "term_csv", map[string]any{"from": d.From, "to": d.To})
	p := s.newPage(c, "term.title", nil)
	w := s.csvWriter(c, fmt.Sprintf("diemdanh-%s-%s-%s.csv", d.Class.ID, d.From, d.To))
	head := []string{"pupil_id", p.T("board.pupil")}
	for _, st := range Statuses {
		head = append(head, p.Status(st))
	}
	_ = w.Write(append(head, p.T("term.days")))
	for _, r := range d.Rows {
		rec := []string{r.PupilID, csvCell(r.Name)}
		for _, st := range Statuses {
			rec = append(rec, strconv.Itoa(r.Counts[st]))
		}
		_ = w.Write(append(rec, strconv.Itoa(d.Days)))
	}
	w.Flush()
}

func (s *Server) printTerm(c *gin.Context) {
	d, ok := s.termData(c)
	if !ok {
		return
	}
	s.auditExport(c, "term_print", map[string]any{"from": d.From, "to": d.To})
	p := s.newPage(c, "term.title", d)
	p.Title = p.Tr("term.title", "class", d.Class.Name) + " (" + FormatDate(p.Lang, d.From) + " – " + FormatDate(p.Lang, d.To) + ")"
	s.render(c, http.StatusOK, "print_term", p)
}
