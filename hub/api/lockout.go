package api

import (
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

// maxLockoutKeys bounds memory under a spray of usernames or addresses.
const maxLockoutKeys = 100000

// Lockout is a per-key failure counter with exponential backoff. Callers
// check Locked before verifying a secret (also a cached one: a lock must
// hold even for the right password, or it would not stop guessing), call
// Fail on a wrong secret and Reset on a right one.
type Lockout struct {
	cfg LockoutConfig
	now func() time.Time

	mu sync.Mutex
	m  map[string]*lockState
}

type lockState struct {
	n     int       // failures in a row
	last  time.Time // of the latest failure
	until time.Time // locked before this instant
}

// NewLockout returns a Lockout; now defaults to time.Now.
func NewLockout(cfg LockoutConfig, now func() time.Time) *Lockout {
	if now == nil {
		now = time.Now
	}
	return &Lockout{cfg: cfg, now: now, m: map[string]*lockState{}}
}

// Locked reports whether key is locked and for how much longer.
func (l *Lockout) Locked(key string) (time.Duration, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	st := l.m[key]
	if st == nil {
		return 0, false
	}
	left := st.until.Sub(l.now())
	return left, left > 0
}

// Fail records a failure of key and returns the lock it now has (0 when
// it still has free failures).
func (l *Lockout) Fail(key string) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	st := l.m[key]
	if st == nil {
		l.bound(now)
		st = &lockState{}
		l.m[key] = st
	}
	if !st.last.IsZero() && now.After(st.until) && now.Sub(st.last) > l.cfg.Max {
		st.n = 0 // forgiven after a quiet period as long as the longest lock
	}
	st.n++
	st.last = now
	if st.n < l.cfg.FreeFailures {
		return 0
	}
	d := l.cfg.Base
	for i := l.cfg.FreeFailures; i < st.n && d < l.cfg.Max; i++ {
		d *= 2
	}
	d = min(d, l.cfg.Max)
	st.until = now.Add(d)
	return d
}

// Reset forgets key's failures (after a successful login).
func (l *Lockout) Reset(key string) {
	l.mu.Lock()
	delete(l.m, key)
	l.mu.Unlock()
}

// bound drops expired keys when the map is full, and an arbitrary one if
// none has expired. Called with mu held.
func (l *Lockout) bound(now time.Time) {
	if len(l.m) < maxLockoutKeys {
		return
	}
	for k, st := range l.m {
		if now.After(st.until) {
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
