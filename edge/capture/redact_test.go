package capture_test

import (
	"strings"
	"testing"
	"time"

	"github.com/diemdanh/diemdanh/edge/capture"
)

func TestRedact(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"rtsp://user:secret@10.0.0.5:554/stream1", "rtsp://user:***@10.0.0.5:554/stream1"},
		{"rtsp://admin:se/cr@et@cam.local/h264", "rtsp://admin:***@cam.local/h264"},
		{"rtsp://admin:p#w?x@cam/live", "rtsp://admin:***@cam/live"},
		{"rtsp://cam/user=admin&password=secret&channel=1", "rtsp://cam/user=admin&password=***&channel=1"},
		{"http://cam/video.mjpg?user=a&PWD=secret", "http://cam/video.mjpg?user=a&PWD=***"},
		{"rtsp://user@cam/live", "rtsp://user@cam/live"},
		{"rtsp://cam:554/live", "rtsp://cam:554/live"},
		{"0", "0"},
		{"/var/video/gate.avi", "/var/video/gate.avi"},
	} {
		got := capture.Redact(tc.in)
		if got != tc.want {
			t.Errorf("Redact(%q) = %q, want %q", tc.in, got, tc.want)
		}
		for _, secret := range []string{"secret", "se/cr", "p#w"} {
			if strings.Contains(tc.in, secret) && strings.Contains(got, secret) {
				t.Errorf("Redact(%q) = %q still holds %q", tc.in, got, secret)
			}
		}
	}
}

func TestConfigMaxLag(t *testing.T) {
	cfg := capture.DefaultConfig()
	if cfg.MaxLag <= 0 || cfg.ReconnectMax > 4*time.Second {
		t.Fatalf("defaults: max_lag %v, reconnect_max %v: a returning camera must be read again within 5 s", cfg.MaxLag, cfg.ReconnectMax)
	}
	cfg.MaxLag = -time.Second
	if err := cfg.Validate("camera"); err == nil || !strings.Contains(err.Error(), "camera.max_lag") {
		t.Fatalf("negative max_lag: %v, want an error naming camera.max_lag", err)
	}
	cfg.MaxLag = 0
	if err := cfg.Validate("camera"); err != nil {
		t.Fatalf("max_lag 0 (off): %v", err)
	}
}
