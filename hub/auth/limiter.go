package auth

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/diemdanh/diemdanh/hub/loginlock"
)

// limiter counts failures per key in a sliding window: a key with max
// failures inside the window is refused until the oldest of them leaves
// it. Every change is written to login_lockouts (hub/loginlock, scope
// "http"), so a limit reached holds across a restart of the hub: the
// stored row is the count, the latest failure and, once the limit is
// reached, the instant the key is allowed again. The window is rebuilt
// from it at first use, never shorter than it was: the failures that end
// the limit are placed at that instant, the others at the latest failure.
type limiter struct {
	now   func() time.Time
	store *loginlock.Store
	win   time.Duration

	mu        sync.Mutex
	m         map[string][]time.Time
	loaded    bool
	lastPrune time.Time
}

func newLimiter(now func() time.Time, st *loginlock.Store, win time.Duration) *limiter {
	return &limiter{now: now, store: st, win: win, m: map[string][]time.Time{}}
}

// prune drops key's failures older than the window. Called with mu held.
func (l *limiter) prune(key string) []time.Time {
	cut := l.now().Add(-l.win)
	ts := l.m[key]
	i := 0
	for i < len(ts) && ts[i].Before(cut) {
		i++
	}
	ts = ts[i:]
	if len(ts) == 0 {
		delete(l.m, key)
	} else {
		l.m[key] = ts
	}
	return ts
}

// allow reports whether key has fewer than max failures in the window.
// The error is the store's, when its counters cannot be read.
func (l *limiter) allow(ctx context.Context, key string, max int) (bool, error) {
	if err := l.load(ctx); err != nil {
		return false, err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.prune(loginlock.Key(key))) < max, nil
}

// fail counts a failure of key, whose limit is max, and stores it.
func (l *limiter) fail(ctx context.Context, key string, max int) error {
	lerr := l.load(ctx)
	key = loginlock.Key(key)
	now := l.now()
	l.mu.Lock()
	ts := append(l.prune(key), now)
	l.m[key] = ts
	if len(l.m) > 100000 { // bound memory under a spray attack (the store keeps them)
		for k := range l.m {
			if k != key {
				delete(l.m, k)
				break
			}
		}
	}
	st := loginlock.State{Failures: len(ts), Last: now}
	if len(ts) >= max {
		st.Until = ts[len(ts)-max].Add(l.win)
	}
	l.mu.Unlock()
	if lerr != nil {
		return lerr
	}
	if err := l.store.Save(ctx, key, st); err != nil {
		return fmt.Errorf("auth: login limit: %w", err)
	}
	return nil
}

// reset forgets key's failures (after a successful login).
func (l *limiter) reset(ctx context.Context, key string) error {
	if err := l.load(ctx); err != nil {
		return err
	}
	key = loginlock.Key(key)
	l.mu.Lock()
	_, had := l.m[key]
	delete(l.m, key)
	l.mu.Unlock()
	if !had {
		return nil
	}
	if err := l.store.Delete(ctx, key); err != nil {
		return fmt.Errorf("auth: login limit: %w", err)
	}
	return nil
}

// load reads the stored counters at first use, after pruning those out of
// the window, and prunes the store again every window.
func (l *limiter) load(ctx context.Context) error {
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.loaded && now.Sub(l.lastPrune) < l.win {
		return nil
	}
	if _, err := l.store.Prune(ctx, now, l.win); err != nil {
		return fmt.Errorf("auth: login limit: %w", err)
	}
	l.lastPrune = now
	if l.loaded {
		return nil
	}
	m, err := l.store.Load(ctx)
	if err != nil {
		return fmt.Errorf("auth: login limit: %w", err)
	}
	for k, st := range m {
		l.m[k] = rebuild(st, l.win)
	}
	l.loaded = true
	return nil
}

// rebuild turns a stored row back into a window of failures: those that
// end the limit at st.Until (when set) one window before it, the rest at
// st.Last.
func rebuild(st loginlock.State, win time.Duration) []time.Time {
	ts := make([]time.Time, 0, st.Failures)
	for i := 0; i < st.Failures; i++ {
		ts = append(ts, st.Last)
	}
	if !st.Until.IsZero() && st.Failures > 0 {
		ts[0] = st.Until.Add(-win)
	}
	return ts
}
