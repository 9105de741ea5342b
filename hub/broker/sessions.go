package broker

import (
	"context"
	"fmt"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// watchSessions re-checks every connected gate against the gates table
// each cfg.SessionCheck: a gate whose password was rotated, or which was
// deactivated or deleted, is disconnected, whoever changed the table (the
// admin API, the CLI, a restored backup). Its old password no longer logs
// in, so the session does not come back.
func (e *Embedded) watchSessions(ctx context.Context) {
	t := time.NewTicker(e.cfg.SessionCheck)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if _, err := e.CheckSessions(ctx); err != nil && ctx.Err() == nil {
				e.log.Warn("gate session check failed", "err", err)
			}
		}
	}
}

// CheckSessions disconnects every session whose gate no longer logs in
// with the credentials it used, and returns how many it disconnected.
func (e *Embedded) CheckSessions(ctx context.Context) (int, error) {
	live := map[*mqtt.Client]*session{}
	e.hook.clients.Range(func(k, v any) bool {
		live[k.(*mqtt.Client)] = v.(*session)
		return true
	})
	if len(live) == 0 {
		return 0, nil
	}
	current, err := e.activeHashes(ctx)
	if err != nil {
		return 0, err
	}
	n := 0
	for cl, s := range live {
		if cl.Closed() {
			e.hook.clients.CompareAndDelete(cl, s)
			s.close()
			continue
		}
		if current[s.gate.Username] == s.gate.hash {
			continue
		}
		e.log.Warn("gate disconnected: its credentials were changed or it was deactivated",
			"gate", s.gate.ID, "username", s.gate.Username, "remote", cl.Net.Remote)
		e.hook.kick(cl, packets.ErrNotAuthorized)
		n++
	}
	return n, nil
}

// activeHashes maps the username of every active gate to its password hash.
func (e *Embedded) activeHashes(ctx context.Context) (map[string]string, error) {
	rows, err := e.db.R.QueryContext(ctx, `SELECT username, password_hash FROM gates WHERE active = 1`)
	if err != nil {
		return nil, fmt.Errorf("broker: session check: %w", err)
	}
	defer rows.Close()
	m := map[string]string{}
	for rows.Next() {
		var u, h string
		if err := rows.Scan(&u, &h); err != nil {
			return nil, fmt.Errorf("broker: session check: %w", err)
		}
		m[u] = h
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("broker: session check: %w", err)
	}
	return m, nil
}
