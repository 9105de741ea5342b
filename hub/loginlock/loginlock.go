// Package loginlock keeps failed-login counters in the hub's SQLite
// database (table login_lockouts, written only here), so that a lockout
// holds across a restart of the hub or its broker. The counting rules stay
// with each login; this package stores their state per scope and key and
// prunes what no rule can use any more. The scopes:
//
//   - "mqtt": the broker's gate logins, per username and address (hub/broker);
//   - "http": web logins per account and per address, and HTTP basic-auth
//     failures per address (hub/auth's sliding window);
//   - "http-gate": a gate's HTTP basic-auth username (hub/auth, api.Lockout);
//   - "gallery-gate": a gate's username at the gallery download
//     (hub/gallerysrv, api.Lockout).
//
// A Store is an api.LockoutStore.
package loginlock

import (
	"context"
	"fmt"
	"time"

	"github.com/diemdanh/diemdanh/hub/api"
	"github.com/diemdanh/diemdanh/hub/store"
)

// MaxKeyLen is the longest key stored; longer keys (a username sprayed by
// an attacker) are cut to it by Key.
const MaxKeyLen = api.LockoutKeyMax

// State is one key's failures: how many in a row, the latest, and the end
// of its lock (zero when not locked).
type State = api.LockState

// Scopes of the hub's logins (see the package comment).
const (
	ScopeMQTT        = "mqtt"
	ScopeHTTP        = "http"
	ScopeHTTPGate    = "http-gate"
	ScopeGalleryGate = "gallery-gate"
)

// Store is the counters of one scope.
type Store struct {
	db    *store.DB
	scope string
}

// New returns the store of scope over db.
func New(db *store.DB, scope string) *Store { return &Store{db: db, scope: scope} }

var _ api.LockoutStore = (*Store)(nil)

// Key cuts k to MaxKeyLen bytes.
func Key(k string) string {
	if len(k) > MaxKeyLen {
		return k[:MaxKeyLen]
	}
	return k
}

// Load returns every key of the scope still stored.
func (s *Store) Load(ctx context.Context) (map[string]State, error) {
	rows, err := s.db.R.QueryContext(ctx, `SELECT key, failures, last_at, until_at FROM login_lockouts WHERE scope = ?`, s.scope)
	if err != nil {
		return nil, fmt.Errorf("loginlock: load %s: %w", s.scope, err)
	}
	defer rows.Close()
	out := map[string]State{}
	for rows.Next() {
		var k string
		var n int
		var last, until int64
		if err := rows.Scan(&k, &n, &last, &until); err != nil {
			return nil, fmt.Errorf("loginlock: load %s: %w", s.scope, err)
		}
		st := State{Failures: n, Last: time.UnixMilli(last)}
		if until > 0 {
			st.Until = time.UnixMilli(until)
		}
		out[k] = st
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("loginlock: load %s: %w", s.scope, err)
	}
	return out, nil
}

// Save stores key's state.
func (s *Store) Save(ctx context.Context, key string, st State) error {
	var until int64
	if !st.Until.IsZero() {
		until = st.Until.UnixMilli()
	}
	_, err := s.db.W.ExecContext(ctx, `INSERT INTO login_lockouts(scope, key, failures, last_at, until_at) VALUES (?, ?, ?, ?, ?)
		ON CONFLICT(scope, key) DO UPDATE SET failures = excluded.failures, last_at = excluded.last_at, until_at = excluded.until_at`,
		s.scope, Key(key), st.Failures, st.Last.UnixMilli(), until)
	if err != nil {
		return fmt.Errorf("loginlock: save %s: %w", s.scope, err)
	}
	return nil
}

// Delete forgets key (after a successful login).
func (s *Store) Delete(ctx context.Context, key string) error {
	if _, err := s.db.W.ExecContext(ctx, `DELETE FROM login_lockouts WHERE scope = ? AND key = ?`, s.scope, Key(key)); err != nil {
		return fmt.Errorf("loginlock: delete %s: %w", s.scope, err)
	}
	return nil
}

// Prune deletes the keys whose lock ended before now and whose latest
// failure is older than forgive (the quiet period after which a rule
// forgives failures), and returns how many it deleted.
func (s *Store) Prune(ctx context.Context, now time.Time, forgive time.Duration) (int64, error) {
	res, err := s.db.W.ExecContext(ctx, `DELETE FROM login_lockouts WHERE scope = ? AND until_at <= ? AND last_at < ?`,
		s.scope, now.UnixMilli(), now.Add(-forgive).UnixMilli())
	if err != nil {
		return 0, fmt.Errorf("loginlock: prune %s: %w", s.scope, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, fmt.Errorf("loginlock: prune %s: %w", s.scope, err)
	}
	return n, nil
}
