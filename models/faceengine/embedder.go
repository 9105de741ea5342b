package faceengine

import (
	"context"
	"image"
	"sort"

	"github.com/diemdanh/diemdanh/models/match"
	"gocv.io/x/gocv"
)

// Embedder turns a detected face into a descriptor: it aligns the face by
// its dlib landmarks to its own template, normalises the pixels its own way
// and runs its network. The engine detects with HOG and finds the 5
// landmarks with dlib; only this last step is pluggable. (An ONNX embedder
// whose spec sets Align5 is the exception: the engine then detects and
// places landmarks with YuNet and calls EmbedPoints; engine_yunet.go.) The built-in
// dlib-resnet-v1 embedder runs inside go-face and has no Embedder value.
//
// Descriptors of different embedders are never compared: a match.Gallery holds
// one Model, and events and gallery files record it.
type Embedder interface {
	Model() match.ModelID
	Dim() int
	// Embed computes the descriptor of the face with the given 5 dlib
	// landmarks in img (a BGR Mat, landmarks in its coordinates).
	Embed(ctx context.Context, img gocv.Mat, landmarks []image.Point) (match.Descriptor, error)
	Close()
}

var _ Embedder = (*ONNXEmbedder)(nil)

// EmbedderNames lists every embedder name EngineConfig.Embedder accepts,
// the default (match.DefaultEmbedder) first, including external ones whose files
// `make models` does not fetch.
func EmbedderNames() []string {
	names := []string{match.DefaultEmbedder.Name}
	var onnx []string
	if match.DefaultEmbedder != match.DlibResNetV1 {
		onnx = append(onnx, match.DlibResNetV1.Name)
	}
	for n := range ONNXSpecs {
		if n != match.DefaultEmbedder.Name {
			onnx = append(onnx, n)
		}
	}
	for n := range FusionSpecs {
		onnx = append(onnx, n)
	}
	for n := range ExternalONNXSpecs {
		onnx = append(onnx, n)
	}
	sort.Strings(onnx)
	return append(names, onnx...)
}

// EmbedderModel returns the ModelID an embedder name stands for ("" is
// match.DefaultEmbedder).
func EmbedderModel(name string) (match.ModelID, bool) {
	if name == "" {
		name = match.DefaultEmbedder.Name
	}
	if name == match.DlibResNetV1.Name {
		return match.DlibResNetV1, true
	}
	if f, ok := FusionSpecs[name]; ok {
		return f.Model, true
	}
	s, ok := onnxSpec(name)
	return s.Model, ok
}

// ModelFilesFor returns the weight files an embedder needs in ModelsDir
// (dlib's files are always needed; an Align5 embedder also needs YuNet).
func ModelFilesFor(name string) []ModelFile {
	if name == "" {
		name = match.DefaultEmbedder.Name
	}
	files := append([]ModelFile(nil), DlibModels...)
	if s, ok := onnxSpec(name); ok {
		files = append(files, s.File)
		if s.Align5 {
			files = append(files, YuNet2023MarBQ)
		}
	}
	for _, p := range FusionSpecs[name].Parts {
		files = append(files, p.File)
	}
	return files
}
