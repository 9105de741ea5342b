package facetemplates

import (
	"context"
	"database/sql"
	"fmt"
	"sort"

	"github.com/diemdanh/diemdanh/hub/audit"
	"github.com/diemdanh/diemdanh/hub/roster"
	"github.com/diemdanh/diemdanh/models/match"
)

// Embedder computes descriptors from photos (faceengine.Engine satisfies it).
type Embedder interface {
	Model() match.ModelID
	Recognize(ctx context.Context, b []byte) ([]match.Face, error)
}

// ReembedReport summarises a model change.
type ReembedReport struct {
	Model      string   `json:"model"`
	Reembedded int      `json:"reembedded"`
	Flagged    []string `json:"flagged"` // pupils to re-enrol (no photo kept, or no face found again)
	// GateDeleted counts gate templates deleted because their capture was
	// not kept or no face was found in it again (they are not flagged).
	GateDeleted int `json:"gate_deleted"`
}

// oldTemplate is a template of another model that Reembed rebuilds.
type oldTemplate struct {
	id                           int64
	pupil, model, status, school string
	source, event                string
	expires, created             int64
	photo                        []byte
}

// Reembed switches the store to emb's model: every template of another
// model that kept its photo (or, for a gate template, its capture) gets a
// new template from emb. An old enrolment template is kept, unused, until
// the pupil is deleted; pupils with no usable enrolment photo are flagged
// needs_reenrol=1. An old gate template is replaced by its new one (same
// source, event, time and expiry) or, with no capture kept or no face
// found in it, deleted; gate templates never flag a pupil. Gallery
// versions of the affected schools bump.
// The kept photo passed enrolment with one usable face, but another
// model's detector may see more (YuNet finds blurred and cut-off faces at
// a photo's edge that dlib's HOG missed): the face used is the one
// match.DefaultQualityPolicy's Check picks (with one face, that face),
// and the pupil is flagged when it picks none.
func (s *Store) Reembed(ctx context.Context, emb Embedder) (ReembedReport, error) {
	model := emb.Model()
	rep := ReembedReport{Model: model.String(), Flagged: []string{}}
	s.SetModel(model)
	olds, err := s.reembedCandidates(ctx, model)
	if err != nil {
		return rep, err
	}
	flagged := map[string]bool{}
	ok := map[string]bool{}
	schools := map[string]bool{}
	var dropped []int64
	for _, o := range olds {
		schools[o.school] = true
		f, jpg, found, err := s.reembedFace(ctx, emb, o)
		if err != nil {
			return rep, err
		}
		switch {
		case !found && o.source == SourceEnrolment:
			flagged[o.pupil] = true
		case !found:
			dropped = append(dropped, o.id)
		default:
			if err := s.reembedOne(ctx, o, f, jpg, model); err != nil {
				return rep, err
			}
			if o.source == SourceEnrolment {
				ok[o.pupil] = true
			}
			rep.Reembedded++
		}
	}
	if err := s.reembedFinish(ctx, &rep, flagged, ok, schools, dropped); err != nil {
		return rep, err
	}
	for sc := range schools {
		s.notify(ctx, sc)
	}
	s.log.Info("templates re-embedded", "model", rep.Model, "reembedded", rep.Reembedded, "flagged", len(rep.Flagged),
		"gate_deleted", rep.GateDeleted)
	return rep, nil
}

// NotReembedded counts the templates of another model than the current
// one, not excluded, that Reembed has not rebuilt yet (what it would
// rebuild now).
func (s *Store) NotReembedded(ctx context.Context) (int, error) {
	var n int
	model := s.Model().String()
	err := s.db.R.QueryRowContext(ctx, `SELECT count(*) FROM face_templates t
		WHERE t.model != ? AND t.status != 'excluded'
		AND NOT EXISTS (SELECT 1 FROM face_templates n WHERE n.pupil_id = t.pupil_id AND n.model = ? AND n.note = 'reembed:' || t.id)`,
		model, model).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("templates: not re-embedded: %w", err)
	}
	return n, nil
}

// reembedCandidates lists the templates of another model not excluded and
// not re-embedded yet.
func (s *Store) reembedCandidates(ctx context.Context, model match.ModelID) ([]oldTemplate, error) {
	rows, err := s.db.R.QueryContext(ctx, `SELECT t.id, t.pupil_id, t.model, t.photo, t.status, p.school_id, t.source,
		COALESCE(t.event_id, ''), COALESCE(t.expires_at, 0), t.created_at FROM face_templates t
		JOIN pupils p ON p.id = t.pupil_id
		WHERE t.model != ? AND t.status != 'excluded'
		AND NOT EXISTS (SELECT 1 FROM face_templates n WHERE n.pupil_id = t.pupil_id AND n.model = ? AND n.note = 'reembed:' || t.id)
		ORDER BY t.id`, model.String(), model.String())
	if err != nil {
		return nil, fmt.Errorf("templates: reembed: %w", err)
	}
	defer rows.Close()
	var olds []oldTemplate
	for rows.Next() {
		var o oldTemplate
		if err := rows.Scan(&o.id, &o.pupil, &o.model, &o.photo, &o.status, &o.school, &o.source, &o.event,
			&o.expires, &o.created); err != nil {
			return nil, fmt.Errorf("templates: reembed: %w", err)
		}
		olds = append(olds, o)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("templates: reembed: %w", err)
	}
	return olds, nil
}

// reembedFace finds the face of o's kept photo with emb; found is false
// when no photo was kept or no usable face is found in it.
func (s *Store) reembedFace(ctx context.Context, emb Embedder, o oldTemplate) (f match.Face, jpg []byte, found bool, err error) {
	if o.photo == nil {
		return f, nil, false, nil
	}
	if jpg, err = s.open(o.photo, photoAD(o.pupil, o.model)); err != nil {
		return f, nil, false, err
	}
	faces, err := emb.Recognize(ctx, jpg)
	if err != nil {
		return f, nil, false, nil
	}
	f, found = PickFace(faces)
	return f, jpg, found, nil
}

// PickFace is the face of a kept photo that a model re-embeds: with one
// face, that face (the one enrolment or the gate accepted); with several,
// the one match.DefaultQualityPolicy's Check picks; ok is false with none,
// or when the policy picks none.
func PickFace(faces []match.Face) (match.Face, bool) {
	switch len(faces) {
	case 0:
		return match.Face{}, false
	case 1:
		return faces[0], true
	}
	qv := match.DefaultQualityPolicy().Check(faces)
	if !qv.OK {
		return match.Face{}, false
	}
	return faces[qv.Face], true
}

// reembedOne stores o's new template from face f of its photo jpg. A gate
// template's new template keeps its source, event, time and expiry and
// replaces it in the same transaction.
func (s *Store) reembedOne(ctx context.Context, o oldTemplate, f match.Face, jpg []byte, model match.ModelID) error {
	t := New{PupilID: o.pupil, Descriptor: f.Descriptor, Model: model, Quality: f.Quality, Photo: jpg,
		Status: o.status, Note: fmt.Sprintf("reembed:%d", o.id), Source: o.source}
	if o.source != SourceEnrolment {
		t.EventID, t.ExpiresAt, t.CreatedAt = o.event, o.expires, o.created
	}
	return s.db.Tx(ctx, func(tx *sql.Tx) error {
		if _, _, err := s.AddTx(ctx, tx, t); err != nil {
			return err
		}
		if o.source == SourceEnrolment {
			return nil
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM face_templates WHERE id = ?`, o.id); err != nil {
			return fmt.Errorf("templates: reembed: %w", err)
		}
		return nil
	})
}

// reembedFinish flags the pupils none of whose enrolment photos worked,
// deletes the gate templates that could not be re-embedded and bumps the
// schools' gallery versions, in one transaction.
func (s *Store) reembedFinish(ctx context.Context, rep *ReembedReport, flagged, ok, schools map[string]bool, dropped []int64) error {
	err := s.db.Tx(ctx, func(tx *sql.Tx) error {
		for p := range flagged {
			if ok[p] {
				continue // another photo of the pupil worked
			}
			// Audited in the report's entry (hub/enrol: template_status).
			if _, err := roster.MarkReenrolTx(ctx, tx, p, true, s.now(), roster.RecordedBy(audit.ActionTemplateStatus)); err != nil {
				return fmt.Errorf("templates: flag: %w", err)
			}
			rep.Flagged = append(rep.Flagged, p)
		}
		for _, id := range dropped {
			if _, err := tx.ExecContext(ctx, `DELETE FROM face_templates WHERE id = ?`, id); err != nil {
				return fmt.Errorf("templates: reembed: %w", err)
			}
		}
		rep.GateDeleted = len(dropped)
		for sc := range schools {
			if err := s.BumpTx(ctx, tx, sc); err != nil {
				return err
			}
		}
		return nil
	})
	sort.Strings(rep.Flagged)
	return err
}
