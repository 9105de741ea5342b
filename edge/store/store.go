// Package store is the gate's durable state: the outbox, the debounce
// keys and a small key/value table, in one SQLite file.
//
// Every event is committed to the outbox (in the same transaction as its
// debounce key) before anything is published, and a row is removed only
// after the broker acknowledged it (PUBACK), so neither a power cut nor a
// killed process nor a broker outage loses an event. Unrecognised faces
// (wire.Unrecognised) go through the same outbox, in the same order; they
// may fill at most half of it, so they never take the room of events. The database runs in
// WAL mode with synchronous=NORMAL and a single writer connection; reads
// use a separate small pool.
package store

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/url"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/diemdanh/diemdanh/models/conf"
	"github.com/diemdanh/diemdanh/models/wire"
	_ "github.com/mattn/go-sqlite3" // SQLite driver
)

//go:embed migrations/*.sql
var migrationFS embed.FS

// ErrOutboxFull is returned (wrapped) when the outbox holds MaxOutbox rows.
// It is an alarm condition: the caller must log it and count it; the event
// is not stored.
var ErrOutboxFull = errors.New("store: outbox full")

// Options tune the store.
type Options struct {
	// MaxOutbox bounds the outbox; 0 means DefaultMaxOutbox.
	MaxOutbox int `yaml:"max_outbox"`
	// BusyTimeout for lock waits; 0 means 5 s.
	BusyTimeout time.Duration `yaml:"busy_timeout"`
}

// DefaultMaxOutbox is about a week of a busy gate's events without any
// connection (with face crops, ~20 KB each, about 2 GB at most).
const DefaultMaxOutbox = 100000

// DefaultOptions returns the defaults.
func DefaultOptions() Options {
	return Options{MaxOutbox: DefaultMaxOutbox, BusyTimeout: 5 * time.Second}
}

// Validate names the first bad field under prefix (e.g. "store").
func (o Options) Validate(prefix string) error {
	switch {
	case o.MaxOutbox < 0:
		return conf.Fieldf(prefix+".max_outbox", "must not be negative, got %d", o.MaxOutbox)
	case o.BusyTimeout < 0:
		return conf.Fieldf(prefix+".busy_timeout", "must not be negative")
	}
	return nil
}

// DB is the gate's SQLite file: the event outbox, the debounce keys and a
// small key/value table (not the gallery: edge/gallery.Store). It is safe
// for concurrent use.
type DB struct {
	w     *sql.DB // the one writer connection
	r     *sql.DB // read pool
	opts  Options
	log   *slog.Logger
	depth atomic.Int64
	path  string
	disk  diskState
}

// Record is one pending outbox row.
type Record struct {
	Seq int64
	// Kind is the last level of the message's gate topic:
	// wire.TopicKindEvents or wire.TopicKindUnrecognised.
	Kind      string
	EventID   string // the message's ID: event_id, or an unrecognised face's capture_id
	Payload   []byte
	CreatedAt time.Time
}

// Open opens (creating if needed) the store at path and applies
// migrations. On a full disk it deletes its reserve file (ReserveBytes)
// and tries once more, starting with the full-disk alarm raised, so a
// gate restarted on a full disk still sends what its outbox holds.
func Open(path string, opts Options, log *slog.Logger) (*DB, error) {
	db, err := openDB(path, opts, log)
	if err == nil || !isDiskFull(err) {
		return db, err
	}
	if rmErr := os.Remove(path + ".reserve"); rmErr != nil {
		return nil, err
	}
	if db, err = openDB(path, opts, log); err != nil {
		return nil, err
	}
	db.disk.mu.Lock()
	db.alarmLocked(errors.New("disk full at start"))
	db.disk.mu.Unlock()
	return db, nil
}

func openDB(path string, opts Options, log *slog.Logger) (*DB, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if opts.MaxOutbox == 0 {
		opts.MaxOutbox = DefaultMaxOutbox
	}
	if opts.BusyTimeout == 0 {
		opts.BusyTimeout = 5 * time.Second
	}
	if err := opts.Validate("store"); err != nil {
		return nil, err
	}
	if path == "" {
		return nil, conf.Fieldf("store.path", "is required")
	}
	q := url.Values{}
	q.Set("_journal_mode", "WAL")
	q.Set("_synchronous", "NORMAL")
	q.Set("_txlock", "immediate")
	q.Set("_busy_timeout", strconv.FormatInt(opts.BusyTimeout.Milliseconds(), 10))
	q.Set("_foreign_keys", "on")
	dsn := "file:" + path + "?" + q.Encode()
	w, err := sql.Open("sqlite3", dsn)
	if err != nil {
		return nil, fmt.Errorf("store: open %s: %w", path, err)
	}
	w.SetMaxOpenConns(1)
	w.SetMaxIdleConns(1)
	w.SetConnMaxLifetime(0)
	db := &DB{w: w, opts: opts, log: log, path: path, disk: diskState{refused: map[string]int64{}}}
	if err := db.migrate(); err != nil {
		w.Close()
		return nil, fmt.Errorf("store: %s: %w", path, err)
	}
	q.Set("mode", "ro")
	r, err := sql.Open("sqlite3", "file:"+path+"?"+q.Encode())
	if err != nil {
		w.Close()
		return nil, fmt.Errorf("store: open %s: %w", path, err)
	}
	r.SetMaxOpenConns(4)
	db.r = r
	var n int64
	if err := w.QueryRow(`SELECT count(*) FROM outbox`).Scan(&n); err != nil {
		db.Close()
		return nil, fmt.Errorf("store: %s: %w", path, err)
	}
	db.depth.Store(n)
	if err := db.writeReserve(); err != nil {
		db.disk.full = true
		log.Error("ALARM outbox disk full at start: new events are refused until space returns", "err", err)
	}
	log.Info("store open", "path", path, "outbox_depth", n, "max_outbox", opts.MaxOutbox)
	return db, nil
}

// Close closes both connection pools.
func (db *DB) Close() error {
	var err error
	if db.r != nil {
		err = db.r.Close()
	}
	if e := db.w.Close(); e != nil && err == nil {
		err = e
	}
	return err
}

// migrate applies the embedded migrations not yet recorded in user_version.
func (db *DB) migrate() error {
	names, err := fs.Glob(migrationFS, "migrations/*.sql")
	if err != nil {
		return err
	}
	sort.Strings(names)
	var cur int
	if err := db.w.QueryRow(`PRAGMA user_version`).Scan(&cur); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	for _, name := range names {
		base := strings.TrimPrefix(name, "migrations/")
		num, err := strconv.Atoi(strings.SplitN(base, "_", 2)[0])
		if err != nil {
			return fmt.Errorf("migrate: bad migration name %s", base)
		}
		if num <= cur {
			continue
		}
		body, err := migrationFS.ReadFile(name)
		if err != nil {
			return err
		}
		tx, err := db.w.Begin()
		if err != nil {
			return fmt.Errorf("migrate %s: %w", base, err)
		}
		if _, err := tx.Exec(string(body)); err != nil {
			tx.Rollback()
			return fmt.Errorf("migrate %s: %w", base, err)
		}
		if _, err := tx.Exec(fmt.Sprintf(`PRAGMA user_version = %d`, num)); err != nil {
			tx.Rollback()
			return fmt.Errorf("migrate %s: %w", base, err)
		}
		if err := tx.Commit(); err != nil {
			return fmt.Errorf("migrate %s: %w", base, err)
		}
		db.log.Info("store migrated", "version", num)
		cur = num
	}
	return nil
}

// MaxOutbox is the configured bound.
func (db *DB) MaxOutbox() int { return db.opts.MaxOutbox }

// Depth is the number of messages (events and unrecognised faces) waiting
// in the outbox.
func (db *DB) Depth() int { return int(db.depth.Load()) }

// Enqueue encodes ev (validating it) and commits it to the outbox.
func (db *DB) Enqueue(ctx context.Context, ev *wire.Event) error {
	_, err := db.enqueue(ctx, ev, "", time.Time{}, 0)
	return err
}

// EnqueueDebounced stores ev unless key was already used within cooldown
// before now (cooldown 0: once per key forever). The key check, its update
// and the outbox insert are one transaction, committed before it returns.
// enqueued reports whether the event was stored; a debounced duplicate
// returns (false, nil).
func (db *DB) EnqueueDebounced(ctx context.Context, ev *wire.Event, key string, now time.Time, cooldown time.Duration) (bool, error) {
	if key == "" {
		return false, errors.New("store: empty debounce key")
	}
	return db.enqueue(ctx, ev, key, now, cooldown)
}

func (db *DB) enqueue(ctx context.Context, ev *wire.Event, key string, now time.Time, cooldown time.Duration) (bool, error) {
	payload, err := ev.Encode()
	if err != nil {
		return false, fmt.Errorf("store: enqueue: %w", err)
	}
	created := now
	if created.IsZero() {
		created = time.UnixMilli(ev.CapturedAt)
	}
	r := row{id: ev.EventID, kind: wire.TopicKindEvents, payload: payload, created: created}
	return db.insert(ctx, r, db.opts.MaxOutbox, key, now, cooldown)
}

// row is one message to commit to the outbox.
type row struct {
	id, kind string
	payload  []byte
	created  time.Time
}

// insert commits r to the outbox unless the outbox holds limit rows or
// more (ErrOutboxFull), the disk is full (ErrDiskFull) or, with a key,
// the key was used within cooldown before now (false, nil). The key
// check, its update and the insert are one transaction.
func (db *DB) insert(ctx context.Context, r row, limit int, key string, now time.Time, cooldown time.Duration) (bool, error) {
	if err := db.refuseEarly(r); err != nil {
		return false, err
	}
	stored, err := db.insertTx(ctx, r, limit, key, now, cooldown)
	return stored, db.checkInsert(r, stored, err)
}

func (db *DB) insertTx(ctx context.Context, r row, limit int, key string, now time.Time, cooldown time.Duration) (bool, error) {
	tx, err := db.w.BeginTx(ctx, nil)
	if err != nil {
		return false, fmt.Errorf("store: enqueue: %w", err)
	}
	defer tx.Rollback()
	if key != "" {
		var last int64
		err := tx.QueryRowContext(ctx, `SELECT last_at FROM debounce WHERE key = ?`, key).Scan(&last)
		switch {
		case err == nil:
			if cooldown == 0 || now.Sub(time.UnixMilli(last)) < cooldown {
				return false, nil
			}
		case errors.Is(err, sql.ErrNoRows):
		default:
			return false, fmt.Errorf("store: debounce: %w", err)
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO debounce(key, last_at) VALUES(?, ?)
			ON CONFLICT(key) DO UPDATE SET last_at = excluded.last_at`, key, now.UnixMilli()); err != nil {
			return false, fmt.Errorf("store: debounce: %w", err)
		}
	}
	var n int
	if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM outbox`).Scan(&n); err != nil {
		return false, fmt.Errorf("store: enqueue: %w", err)
	}
	if n >= limit {
		return false, fmt.Errorf("%w (%d messages waiting, room for %d of this kind); %s %s not stored",
			ErrOutboxFull, n, limit, r.kind, r.id)
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO outbox(event_id, kind, payload, created_at) VALUES(?, ?, ?, ?)`,
		r.id, r.kind, r.payload, r.created.UnixMilli()); err != nil {
		return false, fmt.Errorf("store: enqueue %s %s: %w", r.kind, r.id, err)
	}
	if err := tx.Commit(); err != nil {
		return false, fmt.Errorf("store: enqueue: %w", err)
	}
	db.depth.Add(1)
	return true, nil
}

// Pending returns up to limit outbox rows, oldest first.
func (db *DB) Pending(ctx context.Context, limit int) ([]Record, error) {
	if limit <= 0 {
		limit = 100
	}
	rows, err := db.w.QueryContext(ctx, `SELECT seq, kind, event_id, payload, created_at FROM outbox ORDER BY seq LIMIT ?`, limit)
	if err != nil {
		return nil, fmt.Errorf("store: pending: %w", err)
	}
	defer rows.Close()
	var out []Record
	for rows.Next() {
		var r Record
		var ms int64
		if err := rows.Scan(&r.Seq, &r.Kind, &r.EventID, &r.Payload, &ms); err != nil {
			return nil, fmt.Errorf("store: pending: %w", err)
		}
		r.CreatedAt = time.UnixMilli(ms)
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: pending: %w", err)
	}
	return out, nil
}

// Ack removes an acknowledged row. Acking a row that is already gone is
// not an error (the ack is idempotent).
func (db *DB) Ack(ctx context.Context, seq int64) error {
	res, err := db.w.ExecContext(ctx, `DELETE FROM outbox WHERE seq = ?`, seq)
	if err != nil && isDiskFull(err) {
		// The disk filled before any insert noticed: raise the alarm,
		// which releases the reserve, and delete again.
		db.disk.mu.Lock()
		db.alarmLocked(err)
		db.disk.mu.Unlock()
		res, err = db.w.ExecContext(ctx, `DELETE FROM outbox WHERE seq = ?`, seq)
	}
	if err != nil {
		return fmt.Errorf("store: ack %d: %w", seq, err)
	}
	if n, err := res.RowsAffected(); err == nil && n > 0 {
		db.depth.Add(-n)
	}
	return nil
}

// Get returns the value stored under key ("" and false when absent).
func (db *DB) Get(ctx context.Context, key string) (string, bool, error) {
	var v string
	err := db.r.QueryRowContext(ctx, `SELECT value FROM kv WHERE key = ?`, key).Scan(&v)
	if errors.Is(err, sql.ErrNoRows) {
		return "", false, nil
	}
	if err != nil {
		return "", false, fmt.Errorf("store: get %s: %w", key, err)
	}
	return v, true, nil
}

// Set stores value under key.
func (db *DB) Set(ctx context.Context, key, value string) error {
	if _, err := db.w.ExecContext(ctx, `INSERT INTO kv(key, value) VALUES(?, ?)
		ON CONFLICT(key) DO UPDATE SET value = excluded.value`, key, value); err != nil {
		return fmt.Errorf("store: set %s: %w", key, err)
	}
	return nil
}

// PruneDebounce deletes debounce keys last used before cutoff (keys of past
// days), returning how many were removed.
func (db *DB) PruneDebounce(ctx context.Context, cutoff time.Time) (int64, error) {
	res, err := db.w.ExecContext(ctx, `DELETE FROM debounce WHERE last_at < ?`, cutoff.UnixMilli())
	if err != nil {
		return 0, fmt.Errorf("store: prune: %w", err)
	}
	return res.RowsAffected()
}
