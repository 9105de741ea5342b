package web

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/gin-gonic/gin"

	"github.com/diemdanh/diemdanh/hub/api"
	"github.com/diemdanh/diemdanh/hub/gallerysrv"
	"github.com/diemdanh/diemdanh/models/match"
)

// Candidates reads and saves a school's candidate restriction — class
// sessions and gate→class assignment (hub/gallerysrv.Server implements
// it with the writes, audit entries and version bump of its JSON API).
// Nil: /admin/candidates says the gallery server is not available.
type Candidates interface {
	CandidateSettings(ctx context.Context, school string) (*gallerysrv.CandidateSettings, error)
	SaveCandidates(ctx context.Context, actor, ip, school string, in gallerysrv.CandidateSettings) (int, error)
}

// CandClass is one class row of /admin/candidates.
type CandClass struct {
	ID, Name string
	Sessions map[string]bool // checked boxes; none = every session
	All      bool            // attends every session
}

// CandGate is one gate row with a checkbox per class.
type CandGate struct {
	ID, Name string
	Assigned map[string]bool
}

// CandSchool is one school's form.
type CandSchool struct {
	ID, Name string
	Classes  []CandClass
	Gates    []CandGate
}

// CandData is the candidate restriction page.
type CandData struct {
	Enabled  bool
	Sessions []string // match.Sessions, in order
	Schools  []CandSchool
}

func (s *Server) candidatesData(ctx context.Context, school string) (*CandData, error) {
	d := &CandData{Enabled: s.d.Candidates != nil, Sessions: match.Sessions}
	if !d.Enabled {
		return d, nil
	}
	rows, err := s.d.DB.R.QueryContext(ctx, `SELECT id, name FROM schools WHERE (? = '' OR id = ?) ORDER BY name, id`, school, school)
	if err != nil {
		return nil, fmt.Errorf("web: schools: %w", err)
	}
	for rows.Next() {
		var sc CandSchool
		if err := rows.Scan(&sc.ID, &sc.Name); err != nil {
			rows.Close()
			return nil, fmt.Errorf("web: schools: %w", err)
		}
		d.Schools = append(d.Schools, sc)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("web: schools: %w", err)
	}
	for i := range d.Schools {
		cs, err := s.d.Candidates.CandidateSettings(ctx, d.Schools[i].ID)
		if err != nil {
			return nil, err
		}
		for _, c := range cs.Classes {
			v := CandClass{ID: c.ID, Name: c.Name, Sessions: map[string]bool{}, All: len(c.Sessions) == len(match.Sessions)}
			if !v.All {
				for _, ss := range c.Sessions {
					v.Sessions[ss] = true
				}
			}
			d.Schools[i].Classes = append(d.Schools[i].Classes, v)
		}
		for _, g := range cs.Gates {
			v := CandGate{ID: g.ID, Name: g.Name, Assigned: map[string]bool{}}
			for _, id := range g.ClassIDs {
				v.Assigned[id] = true
			}
			d.Schools[i].Gates = append(d.Schools[i].Gates, v)
		}
	}
	return d, nil
}

// candidatesPage shows the admin's school (every school for a hub-wide
// admin): which sessions each class attends and which classes each gate
// recognises.
func (s *Server) candidatesPage(c *gin.Context) {
	d, err := s.candidatesData(c.Request.Context(), principal(c).SchoolID)
	if err != nil {
		s.failErr(c, err)
		return
	}
	pg := s.newPage(c, "cand.title", d)
	if c.Query("saved") != "" {
		pg.Flash = pg.Tr("cand.saved", "count", c.Query("saved"))
	}
	s.render(c, http.StatusOK, "candidates", pg)
}

// candidatesSave takes one school's form: "class" lists the class rows
// and "sess.<class>" their checked sessions; "gate" lists the gate rows
// and "gate.<gate>" their checked classes. All or nothing.
func (s *Server) candidatesSave(c *gin.Context) {
	if s.d.Candidates == nil {
		s.fail(c, http.StatusServiceUnavailable, "cand.unavailable")
		return
	}
	c.Request.Body = http.MaxBytesReader(c.Writer, c.Request.Body, 256<<10)
	if err := c.Request.ParseForm(); err != nil {
		s.failErr(c, api.Wrap(api.CodeInvalid, err, "form too large or malformed"))
		return
	}
	p := principal(c)
	school := c.PostForm("school_id")
	if p.SchoolID != "" && school != p.SchoolID {
		s.fail(c, http.StatusForbidden, "error.forbidden")
		return
	}
	var in gallerysrv.CandidateSettings
	for _, id := range c.PostFormArray("class") {
		in.Classes = append(in.Classes, gallerysrv.CandidateClass{ID: id, Sessions: c.PostFormArray("sess." + id)})
	}
	for _, id := range c.PostFormArray("gate") {
		in.Gates = append(in.Gates, gallerysrv.CandidateGate{ID: id, ClassIDs: c.PostFormArray("gate." + id)})
	}
	n, err := s.d.Candidates.SaveCandidates(c.Request.Context(), p.ActorID(), c.ClientIP(), school, in)
	var ae *api.Error
	if errors.As(err, &ae) && ae.Code == api.CodeInvalid {
		// Show the page again, unchanged, with what was refused.
		d, derr := s.candidatesData(c.Request.Context(), p.SchoolID)
		if derr != nil {
			s.failErr(c, derr)
			return
		}
		pg := s.newPage(c, "cand.title", d)
		kind, id, _ := strings.Cut(ae.Field, ":")
		if !slices.Contains([]string{"class", "gate", "session"}, kind) {
			kind = "other"
		}
		pg.Error = pg.Tr("cand.err."+kind, "id", id)
		s.render(c, http.StatusBadRequest, "candidates", pg)
		return
	}
	if err != nil {
		s.failErr(c, err)
		return
	}
	c.Redirect(http.StatusSeeOther, fmt.Sprintf("/admin/candidates?saved=%d", n))
}
