package enrol

import (
	"context"
	"log/slog"
	"runtime"
	"sync"

	"github.com/diemdanh/diemdanh/models/conf"
	"github.com/diemdanh/diemdanh/models/errkind"
	"github.com/diemdanh/diemdanh/models/faceengine"
	"github.com/diemdanh/diemdanh/models/imagecheck"
	"github.com/diemdanh/diemdanh/models/match"
	"gocv.io/x/gocv"
)

// LazyEngine loads the face engine on first use, so a hub starts (and its
// other tests run) without the models; the first enrolment pays the load.
type LazyEngine struct {
	cfg  faceengine.EngineConfig
	log  *slog.Logger
	once sync.Once
	eng  *faceengine.Engine
	err  error
}

// NewLazyEngine returns an Engine that calls faceengine.NewEngine(cfg) when
// first needed.
func NewLazyEngine(cfg faceengine.EngineConfig, log *slog.Logger) *LazyEngine {
	if cfg.Workers == 0 {
		cfg.Workers = runtime.NumCPU()
	}
	return &LazyEngine{cfg: cfg, log: log}
}

func (l *LazyEngine) get() (*faceengine.Engine, error) {
	l.once.Do(func() { l.eng, l.err = faceengine.NewEngine(l.cfg, l.log) })
	if l.eng == nil && l.err == nil {
		return nil, &errkind.Error{Kind: errkind.Closed, Op: "enrol", Msg: "engine closed"}
	}
	return l.eng, l.err
}

// RecognizeMat implements Engine.
func (l *LazyEngine) RecognizeMat(ctx context.Context, m gocv.Mat) ([]match.Face, error) {
	e, err := l.get()
	if err != nil {
		return nil, err
	}
	return e.RecognizeMat(ctx, m)
}

// RecognizeTight implements Engine.
func (l *LazyEngine) RecognizeTight(ctx context.Context, m gocv.Mat) ([]match.Face, error) {
	e, err := l.get()
	if err != nil {
		return nil, err
	}
	return e.RecognizeTight(ctx, m)
}

// Recognize decodes b and finds every face (templates.Embedder, for
// re-embedding after a model change).
func (l *LazyEngine) Recognize(ctx context.Context, b []byte) ([]match.Face, error) {
	e, err := l.get()
	if err != nil {
		return nil, err
	}
	return e.Recognize(ctx, b)
}

// Model implements Engine: the configured embedder's model, known before
// the engine loads.
func (l *LazyEngine) Model() match.ModelID {
	if l.cfg.ONNX != nil {
		return l.cfg.ONNX.Model
	}
	m, _ := l.cfg.Model()
	return m
}

// Limits implements Engine.
func (l *LazyEngine) Limits() imagecheck.Limits { return l.cfg.Limits }

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
// limits and embedder (match.DefaultEmbedder; Config.EngineConfig
// applies enrol.embedder), models from $MODELS_DIR (or models/).
func EngineConfig() faceengine.EngineConfig {
	c := faceengine.DefaultEngineConfig()
	c.ModelsDir = conf.ResolveModelsDir(c.ModelsDir)
	return c
}
