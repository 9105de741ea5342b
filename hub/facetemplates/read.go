package facetemplates

// The read side of the store: the gallery served to gates, the decrypted
// entries the hub compares against, and template listings.

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"sort"

	"github.com/diemdanh/diemdanh/models/match"
	"github.com/diemdanh/diemdanh/models/wire"
)

// ActiveDescriptors returns the current model and, per pupil ID, the
// decrypted active templates of that model (enrolment and gate templates
// not expired) for school's pupils that are active and not on manual
// attendance: exactly what the gates must hold.
func (s *Store) ActiveDescriptors(ctx context.Context, schoolID string) (match.ModelID, map[string][]match.Descriptor, error) {
	model := s.model
	rows, err := s.db.R.QueryContext(ctx, `SELECT t.pupil_id, t.descriptor FROM face_templates t
		JOIN pupils p ON p.id = t.pupil_id
		WHERE p.school_id = ? AND p.active = 1 AND p.manual_attendance = 0 AND t.status = 'active' AND t.model = ?
		AND (t.expires_at IS NULL OR t.expires_at > ?)
		ORDER BY `+servedOrder, schoolID, model.String(), s.now().UnixMilli())
	if err != nil {
		return model, nil, fmt.Errorf("templates: active: %w", err)
	}
	defer rows.Close()
	out := map[string][]match.Descriptor{}
	for rows.Next() {
		var pid string
		var sealed []byte
		if err := rows.Scan(&pid, &sealed); err != nil {
			return model, nil, fmt.Errorf("templates: active: %w", err)
		}
		d, err := s.decodeDesc(pid, model.String(), sealed)
		if err != nil {
			return model, nil, err
		}
		if len(out[pid]) < wire.MaxDescriptorsPerPerson {
			out[pid] = append(out[pid], d)
		}
	}
	return model, out, rows.Err()
}

// OtherModels counts, per model, the active templates of school's active
// pupils made by another model than the current one: they are kept (a
// re-embed or a model switch back uses them) but never served.
func (s *Store) OtherModels(ctx context.Context, schoolID string) (map[string]int, error) {
	rows, err := s.db.R.QueryContext(ctx, `SELECT t.model, count(*) FROM face_templates t
		JOIN pupils p ON p.id = t.pupil_id
		WHERE p.school_id = ? AND p.active = 1 AND t.status = 'active' AND t.model != ?
		GROUP BY t.model ORDER BY t.model`, schoolID, s.model.String())
	if err != nil {
		return nil, fmt.Errorf("templates: other models: %w", err)
	}
	defer rows.Close()
	out := map[string]int{}
	for rows.Next() {
		var m string
		var n int
		if err := rows.Scan(&m, &n); err != nil {
			return nil, fmt.Errorf("templates: other models: %w", err)
		}
		out[m] = n
	}
	return out, rows.Err()
}

// OlderVersions counts the templates of an earlier version of the current
// embedder (same name, another version) that Reembed has not rebuilt yet:
// after an upgrade of the model's version, the gates would otherwise get
// galleries without those pupils.
func (s *Store) OlderVersions(ctx context.Context) (int, error) {
	var n int
	err := s.db.R.QueryRowContext(ctx, `SELECT count(*) FROM face_templates t
		WHERE t.model != ? AND substr(t.model, 1, ?) = ? AND t.status != 'excluded'
		AND NOT EXISTS (SELECT 1 FROM face_templates n WHERE n.pupil_id = t.pupil_id AND n.model = ? AND n.note = 'reembed:' || t.id)`,
		s.model.String(), len(s.model.Name)+1, s.model.Name+"@", s.model.String()).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("templates: older versions: %w", err)
	}
	return n, nil
}

// Gallery builds the GalleryDoc for school at its current version.
func (s *Store) Gallery(ctx context.Context, schoolID string) (*wire.GalleryDoc, error) {
	v, err := s.Version(ctx, schoolID)
	if err != nil {
		return nil, err
	}
	model, m, err := s.ActiveDescriptors(ctx, schoolID)
	if err != nil {
		return nil, err
	}
	g := match.NewGallery(v, model)
	ids := make([]string, 0, len(m))
	for id := range m {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		for _, d := range m[id] {
			if err := g.Add(id, d); err != nil {
				return nil, fmt.Errorf("templates: gallery: %w", err)
			}
		}
	}
	return wire.DocFromGallery(schoolID, g), nil
}

func (s *Store) decodeDesc(pupil, model string, sealed []byte) (match.Descriptor, error) {
	b, err := s.open(sealed, descAD(pupil, model))
	if err != nil {
		return nil, err
	}
	return match.DescriptorFromBytes(b)
}

// Entry is one decrypted template, for comparisons on the hub.
type Entry struct {
	ID         int64
	PupilID    string
	Status     string
	Source     string
	Descriptor match.Descriptor
}

// Entries returns every non-excluded, unexpired template of the current
// model for school's active pupils (the duplicate guard compares against
// these).
func (s *Store) Entries(ctx context.Context, schoolID string) ([]Entry, error) {
	model := s.model.String()
	rows, err := s.db.R.QueryContext(ctx, `SELECT t.id, t.pupil_id, t.status, t.source, t.descriptor FROM face_templates t
		JOIN pupils p ON p.id = t.pupil_id
		WHERE p.school_id = ? AND p.active = 1 AND t.status != 'excluded' AND t.model = ?
		AND (t.expires_at IS NULL OR t.expires_at > ?) ORDER BY t.id`, schoolID, model, s.now().UnixMilli())
	if err != nil {
		return nil, fmt.Errorf("templates: entries: %w", err)
	}
	defer rows.Close()
	var out []Entry
	for rows.Next() {
		var e Entry
		var sealed []byte
		if err := rows.Scan(&e.ID, &e.PupilID, &e.Status, &e.Source, &sealed); err != nil {
			return nil, fmt.Errorf("templates: entries: %w", err)
		}
		if e.Descriptor, err = s.decodeDesc(e.PupilID, model, sealed); err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	return out, rows.Err()
}

// Info describes a template without its secrets.
type Info struct {
	ID        int64         `json:"id"`
	PupilID   string        `json:"pupil_id"`
	Model     string        `json:"model"`
	Quality   match.Quality `json:"quality"`
	HasPhoto  bool          `json:"has_photo"`
	Status    string        `json:"status"`
	Note      string        `json:"note,omitempty"`
	CreatedAt int64         `json:"created_at"`
	Source    string        `json:"source"`               // enrolment, teacher, automatic
	EventID   string        `json:"event_id,omitempty"`   // the event a gate template came from
	ExpiresAt int64         `json:"expires_at,omitempty"` // Unix ms; 0 = never
}

// List returns pupilID's templates (all models and statuses).
func (s *Store) List(ctx context.Context, pupilID string) ([]Info, error) {
	return s.listWhere(ctx, `t.pupil_id = ?`, pupilID)
}

// ListReview returns school's templates held for review.
func (s *Store) ListReview(ctx context.Context, schoolID string) ([]Info, error) {
	return s.listWhere(ctx, `t.status = 'review' AND p.school_id = ?`, schoolID)
}

func (s *Store) listWhere(ctx context.Context, where string, args ...any) ([]Info, error) {
	rows, err := s.db.R.QueryContext(ctx, `SELECT t.id, t.pupil_id, t.model, t.quality, t.photo IS NOT NULL, t.status, t.note, t.created_at,
		t.source, COALESCE(t.event_id, ''), COALESCE(t.expires_at, 0)
		FROM face_templates t JOIN pupils p ON p.id = t.pupil_id WHERE `+where+` ORDER BY t.id`, args...)
	if err != nil {
		return nil, fmt.Errorf("templates: list: %w", err)
	}
	defer rows.Close()
	out := []Info{}
	for rows.Next() {
		var in Info
		var qj string
		if err := rows.Scan(&in.ID, &in.PupilID, &in.Model, &qj, &in.HasPhoto, &in.Status, &in.Note, &in.CreatedAt,
			&in.Source, &in.EventID, &in.ExpiresAt); err != nil {
			return nil, fmt.Errorf("templates: list: %w", err)
		}
		_ = json.Unmarshal([]byte(qj), &in.Quality)
		out = append(out, in)
	}
	return out, rows.Err()
}

// Get returns one template's info.
func (s *Store) Get(ctx context.Context, id int64) (Info, error) {
	l, err := s.listWhere(ctx, `t.id = ?`, id)
	if err != nil {
		return Info{}, err
	}
	if len(l) == 0 {
		return Info{}, fmt.Errorf("%w: template %d", ErrNotFound, id)
	}
	return l[0], nil
}

// Descriptor returns one template's decrypted descriptor.
func (s *Store) Descriptor(ctx context.Context, id int64) (match.Descriptor, error) {
	var pid, model string
	var sealed []byte
	err := s.db.R.QueryRowContext(ctx, `SELECT pupil_id, model, descriptor FROM face_templates WHERE id = ?`, id).Scan(&pid, &model, &sealed)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("%w: template %d", ErrNotFound, id)
	}
	if err != nil {
		return nil, fmt.Errorf("templates: %w", err)
	}
	return s.decodeDesc(pid, model, sealed)
}

// Photo returns one template's decrypted photo, or ErrNotFound when none
// was kept. Callers must audit the view.
func (s *Store) Photo(ctx context.Context, id int64) ([]byte, error) {
	var pid, model string
	var sealed []byte
	err := s.db.R.QueryRowContext(ctx, `SELECT pupil_id, model, photo FROM face_templates WHERE id = ?`, id).Scan(&pid, &model, &sealed)
	if errors.Is(err, sql.ErrNoRows) || (err == nil && sealed == nil) {
		return nil, fmt.Errorf("%w: photo of template %d", ErrNotFound, id)
	}
	if err != nil {
		return nil, fmt.Errorf("templates: %w", err)
	}
	return s.open(sealed, photoAD(pid, model))
}
