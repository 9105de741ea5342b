package citysync

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/diemdanh/diemdanh/hub/ingest"
	"github.com/diemdanh/diemdanh/hub/store"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
)

// ErrDisabled is returned by New when no DSN is configured.
var ErrDisabled = errors.New("citysync: disabled (no dsn)")

// GalleryBumper bumps a school's gallery version inside a hub transaction
// and tells subscribers after the commit (hub/facetemplates.Store does both).
type GalleryBumper interface {
	BumpTx(ctx context.Context, tx *sql.Tx, school string) error
	Notify(ctx context.Context, school string)
}

// Option adjusts New.
type Option func(*Worker)

// WithGallery sets the gallery version keeper. Without it the worker bumps
// gallery_versions directly (gates see the change at their next poll).
func WithGallery(g GalleryBumper) Option { return func(w *Worker) { w.gallery = g } }

// WithRegisterer registers the worker's metrics.
func WithRegisterer(r prometheus.Registerer) Option { return func(w *Worker) { w.reg = r } }

// Worker syncs one hub with the city database.
type Worker struct {
	cfg     Config
	db      *store.DB
	log     *slog.Logger
	now     func() time.Time
	gallery GalleryBumper
	reg     prometheus.Registerer
	pool    *pgxpool.Pool
	notify  chan struct{}
	m       *metrics

	mu         sync.Mutex // one sync at a time
	school     string
	loc        *time.Location
	terms      terms
	lastRoster time.Time
	hubVersion string
	enabled    bool
	// last sync_status write
	statusAt       time.Time
	statusCaughtUp bool

	// outage state (Run goroutine only)
	failing   bool
	failSince time.Time
	failures  int
}

// New builds a worker; it does not connect until the first sync.
func New(cfg Config, db *store.DB, log *slog.Logger, now func() time.Time, opts ...Option) (*Worker, error) {
	if !cfg.Enabled() {
		return nil, ErrDisabled
	}
	if err := cfg.Validate("city_sync"); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if now == nil {
		now = time.Now
	}
	pc, err := cfg.poolConfig()
	if err != nil {
		return nil, err
	}
	pool, err := pgxpool.NewWithConfig(context.Background(), pc)
	if err != nil {
		return nil, fmt.Errorf("citysync: pool: %w", err)
	}
	w := &Worker{cfg: cfg, db: db, log: log.With("component", "citysync"), now: now, pool: pool,
		notify: make(chan struct{}, 1), m: newMetrics(), terms: newTerms(cfg), hubVersion: "diemdanh-hub"}
	for _, o := range opts {
		o(w)
	}
	if w.reg != nil {
		if err := w.m.register(w.reg); err != nil {
			pool.Close()
			return nil, err
		}
	}
	return w, nil
}

// Close releases the connection pool.
func (w *Worker) Close() { w.pool.Close() }

// Notify wakes the worker (non-blocking).
func (w *Worker) Notify() {
	select {
	case w.notify <- struct{}{}:
	default:
	}
}

// EventStored implements ingest.Listener: a new event wakes the worker.
func (w *Worker) EventStored(context.Context, ingest.StoredEvent) { w.Notify() }

var _ ingest.Listener = (*Worker)(nil)

// Run syncs until ctx ends: after each success it waits for the interval or
// an ingest notification (then Debounce, to batch a burst); after a failure
// it backs off exponentially up to MaxBackoff. It logs one line when an
// outage starts and one when it ends.
func (w *Worker) Run(ctx context.Context) error {
	wait := time.Duration(0)
	backoff := time.Duration(0)
	for {
		timer := time.NewTimer(wait)
		if backoff > 0 { // in an outage: only the timer wakes us
			select {
			case <-ctx.Done():
				timer.Stop()
				return nil
			case <-timer.C:
			}
		} else {
			select {
			case <-ctx.Done():
				timer.Stop()
				return nil
			case <-timer.C:
			case <-w.notify:
				timer.Stop()
				if w.cfg.Debounce > 0 {
					select {
					case <-ctx.Done():
						return nil
					case <-time.After(w.cfg.Debounce):
					}
				}
			}
		}
		select { // a notification that arrived during the wait is covered by this sync
		case <-w.notify:
		default:
		}
		_, err := w.SyncOnce(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			w.outage(err)
			backoff = nextBackoff(backoff, w.cfg.MaxBackoff)
			wait = backoff
			continue
		}
		w.recovered()
		backoff = 0
		wait = w.cfg.Interval
	}
}

func nextBackoff(cur, max time.Duration) time.Duration {
	if cur == 0 {
		return time.Second
	}
	cur *= 2
	if cur > max {
		cur = max
	}
	return cur
}

func (w *Worker) outage(err error) {
	w.failures++
	if !w.failing {
		w.failing = true
		w.failSince = w.now()
		w.log.Error("city sync outage started", "err", err)
		return
	}
	w.log.Debug("city sync still failing", "err", err, "attempts", w.failures)
}

func (w *Worker) recovered() {
	if w.failing {
		w.log.Info("city sync recovered", "down_for", w.now().Sub(w.failSince).Round(time.Second).String(), "attempts", w.failures)
	}
	w.failing, w.failures = false, 0
}

// Report says what one SyncOnce did.
type Report struct {
	RosterPulled  bool
	RosterChanged int // staff, classes and pupils changed on the hub
	Deactivated   int // pupils deactivated (left, or gone from the city roster)
	NewIssues     []Issue
	Events        int
	Daily         int
	Headcounts    int
	Totals        int
	LagRows       int64
	LagSeconds    float64
}

// Issue is one bad row, reported and skipped.
type Issue struct {
	Kind    string // staff, class, pupil, push_event, push_daily, ...
	CityKey string
	Reason  string
}

func (i Issue) String() string { return i.Kind + " " + i.CityKey + ": " + i.Reason }

// SyncOnce runs one full sync synchronously: roster pull when due, then the
// whole change log, headcounts and totals, then the sync status row.
func (w *Worker) SyncOnce(ctx context.Context) (Report, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	var rep Report
	err := w.syncOnce(ctx, &rep)
	rows, secs, lerr := w.lag(ctx)
	if lerr == nil {
		rep.LagRows, rep.LagSeconds = rows, secs
		w.m.lagRows.Set(float64(rows))
		w.m.lagSeconds.Set(secs)
	}
	if err != nil {
		w.m.errors.Inc()
		w.m.up.Set(0)
		return rep, err
	}
	w.m.up.Set(1)
	w.m.lastSuccess.Set(float64(w.now().UnixMilli()) / 1000)
	if err := w.setState(ctx, "last_success", strconv.FormatInt(w.now().UnixMilli(), 10)); err != nil {
		return rep, err
	}
	return rep, nil
}

func (w *Worker) syncOnce(ctx context.Context, rep *Report) error {
	if err := w.resolveSchool(ctx); err != nil {
		return err
	}
	if err := w.enable(ctx); err != nil {
		return err
	}
	if w.lastRoster.IsZero() || w.now().Sub(w.lastRoster) >= w.cfg.RosterInterval {
		if err := w.pullRoster(ctx, rep); err != nil {
			return err
		}
		w.lastRoster = w.now()
	}
	if err := w.pushChanges(ctx, rep); err != nil {
		return err
	}
	if err := w.pushTodayHeadcounts(ctx, rep); err != nil {
		return err
	}
	rows, secs, err := w.lag(ctx)
	if err != nil {
		return err
	}
	var issues int
	_ = w.db.R.QueryRowContext(ctx, `SELECT count(*) FROM citysync_issues`).Scan(&issues)
	w.m.issues.Set(float64(issues))
	// The status row feeds the department's "lagging schools" view: write it
	// on the first sync, when the lag appears or clears, and every 30 s.
	caughtUp := rows == 0
	if !w.statusAt.IsZero() && time.Since(w.statusAt) < statusEvery && caughtUp == w.statusCaughtUp {
		return nil
	}
	_, err = w.pool.Exec(ctx, `INSERT INTO attendance.sync_status (school_id, last_sync_at, lag_rows, lag_seconds, roster_issues, hub_version)
		VALUES ($1, $2, $3, $4, $5, $6)
		ON CONFLICT (school_id) DO UPDATE SET last_sync_at = EXCLUDED.last_sync_at, lag_rows = EXCLUDED.lag_rows,
		  lag_seconds = EXCLUDED.lag_seconds, roster_issues = EXCLUDED.roster_issues, hub_version = EXCLUDED.hub_version`,
		w.school, w.now(), rows, secs, issues, w.hubVersion)
	if err != nil {
		return fmt.Errorf("citysync: sync status: %w", err)
	}
	w.statusAt, w.statusCaughtUp = time.Now(), caughtUp
	return nil
}

// statusEvery bounds how often attendance.sync_status is rewritten.
const statusEvery = 30 * time.Second

// enable switches the change-log triggers on, the first time sync runs on
// this hub, and backfills the log with everything stored before (events of
// known pupils and daily statuses), in one transaction.
func (w *Worker) enable(ctx context.Context) error {
	if w.enabled {
		return nil
	}
	err := w.db.Tx(ctx, func(tx *sql.Tx) error {
		var one int
		err := tx.QueryRowContext(ctx, `SELECT 1 FROM citysync_state WHERE key = 'enabled'`).Scan(&one)
		if err == nil {
			return nil
		}
		if !errors.Is(err, sql.ErrNoRows) {
			return err
		}
		now := time.Now().UnixMilli()
		if _, err := tx.ExecContext(ctx, `INSERT INTO citysync_changes (kind, k1, created_at)
			SELECT 'event', event_id, ? FROM events WHERE student_id IS NOT NULL ORDER BY received_at`, now); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO citysync_changes (kind, k1, k2, created_at)
			SELECT 'daily', pupil_id, day, ? FROM daily_attendance ORDER BY day, pupil_id`, now); err != nil {
			return err
		}
		return setStateTx(ctx, tx, "enabled", strconv.FormatInt(now, 10))
	})
	if err != nil {
		return fmt.Errorf("citysync: enable: %w", err)
	}
	w.enabled = true
	return nil
}

// ForceRoster makes the next sync pull the roster regardless of the interval.
func (w *Worker) ForceRoster() {
	w.mu.Lock()
	w.lastRoster = time.Time{}
	w.mu.Unlock()
}

func (w *Worker) resolveSchool(ctx context.Context) error {
	if w.school != "" {
		return nil
	}
	school := w.cfg.SchoolID
	if school == "" {
		ids, err := store.Strings(ctx, w.db.R, `SELECT id FROM schools LIMIT 2`)
		if err != nil {
			return fmt.Errorf("citysync: schools: %w", err)
		}
		if len(ids) != 1 {
			return fmt.Errorf("citysync: city_sync.school_id not set and the hub has %d schools", len(ids))
		}
		school = ids[0]
	}
	tz := "Asia/Ho_Chi_Minh"
	_ = w.db.R.QueryRowContext(ctx, `SELECT timezone FROM schools WHERE id = ?`, school).Scan(&tz)
	loc, err := time.LoadLocation(tz)
	if err != nil {
		loc = time.FixedZone("ICT", 7*3600) // Vietnam: UTC+7, no DST
	}
	w.school, w.loc = school, loc
	return nil
}

// lag is the number of unpushed changes and the age of the oldest one.
func (w *Worker) lag(ctx context.Context) (int64, float64, error) {
	var n int64
	var oldest sql.NullInt64
	if err := w.db.R.QueryRowContext(ctx, `SELECT count(*), min(created_at) FROM citysync_changes`).Scan(&n, &oldest); err != nil {
		return 0, 0, fmt.Errorf("citysync: lag: %w", err)
	}
	secs := 0.0
	if oldest.Valid {
		secs = float64(time.Now().UnixMilli()-oldest.Int64) / 1000
		if secs < 0 {
			secs = 0
		}
	}
	return n, secs, nil
}

func (w *Worker) state(ctx context.Context, key string) (string, error) {
	var v string
	err := w.db.R.QueryRowContext(ctx, `SELECT value FROM citysync_state WHERE key = ?`, key).Scan(&v)
	if errors.Is(err, sql.ErrNoRows) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("citysync: state %s: %w", key, err)
	}
	return v, nil
}

func (w *Worker) setState(ctx context.Context, key, value string) error {
	_, err := w.db.W.ExecContext(ctx, `INSERT INTO citysync_state (key, value) VALUES (?, ?)
		ON CONFLICT(key) DO UPDATE SET value = excluded.value`, key, value)
	if err != nil {
		return fmt.Errorf("citysync: state %s: %w", key, err)
	}
	return nil
}

func setStateTx(ctx context.Context, tx *sql.Tx, key, value string) error {
	_, err := tx.ExecContext(ctx, `INSERT INTO citysync_state (key, value) VALUES (?, ?)
		ON CONFLICT(key) DO UPDATE SET value = excluded.value`, key, value)
	if err != nil {
		return fmt.Errorf("citysync: state %s: %w", key, err)
	}
	return nil
}
