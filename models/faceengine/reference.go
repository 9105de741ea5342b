package faceengine

import (
	"github.com/diemdanh/diemdanh/models/match"
)

// ReferenceModel is the fixed descriptor model for data-cleaning decisions
// that must not depend on the embedder being evaluated, such as which
// photos filed under one name really show one person (edge simulate). It is
// dlib-resnet-v1 because go-face computes it for every detected face anyway.
var ReferenceModel = match.DlibResNetV1

// ReferenceEngine returns an engine producing ReferenceModel descriptors
// with e's models folder, workers, limits and tight-crop padding. When e
// already uses ReferenceModel it returns e itself and a no-op close;
// otherwise it loads a second engine, which the returned func closes.
func (e *Engine) ReferenceEngine() (*Engine, func(), error) {
	if e.Model() == ReferenceModel {
		return e, func() {}, nil
	}
	cfg := e.cfg
	cfg.Embedder, cfg.ONNX = ReferenceModel.Name, nil
	ref, err := NewEngine(cfg, e.log)
	if err != nil {
		return nil, nil, err
	}
	return ref, ref.Close, nil
}
