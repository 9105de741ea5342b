package broker_test

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/diemdanh/diemdanh/hub/ingest/ingesttest"
	"github.com/diemdanh/diemdanh/hub/store"
)

// TestFaultLockoutSurvivesRestart: a gate username is locked by wrong
// passwords against a real hub process, the process is killed with SIGKILL
// and started again on the same SQLite file; the right password is still
// refused until the lock ends, then accepted, and its counter is deleted.
func TestFaultLockoutSurvivesRestart(t *testing.T) {
	const base = 8 * time.Second // the first lock; the restart must take less
	ctx := context.Background()
	dbPath := filepath.Join(t.TempDir(), "hub.db")
	db, err := store.Open(ctx, dbPath, nil)
	if err != nil {
		t.Fatal(err)
	}
	gates, _, err := ingesttest.Seed(ctx, db, []string{"thcs-a"}, 2, 1)
	if err != nil {
		t.Fatal(err)
	}
	db.Close()
	g, other := gates[0], gates[1]
	addr := freeAddr(t)
	url := "tcp://" + addr
	env := "HUBB_CHILD_LOCKOUT_BASE=" + base.String()

	ch := startChild(t, dbPath, addr, "", env)
	defer func() { ch.cmd.Process.Kill(); ch.cmd.Wait() }()
	for i := 0; i < 4; i++ { // 3 free failures, the 4th locks for base
		if _, err := connect(t, clientOpts(url, "lock", g.Username, "guess")); err == nil {
			t.Fatal("wrong password accepted")
		}
	}
	lockedAt := time.Now()
	if _, err := connect(t, clientOpts(url, "lock", g.Username, g.Password)); err == nil {
		t.Fatal("right password accepted during the lockout, before the restart")
	}

	if err := ch.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	ch.cmd.Wait()
	ch = startChild(t, dbPath, addr, "", env)
	if since := time.Since(lockedAt); since > base-2*time.Second {
		t.Fatalf("the restart took %v: too long to test a %v lock", since, base)
	}
	if _, err := connect(t, clientOpts(url, "lock", g.Username, g.Password)); err == nil {
		t.Fatal("right password accepted after the restart: the lockout was reset")
	}
	if time.Since(lockedAt) >= base {
		t.Fatalf("the refusal came %v after the lock began, after the lock's end: it proves nothing", time.Since(lockedAt))
	}
	// Another gate on the same address is not locked.
	if _, err := connect(t, clientOpts(url, "other", other.Username, other.Password)); err != nil {
		t.Fatalf("another gate refused after the restart: %v", err)
	}
	time.Sleep(time.Until(lockedAt.Add(base + 500*time.Millisecond)))
	if _, err := connect(t, clientOpts(url, "lock", g.Username, g.Password)); err != nil {
		t.Fatalf("right password refused after the lock ended: %v", err)
	}
	db, err = store.Open(ctx, dbPath, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var n int
	if err := db.R.QueryRow(`SELECT count(*) FROM login_lockouts WHERE scope = 'mqtt' AND key = ?`, "u:"+g.Username).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Fatalf("%d counters of the gate left after its good login, want 0", n)
	}
}
