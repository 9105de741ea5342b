package store

import (
	"context"
	"database/sql"
	"path/filepath"
	"testing"
	"time"
)

// oldTableSQL is schema_migrations as hub databases have it on disk.
const oldTableSQL = `CREATE TABLE schema_migrations (
		version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)`

// schema is every object's SQL in the database, by type and name.
func schema(t *testing.T, db *sql.DB) map[string]string {
	t.Helper()
	rows, err := db.Query(`SELECT type || ' ' || name, COALESCE(sql, '') FROM sqlite_master`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	out := map[string]string{}
	for rows.Next() {
		var k, v string
		if err := rows.Scan(&k, &v); err != nil {
			t.Fatal(err)
		}
		out[k] = v
	}
	return out
}

// TestMigrationsKeepExistingDatabases: a database that the earlier
// release migrated part of (its schema_migrations rows and applied_at
// format) is completed without re-running what it recorded, ends with the
// same schema as a fresh one, and stays valid when reopened.
func TestMigrationsKeepExistingDatabases(t *testing.T) {
	ctx := context.Background()
	ms, err := loadMigrations()
	if err != nil || len(ms) < 3 {
		t.Fatalf("%d migrations, %v", len(ms), err)
	}
	// An existing database: the first two migrations applied and recorded
	// the way hub databases were, a row of data in between.
	path := filepath.Join(t.TempDir(), "old.db")
	raw, err := sql.Open("sqlite3", DSN(path, false))
	if err != nil {
		t.Fatal(err)
	}
	raw.SetMaxOpenConns(1)
	before := time.Now().UTC().Format(time.RFC3339)
	stmts := []string{oldTableSQL, ms[0].SQL, ms[1].SQL, `INSERT INTO schools(id, name) VALUES ('s1', 'Trường A')`}
	for _, q := range stmts {
		if _, err := raw.Exec(q); err != nil {
			t.Fatal(err)
		}
	}
	for _, m := range ms[:2] {
		if _, err := raw.Exec(`INSERT INTO schema_migrations(version, name, applied_at) VALUES (?, ?, ?)`, m.Version, m.Name, before); err != nil {
			t.Fatal(err)
		}
	}
	raw.Close()

	db, err := Open(ctx, path, nil)
	if err != nil {
		t.Fatalf("open an existing database: %v", err)
	}
	var n int
	if err := db.R.QueryRow(`SELECT count(*) FROM schema_migrations WHERE version <= ? AND applied_at = ?`, ms[1].Version, before).Scan(&n); err != nil || n != 2 {
		t.Fatalf("%d of the existing records kept (%v), want 2", n, err)
	}
	rows, err := db.R.Query(`SELECT name, applied_at FROM schema_migrations WHERE version > ?`, ms[1].Version)
	if err != nil {
		t.Fatal(err)
	}
	added := 0
	for rows.Next() {
		var name, at string
		if err := rows.Scan(&name, &at); err != nil {
			t.Fatal(err)
		}
		ts, err := time.Parse(time.RFC3339, at)
		if err != nil || at != ts.UTC().Format(time.RFC3339) || time.Since(ts) > time.Hour || time.Until(ts) > time.Minute {
			t.Errorf("%s applied_at %q is not this run's UTC RFC 3339 time (%v)", name, at, err)
		}
		added++
	}
	rows.Close()
	if added != len(ms)-2 {
		t.Fatalf("%d migrations added, want %d", added, len(ms)-2)
	}
	if err := db.R.QueryRow(`SELECT count(*) FROM schools WHERE id = 's1'`).Scan(&n); err != nil || n != 1 {
		t.Fatalf("the existing row is gone: %d %v", n, err)
	}
	got := schema(t, db.R)
	db.Close()

	fresh, err := Open(ctx, filepath.Join(t.TempDir(), "new.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	want := schema(t, fresh.R)
	fresh.Close()
	if len(got) != len(want) {
		t.Errorf("%d schema objects, a fresh database has %d", len(got), len(want))
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s differs from a fresh database's:\n%s\nwant\n%s", k, got[k], v)
		}
	}
	if want["table schema_migrations"] != oldTableSQL {
		t.Errorf("schema_migrations is now\n%s\nwant\n%s", want["table schema_migrations"], oldTableSQL)
	}

	db, err = Open(ctx, path, nil)
	if err != nil {
		t.Fatalf("reopen: %v", err)
	}
	defer db.Close()
	var check string
	if err := db.R.QueryRow(`PRAGMA integrity_check`).Scan(&check); err != nil || check != "ok" {
		t.Fatalf("integrity_check %q %v", check, err)
	}
	if err := db.R.QueryRow(`SELECT count(*) FROM pragma_foreign_key_check`).Scan(&n); err != nil || n != 0 {
		t.Fatalf("foreign_key_check: %d %v", n, err)
	}
	if err := db.R.QueryRow(`SELECT count(*) FROM schema_migrations`).Scan(&n); err != nil || n != len(ms) {
		t.Fatalf("reopen: %d records, want %d", n, len(ms))
	}
}
