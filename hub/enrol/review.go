package enrol

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/diemdanh/diemdanh/hub/api"
	"github.com/diemdanh/diemdanh/hub/audit"
	"github.com/diemdanh/diemdanh/hub/facetemplates"
	"github.com/diemdanh/diemdanh/hub/web"
)

// ReviewItem is a template held by the duplicate-identity guard, with the
// pupil it resembles (parsed from the note the guard wrote).
type ReviewItem struct {
	TemplateID      int64   `json:"template_id"`
	PupilID         string  `json:"pupil_id"`
	PupilName       string  `json:"pupil_name"`
	ClassName       string  `json:"class_name"`
	HasPhoto        bool    `json:"has_photo"`
	OtherPupilID    string  `json:"other_pupil_id,omitempty"`
	OtherPupilName  string  `json:"other_pupil_name,omitempty"`
	OtherClassName  string  `json:"other_class_name,omitempty"`
	OtherTemplateID int64   `json:"other_template_id,omitempty"`
	OtherHasPhoto   bool    `json:"other_has_photo"`
	Distance        float64 `json:"distance"`
	CreatedAt       int64   `json:"created_at"`
}

// parseDuplicateNote reads "duplicate_of:P template:N distance:D ..." (the
// note Commit writes on a template it holds for review).
func parseDuplicateNote(note string) (pupil string, tid int64, dist float64) {
	for _, f := range strings.Fields(note) {
		k, v, ok := strings.Cut(f, ":")
		if !ok {
			continue
		}
		switch k {
		case "duplicate_of":
			pupil = v
		case "template":
			tid, _ = strconv.ParseInt(v, 10, 64)
		case "distance":
			dist, _ = strconv.ParseFloat(v, 64)
		}
	}
	return
}

// ReviewQueue lists the templates held for review, oldest first, of
// schoolID ("" = every school).
func (s *Service) ReviewQueue(ctx context.Context, schoolID string) ([]ReviewItem, error) {
	rows, err := s.db.R.QueryContext(ctx, `SELECT t.id, t.pupil_id, p.full_name, COALESCE(c.name, ''), t.photo IS NOT NULL, t.note, t.created_at
		FROM face_templates t JOIN pupils p ON p.id = t.pupil_id LEFT JOIN classes c ON c.id = p.class_id
		WHERE t.status = 'review' AND (? = '' OR p.school_id = ?) ORDER BY t.id LIMIT 1000`, schoolID, schoolID)
	if err != nil {
		return nil, fmt.Errorf("enrol: review queue: %w", err)
	}
	var out []ReviewItem
	for rows.Next() {
		var it ReviewItem
		var note string
		if err := rows.Scan(&it.TemplateID, &it.PupilID, &it.PupilName, &it.ClassName, &it.HasPhoto, &note, &it.CreatedAt); err != nil {
			rows.Close()
			return nil, fmt.Errorf("enrol: review queue: %w", err)
		}
		it.OtherPupilID, it.OtherTemplateID, it.Distance = parseDuplicateNote(note)
		out = append(out, it)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("enrol: review queue: %w", err)
	}
	for i := range out {
		it := &out[i]
		if it.OtherPupilID != "" {
			_ = s.db.R.QueryRowContext(ctx, `SELECT p.full_name, COALESCE(c.name, '') FROM pupils p LEFT JOIN classes c ON c.id = p.class_id WHERE p.id = ?`,
				it.OtherPupilID).Scan(&it.OtherPupilName, &it.OtherClassName)
		}
		if it.OtherTemplateID != 0 {
			_ = s.db.R.QueryRowContext(ctx, `SELECT photo IS NOT NULL FROM face_templates WHERE id = ?`, it.OtherTemplateID).Scan(&it.OtherHasPhoto)
		}
	}
	return out, nil
}

// reviewTarget loads a template of schoolID ("" = any school); another
// school's template is "not found".
func (s *Service) reviewTarget(ctx context.Context, schoolID string, id int64) (facetemplates.Info, error) {
	in, err := s.tpl.Get(ctx, id)
	if err != nil {
		return in, mapTpl(err)
	}
	if schoolID != "" {
		var sc string
		if err := s.db.R.QueryRowContext(ctx, `SELECT school_id FROM pupils WHERE id = ?`, in.PupilID).Scan(&sc); err != nil || sc != schoolID {
			return in, &api.Error{Code: api.CodeNotFound, Message: "not found"}
		}
	}
	return in, nil
}

var errNotInReview = &api.Error{Code: api.CodeConflict, Message: "the template is not waiting for review"}

// ApproveReview lets a template held by the duplicate guard into the
// gallery (the gallery version is bumped, gates fetch it at their next
// sync). Audited. Only templates in review can be approved.
func (s *Service) ApproveReview(ctx context.Context, actor, ip, schoolID string, id int64) error {
	s.commit.Lock()
	defer s.commit.Unlock()
	in, err := s.reviewTarget(ctx, schoolID, id)
	if err != nil {
		return err
	}
	if in.Status != facetemplates.StatusReview {
		return errNotInReview
	}
	dup, _, _ := strings.Cut(in.Note, "src:")
	note := strings.TrimSpace("approved_by:" + actor + " " + dup)
	if err := s.tpl.SetStatus(ctx, id, facetemplates.StatusActive, note); err != nil {
		return mapTpl(err)
	}
	return s.audit.Record(ctx, actor, audit.ActionTemplateStatus, "pupil:"+in.PupilID,
		map[string]any{"template_id": id, "from": in.Status, "to": facetemplates.StatusActive, "review": "approved"}, ip)
}

// RejectReview deletes a template held by the duplicate guard (it never
// reached the gallery, so gates are unaffected). Audited. Only templates
// in review can be rejected.
func (s *Service) RejectReview(ctx context.Context, actor, ip, schoolID string, id int64) error {
	s.commit.Lock()
	defer s.commit.Unlock()
	in, err := s.reviewTarget(ctx, schoolID, id)
	if err != nil {
		return err
	}
	if in.Status != facetemplates.StatusReview {
		return errNotInReview
	}
	other, otherTpl, dist := parseDuplicateNote(in.Note)
	return s.db.Tx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `DELETE FROM face_templates WHERE id = ? AND status = 'review'`, id)
		if err != nil {
			return fmt.Errorf("enrol: reject review: %w", err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return errNotInReview
		}
		return s.audit.RecordTx(ctx, tx, actor, audit.ActionDelete, "pupil:"+in.PupilID,
			map[string]any{"what": "template", "template_id": id, "review": "rejected",
				"duplicate_of": other, "duplicate_template": otherTpl, "distance": dist}, ip)
	})
}

// ViewPhoto returns a template's stored enrolment photo for an admin and
// audits the view. ErrNotFound-coded when no photo was kept.
func (s *Service) ViewPhoto(ctx context.Context, actor, ip, schoolID string, id int64) ([]byte, error) {
	in, err := s.reviewTarget(ctx, schoolID, id)
	if err != nil {
		return nil, err
	}
	b, err := s.tpl.Photo(ctx, id)
	if err != nil {
		if errors.Is(err, facetemplates.ErrNotFound) {
			return nil, mapTpl(err)
		}
		return nil, err
	}
	if err := s.audit.Record(ctx, actor, audit.ActionPhotoView, "pupil:"+in.PupilID, map[string]any{"template_id": id, "via": "review page"}, ip); err != nil {
		return nil, err
	}
	return b, nil
}

// WebReview adapts Service to hub/web's Reviewer (the admin's review
// page): the same methods the API's review routes use.
type WebReview struct{ S *Service }

// ReviewQueue implements web.Reviewer.
func (w WebReview) ReviewQueue(ctx context.Context, schoolID string) ([]web.ReviewItem, error) {
	l, err := w.S.ReviewQueue(ctx, schoolID)
	if err != nil {
		return nil, err
	}
	out := make([]web.ReviewItem, len(l))
	for i, it := range l {
		out[i] = web.ReviewItem{TemplateID: it.TemplateID, PupilID: it.PupilID, PupilName: it.PupilName, ClassName: it.ClassName,
			HasPhoto: it.HasPhoto, OtherPupilID: it.OtherPupilID, OtherPupilName: it.OtherPupilName, OtherClassName: it.OtherClassName,
			OtherTemplateID: it.OtherTemplateID, OtherHasPhoto: it.OtherHasPhoto, Distance: it.Distance, CreatedAt: it.CreatedAt}
	}
	return out, nil
}

// ApproveTemplate implements web.Reviewer.
func (w WebReview) ApproveTemplate(ctx context.Context, schoolID string, id int64, actor, ip string) error {
	return w.S.ApproveReview(ctx, actor, ip, schoolID, id)
}

// RejectTemplate implements web.Reviewer.
func (w WebReview) RejectTemplate(ctx context.Context, schoolID string, id int64, actor, ip string) error {
	return w.S.RejectReview(ctx, actor, ip, schoolID, id)
}

// TemplatePhoto implements web.Reviewer (every view audited).
func (w WebReview) TemplatePhoto(ctx context.Context, schoolID string, id int64, actor, ip string) ([]byte, error) {
	return w.S.ViewPhoto(ctx, actor, ip, schoolID, id)
}
