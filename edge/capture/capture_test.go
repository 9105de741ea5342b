package capture_test

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/diemdanh/diemdanh/edge/capture"
	"github.com/diemdanh/diemdanh/models/conf"
)

// TestCaptureMissingCameraRetries: a camera that is not there is an outage
// retried with backoff (logged once), not an error that stops the gate.
func TestCaptureMissingCameraRetries(t *testing.T) {
	var logs bytes.Buffer
	log := conf.NewLogger(conf.LogConfig{Level: "info"}, &logs)
	c, err := capture.New(capture.Config{Source: "rtsp://user:secret@127.0.0.1:1/none", ReconnectMin: 20 * time.Millisecond,
		ReconnectMax: 50 * time.Millisecond, MaxBadFrames: 3}, log, time.Now)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
	defer cancel()
	err = c.Run(ctx, func(f capture.Frame) { f.Mat.Close() })
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("run ended with %v, want it to keep retrying until cancelled", err)
	}
	if n := strings.Count(logs.String(), "camera outage"); n != 1 {
		t.Fatalf("outage logged %d times, want once:\n%s", n, logs.String())
	}
	if strings.Contains(logs.String(), "secret") {
		t.Fatal("password leaked into the log")
	}
	if c.Online() {
		t.Fatal("online without frames")
	}
}

func TestMailboxNewestWins(t *testing.T) {
	b := capture.NewMailbox(true)
	for i := 0; i < 5; i++ {
		b.Put(capture.Frame{Index: int64(i)})
	}
	f, err := b.Next(context.Background())
	if err != nil || f.Index != 4 || b.Dropped() != 4 {
		t.Fatalf("got frame %d err %v dropped %d; want the newest (4) and 4 dropped", f.Index, err, b.Dropped())
	}
	b.Close(nil)
	if _, err := b.Next(context.Background()); err == nil {
		t.Fatal("closed mailbox yielded a frame")
	}
	// Blocking mode: Put waits until the frame is taken.
	bb := capture.NewMailbox(false)
	done := make(chan struct{})
	go func() {
		for i := 0; i < 3; i++ {
			bb.Put(capture.Frame{Index: int64(i)})
		}
		bb.Close(nil)
		close(done)
	}()
	for i := 0; i < 3; i++ {
		f, err := bb.Next(context.Background())
		if err != nil || f.Index != int64(i) {
			t.Fatalf("blocking mailbox: frame %d err %v", f.Index, err)
		}
	}
	<-done
	if bb.Dropped() != 0 {
		t.Fatal("blocking mailbox dropped frames")
	}
}
