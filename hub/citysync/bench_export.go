package citysync

import (
	"context"
	"fmt"
	"time"
)

// Ping connects to the city database (pinging it) outside any sync, so a
// harness that times SyncOnce (hub/bench/sync) leaves the connection out.
func (w *Worker) Ping(ctx context.Context) error {
	if err := w.pool.Ping(ctx); err != nil {
		return fmt.Errorf("citysync: %w", err)
	}
	return nil
}

// PrepareSync does what the first SyncOnce would besides the push: it
// resolves the hub's school, connects (Ping) and marks the roster as just
// pulled, so the next SyncOnce is a push alone (hub/bench/sync times it).
func (w *Worker) PrepareSync(ctx context.Context) error {
	if err := w.resolveSchool(ctx); err != nil {
		return err
	}
	if err := w.Ping(ctx); err != nil {
		return err
	}
	w.lastRoster = time.Now()
	return nil
}
