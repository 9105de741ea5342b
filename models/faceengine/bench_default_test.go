package faceengine

import (
	"testing"

	"github.com/diemdanh/diemdanh/models/conf"
)

// defaultEngine is an engine with the default embedder (the gate's).
func defaultEngine(b *testing.B) *Engine {
	b.Helper()
	cfg := DefaultEngineConfig()
	cfg.ModelsDir = conf.TestModelsDir()
	cfg.Workers = 1
	e, err := NewEngine(cfg, nil)
	if err != nil {
		b.Fatalf("engine (set MODELS_DIR): %v", err)
	}
	b.Cleanup(e.Close)
	return e
}

// BenchmarkDescribeCropDefault is the per-face cost on the gate with the
// default embedder: YuNet again on a 400×400 crop around the box (the
// landmarks), alignment, SFace on the chip and on its mirror, quality
// figures.
func BenchmarkDescribeCropDefault(b *testing.B) { benchmarkDescribeCrop(b, defaultEngine(b)) }

// BenchmarkSFaceEmbedChip is the default embedder's network on one
// aligned chip (two forward passes: the chip and its mirror).
func BenchmarkSFaceEmbedChip(b *testing.B) { benchmarkEmbedChip(b, SFace2021DecBQ) }
