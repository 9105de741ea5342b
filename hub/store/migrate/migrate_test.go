package migrate

import (
	"context"
	"database/sql"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"testing/fstest"

	_ "github.com/mattn/go-sqlite3"
)

// testDialect numbers its placeholders (?1, ?2) and logs every
// transaction's lock, so the tests see both.
var testDialect = Dialect{
	Table:       "applied",
	CreateTable: `CREATE TABLE IF NOT EXISTS applied (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)`,
	Lock:        `INSERT INTO lock_log DEFAULT VALUES`,
	Param:       func(n int) string { return "?" + strconv.Itoa(n) },
	Now:         `'now'`,
}

func openDB(t *testing.T) *sql.DB {
	t.Helper()
	db, err := sql.Open("sqlite3", "file:"+filepath.Join(t.TempDir(), "m.db"))
	if err != nil {
		t.Fatal(err)
	}
	db.SetMaxOpenConns(1)
	t.Cleanup(func() { db.Close() })
	if _, err := db.Exec(`CREATE TABLE lock_log (id INTEGER PRIMARY KEY)`); err != nil {
		t.Fatal(err)
	}
	return db
}

func files(m map[string]string) fstest.MapFS {
	out := fstest.MapFS{}
	for k, v := range m {
		out[k] = &fstest.MapFile{Data: []byte(v)}
	}
	return out
}

func TestLoad(t *testing.T) {
	cases := []struct {
		name    string
		files   map[string]string
		want    []string // names in order
		wantErr string
	}{
		{name: "by version, not by name", files: map[string]string{"0100_c.sql": "c", "20_b.sql": "b", "0001_a.sql": "a"},
			want: []string{"0001_a.sql", "20_b.sql", "0100_c.sql"}},
		{name: "empty", files: map[string]string{}, want: nil},
		{name: "not .sql", files: map[string]string{"0001_a.txt": ""}, wantErr: `bad migration file name "0001_a.txt"`},
		{name: "no number", files: map[string]string{"core.sql": ""}, wantErr: `bad migration file name "core.sql"`},
		{name: "no underscore", files: map[string]string{"0001.sql": ""}, wantErr: `bad migration file name "0001.sql"`},
		{name: "shared version", files: map[string]string{"0001_a.sql": "", "001_b.sql": ""}, wantErr: "share version 1"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ms, err := Load(files(tc.files))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err %v, want %q", err, tc.wantErr)
				}
				return
			}
			var names []string
			for _, m := range ms {
				names = append(names, m.Name)
				if m.SQL != tc.files[m.Name] {
					t.Errorf("%s: SQL %q", m.Name, m.SQL)
				}
			}
			if err != nil || !slices.Equal(names, tc.want) {
				t.Fatalf("got %v %v, want %v", names, err, tc.want)
			}
		})
	}
}

func count(t *testing.T, db *sql.DB, q string) int {
	t.Helper()
	var n int
	if err := db.QueryRow(q).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// TestRun: in order, each once with its record, the lock first in every
// transaction; a failing migration leaves nothing of itself, stops the
// run and is applied once fixed.
func TestRun(t *testing.T) {
	ctx := context.Background()
	db := openDB(t)
	ms := []Migration{
		{1, "0001_a.sql", `CREATE TABLE a (x INTEGER); INSERT INTO a VALUES (1);`},
		{2, "0002_b.sql", `CREATE TABLE b (x INTEGER); INSERT INTO b VALUES (2);`},
		{3, "0003_bad.sql", `CREATE TABLE c (x INTEGER); INSERT INTO no_such_table VALUES (3);`},
		{4, "0004_d.sql", `CREATE TABLE d (x INTEGER);`},
	}
	applied, err := Run(ctx, SQL(db), testDialect, ms)
	if err == nil || !strings.Contains(err.Error(), "migration 0003_bad.sql: ") || !strings.Contains(err.Error(), "no_such_table") {
		t.Fatalf("err %v, want migration 0003_bad.sql failing", err)
	}
	if !slices.Equal(applied, []string{"0001_a.sql", "0002_b.sql"}) {
		t.Fatalf("applied %v before the failure", applied)
	}
	if n := count(t, db, `SELECT count(*) FROM sqlite_master WHERE name IN ('c', 'd')`); n != 0 {
		t.Fatalf("%d tables of the failed and later migrations exist", n)
	}
	if n := count(t, db, `SELECT count(*) FROM applied`); n != 2 {
		t.Fatalf("%d versions recorded, want 2", n)
	}
	// The lock's row of each committed transaction: the table, 1 and 2 (3's
	// went with its rollback).
	if n := count(t, db, `SELECT count(*) FROM lock_log`); n != 3 {
		t.Fatalf("lock committed %d times, want 3", n)
	}
	ms[2].SQL = `CREATE TABLE c (x INTEGER);`
	applied, err = Run(ctx, SQL(db), testDialect, ms)
	if err != nil || !slices.Equal(applied, []string{"0003_bad.sql", "0004_d.sql"}) {
		t.Fatalf("after the fix: applied %v, err %v", applied, err)
	}
	applied, err = Run(ctx, SQL(db), testDialect, ms)
	if err != nil || len(applied) != 0 {
		t.Fatalf("again: applied %v, err %v", applied, err)
	}
	if n := count(t, db, `SELECT count(*) FROM lock_log`); n != 3+5+5 { // twice more: the table, 1..4
		t.Fatalf("lock committed %d times, want 13", n)
	}
	if n := count(t, db, `SELECT count(*) FROM a`) + count(t, db, `SELECT count(*) FROM b`); n != 2 {
		t.Fatalf("a and b hold %d rows, want one each (each applied once)", n)
	}
	rows, err := db.Query(`SELECT version, name, applied_at FROM applied ORDER BY version`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var got []string
	for rows.Next() {
		var v int
		var name, at string
		if err := rows.Scan(&v, &name, &at); err != nil {
			t.Fatal(err)
		}
		got = append(got, strconv.Itoa(v)+" "+name+" "+at)
	}
	want := []string{"1 0001_a.sql now", "2 0002_b.sql now", "3 0003_bad.sql now", "4 0004_d.sql now"}
	if !slices.Equal(got, want) {
		t.Fatalf("recorded %v, want %v", got, want)
	}
}

// TestRunKeepsRecordedVersions: versions already in the table (another
// runner, an older release, a shell script) are not applied again, even
// when their SQL would fail now.
func TestRunKeepsRecordedVersions(t *testing.T) {
	ctx := context.Background()
	db := openDB(t)
	for _, q := range []string{testDialect.CreateTable, `INSERT INTO applied VALUES (1, '0001_a.sql', '2024-01-01T00:00:00Z')`} {
		if _, err := db.Exec(q); err != nil {
			t.Fatal(err)
		}
	}
	ms := []Migration{{1, "0001_a.sql", `SELECT * FROM no_such_table`}, {2, "0002_b.sql", `CREATE TABLE b (x INTEGER)`}}
	applied, err := Run(ctx, SQL(db), testDialect, ms)
	if err != nil || !slices.Equal(applied, []string{"0002_b.sql"}) {
		t.Fatalf("applied %v, err %v", applied, err)
	}
	var at string
	if err := db.QueryRow(`SELECT applied_at FROM applied WHERE version = 1`).Scan(&at); err != nil || at != "2024-01-01T00:00:00Z" {
		t.Fatalf("version 1's record changed: %q %v", at, err)
	}
}

func TestRunFailsWhenTheTableCannotBeMade(t *testing.T) {
	d := testDialect
	d.CreateTable = `CREATE TABLE lock_log (id INTEGER)` // exists already
	_, err := Run(context.Background(), SQL(openDB(t)), d, nil)
	if err == nil || !strings.Contains(err.Error(), "migrations table: ") {
		t.Fatalf("err %v, want the migrations table's", err)
	}
}
