package app

import (
	"fmt"
	"image"
	"image/color"
	"os"
	"path/filepath"

	"github.com/diemdanh/diemdanh/models/conf"
	"github.com/diemdanh/diemdanh/models/wire"
	"gocv.io/x/gocv"
	"gopkg.in/yaml.v3"
)

// The pupil the demo creates, with consent but no face, when the demo
// photos are missing: the newcomer enrols photos for it from the browser.
const (
	demoPlaceholderPupil = "079000000001"
	demoPlaceholderName  = "Học sinh Demo"
)

// writePlaceholderVideo writes the 2 s looped video the gate reads when
// there is neither a camera nor demo photos: an empty gate scene saying
// so, so that the gate runs (and reports to the hub) with nobody to see.
func writePlaceholderVideo(path string) error {
	const w, h, fps = 640, 360, 10
	vw, err := gocv.VideoWriterFile(path+".tmp.avi", "MJPG", fps, w, h, true)
	if err != nil {
		return fmt.Errorf("demo: placeholder video: %w", err)
	}
	frame := gocv.NewMatWithSizeFromScalar(gocv.NewScalar(96, 104, 110, 0), h, w, gocv.MatTypeCV8UC3)
	defer frame.Close()
	text := []string{"DiemDanh demo gate", "no camera and no demo photos:", "nobody will walk past.", "Enrol a pupil in the browser and", "connect a camera to see arrivals."}
	for i, t := range text {
		gocv.PutText(&frame, t, image.Pt(30, 70+i*50), gocv.FontHersheySimplex, 0.9, color.RGBA{240, 240, 240, 0}, 2)
	}
	for i := 0; i < 2*fps; i++ {
		if err := vw.Write(frame); err != nil {
			vw.Close()
			return fmt.Errorf("demo: placeholder video: %w", err)
		}
	}
	if err := vw.Close(); err != nil {
		return fmt.Errorf("demo: placeholder video: %w", err)
	}
	if err := os.Rename(path+".tmp.avi", path); err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	return nil
}

// writeEdgeConfig writes the gate's YAML: the demo gate's identity and
// password, the hub's broker and gallery, and what it reads (a camera, or
// video looped in real time).
func writeEdgeConfig(demoDir string, a *App, mqttAddr, password, camera, video string) (string, error) {
	source := camera
	if camera == "none" {
		source = video
	}
	cfg := map[string]any{
		"school_id": DemoSchool,
		"gate_id":   DemoGate,
		"direction": wire.DirectionIn,
		"data_dir":  filepath.Join(demoDir, "edge"),
		"log":       map[string]any{"level": "info"},
		"camera":    map[string]any{"source": source, "realtime": true, "loop": camera == "none"},
		"engine":    map[string]any{"models_dir": conf.TestModelsDir(), "embedder": a.Mods.Templates.Model().Name},
		"pipeline":  map[string]any{"cooldown": "1m"},
		"mqtt": map[string]any{"broker": "tcp://" + mqttAddr, "client_id": DemoGate,
			"username": DemoGate, "password": password},
		"gallery": map[string]any{"sync": map[string]any{"hub_url": a.BaseURL(), "username": DemoGate,
			"password": password, "interval": "30s"}},
		"http":               map[string]any{"listen": ""},
		"heartbeat_interval": "10s",
	}
	b, err := yaml.Marshal(cfg)
	if err != nil {
		return "", err
	}
	p := filepath.Join(demoDir, "edge.yaml")
	if err := conf.WriteFileAtomic(p, b, 0o600); err != nil {
		return "", fmt.Errorf("demo: %w", err)
	}
	return p, nil
}
