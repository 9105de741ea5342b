package store

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// mountTmpfs mounts a tmpfs of size (e.g. "4m") on a new folder under
// t.TempDir() and unmounts it in t.Cleanup. It fails (never skips) where
// the machine cannot mount (not root).
func mountTmpfs(t *testing.T, size string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "small")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size, "tmpfs", dir).CombinedOutput(); err != nil {
		t.Fatalf("this fault test needs a small filesystem: mount -t tmpfs (run as root): %v %s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v %s", dir, err, out)
		}
	})
	return dir
}

// fillDisk writes path until the filesystem has no room left.
func fillDisk(t *testing.T, path string) int64 {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	chunk := make([]byte, 64<<10)
	var n int64
	for {
		w, err := f.Write(chunk)
		n += int64(w)
		if err != nil {
			if !strings.Contains(err.Error(), "no space") {
				t.Fatalf("filling %s: %v", path, err)
			}
			return n
		}
	}
}

// TestFaultOutboxDiskFull: on a small tmpfs that is then filled, the
// store refuses new events with ErrDiskFull, logs one alarm, counts each
// refusal and reports DiskFull; every event stored before is still
// pending and is acknowledged (the reserve file it releases makes room
// for the deletes). Once the filler is deleted DiskFull
// clears without a write and the next event is stored.
func TestFaultOutboxDiskFull(t *testing.T) {
	dir := mountTmpfs(t, "4m")
	var logs bytes.Buffer
	db, err := Open(filepath.Join(dir, "edge.db"), Options{}, slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ctx := context.Background()
	t0 := time.Date(2026, 12, 7, 7, 0, 0, 0, time.UTC)
	stored := map[string]bool{}
	for i := 0; i < 5; i++ {
		ev := testEvent(t, "079123456789", t0.Add(time.Duration(i)*time.Second))
		if err := db.Enqueue(ctx, ev); err != nil {
			t.Fatal(err)
		}
		stored[ev.EventID] = true
	}
	filler := filepath.Join(dir, "filler")
	t.Logf("filler: %d bytes", fillDisk(t, filler))

	var refusedErr error
	for i := 0; i < 5000 && refusedErr == nil; i++ {
		ev := testEvent(t, "079123456789", t0.Add(time.Minute+time.Duration(i)*time.Second))
		ok, err := db.EnqueueDebounced(ctx, ev, "k"+ev.EventID, t0, 0)
		switch {
		case err != nil:
			refusedErr = err
		case ok:
			stored[ev.EventID] = true // room left in the WAL file: stored
		}
	}
	if !errors.Is(refusedErr, ErrDiskFull) {
		t.Fatalf("a full disk gave %v, want ErrDiskFull", refusedErr)
	}
	if !db.DiskFull() {
		t.Fatal("DiskFull is false after a refusal on a full disk")
	}
	for i := 0; i < 3; i++ { // later refusals are counted, not logged again
		if err := db.Enqueue(ctx, testEvent(t, "079123456789", t0)); !errors.Is(err, ErrDiskFull) {
			t.Fatalf("refusal %d: %v", i, err)
		}
	}
	if got := db.Refused()[RefusedDiskFull]; got != 4 {
		t.Fatalf("refused %d, want 4", got)
	}
	if n := strings.Count(logs.String(), "ALARM outbox disk full"); n != 1 {
		t.Fatalf("%d alarm lines, want 1:\n%s", n, logs.String())
	}
	recs, err := db.Pending(ctx, 100000)
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != len(stored) || db.Depth() != len(stored) {
		t.Fatalf("pending %d, depth %d, stored %d", len(recs), db.Depth(), len(stored))
	}
	for _, r := range recs {
		if !stored[r.EventID] {
			t.Fatalf("pending %s was never stored", r.EventID)
		}
	}
	// The released reserve leaves room for the acks: the outbox drains.
	for _, r := range recs {
		if err := db.Ack(ctx, r.Seq); err != nil {
			t.Fatalf("ack %d on a full disk: %v", r.Seq, err)
		}
	}
	if db.Depth() != 0 || !db.DiskFull() {
		t.Fatalf("after the acks: depth %d, disk full %v", db.Depth(), db.DiskFull())
	}

	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	if db.DiskFull() {
		t.Fatal("DiskFull still true after the filler was deleted")
	}
	if !strings.Contains(logs.String(), "outbox disk space back") {
		t.Fatalf("no space-back line:\n%s", logs.String())
	}
	ev := testEvent(t, "079123456790", t0.Add(time.Hour))
	if ok, err := db.EnqueueDebounced(ctx, ev, "after", t0, 0); err != nil || !ok {
		t.Fatalf("after space returned: stored=%v err=%v", ok, err)
	}
}

// TestFaultOpenOnFullDisk: a store reopened on a filesystem filled while
// it was closed opens (its reserve file makes room), starts with the
// alarm raised and still hands out and acknowledges what its outbox holds.
func TestFaultOpenOnFullDisk(t *testing.T) {
	dir := mountTmpfs(t, "4m")
	path := filepath.Join(dir, "edge.db")
	db, err := Open(path, Options{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := db.Enqueue(ctx, testEvent(t, "079123456789", time.Now())); err != nil {
		t.Fatal(err)
	}
	db.Close()
	fillDisk(t, filepath.Join(dir, "filler"))
	db, err = Open(path, Options{}, nil)
	if err != nil {
		t.Fatalf("open on a full disk: %v", err)
	}
	defer db.Close()
	if !db.DiskFull() {
		t.Fatal("DiskFull false on a full disk")
	}
	recs, err := db.Pending(ctx, 10)
	if err != nil || len(recs) != 1 {
		t.Fatalf("pending %d, %v", len(recs), err)
	}
	if err := db.Ack(ctx, recs[0].Seq); err != nil || db.Depth() != 0 {
		t.Fatalf("ack: %v, depth %d", err, db.Depth())
	}
}
