package learn

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"

	"github.com/diemdanh/diemdanh/hub/attendance"
	"github.com/diemdanh/diemdanh/hub/audit"
	"github.com/diemdanh/diemdanh/hub/facereview"
	"github.com/diemdanh/diemdanh/hub/facetemplates"
)

// ActionOverride is the audit action of the attendance mark a confirmation
// makes: the action of every manual attendance mark (hub/web's
// ActionOverride), so the audit log lists them together.
const ActionOverride = "attendance_override"

// What a confirmation did about attendance (Confirmation.Present).
const (
	PresentMarked  = "marked"  // an override marked the pupil present, with the face as evidence
	PresentAlready = "already" // the pupil's day was already present or late: nothing written
)

// Why a confirmation added no gate template (Confirmation.NoTemplate).
const (
	NoTemplateDescriptor = "no_descriptor" // the gate sent no descriptor with the crop
	NoTemplateModel      = "other_model"   // the gate's model is not the hub's current one
	NoTemplateConsent    = "no_consent"    // the consent in force does not allow gate templates
	NoTemplateOwnConsent = "own_consent"   // the pupil is 7 or older and has not consented themselves
)

// ConfirmDeps are the stores a Confirmer works through. All are required;
// Log may be nil.
type ConfirmDeps struct {
	Review     *facereview.Store
	Attendance *attendance.Service
	Templates  *facetemplates.Store
	Audit      *audit.Log
	Log        *slog.Logger
	// Guard, when set, keeps out of the gallery the confirmed captures
	// that would not sit with the pupil's own templates (attendance is
	// still marked).
	Guard *Guard
}

// Confirmer carries out "this is <pupil>" and "not my pupil" on the faces
// the gates did not decide. It is safe for concurrent use.
type Confirmer struct {
	d  ConfirmDeps
	mu sync.Mutex // one attendance step at a time: two confirmations of a pupil's day mark it once
}

// NewConfirmer returns a Confirmer over d.
func NewConfirmer(d ConfirmDeps) (*Confirmer, error) {
	if d.Review == nil || d.Attendance == nil || d.Templates == nil || d.Audit == nil {
		return nil, errors.New("learn: the review, attendance, template stores and the audit log are required")
	}
	if d.Log == nil {
		d.Log = slog.New(slog.DiscardHandler)
	}
	return &Confirmer{d: d}, nil
}

// Confirmation is what Confirm did.
type Confirmation struct {
	FaceID    int64  `json:"face_id"`
	CaptureID string `json:"capture_id"`
	PupilID   string `json:"pupil_id"`
	Day       string `json:"day"` // the school-local day of the capture, YYYY-MM-DD
	// New is false when the face was already assigned to this pupil (a
	// repeated confirmation).
	New bool `json:"new"`
	// Present is PresentMarked or PresentAlready; Status is the pupil's
	// day status after the confirmation.
	Present string `json:"present"`
	Status  string `json:"status"`
	// TemplateID is the gate template kept from the capture (0: none);
	// NoTemplate says why there is none.
	TemplateID int64  `json:"template_id,omitempty"`
	NoTemplate string `json:"no_template,omitempty"`
}

// Confirm is "this is <pupil>" on face faceID, decided by actor (an account
// reference such as "teacher:lan") from ip:
//
//  1. the face is assigned to pupilID (facereview.Assign: an active pupil
//     of the face's school; a face assigned to another pupil is refused
//     with facereview.ErrAssigned);
//  2. unless the pupil's day is already present or late, the pupil is
//     marked present for the capture's day by an attendance override whose
//     reason names the face, audited as ActionOverride with the face and
//     capture IDs;
//  3. where the pupil's consent in force allows gate templates and the
//     Guard (when set) finds the capture near the pupil's own templates
//     and apart from other pupils', the crop's
//     descriptor becomes a teacher gate template (event: the capture ID),
//     so the gallery's version is bumped and the gates fetch it; otherwise
//     Confirmation.NoTemplate says why.
//
// Each step is idempotent: confirming again, or after a failure part way,
// completes what is missing and writes nothing twice. Who may confirm
// which pupil is the caller's check.
func (c *Confirmer) Confirm(ctx context.Context, faceID int64, pupilID, actor, ip string) (Confirmation, error) {
	a, err := c.d.Review.Assign(ctx, faceID, pupilID, actor)
	if err != nil {
		return Confirmation{}, fmt.Errorf("learn: confirm face %d: %w", faceID, err)
	}
	res := Confirmation{FaceID: faceID, CaptureID: a.CaptureID, PupilID: pupilID, New: a.New,
		Day: c.d.Review.LocalDay(ctx, a.Face)}
	if err := c.markPresent(ctx, a, &res, actor, ip); err != nil {
		return res, err
	}
	if err := c.addTemplate(ctx, a, &res, actor); err != nil {
		return res, err
	}
	c.d.Log.Info("unrecognised face confirmed", "face", faceID, "pupil", pupilID, "actor", actor,
		"present", res.Present, "template", res.TemplateID, "no_template", res.NoTemplate)
	return res, nil
}

// overrideReason is the reason of the override a confirmation writes,
// shown on the board: the face is the evidence (its capture and gate are
// in the audit entry).
func overrideReason(a facereview.Assignment) string {
	return fmt.Sprintf("Ảnh ở cổng, khuôn mặt #%d / gate capture, face #%d", a.ID, a.ID)
}

// markPresent is Confirm's attendance step.
func (c *Confirmer) markPresent(ctx context.Context, a facereview.Assignment, res *Confirmation, actor, ip string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	day, err := c.d.Attendance.Recompute(ctx, res.PupilID, res.Day)
	if err != nil {
		return fmt.Errorf("learn: attendance of %s on %s: %w", res.PupilID, res.Day, err)
	}
	if day.Status == attendance.Present || day.Status == attendance.Late {
		res.Present, res.Status = PresentAlready, day.Status
		return nil
	}
	reason := overrideReason(a)
	if day, err = c.d.Attendance.AddOverride(ctx, res.PupilID, res.Day, attendance.Present, reason, actor); err != nil {
		return fmt.Errorf("learn: mark %s present on %s: %w", res.PupilID, res.Day, err)
	}
	res.Present, res.Status = PresentMarked, day.Status
	detail := map[string]any{"day": res.Day, "status": attendance.Present, "reason": reason,
		"face_id": a.ID, "capture_id": a.CaptureID, "gate_id": a.GateID}
	if err := c.d.Audit.Record(ctx, actor, ActionOverride, "pupil:"+res.PupilID, detail, ip); err != nil {
		return fmt.Errorf("learn: audit the mark: %w", err)
	}
	return nil
}

// addTemplate is Confirm's gate-template step.
func (c *Confirmer) addTemplate(ctx context.Context, a facereview.Assignment, res *Confirmation, actor string) error {
	switch {
	case a.Descriptor == nil:
		res.NoTemplate = NoTemplateDescriptor
		return nil
	case a.Model != facereview.ModelName(c.d.Templates.Model()):
		res.NoTemplate = NoTemplateModel
		return nil
	}
	if c.d.Guard != nil {
		why, err := c.d.Guard.check(ctx, c.d.Templates, a.SchoolID, res.PupilID, a.Descriptor)
		if err != nil || why != "" {
			res.NoTemplate = why
			return err
		}
	}
	id, err := c.d.Templates.AddGateTemplate(ctx, res.PupilID, a.Descriptor, a.Quality, a.Crop,
		facetemplates.SourceTeacher, a.CaptureID, actor)
	var se *facetemplates.ScopeError
	switch {
	case errors.As(err, &se) && se.OwnConsent:
		res.NoTemplate = NoTemplateOwnConsent
	case errors.As(err, &se):
		res.NoTemplate = NoTemplateConsent
	case err != nil:
		return fmt.Errorf("learn: gate template of %s from face %d: %w", res.PupilID, a.ID, err)
	default:
		res.TemplateID = id
	}
	return nil
}

// NotMine is "not my pupil" on face faceID for class classID, decided by
// actor: the face is hidden from that class's board only
// (facereview.Dismiss, audited). It reports whether this was new.
func (c *Confirmer) NotMine(ctx context.Context, faceID int64, classID, actor string) (bool, error) {
	added, err := c.d.Review.Dismiss(ctx, faceID, classID, actor)
	if err != nil {
		return false, fmt.Errorf("learn: not my pupil, face %d: %w", faceID, err)
	}
	return added, nil
}
