package web

// The faces the gates did not decide, on the class board: each with its
// crop, its nearest pupils and the buttons "Đây là <tên>" (this is
// <pupil>: hub/learn, through FaceLearner, marks the pupil present and,
// where the consent allows it, teaches the gate) and "Không phải học sinh
// lớp tôi" (not my pupil: hidden from this class).
//
// Least privilege: a teacher sees the faces of the gates that serve the
// class (gate_classes; a gate without assignments serves every class of
// its school) and may name only pupils of the class; an admin of the
// school sees every gate of it and may name any pupil of it. A face
// "not my pupil" for the class, or named as a pupil the viewer may not
// see, is not shown, nor is its crop served. Every crop served is
// audited (photo_view).

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/gin-gonic/gin"

	"github.com/diemdanh/diemdanh/hub/audit"
	"github.com/diemdanh/diemdanh/hub/auth"
	"github.com/diemdanh/diemdanh/hub/facereview"
)

// FaceReview reads the faces the gates did not decide (hub/facereview's
// Store implements it).
type FaceReview interface {
	List(ctx context.Context, school string, gateIDs []string, day string) ([]facereview.Face, error)
	Get(ctx context.Context, id int64) (facereview.Face, error)
	Crop(ctx context.Context, id int64) ([]byte, error)
}

// FaceLearner decides about them: hub/learn's Confirmer, which hub/app
// adapts to it, so that this package does not depend on hub/learn. Confirm is "this is <pupil>" (the
// attendance mark and, where the consent allows it, a gate template);
// NotMine hides a face from a class. Their errors wrap facereview's
// ErrNotFound, ErrInvalid and ErrAssigned.
type FaceLearner interface {
	Confirm(ctx context.Context, faceID int64, pupilID, actor, ip string) (FaceConfirmation, error)
	NotMine(ctx context.Context, faceID int64, classID, actor string) (bool, error)
}

// FaceConfirmation is what a confirmation did, as the board reports it
// (hub/learn's Confirmation).
type FaceConfirmation struct {
	Day     string `json:"day"`     // the capture's school day, YYYY-MM-DD
	Present string `json:"present"` // FacePresentMarked or FacePresentAlready
	Status  string `json:"status"`  // the pupil's day status after it
	// TemplateID is the gate template kept from the capture (0: none);
	// NoTemplate says why there is none (one of FaceNoTemplateReasons).
	TemplateID int64  `json:"template_id,omitempty"`
	NoTemplate string `json:"no_template,omitempty"`
}

// What a confirmation did about attendance (hub/learn's PresentMarked and
// PresentAlready).
const (
	FacePresentMarked  = "marked"
	FacePresentAlready = "already"
)

// FaceNoTemplateReasons are the reasons the board explains when a
// confirmation kept no template (hub/learn's NoTemplate constants); the
// message of each is faces.template_<reason>.
var FaceNoTemplateReasons = []string{"no_descriptor", "other_model", "no_consent", "own_consent", "unlike_pupil", "near_other"}

// FaceCard is one face on a class board.
type FaceCard struct {
	ID       int64
	Time     string // HH:MM local, the gate's clock
	Gate     string // the gate's name
	NearMiss bool
	// Assigned is the name of the pupil the face was confirmed as ("":
	// open).
	Assigned string
	// Candidates are the nearest pupils the viewer may name: the class's
	// first, then (admins only) other classes' of the school.
	Candidates []FaceCandidate
	// NoDescriptor: the gate sent no descriptor, so confirming it marks
	// attendance but cannot teach the gate.
	NoDescriptor bool
}

// FaceCandidate is a pupil a face may be.
type FaceCandidate struct {
	PupilID, Name string
	Class         string // the class's name, for a pupil of another class
	InClass       bool
}

// facesOn reports whether the board has the faces section.
func (s *Server) facesOn() bool { return s.d.Faces != nil && s.d.Learn != nil }

// servingGates returns the gates of cls's school that serve cls.
func (s *Server) servingGates(ctx context.Context, cls ClassInfo) ([]string, error) {
	rows, err := s.d.DB.R.QueryContext(ctx, `SELECT g.id FROM gates g WHERE g.school_id = ?
		AND (NOT EXISTS (SELECT 1 FROM gate_classes gc WHERE gc.gate_id = g.id)
			OR EXISTS (SELECT 1 FROM gate_classes gc WHERE gc.gate_id = g.id AND gc.class_id = ?)) ORDER BY g.id`, cls.SchoolID, cls.ID)
	if err != nil {
		return nil, fmt.Errorf("web: gates of class: %w", err)
	}
	defer rows.Close()
	out := []string{}
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, fmt.Errorf("web: gates of class: %w", err)
		}
		out = append(out, id)
	}
	return out, rows.Err()
}

// facePupil is a pupil of the school as the faces section names them.
type facePupil struct{ name, class, className string }

// facePupils returns the active pupils of school among ids.
func (s *Server) facePupils(ctx context.Context, school string, ids []string) (map[string]facePupil, error) {
	out := map[string]facePupil{}
	if len(ids) == 0 {
		return out, nil
	}
	args := []any{school}
	for _, id := range ids {
		args = append(args, id)
	}
	rows, err := s.d.DB.R.QueryContext(ctx, `SELECT p.id, p.full_name, COALESCE(p.class_id, ''), COALESCE(c.name, '')
		FROM pupils p LEFT JOIN classes c ON c.id = p.class_id WHERE p.school_id = ? AND p.active = 1
		AND p.id IN (?`+strings.Repeat(",?", len(ids)-1)+`)`, args...)
	if err != nil {
		return nil, fmt.Errorf("web: pupils of faces: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var id string
		var p facePupil
		if err := rows.Scan(&id, &p.name, &p.class, &p.className); err != nil {
			return nil, fmt.Errorf("web: pupils of faces: %w", err)
		}
		out[id] = p
	}
	return out, rows.Err()
}

// faceVisible reports whether p may see face f on cls's board: a face of
// the class's school, from a gate serving the class (any gate of the
// school for an admin), not "not my pupil" for the class, and, once
// named, named as a pupil of the class (any pupil for an admin).
func faceVisible(p *auth.Principal, cls ClassInfo, f facereview.Face, serving []string, pupils map[string]facePupil) bool {
	admin := p.Role == auth.RoleAdmin
	switch {
	case f.SchoolID != cls.SchoolID:
		return false
	case !admin && !contains(serving, f.GateID):
		return false
	}
	switch f.StatusFor(cls.ID) {
	case facereview.StatusOpen:
		return true
	case facereview.StatusAssigned:
		return admin || pupils[f.PupilID].class == cls.ID
	}
	return false
}

func contains(xs []string, x string) bool {
	for _, y := range xs {
		if y == x {
			return true
		}
	}
	return false
}

// classFaces returns the cards of cls's board on day for p.
func (s *Server) classFaces(ctx context.Context, p *auth.Principal, cls ClassInfo, day string) ([]FaceCard, error) {
	serving, err := s.servingGates(ctx, cls)
	if err != nil {
		return nil, err
	}
	var gates []string // nil: every gate of the school (admins)
	if p.Role != auth.RoleAdmin {
		if len(serving) == 0 {
			return nil, nil
		}
		gates = serving
	}
	faces, err := s.d.Faces.List(ctx, cls.SchoolID, gates, day)
	if err != nil {
		return nil, fmt.Errorf("web: faces: %w", err)
	}
	var ids []string
	for _, f := range faces {
		ids = append(ids, f.PupilID)
		for _, c := range f.Candidates {
			ids = append(ids, c.StudentID)
		}
	}
	pupils, err := s.facePupils(ctx, cls.SchoolID, ids)
	if err != nil {
		return nil, err
	}
	names := s.gateNames(ctx, cls.SchoolID)
	cards := []FaceCard{}
	for _, f := range faces {
		if faceVisible(p, cls, f, serving, pupils) {
			cards = append(cards, faceCard(p, cls, f, pupils, names))
		}
	}
	return cards, nil
}

// faceCard is what the board shows of f.
func faceCard(p *auth.Principal, cls ClassInfo, f facereview.Face, pupils map[string]facePupil, gates map[string]string) FaceCard {
	card := FaceCard{ID: f.ID, Time: hhmm(f.CapturedAt, cls.Loc), Gate: gates[f.GateID], NearMiss: f.Kind == "near_miss",
		NoDescriptor: !f.HasDescriptor}
	if card.Gate == "" {
		card.Gate = f.GateID
	}
	if f.Status == facereview.StatusAssigned {
		card.Assigned = pupils[f.PupilID].name
		return card
	}
	var others []FaceCandidate
	for _, c := range f.Candidates {
		pp, ok := pupils[c.StudentID]
		switch {
		case !ok:
		case pp.class == cls.ID:
			card.Candidates = append(card.Candidates, FaceCandidate{PupilID: c.StudentID, Name: pp.name, InClass: true})
		case p.Role == auth.RoleAdmin:
			others = append(others, FaceCandidate{PupilID: c.StudentID, Name: pp.name, Class: pp.className})
		}
	}
	card.Candidates = append(card.Candidates, others...)
	return card
}

// gateNames maps the school's gate IDs to their names.
func (s *Server) gateNames(ctx context.Context, school string) map[string]string {
	out := map[string]string{}
	rows, err := s.d.DB.R.QueryContext(ctx, `SELECT id, name FROM gates WHERE school_id = ?`, school)
	if err != nil {
		s.log.Warn("gate names", "err", err)
		return out
	}
	defer rows.Close()
	for rows.Next() {
		var id, name string
		if rows.Scan(&id, &name) == nil {
			out[id] = name
		}
	}
	return out
}

// faceScope loads :face for the class of the request and refuses one the
// caller may not see on that board (404: whether it exists is not said).
func (s *Server) faceScope(c *gin.Context) (facereview.Face, bool) {
	if !s.facesOn() {
		s.fail(c, http.StatusNotFound, "error.not_found")
		return facereview.Face{}, false
	}
	ctx, cls, p := c.Request.Context(), classOf(c), principal(c)
	id, err := strconv.ParseInt(c.Param("face"), 10, 64)
	if err != nil || id <= 0 {
		s.fail(c, http.StatusNotFound, "error.not_found")
		return facereview.Face{}, false
	}
	f, err := s.d.Faces.Get(ctx, id)
	if errors.Is(err, facereview.ErrNotFound) {
		s.fail(c, http.StatusNotFound, "error.not_found")
		return f, false
	}
	if err != nil {
		s.failErr(c, err)
		return f, false
	}
	serving, err := s.servingGates(ctx, cls)
	if err != nil {
		s.failErr(c, err)
		return f, false
	}
	pupils, err := s.facePupils(ctx, cls.SchoolID, []string{f.PupilID})
	if err != nil {
		s.failErr(c, err)
		return f, false
	}
	if !faceVisible(p, cls, f, serving, pupils) {
		s.fail(c, http.StatusNotFound, "error.not_found")
		return f, false
	}
	return f, true
}

// faceCrop serves a face's crop to those who may see the face on the
// class's board, audited as a photo view; browsers must not keep it.
func (s *Server) faceCrop(c *gin.Context) {
	f, ok := s.faceScope(c)
	if !ok {
		return
	}
	if err := s.d.Audit.RecordC(c, audit.ActionPhotoView, "gate:"+f.GateID, map[string]any{
		"face_id": f.ID, "capture_id": f.CaptureID, "class_id": classOf(c).ID, "what": "unrecognised_face"}); err != nil {
		s.failErr(c, err) // no audit entry, no photo
		return
	}
	b, err := s.d.Faces.Crop(c.Request.Context(), f.ID)
	if err != nil {
		s.failErr(c, err)
		return
	}
	c.Header("Cache-Control", "private, no-store")
	c.Data(http.StatusOK, "image/jpeg", b)
}

// mayName reports whether p may name pupil from cls's board: an active
// pupil of the class, or for an admin of the class's school.
func (s *Server) mayName(ctx context.Context, p *auth.Principal, cls ClassInfo, pupil string) bool {
	var class string
	err := s.d.DB.R.QueryRowContext(ctx, `SELECT COALESCE(class_id, '') FROM pupils WHERE id = ? AND school_id = ? AND active = 1`,
		pupil, cls.SchoolID).Scan(&class)
	return err == nil && (class == cls.ID || p.Role == auth.RoleAdmin)
}

// faceConfirm is "Đây là <tên>" (this is <pupil>) through the FaceLearner.
func (s *Server) faceConfirm(c *gin.Context) {
	f, ok := s.faceScope(c)
	if !ok {
		return
	}
	cls, p, pupil := classOf(c), principal(c), c.PostForm("pupil_id")
	if !s.mayName(c.Request.Context(), p, cls, pupil) {
		s.fail(c, http.StatusForbidden, "error.forbidden")
		return
	}
	res, err := s.d.Learn.Confirm(c.Request.Context(), f.ID, pupil, p.ActorID(), c.ClientIP())
	if err != nil {
		s.failFace(c, err)
		return
	}
	if res.Present == FacePresentMarked {
		s.PupilChanged(c.Request.Context(), pupil)
	}
	if wantsJSON(c) {
		c.JSON(http.StatusOK, res)
		return
	}
	q := url.Values{"day": {boardDay(c, res.Day)}, "face": {strconv.FormatInt(f.ID, 10)}, "pupil": {pupil},
		"present": {res.Present}, "template": {templateNote(res)}}
	c.Redirect(http.StatusSeeOther, "/teacher/class/"+url.PathEscape(cls.ID)+"?"+q.Encode()+"#faces")
}

// templateNote is what the board says of a confirmation's template:
// "added" or why not.
func templateNote(res FaceConfirmation) string {
	if res.TemplateID != 0 {
		return "added"
	}
	return res.NoTemplate
}

// faceDismiss is "Không phải học sinh lớp tôi" (not my pupil) for this
// class.
func (s *Server) faceDismiss(c *gin.Context) {
	f, ok := s.faceScope(c)
	if !ok {
		return
	}
	cls := classOf(c)
	if f.Status == facereview.StatusAssigned {
		s.fail(c, http.StatusConflict, "faces.already_named")
		return
	}
	if _, err := s.d.Learn.NotMine(c.Request.Context(), f.ID, cls.ID, principal(c).ActorID()); err != nil {
		s.failFace(c, err)
		return
	}
	if wantsJSON(c) {
		c.JSON(http.StatusOK, gin.H{"ok": true})
		return
	}
	q := url.Values{"dismissed": {"1"}}
	if d := boardDay(c, ""); d != "" {
		q.Set("day", d)
	}
	c.Redirect(http.StatusSeeOther, "/teacher/class/"+url.PathEscape(cls.ID)+"?"+q.Encode()+"#faces")
}

// boardDay is the day the board returns to: the form's day when ISO,
// else day ("" for today).
func boardDay(c *gin.Context, day string) string {
	if d := c.PostForm("day"); dayRe.MatchString(d) {
		return d
	}
	return day
}

// failFace answers a refused decision.
func (s *Server) failFace(c *gin.Context, err error) {
	switch {
	case errors.Is(err, facereview.ErrNotFound):
		s.fail(c, http.StatusNotFound, "error.not_found")
	case errors.Is(err, facereview.ErrAssigned):
		s.fail(c, http.StatusConflict, "faces.already_named")
	case errors.Is(err, facereview.ErrInvalid):
		s.fail(c, http.StatusBadRequest, "error.invalid")
	default:
		s.failErr(c, err)
	}
}

// faceFlash is the board's message after a decision on a face (the
// redirect's query q), "" for none. A pupil is named only when on the
// board (a pupil of the class); flags it does not know are ignored.
func faceFlash(p *page, b *Board, q url.Values) string {
	if q.Get("dismissed") == "1" {
		return p.T("faces.dismissed")
	}
	var name string
	for _, r := range b.Rows {
		if r.PupilID == q.Get("pupil") && q.Get("pupil") != "" {
			name = r.Name
		}
	}
	if name == "" {
		name = p.T("faces.the_pupil")
	}
	var parts []string
	switch q.Get("present") {
	case FacePresentMarked:
		parts = append(parts, p.Tr("faces.done_marked", "name", name))
	case FacePresentAlready:
		parts = append(parts, p.Tr("faces.done_already", "name", name))
	default:
		return ""
	}
	if t := q.Get("template"); t == "added" || contains(FaceNoTemplateReasons, t) {
		parts = append(parts, p.T("faces.template_"+t))
	}
	return strings.Join(parts, " ")
}
