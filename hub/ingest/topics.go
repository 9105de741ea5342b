package ingest

import (
	"context"
	"database/sql"
	"fmt"
	"time"
)

// TopicHandler stores the messages of one further gate topic kind (the
// last level of a gate topic, such as wire.TopicKindUnrecognised) in the
// ingest transaction, so they share the group commit, the
// commit-before-acknowledgement rule and the quarantine of events. The
// package that owns the kind's table implements it; ingest keeps no
// knowledge of its payload.
type TopicHandler interface {
	// ApplyTx checks m and writes it inside tx. By the time it is called
	// the topic names a known, active gate of the topic's school. It
	// returns Stored or Duplicate (a redelivery, written once already); a
	// non-empty reason refuses the message instead, and ingest stores it
	// in quarantine with that reason (without its face crop). An error
	// aborts the transaction: the message is not acknowledged and the gate
	// sends it again.
	ApplyTx(ctx context.Context, tx *sql.Tx, m TopicMessage) (res Result, reason string, err error)
}

// TopicMessage is a message handed to a TopicHandler.
type TopicMessage struct {
	Message
	// School and Gate are the topic's; the gate belongs to the school.
	School, Gate string
	// ReceivedAt is the hub clock when ingest accepted the message.
	ReceivedAt time.Time

	cfg Config
}

// CheckClock returns why capturedAt (gate clock, Unix ms) is outside
// ingest's window (ingest.future_tolerance, ingest.max_age) around
// ReceivedAt, or "" when it is inside: the rule events follow.
func (m TopicMessage) CheckClock(capturedAt int64) string {
	return m.cfg.clockReason(capturedAt, m.ReceivedAt)
}

// AddTopic routes the messages of gate topic kind to h. Call it before
// Start; a kind that has no handler is quarantined as unknown.
func (in *Ingester) AddTopic(kind string, h TopicHandler) {
	in.lmu.Lock()
	defer in.lmu.Unlock()
	if in.topics == nil {
		in.topics = map[string]TopicHandler{}
	}
	in.topics[kind] = h
}

// topic returns the handler of kind, or nil.
func (in *Ingester) topic(kind string) TopicHandler {
	in.lmu.Lock()
	defer in.lmu.Unlock()
	return in.topics[kind]
}

// applyTopic hands a message of a registered kind to its handler.
func (in *Ingester) applyTopic(st *txState, it *item, h TopicHandler, school, gate string) (string, error) {
	m := TopicMessage{Message: it.msg, School: school, Gate: gate, ReceivedAt: time.UnixMilli(it.received), cfg: in.cfg}
	res, reason, err := h.ApplyTx(in.ctx, st.tx, m)
	if err != nil || reason != "" {
		return reason, err
	}
	it.res = res
	return "", nil
}

// clockReason says why capturedAt (gate clock, Unix ms) is more than
// FutureTolerance after now or more than MaxAge before it; "" when inside.
func (c Config) clockReason(capturedAt int64, now time.Time) string {
	nowMs := now.UnixMilli()
	if capturedAt > nowMs+c.FutureTolerance.Milliseconds() {
		return fmt.Sprintf("captured_at: %d is %s in the future (tolerance %s)", capturedAt,
			time.Duration(capturedAt-nowMs)*time.Millisecond, c.FutureTolerance)
	}
	if capturedAt < nowMs-c.MaxAge.Milliseconds() {
		return fmt.Sprintf("captured_at: %d is older than %s", capturedAt, c.MaxAge)
	}
	return ""
}
