package store

import (
	"context"
	"fmt"
	"time"

	"github.com/diemdanh/diemdanh/models/wire"
)

// EnqueueUnrecognised encodes u (validating it) and commits it to the
// outbox, after the messages already there; the publisher sends it to
// wire.UnrecognisedTopic. It is refused with ErrOutboxFull (wrapped) once
// the outbox holds half of MaxOutbox rows: unrecognised faces never take
// the room events need during a long outage.
func (db *DB) EnqueueUnrecognised(ctx context.Context, u *wire.Unrecognised) error {
	payload, err := u.Encode()
	if err != nil {
		return fmt.Errorf("store: enqueue unrecognised: %w", err)
	}
	r := row{id: u.CaptureID, kind: wire.TopicKindUnrecognised, payload: payload, created: time.UnixMilli(u.CapturedAt)}
	_, err = db.insert(ctx, r, db.opts.MaxOutbox/2, "", time.Time{}, 0)
	return err
}
