package facetemplates

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/diemdanh/diemdanh/hub/store"
)

// rowQuerier is *sql.DB or *sql.Tx.
type rowQuerier interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// pausedUntil reports whether automatic templates of pupilID are paused
// at now, and until when.
func pausedUntil(ctx context.Context, q rowQuerier, pupilID string, now time.Time) (time.Time, bool, error) {
	var until int64
	err := q.QueryRowContext(ctx, `SELECT until FROM gate_template_pauses WHERE pupil_id = ? AND until > ?`, pupilID, now.UnixMilli()).Scan(&until)
	if errors.Is(err, sql.ErrNoRows) {
		return time.Time{}, false, nil
	}
	if err != nil {
		return time.Time{}, false, fmt.Errorf("templates: pause: %w", err)
	}
	return time.UnixMilli(until), true, nil
}

// AutomaticAllowed reports whether an automatic gate template may be
// added for pupilID at now: the consent in force allows gate templates
// and no "not this pupil" pause is running. (AddGateTemplate checks the
// same, and the pupil's own consent from age 7, in its transaction.)
func (s *Store) AutomaticAllowed(ctx context.Context, pupilID string, now time.Time) (bool, error) {
	var allowed bool
	err := s.db.R.QueryRowContext(ctx, `SELECT `+GateTemplatesAllowed("p.id")+` FROM pupils p WHERE p.id = ?`, pupilID).Scan(&allowed)
	if errors.Is(err, sql.ErrNoRows) {
		return false, fmt.Errorf("%w: pupil %s", ErrNotFound, pupilID)
	}
	if err != nil {
		return false, fmt.Errorf("templates: automatic allowed: %w", err)
	}
	if !allowed {
		return false, nil
	}
	_, paused, err := pausedUntil(ctx, s.db.R, pupilID, now)
	return !paused && err == nil, err
}

// RemoveResult says what RemoveFromEvent did.
type RemoveResult struct {
	Removed     int64    `json:"removed"`      // gate templates deleted
	Paused      []string `json:"paused"`       // pupils whose automatic templates are paused
	PausedUntil int64    `json:"paused_until"` // Unix ms
	// Schools whose gallery version was bumped (notify them after the
	// commit of RemoveFromEventTx).
	Schools []string `json:"-"`
}

// RemoveFromEvent is "not this pupil" on eventID for the gate templates:
// it deletes every gate template added from the event and pauses
// automatic templates, for GateConfig.AutomaticPause, of the pupil the
// event named and of the pupils those templates belonged to. An event
// that names no known pupil and gave no template is ErrNotFound.
func (s *Store) RemoveFromEvent(ctx context.Context, eventID, actor string) (RemoveResult, error) {
	var res RemoveResult
	err := s.db.Tx(ctx, func(tx *sql.Tx) error {
		var err error
		res, err = s.RemoveFromEventTx(ctx, tx, eventID, actor)
		return err
	})
	if err != nil {
		return res, err
	}
	for _, sc := range res.Schools {
		s.notify(ctx, sc)
	}
	return res, nil
}

// RemoveFromEventTx is RemoveFromEvent inside tx (hub/enrol's "not this
// pupil" runs it in the transaction that marks the event). The caller
// calls Notify for each of the result's Schools after the commit.
func (s *Store) RemoveFromEventTx(ctx context.Context, tx *sql.Tx, eventID, actor string) (RemoveResult, error) {
	now := s.now()
	res := RemoveResult{Paused: []string{}, PausedUntil: now.Add(s.gate.AutomaticPause).UnixMilli()}
	rows, err := tx.QueryContext(ctx, `SELECT id, school_id FROM pupils
		WHERE id IN (SELECT student_id FROM events WHERE event_id = ?) OR id IN (SELECT pupil_id FROM face_templates WHERE event_id = ?)
		ORDER BY id`, eventID, eventID)
	if err != nil {
		return res, fmt.Errorf("templates: remove from event: %w", err)
	}
	school := map[string]string{}
	for rows.Next() {
		var p, sc string
		if err := rows.Scan(&p, &sc); err != nil {
			rows.Close()
			return res, fmt.Errorf("templates: remove from event: %w", err)
		}
		res.Paused = append(res.Paused, p)
		school[p] = sc
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return res, fmt.Errorf("templates: remove from event: %w", err)
	}
	if len(res.Paused) == 0 {
		return res, fmt.Errorf("%w: event %s names no pupil and gave no template", ErrNotFound, eventID)
	}
	bumped := map[string]bool{}
	for _, p := range res.Paused {
		n, err := s.removePupilEventTx(ctx, tx, p, eventID, actor, res.PausedUntil, now)
		if err != nil {
			return res, err
		}
		res.Removed += n
		if n > 0 && !bumped[school[p]] {
			bumped[school[p]] = true
			if err := s.BumpTx(ctx, tx, school[p]); err != nil {
				return res, err
			}
			res.Schools = append(res.Schools, school[p])
		}
	}
	return res, nil
}

// removePupilEventTx deletes pupilID's gate templates from eventID,
// pauses its automatic templates until until (a longer pause running
// already stays) and audits both.
func (s *Store) removePupilEventTx(ctx context.Context, tx *sql.Tx, pupilID, eventID, actor string, until int64, now time.Time) (int64, error) {
	x, err := tx.ExecContext(ctx, `DELETE FROM face_templates WHERE pupil_id = ? AND event_id = ? AND source != 'enrolment'`, pupilID, eventID)
	if err != nil {
		return 0, fmt.Errorf("templates: remove from event: %w", err)
	}
	n, _ := x.RowsAffected()
	if _, err := tx.ExecContext(ctx, `INSERT INTO gate_template_pauses(pupil_id, until, event_id, actor, created_at) VALUES (?, ?, ?, ?, ?)
		ON CONFLICT(pupil_id) DO UPDATE SET until = excluded.until, event_id = excluded.event_id, actor = excluded.actor,
		created_at = excluded.created_at WHERE excluded.until > gate_template_pauses.until`,
		pupilID, until, eventID, actor, now.UnixMilli()); err != nil {
		return 0, fmt.Errorf("templates: pause: %w", err)
	}
	detail := map[string]any{"event_id": eventID, "removed": n, "automatic_paused_until": until}
	if err := s.audit.RecordTx(ctx, tx, actor, ActionGateTemplateRemove, "pupil:"+pupilID, detail, ""); err != nil {
		return 0, err
	}
	return n, nil
}

// EnforceGateScopeTx deletes pupilID's gate templates (teacher and
// automatic) when the consent in force does not allow them
// (GateTemplatesAllowed), bumping the gallery version when it deleted
// any; hub/consent runs it in the transaction that records a consent.
// The caller calls Notify(school) after the commit.
func (s *Store) EnforceGateScopeTx(ctx context.Context, tx *sql.Tx, pupilID string) (int64, error) {
	x, err := tx.ExecContext(ctx, `DELETE FROM face_templates WHERE pupil_id = ? AND source != 'enrolment'
		AND NOT (`+GateTemplatesAllowed("face_templates.pupil_id")+`)`, pupilID)
	if err != nil {
		return 0, fmt.Errorf("templates: gate scope: %w", err)
	}
	n, _ := x.RowsAffected()
	if n == 0 {
		return 0, nil
	}
	var school string
	if err := tx.QueryRowContext(ctx, `SELECT school_id FROM pupils WHERE id = ?`, pupilID).Scan(&school); err != nil {
		return 0, fmt.Errorf("templates: gate scope: %w", err)
	}
	return n, s.BumpTx(ctx, tx, school)
}

// PurgeExpired deletes the gate templates whose expiry has passed, per
// school in one transaction with the gallery version's bump and one audit
// entry per school (actor system). It returns how many it deleted.
func (s *Store) PurgeExpired(ctx context.Context) (int64, error) {
	now := s.now().UnixMilli()
	schools, err := store.Strings(ctx, s.db.R, `SELECT DISTINCT p.school_id FROM face_templates t JOIN pupils p ON p.id = t.pupil_id
		WHERE t.expires_at IS NOT NULL AND t.expires_at <= ? ORDER BY p.school_id`, now)
	if err != nil {
		return 0, fmt.Errorf("templates: purge: %w", err)
	}
	var total int64
	for _, sc := range schools {
		var n int64
		err := s.db.Tx(ctx, func(tx *sql.Tx) error {
			x, err := tx.ExecContext(ctx, `DELETE FROM face_templates WHERE expires_at IS NOT NULL AND expires_at <= ?
				AND pupil_id IN (SELECT id FROM pupils WHERE school_id = ?)`, now, sc)
			if err != nil {
				return fmt.Errorf("templates: purge: %w", err)
			}
			if n, _ = x.RowsAffected(); n == 0 {
				return nil
			}
			if err := s.BumpTx(ctx, tx, sc); err != nil {
				return err
			}
			return s.audit.RecordTx(ctx, tx, "system", ActionGateTemplatePurge, "school:"+sc, map[string]any{"deleted": n}, "")
		})
		if err != nil {
			return total, err
		}
		if n > 0 {
			total += n
			s.notify(ctx, sc)
		}
	}
	return total, nil
}

// RunPurge runs PurgeExpired at start and every GateConfig.PurgeInterval
// until ctx ends.
func (s *Store) RunPurge(ctx context.Context) error {
	t := time.NewTicker(s.gate.PurgeInterval)
	defer t.Stop()
	for {
		n, err := s.PurgeExpired(ctx)
		switch {
		case err != nil && ctx.Err() == nil:
			s.log.Warn("expired gate templates not purged", "err", err)
		case n > 0:
			s.log.Info("expired gate templates purged", "deleted", n)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}
