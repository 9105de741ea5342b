package e2e

import (
	"syscall"
	"testing"
	"time"
)

// TestFaultRTSPServerFreezes: the camera's RTSP server is stopped with
// SIGSTOP mid-stream, so its connection to the gate stays open and says
// nothing (a hung camera, a cable cut behind a switch). The real bin/edge
// must call it an outage within camera.read_timeout (5 s) of the last
// frame it read, plus the health poll, not after OpenCV's own 30 s; once
// the server runs again (SIGCONT) and the stream is published again,
// the gate reads frames again.
func TestFaultRTSPServerFreezes(t *testing.T) {
	const freezeAt, frozen = 8 * time.Second, 30 * time.Second
	dir := t.TempDir()
	bin := buildEdge(t, dir)
	so, _ := rtspFixture(t, dir)
	rig := newRTSPRig(t, dir)
	pub, pubStart := rig.start(t, bin, dir, so)
	cam, httpAddr := rig.cam, rig.httpAddr
	time.Sleep(time.Until(pubStart.Add(freezeAt)))
	if err := cam.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	frozeAt := time.Now()
	resumed := false
	resume := func() {
		if !resumed {
			_ = cam.cmd.Process.Signal(syscall.SIGCONT)
			resumed = true
		}
	}
	defer resume() // never leave a stopped child behind
	// Frames already in the sockets' buffers still arrive after the stop;
	// the silence starts with the last frame the gate read (processed or
	// dropped by its mailbox).
	var lastFrame, offline time.Time
	seen := int64(-1)
	deadline := frozeAt.Add(45 * time.Second)
	for offline.IsZero() && time.Now().Before(deadline) {
		if h, err := getHealth(httpAddr); err == nil {
			if n := h.Frames + h.Dropped; n != seen {
				seen, lastFrame = n, time.Now()
			}
			if !h.CameraOnline {
				offline = time.Now()
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	if offline.IsZero() {
		t.Fatalf("the gate did not report the silent camera within 45 s (last frame %v after the stop)", lastFrame.Sub(frozeAt).Round(10*time.Millisecond))
	}
	noticed := offline.Sub(lastFrame)
	t.Logf("server stopped → last frame read %v later → outage reported %v after it",
		lastFrame.Sub(frozeAt).Round(10*time.Millisecond), noticed.Round(10*time.Millisecond))
	if noticed > 7*time.Second {
		t.Errorf("the gate reported the silent camera %v after its last frame, want within read_timeout 5 s + 2 s", noticed)
	}
	time.Sleep(time.Until(frozeAt.Add(frozen)))
	resume()
	// The encoder may have given up on the frozen server: publish again,
	// as a camera that restarts its stream.
	_ = pub.Process.Kill()
	rtspPublisher(t, so.Out, 20*time.Second, rig.pubURL, rig.ffLog)
	back := time.Now()
	waitFor(t, 30*time.Second, "frames after the camera runs again", func() bool {
		h, err := getHealth(httpAddr)
		return err == nil && h.CameraOnline
	})
	t.Logf("camera runs again → gate reading frames: %v", time.Since(back).Round(10*time.Millisecond))
	if h, err := getHealth(httpAddr); err != nil || h.Frames == 0 {
		t.Fatalf("health after the freeze: %+v, %v", h, err)
	}
}
