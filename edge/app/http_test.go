package app

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/diemdanh/diemdanh/models/faceengine"
	"github.com/diemdanh/diemdanh/models/match"
)

// TestHTTPEndpoints: /healthz says why the gate is not healthy, /metrics
// exposes the gate's figures, and the preview needs its password.
func TestHTTPEndpoints(t *testing.T) {
	dir := t.TempDir()
	cfg := gateConfig(dir, filepath.Join(dir, "none.avi"), filepath.Join(dir, "gallery.json"), "127.0.0.1:1")
	cfg.Engine.Workers = 1
	cfg.HTTP.Preview.Enabled, cfg.HTTP.Preview.Password = true, "correct horse"
	a, err := New(cfg, nil, time.Now)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	srv := httptest.NewServer(a.Handler())
	defer srv.Close()

	res, err := http.Get(srv.URL + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != http.StatusServiceUnavailable || !strings.Contains(string(body), `"camera_online":false`) {
		t.Fatalf("healthz %d %s", res.StatusCode, body)
	}

	res, err = http.Get(srv.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(res.Body)
	res.Body.Close()
	// No gallery yet: nothing to calibrate, so the threshold in force is
	// the default embedder's vote cap.
	prof, ok := faceengine.ProfileOf(match.DefaultEmbedder)
	if !ok {
		t.Fatalf("no profile for %v", match.DefaultEmbedder)
	}
	for _, m := range []string{"edge_frames_total", "edge_dropped_frames_total", "edge_outbox_depth", "edge_broker_connected",
		"edge_unknown_tracks_total", "edge_vote_threshold " + strconv.FormatFloat(prof.VoteCap, 'g', -1, 64), "edge_detect_seconds", "edge_describe_seconds"} {
		if !strings.Contains(string(body), m) {
			t.Errorf("/metrics lacks %s", m)
		}
	}

	for _, c := range []struct {
		user, pass string
		code       int
	}{{"", "", 401}, {"installer", "wrong", 401}, {"installer", "correct horse", 200}} {
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		req, _ := http.NewRequestWithContext(ctx, "GET", srv.URL+"/preview", nil)
		if c.user != "" {
			req.SetBasicAuth(c.user, c.pass)
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			cancel()
			t.Fatal(err)
		}
		ct := res.Header.Get("Content-Type")
		res.Body.Close()
		cancel()
		if res.StatusCode != c.code || (c.code == 200 && !strings.HasPrefix(ct, "multipart/x-mixed-replace")) {
			t.Errorf("preview as %q/%q: %d %s", c.user, c.pass, res.StatusCode, ct)
		}
	}
}
