// Package migrate applies numbered SQL migrations (NNNN_name.sql) to a
// database in order, each once and in its own transaction, and records the
// applied versions in a table of (version, name, applied_at). The hub's
// SQLite database (hub/store) and the city's PostgreSQL database
// (deploy/citydb) both use it; a Dialect says how each writes that table.
// It is pure Go and database-neutral: DB is a small interface, SQL adapts a
// *sql.DB to it.
package migrate

import (
	"context"
	"fmt"
	"io/fs"
	"sort"
	"strconv"
	"strings"
)

// Migration is one numbered SQL file.
type Migration struct {
	Version int
	Name    string
	SQL     string
}

// Load reads the migrations at the top of fsys, by version. Every file
// must be named NNNN_name.sql, and no two may share a version.
func Load(fsys fs.FS) ([]Migration, error) {
	ents, err := fs.ReadDir(fsys, ".")
	if err != nil {
		return nil, err
	}
	var out []Migration
	seen := map[int]string{}
	for _, e := range ents {
		name := e.Name()
		num, _, ok := strings.Cut(name, "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil || !strings.HasSuffix(name, ".sql") {
			return nil, fmt.Errorf("bad migration file name %q (want NNNN_name.sql)", name)
		}
		if prev, dup := seen[v]; dup {
			return nil, fmt.Errorf("migrations %q and %q share version %d", prev, name, v)
		}
		seen[v] = name
		b, err := fs.ReadFile(fsys, name)
		if err != nil {
			return nil, err
		}
		out = append(out, Migration{v, name, string(b)})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Version < out[j].Version })
	return out, nil
}

// Dialect is how one database keeps the table of applied versions.
type Dialect struct {
	// Table is the table's name, CreateTable the statement that creates it
	// when missing, with at least the columns version, name and
	// applied_at.
	Table       string
	CreateTable string
	// Lock, when not "", runs first in every transaction of the runner
	// (creating the table, each migration) so concurrent runners on one
	// database take turns.
	Lock string
	// Param is the placeholder of the n-th argument (1-based): "?" or "$n".
	Param func(n int) string
	// Now is the SQL expression stored in applied_at.
	Now string
}

// Tx is one transaction of the runner.
type Tx interface {
	Exec(ctx context.Context, query string, args ...any) error
	// QueryInt runs a query whose one row is one integer.
	QueryInt(ctx context.Context, query string, args ...any) (int, error)
	Commit(ctx context.Context) error
	Rollback(ctx context.Context) error
}

// DB begins the runner's transactions.
type DB interface {
	Begin(ctx context.Context) (Tx, error)
}

// Run applies every migration of ms whose version is not yet recorded in
// d.Table, in the order given, each in its own transaction together with
// its record, and returns the names it applied (also those applied before
// a failure, with the error). Running it again applies nothing.
func Run(ctx context.Context, db DB, d Dialect, ms []Migration) ([]string, error) {
	if err := inTx(ctx, db, d, func(tx Tx) error { return tx.Exec(ctx, d.CreateTable) }); err != nil {
		return nil, fmt.Errorf("migrations table: %w", err)
	}
	var applied []string
	for _, m := range ms {
		done := false
		err := inTx(ctx, db, d, func(tx Tx) (err error) {
			done, err = apply(ctx, tx, d, m)
			return err
		})
		if err != nil {
			return applied, fmt.Errorf("migration %s: %w", m.Name, err)
		}
		if done {
			applied = append(applied, m.Name)
		}
	}
	return applied, nil
}

// apply runs m and records it unless its version is recorded already.
func apply(ctx context.Context, tx Tx, d Dialect, m Migration) (bool, error) {
	n, err := tx.QueryInt(ctx, `SELECT count(*) FROM `+d.Table+` WHERE version = `+d.Param(1), m.Version)
	if err != nil || n > 0 {
		return false, err
	}
	if err := tx.Exec(ctx, m.SQL); err != nil {
		return false, err
	}
	err = tx.Exec(ctx, `INSERT INTO `+d.Table+` (version, name, applied_at) VALUES (`+d.Param(1)+`, `+d.Param(2)+`, `+d.Now+`)`,
		m.Version, m.Name)
	return err == nil, err
}

// inTx runs fn in a transaction that starts with d.Lock, and commits it.
func inTx(ctx context.Context, db DB, d Dialect, fn func(Tx) error) error {
	tx, err := db.Begin(ctx)
	if err != nil {
		return err
	}
	if d.Lock != "" {
		if err := tx.Exec(ctx, d.Lock); err != nil {
			_ = tx.Rollback(ctx)
			return fmt.Errorf("lock: %w", err)
		}
	}
	if err := fn(tx); err != nil {
		_ = tx.Rollback(ctx)
		return err
	}
	return tx.Commit(ctx)
}
