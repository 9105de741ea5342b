package notify

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/diemdanh/diemdanh/hub/store"
	"github.com/diemdanh/diemdanh/models/conf"
)

const cursorKey = "notify.events_cursor"

// maxLastError bounds the error kept in notify_outbox.last_error (bytes).
const maxLastError = 500

// initCursor starts a fresh database at the current end of the events
// table, so history is never announced.
func (n *Notifier) initCursor(ctx context.Context) error {
	return n.db.Tx(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT OR IGNORE INTO meta(key, value)
			SELECT ?, CAST(COALESCE(MAX(rowid), 0) AS TEXT) FROM events`, cursorKey)
		if err != nil {
			return fmt.Errorf("notify: cursor: %w", err)
		}
		return nil
	})
}

type evRow struct {
	rowid                int64
	eventID, gateID, dir string
	student              sql.NullString
	captured, received   int64
	rejected             int
	name, classID, class sql.NullString
	tz, gateName         sql.NullString
}

const scanBatch = 500

// EnqueueEvents turns events after the cursor into outbox rows and moves
// the cursor, in one transaction. more is true when a full batch was read.
func (n *Notifier) EnqueueEvents(ctx context.Context) (more bool, err error) {
	err = n.db.Tx(ctx, func(tx *sql.Tx) error {
		var cur int64
		var s string
		if err := tx.QueryRowContext(ctx, `SELECT value FROM meta WHERE key = ?`, cursorKey).Scan(&s); err != nil {
			return fmt.Errorf("notify: cursor: %w", err)
		}
		cur, _ = strconv.ParseInt(s, 10, 64)
		rows, err := tx.QueryContext(ctx, `SELECT e.rowid, e.event_id, e.gate_id, e.direction, e.student_id,
			e.captured_at, e.received_at, e.rejected, p.full_name, p.class_id, c.name, sc.timezone, g.name
			FROM events e
			LEFT JOIN pupils p ON p.id = e.student_id
			LEFT JOIN classes c ON c.id = p.class_id
			LEFT JOIN schools sc ON sc.id = p.school_id
			LEFT JOIN gates g ON g.id = e.gate_id
			WHERE e.rowid > ? ORDER BY e.rowid LIMIT ?`, cur, scanBatch)
		if err != nil {
			return fmt.Errorf("notify: scan events: %w", err)
		}
		var evs []evRow
		for rows.Next() {
			var r evRow
			if err := rows.Scan(&r.rowid, &r.eventID, &r.gateID, &r.dir, &r.student, &r.captured, &r.received,
				&r.rejected, &r.name, &r.classID, &r.class, &r.tz, &r.gateName); err != nil {
				rows.Close()
				return fmt.Errorf("notify: scan events: %w", err)
			}
			evs = append(evs, r)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return fmt.Errorf("notify: scan events: %w", err)
		}
		now := n.now()
		for _, r := range evs {
			cur = r.rowid
			if !r.student.Valid || r.rejected != 0 || !r.name.Valid {
				continue
			}
			loc := Zone(r.tz.String)
			at := time.UnixMilli(r.captured).In(loc)
			day := at.Format("2006-01-02")
			if day != now.In(loc).Format("2006-01-02") {
				continue // a backlog from another day: too late to be useful
			}
			rule := RuleArrival
			if r.dir == "out" {
				rule = RuleDeparture
			}
			v := Vars{Name: r.name.String, Class: r.class.String, Time: at.Format("15:04"),
				Gate: r.gateName.String, Date: day, PortalURL: n.cfg.PortalURL}
			if err := n.enqueueForPupil(ctx, tx, rule, r.student.String, day, v, r.received, r.eventID); err != nil {
				return err
			}
		}
		if _, err := tx.ExecContext(ctx, `UPDATE meta SET value = ? WHERE key = ?`, strconv.FormatInt(cur, 10), cursorKey); err != nil {
			return fmt.Errorf("notify: cursor: %w", err)
		}
		more = len(evs) == scanBatch
		return nil
	})
	return more, err
}

type recipient struct {
	guardianID      int64
	name, phone, em string
	lang            string
	prefs           map[string]bool
}

// enqueueForPupil writes one row per guardian × enabled channel × address.
func (n *Notifier) enqueueForPupil(ctx context.Context, tx *sql.Tx, rule, pupilID, day string, v Vars, eventAt int64, eventID string) error {
	rows, err := tx.QueryContext(ctx, `SELECT g.id, g.full_name, g.phone, g.email, COALESCE(l.lang, 'vi')
		FROM guardians g LEFT JOIN notify_guardian_lang l ON l.guardian_id = g.id
		WHERE g.pupil_id = ? ORDER BY g.id`, pupilID)
	if err != nil {
		return fmt.Errorf("notify: guardians: %w", err)
	}
	var rs []recipient
	for rows.Next() {
		var r recipient
		if err := rows.Scan(&r.guardianID, &r.name, &r.phone, &r.em, &r.lang); err != nil {
			rows.Close()
			return fmt.Errorf("notify: guardians: %w", err)
		}
		rs = append(rs, r)
	}
	rows.Close()
	if len(rs) == 0 {
		n.stats.nochan.Add(1)
		n.log.Debug("pupil has no guardian to notify", "pupil", pupilID, "rule", rule)
		return nil
	}
	for _, r := range rs {
		prefs, err := loadPrefs(ctx, tx, r.guardianID)
		if err != nil {
			return err
		}
		subj, body, err := n.Render(r.lang, rule, v)
		if err != nil {
			return err
		}
		payload, _ := json.Marshal(map[string]any{
			"rule": rule, "pupil_id": pupilID, "pupil_name": v.Name, "class": v.Class, "time": v.Time,
			"date": day, "gate": v.Gate, "event_id": eventID, "lang": r.lang,
			"guardian": map[string]any{"id": r.guardianID, "name": r.name, "phone": r.phone},
			"subject":  subj, "text": body, "url": n.cfg.PortalURL,
		})
		var targets [][2]string // channel, target
		if n.senders[ChannelEmail] != nil && r.em != "" && prefs[ChannelEmail] {
			targets = append(targets, [2]string{ChannelEmail, r.em})
		}
		if n.senders[ChannelWebhook] != nil && r.phone != "" && prefs[ChannelWebhook] {
			targets = append(targets, [2]string{ChannelWebhook, r.phone})
		}
		if n.senders[ChannelPush] != nil && prefs[ChannelPush] {
			// A parent account linked to several guardian rows (one per child)
			// subscribes once; its devices get every child's messages.
			subs, err := store.Strings(ctx, tx, `SELECT id FROM push_subscriptions WHERE guardian_id = ?
				OR guardian_id IN (SELECT b.guardian_id FROM account_guardians a JOIN account_guardians b
					ON a.account_id = b.account_id WHERE a.guardian_id = ?) ORDER BY id`, r.guardianID, r.guardianID)
			if err != nil {
				return fmt.Errorf("notify: subscriptions: %w", err)
			}
			for _, id := range subs {
				targets = append(targets, [2]string{ChannelPush, id})
			}
		}
		if len(targets) == 0 {
			n.stats.nochan.Add(1)
			n.log.Debug("guardian has no channel", "guardian", r.guardianID, "pupil", pupilID, "rule", rule)
			continue
		}
		now := n.now().UnixMilli()
		for _, t := range targets {
			key := strings.Join([]string{rule, pupilID, day, strconv.FormatInt(r.guardianID, 10), t[0], t[1]}, ":")
			res, err := tx.ExecContext(ctx, `INSERT OR IGNORE INTO notify_outbox(dedupe_key, rule, pupil_id, guardian_id,
				channel, target, lang, subject, body, payload, event_at, created_at, next_at)
				VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
				key, rule, pupilID, r.guardianID, t[0], t[1], r.lang, subj, body, string(payload), eventAt, now, now)
			if err != nil {
				return fmt.Errorf("notify: enqueue: %w", err)
			}
			if k, _ := res.RowsAffected(); k > 0 {
				n.stats.enq.Add(1)
			}
		}
	}
	return nil
}

// loadPrefs returns channel → enabled, defaulting to on.
func loadPrefs(ctx context.Context, q interface {
	QueryContext(context.Context, string, ...any) (*sql.Rows, error)
}, guardianID int64) (map[string]bool, error) {
	p := map[string]bool{ChannelPush: true, ChannelEmail: true, ChannelWebhook: true}
	rows, err := q.QueryContext(ctx, `SELECT channel, enabled FROM notify_prefs WHERE guardian_id = ?`, guardianID)
	if err != nil {
		return nil, fmt.Errorf("notify: prefs: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var c string
		var on int
		if err := rows.Scan(&c, &on); err != nil {
			return nil, fmt.Errorf("notify: prefs: %w", err)
		}
		p[c] = on != 0
	}
	return p, rows.Err()
}

// CheckCutoffs enqueues "not arrived" messages for pupils of every class
// whose cut-off passed (within CutoffWindow) today without an arrival,
// an excuse or a manual present mark.
func (n *Notifier) CheckCutoffs(ctx context.Context) error {
	n.cutMu.Lock()
	defer n.cutMu.Unlock()
	type cls struct{ id, name, cutoff, tz string }
	rows, err := n.db.R.QueryContext(ctx, `SELECT c.id, c.name,
		CASE WHEN COALESCE(r.cutoff, '') = '' THEN c.absent_cutoff ELSE r.cutoff END, s.timezone
		FROM classes c JOIN schools s ON s.id = c.school_id
		LEFT JOIN notify_class_rules r ON r.class_id = c.id
		WHERE c.active = 1 AND COALESCE(r.not_arrived_enabled, 1) = 1`)
	if err != nil {
		return fmt.Errorf("notify: cutoffs: %w", err)
	}
	var cs []cls
	for rows.Next() {
		var c cls
		if err := rows.Scan(&c.id, &c.name, &c.cutoff, &c.tz); err != nil {
			rows.Close()
			return fmt.Errorf("notify: cutoffs: %w", err)
		}
		cs = append(cs, c)
	}
	rows.Close()
	now := n.now()
	for _, c := range cs {
		loc := Zone(c.tz)
		local := now.In(loc)
		if !n.schoolDay(local.Weekday()) {
			continue
		}
		hm, err := time.ParseInLocation("15:04", c.cutoff, loc)
		if err != nil {
			n.log.Warn("bad cut-off time", "class", c.id, "cutoff", c.cutoff)
			continue
		}
		cut := time.Date(local.Year(), local.Month(), local.Day(), hm.Hour(), hm.Minute(), 0, 0, loc)
		if local.Before(cut) || local.After(cut.Add(n.cfg.CutoffWindow)) {
			continue
		}
		day := local.Format("2006-01-02")
		start := time.Date(local.Year(), local.Month(), local.Day(), 0, 0, 0, 0, loc).UnixMilli()
		err = n.db.Tx(ctx, func(tx *sql.Tx) error {
			prs, err := tx.QueryContext(ctx, `SELECT p.id, p.full_name FROM pupils p
				WHERE p.class_id = ? AND p.active = 1
				AND NOT EXISTS (SELECT 1 FROM events e WHERE e.student_id = p.id AND e.direction = 'in'
					AND e.rejected = 0 AND e.captured_at >= ? AND e.captured_at < ?)
				AND NOT EXISTS (SELECT 1 FROM daily_attendance d WHERE d.pupil_id = p.id AND d.day = ?
					AND d.status IN ('present', 'late', 'excused'))
				AND NOT EXISTS (SELECT 1 FROM attendance_overrides o WHERE o.pupil_id = p.id AND o.day = ?
					AND o.status IN ('present', 'late', 'excused'))
				AND NOT EXISTS (SELECT 1 FROM notify_outbox x WHERE x.dedupe_key >= 'not_arrived:' || p.id || ':' || ? || ':'
					AND x.dedupe_key < 'not_arrived:' || p.id || ':' || ? || ';')`, c.id, start, start+86400000, day, day, day, day)
			if err != nil {
				return fmt.Errorf("notify: cutoffs: %w", err)
			}
			type pp struct{ id, name string }
			var ps []pp
			for prs.Next() {
				var p pp
				if err := prs.Scan(&p.id, &p.name); err == nil {
					ps = append(ps, p)
				}
			}
			prs.Close()
			for _, p := range ps {
				v := Vars{Name: p.name, Class: c.name, Time: cut.Format("15:04"), Date: day, PortalURL: n.cfg.PortalURL}
				if err := n.enqueueForPupil(ctx, tx, RuleNotArrived, p.id, day, v, now.UnixMilli(), ""); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	n.Poke()
	return nil
}

func (n *Notifier) schoolDay(d time.Weekday) bool {
	for _, x := range n.cfg.SchoolDays {
		if time.Weekday(x) == d {
			return true
		}
	}
	return false
}

const dispatchBatch = 64

// DispatchOnce delivers up to one batch of due messages concurrently and
// records each outcome. It returns how many it attempted.
func (n *Notifier) DispatchOnce(ctx context.Context) (int, error) {
	now := n.now().UnixMilli()
	rows, err := n.db.R.QueryContext(ctx, `SELECT id, dedupe_key, rule, pupil_id, guardian_id, channel, target,
		lang, subject, body, payload, event_at, attempts
		FROM notify_outbox WHERE status = 'pending' AND next_at <= ? ORDER BY next_at, id LIMIT ?`, now, dispatchBatch)
	if err != nil {
		return 0, fmt.Errorf("notify: due: %w", err)
	}
	var ms []Message
	for rows.Next() {
		var m Message
		var payload string
		if err := rows.Scan(&m.ID, &m.DedupeKey, &m.Rule, &m.PupilID, &m.GuardianID, &m.Channel, &m.Target,
			&m.Lang, &m.Subject, &m.Body, &payload, &m.EventAt, &m.Attempts); err != nil {
			rows.Close()
			return 0, fmt.Errorf("notify: due: %w", err)
		}
		m.Payload = json.RawMessage(payload)
		if _, busy := n.inflight.LoadOrStore(m.ID, struct{}{}); busy {
			continue
		}
		ms = append(ms, m)
	}
	rows.Close()
	if len(ms) == 0 {
		return 0, rows.Err()
	}
	sem := make(chan struct{}, n.cfg.Workers)
	var wg sync.WaitGroup
	var firstErr error
	var mu sync.Mutex
	for _, m := range ms {
		wg.Add(1)
		sem <- struct{}{}
		go func(m Message) {
			defer func() { <-sem; n.inflight.Delete(m.ID); wg.Done() }()
			if err := n.deliver(ctx, m); err != nil {
				mu.Lock()
				if firstErr == nil {
					firstErr = err
				}
				mu.Unlock()
			}
		}(m)
	}
	wg.Wait()
	return len(ms), firstErr
}

// deliver sends m and records the outcome; the error is only for the DB.
func (n *Notifier) deliver(ctx context.Context, m Message) error {
	s := n.senders[m.Channel]
	var sendErr error
	if s == nil {
		sendErr = Permanent(fmt.Errorf("channel %s is not configured", m.Channel))
	} else {
		sctx, cancel := context.WithTimeout(ctx, n.cfg.SendTimeout)
		sendErr = s.Send(sctx, m)
		cancel()
	}
	if ctx.Err() != nil {
		return nil // shutting down: the row stays pending and is retried after restart
	}
	now := n.now().UnixMilli()
	var err error
	switch {
	case sendErr == nil:
		_, err = n.db.W.ExecContext(context.WithoutCancel(ctx), `UPDATE notify_outbox SET status = 'sent', sent_at = ?,
			attempts = attempts + 1, last_error = '' WHERE id = ?`, now, m.ID)
		n.stats.sent.Add(1)
	case IsPermanent(sendErr) || m.Attempts+1 >= n.cfg.MaxAttempts:
		status := "failed"
		if errors.Is(sendErr, errGone) {
			status = "dropped"
			n.stats.dropped.Add(1)
		} else {
			n.stats.failed.Add(1)
		}
		n.log.Warn("notification given up", "id", m.ID, "channel", m.Channel, "attempts", m.Attempts+1, "err", sendErr)
		_, err = n.db.W.ExecContext(context.WithoutCancel(ctx), `UPDATE notify_outbox SET status = ?, attempts = attempts + 1,
			last_error = ? WHERE id = ?`, status, conf.Truncate(sendErr.Error(), maxLastError, conf.Bytes, ""), m.ID)
	default:
		n.stats.retried.Add(1)
		next := now + n.backoff(m.Attempts+1).Milliseconds()
		n.log.Debug("notification retry", "id", m.ID, "channel", m.Channel, "attempt", m.Attempts+1, "err", sendErr)
		_, err = n.db.W.ExecContext(context.WithoutCancel(ctx), `UPDATE notify_outbox SET attempts = attempts + 1,
			next_at = ?, last_error = ? WHERE id = ?`, next, conf.Truncate(sendErr.Error(), maxLastError, conf.Bytes, ""), m.ID)
	}
	if err != nil {
		return fmt.Errorf("notify: record outcome: %w", err)
	}
	return nil
}

// backoff is base·2^(attempt-1), capped.
func (n *Notifier) backoff(attempt int) time.Duration {
	d := n.cfg.BackoffBase
	for i := 1; i < attempt && d < n.cfg.BackoffMax; i++ {
		d *= 2
	}
	if d > n.cfg.BackoffMax {
		d = n.cfg.BackoffMax
	}
	return d
}
