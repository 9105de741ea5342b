package store

import (
	"context"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestStrings(t *testing.T) {
	ctx := context.Background()
	db, err := Open(ctx, filepath.Join(t.TempDir(), "hub.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for _, id := range []string{"s2", "s1", "s3"} {
		if _, err := db.W.Exec(`INSERT INTO schools(id, name) VALUES (?, ?)`, id, "Trường "+id); err != nil {
			t.Fatal(err)
		}
	}
	cases := []struct {
		name    string
		query   string
		args    []any
		want    []string
		wantErr string
	}{
		{name: "in order", query: `SELECT id FROM schools ORDER BY id`, want: []string{"s1", "s2", "s3"}},
		{name: "with arguments", query: `SELECT name FROM schools WHERE id > ? ORDER BY id DESC`, args: []any{"s1"}, want: []string{"Trường s3", "Trường s2"}},
		{name: "integers in decimal", query: `SELECT 7 UNION ALL SELECT -12`, want: []string{"7", "-12"}},
		{name: "no rows is nil", query: `SELECT id FROM schools WHERE id = 'none'`, want: nil},
		{name: "bad query", query: `SELECT id FROM no_such_table`, wantErr: "no such table"},
		{name: "two columns", query: `SELECT id, name FROM schools`, wantErr: "expected 2 destination arguments"},
		{name: "NULL", query: `SELECT NULL`, wantErr: "converting NULL to string"},
	}
	tx, err := db.W.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	for _, tc := range cases {
		for _, q := range []struct {
			kind string
			q    Querier
		}{{"read pool", db.R}, {"transaction", tx}} {
			t.Run(tc.name+" "+q.kind, func(t *testing.T) {
				got, err := Strings(ctx, q.q, tc.query, tc.args...)
				if tc.wantErr != "" {
					if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
						t.Fatalf("err %v, want %q", err, tc.wantErr)
					}
					return
				}
				if err != nil || !slices.Equal(got, tc.want) || (got == nil) != (tc.want == nil) {
					t.Fatalf("got %q %v, want %q", got, err, tc.want)
				}
			})
		}
	}
	// A transaction sees its own uncommitted rows.
	if _, err := tx.Exec(`INSERT INTO schools(id, name) VALUES ('s0', 'S0')`); err != nil {
		t.Fatal(err)
	}
	got, err := Strings(ctx, tx, `SELECT id FROM schools ORDER BY id LIMIT 1`)
	if err != nil || !slices.Equal(got, []string{"s0"}) {
		t.Fatalf("in the transaction: %q %v", got, err)
	}
}
