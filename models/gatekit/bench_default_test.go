package gatekit

import (
	"context"
	"testing"

	"gocv.io/x/gocv"
)

// defaultEngine is an engine with the default embedder (the gate's).
func defaultEngine(b *testing.B) *Engine {
	b.Helper()
	cfg := DefaultEngineConfig()
	cfg.ModelsDir = TestModelsDir()
	cfg.Workers = 1
	e, err := NewEngine(cfg, nil)
	if err != nil {
		b.Fatalf("engine (set MODELS_DIR): %v", err)
	}
	b.Cleanup(e.Close)
	return e
}

// BenchmarkDescribeCropDefault is the per-face cost on the gate with the
// default embedder: the direct path (shape predictor on the HOG box,
// alignment, SFace on the chip and on its mirror, quality figures).
func BenchmarkDescribeCropDefault(b *testing.B) {
	e := defaultEngine(b)
	frame := benchFrame(b, 1280, 720)
	defer frame.Close()
	faces, err := e.RecognizeMat(context.Background(), frame)
	if err != nil || len(faces) != 1 {
		b.Fatalf("setup: %d faces, %v", len(faces), err)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		f, err := e.DescribeCrop(context.Background(), frame, faces[0].Box)
		if err != nil || f == nil {
			b.Fatal("no face", err)
		}
	}
}

// BenchmarkSFaceEmbedChip is the default embedder's network on one
// aligned chip (two forward passes: the chip and its mirror).
func BenchmarkSFaceEmbedChip(b *testing.B) {
	emb, err := NewONNXEmbedder(onnxModelsDir(b), SFace2021DecBQ, 1)
	if err != nil {
		b.Fatal(err)
	}
	defer emb.Close()
	chip := gocv.NewMatWithSize(112, 112, gocv.MatTypeCV8UC3)
	defer chip.Close()
	gocv.RandU(&chip, gocv.NewScalar(0, 0, 0, 0), gocv.NewScalar(255, 255, 255, 0))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := emb.EmbedChip(context.Background(), chip); err != nil {
			b.Fatal(err)
		}
	}
}
