package broker

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/diemdanh/diemdanh/hub/loginlock"
	"github.com/diemdanh/diemdanh/hub/store"
	"github.com/diemdanh/diemdanh/models/wire"
)

// Auth errors.
var (
	ErrBadCredentials = errors.New("broker: wrong username or password")
	ErrLockedOut      = errors.New("broker: too many failed logins, try later")
)

// Gate is an authenticated gate device.
type Gate struct {
	School, ID, Username string
	// hash is the password hash the gate logged in with: a session whose
	// gate no longer has it (rotated, deactivated, deleted) is disconnected.
	hash string
}

// CanPublish reports whether the gate may publish to topic: only its own
// events, status, heartbeat and unrecognised topics.
func (g Gate) CanPublish(topic string) bool {
	return topic == wire.EventTopic(g.School, g.ID) || topic == wire.StatusTopic(g.School, g.ID) ||
		topic == wire.HeartbeatTopic(g.School, g.ID) || topic == wire.UnrecognisedTopic(g.School, g.ID)
}

// ErrNotAllowed is the refusal of a publish, will or retained message.
var ErrNotAllowed = errors.New("broker: not allowed for this gate")

// MayPublish is the one rule for every way a gate can make the broker
// publish: a PUBLISH, its last will (checked at CONNECT) and a retained
// message. The topic must be one of the gate's own (CanPublish), and only
// its status topic may be retained (the status is the retained
// online/offline flag; a retained event or heartbeat would be replayed to
// every later subscriber).
func (g Gate) MayPublish(topic string, retain bool) error {
	if !g.CanPublish(topic) {
		return fmt.Errorf("%w: topic %q", ErrNotAllowed, topic)
	}
	if retain && topic != wire.StatusTopic(g.School, g.ID) {
		return fmt.Errorf("%w: retained message on %q", ErrNotAllowed, topic)
	}
	return nil
}

// CanRead reports whether the gate may subscribe to filter: only its
// school's gallery topic, exactly (no wildcards).
func (g Gate) CanRead(filter string) bool { return filter == wire.GalleryTopic(g.School) }

// Authenticator checks gate credentials against the gates table (bcrypt,
// active=1) with a lockout after repeated failures, per username and per
// remote IP. The failure counters are kept in SQLite (hub/loginlock, scope
// "mqtt") as well as in memory, so a lockout holds across a restart of the
// broker; keys whose lock ended and whose failures are forgiven are pruned.
// Successful logins are cached for a few minutes (keyed by the stored
// hash, so a password change takes effect at once) to keep reconnect
// storms cheap.
type Authenticator struct {
	db    *store.DB
	cfg   LockoutConfig
	now   func() time.Time
	locks *loginlock.Store

	mu        sync.Mutex
	loaded    bool
	lastPrune time.Time
	fails     map[string]*failure
	ok        map[string]okEntry
}

type failure struct {
	n     int
	last  time.Time // of the latest failure
	until time.Time
}

type okEntry struct {
	hash  string
	pw    [32]byte
	until time.Time
}

// lockScope is the broker's scope in login_lockouts.
const lockScope = "mqtt"

// NewAuthenticator makes an Authenticator.
func NewAuthenticator(db *store.DB, cfg LockoutConfig, now func() time.Time) *Authenticator {
	if now == nil {
		now = time.Now
	}
	return &Authenticator{db: db, cfg: cfg, now: now, locks: loginlock.New(db, lockScope),
		fails: map[string]*failure{}, ok: map[string]okEntry{}}
}

func hostOf(remote string) string {
	if h, _, err := net.SplitHostPort(remote); err == nil {
		return h
	}
	return remote
}

// Check authenticates username/password coming from remote (host:port).
func (a *Authenticator) Check(ctx context.Context, username, password, remote string) (Gate, error) {
	ukey, ikey := loginlock.Key("u:"+username), loginlock.Key("ip:"+hostOf(remote))
	now := a.now()
	if err := a.load(ctx, now); err != nil {
		return Gate{}, err
	}
	a.mu.Lock()
	for _, k := range []string{ukey, ikey} {
		if f := a.fails[k]; f != nil && now.Before(f.until) {
			a.mu.Unlock()
			return Gate{}, ErrLockedOut
		}
	}
	a.mu.Unlock()

	g, err := a.verify(ctx, username, password)
	if errors.Is(err, ErrBadCredentials) {
		// Several gates may share an office IP: allow more before locking the address.
		if perr := errors.Join(a.fail(ctx, ukey, now, a.cfg.FreeFailures),
			a.fail(ctx, ikey, now, a.cfg.FreeFailures*5)); perr != nil {
			return Gate{}, fmt.Errorf("%w (%w)", err, perr)
		}
		return Gate{}, err
	}
	if err != nil {
		return Gate{}, err
	}
	if err := a.forget(ctx, ukey, ikey); err != nil {
		return Gate{}, err
	}
	return g, nil
}

// load reads the stored counters once, pruning the expired ones first, and
// prunes again every cfg.Max.
func (a *Authenticator) load(ctx context.Context, now time.Time) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.loaded && now.Sub(a.lastPrune) < a.cfg.Max {
		return nil
	}
	if _, err := a.locks.Prune(ctx, now, a.cfg.Max); err != nil {
		return fmt.Errorf("broker: lockout: %w", err)
	}
	a.lastPrune = now
	if a.loaded {
		a.dropExpired(now)
		return nil
	}
	m, err := a.locks.Load(ctx)
	if err != nil {
		return fmt.Errorf("broker: lockout: %w", err)
	}
	for k, st := range m {
		a.fails[k] = &failure{n: st.Failures, last: st.Last, until: st.Until}
	}
	a.loaded = true
	return nil
}

// forget deletes the keys' failures after a successful login.
func (a *Authenticator) forget(ctx context.Context, keys ...string) error {
	var errs []error
	for _, k := range keys {
		a.mu.Lock()
		_, had := a.fails[k]
		delete(a.fails, k)
		a.mu.Unlock()
		if had {
			errs = append(errs, a.locks.Delete(ctx, k))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("broker: lockout: %w", err)
	}
	return nil
}

// fail counts a failure of key and stores its state.
func (a *Authenticator) fail(ctx context.Context, key string, now time.Time, free int) error {
	a.mu.Lock()
	f := a.fails[key]
	if f == nil {
		f = &failure{}
		a.fails[key] = f
	}
	if !f.last.IsZero() && now.Sub(f.last) > a.cfg.Max && now.After(f.until) {
		f.n = 0 // old failures are forgiven after a quiet period as long as the longest lockout
	}
	f.n++
	f.last = now
	if f.n > free {
		d := a.cfg.Base
		for i := free + 1; i < f.n && d < a.cfg.Max; i++ {
			d *= 2
		}
		if d > a.cfg.Max {
			d = a.cfg.Max
		}
		f.until = now.Add(d)
	}
	st := loginlock.State{Failures: f.n, Last: f.last, Until: f.until}
	if len(a.fails) > 100000 { // bound memory under a spray of usernames (the store keeps them)
		for k, v := range a.fails {
			if now.After(v.until) {
				delete(a.fails, k)
			}
		}
	}
	a.mu.Unlock()
	if err := a.locks.Save(ctx, key, st); err != nil {
		return fmt.Errorf("broker: lockout: %w", err)
	}
	return nil
}

// dropExpired forgets, in memory, the keys Prune deleted from the store:
// lock ended and failures forgiven. Called with mu held.
func (a *Authenticator) dropExpired(now time.Time) {
	for k, v := range a.fails {
		if now.After(v.until) && now.Sub(v.last) > a.cfg.Max {
			delete(a.fails, k)
		}
	}
}

func (a *Authenticator) verify(ctx context.Context, username, password string) (Gate, error) {
	var g Gate
	var hash string
	err := a.db.R.QueryRowContext(ctx, `SELECT id, school_id, password_hash FROM gates WHERE username = ? AND active = 1`,
		username).Scan(&g.ID, &g.School, &hash)
	if errors.Is(err, sql.ErrNoRows) || username == "" {
		// Same cost as a real check, so timing does not reveal usernames.
		_ = bcrypt.CompareHashAndPassword(dummyHash(), []byte(password))
		return Gate{}, ErrBadCredentials
	}
	if err != nil {
		return Gate{}, fmt.Errorf("broker: auth lookup: %w", err)
	}
	g.Username, g.hash = username, hash
	sum := sha256.Sum256([]byte(password))
	now := a.now()
	a.mu.Lock()
	e, cached := a.ok[username]
	a.mu.Unlock()
	if cached && e.hash == hash && e.pw == sum && now.Before(e.until) {
		return g, nil
	}
	if bcrypt.CompareHashAndPassword([]byte(hash), []byte(password)) != nil {
		return Gate{}, ErrBadCredentials
	}
	a.mu.Lock()
	a.ok[username] = okEntry{hash: hash, pw: sum, until: now.Add(5 * time.Minute)}
	a.mu.Unlock()
	return g, nil
}

var dummyHash = sync.OnceValue(func() []byte {
	h, _ := bcrypt.GenerateFromPassword([]byte("not-a-real-password"), bcrypt.DefaultCost)
	return h
})
