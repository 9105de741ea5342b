package facetemplates

// Gate templates: face templates made from the gate's own captures of a
// pupil, confirmed by a teacher or added automatically. They are stored
// like enrolment templates (encrypted, with the model, served to gates and
// calibrated with them), but only while the pupil's consent in force
// allows keeping gate captures as templates (GateTemplatesAllowed), at
// most GateConfig.MaxPerSource per pupil and source (the newest), and
// each expires after GateConfig.Expiry. "Not this pupil" on an event
// removes the templates added from it and pauses automatic ones for the
// pupil (RemoveFromEvent).

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/diemdanh/diemdanh/hub/api"
	"github.com/diemdanh/diemdanh/models/conf"
	"github.com/diemdanh/diemdanh/models/match"
	"github.com/diemdanh/diemdanh/models/wire"
)

// Template sources (face_templates.source).
const (
	SourceEnrolment = "enrolment" // a photo taken at enrolment
	SourceTeacher   = "teacher"   // a gate capture a teacher confirmed
	SourceAutomatic = "automatic" // a gate capture the hub added on its own
)

// Audit actions of gate templates.
const (
	ActionGateTemplate       = "gate_template"        // a gate template added
	ActionGateTemplateRemove = "gate_template_remove" // "not this pupil": templates from an event removed, automatic ones paused
	ActionGateTemplatePurge  = "gate_template_purge"  // expired gate templates deleted
)

// GateConfig is templates.gate in the hub config. Zero fields take the
// defaults (DefaultGateConfig).
type GateConfig struct {
	// MaxPerSource is how many gate templates a pupil keeps per source
	// (teacher, automatic): adding one more deletes the oldest.
	MaxPerSource int `yaml:"max_per_source"`
	// Expiry is how long a gate template is kept.
	Expiry time.Duration `yaml:"expiry"`
	// AutomaticPause is how long "not this pupil" on an event stops
	// automatic templates for the pupil the gate named.
	AutomaticPause time.Duration `yaml:"automatic_pause"`
	// PurgeInterval is how often RunPurge deletes expired templates.
	PurgeInterval time.Duration `yaml:"purge_interval"`
}

// DefaultGateConfig returns the defaults: 8 per source, kept 120 days,
// automatic templates paused 14 days after "not this pupil", purged
// hourly.
func DefaultGateConfig() GateConfig {
	return GateConfig{MaxPerSource: 8, Expiry: 120 * 24 * time.Hour, AutomaticPause: 14 * 24 * time.Hour, PurgeInterval: time.Hour}
}

// Validate names the first bad field under prefix.
func (c GateConfig) Validate(prefix string) error {
	if c.MaxPerSource < 0 || c.MaxPerSource > wire.MaxDescriptorsPerPerson/2 {
		return conf.Fieldf(prefix+".max_per_source", "must be 0 (default 8) or 1..%d, got %d", wire.MaxDescriptorsPerPerson/2, c.MaxPerSource)
	}
	if c.Expiry != 0 && (c.Expiry < 24*time.Hour || c.Expiry > 3*365*24*time.Hour) {
		return conf.Fieldf(prefix+".expiry", "must be 0 (default 2880h) or 24h..26280h, got %s", c.Expiry)
	}
	if c.AutomaticPause < 0 || c.AutomaticPause > 365*24*time.Hour {
		return conf.Fieldf(prefix+".automatic_pause", "must be 0 (default 336h) or up to 8760h, got %s", c.AutomaticPause)
	}
	if c.PurgeInterval != 0 && (c.PurgeInterval < time.Minute || c.PurgeInterval > 24*time.Hour) {
		return conf.Fieldf(prefix+".purge_interval", "must be 0 (default 1h) or 1m..24h, got %s", c.PurgeInterval)
	}
	return nil
}

func (c GateConfig) withDefaults() GateConfig {
	d := DefaultGateConfig()
	if c.MaxPerSource == 0 {
		c.MaxPerSource = d.MaxPerSource
	}
	if c.Expiry == 0 {
		c.Expiry = d.Expiry
	}
	if c.AutomaticPause == 0 {
		c.AutomaticPause = d.AutomaticPause
	}
	if c.PurgeInterval == 0 {
		c.PurgeInterval = d.PurgeInterval
	}
	return c
}

// SetGateConfig checks c and sets the gate-template settings (call before
// the store is used).
func (s *Store) SetGateConfig(c GateConfig) error {
	if err := c.Validate("templates.gate"); err != nil {
		return err
	}
	s.gate = c.withDefaults()
	return nil
}

// GateConfig returns the gate-template settings in use.
func (s *Store) GateConfig() GateConfig { return s.gate }

// currentConsent is the SQL subquery prefix selecting from the consent in
// force of the pupil whose ID is the SQL expression pupil: the latest one
// not withdrawn, ordered as consent.Registry.Current orders them.
func currentConsent(col, pupil string) string {
	return `(SELECT ` + col + ` FROM consents c WHERE c.pupil_id = ` + pupil + ` AND c.withdrawn_at IS NULL
		ORDER BY c.given_at DESC, c.id DESC LIMIT 1)`
}

// GateTemplatesAllowed returns the SQL condition "the consent of the pupil
// whose ID is the SQL expression pupil allows keeping gate captures as
// face templates": the consent in force covers face attendance and has
// scope_gate_templates = 1. No consent, only withdrawn ones, or a current
// one without the scope: not allowed. It is the one definition of the
// rule: AddGateTemplate checks it, and hub/consent erases the templates
// when a new consent drops it (EnforceGateScopeTx). pupil must be a column
// or "?", never user text.
func GateTemplatesAllowed(pupil string) string {
	return `COALESCE(` + currentConsent("c.scope_face = 1 AND c.scope_gate_templates = 1", pupil) + `, 0) = 1`
}

// photosAllowed is the SQL condition "the consent in force allows keeping
// photos" (scope_photos): a gate template keeps its capture, for
// re-embedding, only then.
func photosAllowed(pupil string) string {
	return `COALESCE(` + currentConsent("c.scope_photos", pupil) + `, 0) = 1`
}

// ownConsentMissing returns the SQL condition "the pupil (pupils row p)
// is 7 or older on the day given as the parameter (YYYY-MM-DD), or of
// unknown date of birth, and the consent in force lacks the pupil's own
// consent" (hub/consent's rule for enrolment, Decree 13/2023 art. 20).
func ownConsentMissing() string {
	return `COALESCE(date(p.date_of_birth, '+7 years') <= ?, 1) = 1 AND COALESCE(` +
		currentConsent("c.pupil_consented", "p.id") + `, 0) = 0`
}

// errNoGateScope and errPaused are what the API answers (412).
var (
	errNoGateScope = &api.Error{Code: api.CodePrecondition, Message: "the consent does not allow keeping gate captures as face templates / sự đồng ý không cho phép giữ ảnh chụp ở cổng làm mẫu khuôn mặt"}
	errOwnConsent  = &api.Error{Code: api.CodePrecondition, Message: "the pupil is now 7 or older: their own consent is needed / học sinh đã đủ 7 tuổi: cần sự đồng ý của chính học sinh"}
	errPaused      = &api.Error{Code: api.CodePrecondition, Message: "automatic templates are paused for this pupil after \"not this pupil\" / tạm dừng mẫu tự động của học sinh này sau khi có phản hồi \"không phải em này\""}
)

// ScopeError refuses a gate template: the pupil's consent in force does
// not allow keeping gate captures as templates (OwnConsent false), or the
// pupil is 7 or older and has not consented themselves (OwnConsent true).
// It unwraps to an api.Error with CodePrecondition.
type ScopeError struct {
	PupilID    string
	OwnConsent bool
}

func (e *ScopeError) Error() string {
	if e.OwnConsent {
		return "templates: pupil " + e.PupilID + " is 7 or older and the consent in force lacks their own consent"
	}
	return "templates: the consent in force for pupil " + e.PupilID + " does not allow keeping gate captures as templates"
}

// Unwrap gives the API's answer.
func (e *ScopeError) Unwrap() error {
	if e.OwnConsent {
		return errOwnConsent
	}
	return errNoGateScope
}

// PausedError refuses an automatic gate template while "not this pupil"
// pauses them for the pupil (until Until). It unwraps to an api.Error
// with CodePrecondition.
type PausedError struct {
	PupilID string
	Until   time.Time
}

func (e *PausedError) Error() string {
	return "templates: automatic templates of pupil " + e.PupilID + " are paused until " + e.Until.UTC().Format(time.RFC3339)
}

// Unwrap gives the API's answer.
func (e *PausedError) Unwrap() error { return errPaused }

// GateCapture is a gate capture to keep as a template.
type GateCapture struct {
	PupilID    string
	Descriptor match.Descriptor
	Quality    match.Quality
	JPEG       []byte // the capture; kept (encrypted) only where the consent allows keeping photos
	Source     string // SourceTeacher or SourceAutomatic
	EventID    string // the event or capture it came from
}

// AddGateTemplate stores a gate capture as an active template of pupilID
// for the current model, encrypted like enrolment templates; the capture
// itself is kept only where the consent allows keeping photos (for
// re-embedding). It is refused with a *ScopeError unless the consent in
// force allows gate templates (and, from age 7, has the pupil's own
// consent), and for source automatic with a *PausedError while the pupil
// is paused. A capture already added from eventID for the pupil is not
// added twice (its ID is returned). The newest GateConfig.MaxPerSource of
// the pupil's templates of that source are kept, the older deleted; the
// template expires after GateConfig.Expiry. One transaction with the
// gallery version's bump and the audit entry; subscribers are told after
// the commit.
func (s *Store) AddGateTemplate(ctx context.Context, pupilID string, desc match.Descriptor, q match.Quality, jpeg []byte, source, eventID, actor string) (int64, error) {
	c := GateCapture{PupilID: pupilID, Descriptor: desc, Quality: q, JPEG: jpeg, Source: source, EventID: eventID}
	if source != SourceTeacher && source != SourceAutomatic {
		return 0, api.Invalid("source", "must be %q or %q, got %q", SourceTeacher, SourceAutomatic, source)
	}
	if eventID == "" || len(eventID) > 200 {
		return 0, api.Invalid("event_id", "the event a gate template comes from is required (max 200 characters)")
	}
	var id int64
	var school string
	var added bool
	err := s.db.Tx(ctx, func(tx *sql.Tx) error {
		var err error
		id, school, added, err = s.addGateTx(ctx, tx, c, actor)
		return err
	})
	if err != nil {
		return 0, err
	}
	if added {
		s.notify(ctx, school)
	}
	return id, nil
}

// addGateTx is AddGateTemplate inside tx.
func (s *Store) addGateTx(ctx context.Context, tx *sql.Tx, c GateCapture, actor string) (id int64, school string, added bool, err error) {
	now := s.now()
	var allowed, photos, ownMissing bool
	err = tx.QueryRowContext(ctx, `SELECT p.school_id, `+GateTemplatesAllowed("p.id")+`, `+photosAllowed("p.id")+`, `+ownConsentMissing()+`
		FROM pupils p WHERE p.id = ?`, now.In(s.loc).Format("2006-01-02"), c.PupilID).Scan(&school, &allowed, &photos, &ownMissing)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, "", false, fmt.Errorf("%w: pupil %s", ErrNotFound, c.PupilID)
	}
	if err != nil {
		return 0, "", false, fmt.Errorf("templates: gate template: %w", err)
	}
	if !allowed || ownMissing {
		return 0, "", false, &ScopeError{PupilID: c.PupilID, OwnConsent: allowed && ownMissing}
	}
	if c.Source == SourceAutomatic {
		if until, paused, err := pausedUntil(ctx, tx, c.PupilID, now); err != nil || paused {
			if err == nil {
				err = &PausedError{PupilID: c.PupilID, Until: until}
			}
			return 0, "", false, err
		}
	}
	err = tx.QueryRowContext(ctx, `SELECT id FROM face_templates WHERE pupil_id = ? AND event_id = ? ORDER BY id LIMIT 1`, c.PupilID, c.EventID).Scan(&id)
	if err == nil {
		return id, school, false, nil
	}
	if !errors.Is(err, sql.ErrNoRows) {
		return 0, "", false, fmt.Errorf("templates: gate template: %w", err)
	}
	t := New{PupilID: c.PupilID, Descriptor: c.Descriptor, Model: s.model, Quality: c.Quality, Source: c.Source,
		EventID: c.EventID, ExpiresAt: now.Add(s.gate.Expiry).UnixMilli()}
	if photos {
		t.Photo = c.JPEG
	}
	if id, _, err = s.AddTx(ctx, tx, t); err != nil {
		return 0, "", false, err
	}
	capped, err := s.capTx(ctx, tx, c.PupilID, c.Source)
	if err != nil {
		return 0, "", false, err
	}
	detail := map[string]any{"template_id": id, "source": c.Source, "event_id": c.EventID, "model": s.model.String(),
		"expires_at": t.ExpiresAt, "capture_kept": len(t.Photo) > 0, "older_deleted": capped}
	if err := s.audit.RecordTx(ctx, tx, actor, ActionGateTemplate, "pupil:"+c.PupilID, detail, ""); err != nil {
		return 0, "", false, err
	}
	return id, school, true, nil
}

// capTx keeps the newest GateConfig.MaxPerSource templates of pupilID's
// source and deletes the rest; it returns how many it deleted.
func (s *Store) capTx(ctx context.Context, tx *sql.Tx, pupilID, source string) (int64, error) {
	res, err := tx.ExecContext(ctx, `DELETE FROM face_templates WHERE pupil_id = ? AND source = ? AND id NOT IN
		(SELECT id FROM face_templates WHERE pupil_id = ? AND source = ? ORDER BY created_at DESC, id DESC LIMIT ?)`,
		pupilID, source, pupilID, source, s.gate.MaxPerSource)
	if err != nil {
		return 0, fmt.Errorf("templates: cap: %w", err)
	}
	n, _ := res.RowsAffected()
	return n, nil
}
