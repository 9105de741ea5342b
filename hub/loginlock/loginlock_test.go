package loginlock_test

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/diemdanh/diemdanh/hub/loginlock"
	"github.com/diemdanh/diemdanh/hub/store"
)

func TestSaveLoadDeletePrune(t *testing.T) {
	ctx := context.Background()
	db, err := store.Open(ctx, filepath.Join(t.TempDir(), "hub.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	now := time.Date(2026, 12, 6, 7, 0, 0, 0, time.UTC)
	mqtt, other := loginlock.New(db, "mqtt"), loginlock.New(db, "http-gate")
	states := map[string]loginlock.State{
		"u:locked":    {Failures: 5, Last: now.Add(-time.Second), Until: now.Add(time.Minute)},
		"u:recent":    {Failures: 2, Last: now.Add(-time.Minute)},
		"u:forgiven":  {Failures: 9, Last: now.Add(-2 * time.Hour), Until: now.Add(-90 * time.Minute)},
		"ip:10.0.0.1": {Failures: 1, Last: now.Add(-30 * time.Minute)},
	}
	for k, st := range states {
		if err := mqtt.Save(ctx, k, st); err != nil {
			t.Fatal(err)
		}
	}
	if err := other.Save(ctx, "u:locked", loginlock.State{Failures: 1, Last: now}); err != nil {
		t.Fatal(err)
	}
	got, err := mqtt.Load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for k, want := range states {
		g := got[k]
		if g.Failures != want.Failures || !g.Last.Equal(want.Last) || !g.Until.Equal(want.Until) {
			t.Errorf("%s: loaded %+v, saved %+v", k, g, want)
		}
	}
	n, err := mqtt.Prune(ctx, now, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if n != 1 {
		t.Errorf("pruned %d, want 1 (u:forgiven)", n)
	}
	if err := mqtt.Delete(ctx, "u:recent"); err != nil {
		t.Fatal(err)
	}
	got, _ = mqtt.Load(ctx)
	cases := []struct {
		key  string
		kept bool
	}{{"u:locked", true}, {"ip:10.0.0.1", true}, {"u:recent", false}, {"u:forgiven", false}}
	for _, c := range cases {
		if _, ok := got[c.key]; ok != c.kept {
			t.Errorf("%s kept = %v, want %v", c.key, ok, c.kept)
		}
	}
	if o, _ := other.Load(ctx); o["u:locked"].Failures != 1 {
		t.Errorf("another scope's key changed: %+v", o)
	}
	long := strings.Repeat("x", 1000)
	if err := mqtt.Save(ctx, long, loginlock.State{Failures: 1, Last: now}); err != nil {
		t.Fatal(err)
	}
	got, _ = mqtt.Load(ctx)
	if _, ok := got[loginlock.Key(long)]; !ok || len(loginlock.Key(long)) != loginlock.MaxKeyLen {
		t.Errorf("a long key is not stored cut to %d bytes", loginlock.MaxKeyLen)
	}
}
