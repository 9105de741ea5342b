package api

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/diemdanh/diemdanh/models/conf"
)

// LockoutConfig locks a key (a username, an address) after failures in a
// row, with exponential backoff: the first lock lasts Base, each further
// failure doubles it, up to Max. A success resets the key; so does a quiet
// period of Max after the last lock ended.
type LockoutConfig struct {
	// FreeFailures is how many failures in a row are allowed; the next
	// attempt is refused until the lock ends.
	FreeFailures int           `yaml:"free_failures"`
	Base         time.Duration `yaml:"base"`
	Max          time.Duration `yaml:"max"`
}

// DefaultLockout returns the defaults: 5 free failures, then 1m, 2m, 4m…
// up to 1h.
func DefaultLockout() LockoutConfig {
	return LockoutConfig{FreeFailures: 5, Base: time.Minute, Max: time.Hour}
}

// Validate names the first bad field under prefix (e.g. "auth.lockout").
func (c LockoutConfig) Validate(prefix string) error {
	switch {
	case c.FreeFailures < 1 || c.FreeFailures > 1000:
		return conf.Fieldf(prefix+".free_failures", "must be 1..1000, got %d", c.FreeFailures)
	case c.Base < time.Second:
		return conf.Fieldf(prefix+".base", "must be ≥ 1s, got %v", c.Base)
	case c.Max < c.Base || c.Max > 24*time.Hour:
		return conf.Fieldf(prefix+".max", "must be base..24h, got %v", c.Max)
	}
	return nil
}

// LockState is one key's failures: how many in a row, the latest, and the
// end of its lock (zero when not locked).
type LockState struct {
	Failures int
	Last     time.Time
	Until    time.Time
}

// LockoutStore keeps a Lockout's counters across restarts; hub/loginlock's
// Store (one scope of table login_lockouts) is the one the hub uses.
type LockoutStore interface {
	Load(ctx context.Context) (map[string]LockState, error)
	Save(ctx context.Context, key string, st LockState) error
	Delete(ctx context.Context, key string) error
	// Prune deletes the keys whose lock ended before now and whose latest
	// failure is older than forgive.
	Prune(ctx context.Context, now time.Time, forgive time.Duration) (int64, error)
}

// LockoutKeyMax is the longest key kept; longer keys (a username sprayed
// by an attacker) are cut to it, as hub/loginlock stores them.
const LockoutKeyMax = 256

// maxLockoutKeys bounds memory under a spray of usernames or addresses.
const maxLockoutKeys = 100000

// Lockout is a per-key failure counter with exponential backoff. Callers
// check Locked before verifying a secret (also a cached one: a lock must
// hold even for the right password, or it would not stop guessing), call
// Fail on a wrong secret and Reset on a right one. With a LockoutStore
// every change is written through to it and the stored counters are read
// at first use, so a lock holds across a restart; keys whose lock ended
// and whose failures are forgiven are pruned every Max.
type Lockout struct {
	cfg   LockoutConfig
	now   func() time.Time
	store LockoutStore // nil: memory only

	mu        sync.Mutex
	m         map[string]*LockState
	loaded    bool
	lastPrune time.Time
}

// NewLockout returns a Lockout kept in memory only; now defaults to
// time.Now.
func NewLockout(cfg LockoutConfig, now func() time.Time) *Lockout {
	return NewStoredLockout(cfg, now, nil)
}

// NewStoredLockout returns a Lockout whose counters are kept in st.
func NewStoredLockout(cfg LockoutConfig, now func() time.Time, st LockoutStore) *Lockout {
	if now == nil {
		now = time.Now
	}
	return &Lockout{cfg: cfg, now: now, store: st, m: map[string]*LockState{}}
}

func lockKey(k string) string {
	if len(k) > LockoutKeyMax {
		return k[:LockoutKeyMax]
	}
	return k
}

// Locked reports whether key is locked and for how much longer. The error
// is the store's, when its counters cannot be read: callers refuse then.
func (l *Lockout) Locked(ctx context.Context, key string) (time.Duration, bool, error) {
	now := l.now()
	if err := l.load(ctx, now); err != nil {
		return 0, false, err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	st := l.m[lockKey(key)]
	if st == nil {
		return 0, false, nil
	}
	left := st.Until.Sub(now)
	return left, left > 0, nil
}

// Fail records a failure of key and returns the lock it now has (0 when
// it still has free failures). The failure counts in memory even when the
// store refuses it; the error says so.
func (l *Lockout) Fail(ctx context.Context, key string) (time.Duration, error) {
	now := l.now()
	lerr := l.load(ctx, now)
	key = lockKey(key)
	l.mu.Lock()
	st := l.m[key]
	if st == nil {
		l.bound(now)
		st = &LockState{}
		l.m[key] = st
	}
	if !st.Last.IsZero() && now.After(st.Until) && now.Sub(st.Last) > l.cfg.Max {
		st.Failures = 0 // forgiven after a quiet period as long as the longest lock
	}
	st.Failures++
	st.Last = now
	var d time.Duration
	if st.Failures >= l.cfg.FreeFailures {
		d = l.cfg.Base
		for i := l.cfg.FreeFailures; i < st.Failures && d < l.cfg.Max; i++ {
			d *= 2
		}
		d = min(d, l.cfg.Max)
		st.Until = now.Add(d)
	}
	saved := *st
	l.mu.Unlock()
	if lerr != nil {
		return d, lerr
	}
	if l.store != nil {
		if err := l.store.Save(ctx, key, saved); err != nil {
			return d, fmt.Errorf("lockout: %w", err)
		}
	}
	return d, nil
}

// Reset forgets key's failures (after a successful login).
func (l *Lockout) Reset(ctx context.Context, key string) error {
	if err := l.load(ctx, l.now()); err != nil {
		return err
	}
	key = lockKey(key)
	l.mu.Lock()
	_, had := l.m[key]
	delete(l.m, key)
	l.mu.Unlock()
	if !had || l.store == nil {
		return nil
	}
	if err := l.store.Delete(ctx, key); err != nil {
		return fmt.Errorf("lockout: %w", err)
	}
	return nil
}

// load reads the stored counters at first use, after pruning the expired
// ones, and prunes again every cfg.Max.
func (l *Lockout) load(ctx context.Context, now time.Time) error {
	if l.store == nil {
		return nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.loaded && now.Sub(l.lastPrune) < l.cfg.Max {
		return nil
	}
	if _, err := l.store.Prune(ctx, now, l.cfg.Max); err != nil {
		return fmt.Errorf("lockout: %w", err)
	}
	l.lastPrune = now
	if l.loaded {
		for k, st := range l.m {
			if now.After(st.Until) && now.Sub(st.Last) > l.cfg.Max {
				delete(l.m, k)
			}
		}
		return nil
	}
	m, err := l.store.Load(ctx)
	if err != nil {
		return fmt.Errorf("lockout: %w", err)
	}
	for k, st := range m {
		l.m[k] = &st
	}
	l.loaded = true
	return nil
}

// bound drops expired keys when the map is full, and an arbitrary one if
// none has expired (its stored counter stays until pruned). Called with mu
// held.
func (l *Lockout) bound(now time.Time) {
	if len(l.m) < maxLockoutKeys {
		return
	}
	for k, st := range l.m {
		if now.After(st.Until) {
			delete(l.m, k)
		}
	}
	for k := range l.m {
		if len(l.m) < maxLockoutKeys {
			break
		}
		delete(l.m, k)
	}
}
