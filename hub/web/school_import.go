package web

import (
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"

	"github.com/gin-gonic/gin"

	"github.com/diemdanh/diemdanh/hub/api"
	"github.com/diemdanh/diemdanh/hub/roster"
)

// ImportResult is one import's report as the page shows it.
type ImportResult struct {
	What             string // pupils, sessions, gate_classes
	File             string
	Rows             int
	Created, Updated int // pupils
	Changed          int // sessions / gate classes
	Applied, DryRun  bool
	Errors           []roster.RowError
}

// ImportData is the CSV import page.
type ImportData struct {
	SchoolNav
	Candidates bool // the gallery server takes class sessions / gate classes
	Result     *ImportResult
	Columns    []string
}

func (s *Server) importData(c *gin.Context) *ImportData {
	_, ok := s.d.Candidates.(CandidateImporter)
	return &ImportData{SchoolNav: SchoolNav{School: schoolOf(c), Tab: "import"}, Candidates: ok,
		Columns: roster.PupilCSVHeader(1)}
}

func (s *Server) importPage(c *gin.Context) {
	s.render(c, http.StatusOK, "school_import", s.newPage(c, "sa.import_title", s.importData(c)))
}

// uploadedCSV opens the form's "file".
func uploadedCSV(c *gin.Context) (io.ReadCloser, string, error) {
	fh, err := c.FormFile("file")
	if err != nil {
		return nil, "", api.Invalid("file", "choose a CSV file")
	}
	f, err := fh.Open()
	if err != nil {
		return nil, "", api.Wrap(api.CodeInvalid, err, "cannot read the upload")
	}
	return f, fh.Filename, nil
}

// renderImport shows the report; a refused file (any bad row: nothing
// imported) answers with the domain's status (400).
func (s *Server) renderImport(c *gin.Context, res *ImportResult, err error) {
	d := s.importData(c)
	d.Result = res
	pg := s.newPage(c, "sa.import_title", d)
	if res != nil {
		for i := range res.Errors {
			res.Errors[i].Reason = reasonIn(pg.Lang, res.Errors[i].Reason)
		}
	}
	status := http.StatusOK
	var ae *api.Error
	switch {
	case err == nil && res.Applied:
		pg.Flash = pg.T("sa.import_applied")
	case err == nil:
		pg.Flash = pg.T("sa.import_checked")
	case errors.As(err, &ae) && ae.Field == "csv":
		pg.Error, status = pg.Tr("sa.import_refused", "n", strconv.Itoa(len(res.Errors))), ae.Code.Status()
	default:
		fe, st, ok := formError(pg, err, "import")
		if !ok {
			s.failErr(c, err)
			return
		}
		pg.Error, status = fe.Msg, st
	}
	s.render(c, status, "school_import", pg)
}

// importPupils runs roster.Store.ImportPupilsCSV on the uploaded file (as
// POST /schools/{id}/pupils/import): all-or-nothing per file, its
// row-level report shown.
func (s *Server) importPupils(c *gin.Context) {
	f, name, err := uploadedCSV(c)
	if err != nil {
		s.renderImport(c, nil, err)
		return
	}
	defer f.Close()
	dry := c.PostForm("dry_run") == "1"
	rep, err := s.d.Roster.ImportPupilsCSV(c.Request.Context(), schoolOf(c).ID, f, dry)
	res := &ImportResult{What: "pupils", File: name, Rows: rep.Rows, Created: rep.Created, Updated: rep.Updated,
		Applied: rep.Applied, DryRun: rep.DryRun, Errors: rep.Errors}
	s.renderImport(c, res, err)
}

// importCandidates runs hub/gallerysrv's ImportCandidatesCSV (as POST
// /schools/{id}/candidates/import): class sessions or gate classes.
func (s *Server) importCandidates(c *gin.Context) {
	imp, ok := s.d.Candidates.(CandidateImporter)
	if !ok {
		s.fail(c, http.StatusServiceUnavailable, "cand.unavailable")
		return
	}
	f, name, err := uploadedCSV(c)
	if err != nil {
		s.renderImport(c, nil, err)
		return
	}
	defer f.Close()
	rep, err := imp.ImportCandidatesCSV(c.Request.Context(), principal(c).ActorID(), c.ClientIP(), schoolOf(c).ID, f)
	res := &ImportResult{What: rep.Kind, File: name, Rows: rep.Rows, Changed: rep.Changed, Applied: rep.Applied, Errors: rep.Errors}
	s.renderImport(c, res, err)
}

// reasonIn shows a reason written "English / Tiếng Việt" (hub/gallerysrv)
// in the page's language.
func reasonIn(lang, r string) string {
	en, vi, ok := strings.Cut(r, " / ")
	switch {
	case !ok:
		return r
	case lang == "vi":
		return vi
	}
	return en
}
