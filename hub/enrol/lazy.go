package enrol

import (
	"context"
	"log/slog"
	"runtime"
	"sync"

	"github.com/diemdanh/diemdanh/models/gatekit"
	"gocv.io/x/gocv"
)

// LazyEngine loads the face engine on first use, so a hub starts (and its
// other tests run) without the models; the first enrolment pays the load.
type LazyEngine struct {
	cfg  gatekit.EngineConfig
	log  *slog.Logger
	once sync.Once
	eng  *gatekit.Engine
	err  error
}

// NewLazyEngine returns an Engine that calls gatekit.NewEngine(cfg) when
// first needed.
func NewLazyEngine(cfg gatekit.EngineConfig, log *slog.Logger) *LazyEngine {
	if cfg.Workers == 0 {
		cfg.Workers = runtime.NumCPU()
	}
	return &LazyEngine{cfg: cfg, log: log}
}

func (l *LazyEngine) get() (*gatekit.Engine, error) {
	l.once.Do(func() { l.eng, l.err = gatekit.NewEngine(l.cfg, l.log) })
	if l.eng == nil && l.err == nil {
		return nil, &gatekit.Error{Kind: gatekit.KindClosed, Op: "enrol", Msg: "engine closed"}
	}
	return l.eng, l.err
}

// RecognizeMat implements Engine.
func (l *LazyEngine) RecognizeMat(ctx context.Context, m gocv.Mat) ([]gatekit.Face, error) {
	e, err := l.get()
	if err != nil {
		return nil, err
	}
	return e.RecognizeMat(ctx, m)
}

// RecognizeTight implements Engine.
func (l *LazyEngine) RecognizeTight(ctx context.Context, m gocv.Mat) ([]gatekit.Face, error) {
	e, err := l.get()
	if err != nil {
		return nil, err
	}
	return e.RecognizeTight(ctx, m)
}

// Recognize decodes b and finds every face (templates.Embedder, for
// re-embedding after a model change).
func (l *LazyEngine) Recognize(ctx context.Context, b []byte) ([]gatekit.Face, error) {
	e, err := l.get()
	if err != nil {
		return nil, err
	}
	return e.Recognize(ctx, b)
}

// Model implements Engine: the configured embedder's model, known before
// the engine loads.
func (l *LazyEngine) Model() gatekit.ModelID {
	if l.cfg.ONNX != nil {
		return l.cfg.ONNX.Model
	}
	m, _ := gatekit.EmbedderModel(l.cfg.Embedder)
	return m
}

// Limits implements Engine.
func (l *LazyEngine) Limits() gatekit.ImageLimits { return l.cfg.Limits }

// Workers implements Engine.
func (l *LazyEngine) Workers() int { return l.cfg.Workers }

// Close frees the engine if it was loaded.
func (l *LazyEngine) Close() {
	l.once.Do(func() {})
	if l.eng != nil {
		l.eng.Close()
	}
}

// EngineConfig is the engine enrolment uses in the hub: the default
// limits and embedder (gatekit.DefaultEmbedder; Config.EngineConfig
// applies enrol.embedder), models from $MODELS_DIR (or models/).
func EngineConfig() gatekit.EngineConfig {
	c := gatekit.DefaultEngineConfig()
	c.ModelsDir = gatekit.ResolveModelsDir(c.ModelsDir)
	return c
}
