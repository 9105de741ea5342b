package app

import (
	"bytes"
	"crypto/subtle"
	"encoding/json"
	"fmt"
	"image"
	"image/color"
	"net/http"
	"sync"
	"time"

	"github.com/diemdanh/diemdanh/edge/capture"
	"github.com/diemdanh/diemdanh/edge/pipeline"
	"github.com/diemdanh/diemdanh/models/faceengine"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"gocv.io/x/gocv"
)

// Handler serves /healthz, /metrics and, when enabled, /preview.
func (a *App) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", a.healthz)
	mux.Handle("GET /metrics", promhttp.HandlerFor(a.reg, promhttp.HandlerOpts{}))
	if a.preview != nil {
		mux.Handle("GET /preview", a.preview)
	}
	return mux
}

// healthz is 200 while the pipeline runs and the camera delivers frames,
// 503 otherwise; the body says why.
func (a *App) healthz(w http.ResponseWriter, _ *http.Request) {
	body := map[string]any{
		"running":         a.running.Load(),
		"camera_online":   a.cap.Online(),
		"camera_outages":  a.cap.Outages(),
		"broker":          a.pub.Connected(),
		"outbox_depth":    a.db.Depth(),
		"disk_full":       a.db.DiskFull(),
		"gallery_version": a.gallery.Version(),
		"people":          a.people(),
		"frames":          a.pipe.Stats.Frames.Load(),
		"dropped_frames":  a.mbox.Dropped(),
	}
	code := http.StatusOK
	if !a.running.Load() || !a.cap.Online() {
		code = http.StatusServiceUnavailable
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(body)
}

// preview is the installer's MJPEG stream, behind HTTP basic auth.
type preview struct {
	cfg     PreviewConfig
	mu      sync.Mutex
	cond    *sync.Cond
	jpeg    []byte
	seq     int64
	last    time.Time
	viewers int
}

func newPreview(cfg PreviewConfig) *preview {
	p := &preview{cfg: cfg}
	p.cond = sync.NewCond(&p.mu)
	return p
}

// offer runs on the pipeline goroutine; it renders a frame only when
// someone watches and at most FPS times a second.
func (p *preview) offer(f capture.Frame, boxes []pipeline.Overlay) {
	p.mu.Lock()
	watching := p.viewers > 0 && time.Since(p.last) >= time.Duration(float64(time.Second)/p.cfg.FPS)
	p.mu.Unlock()
	if !watching {
		return
	}
	scale := float64(p.cfg.Width) / float64(f.Mat.Cols())
	small := gocv.NewMat()
	defer small.Close()
	gocv.Resize(f.Mat, &small, image.Pt(p.cfg.Width, int(float64(f.Mat.Rows())*scale)), 0, 0, gocv.InterpolationArea)
	for _, b := range boxes {
		r := image.Rect(int(float64(b.Box.Min.X)*scale), int(float64(b.Box.Min.Y)*scale), int(float64(b.Box.Max.X)*scale), int(float64(b.Box.Max.Y)*scale))
		c := color.RGBA{255, 200, 0, 0}
		label := "?"
		if b.Label != "" {
			c, label = color.RGBA{0, 220, 0, 0}, b.Label
		}
		gocv.Rectangle(&small, r, c, 2)
		gocv.PutText(&small, label, image.Pt(r.Min.X, max(r.Min.Y-6, 12)), gocv.FontHersheySimplex, 0.5, c, 1)
	}
	b, err := faceengine.EncodeJPEG(small, 70)
	if err != nil {
		return
	}
	p.mu.Lock()
	p.jpeg, p.last = b, time.Now()
	p.seq++
	p.cond.Broadcast()
	p.mu.Unlock()
}

func (p *preview) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	u, pw, ok := r.BasicAuth()
	if !ok || subtle.ConstantTimeCompare([]byte(u), []byte(p.cfg.Username)) != 1 ||
		subtle.ConstantTimeCompare([]byte(pw), []byte(p.cfg.Password)) != 1 {
		w.Header().Set("WWW-Authenticate", `Basic realm="diemdanh-edge preview"`)
		http.Error(w, "unauthorised", http.StatusUnauthorized)
		return
	}
	const boundary = "diemdanhframe"
	w.Header().Set("Content-Type", "multipart/x-mixed-replace; boundary="+boundary)
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	if fl, ok := w.(http.Flusher); ok {
		fl.Flush()
	}
	p.mu.Lock()
	p.viewers++
	p.mu.Unlock()
	defer func() { p.mu.Lock(); p.viewers--; p.mu.Unlock() }()
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		select {
		case <-r.Context().Done():
		case <-stop:
		}
		p.mu.Lock()
		p.cond.Broadcast()
		p.mu.Unlock()
	}()
	var seen int64
	for {
		p.mu.Lock()
		for p.seq == seen && r.Context().Err() == nil {
			p.cond.Wait()
		}
		img, seq := p.jpeg, p.seq
		p.mu.Unlock()
		if r.Context().Err() != nil {
			return
		}
		seen = seq
		var hdr bytes.Buffer
		fmt.Fprintf(&hdr, "--%s\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n", boundary, len(img))
		if _, err := w.Write(hdr.Bytes()); err != nil {
			return
		}
		if _, err := w.Write(append(img, '\r', '\n')); err != nil {
			return
		}
		if fl, ok := w.(http.Flusher); ok {
			fl.Flush()
		}
	}
}
