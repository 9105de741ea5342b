package facereview

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/diemdanh/diemdanh/models/match"
	"github.com/diemdanh/diemdanh/models/wire"
)

// Statuses of a face. StatusDismissed is per class (Face.StatusFor).
const (
	StatusOpen      = "open"      // nobody has named it
	StatusAssigned  = "assigned"  // a teacher said "this is <pupil>"
	StatusDismissed = "dismissed" // "not my pupil" for the class asked about
)

// Face is one stored face, without its crop (Crop decrypts it on demand).
type Face struct {
	ID              int64            `json:"id"`
	CaptureID       string           `json:"capture_id"`
	SchoolID        string           `json:"school_id"`
	GateID          string           `json:"gate_id"`
	Direction       string           `json:"direction"`
	Kind            string           `json:"kind"`        // wire.KindUnrecognised or wire.KindNearMiss
	CapturedAt      int64            `json:"captured_at"` // gate clock, Unix ms
	ReceivedAt      int64            `json:"received_at"` // hub clock, Unix ms
	Quality         match.Quality    `json:"quality"`
	Candidates      []wire.Candidate `json:"candidates"` // nearest first
	Vote            *wire.Candidate  `json:"vote,omitempty"`
	FramesDescribed int              `json:"frames_described"`
	Model           string           `json:"model"` // name@version
	GalleryVersion  int64            `json:"gallery_version"`
	// HasDescriptor: the gate sent the crop's descriptor, so the capture
	// can become a gate template (Store.Descriptor decrypts it).
	HasDescriptor bool     `json:"has_descriptor"`
	Status        string   `json:"status"`               // StatusOpen or StatusAssigned
	PupilID       string   `json:"pupil_id,omitempty"`   // when assigned
	DecidedBy     string   `json:"decided_by,omitempty"` // who assigned it
	DecidedAt     int64    `json:"decided_at,omitempty"` // hub clock, Unix ms
	DismissedFor  []string `json:"dismissed_for"`        // classes that said "not my pupil", sorted
}

// StatusFor is the face's status on the board of class: assigned, else
// dismissed when that class dismissed it, else open.
func (f Face) StatusFor(classID string) string {
	switch {
	case f.Status == StatusAssigned:
		return StatusAssigned
	case slices.Contains(f.DismissedFor, classID):
		return StatusDismissed
	}
	return StatusOpen
}

const faceCols = `f.id, f.capture_id, f.school_id, f.gate_id, f.direction, f.kind, f.captured_at, f.received_at,
	f.quality, f.candidates, f.vote, f.frames_described, f.model, f.gallery_version, f.status, f.pupil_id,
	f.decided_by, f.decided_at, f.descriptor IS NOT NULL, (SELECT group_concat(class_id, char(31)) FROM
	(SELECT d.class_id FROM unrecognised_dismissals d WHERE d.face_id = f.id ORDER BY d.class_id))`

type scanner interface{ Scan(dest ...any) error }

func scanFace(r scanner) (Face, error) {
	var f Face
	var q, cands string
	var vote, pupil, dismissed sql.NullString
	var decidedAt sql.NullInt64
	if err := r.Scan(&f.ID, &f.CaptureID, &f.SchoolID, &f.GateID, &f.Direction, &f.Kind, &f.CapturedAt, &f.ReceivedAt,
		&q, &cands, &vote, &f.FramesDescribed, &f.Model, &f.GalleryVersion, &f.Status, &pupil,
		&f.DecidedBy, &decidedAt, &f.HasDescriptor, &dismissed); err != nil {
		return f, err
	}
	if err := json.Unmarshal([]byte(q), &f.Quality); err != nil {
		return f, fmt.Errorf("facereview: face %d quality: %w", f.ID, err)
	}
	if err := json.Unmarshal([]byte(cands), &f.Candidates); err != nil {
		return f, fmt.Errorf("facereview: face %d candidates: %w", f.ID, err)
	}
	if vote.Valid {
		f.Vote = new(wire.Candidate)
		if err := json.Unmarshal([]byte(vote.String), f.Vote); err != nil {
			return f, fmt.Errorf("facereview: face %d vote: %w", f.ID, err)
		}
	}
	f.PupilID, f.DecidedAt = pupil.String, decidedAt.Int64
	f.DismissedFor = []string{}
	if dismissed.String != "" {
		f.DismissedFor = strings.Split(dismissed.String, "\x1f")
	}
	return f, nil
}

// Get returns face id.
func (s *Store) Get(ctx context.Context, id int64) (Face, error) {
	f, err := scanFace(s.db.R.QueryRowContext(ctx, `SELECT `+faceCols+` FROM unrecognised_faces f WHERE f.id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return f, fmt.Errorf("%w: face %d", ErrNotFound, id)
	}
	if err != nil {
		return f, fmt.Errorf("facereview: get: %w", err)
	}
	return f, nil
}

// List returns the faces of school captured on day (YYYY-MM-DD, the
// school's local day, by the gate's clock as attendance counts it), at
// gateIDs, newest first. No gate IDs means every gate of the school (the
// admin's view); a teacher's board passes the gates that serve the class.
func (s *Store) List(ctx context.Context, school string, gateIDs []string, day string) ([]Face, error) {
	loc := s.location(ctx, school)
	d, err := time.ParseInLocation("2006-01-02", day, loc)
	if err != nil {
		return nil, fmt.Errorf("%w: day %q: want YYYY-MM-DD", ErrInvalid, day)
	}
	q := `SELECT ` + faceCols + ` FROM unrecognised_faces f WHERE f.school_id = ? AND f.captured_at >= ? AND f.captured_at < ?`
	args := []any{school, d.UnixMilli(), d.AddDate(0, 0, 1).UnixMilli()}
	if len(gateIDs) > 0 {
		q += ` AND f.gate_id IN (?` + strings.Repeat(",?", len(gateIDs)-1) + `)`
		for _, g := range gateIDs {
			args = append(args, g)
		}
	}
	rows, err := s.db.R.QueryContext(ctx, q+` ORDER BY f.captured_at DESC, f.id DESC`, args...)
	if err != nil {
		return nil, fmt.Errorf("facereview: list: %w", err)
	}
	defer rows.Close()
	out := []Face{}
	for rows.Next() {
		f, err := scanFace(rows)
		if err != nil {
			return nil, fmt.Errorf("facereview: list: %w", err)
		}
		out = append(out, f)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("facereview: list: %w", err)
	}
	return out, nil
}

// Crop decrypts the face crop (JPEG) of face id.
func (s *Store) Crop(ctx context.Context, id int64) ([]byte, error) {
	var school, capture string
	var sealed []byte
	err := s.db.R.QueryRowContext(ctx, `SELECT school_id, capture_id, crop FROM unrecognised_faces WHERE id = ?`, id).
		Scan(&school, &capture, &sealed)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("%w: face %d", ErrNotFound, id)
	}
	if err != nil {
		return nil, fmt.Errorf("facereview: crop: %w", err)
	}
	return s.open(sealed, cropAD(school, capture))
}

// Descriptor decrypts the descriptor the gate sent with face id's crop;
// nil when it sent none.
func (s *Store) Descriptor(ctx context.Context, id int64) (match.Descriptor, error) {
	var school, capture string
	var sealed []byte
	err := s.db.R.QueryRowContext(ctx, `SELECT school_id, capture_id, descriptor FROM unrecognised_faces WHERE id = ?`, id).
		Scan(&school, &capture, &sealed)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("%w: face %d", ErrNotFound, id)
	}
	if err != nil {
		return nil, fmt.Errorf("facereview: descriptor: %w", err)
	}
	if sealed == nil {
		return nil, nil
	}
	b, err := s.open(sealed, descAD(school, capture))
	if err != nil {
		return nil, err
	}
	d, err := match.DescriptorFromBytes(b)
	if err != nil {
		return nil, fmt.Errorf("facereview: descriptor of face %d: %w", id, err)
	}
	return d, nil
}

// LocalDay is the school's local day (YYYY-MM-DD) of f's capture, the
// day attendance counts it in.
func (s *Store) LocalDay(ctx context.Context, f Face) string {
	return time.UnixMilli(f.CapturedAt).In(s.location(ctx, f.SchoolID)).Format("2006-01-02")
}

// location is the school's time zone (Asia/Ho_Chi_Minh when unknown),
// read at each call so a change of the school's zone applies at once.
func (s *Store) location(ctx context.Context, school string) *time.Location {
	var name string
	if err := s.db.R.QueryRowContext(ctx, `SELECT timezone FROM schools WHERE id = ?`, school).Scan(&name); err != nil {
		name = "Asia/Ho_Chi_Minh"
	}
	loc, err := time.LoadLocation(name)
	if err != nil {
		loc = time.FixedZone("ICT", 7*3600)
	}
	return loc
}
