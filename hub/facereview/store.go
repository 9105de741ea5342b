// Package facereview keeps the faces the gates saw and did not decide
// (wire.Unrecognised: tracks that ended without an event, and near-misses)
// so that a teacher can name them ("this is <pupil>") or dismiss them for a
// class ("not my pupil"). It owns the tables unrecognised_faces and
// unrecognised_dismissals (migrations 0400_unrecognised.sql and
// 0420_unrecognised_descriptor.sql); no other
// package writes them, and hub/citysync never reads them.
//
// Messages arrive through hub/ingest (Store implements ingest.TopicHandler
// for wire.TopicKindUnrecognised), in the ingest transaction, so they are
// committed before the gate's PUBACK and stored exactly once, keyed by the
// gate's capture_id. A message from an unknown or inactive gate, or a gate
// of another school, is refused and goes to ingest's quarantine.
//
// Each face crop, and the crop's descriptor when the gate sent one, is
// sealed with AES-256-GCM under the hub's template key
// (facetemplates.LoadKey); the associated data binds the ciphertext to its
// school and capture_id, so a crop or descriptor copied to another row does
// not open.
// Rows with their crops and descriptors are deleted (not blanked)
// review.retention after they reached the hub, by Run / PurgeOnce, and each
// purge is audited.
package facereview

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/diemdanh/diemdanh/hub/audit"
	"github.com/diemdanh/diemdanh/hub/ingest"
	"github.com/diemdanh/diemdanh/hub/sealbox"
	"github.com/diemdanh/diemdanh/hub/store"
	"github.com/diemdanh/diemdanh/models/match"
	"github.com/diemdanh/diemdanh/models/wire"
)

// KeySize is the AES-256 key length in bytes (the template key's).
const KeySize = sealbox.KeySize

// Errors.
var (
	// ErrRefused: a message the hub does not take (unknown, inactive or
	// foreign gate, a payload that breaks the contract).
	ErrRefused = errors.New("facereview: refused")
	// ErrNotFound: no such face (or it was purged).
	ErrNotFound = errors.New("facereview: not found")
	// ErrUnreadable: a crop that does not open with this key (another key,
	// or a ciphertext moved to another row).
	ErrUnreadable = errors.New("facereview: crop cannot be decrypted (wrong key or tampered row)")
	// ErrInvalid: a pupil or class that is not an active one of the face's school.
	ErrInvalid = errors.New("facereview: invalid")
	// ErrAssigned: the face is already assigned to another pupil.
	ErrAssigned = errors.New("facereview: already assigned to another pupil")
)

// Audit actions recorded by the store.
const (
	ActionAssign  = "unrecognised_assign"  // "this is <pupil>"; subject pupil:<id>
	ActionDismiss = "unrecognised_dismiss" // "not my pupil"; subject class:<id>
)

// Store is the review store over the hub database. It is safe for
// concurrent use.
type Store struct {
	db     *store.DB
	box    *sealbox.Box
	audit  *audit.Log
	cfg    Config
	log    *slog.Logger
	now    func() time.Time
	notify chan struct{}
}

var _ ingest.TopicHandler = (*Store)(nil)

// New returns the store. key is the hub's template key (32 bytes, from
// facetemplates.LoadKey); al records decisions and purges.
func New(db *store.DB, key []byte, al *audit.Log, cfg Config, log *slog.Logger, now func() time.Time) (*Store, error) {
	if err := cfg.Validate("review"); err != nil {
		return nil, err
	}
	if al == nil {
		return nil, errors.New("facereview: an audit log is required")
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if now == nil {
		now = time.Now
	}
	box, err := sealbox.New(key)
	if err != nil {
		return nil, fmt.Errorf("facereview: %w", err)
	}
	// Deleted crops must not linger in the database's free pages.
	if _, err := db.W.ExecContext(context.Background(), `PRAGMA secure_delete = ON`); err != nil {
		return nil, fmt.Errorf("facereview: secure_delete: %w", err)
	}
	return &Store{db: db, box: box, audit: al, cfg: cfg, log: log, now: now,
		notify: make(chan struct{}, 1)}, nil
}

// cropAD is the associated data of a crop: it binds the ciphertext to its
// school and capture.
func cropAD(school, capture string) []byte {
	return []byte("unrecognised-crop|" + school + "|" + capture)
}

// descAD is the associated data of a descriptor: it binds the ciphertext
// to its school and capture, and it differs from the crop's, so the two
// cannot be swapped.
func descAD(school, capture string) []byte {
	return []byte("unrecognised-descriptor|" + school + "|" + capture)
}

func (s *Store) seal(plain, ad []byte) ([]byte, error) {
	b, err := s.box.Seal(plain, ad)
	if err != nil {
		return nil, fmt.Errorf("facereview: %w", err)
	}
	return b, nil
}

func (s *Store) open(sealed, ad []byte) ([]byte, error) {
	p, err := s.box.Open(sealed, ad)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrUnreadable, err)
	}
	return p, nil
}

// Ingest validates u and stores it in its own transaction, with the hub
// clock as received_at. It reports whether a row was added: false for a
// capture_id already stored (a redelivery: nothing changes). A message the
// hub does not take returns an error wrapping ErrRefused with the reason.
func (s *Store) Ingest(ctx context.Context, u *wire.Unrecognised) (bool, error) {
	if err := u.Validate(); err != nil {
		return false, fmt.Errorf("%w: %w", ErrRefused, err)
	}
	var stored bool
	var reason string
	err := s.db.Tx(ctx, func(tx *sql.Tx) error {
		var err error
		stored, reason, err = s.ingestTx(ctx, tx, u, s.now())
		return err
	})
	if err != nil {
		return false, err
	}
	if reason != "" {
		return false, fmt.Errorf("%w: %s", ErrRefused, reason)
	}
	return stored, nil
}

// ApplyTx implements ingest.TopicHandler for wire.TopicKindUnrecognised:
// the strict decode, the topic/payload and clock checks of events, then
// the same insert as Ingest inside ingest's transaction.
func (s *Store) ApplyTx(ctx context.Context, tx *sql.Tx, m ingest.TopicMessage) (ingest.Result, string, error) {
	u, err := wire.DecodeUnrecognised(m.Payload)
	switch {
	case err != nil:
		return 0, err.Error(), nil
	case u.SchoolID != m.School:
		return 0, fmt.Sprintf("school_id: %q does not match topic school %q", u.SchoolID, m.School), nil
	case u.GateID != m.Gate:
		return 0, fmt.Sprintf("gate_id: %q does not match topic gate %q", u.GateID, m.Gate), nil
	}
	if reason := m.CheckClock(u.CapturedAt); reason != "" {
		return 0, reason, nil
	}
	stored, reason, err := s.ingestTx(ctx, tx, u, m.ReceivedAt)
	switch {
	case err != nil || reason != "":
		return 0, reason, err
	case !stored:
		return ingest.Duplicate, "", nil
	}
	return ingest.Stored, "", nil
}

// ingestTx checks the gate and inserts u unless its capture_id is stored.
// A non-empty reason refuses u (nothing written).
func (s *Store) ingestTx(ctx context.Context, tx *sql.Tx, u *wire.Unrecognised, received time.Time) (bool, string, error) {
	var school string
	var active bool
	err := tx.QueryRowContext(ctx, `SELECT school_id, active FROM gates WHERE id = ?`, u.GateID).Scan(&school, &active)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return false, fmt.Sprintf("gate_id: unknown gate %q", u.GateID), nil
	case err != nil:
		return false, "", fmt.Errorf("facereview: gate lookup: %w", err)
	case school != u.SchoolID:
		return false, fmt.Sprintf("gate_id: gate %q does not belong to school %q", u.GateID, u.SchoolID), nil
	case !active:
		return false, fmt.Sprintf("gate_id: gate %q is not active", u.GateID), nil
	}
	sealed, err := s.seal(u.FaceJPEG, cropAD(u.SchoolID, u.CaptureID))
	if err != nil {
		return false, "", err
	}
	var desc []byte // NULL: the gate sent no descriptor
	if u.Descriptor != nil {
		if desc, err = s.seal(u.Descriptor, descAD(u.SchoolID, u.CaptureID)); err != nil {
			return false, "", err
		}
	}
	q, _ := json.Marshal(u.Quality)
	cands, _ := json.Marshal(u.Candidates)
	var vote any
	if u.Vote != nil {
		b, _ := json.Marshal(u.Vote)
		vote = string(b)
	}
	res, err := tx.ExecContext(ctx, `INSERT INTO unrecognised_faces(capture_id, school_id, gate_id, direction, kind,
		captured_at, received_at, quality, candidates, vote, frames_described, model, gallery_version, crop, descriptor)
		VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?) ON CONFLICT(capture_id) DO NOTHING`,
		u.CaptureID, u.SchoolID, u.GateID, u.Direction, u.Kind, u.CapturedAt, received.UnixMilli(),
		string(q), string(cands), vote, u.FramesDescribed, ModelName(u.Model), u.GalleryVer, sealed, desc)
	if err != nil {
		return false, "", fmt.Errorf("facereview: insert: %w", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, "", fmt.Errorf("facereview: insert: %w", err)
	}
	return n == 1, "", nil
}

// ModelName is how a face records the model of its distances and
// descriptor (Face.Model): name@version, or the name alone.
func ModelName(m match.ModelID) string {
	if m.Version == "" {
		return m.Name
	}
	return m.Name + "@" + m.Version
}
