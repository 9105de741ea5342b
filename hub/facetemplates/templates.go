// Package facetemplates is the hub's encrypted store of face templates.
//
// Every descriptor (and, when the pupil's consent allows it, the enrolment
// photo) is sealed with AES-256-GCM before it reaches SQLite. The key comes
// from a key file or the DIEMDANH_TEMPLATE_KEY environment variable and is
// never written to the database; the associated data binds each ciphertext
// to its pupil, model and column, so a ciphertext copied to another row does
// not decrypt. A key-check record in the meta table detects a wrong key at
// start with a clear error instead of garbage descriptors later.
//
// Each template records the model (match.ModelID) that produced it. Only
// templates of the current model are served to gates; Reembed re-computes
// templates from stored photos after a model change and flags pupils whose
// photos were not kept for re-enrolment.
//
// Each template also records its source: an enrolment photo, or a gate
// capture (gate.go: confirmed by a teacher, or added automatically), with
// the event it came from. Gate templates need the consent scope for them,
// are capped per pupil and source, expire, and are served with the
// enrolment templates.
//
// The store keeps a gallery version per school, bumped in the same
// transaction as every change that alters what gates must hold, and calls
// subscribers after the commit (the gallery server announces it on MQTT).
//
// Its hub.yaml section is `templates:` (templates.key_file, ...); the
// package is not hub/web/templates (HTML).
package facetemplates

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/diemdanh/diemdanh/hub/audit"
	"github.com/diemdanh/diemdanh/hub/roster"
	"github.com/diemdanh/diemdanh/hub/sealbox"
	"github.com/diemdanh/diemdanh/hub/store"
	"github.com/diemdanh/diemdanh/models/match"
)

// ErrWrongKey is returned by Open when the key does not match the one the
// database's templates were sealed with.
var ErrWrongKey = errors.New("templates: wrong key: the template key does not match the one this database was encrypted with (key check failed); restore the right key file or DIEMDANH_TEMPLATE_KEY")

// ErrNotFound is returned for an unknown template or pupil.
var ErrNotFound = errors.New("templates: not found")

// Template statuses.
const (
	StatusActive   = "active"   // served to gates
	StatusReview   = "review"   // held back until an admin approves (duplicate guard)
	StatusExcluded = "excluded" // taken out (negative feedback, admin)
)

const keyCheckMeta = "templates.keycheck"
const keyCheckPlain = "diemdanh template key check v1"

// Store is the pupils' encrypted face templates (descriptors and kept
// enrolment photos, table face_templates) and the per-school gallery
// version, in the hub's SQLite database (hub/store.DB), with the key that
// seals them. It is safe for concurrent use.
type Store struct {
	db    *store.DB
	box   *sealbox.Box
	log   *slog.Logger
	now   func() time.Time
	model match.ModelID
	gate  GateConfig     // gate templates (gate.go)
	audit *audit.Log     // gate templates' entries
	loc   *time.Location // ages are counted in Asia/Ho_Chi_Minh, as hub/consent does

	mu   sync.Mutex
	subs []func(schoolID string, version int64)
}

// Open checks key against the database's key-check record (creating it on
// first use) and returns the store. The current model is
// match.DefaultEmbedder until SetModel.
func Open(db *store.DB, key []byte, log *slog.Logger, now func() time.Time) (*Store, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if now == nil {
		now = time.Now
	}
	box, err := sealbox.New(key)
	if err != nil {
		return nil, fmt.Errorf("templates: %w", err)
	}
	loc, err := time.LoadLocation("Asia/Ho_Chi_Minh")
	if err != nil {
		loc = time.FixedZone("ICT", 7*3600)
	}
	s := &Store{db: db, box: box, log: log, now: now, model: match.DefaultEmbedder,
		gate: DefaultGateConfig(), audit: audit.New(db, log, now), loc: loc}
	ctx := context.Background()
	// Deleted templates must not linger in free pages.
	if _, err := db.W.ExecContext(ctx, `PRAGMA secure_delete = ON`); err != nil {
		return nil, fmt.Errorf("templates: secure_delete: %w", err)
	}
	var check []byte
	err = db.W.QueryRowContext(ctx, `SELECT value FROM meta WHERE key = ?`, keyCheckMeta).Scan(&check)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		sealed := s.seal([]byte(keyCheckPlain), "keycheck")
		if _, err := db.W.ExecContext(ctx, `INSERT INTO meta(key, value) VALUES (?, ?)`, keyCheckMeta, sealed); err != nil {
			return nil, fmt.Errorf("templates: key check: %w", err)
		}
		log.Info("template key check record created")
	case err != nil:
		return nil, fmt.Errorf("templates: key check: %w", err)
	default:
		plain, err := s.open(check, "keycheck")
		if err != nil || string(plain) != keyCheckPlain {
			return nil, ErrWrongKey
		}
	}
	return s, nil
}

// SetModel sets the current embedder; only its templates are served.
func (s *Store) SetModel(m match.ModelID) { s.model = m }

// Model is the current embedder.
func (s *Store) Model() match.ModelID { return s.model }

// Subscribe registers fn to be called after each committed gallery change.
func (s *Store) Subscribe(fn func(schoolID string, version int64)) {
	s.mu.Lock()
	s.subs = append(s.subs, fn)
	s.mu.Unlock()
}

func (s *Store) seal(plain []byte, ad string) []byte {
	b, err := s.box.Seal(plain, []byte(ad))
	if err != nil {
		panic("templates: crypto/rand failed: " + err.Error())
	}
	return b
}

func (s *Store) open(sealed []byte, ad string) ([]byte, error) {
	p, err := s.box.Open(sealed, []byte(ad))
	if errors.Is(err, sealbox.ErrShort) {
		return nil, fmt.Errorf("templates: %w", err)
	}
	if err != nil {
		return nil, fmt.Errorf("templates: decrypt failed (wrong key or tampered row): %w", err)
	}
	return p, nil
}

func descAD(pupil string, model string) string  { return "desc|" + pupil + "|" + model }
func photoAD(pupil string, model string) string { return "photo|" + pupil + "|" + model }

// New describes a template to add.
type New struct {
	PupilID    string
	Descriptor match.Descriptor
	Model      match.ModelID
	Quality    match.Quality
	Photo      []byte // JPEG to keep (encrypted); nil when consent does not allow it
	Status     string // StatusActive when empty
	Note       string
	Source     string // SourceEnrolment when empty
	EventID    string // the event or capture a gate template came from
	ExpiresAt  int64  // Unix ms; 0 = never (enrolment templates)
	CreatedAt  int64  // Unix ms; 0 = now (a re-embedding keeps the original's)
}

// Add stores an active template. photo may be nil.
func (s *Store) Add(ctx context.Context, pupilID string, desc match.Descriptor, model match.ModelID, q match.Quality, photo []byte) (int64, error) {
	return s.AddTemplate(ctx, New{PupilID: pupilID, Descriptor: desc, Model: model, Quality: q, Photo: photo})
}

// AddTemplate stores a template with the given status.
func (s *Store) AddTemplate(ctx context.Context, t New) (int64, error) {
	var id int64
	var school string
	err := s.db.Tx(ctx, func(tx *sql.Tx) error {
		var err error
		id, school, err = s.AddTx(ctx, tx, t)
		return err
	})
	if err != nil {
		return 0, err
	}
	if t.Status == "" || t.Status == StatusActive {
		s.notify(ctx, school)
	}
	return id, nil
}

// AddTx stores a template inside tx and bumps the gallery version when it
// is active. The caller must call Notify(school) after the commit.
func (s *Store) AddTx(ctx context.Context, tx *sql.Tx, t New) (id int64, school string, err error) {
	if len(t.Descriptor) == 0 || len(t.Descriptor) > match.MaxDescriptorLen {
		return 0, "", fmt.Errorf("templates: descriptor of length %d", len(t.Descriptor))
	}
	if t.Model.Name == "" {
		return 0, "", fmt.Errorf("templates: model is required")
	}
	if t.Status == "" {
		t.Status = StatusActive
	}
	if t.Source == "" {
		t.Source = SourceEnrolment
	}
	if t.CreatedAt == 0 {
		t.CreatedAt = s.now().UnixMilli()
	}
	if err := tx.QueryRowContext(ctx, `SELECT school_id FROM pupils WHERE id = ?`, t.PupilID).Scan(&school); err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			return 0, "", fmt.Errorf("%w: pupil %s", ErrNotFound, t.PupilID)
		}
		return 0, "", fmt.Errorf("templates: %w", err)
	}
	qj, _ := json.Marshal(t.Quality)
	model := t.Model.String()
	var photo any
	if len(t.Photo) > 0 {
		photo = s.seal(t.Photo, photoAD(t.PupilID, model))
	}
	var event, expires any
	if t.EventID != "" {
		event = t.EventID
	}
	if t.ExpiresAt != 0 {
		expires = t.ExpiresAt
	}
	res, err := tx.ExecContext(ctx, `INSERT INTO face_templates(pupil_id, model, descriptor, quality, photo, status, note, created_at, source, event_id, expires_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`, t.PupilID, model, s.seal(t.Descriptor.Bytes(), descAD(t.PupilID, model)),
		string(qj), photo, t.Status, t.Note, t.CreatedAt, t.Source, event, expires)
	if err != nil {
		return 0, "", fmt.Errorf("templates: add: %w", err)
	}
	id, _ = res.LastInsertId()
	if t.Status == StatusActive {
		// The pupil has an enrolment template again: audited as the
		// template is (hub/enrol's enrol entry; a re-embedding's
		// template_status; the demo's set-up, whose new pupils carry no
		// flag, records none). A gate template does not replace
		// enrolment: the flag stays.
		if t.Source == SourceEnrolment {
			if _, err := roster.MarkReenrolTx(ctx, tx, t.PupilID, false, s.now(), roster.RecordedBy(audit.ActionEnrol)); err != nil {
				return 0, "", fmt.Errorf("templates: %w", err)
			}
		}
		if err := s.BumpTx(ctx, tx, school); err != nil {
			return 0, "", err
		}
	}
	return id, school, nil
}

// BumpTx increments school's gallery version inside tx.
func (s *Store) BumpTx(ctx context.Context, tx *sql.Tx, school string) error {
	_, err := tx.ExecContext(ctx, `INSERT INTO gallery_versions(school_id, version, updated_at) VALUES (?, 1, ?)
		ON CONFLICT(school_id) DO UPDATE SET version = version + 1, updated_at = excluded.updated_at`, school, s.now().UnixMilli())
	if err != nil {
		return fmt.Errorf("templates: bump gallery version: %w", err)
	}
	return nil
}

// Bump increments school's gallery version (for roster changes made
// elsewhere, e.g. a pupil leaving) and notifies subscribers.
func (s *Store) Bump(ctx context.Context, school string) error {
	if err := s.db.Tx(ctx, func(tx *sql.Tx) error { return s.BumpTx(ctx, tx, school) }); err != nil {
		return err
	}
	s.notify(ctx, school)
	return nil
}

// Notify tells subscribers that school's gallery changed (call after the
// commit of a *Tx method).
func (s *Store) Notify(ctx context.Context, school string) { s.notify(ctx, school) }

func (s *Store) notify(ctx context.Context, school string) {
	v, err := s.Version(ctx, school)
	if err != nil {
		s.log.Warn("gallery version", "school", school, "err", err)
		return
	}
	s.mu.Lock()
	subs := append([]func(string, int64){}, s.subs...)
	s.mu.Unlock()
	for _, fn := range subs {
		fn(school, v)
	}
}

// Version returns school's gallery version (0 before any change).
func (s *Store) Version(ctx context.Context, school string) (int64, error) {
	var v int64
	err := s.db.W.QueryRowContext(ctx, `SELECT version FROM gallery_versions WHERE school_id = ?`, school).Scan(&v)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("templates: version: %w", err)
	}
	return v, nil
}

// servedOrder orders a pupil's served templates: enrolment templates
// first, oldest first, then gate templates newest first, so that when a
// pupil has more than wire.MaxDescriptorsPerPerson the oldest gate
// templates are the ones left out.
const servedOrder = `t.pupil_id, t.source != 'enrolment', CASE WHEN t.source = 'enrolment' THEN t.id ELSE -t.id END`

// SetStatus moves a template to status (active, review, excluded) with a
// note, bumping the gallery version.
func (s *Store) SetStatus(ctx context.Context, id int64, status, note string) error {
	if status != StatusActive && status != StatusReview && status != StatusExcluded {
		return fmt.Errorf("templates: bad status %q", status)
	}
	var school string
	err := s.db.Tx(ctx, func(tx *sql.Tx) error {
		if err := tx.QueryRowContext(ctx, `SELECT p.school_id FROM face_templates t JOIN pupils p ON p.id = t.pupil_id WHERE t.id = ?`, id).Scan(&school); err != nil {
			if errors.Is(err, sql.ErrNoRows) {
				return fmt.Errorf("%w: template %d", ErrNotFound, id)
			}
			return fmt.Errorf("templates: %w", err)
		}
		if _, err := tx.ExecContext(ctx, `UPDATE face_templates SET status = ?, note = ? || CASE WHEN instr(note, 'src:') > 0 THEN ' ' || substr(note, instr(note, 'src:')) ELSE '' END WHERE id = ?`, status, note, id); err != nil {
			return fmt.Errorf("templates: set status: %w", err)
		}
		return s.BumpTx(ctx, tx, school)
	})
	if err != nil {
		return err
	}
	s.notify(ctx, school)
	return nil
}

// DeletePupil deletes every template and photo of pupilID and bumps the
// gallery version. It returns nil when the pupil had none.
func (s *Store) DeletePupil(ctx context.Context, pupilID string) error {
	var school string
	err := s.db.Tx(ctx, func(tx *sql.Tx) error {
		var err error
		school, _, err = s.DeletePupilTx(ctx, tx, pupilID)
		return err
	})
	if err != nil {
		return err
	}
	s.notify(ctx, school)
	return nil
}

// DeletePupilTx deletes pupilID's templates inside tx and bumps the gallery
// version; it returns the school and how many templates were deleted. Call
// Notify(school) after the commit.
func (s *Store) DeletePupilTx(ctx context.Context, tx *sql.Tx, pupilID string) (school string, n int64, err error) {
	if err := tx.QueryRowContext(ctx, `SELECT school_id FROM pupils WHERE id = ?`, pupilID).Scan(&school); err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			return "", 0, fmt.Errorf("%w: pupil %s", ErrNotFound, pupilID)
		}
		return "", 0, fmt.Errorf("templates: %w", err)
	}
	res, err := tx.ExecContext(ctx, `DELETE FROM face_templates WHERE pupil_id = ?`, pupilID)
	if err != nil {
		return "", 0, fmt.Errorf("templates: delete: %w", err)
	}
	n, _ = res.RowsAffected()
	return school, n, s.BumpTx(ctx, tx, school)
}
