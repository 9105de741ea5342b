package capture

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// ffmpegOptionsEnv is the variable OpenCV's FFmpeg back-end reads, when it
// opens a stream, for FFmpeg's demuxer options ("key;value|key;value").
// Without it OpenCV asks for RTSP over TCP itself; with it, only for what
// the variable says.
const ffmpegOptionsEnv = "OPENCV_FFMPEG_CAPTURE_OPTIONS"

// operatorFFmpegOptions is set when the operator had set the variable
// before the gate started: the gate then leaves it alone.
var operatorFFmpegOptions = os.Getenv(ffmpegOptionsEnv) != ""

// ffmpegOptions are the demuxer options for an RTSP source with a read
// timeout: RTSP over TCP (OpenCV's own default, which setting the variable
// would otherwise drop) and FFmpeg's socket timeout in microseconds, which
// also bounds the RTSP handshake of a camera that accepts the connection
// and then says nothing. Empty for other sources or no timeout.
func ffmpegOptions(source string, timeout time.Duration) string {
	l := strings.ToLower(source)
	if timeout <= 0 || !(strings.HasPrefix(l, "rtsp://") || strings.HasPrefix(l, "rtsps://")) {
		return ""
	}
	return "rtsp_transport;tcp|timeout;" + strconv.FormatInt(timeout.Microseconds(), 10)
}

// setFFmpegOptions sets the variable for the next open of source, unless
// the operator set it (their options win, e.g. a camera that needs UDP).
// The gate reads one camera, so the process-wide variable is its own.
func setFFmpegOptions(source string, timeout time.Duration) {
	if operatorFFmpegOptions {
		return
	}
	if o := ffmpegOptions(source, timeout); o != "" {
		_ = os.Setenv(ffmpegOptionsEnv, o)
	} else {
		_ = os.Unsetenv(ffmpegOptionsEnv)
	}
}

// watchSilence starts, for a live source with a ReadTimeout, a watchdog
// that reports the outage when no frame has come for ReadTimeout while the
// read loop may still be blocked inside OpenCV (a silent stream fails a
// read only after FFmpeg's timeout, and OpenCV may retry). The read loop
// reconnects once its read returns. It returns the watchdog's stop.
func (c *Capture) watchSilence(st *runState, last *atomic.Int64) (stop func()) {
	if c.kind == KindFile || c.cfg.ReadTimeout <= 0 {
		return func() {}
	}
	done := make(chan struct{})
	go func() {
		t := time.NewTicker(c.cfg.ReadTimeout / 5)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				if silent := c.now().Sub(time.Unix(0, last.Load())); silent >= c.cfg.ReadTimeout && c.online.Load() {
					c.beginOutage(st, fmt.Errorf("no frame for %v", silent.Round(time.Millisecond)))
				}
			}
		}
	}()
	return func() { close(done) }
}
