package store

import (
	"context"
	"path/filepath"
	"testing"
)

func TestOpenMigratesIdempotently(t *testing.T) {
	path := filepath.Join(t.TempDir(), "hub.db")
	ctx := context.Background()
	db, err := Open(ctx, path, nil)
	if err != nil {
		t.Fatal(err)
	}
	var n1 int
	if err := db.R.QueryRow(`SELECT count(*) FROM schema_migrations`).Scan(&n1); err != nil {
		t.Fatal(err)
	}
	ms, _ := loadMigrations()
	if n1 != len(ms) || n1 == 0 {
		t.Fatalf("applied %d migrations, have %d files", n1, len(ms))
	}
	var mode string
	if err := db.W.QueryRow(`PRAGMA journal_mode`).Scan(&mode); err != nil || mode != "wal" {
		t.Fatalf("journal_mode %q %v", mode, err)
	}
	db.Close()
	db, err = Open(ctx, path, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var n2 int
	_ = db.R.QueryRow(`SELECT count(*) FROM schema_migrations`).Scan(&n2)
	if n2 != n1 {
		t.Fatalf("reopen applied more: %d vs %d", n2, n1)
	}
	// The read pool cannot write.
	if _, err := db.R.Exec(`INSERT INTO meta(key, value) VALUES ('x', 'y')`); err == nil {
		t.Fatal("read pool accepted a write")
	}
	// Pupil IDs must be 12 digits.
	if _, err := db.W.Exec(`INSERT INTO schools(id, name) VALUES ('s1', 'S')`); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"12345", "07912345678a", "0791234567890"} {
		if _, err := db.W.Exec(`INSERT INTO pupils(id, school_id, full_name) VALUES (?, 's1', 'X')`, id); err == nil {
			t.Errorf("pupil id %q accepted", id)
		}
	}
	if _, err := db.W.Exec(`INSERT INTO pupils(id, school_id, full_name) VALUES ('079123456789', 's1', 'Nguyễn Văn A')`); err != nil {
		t.Fatal(err)
	}
}
