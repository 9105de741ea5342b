package app

import (
	"context"
	"io"
	"syscall"
	"testing"
	"time"
)

func TestSecondSignalForcesExit(t *testing.T) {
	forced := make(chan struct{}, 1)
	ctx, stop := SignalContext(context.Background(), io.Discard, func() { forced <- struct{}{} })
	defer stop()
	if err := syscall.Kill(syscall.Getpid(), syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-ctx.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("first signal did not cancel the context")
	}
	select {
	case <-forced:
		t.Fatal("forced after one signal")
	case <-time.After(100 * time.Millisecond):
	}
	if err := syscall.Kill(syscall.Getpid(), syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	select {
	case <-forced:
	case <-time.After(5 * time.Second):
		t.Fatal("second signal did not force exit")
	}
}
