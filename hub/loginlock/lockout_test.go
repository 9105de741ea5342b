package loginlock_test

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/diemdanh/diemdanh/hub/api"
	"github.com/diemdanh/diemdanh/hub/loginlock"
	"github.com/diemdanh/diemdanh/hub/store"
)

// TestStoredLockoutHoldsAcrossInstances: an api.Lockout kept in a scope of
// login_lockouts locks a key; a second Lockout on the same database (the
// hub after a restart) refuses it until the lock ends, a success there
// deletes the stored counter, another scope is untouched, and a store
// that cannot be read is reported, not taken for "not locked".
func TestStoredLockoutHoldsAcrossInstances(t *testing.T) {
	ctx := context.Background()
	db, err := store.Open(ctx, filepath.Join(t.TempDir(), "hub.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 12, 6, 7, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	cfg := api.LockoutConfig{FreeFailures: 3, Base: time.Minute, Max: 10 * time.Minute}
	first := api.NewStoredLockout(cfg, clock, loginlock.New(db, loginlock.ScopeHTTPGate))
	var d time.Duration
	for i := 0; i < 4; i++ {
		if d, err = first.Fail(ctx, "gate:g1"); err != nil {
			t.Fatal(err)
		}
	}
	if d != 2*time.Minute {
		t.Fatalf("4th failure locks for %v, want 2m", d)
	}
	now = now.Add(30 * time.Second)
	cases := []struct {
		name   string
		scope  string
		key    string
		after  time.Duration
		locked bool
	}{
		{"locked after the restart", loginlock.ScopeHTTPGate, "gate:g1", 0, true},
		{"another key", loginlock.ScopeHTTPGate, "gate:g2", 0, false},
		{"another scope", loginlock.ScopeGalleryGate, "gate:g1", 0, false},
		{"the lock has ended", loginlock.ScopeHTTPGate, "gate:g1", 2 * time.Minute, false},
	}
	for _, c := range cases {
		second := api.NewStoredLockout(cfg, func() time.Time { return now.Add(c.after) }, loginlock.New(db, c.scope))
		left, locked, err := second.Locked(ctx, c.key)
		if err != nil {
			t.Fatal(err)
		}
		if locked != c.locked {
			t.Errorf("%s: locked = %v (left %v), want %v", c.name, locked, left, c.locked)
		}
		if c.locked && left != 90*time.Second {
			t.Errorf("%s: %v left, want 1m30s", c.name, left)
		}
	}
	second := api.NewStoredLockout(cfg, clock, loginlock.New(db, loginlock.ScopeHTTPGate))
	if err := second.Reset(ctx, "gate:g1"); err != nil {
		t.Fatal(err)
	}
	third := api.NewStoredLockout(cfg, clock, loginlock.New(db, loginlock.ScopeHTTPGate))
	if _, locked, _ := third.Locked(ctx, "gate:g1"); locked {
		t.Error("a reset key is still locked after another restart")
	}
	db.Close()
	closed := api.NewStoredLockout(cfg, clock, loginlock.New(db, loginlock.ScopeHTTPGate))
	if _, _, err := closed.Locked(ctx, "gate:g1"); err == nil {
		t.Error("a closed database reads as not locked, without an error")
	}
}
