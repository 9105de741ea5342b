package backup

import (
	"context"
	"database/sql"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/diemdanh/diemdanh/hub/store"
)

func TestBackupOfLiveDatabase(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	db, err := store.Open(ctx, filepath.Join(dir, "hub.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.W.Exec(`INSERT INTO schools(id, name) VALUES ('thcs-a', 'THCS A')`); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2000; i++ {
		if _, err := db.W.Exec(`INSERT INTO quarantine(received_at, topic, reason, payload) VALUES (?, 't', 'r', zeroblob(512))`, i); err != nil {
			t.Fatal(err)
		}
	}
	// Keep writing while the backup runs: the hub stays live.
	stop := make(chan struct{})
	var written atomic.Int64
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			if _, err := db.W.Exec(`INSERT INTO meta(key, value) VALUES (?, 'x')`, "k"+time.Now().Format(time.RFC3339Nano)); err == nil {
				written.Add(1)
			}
		}
	}()
	clock := time.Date(2026, 9, 7, 2, 30, 0, 0, time.UTC)
	b := New(db, Config{Enabled: true, Dir: filepath.Join(dir, "backups"), Keep: 2, At: "02:30"}, nil, func() time.Time { return clock })
	var paths []string
	for i := 0; i < 3; i++ {
		p, err := b.BackupNow(ctx)
		if err != nil {
			t.Fatal(err)
		}
		paths = append(paths, p)
		clock = clock.Add(24 * time.Hour)
	}
	close(stop)
	<-done
	if written.Load() == 0 {
		t.Fatal("no concurrent writes happened")
	}
	list, err := b.List()
	if err != nil || len(list) != 2 || list[0] != paths[2] || list[1] != paths[1] {
		t.Fatalf("kept %v (want the newest 2 of %v): %v", list, paths, err)
	}
	// The backup is a valid database holding the rows.
	bk, err := sql.Open("sqlite3", "file:"+paths[2]+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer bk.Close()
	var ok string
	if err := bk.QueryRow(`PRAGMA integrity_check`).Scan(&ok); err != nil || ok != "ok" {
		t.Fatalf("integrity: %q %v", ok, err)
	}
	var name string
	var n int
	if err := bk.QueryRow(`SELECT name FROM schools WHERE id = 'thcs-a'`).Scan(&name); err != nil || name != "THCS A" {
		t.Fatalf("school row: %q %v", name, err)
	}
	if err := bk.QueryRow(`SELECT count(*) FROM quarantine`).Scan(&n); err != nil || n != 2000 {
		t.Fatalf("quarantine rows: %d %v", n, err)
	}
	if err := bk.QueryRow(`SELECT count(*) FROM schema_migrations`).Scan(&n); err != nil || n == 0 {
		t.Fatalf("migrations: %d %v", n, err)
	}
}

func TestNextRunAndValidate(t *testing.T) {
	b := New(nil, Config{Enabled: true, Keep: 3, At: "02:30"}, nil, nil)
	loc := time.FixedZone("ICT", 7*3600)
	if got := b.Next(time.Date(2026, 9, 7, 1, 0, 0, 0, loc)); !got.Equal(time.Date(2026, 9, 7, 2, 30, 0, 0, loc)) {
		t.Errorf("before: %s", got)
	}
	if got := b.Next(time.Date(2026, 9, 7, 2, 30, 0, 0, loc)); !got.Equal(time.Date(2026, 9, 8, 2, 30, 0, 0, loc)) {
		t.Errorf("at: %s", got)
	}
	for _, c := range []struct {
		cfg   Config
		field string
	}{
		{Config{Enabled: true, Keep: 0, At: "02:30"}, "backup.keep"},
		{Config{Enabled: true, Keep: 3, At: "2:30"}, "backup.at"},
		{Config{Enabled: true, Keep: 3, At: "25:00"}, "backup.at"},
		{Config{Enabled: false}, ""},
		{Default(), ""},
	} {
		err := c.cfg.Validate("backup")
		if (err == nil) != (c.field == "") || (err != nil && !contains(err.Error(), c.field)) {
			t.Errorf("%+v: %v, want field %q", c.cfg, err, c.field)
		}
	}
}

func contains(s, sub string) bool { return len(sub) > 0 && len(s) >= len(sub) && (s[:len(sub)] == sub) }
