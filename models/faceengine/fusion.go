package faceengine

import (
	"context"
	"image"
	"math"

	"github.com/diemdanh/diemdanh/models/errkind"
	"github.com/diemdanh/diemdanh/models/match"
	"gocv.io/x/gocv"
)

// FusionSpec is an embedder made of several ONNX embedders: each part's
// L2-normalised descriptor is scaled by 1/√k and the parts are
// concatenated, so the fused descriptor is unit length again and its
// squared L2 distance is the mean of the parts' squared distances.
type FusionSpec struct {
	Model match.ModelID
	Parts []ONNXSpec
}

// Dim is the fused descriptor length.
func (s FusionSpec) Dim() int {
	n := 0
	for _, p := range s.Parts {
		n += p.Dim
	}
	return n
}

// FusionEmbedder runs a FusionSpec.
type FusionEmbedder struct {
	spec  FusionSpec
	parts []*ONNXEmbedder
}

var _ Embedder = (*FusionEmbedder)(nil)

// NewFusionEmbedder loads every part (each verified like NewONNXEmbedder).
func NewFusionEmbedder(dir string, spec FusionSpec, workers int) (*FusionEmbedder, error) {
	if len(spec.Parts) < 2 {
		return nil, errkind.New(errkind.Invalid, "fusion", nil, "%s: needs ≥2 parts", spec.Model)
	}
	f := &FusionEmbedder{spec: spec}
	for _, p := range spec.Parts {
		e, err := NewONNXEmbedder(dir, p, workers)
		if err != nil {
			f.Close()
			return nil, err
		}
		f.parts = append(f.parts, e)
	}
	return f, nil
}

// Model names the fused model.
func (f *FusionEmbedder) Model() match.ModelID { return f.spec.Model }

// Dim is the fused descriptor length.
func (f *FusionEmbedder) Dim() int { return f.spec.Dim() }

// Close frees every part.
func (f *FusionEmbedder) Close() {
	for _, p := range f.parts {
		p.Close()
	}
}

// Embed runs every part on the same landmarks and concatenates.
func (f *FusionEmbedder) Embed(ctx context.Context, img gocv.Mat, landmarks []image.Point) (match.Descriptor, error) {
	out := make(match.Descriptor, 0, f.Dim())
	w := float32(1 / math.Sqrt(float64(len(f.parts))))
	for _, p := range f.parts {
		d, err := p.Embed(ctx, img, landmarks)
		if err != nil {
			return nil, err
		}
		for _, v := range d {
			out = append(out, v*w)
		}
	}
	return out, nil
}

// FusionSpecs are the fused embedders this build knows, by model name.
var FusionSpecs = map[string]FusionSpec{
	"fusion-sface-mfn-v1": {Model: match.ModelID{Name: "fusion-sface-mfn-v1", Version: "2"}, Parts: []ONNXSpec{SFace2021DecBQDlib5, FacepluginMFNV1}},
}
