package gallerysrv

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"strings"

	"github.com/diemdanh/diemdanh/hub/api"
	"github.com/diemdanh/diemdanh/hub/audit"
	"github.com/diemdanh/diemdanh/hub/store"
	"github.com/diemdanh/diemdanh/models/match"
	"github.com/diemdanh/diemdanh/models/wire"
	"github.com/gin-gonic/gin"
)

// Candidate restriction (issue #8): a gate is served only the pupils it
// can expect — those of the classes assigned to it (gate_classes; a gate
// with no assignment serves every class of its school) — each with the
// sessions (ca sáng / ca chiều) of their class, so the gate can narrow a
// search further to the current session. The assignment and the sessions
// are part of the school's gallery digest: changing them bumps the
// version, which is announced, so gates fetch their new gallery at once.

// candidates is a school's restriction data as of one Refresh.
type candidates struct {
	classOf  map[string]string          // pupil → class ("" none); only when restricted
	sessions map[string][]string        // class → sessions, only classes not attending all
	gates    map[string]map[string]bool // gate → assigned classes, only gates with an assignment
	digest   string                     // "" when nothing restricts anybody
}

// loadCandidates reads school's class sessions and gate assignments.
func (s *Server) loadCandidates(ctx context.Context, school string, byPupil map[string][]match.Descriptor) (*candidates, error) {
	c := &candidates{sessions: map[string][]string{}, gates: map[string]map[string]bool{}}
	rows, err := s.db.R.QueryContext(ctx, `SELECT id, sessions FROM classes WHERE school_id = ? AND sessions != ''`, school)
	if err != nil {
		return nil, fmt.Errorf("gallery %s: class sessions: %w", school, err)
	}
	for rows.Next() {
		var id, ss string
		if err := rows.Scan(&id, &ss); err != nil {
			rows.Close()
			return nil, fmt.Errorf("gallery %s: class sessions: %w", school, err)
		}
		c.sessions[id] = splitSessions(ss)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("gallery %s: class sessions: %w", school, err)
	}
	rows, err = s.db.R.QueryContext(ctx, `SELECT gc.gate_id, gc.class_id FROM gate_classes gc JOIN gates g ON g.id = gc.gate_id
		WHERE g.school_id = ?`, school)
	if err != nil {
		return nil, fmt.Errorf("gallery %s: gate classes: %w", school, err)
	}
	for rows.Next() {
		var gate, class string
		if err := rows.Scan(&gate, &class); err != nil {
			rows.Close()
			return nil, fmt.Errorf("gallery %s: gate classes: %w", school, err)
		}
		if c.gates[gate] == nil {
			c.gates[gate] = map[string]bool{}
		}
		c.gates[gate][class] = true
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("gallery %s: gate classes: %w", school, err)
	}
	if len(c.sessions) == 0 && len(c.gates) == 0 {
		return c, nil // nothing restricts: every gate gets the school document
	}
	c.classOf = map[string]string{}
	rows, err = s.db.R.QueryContext(ctx, `SELECT id, COALESCE(class_id, '') FROM pupils WHERE school_id = ?`, school)
	if err != nil {
		return nil, fmt.Errorf("gallery %s: pupil classes: %w", school, err)
	}
	for rows.Next() {
		var id, class string
		if err := rows.Scan(&id, &class); err != nil {
			rows.Close()
			return nil, fmt.Errorf("gallery %s: pupil classes: %w", school, err)
		}
		if len(byPupil[id]) > 0 {
			c.classOf[id] = class
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("gallery %s: pupil classes: %w", school, err)
	}
	var lines []string
	for id, ss := range c.sessions {
		lines = append(lines, "s:"+id+":"+strings.Join(ss, ","))
	}
	for gate, cls := range c.gates {
		for class := range cls {
			lines = append(lines, "g:"+gate+":"+class)
		}
	}
	for id, class := range c.classOf {
		lines = append(lines, "p:"+id+":"+class)
	}
	sort.Strings(lines)
	h := sha256.Sum256([]byte(strings.Join(lines, "\n")))
	c.digest = hex.EncodeToString(h[:])
	return c, nil
}

// mix folds the restriction into the descriptor digest (unchanged when
// nothing restricts, so such schools keep their digest).
func (c *candidates) mix(digest string) string {
	if c == nil || c.digest == "" {
		return digest
	}
	h := sha256.Sum256([]byte(digest + "\ncandidates:" + c.digest))
	return hex.EncodeToString(h[:])
}

func splitSessions(s string) []string {
	if s == "" {
		return nil
	}
	return strings.Split(s, ",")
}

// gateBody derives gate's document from the school's: only the pupils of
// its assigned classes, each with their class's sessions. Cached per entry
// (an entry is one version).
func (s *Server) gateBody(e *entry, gate string) ([]byte, error) {
	c := e.cand
	if c == nil || c.digest == "" {
		return e.body, nil
	}
	s.mu.Lock()
	b, ok := e.perGate[gate]
	s.mu.Unlock()
	if ok {
		return b, nil
	}
	var doc wire.GalleryDoc
	if err := json.Unmarshal(e.body, &doc); err != nil {
		return nil, fmt.Errorf("gallery: gate %s: %w", gate, err)
	}
	assigned := c.gates[gate]
	people := []wire.GalleryPerson{}
	for _, p := range doc.People {
		class := c.classOf[p.StudentID]
		if assigned != nil && !assigned[class] {
			continue
		}
		p.Sessions = c.sessions[class]
		people = append(people, p)
	}
	doc.People = people
	if err := s.gatePoint(&doc, gate, e.provisional); err != nil { // calibrate.go: the gate's own operating point
		return nil, err
	}
	b, err := doc.Encode()
	if err != nil {
		return nil, err
	}
	if _, _, err := wire.DecodeGallery(b); err != nil {
		return nil, fmt.Errorf("gallery: gate %s: built an invalid document: %w", gate, err)
	}
	s.mu.Lock()
	if e.perGate == nil {
		e.perGate = map[string][]byte{}
	}
	e.perGate[gate] = b
	s.mu.Unlock()
	return b, nil
}

// CurrentForGate is Current for one gate of school: the same version and
// ETag, with the body restricted to the gate's candidates.
func (s *Server) CurrentForGate(ctx context.Context, school, gate string) (version int64, etag string, body []byte, err error) {
	if _, _, _, err := s.Current(ctx, school); err != nil {
		return 0, "", nil, err
	}
	s.mu.Lock()
	e := s.cache[school]
	s.mu.Unlock()
	if body, err = s.gateBody(e, gate); err != nil {
		return 0, "", nil, err
	}
	return e.version, ETag(e.version), body, nil
}

// ---- admin API: class sessions and gate classes ----

// Audit actions of the candidate API.
const (
	ActionClassSessions = "class_sessions"
	ActionGateClasses   = "gate_classes"
)

// ClassSessions is the body of GET/PUT /classes/{class_id}/sessions.
type ClassSessions struct {
	ClassID  string   `json:"class_id"`
	Sessions []string `json:"sessions"`
}

// GateClasses is the body of GET/PUT /gates/{gate_id}/classes; an empty
// ClassIDs means every class of the gate's school.
type GateClasses struct {
	GateID     string   `json:"gate_id"`
	ClassIDs   []string `json:"class_ids"`
	AllClasses bool     `json:"all_classes"`
}

// candidateRoutes registers the admin API (admins only: hub/auth's policy
// table; paths in openapi.json) under r (/api/v1); every change is
// written to the audit log in the same transaction.
func (s *Server) candidateRoutes(r gin.IRouter) {
	h := &candidateAPI{s: s, aud: audit.New(s.db, s.log, s.now)}
	r.GET("/classes/:class_id/sessions", h.getSessions)
	r.PUT("/classes/:class_id/sessions", h.putSessions)
	r.GET("/gates/:gate_id/classes", h.getGateClasses)
	r.PUT("/gates/:gate_id/classes", h.putGateClasses)
	r.POST("/schools/:school_id/candidates/import", h.importCSV) // candidates_csv.go
}

type candidateAPI struct {
	s   *Server
	aud *audit.Log
}

func (h *candidateAPI) class(c *gin.Context) (school, sessions string, err error) {
	err = h.s.db.R.QueryRowContext(c.Request.Context(), `SELECT school_id, sessions FROM classes WHERE id = ?`, c.Param("class_id")).Scan(&school, &sessions)
	if errors.Is(err, sql.ErrNoRows) {
		return "", "", &api.Error{Code: api.CodeNotFound, Message: "class not found"}
	}
	return school, sessions, err
}

func (h *candidateAPI) gate(c *gin.Context) (school string, err error) {
	err = h.s.db.R.QueryRowContext(c.Request.Context(), `SELECT school_id FROM gates WHERE id = ?`, c.Param("gate_id")).Scan(&school)
	if errors.Is(err, sql.ErrNoRows) {
		return "", &api.Error{Code: api.CodeNotFound, Message: "gate not found"}
	}
	return school, err
}

func (h *candidateAPI) getSessions(c *gin.Context) {
	school, ss, err := h.class(c)
	if err == nil {
		err = api.Authorize(c, api.Access{Action: api.ActionRead, Resource: "classes", SchoolID: school, ClassID: c.Param("class_id")})
	}
	if err != nil {
		api.Fail(c, err)
		return
	}
	out := ClassSessions{ClassID: c.Param("class_id"), Sessions: splitSessions(ss)}
	if out.Sessions == nil {
		out.Sessions = append([]string(nil), match.Sessions...)
	}
	c.JSON(http.StatusOK, out)
}

func (h *candidateAPI) putSessions(c *gin.Context) {
	school, old, err := h.class(c)
	if err == nil {
		err = api.Authorize(c, api.Access{Action: api.ActionWrite, Resource: "classes", SchoolID: school, ClassID: c.Param("class_id")})
	}
	if err != nil {
		api.Fail(c, err)
		return
	}
	var in ClassSessions
	if err := api.BindJSON(c, &in, 4<<10); err != nil {
		api.Fail(c, err)
		return
	}
	if len(in.Sessions) == 0 {
		api.Fail(c, api.Invalid("sessions", "list at least one of %v / cần ít nhất một ca học", match.Sessions))
		return
	}
	if err := match.ValidSessions(in.Sessions); err != nil {
		api.Fail(c, api.Invalid("sessions", "%v", err))
		return
	}
	// Store in canonical order; every session is stored as '' (the default).
	keep, stored, err := canonicalSessions(in.Sessions)
	if err != nil {
		api.Fail(c, api.Invalid("sessions", "%v", err))
		return
	}
	id := c.Param("class_id")
	err = h.s.db.Tx(c.Request.Context(), func(tx *sql.Tx) error {
		return h.s.writeClassSessions(c.Request.Context(), tx, api.Actor(c), c.ClientIP(), id, old, keep, stored)
	})
	if err != nil {
		api.Fail(c, err)
		return
	}
	h.s.Changed(c.Request.Context(), school)
	c.JSON(http.StatusOK, ClassSessions{ClassID: id, Sessions: keep})
}

func (h *candidateAPI) gateClasses(c *gin.Context, gate string) (GateClasses, error) {
	out := GateClasses{GateID: gate, ClassIDs: []string{}}
	ids, err := store.Strings(c.Request.Context(), h.s.db.R, `SELECT class_id FROM gate_classes WHERE gate_id = ? ORDER BY class_id`, gate)
	if err != nil {
		return out, fmt.Errorf("gallery: gate classes: %w", err)
	}
	out.ClassIDs = append(out.ClassIDs, ids...)
	out.AllClasses = len(out.ClassIDs) == 0
	return out, nil
}

func (h *candidateAPI) getGateClasses(c *gin.Context) {
	school, err := h.gate(c)
	if err == nil {
		err = api.Authorize(c, api.Access{Action: api.ActionRead, Resource: "gates", SchoolID: school, GateID: c.Param("gate_id")})
	}
	if err != nil {
		api.Fail(c, err)
		return
	}
	out, err := h.gateClasses(c, c.Param("gate_id"))
	if err != nil {
		api.Fail(c, err)
		return
	}
	c.JSON(http.StatusOK, out)
}

func (h *candidateAPI) putGateClasses(c *gin.Context) {
	school, err := h.gate(c)
	if err == nil {
		err = api.Authorize(c, api.Access{Action: api.ActionWrite, Resource: "gates", SchoolID: school, GateID: c.Param("gate_id")})
	}
	if err != nil {
		api.Fail(c, err)
		return
	}
	var in GateClasses
	if err := api.BindJSON(c, &in, 64<<10); err != nil {
		api.Fail(c, err)
		return
	}
	gate := c.Param("gate_id")
	before, err := h.gateClasses(c, gate)
	if err != nil {
		api.Fail(c, err)
		return
	}
	seen := map[string]bool{}
	for i, id := range in.ClassIDs {
		field := fmt.Sprintf("class_ids[%d]", i)
		if seen[id] {
			api.Fail(c, api.Invalid(field, "duplicate class %q", id))
			return
		}
		seen[id] = true
		var cs string
		err := h.s.db.R.QueryRowContext(c.Request.Context(), `SELECT school_id FROM classes WHERE id = ?`, id).Scan(&cs)
		if errors.Is(err, sql.ErrNoRows) || (err == nil && cs != school) {
			api.Fail(c, api.Invalid(field, "no class %q in the gate's school / không có lớp này trong trường", id))
			return
		}
		if err != nil {
			api.Fail(c, err)
			return
		}
	}
	ids := append([]string{}, in.ClassIDs...)
	sort.Strings(ids)
	err = h.s.db.Tx(c.Request.Context(), func(tx *sql.Tx) error {
		return h.s.writeGateClasses(c.Request.Context(), tx, h.aud, api.Actor(c), c.ClientIP(), gate, before.ClassIDs, ids)
	})
	if err != nil {
		api.Fail(c, err)
		return
	}
	h.s.Changed(c.Request.Context(), school)
	c.JSON(http.StatusOK, GateClasses{GateID: gate, ClassIDs: ids, AllClasses: len(ids) == 0})
}
