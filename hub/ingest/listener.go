package ingest

import (
	"context"

	"github.com/diemdanh/diemdanh/models/wire"
)

// StoredEvent is one gate event as committed to the events table: the
// edge's payload plus what the hub added. Event.CapturedAt is on the
// hub's clock: the gate's reading corrected by the gate's measured clock
// offset (ClockCorrectMin), as stored in events.captured_at.
type StoredEvent struct {
	wire.Event
	// GateCapturedAt is the capture time the gate sent (its own clock).
	GateCapturedAt int64
	// ReceivedAt is the hub clock (Unix ms) when the event was accepted.
	ReceivedAt int64
	// ClassID is the pupil's class at ingest time; "" for an unknown face
	// or a pupil without a class.
	ClassID string
	// Unknown is true when StudentID is wire.UnknownStudent (stored as NULL).
	Unknown bool
}

// Listener is told about every newly stored event, after its transaction
// committed. A redelivered (duplicate) event is never reported twice.
//
// EventStored is called from the ingest commit path and MUST NOT block:
// it gets its own copy of the event (FaceJPEG is shared read-only; do not
// modify it), and a slow listener should put the event on its own queue
// (buffered channel, notify channel + cursor in the DB) and return. ctx is
// the ingester's context; it ends on shutdown.
type Listener interface {
	EventStored(ctx context.Context, ev StoredEvent)
}

// ListenerFunc adapts a function to a Listener.
type ListenerFunc func(ctx context.Context, ev StoredEvent)

// EventStored calls f.
func (f ListenerFunc) EventStored(ctx context.Context, ev StoredEvent) { f(ctx, ev) }
