package facetemplates

import (
	"context"
	"fmt"
)

// KeptRef names one kept enrolment photo (open it with Photo).
type KeptRef struct {
	TemplateID int64
	PupilID    string
}

// KeptPhotos lists what a trial of another model can run on in school:
// the active enrolment templates of the current model whose photo was
// kept, of active pupils, ordered by pupil then template; and how many
// active pupils with an active enrolment template of the current model
// have no kept photo (a switch of model would flag them for re-enrolment).
// The photos stay sealed until Photo opens one.
func (s *Store) KeptPhotos(ctx context.Context, school string) ([]KeptRef, int, error) {
	model := s.Model().String()
	rows, err := s.db.R.QueryContext(ctx, `SELECT t.id, t.pupil_id FROM face_templates t JOIN pupils p ON p.id = t.pupil_id
		WHERE p.school_id = ? AND p.active = 1 AND t.model = ? AND t.source = ? AND t.status = 'active' AND t.photo IS NOT NULL
		ORDER BY t.pupil_id, t.id`, school, model, SourceEnrolment)
	if err != nil {
		return nil, 0, fmt.Errorf("templates: kept photos: %w", err)
	}
	defer rows.Close()
	var out []KeptRef
	for rows.Next() {
		var r KeptRef
		if err := rows.Scan(&r.TemplateID, &r.PupilID); err != nil {
			return nil, 0, fmt.Errorf("templates: kept photos: %w", err)
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, 0, fmt.Errorf("templates: kept photos: %w", err)
	}
	var without int
	err = s.db.R.QueryRowContext(ctx, `SELECT count(DISTINCT t.pupil_id) FROM face_templates t JOIN pupils p ON p.id = t.pupil_id
		WHERE p.school_id = ? AND p.active = 1 AND t.model = ? AND t.source = ? AND t.status = 'active'
		AND NOT EXISTS (SELECT 1 FROM face_templates k WHERE k.pupil_id = t.pupil_id AND k.model = t.model
			AND k.source = t.source AND k.status = 'active' AND k.photo IS NOT NULL)`,
		school, model, SourceEnrolment).Scan(&without)
	if err != nil {
		return nil, 0, fmt.Errorf("templates: kept photos: %w", err)
	}
	return out, without, nil
}
