// Package store opens the hub's SQLite database and applies its embedded,
// numbered migrations. It gives one writer connection (SQLite allows one
// writer; serialising in Go avoids SQLITE_BUSY storms) and a separate pool
// of read connections, with WAL, synchronous=NORMAL and immediate write
// transactions.
//
// Migrations live in migrations/NNNN_name.sql and are applied in order,
// each in its own transaction, recorded in schema_migrations. Ranges are
// reserved per component so parallel work never collides:
// 0001–0099 core (roster, gates, events, attendance), 0100–0199 accounts,
// consent and enrolment, 0200–0299 web and notifications, 0300–0399 city
// database sync.
package store

import (
	"context"
	"database/sql"
	"embed"
	"fmt"
	"io/fs"
	"log/slog"
	"net/url"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"time"

	_ "github.com/mattn/go-sqlite3" // SQLite driver
)

//go:embed migrations/*.sql
var migrationsFS embed.FS

// DB is the hub's one SQLite database, which holds every component's
// tables (roster, templates, events, ...): W is the single writer, R the
// read pool.
type DB struct {
	W    *sql.DB
	R    *sql.DB
	Path string
}

// DSN builds the go-sqlite3 connection string the project uses everywhere.
func DSN(path string, readOnly bool) string {
	q := url.Values{}
	q.Set("_journal_mode", "WAL")
	q.Set("_synchronous", "NORMAL")
	q.Set("_busy_timeout", "5000")
	q.Set("_foreign_keys", "on")
	if readOnly {
		q.Set("mode", "ro")
	} else {
		q.Set("_txlock", "immediate")
	}
	return "file:" + path + "?" + q.Encode()
}

// Open opens (creating if needed) the database at path and migrates it.
func Open(ctx context.Context, path string, log *slog.Logger) (*DB, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	w, err := sql.Open("sqlite3", DSN(abs, false))
	if err != nil {
		return nil, fmt.Errorf("store: open writer: %w", err)
	}
	w.SetMaxOpenConns(1)
	w.SetMaxIdleConns(1)
	w.SetConnMaxLifetime(0)
	if err := w.PingContext(ctx); err != nil {
		w.Close()
		return nil, fmt.Errorf("store: open %s: %w", abs, err)
	}
	if err := migrate(ctx, w, log); err != nil {
		w.Close()
		return nil, err
	}
	r, err := sql.Open("sqlite3", DSN(abs, true))
	if err != nil {
		w.Close()
		return nil, fmt.Errorf("store: open readers: %w", err)
	}
	n := runtime.NumCPU() * 2
	if n < 4 {
		n = 4
	}
	r.SetMaxOpenConns(n)
	r.SetMaxIdleConns(n)
	return &DB{W: w, R: r, Path: abs}, nil
}

// Close closes both pools; the writer last so the WAL is checkpointed.
func (db *DB) Close() error {
	err1 := db.R.Close()
	_, _ = db.W.Exec("PRAGMA wal_checkpoint(TRUNCATE)")
	err2 := db.W.Close()
	if err1 != nil {
		return err1
	}
	return err2
}

// Tx runs fn in a write transaction (BEGIN IMMEDIATE) and commits it.
func (db *DB) Tx(ctx context.Context, fn func(*sql.Tx) error) error {
	tx, err := db.W.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("store: begin: %w", err)
	}
	if err := fn(tx); err != nil {
		_ = tx.Rollback()
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("store: commit: %w", err)
	}
	return nil
}

type migration struct {
	version int
	name    string
	sql     string
}

func loadMigrations() ([]migration, error) {
	ents, err := fs.ReadDir(migrationsFS, "migrations")
	if err != nil {
		return nil, err
	}
	var out []migration
	seen := map[int]string{}
	for _, e := range ents {
		name := e.Name()
		num, _, ok := strings.Cut(name, "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil || !strings.HasSuffix(name, ".sql") {
			return nil, fmt.Errorf("store: bad migration file name %q (want NNNN_name.sql)", name)
		}
		if prev, dup := seen[v]; dup {
			return nil, fmt.Errorf("store: migrations %q and %q share version %d", prev, name, v)
		}
		seen[v] = name
		b, err := migrationsFS.ReadFile("migrations/" + name)
		if err != nil {
			return nil, err
		}
		out = append(out, migration{v, name, string(b)})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].version < out[j].version })
	return out, nil
}

func migrate(ctx context.Context, w *sql.DB, log *slog.Logger) error {
	ms, err := loadMigrations()
	if err != nil {
		return err
	}
	if _, err := w.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)`); err != nil {
		return fmt.Errorf("store: migrations table: %w", err)
	}
	for _, m := range ms {
		var one int
		err := w.QueryRowContext(ctx, `SELECT 1 FROM schema_migrations WHERE version = ?`, m.version).Scan(&one)
		if err == nil {
			continue
		}
		if err != sql.ErrNoRows {
			return fmt.Errorf("store: migration %s: %w", m.name, err)
		}
		tx, err := w.BeginTx(ctx, nil)
		if err != nil {
			return fmt.Errorf("store: migration %s: %w", m.name, err)
		}
		if _, err := tx.ExecContext(ctx, m.sql); err != nil {
			_ = tx.Rollback()
			return fmt.Errorf("store: migration %s: %w", m.name, err)
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO schema_migrations(version, name, applied_at) VALUES (?, ?, ?)`,
			m.version, m.name, time.Now().UTC().Format(time.RFC3339)); err != nil {
			_ = tx.Rollback()
			return fmt.Errorf("store: migration %s: %w", m.name, err)
		}
		if err := tx.Commit(); err != nil {
			return fmt.Errorf("store: migration %s: %w", m.name, err)
		}
		log.Info("applied migration", "name", m.name)
	}
	return nil
}
