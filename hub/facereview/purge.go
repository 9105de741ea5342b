package facereview

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/diemdanh/diemdanh/hub/audit"
)

// PurgeOnce deletes every face (row, crop and dismissals) that reached the
// hub more than Retention ago, and records one audit entry per school with
// the count. It returns how many faces were deleted.
func (s *Store) PurgeOnce(ctx context.Context) (int64, error) {
	cutoff := s.now().Add(-s.cfg.Retention).UnixMilli()
	var total int64
	err := s.db.Tx(ctx, func(tx *sql.Tx) error {
		total = 0
		counts, err := dueBySchool(ctx, tx, cutoff)
		if err != nil {
			return err
		}
		if len(counts) == 0 {
			return nil
		}
		res, err := tx.ExecContext(ctx, `DELETE FROM unrecognised_faces WHERE received_at < ?`, cutoff)
		if err != nil {
			return fmt.Errorf("facereview: purge: %w", err)
		}
		if total, err = res.RowsAffected(); err != nil {
			return fmt.Errorf("facereview: purge: %w", err)
		}
		for _, c := range counts {
			if err := s.audit.RecordTx(ctx, tx, "system", audit.ActionRetention, "school:"+c.school,
				map[string]any{"table": "unrecognised_faces", "deleted": c.n, "retention": s.cfg.Retention.String()}, ""); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	return total, nil
}

type schoolCount struct {
	school string
	n      int64
}

// dueBySchool counts the faces received before cutoff, per school.
func dueBySchool(ctx context.Context, tx *sql.Tx, cutoff int64) ([]schoolCount, error) {
	rows, err := tx.QueryContext(ctx, `SELECT school_id, count(*) FROM unrecognised_faces WHERE received_at < ?
		GROUP BY school_id ORDER BY school_id`, cutoff)
	if err != nil {
		return nil, fmt.Errorf("facereview: purge: %w", err)
	}
	defer rows.Close()
	var out []schoolCount
	for rows.Next() {
		var c schoolCount
		if err := rows.Scan(&c.school, &c.n); err != nil {
			return nil, fmt.Errorf("facereview: purge: %w", err)
		}
		out = append(out, c)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("facereview: purge: %w", err)
	}
	return out, nil
}

// Notify wakes the purge worker (non-blocking).
func (s *Store) Notify() {
	select {
	case s.notify <- struct{}{}:
	default:
	}
}

// Run purges at start, then every PurgeInterval and whenever Notify is
// called, until ctx ends. A failed purge is logged and retried at the next
// tick.
func (s *Store) Run(ctx context.Context) error {
	t := time.NewTicker(s.cfg.PurgeInterval)
	defer t.Stop()
	for {
		if n, err := s.PurgeOnce(ctx); err != nil && ctx.Err() == nil {
			s.log.Warn("unrecognised faces purge failed", "err", err)
		} else if n > 0 {
			s.log.Info("unrecognised faces purged", "count", n, "retention", s.cfg.Retention.String())
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		case <-s.notify:
		}
	}
}
