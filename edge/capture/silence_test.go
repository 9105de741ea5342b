package capture

import (
	"strings"
	"testing"
	"time"
)

func TestFFmpegOptions(t *testing.T) {
	for _, c := range []struct {
		source  string
		timeout time.Duration
		want    string
	}{
		{"rtsp://u:p@10.0.0.5/stream1", 5 * time.Second, "rtsp_transport;tcp|timeout;5000000"},
		{"RTSPS://cam/s", 1500 * time.Millisecond, "rtsp_transport;tcp|timeout;1500000"},
		{"rtsp://cam/s", 0, ""},                      // OpenCV's own 30 s and TCP
		{"http://cam/mjpeg", 5 * time.Second, ""},    // not RTSP: FFmpeg's http options differ
		{"/srv/video/gate.mp4", 5 * time.Second, ""}, // a file
	} {
		if got := ffmpegOptions(c.source, c.timeout); got != c.want {
			t.Errorf("ffmpegOptions(%q, %v) = %q, want %q", c.source, c.timeout, got, c.want)
		}
	}
}

func TestReadTimeoutValidate(t *testing.T) {
	for _, c := range []struct {
		d  time.Duration
		ok bool
	}{{0, true}, {500 * time.Millisecond, true}, {5 * time.Second, true}, {100 * time.Millisecond, false}, {-time.Second, false}} {
		cfg := DefaultConfig()
		cfg.ReadTimeout = c.d
		err := cfg.Validate("camera")
		if (err == nil) != c.ok || (err != nil && !strings.Contains(err.Error(), "camera.read_timeout")) {
			t.Errorf("read_timeout %v: %v, want ok=%v naming camera.read_timeout", c.d, err, c.ok)
		}
	}
}
