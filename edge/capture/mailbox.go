package capture

import (
	"context"
	"io"
	"sync"
	"sync/atomic"
)

// Mailbox is the handoff between capture and the pipeline. In live mode
// (Drop) a new frame replaces one the pipeline has not taken yet, which is
// closed and counted as dropped: the pipeline always works on the newest
// frame. Without Drop, Put waits for the pipeline (benchmarks that must
// see every frame).
type Mailbox struct {
	drop    bool
	mu      sync.Mutex
	cond    *sync.Cond
	slot    *Frame
	closed  bool
	err     error
	dropped atomic.Int64
}

// NewMailbox returns an empty mailbox.
func NewMailbox(drop bool) *Mailbox {
	b := &Mailbox{drop: drop}
	b.cond = sync.NewCond(&b.mu)
	return b
}

// Dropped is the number of stale frames discarded.
func (b *Mailbox) Dropped() int64 { return b.dropped.Load() }

// Put hands over f (the mailbox owns it from now on).
func (b *Mailbox) Put(f Frame) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for !b.drop && b.slot != nil && !b.closed {
		b.cond.Wait()
	}
	if b.closed {
		f.Mat.Close()
		return
	}
	if b.slot != nil {
		b.slot.Mat.Close()
		b.dropped.Add(1)
	}
	b.slot = &f
	b.cond.Broadcast()
}

// Close ends the mailbox: Next returns err (io.EOF for a normal end) once
// the last frame is taken.
func (b *Mailbox) Close(err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return
	}
	if err == nil {
		err = io.EOF
	}
	b.closed, b.err = true, err
	b.cond.Broadcast()
}

// Next waits for a frame. The caller owns the returned Mat.
func (b *Mailbox) Next(ctx context.Context) (Frame, error) {
	stop := context.AfterFunc(ctx, func() {
		b.mu.Lock()
		b.cond.Broadcast()
		b.mu.Unlock()
	})
	defer stop()
	b.mu.Lock()
	defer b.mu.Unlock()
	for b.slot == nil && !b.closed && ctx.Err() == nil {
		b.cond.Wait()
	}
	if b.slot != nil {
		f := *b.slot
		b.slot = nil
		b.cond.Broadcast()
		return f, nil
	}
	if ctx.Err() != nil {
		return Frame{}, ctx.Err()
	}
	return Frame{}, b.err
}

// Discard closes a frame the pipeline has not taken yet and reports how
// many it closed (0 or 1). Capture calls it when an outage begins, so that
// a frame read before the outage is never processed after it. It is not
// counted in Dropped.
func (b *Mailbox) Discard() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.slot == nil {
		return 0
	}
	b.slot.Mat.Close()
	b.slot = nil
	b.cond.Broadcast()
	return 1
}

// Drain closes any frame left in the mailbox.
func (b *Mailbox) Drain() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.slot != nil {
		b.slot.Mat.Close()
		b.slot = nil
	}
}
