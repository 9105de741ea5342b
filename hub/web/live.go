package web

import (
	"context"
	"encoding/json"
	"sync"
	"sync/atomic"
	"time"

	"github.com/diemdanh/diemdanh/hub/ingest"
)

// Live fans board updates out to Server-Sent-Events clients, keyed by
// class. Ingest calls EventStored (never blocked: the event goes on a
// queue); one worker recomputes the pupil's row and pushes it to every
// client watching that class. A client whose queue is full is cut off;
// its browser reconnects and reloads the board, so it never shows stale
// rows silently.
type Live struct {
	s   *Server
	buf int
	in  chan ingest.StoredEvent

	mu   sync.RWMutex
	subs map[string]map[*Client]struct{}

	published, dropped, kicked atomic.Int64
}

// Client is one SSE connection.
type Client struct {
	C    chan []byte
	Done chan struct{}
	once sync.Once
}

func (c *Client) kick() { c.once.Do(func() { close(c.Done) }) }

// NewLive returns the fan-out hub of s.
func NewLive(s *Server, buf int) *Live {
	return &Live{s: s, buf: buf, in: make(chan ingest.StoredEvent, 8192), subs: map[string]map[*Client]struct{}{}}
}

// EventStored implements ingest.Listener.
func (s *Server) EventStored(ctx context.Context, ev ingest.StoredEvent) { s.live.EventStored(ctx, ev) }

// EventStored queues ev without blocking.
func (l *Live) EventStored(_ context.Context, ev ingest.StoredEvent) {
	if ev.Unknown || ev.ClassID == "" {
		return
	}
	select {
	case l.in <- ev:
	default:
		l.dropped.Add(1)
	}
}

// Start runs the worker until ctx ends.
func (l *Live) Start(ctx context.Context) {
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case ev := <-l.in:
				l.eventPupil(ctx, ev)
			}
		}
	}()
}

// eventPupil brings the pupil's day in daily_attendance up to date with
// hub/attendance's rule (its own worker does the same; whichever runs
// first does the work, the other finds nothing changed) and pushes the
// row when the event is of today.
func (l *Live) eventPupil(ctx context.Context, ev ingest.StoredEvent) {
	cls, err := l.s.loadClass(ctx, ev.ClassID)
	if err != nil {
		l.s.log.Warn("live: class", "class", ev.ClassID, "err", err)
		return
	}
	day := time.UnixMilli(ev.CapturedAt).In(cls.Loc).Format("2006-01-02")
	if _, err := l.s.d.Days.Recompute(ctx, ev.StudentID, day); err != nil {
		l.s.log.Warn("live: attendance", "pupil", ev.StudentID, "err", err)
		return
	}
	if day == l.s.today(cls.Loc) {
		l.publishRow(ctx, cls, ev.StudentID, ev.ReceivedAt)
	}
}

// pushPupil recomputes one pupil's day (hub/attendance) for today and
// publishes the row.
func (l *Live) pushPupil(ctx context.Context, classID, pupilID string, receivedAt int64) {
	cls, err := l.s.loadClass(ctx, classID)
	if err != nil {
		l.s.log.Warn("live: class", "class", classID, "err", err)
		return
	}
	if _, err := l.s.d.Days.Recompute(ctx, pupilID, l.s.today(cls.Loc)); err != nil {
		l.s.log.Warn("live: attendance", "pupil", pupilID, "err", err)
		return
	}
	l.publishRow(ctx, cls, pupilID, receivedAt)
}

// publishRow reads the pupil's row for today and sends it to the class's
// boards.
func (l *Live) publishRow(ctx context.Context, cls ClassInfo, pupilID string, receivedAt int64) {
	if l.Subscribers(cls.ID) == 0 {
		return
	}
	rows, err := l.s.dayRows(ctx, cls, l.s.today(cls.Loc), pupilID)
	if err != nil || len(rows) != 1 {
		if err != nil {
			l.s.log.Warn("live: row", "pupil", pupilID, "err", err)
		}
		return
	}
	rows[0].ReceivedAt = receivedAt
	b, _ := json.Marshal(rows[0])
	l.Publish(cls.ID, append(append([]byte("event: row\ndata: "), b...), '\n', '\n'))
}

// Subscribe registers a client for key.
func (l *Live) Subscribe(key string) *Client {
	c := &Client{C: make(chan []byte, l.buf), Done: make(chan struct{})}
	l.mu.Lock()
	if l.subs[key] == nil {
		l.subs[key] = map[*Client]struct{}{}
	}
	l.subs[key][c] = struct{}{}
	l.mu.Unlock()
	return c
}

// Unsubscribe removes a client.
func (l *Live) Unsubscribe(key string, c *Client) {
	l.mu.Lock()
	delete(l.subs[key], c)
	if len(l.subs[key]) == 0 {
		delete(l.subs, key)
	}
	l.mu.Unlock()
	c.kick()
}

// Subscribers counts the clients of key.
func (l *Live) Subscribers(key string) int {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return len(l.subs[key])
}

// Publish sends a ready SSE frame to every client of key.
func (l *Live) Publish(key string, frame []byte) {
	l.mu.RLock()
	defer l.mu.RUnlock()
	for c := range l.subs[key] {
		select {
		case c.C <- frame:
		default:
			l.kicked.Add(1)
			c.kick()
		}
	}
	l.published.Add(1)
}

// LiveStats are counters since start.
type LiveStats struct{ Published, Dropped, Kicked int64 }

// Stats returns the counters.
func (l *Live) Stats() LiveStats {
	return LiveStats{l.published.Load(), l.dropped.Load(), l.kicked.Load()}
}

// PupilChanged pushes a pupil's current row (recomputed by
// hub/attendance) to the boards watching the pupil's class, after a change
// made elsewhere: hub/app wires hub/attendance's OnChange hook (an
// override through the JSON API, the cut-off turning not_yet into absent,
// its worker's recompute after an event) and hub/enrol's "not this pupil".
func (s *Server) PupilChanged(ctx context.Context, pupilID string) {
	var class string
	if err := s.d.DB.R.QueryRowContext(ctx, `SELECT COALESCE(class_id, '') FROM pupils WHERE id = ?`, pupilID).Scan(&class); err != nil || class == "" {
		return
	}
	if s.live.Subscribers(class) == 0 {
		return // no board open; daily_attendance is already current
	}
	s.live.pushPupil(ctx, class, pupilID, s.now().UnixMilli())
}

// LiveSubscribers is how many live-board streams are open on class
// classID (hub/bench/live waits for its clients with it).
func (s *Server) LiveSubscribers(classID string) int { return s.live.Subscribers(classID) }
