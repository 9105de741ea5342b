// Package store opens the hub's SQLite database and applies its embedded,
// numbered migrations. It gives one writer connection (SQLite allows one
// writer; serialising in Go avoids SQLITE_BUSY storms) and a separate pool
// of read connections, with WAL, synchronous=NORMAL and immediate write
// transactions.
//
// Migrations live in migrations/NNNN_name.sql and are applied in order,
// each in its own transaction, recorded in schema_migrations, by the
// runner in hub/store/migrate (which the city database uses too). Ranges are
// reserved per component so parallel work never collides:
// 0001–0099 core (roster, gates, events, attendance), 0100–0199 accounts,
// consent and enrolment, 0200–0299 web and notifications, 0300–0399 city
// database sync, 0400–0499 faces the gates did not recognise and gate
// templates, 0500–0599 privacy duties (breach register, login lockouts).
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

	"github.com/diemdanh/diemdanh/hub/store/migrate"
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
	if err := migrateDB(ctx, w, log); err != nil {
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

// dialect is how the hub's SQLite keeps schema_migrations: applied_at is
// the UTC time as RFC 3339 text.
var dialect = migrate.Dialect{
	Table: "schema_migrations",
	CreateTable: `CREATE TABLE IF NOT EXISTS schema_migrations (
		version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)`,
	Param: func(int) string { return "?" },
	Now:   `strftime('%Y-%m-%dT%H:%M:%SZ', 'now')`,
}

// loadMigrations reads the embedded migrations, by version.
func loadMigrations() ([]migrate.Migration, error) {
	sub, err := fs.Sub(migrationsFS, "migrations")
	if err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	ms, err := migrate.Load(sub)
	if err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	return ms, nil
}

// migrateDB applies the embedded migrations not yet recorded in
// schema_migrations (hub/store/migrate) and logs each one applied.
func migrateDB(ctx context.Context, w *sql.DB, log *slog.Logger) error {
	ms, err := loadMigrations()
	if err != nil {
		return err
	}
	applied, err := migrate.Run(ctx, migrate.SQL(w), dialect, ms)
	for _, name := range applied {
		log.Info("applied migration", "name", name)
	}
	if err != nil {
		return fmt.Errorf("store: %w", err)
	}
	return nil
}
