package capture_test

import (
	"bytes"
	"context"
	"net"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/diemdanh/diemdanh/edge/capture"
	"github.com/diemdanh/diemdanh/edge/e2e/rtsptest"
	"github.com/diemdanh/diemdanh/models/conf"
)

// syncBuffer is a log sink read while the capture writes to it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// testVideo encodes a test pattern with ffmpeg: the camera's picture.
func testVideo(t *testing.T, dir string) string {
	t.Helper()
	if _, err := exec.LookPath("ffmpeg"); err != nil {
		t.Fatalf("ffmpeg is needed for a real RTSP stream (deploy/setup-debian.sh installs it): %v", err)
	}
	out := filepath.Join(dir, "camera.avi")
	cmd := exec.Command("ffmpeg", "-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi", "-i", "testsrc=size=640x360:rate=25",
		"-t", "60", "-c:v", "mjpeg", "-q:v", "6", out)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("ffmpeg test video: %v\n%s", err, b)
	}
	return out
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// camera is an RTSP server with ffmpeg publishing to it.
type camera struct {
	srv *rtsptest.Server
	pub *exec.Cmd
	up  time.Time // when the server listened
}

func startCamera(t *testing.T, addr, video string, offset time.Duration, logw *syncBuffer) *camera {
	t.Helper()
	srv, err := rtsptest.Start(addr, "user", "secret", nil)
	if err != nil {
		t.Fatal(err)
	}
	c := &camera{srv: srv, up: time.Now()}
	c.pub, err = rtsptest.Publish(context.Background(), video, offset, "rtsp://"+addr+"/gate", logw)
	if err != nil {
		srv.Close()
		t.Fatal(err)
	}
	t.Cleanup(c.kill)
	deadline := time.Now().Add(10 * time.Second)
	for !srv.Publishing() {
		if time.Now().After(deadline) {
			t.Fatalf("ffmpeg did not start publishing:\n%s", logw.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	return c
}

func (c *camera) kill() {
	c.srv.Close()
	if c.pub.Process != nil {
		_ = c.pub.Process.Kill()
		_ = c.pub.Wait()
	}
}

// consumer takes frames from the mailbox as the pipeline does, and can be
// held (as a pipeline busy with a frame is) so that a frame waits unread.
type consumer struct {
	mu     sync.Mutex
	held   bool
	frames []capture.Frame // Mats closed, metadata kept
}

func (c *consumer) hold(v bool) { c.mu.Lock(); c.held = v; c.mu.Unlock() }

func (c *consumer) run(ctx context.Context, b *capture.Mailbox) {
	for ctx.Err() == nil {
		c.mu.Lock()
		held := c.held
		c.mu.Unlock()
		if held {
			time.Sleep(10 * time.Millisecond)
			continue
		}
		f, err := b.Next(ctx)
		if err != nil {
			return
		}
		f.Mat.Close()
		c.mu.Lock()
		c.frames = append(c.frames, f)
		c.mu.Unlock()
	}
}

func (c *consumer) taken() []capture.Frame {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]capture.Frame(nil), c.frames...)
}

func waitUntil(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestFaultRTSPStreamDropsAndReturns reads a live RTSP stream (a
// gortsplib server on loopback, ffmpeg publishing H.264 to it, Digest
// authentication with the password in the URL) with the default reconnect
// settings. While a frame waits unread in the mailbox (the pipeline busy)
// the server dies mid-stream; the pipeline is free again during the outage
// and the server returns 8 s later. Asserted: one outage counted and
// logged, frames again within 5 s of the server's return, the frame read
// before the outage never handed over after it began (counted stale), indices
// strictly increasing across the reconnection, and the password in no log
// line.
func TestFaultRTSPStreamDropsAndReturns(t *testing.T) {
	dir := t.TempDir()
	video := testVideo(t, dir)
	addr := freeAddr(t)
	var ffmpegLog, logs syncBuffer
	cam := startCamera(t, addr, video, 0, &ffmpegLog)

	cfg := capture.DefaultConfig()
	cfg.Source = "rtsp://user:secret@" + addr + "/gate"
	c, err := capture.New(cfg, conf.NewLogger(conf.LogConfig{Level: "debug"}, &logs), time.Now)
	if err != nil {
		t.Fatal(err)
	}
	box := capture.NewMailbox(true)
	c.DiscardOnOutage(box.Discard)
	var firstMu sync.Mutex
	first := map[int64]time.Time{} // connection → its first frame's read time
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	runDone := make(chan error, 1)
	go func() {
		runDone <- c.Run(ctx, func(f capture.Frame) {
			firstMu.Lock()
			if _, ok := first[f.Conn]; !ok {
				first[f.Conn] = f.At
			}
			firstMu.Unlock()
			box.Put(f)
		})
	}()
	cons := &consumer{}
	go cons.run(ctx, box)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("capture log:\n%s\nffmpeg:\n%s", logs.String(), ffmpegLog.String())
		}
	})

	waitUntil(t, 20*time.Second, "50 frames from the stream", func() bool { return len(cons.taken()) >= 50 })
	cons.hold(true) // the pipeline is busy: the next frame waits in the mailbox
	time.Sleep(300 * time.Millisecond)
	cam.kill()
	waitUntil(t, 35*time.Second, "the outage to be noticed", func() bool { return c.Outages() == 1 && !c.Online() })
	before := len(cons.taken())
	cons.hold(false)            // the pipeline is free again while the camera is still away
	time.Sleep(8 * time.Second) // long enough for the backoff to reach reconnect_max
	cam2 := startCamera(t, addr, video, 20*time.Second, &ffmpegLog)
	waitUntil(t, 15*time.Second, "frames from the returned server", func() bool { return c.Online() && c.Connections() == 2 })
	firstMu.Lock()
	back := first[2].Sub(cam2.up)
	firstMu.Unlock()
	t.Logf("server back → first new frame: %v (reconnect_max %v)", back.Round(time.Millisecond), cfg.ReconnectMax)
	if back > 5*time.Second {
		t.Errorf("first frame %v after the server returned, want within 5 s", back)
	}
	waitUntil(t, 10*time.Second, "frames after the outage", func() bool { return len(cons.taken()) >= before+25 })
	cancel()
	<-runDone

	frames := cons.taken()
	if got := frames[before]; got.Conn != 2 {
		t.Errorf("first frame handed over after the outage began came from connection %d (index %d): read before the outage", got.Conn, got.Index)
	}
	if c.StaleFrames() < 1 {
		t.Errorf("stale frames %d: the frame left in the mailbox at the outage was not discarded", c.StaleFrames())
	}
	for i := 1; i < len(frames); i++ {
		if frames[i].Index <= frames[i-1].Index || frames[i].Conn < frames[i-1].Conn || frames[i].At.Before(frames[i-1].At) {
			t.Fatalf("frame %d (index %d, conn %d) after frame %d (index %d, conn %d): not monotonic",
				i, frames[i].Index, frames[i].Conn, i-1, frames[i-1].Index, frames[i-1].Conn)
		}
	}
	log := logs.String()
	if n, m := strings.Count(log, "camera outage"), strings.Count(log, "camera recovered"); n != 1 || m != 1 || c.Outages() != 1 {
		t.Errorf("outage logged %d times, recovery %d, counted %d: want 1 each", n, m, c.Outages())
	}
	if strings.Contains(log, "secret") {
		t.Errorf("the stream's password is in the log:\n%s", log)
	}
	if cam.srv.Plays() != 1 || cam2.srv.Plays() != 1 || cam.srv.Denied()+cam2.srv.Denied() != 0 {
		t.Errorf("plays %d and %d, denied %d: want one authenticated reader per server", cam.srv.Plays(), cam2.srv.Plays(), cam.srv.Denied()+cam2.srv.Denied())
	}
	t.Logf("%d frames, %d stale, %d outage(s); source logged as %s", len(frames), c.StaleFrames(), c.Outages(), c.Source())
}
