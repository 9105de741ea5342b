// Package consent is the hub's consent registry for face attendance.
//
// For each pupil it records who consented (the guardian and, from age 7,
// the pupil too — Decree 13/2023/NĐ-CP art. 20), when, the scope (face
// attendance; optionally keeping enrolment photos and gate snapshots) and
// the reference of the signed document. The latest consent not withdrawn
// is the one in force (Current). Enrolment requires a valid consent
// (Valid). Recording a consent whose scope leaves out snapshots (photos,
// gate templates) deletes the pupil's gate face crops (kept enrolment
// photos, gate templates) in the same transaction; the crop rule is
// audit.SnapshotsAllowed, the gate-template rule
// facetemplates.GateTemplatesAllowed. Whether gate captures may be kept as
// templates defaults, for a new consent, to the school's policy
// (policy.go); consents recorded before stay as they are. Withdrawal, in
// one transaction, marks the consent withdrawn, deletes the pupil's
// templates and photos and gate face crops, bumps the school's gallery
// version (gates drop the pupil at their next sync) and puts the pupil on
// manual attendance.
package consent

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/diemdanh/diemdanh/hub/api"
	"github.com/diemdanh/diemdanh/hub/audit"
	"github.com/diemdanh/diemdanh/hub/facetemplates"
	"github.com/diemdanh/diemdanh/hub/roster"
	"github.com/diemdanh/diemdanh/hub/store"
)

// OwnConsentAge is the age from which the pupil's own consent is required.
const OwnConsentAge = 7

// ErrNoConsent means the pupil has no valid consent for face attendance.
var ErrNoConsent = &api.Error{Code: api.CodePrecondition, Message: "no valid consent for face attendance / chưa có sự đồng ý hợp lệ cho điểm danh bằng khuôn mặt"}

// Grant is a consent to record.
type Grant struct {
	PupilID        string `json:"pupil_id"`
	GuardianID     int64  `json:"guardian_id,omitempty"`
	GuardianName   string `json:"guardian_name"`
	PupilConsented bool   `json:"pupil_consented"`
	ScopeFace      bool   `json:"scope_face"`
	ScopePhotos    bool   `json:"scope_photos"`
	ScopeSnapshots bool   `json:"scope_snapshots"`
	// ScopeGateTemplates: gate captures may be kept as face templates
	// (hub/facetemplates' gate templates). Left out, the school's policy
	// default (SchoolPolicy) is recorded.
	ScopeGateTemplates *bool  `json:"scope_gate_templates,omitempty"`
	DocumentRef        string `json:"document_ref"`
	GivenAt            int64  `json:"given_at,omitempty"` // Unix ms; 0 = now
}

// Consent is a recorded consent.
type Consent struct {
	ID int64 `json:"id"`
	Grant
	RecordedBy       string `json:"recorded_by"`
	WithdrawnAt      *int64 `json:"withdrawn_at,omitempty"`
	WithdrawnBy      string `json:"withdrawn_by,omitempty"`
	WithdrawalReason string `json:"withdrawal_reason,omitempty"`
}

// Registry records and checks consent.
type Registry struct {
	db    *store.DB
	tpl   *facetemplates.Store
	audit *audit.Log
	log   *slog.Logger
	now   func() time.Time
	loc   *time.Location
}

// New returns the registry.
func New(db *store.DB, tpl *facetemplates.Store, al *audit.Log, log *slog.Logger, now func() time.Time) *Registry {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if now == nil {
		now = time.Now
	}
	loc, err := time.LoadLocation("Asia/Ho_Chi_Minh")
	if err != nil {
		loc = time.FixedZone("ICT", 7*3600)
	}
	if al == nil {
		al = audit.New(db, log, now)
	}
	return &Registry{db: db, tpl: tpl, audit: al, log: log, now: now, loc: loc}
}

// Age returns the age in whole years on day at of someone born on dob
// (YYYY-MM-DD); ok is false when dob is missing or malformed.
func Age(dob string, at time.Time) (int, bool) {
	b, err := time.Parse("2006-01-02", strings.TrimSpace(dob))
	if err != nil {
		return 0, false
	}
	y := at.Year() - b.Year()
	if at.Month() < b.Month() || (at.Month() == b.Month() && at.Day() < b.Day()) {
		y--
	}
	return y, true
}

func (r *Registry) pupil(ctx context.Context, q interface {
	QueryRowContext(context.Context, string, ...any) *sql.Row
}, id string) (school, dob string, err error) {
	err = q.QueryRowContext(ctx, `SELECT school_id, date_of_birth FROM pupils WHERE id = ?`, id).Scan(&school, &dob)
	if errors.Is(err, sql.ErrNoRows) {
		return "", "", &api.Error{Code: api.CodeNotFound, Message: "unknown pupil " + id}
	}
	return school, dob, err
}

// needsOwn reports whether the pupil's own consent is required at t. An
// unknown date of birth counts as 7 or older (the safe side).
func (r *Registry) needsOwn(dob string, t time.Time) bool {
	age, ok := Age(dob, t.In(r.loc))
	return !ok || age >= OwnConsentAge
}

// Record stores a consent after checking it is complete. A grant that
// leaves scope_gate_templates out gets the school's policy default
// (SchoolPolicy). What the new consent no longer allows goes in the same
// transaction: the gate face crops (no snapshots), the kept enrolment
// photos (no photos) and the gate templates (no gate templates), and the
// gallery version bumps so gates drop them.
func (r *Registry) Record(ctx context.Context, actor string, g Grant) (int64, error) {
	if err := r.check(&g); err != nil {
		return 0, err
	}
	var id int64
	var school string
	err := r.db.Tx(ctx, func(tx *sql.Tx) error {
		var dob string
		var err error
		school, dob, err = r.pupil(ctx, tx, g.PupilID)
		if err != nil {
			return err
		}
		if r.needsOwn(dob, r.now()) && !g.PupilConsented {
			return api.Invalid("pupil_consented", "the pupil is %d or older (or the date of birth is unknown): their own consent is required too", OwnConsentAge)
		}
		var guardian any
		if g.GuardianID != 0 {
			var gname, gpupil string
			if err := tx.QueryRowContext(ctx, `SELECT full_name, pupil_id FROM guardians WHERE id = ?`, g.GuardianID).Scan(&gname, &gpupil); err != nil || gpupil != g.PupilID {
				return api.Invalid("guardian_id", "not a guardian of this pupil")
			}
			if g.GuardianName == "" {
				g.GuardianName = gname
			}
			guardian = g.GuardianID
		}
		if g.ScopeGateTemplates == nil {
			p, err := schoolPolicy(ctx, tx, school)
			if err != nil {
				return err
			}
			g.ScopeGateTemplates = &p.GateTemplates
		}
		res, err := tx.ExecContext(ctx, `INSERT INTO consents(pupil_id, guardian_id, guardian_name, pupil_consented, scope_face, scope_photos, scope_snapshots,
			scope_gate_templates, document_ref, given_at, recorded_by) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`, g.PupilID, guardian, g.GuardianName,
			g.PupilConsented, g.ScopeFace, g.ScopePhotos, g.ScopeSnapshots, *g.ScopeGateTemplates, g.DocumentRef, g.GivenAt, actor)
		if err != nil {
			return fmt.Errorf("consent: record: %w", err)
		}
		id, _ = res.LastInsertId()
		dropped, err := r.dropOutOfScopeTx(ctx, tx, g.PupilID)
		if err != nil {
			return err
		}
		if err := r.tpl.BumpTx(ctx, tx, school); err != nil {
			return err
		}
		// Face attendance is back on for this pupil (they join the gallery
		// once enrolled; bumped above), audited with the consent.
		entry := roster.Entry{Action: audit.ActionConsentGiven, Detail: struct {
			Grant
			scopeDropped
		}{g, dropped}}
		if _, err := roster.SetManualAttendanceTx(roster.WithActor(ctx, actor, ""), tx, g.PupilID, false, r.now(), entry); err != nil {
			return fmt.Errorf("consent: %w", err)
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	r.tpl.Notify(ctx, school)
	return id, nil
}

// check normalises g and refuses an incomplete grant.
func (r *Registry) check(g *Grant) error {
	g.DocumentRef = roster.NormalizeText(g.DocumentRef) // trimmed, NFC
	g.GuardianName = roster.NormalizeText(g.GuardianName)
	switch {
	case !g.ScopeFace:
		return api.Invalid("scope_face", "consent must cover face attendance")
	case g.DocumentRef == "" || len(g.DocumentRef) > 200:
		return api.Invalid("document_ref", "the reference of the signed form is required (max 200 characters)")
	case g.GuardianID == 0 && g.GuardianName == "":
		return api.Invalid("guardian_name", "who consented for the family is required")
	case len(g.GuardianName) > 200:
		return api.Invalid("guardian_name", "too long")
	}
	if g.GivenAt == 0 {
		g.GivenAt = r.now().UnixMilli()
	}
	if g.GivenAt > r.now().Add(time.Hour).UnixMilli() {
		return api.Invalid("given_at", "is in the future")
	}
	return nil
}

// scopeDropped counts what a new consent's scope removed (audited with it).
type scopeDropped struct {
	CropsDeleted         int64 `json:"crops_deleted,omitempty"`
	PhotosDeleted        int64 `json:"photos_deleted,omitempty"`
	GateTemplatesDeleted int64 `json:"gate_templates_deleted,omitempty"`
}

// dropOutOfScopeTx deletes what the consent in force for pupil (the
// latest, as Current picks it; it overrides earlier ones) does not allow:
// gate face crops (audit.SnapshotsAllowed), kept enrolment photos and
// gate templates (facetemplates.GateTemplatesAllowed).
func (r *Registry) dropOutOfScopeTx(ctx context.Context, tx *sql.Tx, pupil string) (scopeDropped, error) {
	var d scopeDropped
	x, err := tx.ExecContext(ctx, `UPDATE events SET face_jpeg = NULL WHERE student_id = ? AND face_jpeg IS NOT NULL
		AND NOT (`+audit.SnapshotsAllowed("events.student_id")+`)`, pupil)
	if err != nil {
		return d, fmt.Errorf("consent: delete crops: %w", err)
	}
	d.CropsDeleted, _ = x.RowsAffected()
	x, err = tx.ExecContext(ctx, `UPDATE face_templates SET photo = NULL WHERE pupil_id = ? AND photo IS NOT NULL
		AND COALESCE((SELECT c.scope_photos FROM consents c WHERE c.pupil_id = face_templates.pupil_id AND c.withdrawn_at IS NULL
			ORDER BY c.given_at DESC, c.id DESC LIMIT 1), 0) = 0`, pupil)
	if err != nil {
		return d, fmt.Errorf("consent: delete photos: %w", err)
	}
	d.PhotosDeleted, _ = x.RowsAffected()
	if d.GateTemplatesDeleted, err = r.tpl.EnforceGateScopeTx(ctx, tx, pupil); err != nil {
		return d, fmt.Errorf("consent: %w", err)
	}
	return d, nil
}

const cols = `id, pupil_id, COALESCE(guardian_id, 0), guardian_name, pupil_consented, scope_face, scope_photos, scope_snapshots,
	scope_gate_templates, document_ref, given_at, recorded_by, withdrawn_at, COALESCE(withdrawn_by, ''), withdrawal_reason`

func scan(row interface{ Scan(...any) error }) (Consent, error) {
	var c Consent
	var w sql.NullInt64
	gate := new(bool)
	c.ScopeGateTemplates = gate
	err := row.Scan(&c.ID, &c.PupilID, &c.GuardianID, &c.GuardianName, &c.PupilConsented, &c.ScopeFace, &c.ScopePhotos, &c.ScopeSnapshots,
		gate, &c.DocumentRef, &c.GivenAt, &c.RecordedBy, &w, &c.WithdrawnBy, &c.WithdrawalReason)
	if w.Valid {
		c.WithdrawnAt = &w.Int64
	}
	return c, err
}

// Current returns the pupil's latest consent that is not withdrawn.
func (r *Registry) Current(ctx context.Context, pupilID string) (*Consent, error) {
	c, err := scan(r.db.R.QueryRowContext(ctx, `SELECT `+cols+` FROM consents WHERE pupil_id = ? AND withdrawn_at IS NULL ORDER BY given_at DESC, id DESC LIMIT 1`, pupilID))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNoConsent
	}
	if err != nil {
		return nil, fmt.Errorf("consent: %w", err)
	}
	return &c, nil
}

// Valid returns the consent under which pupilID may be enrolled now, or
// ErrNoConsent (with the reason) when there is none: no consent, face
// attendance not in scope, or the pupil has turned 7 since the guardian
// consented alone.
func (r *Registry) Valid(ctx context.Context, pupilID string) (*Consent, error) {
	_, dob, err := r.pupil(ctx, r.db.R, pupilID)
	if err != nil {
		return nil, err
	}
	c, err := r.Current(ctx, pupilID)
	if err != nil {
		return nil, err
	}
	if !c.ScopeFace {
		return nil, ErrNoConsent
	}
	if r.needsOwn(dob, r.now()) && !c.PupilConsented {
		return nil, &api.Error{Code: api.CodePrecondition, Message: "the pupil is now 7 or older: their own consent is needed / học sinh đã đủ 7 tuổi: cần sự đồng ý của chính học sinh"}
	}
	return c, nil
}

// History returns every consent of the pupil, newest first.
func (r *Registry) History(ctx context.Context, pupilID string) ([]Consent, error) {
	rows, err := r.db.R.QueryContext(ctx, `SELECT `+cols+` FROM consents WHERE pupil_id = ? ORDER BY id DESC`, pupilID)
	if err != nil {
		return nil, fmt.Errorf("consent: %w", err)
	}
	defer rows.Close()
	out := []Consent{}
	for rows.Next() {
		c, err := scan(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	return out, rows.Err()
}

// WithdrawResult says what a withdrawal removed.
type WithdrawResult struct {
	TemplatesDeleted int64 `json:"templates_deleted"`
	CropsDeleted     int64 `json:"crops_deleted"`
	GalleryVersion   int64 `json:"gallery_version"`
}

// Withdraw records the withdrawal and, in the same transaction, deletes
// the pupil's templates, photos and gate face crops, bumps the gallery
// version and sets manual attendance. Subscribers of the template store
// (the gallery announcer) are told after the commit. Every withdrawal
// takes this path: an admin's (POST /api/v1/pupils/{id}/consent/withdraw)
// and a parent's in the portal (hub/web), actor being who withdrew.
func (r *Registry) Withdraw(ctx context.Context, actor, pupilID, reason string) (WithdrawResult, error) {
	var res WithdrawResult
	var school string
	if r.tpl == nil { // a read-only registry (New without a template store)
		return res, errors.New("consent: withdraw: the registry has no template store")
	}
	err := r.db.Tx(ctx, func(tx *sql.Tx) error {
		var err error
		if school, _, err = r.pupil(ctx, tx, pupilID); err != nil {
			return err
		}
		now := r.now()
		if _, err := tx.ExecContext(ctx, `UPDATE consents SET withdrawn_at = ?, withdrawn_by = ?, withdrawal_reason = ? WHERE pupil_id = ? AND withdrawn_at IS NULL`,
			now.UnixMilli(), actor, reason, pupilID); err != nil {
			return fmt.Errorf("consent: withdraw: %w", err)
		}
		if _, res.TemplatesDeleted, err = r.tpl.DeletePupilTx(ctx, tx, pupilID); err != nil {
			return err
		}
		x, err := tx.ExecContext(ctx, `UPDATE events SET face_jpeg = NULL WHERE student_id = ? AND face_jpeg IS NOT NULL`, pupilID)
		if err != nil {
			return fmt.Errorf("consent: delete crops: %w", err)
		}
		res.CropsDeleted, _ = x.RowsAffected()
		// Manual attendance from now on, audited with the withdrawal
		// (DeletePupilTx bumped the gallery).
		entry := roster.Entry{Action: audit.ActionConsentWithdraw,
			Detail: map[string]any{"reason": reason, "templates_deleted": res.TemplatesDeleted, "crops_deleted": res.CropsDeleted}}
		if _, err := roster.SetManualAttendanceTx(roster.WithActor(ctx, actor, ""), tx, pupilID, true, now, entry); err != nil {
			return fmt.Errorf("consent: %w", err)
		}
		return nil
	})
	if err != nil {
		return res, err
	}
	res.GalleryVersion, _ = r.tpl.Version(ctx, school)
	r.tpl.Notify(ctx, school)
	r.log.Info("consent withdrawn", "pupil", pupilID, "templates_deleted", res.TemplatesDeleted, "gallery_version", res.GalleryVersion)
	return res, nil
}
